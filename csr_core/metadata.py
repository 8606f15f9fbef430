"""Photo metadata through exiv2 (python-exiv2): read from any input, carried to any output.

Exiv2 reads and writes EXIF (maker notes included), IPTC, XMP, ICC and comments in every format csr
reads or writes (JPEG, PNG, TIFF, WebP, HEIF/AVIF, the TIFF-based RAWs, CR3...), typed, so a tag
reaches the output as it was. Two things exiv2 does not do are done here: JPEG extended XMP (XMP
beyond one 64 KB segment, Adobe XMP spec part 3) and PNG text chunks other than its own keys.

On writing, csr's changes are applied the way exiftool/libvips do: Orientation 1 (the pixels are
already turned), pixel dimensions of the result, an EXIF thumbnail regenerated from the result
(where the source had one), ColorSpace sRGB when the pixels were converted, tags that describe the
source file's own structure (strips, tiles, sub-images, DNG data) and maker-note previews of the
source's picture dropped, and ``xmp:CreatorTool`` plus ``csr:Style``/``csr:Strength`` recorded. What
an output format cannot hold is named in one warning line.

Safety: metadata is budgeted before exiv2 sees it. The value sizes that every TIFF structure in the
file declares (EXIF blobs, TIFF/RAW IFDs, maker notes) and everything PNG metadata chunks inflate to
must stay within ``budget(len(file))``: many tags pointing at one blob, or hundreds of compressed
chunks, would otherwise cost gigabytes. Metadata over budget is dropped with a warning.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

from .pillow import pil_image

__all__ = ["Metadata", "read", "write", "budget", "made_by_csr", "library", "CSR_NS"]

CSR_NS = "https://github.com/csr-retouch/csr/ns/1.0/"
#: The exiv2 module once ``library()`` has loaded it (None before).
exiv2 = None
_loading = threading.Lock()


def library():
    """exiv2, imported and set up on first use: its import costs as much as decoding a 12 MP JPEG, so
    ``csr retouch`` loads it while the photo decodes (the decoder does not need it). Thread-safe."""
    global exiv2
    with _loading:
        if exiv2 is None:
            import exiv2 as lib

            lib.LogMsg.setLevel(lib.LogMsg.Level.mute)  # exiv2 prints warnings on stderr otherwise
            lib.XmpProperties.registerNs(CSR_NS, "csr")
            # exiv2 knows the extended-XMP note only once a photo that uses it has been read: splitting a
            # large packet for JPEG must not depend on what this process happened to read before
            lib.XmpProperties.registerNs("http://ns.adobe.com/xmp/note/", "xmpNote")
            exiv2 = lib
    return exiv2

_XMP_EXT_HEAD = b"http://ns.adobe.com/xmp/extension/\0"
_XMP_JPEG_MAX = 65000  # a JPEG APP1 holds 65533 bytes, less its 29-byte header
_EXT_PART = 65400      # extended-XMP payload per segment (the spec allows 65458)
_JPEG_ICC_MAX = 255 * 65496 - 1  # exiv2 writes ICC into at most 255 APP2 chunks of 65,496 bytes
# PNG text keys that mean one XMP property (as exiftool maps them); the rest stay PNG-only
_PNG_TEXT_XMP = {"Title": "Xmp.dc.title", "Author": "Xmp.dc.creator", "Description": "Xmp.dc.description",
                 "Copyright": "Xmp.dc.rights"}
_EXIV2_PNG_KEYS = ("Raw profile type", "XML:com.adobe.xmp", "Description")  # exiv2 maps these itself
# IFD0 tags that describe the source file's own image data, not the photo (the output has its own)
_STRUCTURE = {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 274, 277, 278, 279, 280, 281, 284, 317, 320,
              322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 513, 514, 529, 530, 531, 532, 700, 33421,
              33422, 33723, 34665, 34675, 34853, 37399, 40965}
_SOURCE_GROUPS = re.compile(r"^Exif\.(SubImage\d*|SubThumb\d*|Thumbnail|Image2|Image3|PanasonicRaw|"
                            r"NikonPreview|MakerNote)\.")
# maker-note tags that hold or point at a preview of the source's picture (Olympus ThumbnailImage, Nikon's
# PreviewIFD, Pentax PreviewOffset, Samsung PreviewImage...): dropped, not left to show the old picture
_MAKER_PREVIEW = re.compile(r"Preview|Thumbnail")
_TIFF_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_SUB_IFDS = (330, 34665, 34853, 40965, 37500)  # SubIFDs, Exif, GPS, Interop, MakerNote (if an IFD)


@dataclass
class Metadata:
    """What a photo file carries besides pixels (exiv2 containers; None when absent)."""

    exif: exiv2.ExifData | None = None
    iptc: exiv2.IptcData | None = None
    xmp: exiv2.XmpData | None = None
    icc: bytes | None = None
    comment: str = ""
    text: dict[str, str] = field(default_factory=dict)  # PNG text exiv2 does not map
    thumbnail: bool = False  # the source's EXIF had a thumbnail (regenerated on writing)

    def orientation(self) -> int:
        """The EXIF orientation, else XMP tiff:Orientation, else 1."""
        for box, key in ((self.exif, "Exif.Image.Orientation"), (self.xmp, "Xmp.tiff.Orientation")):
            if box is not None and key in box:
                try:
                    return int(box[key].toInt64())
                except Exception:
                    pass
        return 1

    def get(self, key: str) -> str | None:
        """The value of an Exif./Iptc./Xmp. key as text (None if absent)."""
        box = {"Exif": self.exif, "Iptc": self.iptc, "Xmp": self.xmp}[key.split(".", 1)[0]]
        return str(box[key].value()) if box is not None and key in box else None


def budget(file_size: int) -> int:
    """Bytes of decoded metadata a file of ``file_size`` bytes may carry: twice its size plus 16 MiB.

    (A real file stores each value once, so its metadata is smaller than the file.)"""
    return 2 * file_size + (16 << 20)


# ----------------------------------------------------------------------------- reading

def read(data: bytes, fmt: str, name: str = "<image>") -> Metadata:
    """The metadata of a file's bytes (``fmt`` as ``image_io`` names it). Never raises: damaged or
    over-budget metadata is dropped with a warning and the photo still loads."""
    limit = budget(len(data))
    try:
        text, png_inflated = _png_text(data, limit) if fmt == "PNG" else ({}, [])
        declared = _declared_tiff_bytes(data, limit) + sum(_declared_tiff_bytes(b, limit) for b in png_inflated)
    except _OverBudget as exc:
        warnings.warn(f"{name}: metadata dropped ({exc} exceeds the budget of {limit >> 20} MiB)", stacklevel=3)
        return Metadata()
    if declared > limit:
        warnings.warn(f"{name}: metadata dropped (its tags declare at least {declared >> 20} MiB of values, over "
                      f"the budget of {limit >> 20} MiB)", stacklevel=3)
        return Metadata()
    library()
    try:
        image = exiv2.ImageFactory.open(data)
        image.readMetadata()
    except Exception as exc:  # exiv2 knows no such metadata or finds it damaged: the pixels still count
        if getattr(exc, "code", None) != exiv2.ErrorCode.kerMemoryContainsUnknownImageType:
            warnings.warn(f"{name}: metadata unreadable, dropped ({_one_line(exc)})", stacklevel=3)
        return Metadata(text=text)
    meta = Metadata(text={k: v for k, v in text.items() if not k.startswith(_EXIV2_PNG_KEYS)})
    meta.exif = _copy(image.exifData(), exiv2.ExifData) if not image.exifData().empty() else None
    meta.iptc = _copy(image.iptcData(), exiv2.IptcData) if not image.iptcData().empty() else None
    packet = image.xmpPacket()
    if fmt == "JPEG" and "HasExtendedXMP" in packet:
        packet = _with_extended_xmp(data, packet, limit)
    meta.xmp = _decode_xmp(packet) if packet else None
    if image.iccProfileDefined():
        meta.icc = bytes(image.iccProfile().data())
    meta.comment = image.comment() or ""
    meta.thumbnail = meta.exif is not None and "Exif.Thumbnail.JPEGInterchangeFormat" in meta.exif
    for key, xmp_key in _PNG_TEXT_XMP.items():  # PNG text that XMP can say, unless it already does
        if key in meta.text and (meta.xmp is None or not any(d.key() == xmp_key for d in meta.xmp)):
            meta.xmp = meta.xmp if meta.xmp is not None else exiv2.XmpData()
            meta.xmp[xmp_key] = meta.text[key]
    return meta


def made_by_csr(file: str | os.PathLike | BinaryIO) -> bool:
    """Whether a file (a path or a binary stream) carries the record csr writes into every output (XMP
    ``csr:Style``). Only its header and XMP packet are read (``_xmp_packet``), never its pixels. A file
    that cannot be read is not csr's."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged metadata: simply not csr's record
            with open(file, "rb") if isinstance(file, (str, os.PathLike)) else contextlib.nullcontext(file) as f:
                packet = _xmp_packet(f)
    except Exception:  # noqa: BLE001 -- unreadable, damaged or not an image these libraries know: not csr's
        return False
    if not isinstance(packet, bytes) or CSR_NS.encode() not in packet:
        return False
    library()
    xmp = _decode_xmp(packet.decode("utf-8", "replace"))
    return xmp is not None and "Xmp.csr.Style" in xmp


def _xmp_packet(f: BinaryIO) -> bytes | None:
    """The XMP packet of an image file, its pixels unread: tifffile for TIFF (float TIFFs too, which Pillow
    cannot open), Pillow's lazy open for the other formats csr writes."""
    head = f.read(4)
    f.seek(0)
    if head in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        import tifffile

        with tifffile.TiffFile(f) as tif:
            tag = tif.pages.first.tags.get(700)
            return bytes(tag.value) if tag is not None else None
    with pil_image().open(f) as im:
        return im.info.get("xmp")


class _OverBudget(Exception):
    pass


def _copy(box, cls):
    out = cls()
    for datum in box:
        out.add(datum)
    return out


def _decode_xmp(packet: str) -> exiv2.XmpData | None:
    if re.search(r"<!(DOCTYPE|ENTITY)", packet):  # XML entities could expand without bound
        return None
    scratch = exiv2.ImageFactory.create(exiv2.ImageType.xmp)
    try:
        scratch.setXmpPacket(packet)
    except Exception:
        return None
    xmp = _copy(scratch.xmpData(), exiv2.XmpData)
    return None if xmp.empty() else xmp


def _encode_xmp(xmp: exiv2.XmpData, flags: int = 0) -> str:
    rc, packet = exiv2.XmpParser.encode(xmp, flags)
    if rc:
        raise ValueError("XMP cannot be serialised")
    return packet


def _declared_tiff_bytes(data: bytes, limit: int) -> int:
    """Value bytes declared by every TIFF structure in ``data`` (an EXIF blob in any container, a
    TIFF/RAW's IFDs, sub-IFDs, IFD-shaped maker notes). Stops counting past ``limit``."""
    total = 0
    for magic in (b"II*\0", b"MM\0*"):  # bytes.find: ~100x faster than a regex over a whole RAW
        at, n = data.find(magic), 0
        while at >= 0 and n < 64 and total <= limit:
            if at + 8 <= len(data):
                total += _ifd_bytes(data, at, limit - total)
            at, n = data.find(magic, at + 1), n + 1
    return total


def _ifd_bytes(data: bytes, base: int, limit: int) -> int:
    order = "<" if data[base] == 0x49 else ">"
    todo, seen, total = [struct.unpack_from(order + "I", data, base + 4)[0]], set(), 0
    while todo and total <= limit and len(seen) < 512:
        at = base + todo.pop()
        if at in seen or at + 2 > len(data):
            continue
        seen.add(at)
        count = struct.unpack_from(order + "H", data, at)[0]
        if count == 0 or at + 2 + 12 * count + 4 > len(data):
            continue
        for tag, typ, n, value in struct.iter_unpack(order + "HHII", data[at + 2:at + 2 + 12 * count]):
            size = n * _TIFF_TYPE_SIZE.get(typ, 0)
            if size > 4 and value + size <= len(data) - base:
                total += size
            if tag in _SUB_IFDS and (typ in (4, 13) or tag == 37500):
                offsets = [value] if size <= 4 or tag == 37500 else \
                    list(struct.unpack_from(f"{order}{min(n, 64)}I", data, base + value)) \
                    if base + value + 4 * min(n, 64) <= len(data) else []
                todo += [o for o in offsets if 8 <= o < len(data) - base]
        nxt = struct.unpack_from(order + "I", data, at + 2 + 12 * count)[0]
        if nxt:
            todo.append(nxt)
    return total


def _png_text(data: bytes, limit: int) -> tuple[dict[str, str], list[bytes]]:
    """PNG text chunks (tEXt/zTXt/iTXt) as {key: text}, and the inflated exiv2 raw profiles (hex
    EXIF/IPTC) to vet; compressed chunks (iCCP too) inflate within ``limit`` bytes in total."""
    text, raws, left, pos = {}, [], limit, 8
    while pos + 12 <= len(data):
        length, ctype = struct.unpack_from(">I4s", data, pos)
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if ctype == b"IEND":
            break
        if ctype not in (b"tEXt", b"zTXt", b"iTXt", b"iCCP") or b"\0" not in body:
            continue
        key, rest = body.split(b"\0", 1)
        try:
            if ctype == b"tEXt":
                value = rest
            elif ctype in (b"zTXt", b"iCCP"):
                value, left = _inflate(rest[1:], left)
            else:
                compressed, rest = rest[0], rest[2:]
                _lang, _tkey, value = rest.split(b"\0", 2)
                if compressed:
                    value, left = _inflate(value, left)
        except (ValueError, IndexError, zlib.error):
            continue  # a damaged chunk is left out
        if ctype == b"iCCP":
            continue
        k, v = key.decode("latin-1"), value.decode("utf-8" if ctype == b"iTXt" else "latin-1", "replace")
        if k.startswith("Raw profile type"):
            raws.append(bytes.fromhex("".join(re.findall(r"[0-9a-fA-F]{2}", v.split("\n", 3)[-1]))))
        text[k] = v
    return text, raws


def _inflate(blob: bytes, left: int) -> tuple[bytes, int]:
    z = zlib.decompressobj()
    out = z.decompress(blob, left + 1)
    if len(out) > left:
        raise _OverBudget("PNG metadata inflated")
    return out, left - len(out)


def _with_extended_xmp(data: bytes, packet: str, limit: int) -> str:
    """The JPEG's main XMP merged with its extended XMP (segments whose GUID the main one names)."""
    match = re.search(r"HasExtendedXMP(?:=\"|>)([0-9A-Fa-f]{32})", packet)
    if not match:
        return packet
    guid = match.group(1).encode()
    parts, full = {}, 0
    from .pillow import pil_image  # its JPEG header parse lists every APP segment

    with pil_image().open(io.BytesIO(data)) as im:
        for marker, body in getattr(im, "applist", []):
            if marker == "APP1" and body.startswith(_XMP_EXT_HEAD) and body[35:67] == guid:
                full, offset = struct.unpack_from(">II", body, 67)
                parts[offset] = body[75:]
    ext = b"".join(parts[k] for k in sorted(parts))
    if not parts or len(ext) != full or full > limit:
        return packet
    main, extra = _decode_xmp(packet), _decode_xmp(ext.decode("utf-8", "replace"))
    if main is None or extra is None:
        return packet
    for datum in extra:
        main.add(datum)
    del main["Xmp.xmpNote.HasExtendedXMP"]
    return _encode_xmp(main)


# ----------------------------------------------------------------------------- writing

# what each output format cannot hold (exiv2 writes the rest)
_CANNOT = {"WEBP": ("iptc", "comment", "text"), "TIFF": ("comment", "text"), "JPEG": ("text",),
           "PNG": ()}


def write(data: bytes, fmt: str, meta: Metadata, *, icc: bytes | None, size: tuple[int, int],
          converted: bool, made: dict[str, str], thumb: np.ndarray | None = None) -> tuple[bytes, list[str]]:
    """``data`` (an encoded JPEG/PNG/TIFF/WebP) with ``meta`` written into it; also the names of
    what the format cannot hold. ``size`` is the result's (width, height); ``converted`` says the
    pixels were converted to sRGB; ``made`` is recorded in XMP (``creator``, ``style``, ``strength``);
    ``thumb`` are the result's pixels, for the EXIF thumbnail when the source had one."""
    library()
    width, height = size
    exif = _output_exif(meta, width, height, converted, fmt, thumb)
    xmp = _output_xmp(meta, width, height, converted, made)
    image = exiv2.ImageFactory.open(data)
    image.readMetadata()
    if exif is not None:
        image.setExifData(exif)
    lost = []
    if meta.iptc is not None:
        if "iptc" in _CANNOT[fmt]:
            lost.append("IPTC")
        else:
            image.setIptcData(meta.iptc)
    if meta.comment:
        if "comment" in _CANNOT[fmt]:
            lost.append("comment")
        else:
            image.setComment(meta.comment)
    packet = _encode_xmp(xmp)
    extended = b""
    if fmt == "JPEG" and len(packet.encode()) > _XMP_JPEG_MAX:
        packet, extended = _split_xmp(xmp)
    image.setXmpPacket(packet)
    image.writeXmpFromPacket(True)
    if icc and fmt == "JPEG" and len(icc) > _JPEG_ICC_MAX:
        lost.append(f"an ICC profile of {len(icc) / 1e6:.0f} MB (its limit is {_JPEG_ICC_MAX / 1e6:.1f} MB)")
    elif icc:
        image.setIccProfile(exiv2.DataBuf(icc))
    image.writeMetadata()
    out = image.io()
    out.open()
    try:
        result = bytes(out.mmap())
    finally:
        out.munmap()
        out.close()
    if extended:
        result = _jpeg_insert_app1(result, extended)
    if meta.text:
        if fmt == "PNG":
            result = _png_insert_text(result, meta.text)
        else:
            lost += [f"PNG text '{k}'" for k in meta.text if k not in _PNG_TEXT_XMP]
    return result, lost


def _output_exif(meta: Metadata, width: int, height: int, converted: bool, fmt: str, thumb) -> exiv2.ExifData | None:
    if meta.exif is None:
        return None
    exif = exiv2.ExifData()
    for datum in meta.exif:
        key = datum.key()
        if _SOURCE_GROUPS.match(key) and not key.startswith("Exif.MakerNote."):
            continue
        if datum.groupName() == "Image" and (datum.tag() in _STRUCTURE or 50706 <= datum.tag() <= 52600):
            continue  # source structure and DNG private data (the output is no DNG)
        if exiv2.ExifTags.isMakerGroup(datum.groupName()) and _MAKER_PREVIEW.search(datum.tagName()):
            continue
        exif.add(datum)
    exif["Exif.Image.Orientation"] = exiv2.UShortValue(1)
    for key, value in (("Exif.Photo.PixelXDimension", width), ("Exif.Photo.PixelYDimension", height)):
        exif[key] = exiv2.ULongValue(value)
    if converted:
        exif["Exif.Photo.ColorSpace"] = exiv2.UShortValue(1)
        if "Exif.Iop.InteroperabilityIndex" in exif:
            exif["Exif.Iop.InteroperabilityIndex"] = "R98"
    if meta.thumbnail and thumb is not None:
        exiv2.ExifThumb(exif).setJpegThumbnail(_thumbnail(thumb))
    return exif


def _thumbnail(rgb: np.ndarray) -> bytes:
    from .pillow import pil_image
    from .pixels import from_float, to_float

    Image = pil_image()
    step = max(1, max(rgb.shape[:2]) // 640)  # thinned first: 16-bit and float photos convert no full copy
    rgb = rgb[::step, ::step]
    if rgb.dtype != np.uint8:
        rgb = from_float(to_float(rgb), np.uint8)
    small = Image.fromarray(np.ascontiguousarray(rgb))
    small.thumbnail((160, 160), Image.Resampling.BOX)
    out = io.BytesIO()
    small.save(out, "JPEG", quality=85)
    return out.getvalue()


def _output_xmp(meta: Metadata, width: int, height: int, converted: bool, made: dict[str, str]) -> exiv2.XmpData:
    xmp = _copy(meta.xmp, exiv2.XmpData) if meta.xmp is not None else exiv2.XmpData()
    keys = {d.key() for d in xmp}
    if "Xmp.tiff.Orientation" in keys:
        xmp["Xmp.tiff.Orientation"] = "1"
    for key, value in (("Xmp.exif.PixelXDimension", width), ("Xmp.exif.PixelYDimension", height),
                       ("Xmp.tiff.ImageWidth", width), ("Xmp.tiff.ImageLength", height)):
        if key in keys:
            xmp[key] = str(value)
    if converted:
        if "Xmp.exif.ColorSpace" in keys:
            xmp["Xmp.exif.ColorSpace"] = "1"
        if "Xmp.photoshop.ICCProfile" in keys:
            xmp["Xmp.photoshop.ICCProfile"] = "sRGB IEC61966-2.1"
    if "Xmp.xmpNote.HasExtendedXMP" in keys:
        del xmp["Xmp.xmpNote.HasExtendedXMP"]
    for key, value in made.items():
        xmp["Xmp.xmp.CreatorTool" if key == "creator" else f"Xmp.csr.{key.capitalize()}"] = value
    return xmp


def _split_xmp(xmp: exiv2.XmpData) -> tuple[str, bytes]:
    """(main packet for one JPEG segment, extended packet) per the XMP spec: the largest top-level
    properties move to the extended packet, as few as keep the main one within a segment (found by
    bisection: a few serialisations, however many properties the photo has)."""
    tops = [re.split(r"[\[/]", datum.key(), maxsplit=1)[0] for datum in xmp]
    sizes: dict[str, int] = {}
    for datum, top in zip(xmp, tops):
        sizes[top] = sizes.get(top, 0) + len(str(datum.value())) + len(datum.key())
    keep = ("Xmp.xmp.CreatorTool", "Xmp.csr.")
    order = [top for top in sorted(sizes, key=lambda k: -sizes[k]) if not top.startswith(keep)]

    def split(count: int) -> tuple[str, bytes]:
        moved = set(order[:count])
        main, ext = exiv2.XmpData(), exiv2.XmpData()
        for datum, top in zip(xmp, tops):
            (ext if top in moved else main).add(datum)
        packet = _encode_xmp(ext, int(exiv2.XmpParser.XmpFormatFlags.omitPacketWrapper) |
                             int(exiv2.XmpParser.XmpFormatFlags.useCompactFormat)).encode()
        main["Xmp.xmpNote.HasExtendedXMP"] = hashlib.md5(packet).hexdigest().upper()
        return _encode_xmp(main, int(exiv2.XmpParser.XmpFormatFlags.useCompactFormat)), packet

    fits = lambda count: len(split(count)[0].encode()) <= _XMP_JPEG_MAX  # noqa: E731
    lo, hi = 1, len(order)
    if not order or not fits(hi):
        raise ValueError("XMP too large for JPEG even when extended")
    while lo < hi:  # moving more properties only shrinks the main packet
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fits(mid) else (mid + 1, hi)
    return split(lo)


def _jpeg_insert_app1(data: bytes, ext: bytes) -> bytes:
    """Insert extended-XMP APP1 segments after the JPEG's leading APP segments."""
    guid = hashlib.md5(ext).hexdigest().upper().encode()
    segments = []
    for offset in range(0, len(ext), _EXT_PART):
        body = _XMP_EXT_HEAD + guid + struct.pack(">II", len(ext), offset) + ext[offset:offset + _EXT_PART]
        segments.append(struct.pack(">HH", 0xFFE1, len(body) + 2) + body)
    pos = 2
    while data[pos] == 0xFF and 0xE0 <= data[pos + 1] <= 0xEF:
        pos += 2 + struct.unpack_from(">H", data, pos + 2)[0]
    return data[:pos] + b"".join(segments) + data[pos:]


def _png_insert_text(data: bytes, text: dict[str, str]) -> bytes:
    """Insert iTXt chunks (UTF-8, uncompressed) right after IHDR."""
    chunks = []
    for key, value in text.items():
        body = key.encode("latin-1", "replace")[:79] + b"\0\0\0\0\0" + value.encode("utf-8")
        chunks.append(struct.pack(">I", len(body)) + b"iTXt" + body +
                      struct.pack(">I", zlib.crc32(b"iTXt" + body)))
    return data[:33] + b"".join(chunks) + data[33:]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or type(exc).__name__
