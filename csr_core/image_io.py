"""Photo file I/O: decode JPEG, PNG, TIFF, WebP, HEIF/AVIF, RAW (BMP, GIF) to numpy and encode back
with metadata.

Pixels
    ``Photo.rgb`` is HxWx3 sRGB, C-contiguous: uint8 (8-bit sources), uint16 (16-bit PNG/TIFF, RAW,
    10/12-bit HEIF and AVIF scaled to 16 bits) or float32 in [0, 1] (float TIFF; NaN and values
    outside [0, 1] are clipped). Gray is replicated to
    RGB, palettes are expanded, alpha is split off untouched (a TIFF's associated alpha is first divided
    out of its colours). The EXIF orientation (for TIFF the Orientation tag; without EXIF the XMP
    ``tiff:Orientation``) is applied to the pixels and reset to 1 on writing. RAW (extra ``raw``) and HEIF
    (extra ``heif``) are decoded by ``csr_core.camera``: a
    RAW is developed neutrally to 16-bit sRGB (a profile in the file is its preview's, ignored) and
    written as 16-bit TIFF unless told otherwise, as converted to sRGB (see Colour).
Colour
    A source whose ICC profile is not sRGB (Adobe RGB, Display P3, ProPhoto, a gray gamma...) is
    converted to sRGB on load by LittleCMS (imagecodecs) at the source's own precision (8/16-bit or
    float), relative colorimetric intent with black-point compensation. ``source_space`` then holds
    the profile's description, and ``save_photo`` embeds an sRGB profile instead of the source's.
    A profile counts as sRGB when it maps a colour grid to sRGB within 1/255, whatever its name:
    pixels are left alone and its bytes are carried to the output (for a gray source it is dropped,
    the output being RGB). A HEIF/AVIF without a profile that declares its colour space in an nclx box
    (Display P3, BT.2020...) is converted from a profile built for it; one that declares an HDR curve (PQ,
    HLG) is tone-mapped to sRGB by ``csr_core.hdr`` instead (a profile it carries is not applied), with a
    notice. Untagged sources are taken as sRGB and stay untagged. An unusable profile (unparseable, or not
    matching the pixels' colour model) is warned about, ignored and dropped.
Output
    JPEG and WebP are 8-bit (16-bit/float data is rounded); PNG is 8- or 16-bit (float -> 16-bit);
    TIFF keeps uint8/uint16/float32 (deflate + predictor). Metadata (EXIF, IPTC, XMP, ICC, comments,
    PNG text) is read and written by exiv2 (``csr_core.metadata``); the same input and options give
    the same output bytes.
Safety
    Declared dimensions are checked against ``max_pixels`` before anything is decoded, by every
    decoder, and so are the bytes the decoder will allocate (``BYTES_PER_PIXEL`` per allowed pixel:
    samples x sample size, plus a progressive JPEG's coefficient buffers); Pillow's own bomb limit is
    switched off (``csr_core.pillow``) since these checks replace it. Work that the file
    could repeat without paying for it is capped from its structure: JPEG scans (``MAX_JPEG_SCANS``),
    PNG chunks (``MAX_PNG_CHUNKS``) and image data beyond what the header needs, TIFF strips or tiles
    that overlap, HEIF/AVIF sizes that their coded data cannot fill (``heif_guard``). libjpeg's
    warnings (missing or corrupt data) are errors. Every failure is an ``ImageError`` with one line:
    "<name>: <reason>".
"""
from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
import re
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

import imagecodecs
import numpy as np
import simplejpeg

from . import __version__, camera, hdr, heif_guard, jpeg_guard, metadata, png_guard
from .errors import ImageError
from .fsutil import atomic_write
from .pillow import pil_image
from .pixels import clipped_float, from_float, to_float
from .settings import env_number

__all__ = ["Photo", "load_photo", "save_photo", "format_for_path", "to_float", "from_float",
           "SUPPORTED_EXTENSIONS", "DEFAULT_MAX_PIXELS"]

# tifffile logs damaged-file details that would reach stderr through logging's last resort handler;
# our ImageError already says it (configured logging still receives them)
logging.getLogger("tifffile").addHandler(logging.NullHandler())
logging.getLogger("imagecodecs").addHandler(logging.NullHandler())  # libpng's "PNG warning: ..." lines


def _env_max_pixels(default: int = 200_000_000) -> int:
    """CSR_MAX_PIXELS, the largest photo in pixels (unset or empty: ``default``), read on import: a bad
    value is reported once by a command, not once per photo."""
    return env_number("CSR_MAX_PIXELS", default, "the largest photo in pixels", "300000000 or 300e6", count=True)


DEFAULT_MAX_PIXELS = _env_max_pixels()
#: Memory budget per allowed pixel: 200 MP -> 2.4 GB, for the decoder and for the whole run.
BYTES_PER_PIXEL = 12
#: The run after decoding (retouching in place, the encoder's conversions, its output and exiv2's
#: copies of it) holds at most this many copies of the working pixels, HxWx3 at 1, 2 or 4 bytes a
#: sample (measured: 2 for float32 TIFF to TIFF, under 3 for 8-bit to WebP). So a 200 MP budget
#: takes 8-bit photos of 200 MP, 16-bit of 133 MP and float of 67 MP.
RUN_COPIES = 3
#: Most scans a JPEG may have (libjpeg's default progressive script has 10) ...
MAX_JPEG_SCANS = 100
#: ... and at most this many full-image scan passes per allowed pixel (a 200 MP JPEG: 32 scans).
SCAN_PASSES_PER_PIXEL = 32
#: Most chunks of a PNG other than IDAT; IDAT chunks: at most one per KiB of the file, plus this many.
MAX_PNG_CHUNKS = 1000
SUPPORTED_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif",
                        *camera.HEIF_EXTENSIONS, *camera.RAW_EXTENSIONS)
_OUTPUT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".jpe": "JPEG", ".png": "PNG",
                   ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP"}
_PILLOW_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP", "GIF", "AVIF")
_CMYK = "CMYK images are not supported; convert to RGB first"
_PNG_LEVEL = 3  # zlib level: ~3x faster than 6 for files ~6% larger


@dataclass
class Photo:
    """A decoded photo: sRGB pixels plus what is needed to write it back faithfully.

    ``icc_profile`` is the source's profile (None if absent or unusable); ``meta`` is everything
    else the file carries (``csr_core.metadata``). See the module docstring for the colour rules.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    meta: metadata.Metadata = field(default_factory=metadata.Metadata)
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
    orientation: int | None = None  # when not taken from the metadata (TIFF tag; 1: decoder applied it)
    icc: bytes | None = None  # the colour space a HEIF/AVIF declares without an ICC profile (its nclx)
    hdr: tuple[str, int] | None = None  # the HDR curve (PQ, HLG) and nclx primaries of a HEIF/AVIF: tone-mapped


def load_photo(src: str | os.PathLike | bytes | BinaryIO, *, max_pixels: int = DEFAULT_MAX_PIXELS,
               name: str | None = None) -> Photo:
    """Decode a photo from a path, bytes or a binary stream (see the module docstring)."""
    data, name = _read_source(src, name)
    if not data:
        raise ImageError(f"{name}: empty file")
    reader = _READERS.get(_sniff(data, name), _read_pillow)
    try:
        dec = reader(data, max_pixels)
        return _assemble(dec, metadata.read(data, dec.format, name), name)
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


def _sniff(data: bytes, name: str) -> str | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    camera_format = camera.sniff(data, name)
    if camera_format:
        return camera_format
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return "TIFF"
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise _Bad(f"zero-size image ({width}x{height})")
    if width * height > max_pixels:
        raise _Bad(f"image too large: {width}x{height} ({_megapixels(width * height)} MP) exceeds the "
                   f"limit of {max_pixels / 1e6:g} MP (set CSR_MAX_PIXELS to raise it)")


def _megapixels(pixels: int) -> str:
    """Megapixels as people write them: '10000', '201' (whole from 10 up), '4.2', '0.06' (two digits)."""
    mp = pixels / 1e6
    return f"{mp:.0f}" if mp >= 10 else f"{mp:.2g}"


def _check_bytes(decoder: int, max_pixels: int, what: str, width: int, height: int, sample_bytes: int) -> None:
    """The decoder's allocation (``decoder`` bytes), and the run's (RUN_COPIES of the width x height
    working pixels of ``sample_bytes``), against the budget of BYTES_PER_PIXEL per allowed pixel."""
    budget = max_pixels * BYTES_PER_PIXEL
    nbytes = max(decoder, RUN_COPIES * width * height * 3 * sample_bytes)
    if nbytes > budget:
        raise _Bad(f"image too large: retouching {what} needs {nbytes / 1e6:,.0f} MB, more than the limit of "
                   f"{budget / 1e6:,.0f} MB ({BYTES_PER_PIXEL} bytes per allowed pixel; set CSR_MAX_PIXELS to raise it)")


def _read_png(data: bytes, max_pixels: int) -> _Decoded:
    """Walk the chunks (size limit, metadata, critical-chunk CRCs, whole chunks), vet the image
    data (``png_guard``: libpng must never fail on it), then decode with libpng. Text chunks are
    kept from libpng: it would inflate every one (up to 8 MB each) for nothing, as csr reads the
    text itself within the metadata budget (``metadata.read``)."""
    ihdr = None
    idat: list[memoryview] = []
    view = memoryview(data)
    others = 0
    pos = 8
    text: list[tuple[int, int]] = []
    while pos + 12 <= len(data):
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if ctype in (b"tEXt", b"zTXt", b"iTXt"):
            text.append((pos, pos + 12 + length))
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
                _check_bytes(png_guard.decoded_bytes(body), max_pixels, "this PNG", width, height,
                             2 if body[8] == 16 else 1)
            except png_guard.PngDataError as exc:
                raise _Bad(str(exc)) from None
        elif ctype == b"acTL" and len(body) == 8 and struct.unpack(">I", body[:4])[0] > 1:
            raise _Bad("animated images are not supported")
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
    if text:
        keep = [0, *(at for span in text for at in span), len(data)]
        data = b"".join(view[keep[i]:keep[i + 1]] for i in range(0, len(keep), 2))
    return _Decoded(imagecodecs.png_decode(data), "PNG")


def _read_jpeg(data: bytes, max_pixels: int) -> _Decoded:
    """Budget the decode from the file's structure (jpeg_guard), then libjpeg-turbo (simplejpeg) in
    strict mode: a warning about missing or corrupt data is an error, never a grey-padded picture."""
    try:
        height, width, space, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as exc:
        raise _Bad(f"damaged or truncated JPEG ({_one_line(exc)})") from None
    _check_size(width, height, max_pixels)
    if space in ("CMYK", "YCCK"):
        raise _Bad(_CMYK)
    max_scans = min(MAX_JPEG_SCANS, SCAN_PASSES_PER_PIXEL * max_pixels // (width * height))
    try:
        info = jpeg_guard.inspect(data, max_scans)
    except ValueError as exc:
        raise _Bad(f"refusing a JPEG with too many scans ({exc}; the limit is {MAX_JPEG_SCANS}, fewer for large "
                   "images)") from None
    if info.too_little_data():
        raise _Bad(f"truncated JPEG ({info.scan_bytes:,} bytes of scan data cannot code {width}x{height} pixels)")
    gray = space == "Gray"
    _check_bytes(width * height * (1 if gray else 3) + info.coefficient_bytes(), max_pixels, "this JPEG",
                 width, height, 1)
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="GRAY" if gray else "RGB", strict=True)
    except ValueError as exc:
        raise _Bad(f"damaged or truncated JPEG ({_one_line(exc)})") from None
    if pixels.shape[:2] != (height, width):
        raise _Bad(f"damaged JPEG (decoded {pixels.shape[1]}x{pixels.shape[0]}, header says {width}x{height})")
    return _Decoded(pixels[..., 0] if gray else pixels, "JPEG")


def _read_pillow(data: bytes, max_pixels: int) -> _Decoded:
    im, dec = _pil_opened(data, max_pixels)
    dec.pixels = _pil_pixels(im)
    return dec


def _pil_opened(data: bytes, max_pixels: int):
    """(the Pillow image, not yet decoded; a _Decoded with its format and orientation but no pixels)."""
    im = _pil_open(data)
    _check_size(*im.size, max_pixels)
    fmt = "JPEG" if im.format == "MPO" else im.format
    frames = getattr(im, "n_frames", 1)
    if frames > 1 and fmt != "JPEG":  # MPO's second frame is a preview, not animation
        raise _Bad(f"animated images are not supported ({frames} frames)")
    if im.mode == "CMYK":
        raise _Bad(_CMYK)
    orientation = im.getexif().get(0x0112) if fmt == "AVIF" else None  # Pillow's, from irot/imir
    return im, _Decoded(np.empty(0, np.uint8), fmt, orientation)


def _read_webp(data: bytes, max_pixels: int) -> _Decoded:
    """libwebp through imagecodecs, straight into the array (Pillow's decoder holds two more
    canvases: a flat 196 MP lossless file took 3.4 GB there), budgeted as the output plus the
    lossless decoder's own 4 bytes per pixel."""
    width, height, alpha, animated = _webp_header(data)
    _check_size(width, height, max_pixels)
    if animated:
        raise _Bad("animated images are not supported")
    _check_bytes(width * height * (4 + 4 if alpha else 3 + 4), max_pixels, "this WebP", width, height, 1)
    return _Decoded(imagecodecs.webp_decode(data), "WEBP")


def _webp_header(data: bytes) -> tuple[int, int, bool, bool]:
    """(width, height, alpha, animated) from a WebP's first chunk. Read here because neither
    imagecodecs nor Pillow tells them without allocating the canvas (Pillow: two, on opening)."""
    chunk, body = data[12:16], data[20:30]
    if chunk == b"VP8X" and len(body) == 10:
        return (int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1,
                bool(body[0] & 0x10), bool(body[0] & 0x02))
    if chunk == b"VP8L" and len(body) >= 5 and body[0] == 0x2F:
        bits = int.from_bytes(body[1:5], "little")
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1, bool(bits >> 28 & 1), False
    if chunk == b"VP8 " and body[3:6] == b"\x9d\x01\x2a":
        return int.from_bytes(body[6:8], "little") & 0x3FFF, int.from_bytes(body[8:10], "little") & 0x3FFF, False, False
    raise _Bad("not a supported image (damaged WebP header)")


def _pil_open(data: bytes):
    from PIL import UnidentifiedImageError

    try:
        return pil_image().open(io.BytesIO(data), formats=_PILLOW_FORMATS)
    except UnidentifiedImageError:
        raise _Bad("not a supported image (unrecognised format or corrupt data)") from None


def _pil_pixels(im) -> np.ndarray:
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


def _read_raw(data: bytes, max_pixels: int) -> _Decoded:
    dng = False
    if data[:4] in (b"II*\0", b"MM\0*"):  # DNG and the TIFF-based RAWs: LibRaw trusts their tile tables
        import tifffile

        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            page = tif.pages.first
            _check_segments(page, len(data))
            subs = page.pages or ()  # the raw image is usually a SubIFD
            for i in range(min(len(subs), 8)):
                _check_segments(subs[i], len(data))
            dng = page.is_dng
    develop = functools.partial(camera.develop_raw, default_crop=dng)
    rgb, orientation = _camera(develop, data, max_pixels, "this RAW")
    return _Decoded(rgb, "RAW", orientation)


def _read_heif(data: bytes, max_pixels: int) -> _Decoded:
    icc, curve, _ = _check_heif(data)
    return _Decoded(_camera(camera.decode_heif, data, max_pixels, "this HEIF"), "HEIF", 1, icc, curve)


def _read_avif(data: bytes, max_pixels: int) -> _Decoded:
    """Pillow opens every AVIF (size, frames, orientation from irot/imir) and decodes an 8-bit one. Its
    libavif plugin only ever hands out 8 bits a sample, as does pillow-avif-plugin, and pillow-heif's
    wheels carry no AV1 decoder; so a 10- or 12-bit AVIF is decoded by libavif through imagecodecs (a
    dependency already, kept up with libavif's releases), to uint16 like a deep HEIC."""
    icc, curve, depth = _check_heif(data)
    im, dec = _pil_opened(data, max_pixels)
    if depth > 8:
        width, height = im.size
        colours = 4 if "A" in im.mode else 3
        # libavif's YUV(A) planes and the interleaved result, 2 bytes a sample each
        _check_bytes((3 + colours) * 2 * width * height, max_pixels, f"this {depth}-bit AVIF", width, height, 2)
        dec.pixels = _full_range(imagecodecs.avif_decode(data), depth)
    else:
        dec.pixels = _pil_pixels(im)
    dec.icc, dec.hdr = icc, curve
    return dec


def _full_range(pixels: np.ndarray, depth: int) -> np.ndarray:
    """``depth``-bit samples (uint16, 0 to 2**depth - 1) scaled to 0-65535, rounded; in place, a million
    samples at a time, so that no copy of the photo is made beyond the decoder's, which the budget counts."""
    if pixels.dtype != np.uint16:  # libavif gave 8 bits after all: as they are
        return pixels
    top = (1 << depth) - 1
    pixels = np.ascontiguousarray(pixels)
    flat = pixels.reshape(-1)
    for start in range(0, flat.size, 1 << 20):
        band = flat[start:start + (1 << 20)]
        wide = band.astype(np.uint32)
        wide *= 65535
        wide += top // 2
        band[:] = np.floor_divide(wide, top, out=wide)
    return pixels


def _check_heif(data: bytes) -> tuple[bytes | None, tuple[str, int] | None, int]:
    """Refuse a declared size that the coded data cannot fill, and grid tiles sharing data (heif_guard);
    return the profile of the colour space its nclx box declares, if other than sRGB, its HDR curve with its
    primaries, and its AV1 bit depth."""
    try:
        info = heif_guard.inspect(data)
    except heif_guard.HeifDataError as exc:
        raise _Bad(str(exc)) from None
    if not info.nclx:
        return None, None, info.depth
    primaries, transfer = info.nclx
    curve = hdr.CURVES.get(transfer)
    return _nclx_profile(primaries, transfer), (curve, primaries) if curve else None, info.depth


def _camera(decode, data: bytes, max_pixels: int, what: str) -> np.ndarray:
    pil_image()  # pillow-heif decodes through Pillow: its bomb limit must be off first

    def check(width: int, height: int, sample_bytes: int, decoder_bytes: int) -> None:
        _check_size(width, height, max_pixels)
        _check_bytes(decoder_bytes, max_pixels, what, width, height, sample_bytes)

    try:
        return decode(data, check)
    except (camera.MissingExtra, camera.Unreadable) as exc:
        raise _Bad(str(exc)) from None


def _read_tiff(data: bytes, max_pixels: int) -> _Decoded:
    import tifffile

    ph = tifffile.PHOTOMETRIC
    with tifffile.TiffFile(io.BytesIO(data)) as tif:
        if not tif.pages:
            raise _Bad("TIFF file contains no image")
        page = tif.pages.first
        subs = page.pages or ()  # a NEF, ARW, PEF...: a preview first, the raw image in a SubIFD
        if page.is_dng or any(p.photometric in (ph.CFA, ph.LINEAR_RAW) for p in (page, *subs[:8])):
            return _read_raw(data, max_pixels)
        _check_segments(page, len(data))
        _check_size(page.imagewidth, page.imagelength, max_pixels)
        # the decoder allocates whole tiles and every sample: a tiny image can declare huge ones
        if page.is_tiled:
            _check_size(page.tilewidth, page.tilelength * max(page.tiledepth, 1), max_pixels)
        if page.imagewidth * page.imagelength * page.samplesperpixel > 4 * max_pixels:
            raise _Bad(f"image too large: {page.imagewidth}x{page.imagelength} with {page.samplesperpixel} "
                       "samples per pixel")
        itemsize = page.dtype.itemsize if page.dtype is not None else max(1, page.bitspersample // 8)
        floating = page.dtype is not None and page.dtype.kind == "f" or itemsize > 2  # worked on as float32
        _check_bytes(page.imagewidth * page.imagelength * page.samplesperpixel * itemsize, max_pixels,
                     f"this {page.imagewidth}x{page.imagelength}x{page.samplesperpixel} {itemsize * 8}-bit TIFF",
                     page.imagewidth, page.imagelength, 4 if floating else min(itemsize, 2))
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
        orientation = page.tags.valueof(274)
        colours = page.samplesperpixel - len(page.extrasamples)
        associated = page.extrasamples[:1] == (tifffile.EXTRASAMPLE.ASSOCALPHA,) and arr.ndim == 3
    if arr.dtype == np.uint32:
        arr = np.divide(arr, np.float32(4294967295.0), dtype=np.float32)
    elif arr.dtype.kind == "i":
        raise _Bad(f"signed integer samples ({arr.dtype}) are not supported")
    if associated and colours in (1, 3) and arr.shape[2] > colours:
        _unpremultiply(arr, colours)
    return _Decoded(arr, "TIFF", None if orientation is None else int(orientation))


def _unpremultiply(arr: np.ndarray, colours: int) -> None:
    """Divide the colour samples by alpha, in place, a band of rows at a time: a TIFF's associated alpha
    (premultiplied colours) becomes the straight alpha that csr retouches and writes."""
    top = 1.0 if arr.dtype.kind == "f" else float(np.iinfo(arr.dtype).max)
    for band in np.array_split(arr, max(1, arr.shape[0] // 256)):
        alpha = band[..., colours:colours + 1].astype(np.float32)
        colour = band[..., :colours].astype(np.float32)
        np.divide(colour * np.float32(top), alpha, out=colour, where=alpha > 0)
        np.minimum(colour, top, out=colour)
        band[..., :colours] = colour if arr.dtype.kind == "f" else np.rint(colour)


def _check_segments(page, size: int) -> None:
    """Strips/tiles pointing at the same bytes (or past the end) would make the decoder (tifffile's
    or LibRaw's) repeat work the file never paid for: their byte counts must fit in the file."""
    referenced = sum(page.databytecounts)
    if referenced > size:
        raise _Bad(f"damaged TIFF file (its strips or tiles add up to {referenced:,} bytes in a file of "
                   f"{size:,}: they overlap or lie past the end)")


def _assemble(dec: _Decoded, meta: metadata.Metadata, name: str) -> Photo:
    arr = _normalise_samples(dec.pixels)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise _Bad(f"unsupported pixel layout {dec.pixels.shape}")
    arr = _orient(arr, meta.orientation() if dec.orientation is None else dec.orientation)
    gray = arr.shape[2] < 3
    colour = arr[..., :1] if gray else arr[..., :3]
    alpha_index = 1 if gray else 3
    alpha = np.ascontiguousarray(arr[..., alpha_index]) if arr.shape[2] > alpha_index else None
    raw = dec.format == "RAW"  # LibRaw developed it to sRGB: a profile in the file is its preview's
    if dec.hdr:  # its nclx, not a profile, says what its numbers mean
        curve, primaries = dec.hdr
        colour, icc, space = hdr.to_sdr(colour, curve, _linear_to_srgb(primaries)), None, f"HDR ({curve})"
        warnings.warn(f"{name}: an HDR photo ({curve} curve), tone-mapped to a standard (SDR) one", stacklevel=3)
    else:
        declared = None if gray else dec.icc  # an nclx's primaries say nothing about gray
        colour, icc, space = _to_srgb(colour, gray, None if raw else meta.icc or declared, name)
    if raw:  # converted from the camera's colours: written with an sRGB profile and EXIF ColorSpace sRGB
        space = "camera colours"
    if colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    meta.icc = None  # kept as Photo.icc_profile, where the colour rules decide it
    return Photo(np.ascontiguousarray(colour), alpha, icc, meta, dec.format, space, name)


def _normalise_samples(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.bool_:
        return np.multiply(a, 255, dtype=np.uint8)
    if a.dtype.kind == "u" and a.dtype.itemsize <= 2:
        return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))
    if a.dtype.kind == "f":  # in place: the decoder's array is ours, and a copy would double the peak
        a = a.astype(np.float32, copy=False)
        if not a.flags.writeable:
            a = a.copy()
        np.fmax(a, 0.0, out=a)  # NaN and -inf -> 0
        return np.fmin(a, 1.0, out=a)  # +inf -> 1
    raise _Bad(f"unsupported sample type {a.dtype}")


# ----------------------------------------------------------------------------- orientation

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
    """LittleCMS's sRGB profile with a fixed creation date (lcms stamps the current time), so that
    the same input gives the same output bytes."""
    icc = bytearray(imagecodecs.cms_profile("srgb"))
    icc[24:36] = struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
    if any(icc[84:100]):  # a profile ID (MD5 with flags, intent and ID zeroed) must match
        probe = bytearray(icc)
        probe[44:48], probe[64:68], probe[84:100] = bytes(4), bytes(4), bytes(16)
        icc[84:100] = hashlib.md5(probe).digest()
    return bytes(icc)


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


#: (sha256 of a profile, gray) -> its space, for the last 32 profiles: keyed by digest, so that the cache
#: never keeps a profile (up to tens of MB each) alive after its photo.
_SPACES: dict[tuple[bytes, bool], str] = {}


def _profile_space(icc: bytes, gray: bool) -> str:
    """'sRGB' if ``icc`` maps a colour grid to sRGB within 1/255, else its description (cached).

    Raises if the profile is unusable for these pixels.
    """
    key = (hashlib.sha256(icc).digest(), gray)
    space = _SPACES.get(key)
    if space is None:
        space = _SPACES[key] = _measure_space(icc, gray)
        while len(_SPACES) > 32:
            _SPACES.pop(next(iter(_SPACES)), None)
    return space


def _measure_space(icc: bytes, gray: bool) -> str:
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
        from PIL import ImageCms

        desc = ImageCms.ImageCmsProfile(io.BytesIO(icc)).profile.profile_description
    except Exception:
        desc = ""
    return (desc or "").strip("\0 ") or "unnamed ICC profile"


#: nclx colour primaries (ITU-T H.273) other than sRGB's: red, green, blue and white x, y
_NCLX_PRIMARIES = {
    4: (0.67, 0.33, 0.21, 0.71, 0.14, 0.08, 0.310, 0.316), 5: (0.64, 0.33, 0.29, 0.60, 0.15, 0.06, 0.3127, 0.3290),
    6: (0.630, 0.340, 0.310, 0.595, 0.155, 0.070, 0.3127, 0.3290),
    7: (0.630, 0.340, 0.310, 0.595, 0.155, 0.070, 0.3127, 0.3290),
    8: (0.681, 0.319, 0.243, 0.692, 0.145, 0.049, 0.310, 0.316),
    9: (0.708, 0.292, 0.170, 0.797, 0.131, 0.046, 0.3127, 0.3290),
    11: (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.314, 0.351),  # DCI-P3
    12: (0.680, 0.320, 0.265, 0.690, 0.150, 0.060, 0.3127, 0.3290),  # Display P3
    22: (0.630, 0.340, 0.295, 0.605, 0.155, 0.077, 0.3127, 0.3290)}
#: nclx transfer characteristics -> gamma (None: the sRGB curve, as viewers show BT.709-coded photos)
_NCLX_GAMMA = {1: None, 2: None, 6: None, 13: None, 14: None, 15: None, 4: 2.2, 5: 2.8, 8: 1.0}


_SRGB_PRIMARIES = (0.64, 0.33, 0.30, 0.60, 0.15, 0.06, 0.3127, 0.3290)


@functools.cache
def _nclx_profile(primaries: int, transfer: int) -> bytes | None:
    """An ICC profile (LittleCMS) of the colour space a HEIF/AVIF declares in its nclx box, where
    its primaries are not sRGB's and its transfer curve is an SDR one (PQ and HLG: see ``hdr``)."""
    xy = _NCLX_PRIMARIES.get(primaries)
    if xy is None or transfer not in _NCLX_GAMMA:
        return None
    gamma = _NCLX_GAMMA[transfer]
    if gamma is None:
        x = np.linspace(0.0, 1.0, 4096)
        curve = {"transferfunction": np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
                 .astype(np.float32)}
    else:
        curve = {"gamma": gamma}
    return _rgb_profile(xy, **curve)


def _rgb_profile(xy, **curve) -> bytes:
    rgb = [v for i in range(3) for v in (*xy[2 * i:2 * i + 2], 1.0)]
    return bytes(imagecodecs.cms_profile("rgb", whitepoint=[*xy[6:], 1.0], primaries=rgb, **curve))


@functools.cache
def _linear_to_srgb(primaries: int) -> np.ndarray:
    """The 3x3 matrix taking linear light in an nclx's primaries to linear sRGB, measured by LittleCMS
    (relative colorimetric, as every conversion here; unbounded in float): BT.2020 gives BT.2087's."""
    if primaries not in _NCLX_PRIMARIES:  # BT.709 (sRGB's), unspecified or unknown: as they are
        return np.eye(3, dtype=np.float32)
    probe = np.eye(3, dtype=np.float32).reshape(3, 1, 3)
    out = imagecodecs.cms_transform(probe, _nclx_profile(primaries, 8), _rgb_profile(_SRGB_PRIMARIES, gamma=1.0),
                                    intent=_INTENT, flags=_FLAGS, colorspace="rgb", outcolorspace="rgb")
    return np.ascontiguousarray(out.reshape(3, 3).T, np.float32)


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


def output_format(source_format: str) -> str:
    """The output format for a source format csr cannot write: RAW -> 16-bit TIFF, HEIF/AVIF ->
    JPEG, BMP/GIF -> PNG; writable formats map to themselves."""
    return source_format if source_format in _ENCODERS else _DEFAULT_OUTPUT.get(source_format, "PNG")


def output_extension(src) -> str:
    """The extension of the default output for an input file name (its own, where csr writes it)."""
    ext = os.path.splitext(os.fspath(src))[1].lower()
    if ext in _OUTPUT_FORMATS:
        return os.path.splitext(os.fspath(src))[1]
    fmt = "RAW" if ext in camera.RAW_EXTENSIONS else "HEIF" if ext in camera.HEIF_EXTENSIONS else ext
    return {"TIFF": ".tif", "JPEG": ".jpg", "PNG": ".png"}[output_format(fmt)]


def save_photo(photo: Photo, rgb: np.ndarray, dest: str | os.PathLike | BinaryIO, *,
               fmt: str | None = None, quality: int = 95, made: dict[str, str] | None = None) -> None:
    """Encode ``rgb`` (HxWx3, Photo.rgb's dtypes) with ``photo``'s alpha and metadata to ``dest``.

    The format comes from ``fmt``, else the path's extension, else (streams) ``photo.format``'s
    ``output_format``. ``made`` (``style``, ``strength``) is recorded in XMP with csr as
    ``xmp:CreatorTool``. What the format cannot hold is named in one warning. Paths are written
    atomically; nothing is created when encoding fails.
    """
    is_path = isinstance(dest, (str, os.PathLike))
    stream_name = getattr(dest, "name", None)
    name = os.fspath(dest) if is_path else stream_name if isinstance(stream_name, str) else "<stdout>"
    if fmt:
        fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt.upper(), fmt.upper())
    else:
        fmt = format_for_path(dest) if is_path else output_format(photo.format)
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
    icc = photo.icc_profile if photo.source_space == "sRGB" else _srgb_profile()
    try:
        data = _ENCODERS[fmt](rgb, alpha, quality)
        data, lost = _with_metadata(data, fmt, photo, rgb, icc, made)
    except _Bad as exc:
        raise ImageError(f"{name}: {exc}") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to encode the image") from None
    except Exception as exc:
        raise ImageError(f"{name}: cannot encode {fmt} ({_one_line(exc)})") from exc
    if alpha is not None and fmt == "JPEG":
        lost.insert(0, "transparency (alpha channel dropped)")
    if lost:
        warnings.warn(f"{name}: {fmt} cannot hold {', '.join(lost)}; not written", stacklevel=2)
    try:
        if is_path:
            with atomic_write(dest) as fh:
                fh.write(data)
        else:
            dest.write(data)
    except OSError as exc:
        raise ImageError(f"{name}: cannot write ({exc.strerror or _one_line(exc)})") from exc


def _with_metadata(data: bytes, fmt: str, photo: Photo, rgb: np.ndarray, icc: bytes | None,
                   made: dict[str, str] | None) -> tuple[bytes, list[str]]:
    if fmt == "TIFF" and data[2:4] == b"+\0":
        return data, ["metadata (a BigTIFF: exiv2 cannot write it)"]
    made = {"creator": f"csr {__version__}", **(made or {})}
    return metadata.write(data, fmt, photo.meta, icc=icc, size=(rgb.shape[1], rgb.shape[0]),
                          converted=photo.source_space != "sRGB", made=made, thumb=rgb)


def _pixels_for(rgb: np.ndarray, alpha: np.ndarray | None, dtype) -> np.ndarray:
    rgb = _as_dtype(rgb, dtype)
    if alpha is None:
        return np.ascontiguousarray(rgb)
    return np.concatenate([rgb, _as_dtype(alpha, dtype)[..., None]], axis=2)


def _check_dims(rgb: np.ndarray, limit: int, fmt: str) -> None:
    if max(rgb.shape[:2]) > limit:
        raise _Bad(f"{fmt} images are limited to {limit} pixels per side")


def _encode_jpeg(rgb, alpha, quality) -> bytes:
    _check_dims(rgb, 65500, "JPEG")
    pixels = np.ascontiguousarray(_as_dtype(rgb, np.uint8))
    return imagecodecs.jpeg8_encode(pixels, level=quality, optimize=False,
                                    subsampling="444" if quality >= 90 else "420")


def _encode_png(rgb, alpha, quality) -> bytes:
    depth = np.uint8 if rgb.dtype == np.uint8 else np.uint16
    return imagecodecs.png_encode(_pixels_for(rgb, alpha, depth), level=_PNG_LEVEL)


def _encode_webp(rgb, alpha, quality) -> bytes:
    _check_dims(rgb, 16383, "WebP")
    out = io.BytesIO()
    pil_image().fromarray(_pixels_for(rgb, alpha, np.uint8)).save(out, "WEBP", quality=quality, method=4)
    return out.getvalue()


def _encode_tiff(rgb, alpha, quality) -> bytes:
    import tifffile

    if rgb.dtype == np.float32:
        rgb = clipped_float(rgb)
    pixels = _pixels_for(rgb, alpha, rgb.dtype)
    out = io.BytesIO()
    tifffile.imwrite(out, pixels, photometric="rgb", planarconfig="contig", byteorder="<",
                     extrasamples=(2,) if alpha is not None else None, compression="zlib",
                     predictor=True, metadata=None, software=False, bigtiff=pixels.nbytes > 3 << 30)
    return out.getvalue()


_READERS = {"PNG": _read_png, "TIFF": _read_tiff, "JPEG": _read_jpeg, "WEBP": _read_webp, "RAW": _read_raw,
            "HEIF": _read_heif, "AVIF": _read_avif}
_ENCODERS = {"JPEG": _encode_jpeg, "PNG": _encode_png, "TIFF": _encode_tiff, "WEBP": _encode_webp}
_DEFAULT_OUTPUT = {"RAW": "TIFF", "HEIF": "JPEG", "AVIF": "JPEG"}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = "".join(c if c.isprintable() else "?" for c in text)  # file bytes may hold terminal escapes
    return re.sub(r"<_?io\.\w+ object at 0x[0-9a-fA-F]+>", "data", text)[:300]
