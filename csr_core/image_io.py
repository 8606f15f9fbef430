"""Photo file I/O: decode JPEG, PNG, TIFF, WebP (BMP, GIF) to numpy and encode back with metadata.

Pixels
    ``Photo.rgb`` is HxWx3 sRGB, C-contiguous: uint8 (8-bit sources), uint16 (16-bit PNG/TIFF) or
    float32 in [0, 1] (float TIFF; NaN and values outside [0, 1] are clipped). Gray is replicated to
    RGB, palettes are expanded, alpha is split off untouched. The EXIF orientation (for TIFF the
    Orientation tag; without EXIF the XMP ``tiff:Orientation``) is applied to the pixels and reset to 1
    in the carried EXIF and XMP.
Colour
    A source whose ICC profile is not sRGB (Adobe RGB, Display P3, ProPhoto, a gray gamma...) is
    converted to sRGB on load by LittleCMS (imagecodecs) at the source's own precision (8/16-bit or
    float), relative colorimetric intent with black-point compensation. ``source_space`` then holds
    the profile's description, and ``save_photo`` embeds an sRGB profile instead of the source's.
    A profile counts as sRGB when it maps a colour grid to sRGB within 1/255, whatever its name:
    pixels are left alone and its bytes are carried to the output (for a gray source it is dropped,
    the output being RGB). Untagged sources are taken as sRGB and stay untagged. An unusable profile
    (unparseable, or not matching the pixels' colour model) is warned about, ignored and dropped.
Output
    JPEG and WebP are 8-bit (16-bit/float data is rounded); PNG is 8- or 16-bit (float -> 16-bit);
    TIFF keeps uint8/uint16/float32 (deflate + predictor). EXIF, XMP and ICC go to every format.
Safety
    Declared dimensions are checked against ``max_pixels`` before anything is decoded, by every
    decoder, and so are the bytes the decoder will allocate (``BYTES_PER_PIXEL`` per allowed pixel:
    samples x sample size, plus a progressive JPEG's coefficient buffers); Pillow's own bomb limit is
    switched off (``Image.MAX_IMAGE_PIXELS = None``) since these checks replace it. Work that the file
    could repeat without paying for it is capped from its structure: JPEG scans (``MAX_JPEG_SCANS``),
    PNG chunks (``MAX_PNG_CHUNKS``) and image data beyond what the header needs, TIFF strips or tiles
    that overlap. libjpeg's warnings (missing or corrupt data) are errors. Every failure is an
    ``ImageError`` with one line: "<name>: <reason>".
"""
from __future__ import annotations

import functools
import io
import logging
import os
import re
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import imagecodecs
import numpy as np
import simplejpeg
import tifffile
from PIL import Image, ImageCms, TiffImagePlugin, UnidentifiedImageError

from . import jpeg_guard, png_guard
from .errors import ImageError
from .fsutil import atomic_write
from .pixels import from_float, to_float

__all__ = ["Photo", "load_photo", "save_photo", "format_for_path", "to_float", "from_float",
           "SUPPORTED_EXTENSIONS", "DEFAULT_MAX_PIXELS"]

Image.MAX_IMAGE_PIXELS = None  # replaced by our own max_pixels check, done before any decoding
# tifffile logs damaged-file details that would reach stderr through logging's last resort handler;
# our ImageError already says it (configured logging still receives them)
logging.getLogger("tifffile").addHandler(logging.NullHandler())
logging.getLogger("imagecodecs").addHandler(logging.NullHandler())  # libpng's "PNG warning: ..." lines


def _env_max_pixels(default: int = 200_000_000) -> int:
    try:
        value = int(float(os.environ.get("CSR_MAX_PIXELS", "") or default))
    except ValueError:
        return default
    return value if value > 0 else default


DEFAULT_MAX_PIXELS = _env_max_pixels()
#: Decoded-bytes budget per allowed pixel: 200 MP -> 2.4 GB (float32 RGB fits; float64 RGBA does not).
BYTES_PER_PIXEL = 12
#: Most scans a JPEG may have (libjpeg's default progressive script has 10) ...
MAX_JPEG_SCANS = 100
#: ... and at most this many full-image scan passes per allowed pixel (a 200 MP JPEG: 32 scans).
SCAN_PASSES_PER_PIXEL = 32
#: Most chunks of a PNG other than IDAT; IDAT chunks: at most one per KiB of the file, plus this many.
MAX_PNG_CHUNKS = 1000
SUPPORTED_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif")
_OUTPUT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG",
                   ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
_PILLOW_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF")
_CMYK = "CMYK images are not supported; convert to RGB first"
_PNG_LEVEL = 3  # zlib level: ~3x faster than 6 for files ~6% larger
_EXIF_HEAD = b"Exif\0\0"
_XMP_JPEG_HEAD = b"http://ns.adobe.com/xap/1.0/\0"
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005
# TIFF IFD0 tags worth carrying in EXIF (description, make, model, software, date, artist, copyright)
_IFD0_KEEP = (270, 271, 272, 305, 306, 315, 33432)


@dataclass
class Photo:
    """A decoded photo: sRGB pixels plus what is needed to write it back faithfully.

    ``icc_profile`` is the source's profile (None if absent or unusable); ``exif`` carries
    orientation 1 (already applied). See the module docstring for the colour rules.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    format: str = "PNG"
    source_space: str = "sRGB"
    name: str = "<image>"

    @property
    def bit_depth(self) -> int:
        return {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(self.rgb.dtype, 32)


# ----------------------------------------------------------------------------- sample conversions

def _as_dtype(a: np.ndarray, dt) -> np.ndarray:
    dt = np.dtype(dt)
    if a.dtype == dt:
        return a
    if dt == np.float32:
        return to_float(a)
    if a.dtype == np.uint16 and dt == np.uint8:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)  # == round(a / 257)
    if a.dtype == np.uint8 and dt == np.uint16:
        return np.multiply(a, 257, dtype=np.uint16)
    return from_float(a, dt)


# ----------------------------------------------------------------------------- loading

class _Bad(Exception):
    """Why an image cannot be read or written (without the file name)."""


@dataclass
class _Decoded:
    pixels: np.ndarray  # HxW, HxWx2 (gray+alpha), HxWx3 or HxWx4
    format: str
    icc: bytes | None = None
    exif: bytes | None = None
    xmp: bytes | None = None
    orientation: int | None = None  # when not taken from EXIF (TIFF tag)


def load_photo(src: str | os.PathLike | bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> Photo:
    """Decode a photo from a path, bytes or a binary stream (see the module docstring)."""
    data, name = _read_source(src, name)
    if not data:
        raise ImageError(f"{name}: empty file")
    reader = _READERS.get(_sniff(data), _read_pillow)
    try:
        return _assemble(reader(data, max_pixels), name)
    except _Bad as exc:
        raise ImageError(f"{name}: {exc}") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode the image") from None
    except Exception as exc:  # any decoder failure: one line, never a raw library error
        raise ImageError(f"{name}: cannot decode image ({_one_line(exc)})") from exc


def _read_source(src, name: str | None) -> tuple[bytes, str]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), name or "<stdin>"
    if isinstance(src, (str, os.PathLike)):
        label = name or os.fspath(src)
        try:
            return Path(src).read_bytes(), label
        except FileNotFoundError:
            raise ImageError(f"{label}: no such file") from None
        except IsADirectoryError:
            raise ImageError(f"{label}: is a directory") from None
        except OSError as exc:
            raise ImageError(f"{label}: cannot read ({exc.strerror or _one_line(exc)})") from None
    stream_name = getattr(src, "name", None)
    label = name or (stream_name if isinstance(stream_name, str) else "<stdin>")
    try:
        data = src.read()
    except OSError as exc:
        raise ImageError(f"{label}: cannot read ({exc.strerror or _one_line(exc)})") from None
    if not isinstance(data, (bytes, bytearray)):
        raise ImageError(f"{label}: not a binary stream")
    return bytes(data), label


def _sniff(data: bytes) -> str | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    return None


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise _Bad(f"zero-size image ({width}x{height})")
    if width * height > max_pixels:
        raise _Bad(f"image too large: {width}x{height} ({width * height / 1e6:.3g} MP) exceeds the "
                   f"limit of {max_pixels / 1e6:g} MP (set CSR_MAX_PIXELS to raise it)")


def _check_bytes(nbytes: int, max_pixels: int, what: str) -> None:
    """The decoder's allocation (``nbytes``) against the budget of BYTES_PER_PIXEL per allowed pixel."""
    budget = max_pixels * BYTES_PER_PIXEL
    if nbytes > budget:
        raise _Bad(f"image too large: decoding {what} needs {nbytes / 1e6:,.0f} MB, more than the limit of "
                   f"{budget / 1e6:,.0f} MB ({BYTES_PER_PIXEL} bytes per allowed pixel; set CSR_MAX_PIXELS to raise it)")


def _read_png(data: bytes, max_pixels: int) -> _Decoded:
    """Walk the chunks (size limit, metadata, critical-chunk CRCs, whole chunks), vet the image
    data (``png_guard``: libpng must never fail on it), then decode with libpng."""
    icc = exif = xmp = ihdr = None
    idat: list[memoryview] = []
    view = memoryview(data)
    others = 0
    pos = 8
    while pos + 12 <= len(data):
        length, ctype = struct.unpack_from(">I4s", data, pos)
        others += ctype != b"IDAT"
        if others > MAX_PNG_CHUNKS or len(idat) > MAX_PNG_CHUNKS + len(data) // 1024:
            raise _Bad(f"damaged PNG file (more chunks than the limit: {MAX_PNG_CHUNKS} besides image data)")
        end = pos + 12 + length
        if end > len(data):
            raise _Bad(f"truncated PNG file ({ctype.decode('latin-1')!r} chunk cut off)")
        if ctype[:1].isupper() and zlib.crc32(view[pos + 4:end - 4]) != struct.unpack_from(">I", data, end - 4)[0]:
            raise _Bad(f"damaged PNG file (CRC error in its {ctype.decode('latin-1')!r} chunk)")
        body = view[pos + 8:end - 4] if ctype == b"IDAT" else data[pos + 8:end - 4]
        pos = end
        if ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"IHDR" and len(body) == 13:
            ihdr = body
            width, height = struct.unpack_from(">II", body)
            _check_size(width, height, max_pixels)
            try:
                _check_bytes(png_guard.decoded_bytes(body), max_pixels, "this PNG")
            except png_guard.PngDataError as exc:
                raise _Bad(str(exc)) from None
        elif ctype == b"acTL" and len(body) == 8 and struct.unpack(">I", body[:4])[0] > 1:
            raise _Bad("animated images are not supported")
        elif ctype == b"iCCP" and b"\0" in body:
            icc = _unzip(body.split(b"\0", 1)[1][1:])
        elif ctype == b"eXIf":
            exif = _EXIF_HEAD + body
        elif ctype == b"iTXt" and body.startswith(b"XML:com.adobe.xmp\0"):
            xmp = _itxt_text(body)
        elif ctype == b"IEND":
            break
    else:
        if pos != len(data):
            raise _Bad("truncated PNG file (a chunk is cut off)")
    if ihdr is None:
        raise _Bad("not a valid PNG file (no image header)")
    try:
        png_guard.check_image_data(ihdr, idat)
    except png_guard.PngDataError as exc:
        raise _Bad(str(exc)) from None
    return _Decoded(imagecodecs.png_decode(data), "PNG", icc, exif, xmp)


def _unzip(blob: bytes, limit: int = 1 << 24) -> bytes:
    """Inflate a metadata blob, at most ``limit`` bytes; damaged or oversized data is returned raw
    (an unusable profile is then reported by the colour code)."""
    try:
        z = zlib.decompressobj()
        out = z.decompress(blob, limit)
        return blob if z.unconsumed_tail else out
    except zlib.error:
        return blob


def _itxt_text(body: bytes) -> bytes | None:
    try:
        _key, rest = body.split(b"\0", 1)
        compressed, rest = rest[0], rest[2:]
        _lang, _translated, text = rest.split(b"\0", 2)
    except (ValueError, IndexError):  # damaged metadata is dropped, the image still loads
        return None
    return (_unzip(text) if compressed else text) or None


def _read_jpeg(data: bytes, max_pixels: int) -> _Decoded:
    """Budget the decode from the file's structure (jpeg_guard), then libjpeg-turbo (simplejpeg) in
    strict mode: a warning about missing or corrupt data is an error, never a grey-padded picture."""
    im = _pil_open(data)
    width, height = im.size
    _check_size(width, height, max_pixels)
    if im.mode == "CMYK":
        raise _Bad(_CMYK)
    max_scans = min(MAX_JPEG_SCANS, SCAN_PASSES_PER_PIXEL * max_pixels // (width * height))
    try:
        info = jpeg_guard.inspect(data, max_scans)
    except ValueError as exc:
        raise _Bad(f"refusing a JPEG with too many scans ({exc}; the limit is {MAX_JPEG_SCANS}, fewer for large "
                   "images)") from None
    if info.too_little_data():
        raise _Bad(f"truncated JPEG ({info.scan_bytes:,} bytes of scan data cannot code {width}x{height} pixels)")
    gray = im.mode == "L"
    _check_bytes(width * height * (1 if gray else 3) + info.coefficient_bytes(), max_pixels, "this JPEG")
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY" if gray else "RGB", strict=True)
    except ValueError as exc:
        raise _Bad(f"damaged or truncated JPEG ({_one_line(exc)})") from None
    if pixels.shape[:2] != (height, width):
        raise _Bad(f"damaged JPEG (decoded {pixels.shape[1]}x{pixels.shape[0]}, header says {width}x{height})")
    return _Decoded(pixels[..., 0] if gray else pixels, "JPEG", *_pil_meta(im))


def _read_pillow(data: bytes, max_pixels: int) -> _Decoded:
    im = _pil_open(data)
    _check_size(*im.size, max_pixels)
    fmt = "JPEG" if im.format == "MPO" else im.format
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and fmt != "JPEG":  # MPO's second frame is a preview, not animation
        raise _Bad(f"animated images are not supported ({frames} frames)")
    if im.mode == "CMYK":
        raise _Bad(_CMYK)
    return _Decoded(_pil_pixels(im), fmt, *_pil_meta(im))


def _pil_open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS)
    except UnidentifiedImageError:
        raise _Bad("not a supported image (unrecognised format or corrupt data)") from None


def _pil_pixels(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode in ("1", "RGBX", "YCbCr", "RGBa", "La"):
        im = im.convert({"1": "L", "RGBa": "RGBA", "La": "LA"}.get(mode, "RGB"))
    elif mode not in ("RGB", "RGBA", "L", "LA", "I", "F") and not mode.startswith("I;16"):
        raise _Bad(f"unsupported colour mode {mode}")
    arr = np.asarray(im)
    if mode == "I":
        arr = np.clip(arr, 0, 65535).astype(np.uint16)
    return arr


def _pil_meta(im: Image.Image) -> tuple[bytes | None, bytes | None, bytes | None]:
    info = im.info
    exif = info.get("exif") or None
    if exif and not exif.startswith(_EXIF_HEAD):
        exif = _EXIF_HEAD + exif
    xmp = info.get("xmp") or info.get("XML:com.adobe.xmp") or None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    return info.get("icc_profile") or None, exif, xmp


def _read_tiff(data: bytes, max_pixels: int) -> _Decoded:
    ph = tifffile.PHOTOMETRIC
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if not tif.pages:
            raise _Bad("TIFF file contains no image")
        page = tif.pages.first
        _check_size(page.imagewidth, page.imagelength, max_pixels)
        # the decoder allocates whole tiles and every sample: a tiny image can declare huge ones
        if page.is_tiled:
            _check_size(page.tilewidth, page.tilelength * max(page.tiledepth, 1), max_pixels)
        if page.imagewidth * page.imagelength * page.samplesperpixel > 4 * max_pixels:
            raise _Bad(f"image too large: {page.imagewidth}x{page.imagelength} with {page.samplesperpixel} "
                       "samples per pixel")
        itemsize = page.dtype.itemsize if page.dtype is not None else max(1, page.bitspersample // 8)
        _check_bytes(page.imagewidth * page.imagelength * page.samplesperpixel * itemsize, max_pixels,
                     f"this {page.imagewidth}x{page.imagelength}x{page.samplesperpixel} {itemsize * 8}-bit TIFF")
        referenced = sum(page.databytecounts)
        if referenced > len(data):  # strips/tiles pointing at the same bytes: decoding them repeats work
            raise _Bad(f"damaged TIFF file (its strips or tiles add up to {referenced:,} bytes in a file of "
                       f"{len(data):,}: they overlap or lie past the end)")
        pm = page.photometric
        if pm == ph.SEPARATED:
            raise _Bad(_CMYK)
        if pm not in (ph.MINISBLACK, ph.MINISWHITE, ph.RGB, ph.PALETTE, ph.YCBCR):
            raise _Bad(f"unsupported TIFF colour model ({pm.name})")
        if page.axes not in ("YX", "YXS", "SYX"):
            raise _Bad(f"unsupported TIFF layout ({page.axes})")
        arr = page.asarray()
        if page.axes == "SYX":
            arr = np.moveaxis(arr, 0, -1)
        if pm == ph.PALETTE:
            arr = np.moveaxis(page.colormap, 0, -1)[arr]
            arr = (arr >> 8).astype(np.uint8) if arr.max(initial=0) > 255 else arr.astype(np.uint8)
        elif pm == ph.MINISWHITE and arr.dtype.kind in "ub":
            gray = arr[..., 0] if arr.ndim == 3 else arr
            np.invert(gray, out=gray)
        tags = page.tags
        icc, xmp = tags.valueof(34675), tags.valueof(700)
        orientation = tags.valueof(274)
    if arr.dtype == np.uint32:
        arr = np.divide(arr, np.float32(4294967295.0), dtype=np.float32)
    elif arr.dtype.kind == "i":
        raise _Bad(f"signed integer samples ({arr.dtype}) are not supported")
    xmp = xmp.encode("utf-8") if isinstance(xmp, str) else xmp
    return _Decoded(arr, "TIFF", icc or None, _tiff_exif(data), xmp or None,
                    None if orientation is None else int(orientation))


def _exif_parts(blob: bytes) -> tuple[dict, dict]:
    """Descriptive IFD0 tags and the Exif/GPS sub-IFDs of an EXIF blob (or of a whole TIFF file)."""
    ex = Image.Exif()
    ex.load(blob)
    ifd0 = {tag: ex[tag] for tag in _IFD0_KEEP if tag in ex}
    subs = {}
    for tag in (_EXIF_IFD, _GPS_IFD):
        sub = dict(ex.get_ifd(tag))
        if _INTEROP_IFD in sub:
            interop = dict(ex.get_ifd(_INTEROP_IFD))
            sub[_INTEROP_IFD] = interop
            if not interop:
                del sub[_INTEROP_IFD]
        if sub:
            subs[tag] = sub
    return ifd0, subs


def _tiff_exif(data: bytes) -> bytes | None:
    """The EXIF carried by a TIFF (its descriptive tags and sub-IFDs) as a standalone blob."""
    try:
        ifd0, subs = _exif_parts(data)
        if not ifd0 and not subs:
            return None
        out = Image.Exif()
        out.update(ifd0)
        out.update(subs)
        return out.tobytes()
    except Exception:
        return None


def _assemble(dec: _Decoded, name: str) -> Photo:
    arr = _normalise_samples(dec.pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise _Bad(f"unsupported pixel layout {dec.pixels.shape}")
    exif, exif_orientation = _reset_exif_orientation(dec.exif)
    xmp, xmp_orientation = _reset_xmp_orientation(dec.xmp)
    found = [o for o in (dec.orientation, exif_orientation, xmp_orientation) if o is not None]
    arr = _orient(arr, found[0] if found else 1)
    gray = arr.shape[2] < 3
    colour = arr[..., :1] if gray else arr[..., :3]
    alpha_index = 1 if gray else 3
    alpha = np.ascontiguousarray(arr[..., alpha_index]) if arr.shape[2] > alpha_index else None
    colour, icc, space = _to_srgb(colour, gray, dec.icc, name)
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    return Photo(np.ascontiguousarray(colour), alpha, icc, exif, xmp, dec.format, space, name)


def _normalise_samples(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        return np.multiply(a, 255, dtype=np.uint8)
    if a.dtype.kind == "u" and a.dtype.itemsize <= 2:
        return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))
    if a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float32), copy=False, nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(a, 0.0, 1.0, out=a)
    raise _Bad(f"unsupported sample type {a.dtype}")


# ----------------------------------------------------------------------------- orientation

def _reset_exif_orientation(exif: bytes | None) -> tuple[bytes | None, int | None]:
    """Return (exif with IFD0 Orientation patched in place to 1, the original value or None)."""
    if not exif:
        return None, None
    base = len(_EXIF_HEAD) if exif.startswith(_EXIF_HEAD) else 0
    try:
        order = {b"II": "<", b"MM": ">"}[exif[base:base + 2]]
        ifd = base + struct.unpack_from(order + "I", exif, base + 4)[0]
        for i in range(struct.unpack_from(order + "H", exif, ifd)[0]):
            at = ifd + 2 + 12 * i
            tag, typ, count = struct.unpack_from(order + "HHI", exif, at)
            if tag == 0x0112:
                if typ != 3 or count != 1:
                    return exif, None
                value = struct.unpack_from(order + "H", exif, at + 8)[0]
                if value != 1:
                    patched = bytearray(exif)
                    struct.pack_into(order + "H", patched, at + 8, 1)
                    exif = bytes(patched)
                return exif, value
    except (KeyError, struct.error):
        pass
    return exif, None


_XMP_ORIENTATION = re.compile(rb"(tiff:Orientation\s*(?:=\s*[\"']|>)\s*)([0-9])")


def _reset_xmp_orientation(xmp: bytes | None) -> tuple[bytes | None, int | None]:
    if not xmp:
        return None, None
    match = _XMP_ORIENTATION.search(xmp)
    if not match:
        return xmp, None
    return _XMP_ORIENTATION.sub(rb"\g<1>1", xmp), int(match.group(2))


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2..8; anything else is ignored) to an HxWxC array."""
    if orientation not in range(2, 9):
        return a
    try:
        import cv2  # several times faster than numpy's strided copies
    except ImportError:
        cv2 = None
    if cv2 is not None and a.shape[2] <= 4:
        a = np.ascontiguousarray(a)
        ops: dict[int, Callable] = {
            2: lambda m: cv2.flip(m, 1), 3: lambda m: cv2.rotate(m, cv2.ROTATE_180),
            4: lambda m: cv2.flip(m, 0), 5: cv2.transpose,
            6: lambda m: cv2.rotate(m, cv2.ROTATE_90_CLOCKWISE),
            7: lambda m: cv2.flip(cv2.transpose(m), -1),
            8: lambda m: cv2.rotate(m, cv2.ROTATE_90_COUNTERCLOCKWISE)}
        out = ops[orientation](a)
        return out.reshape(out.shape[:2] + a.shape[2:])  # cv2 drops a single channel axis
    t = a.swapaxes(0, 1)
    return {2: a[:, ::-1], 3: a[::-1, ::-1], 4: a[::-1], 5: t, 6: t[:, ::-1],
            7: t[::-1, ::-1], 8: t[::-1]}[orientation]


# ----------------------------------------------------------------------------- colour

_INTENT = imagecodecs.CMS.INTENT.RELATIVE_COLORIMETRIC
_FLAGS = imagecodecs.CMS.FLAGS.BLACKPOINTCOMPENSATION


@functools.cache
def _srgb_profile() -> bytes:
    return imagecodecs.cms_profile("srgb")


def _cms_to_srgb(pixels: np.ndarray, icc: bytes, gray: bool) -> np.ndarray:
    """LittleCMS transform to sRGB. 16-bit goes through float: lcms's optimised 16-bit path
    interpolates a grid and errs by up to ~6% near the gamut edge; its float path is exact."""
    if pixels.dtype == np.uint16:
        return from_float(_cms_to_srgb(to_float(pixels), icc, gray), np.uint16)
    transform = functools.partial(
        imagecodecs.cms_transform, profile=icc, outprofile=_srgb_profile(), intent=_INTENT,
        flags=_FLAGS, colorspace="gray" if gray else "rgb", outcolorspace="rgb")
    workers = min(os.cpu_count() or 1, 8, max(1, pixels.size >> 20))
    if pixels.dtype == np.uint8 or workers == 1:
        return transform(pixels)
    with ThreadPoolExecutor(workers) as pool:  # lcms runs without the GIL
        return np.concatenate(list(pool.map(transform, np.array_split(pixels, workers))))


@functools.lru_cache(maxsize=32)
def _profile_space(icc: bytes, gray: bool) -> str:
    """'sRGB' if ``icc`` maps a colour grid to sRGB within 1/255, else its description.

    Raises if the profile is unusable for these pixels.
    """
    model = icc[16:20]
    if model != (b"GRAY" if gray else b"RGB "):
        found = model.decode("latin-1").strip() or "unknown"
        raise ValueError(f"{found} profile on {'a gray' if gray else 'an RGB'} image")
    imagecodecs.cms_profile_validate(icc)
    levels = np.linspace(0.0, 1.0, 256 if gray else 9, dtype=np.float32)
    if gray:
        probe, expect = levels[:, None], levels[:, None, None]
    else:
        probe = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 1, 3)
        expect = probe
    if np.abs(_cms_to_srgb(probe, icc, gray) - expect).max() <= 1 / 255:
        return "sRGB"
    try:
        desc = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.profile_description
    except Exception:
        desc = ""
    return (desc or "").strip("\0 ") or "unnamed ICC profile"


def _to_srgb(colour: np.ndarray, gray: bool, icc: bytes | None, name: str):
    """Return (sRGB pixels HxWx1|3, profile to keep, source_space)."""
    if not icc:
        return colour, None, "sRGB"
    try:
        space = _profile_space(bytes(icc), gray)
    except Exception as exc:
        warnings.warn(f"{name}: ignoring unusable ICC profile ({_one_line(exc)}); assuming sRGB",
                      stacklevel=4)
        return colour, None, "sRGB"
    if space == "sRGB":
        return colour, None if gray else icc, "sRGB"
    out = _cms_to_srgb(colour[..., 0] if gray else colour, icc, gray)
    if out.dtype.kind == "f":
        np.clip(out, 0.0, 1.0, out=out)
    return out, icc, space


# ----------------------------------------------------------------------------- saving

def format_for_path(path) -> str:
    """'JPEG', 'PNG', 'TIFF' or 'WEBP' from a file name's extension."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    try:
        return _OUTPUT_FORMATS[ext]
    except KeyError:
        raise ImageError(f"{os.fspath(path)}: unsupported output format '{ext or 'no extension'}' "
                         "(use .jpg, .png, .tif or .webp)") from None


def save_photo(photo: Photo, rgb: np.ndarray, dest: str | os.PathLike | BinaryIO, *,
               fmt: str | None = None, quality: int = 95) -> None:
    """Encode ``rgb`` (HxWx3, Photo.rgb's dtypes) with ``photo``'s alpha and metadata to ``dest``.

    The format comes from ``fmt``, else the path's extension, else (streams) ``photo.format``.
    Paths are written atomically; nothing is created when encoding fails.
    """
    is_path = isinstance(dest, (str, os.PathLike))
    stream_name = getattr(dest, "name", None)
    name = os.fspath(dest) if is_path else stream_name if isinstance(stream_name, str) else "<stdout>"
    if fmt:
        fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt.upper(), fmt.upper())
    else:
        fmt = format_for_path(dest) if is_path else photo.format
    if fmt not in _ENCODERS:
        raise ImageError(f"{name}: cannot write {fmt} files (use JPEG, PNG, TIFF or WEBP)")
    rgb = np.asarray(rgb)
    if rgb.dtype == np.float64:
        rgb = rgb.astype(np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype not in (np.uint8, np.uint16, np.float32):
        raise ValueError(f"rgb must be HxWx3 uint8/uint16/float32, got {rgb.shape} {rgb.dtype}")
    alpha = photo.alpha
    if alpha is not None and alpha.shape != rgb.shape[:2]:
        raise ValueError(f"rgb is {rgb.shape[:2]} but the photo's alpha is {alpha.shape}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    if alpha is not None and fmt == "JPEG":
        warnings.warn(f"{name}: JPEG has no transparency; alpha channel dropped", stacklevel=2)
    icc = photo.icc_profile if photo.source_space == "sRGB" else _srgb_profile()
    try:
        data = _ENCODERS[fmt](rgb, alpha, icc, photo.exif, photo.xmp, quality)
    except _Bad as exc:
        raise ImageError(f"{name}: {exc}") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to encode the image") from None
    except Exception as exc:
        raise ImageError(f"{name}: cannot encode {fmt} ({_one_line(exc)})") from exc
    try:
        if is_path:
            with atomic_write(dest) as fh:
                fh.write(data)
        else:
            dest.write(data)
    except OSError as exc:
        raise ImageError(f"{name}: cannot write ({exc.strerror or _one_line(exc)})") from exc


def _pixels_for(rgb: np.ndarray, alpha: np.ndarray | None, dtype) -> np.ndarray:
    rgb = _as_dtype(rgb, dtype)
    if alpha is None:
        return np.ascontiguousarray(rgb)
    return np.concatenate([rgb, _as_dtype(alpha, dtype)[..., None]], axis=2)


def _check_dims(rgb: np.ndarray, limit: int, fmt: str) -> None:
    if max(rgb.shape[:2]) > limit:
        raise _Bad(f"{fmt} images are limited to {limit} pixels per side")


def _encode_jpeg(rgb, alpha, icc, exif, xmp, quality) -> bytes:
    _check_dims(rgb, 65500, "JPEG")
    pixels = np.ascontiguousarray(_as_dtype(rgb, np.uint8))
    data = imagecodecs.jpeg8_encode(pixels, level=quality, optimize=False,
                                    subsampling="444" if quality >= 90 else "420")
    segments = []
    if exif:
        segments += _jpeg_segment(0xE1, exif if exif.startswith(_EXIF_HEAD) else _EXIF_HEAD + exif, "EXIF")
    if xmp:
        segments += _jpeg_segment(0xE1, _XMP_JPEG_HEAD + xmp, "XMP")
    if icc:
        parts = [icc[i:i + 65519] for i in range(0, len(icc), 65519)]
        for n, part in enumerate(parts if len(parts) < 256 else [], 1):
            segments += _jpeg_segment(0xE2, b"ICC_PROFILE\0" + bytes((n, len(parts))) + part, "ICC")
    # after SOI and the encoder's JFIF APP0, as Pillow and libjpeg do
    at = 4 + struct.unpack_from(">H", data, 4)[0] if data[2:4] == b"\xff\xe0" else 2
    return b"".join([data[:at], *segments, data[at:]])


def _jpeg_segment(marker: int, payload: bytes, what: str) -> list[bytes]:
    if len(payload) > 65533:
        warnings.warn(f"{what} metadata too large for a JPEG segment; not written", stacklevel=4)
        return []
    return [struct.pack(">BBH", 0xFF, marker, len(payload) + 2), payload]


def _encode_png(rgb, alpha, icc, exif, xmp, quality) -> bytes:
    depth = np.uint8 if rgb.dtype == np.uint8 else np.uint16
    data = imagecodecs.png_encode(_pixels_for(rgb, alpha, depth), level=_PNG_LEVEL)
    chunks = []
    if icc:
        chunks.append(_png_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc)))
    if exif:
        chunks.append(_png_chunk(b"eXIf", exif[len(_EXIF_HEAD):] if exif.startswith(_EXIF_HEAD) else exif))
    if xmp:
        chunks.append(_png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp))
    return b"".join([data[:33], *chunks, data[33:]])  # right after the 13-byte IHDR chunk


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def _encode_webp(rgb, alpha, icc, exif, xmp, quality) -> bytes:
    _check_dims(rgb, 16383, "WebP")
    out = io.BytesIO()
    Image.fromarray(_pixels_for(rgb, alpha, np.uint8)).save(
        out, "WEBP", quality=quality, method=4, icc_profile=icc or b"", exif=exif or b"", xmp=xmp or b"")
    return out.getvalue()


# placeholder tags (tifffile refuses to write the sub-IFD pointers), renamed once the IFDs exist
_TIFF_PLACEHOLDERS = {_EXIF_IFD: _EXIF_IFD - 1, _GPS_IFD: _GPS_IFD - 1}


def _encode_tiff(rgb, alpha, icc, exif, xmp, quality) -> bytes:
    if rgb.dtype == np.float32:
        rgb = from_float(rgb, np.float32)  # clip to [0, 1], NaN -> 0
    pixels = _pixels_for(rgb, alpha, rgb.dtype)
    extratags = [(700, 1, len(xmp), xmp, True)] if xmp else []
    subs = {}
    if exif:
        try:
            ifd0, subs = _exif_parts(exif)
        except Exception:
            ifd0, subs = {}, {}
        extratags += [(tag, "s", 0, value, True) for tag, value in ifd0.items()
                      if isinstance(value, str) and value.isascii()]
        extratags += [(_TIFF_PLACEHOLDERS[tag], 4, 1, 0, True) for tag in subs]
    bigtiff = pixels.nbytes > 3 << 30
    out = io.BytesIO()
    tifffile.imwrite(out, pixels, photometric="rgb", planarconfig="contig", byteorder="<",
                     extrasamples=(2,) if alpha is not None else None, compression="zlib",
                     predictor=True, iccprofile=icc or None, metadata=None, software=False,
                     extratags=extratags, bigtiff=bigtiff)
    data = bytearray(out.getbuffer())
    if subs and not bigtiff:
        _link_exif_ifds(data, subs)
    return bytes(data)


def _link_exif_ifds(data: bytearray, subs: dict) -> None:
    """Append the EXIF/GPS IFDs to a little-endian TIFF and point its placeholder tags at them."""
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        tags = tif.pages.first.tags
        slots = {tag: (tags[_TIFF_PLACEHOLDERS[tag]].offset, tags[_TIFF_PLACEHOLDERS[tag]].valueoffset)
                 for tag in subs}
    for tag, (entry, value_at) in slots.items():
        data += b"\0" * (len(data) % 2)
        ifd = TiffImagePlugin.ImageFileDirectory_v2(b"II*\0\x08\0\0\0", group=tag)
        for key, value in subs[tag].items():
            ifd[key] = value
        offset = len(data)
        data += ifd.tobytes(offset)
        struct.pack_into("<H", data, entry, tag)
        struct.pack_into("<I", data, value_at, offset)


_READERS = {"PNG": _read_png, "TIFF": _read_tiff, "JPEG": _read_jpeg}
_ENCODERS = {"JPEG": _encode_jpeg, "PNG": _encode_png, "TIFF": _encode_tiff, "WEBP": _encode_webp}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = "".join(c if c.isprintable() else "?" for c in text)  # file bytes may hold terminal escapes
    return re.sub(r"<_?io\.\w+ object at 0x[0-9a-fA-F]+>", "data", text)[:300]
