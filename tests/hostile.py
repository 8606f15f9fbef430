"""A corpus of hostile and odd image files, generated in memory (no committed binaries).

``corpus()`` returns :class:`Case` objects: the bytes, a file name (some with spaces, quotes or
non-ASCII characters), and what a correct reader must do with them: ``ok`` (decode; ``shape`` is then
the expected HxW after orientation), ``error`` (one clear ImageError, matching ``why``) or ``either``
(damaged data that a decoder may repair or refuse; only the invariants apply). Everything is small, so
running the corpus through every entry point stays quick. ``Findings`` collects and judges outcomes.
Used by test_hostile_inputs.py and test_fuzz.py.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import os
import resource
import struct
import subprocess
import tempfile
import threading
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile
from PIL import Image

@dataclass(frozen=True)
class Case:
    name: str                 # file name to write it under
    data: bytes
    expect: str               # 'ok' | 'error' | 'either'
    why: str = ""             # regex the error must match (expect == 'error')
    shape: tuple | None = None  # (h, w) of the decoded photo (expect == 'ok')


# ----------------------------------------------------------------------------- building blocks

def pixels(h: int, w: int, channels: int = 3, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A gradient plus noise, HxW(xC), in ``dtype``'s full range."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = (x / max(w - 1, 1) + y / max(h - 1, 1)) / 2
    a = np.clip(base[..., None] + rng.normal(0, 0.05, (h, w, channels)), 0, 1)
    if np.dtype(dtype).kind == "f":
        out = a.astype(dtype)
    else:
        out = np.rint(a * np.iinfo(dtype).max).astype(dtype)
    return out[..., 0] if channels == 1 else out


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def tiff(arr: np.ndarray, **kw) -> bytes:
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        kw.setdefault("photometric", "rgb")
    out = io.BytesIO()
    tifffile.imwrite(out, arr, **kw)
    return out.getvalue()


def png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def png_with_ihdr(width: int, height: int) -> bytes:
    """A valid 4x4 PNG whose header (with a correct CRC) declares ``width`` x ``height``."""
    data = bytearray(encode(Image.new("RGB", (4, 4)), "PNG"))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def png_insert(data: bytes, *chunks: bytes) -> bytes:
    """Insert chunks right after IHDR."""
    return data[:33] + b"".join(chunks) + data[33:]


def jpeg_with_sof(width: int, height: int) -> bytes:
    data = bytearray(encode(Image.fromarray(pixels(8, 8)), "JPEG"))
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


_TYPE = {3: "H", 4: "I"}


def tiff_bytes(tags: dict[int, int | list[int]], payload: bytes = b"", types: dict[int, int] | None = None,
               next_ifd: int | None = None) -> bytes:
    """A hand-made little-endian TIFF: one IFD at offset 8, SHORT/LONG tags, then ``payload``.

    StripOffsets / TileOffsets (273 / 324) given as -1 point at ``payload``, -1 - k at its byte k.
    ``next_ifd`` (default 0) lets the IFD chain loop or dangle.
    """
    types = types or {}
    entries = sorted(tags.items())
    ifd_size = 2 + 12 * len(entries) + 4
    extra = bytearray()
    extra_at = 8 + ifd_size
    values = []
    for tag, val in entries:
        vals = val if isinstance(val, list) else [val]
        typ = types.get(tag, 3 if all(0 <= v < 65536 for v in vals) and tag not in (273, 279, 324, 325) else 4)
        values.append((tag, typ, vals))
    blob_sizes = sum(len(v) * struct.calcsize(_TYPE[t]) for _, t, v in values
                     if len(v) * struct.calcsize(_TYPE[t]) > 4)
    payload_at = extra_at + blob_sizes
    ifd = bytearray(struct.pack("<H", len(entries)))
    for tag, typ, vals in values:
        vals = [payload_at - 1 - v if (tag in (273, 324) and v < 0) else v for v in vals]
        raw = struct.pack("<" + _TYPE[typ] * len(vals), *vals)
        if len(raw) <= 4:
            ifd += struct.pack("<HHI", tag, typ, len(vals)) + raw.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, typ, len(vals), extra_at + len(extra))
            extra += raw
    ifd += struct.pack("<I", next_ifd or 0)
    return b"II*\0" + struct.pack("<I", 8) + bytes(ifd) + bytes(extra) + payload


def _tiff_rgb(w: int, h: int, spp: int = 3, photometric: int = 2, compression: int = 1,
              payload: bytes | None = None, next_ifd: int | None = None, **more) -> bytes:
    payload = payload if payload is not None else bytes(w * h * spp)
    tags = {256: w, 257: h, 258: [8] * spp if spp > 1 else 8, 259: compression, 262: photometric,
            273: -1, 277: spp, 278: h, 279: len(payload), 284: 1}
    tags.update({int(k): v for k, v in more.items()})
    return tiff_bytes(tags, payload, next_ifd=next_ifd)


def _exif(orientation=None, orient_type: int = 3) -> bytes:
    """A hand-made EXIF blob: Make, plus an Orientation of any value and type."""
    make = b"HostileCam\0"
    entries = [(271, 2, len(make), None)]
    if orientation is not None:
        raw = struct.pack("<H", orientation) if orient_type == 3 else struct.pack("<I", orientation)
        entries.append((0x0112, orient_type, 1, raw.ljust(4, b"\0")))
    data_at = 8 + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, typ, count, raw in entries:
        ifd += struct.pack("<HHI", tag, typ, count) + (raw if raw is not None else struct.pack("<I", data_at))
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + make


def _jpeg_app(data: bytes, marker: int, payload: bytes) -> bytes:
    """Insert an APPn segment right after SOI."""
    return data[:2] + struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload + data[2:]


# ----------------------------------------------------------------------------- amplifiers (issue 10)
# Small files whose decoding would cost far more than their size: each is a function so a test can
# build a bigger one than the corpus carries.

def jpeg_truncated_with_eoi(jpg: bytes) -> bytes:
    """The first half of a JPEG's scan data, then an end-of-image marker (libjpeg pads the rest grey)."""
    return jpg[: len(jpg) // 2] + b"\xff\xd9"


def jpeg_repeated_scans(repeats: int, size: int = 64) -> bytes:
    """A progressive JPEG whose last (refinement) scan is repeated ``repeats`` times."""
    data = encode(Image.fromarray(pixels(size, size, seed=4)), "JPEG", quality=90, progressive=True)
    last = data.rindex(b"\xff\xda")
    return data[:last] + data[last:-2] * repeats + b"\xff\xd9"


def tiff_shared_tiles(width: int, height: int, tile: int = 256) -> bytes:
    """A deflated, tiled float64 RGBA TIFF whose tile offsets all point at one tiny tile."""
    payload = zlib.compress(bytes(tile * tile * 4 * 8), 9)
    n = -(-width // tile) * -(-height // tile)
    tags = {256: width, 257: height, 258: [64] * 4, 259: 8, 262: 2, 277: 4, 284: 1, 322: tile, 323: tile,
            324: [-1] * n, 325: [len(payload)] * n, 338: 2, 339: [3] * 4}
    return tiff_bytes(tags, payload)


def tiff_float64_rgba(width: int, height: int, tile: int = 256) -> bytes:
    """An honest deflated float64 RGBA TIFF (every tile its own): large decoded, small on disk."""
    return tiff(np.zeros((height, width, 4)), photometric="rgb", extrasamples=(2,), compression="zlib",
                tile=(tile, tile))


def png_overlong_idat(inflated: int) -> bytes:
    """A 16x12 RGB PNG whose image data inflates to ``inflated`` bytes (the header needs 588)."""
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 16, 12, 8, 2, 0, 0, 0))
    z, block = zlib.compressobj(9), bytes(1 << 20)
    parts = [z.compress(block[:min(len(block), inflated - done)]) for done in range(0, inflated, len(block))]
    idat = png_chunk(b"IDAT", b"".join(parts) + z.flush())
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat + png_chunk(b"IEND", b"")


def png_many_chunks(count: int, ctype: bytes = b"teSt") -> bytes:
    """A valid small PNG with ``count`` empty ancillary chunks before its image data."""
    base = encode(Image.fromarray(pixels(12, 16)), "PNG")
    return png_insert(base, png_chunk(ctype, b"") * count)


def png_tiny_idats(count: int) -> bytes:
    """A valid PNG whose image data is split into ``count`` IDAT chunks (most of them empty)."""
    base = encode(Image.fromarray(pixels(12, 16)), "PNG")
    at = base.index(b"IDAT") - 4
    return base[:at] + png_chunk(b"IDAT", b"") * count + base[at:]


# ----------------------------------------------------------------------------- issue 35
# Unusual but honest metadata, and more files whose cost is out of proportion to their size.

_XMP_HEAD = b"http://ns.adobe.com/xap/1.0/\0"
_XMP_EXT_HEAD = b"http://ns.adobe.com/xmp/extension/\0"


def xmp_packet(body: str, namespaces: str = "") -> str:
    """An XMP packet with one rdf:Description holding ``body`` (``namespaces``: extra xmlns attributes)."""
    return ('<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
            f'xmlns:dc="http://purl.org/dc/elements/1.1/" {namespaces}>{body}</rdf:Description></rdf:RDF>'
            '</x:xmpmeta><?xpacket end="w"?>')


def xmp_keywords(count: int) -> str:
    """A packet of ``count`` dc:subject keywords, as Lightroom writes them (2,000: ~48 KB)."""
    items = "".join(f"<rdf:li>kw{i:05d}</rdf:li>" for i in range(count))
    return xmp_packet(f"<dc:subject><rdf:Bag>{items}</rdf:Bag></dc:subject>")


def jpeg_with_xmp(packet: str, extended: str = "", size: tuple[int, int] = (16, 12)) -> bytes:
    """A JPEG whose APP1 holds ``packet`` (one ordinary segment: at most ~65 KB); with ``extended``,
    also that packet as extended XMP (Adobe XMP spec part 3), its GUID named in the main packet."""
    data = encode(Image.fromarray(pixels(size[1], size[0], seed=5)), "JPEG", quality=90)
    segments = [_XMP_HEAD + packet.encode()]
    if extended:
        ext = extended.encode()
        guid = hashlib.md5(ext).hexdigest().upper().encode()
        segments[0] = _XMP_HEAD + packet.replace(
            "</rdf:Description>", f"<xmpNote:HasExtendedXMP>{guid.decode()}</xmpNote:HasExtendedXMP>"
                                  "</rdf:Description>").replace(
            "rdf:about=\"\"", 'rdf:about="" xmlns:xmpNote="http://ns.adobe.com/xmp/note/"').encode()
        for at in range(0, len(ext), 65400):
            segments.append(_XMP_EXT_HEAD + guid + struct.pack(">II", len(ext), at) + ext[at:at + 65400])
    for body in reversed(segments):
        data = _jpeg_app(data, 0xE1, body)
    return data


def xmp_many_properties(count: int, value: str = "v" * 24) -> str:
    """An extended-XMP packet of ``count`` small top-level properties (2,000: ~100 KB)."""
    body = "".join(f"<t:p{i:05d}>{value}</t:p{i:05d}>" for i in range(count))
    return xmp_packet(body, 'xmlns:t="http://example.com/t/1.0/"').split("?>", 1)[1].rsplit("<?", 1)[0]


def png_with_xmp(packet: str) -> bytes:
    """A small PNG carrying ``packet`` in an uncompressed iTXt XML:com.adobe.xmp chunk."""
    png = encode(Image.fromarray(pixels(12, 16, seed=6)), "PNG")
    return png_insert(png, png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + packet.encode()))


def png_compressed_text(count: int, inflated: int = 8_000_000) -> bytes:
    """A small PNG with ``count`` zTXt chunks of zeros, each inflating to ``inflated`` bytes
    (libpng's default cap per chunk is 8 MB: 990 of them make an 8 MB file of 7.9 GB of text)."""
    body = b"Comment\0\0" + zlib.compress(bytes(inflated), 9)
    png = encode(Image.fromarray(pixels(12, 16, seed=7)), "PNG")
    return png_insert(png, png_chunk(b"zTXt", body) * count)

def webp_flat_lossless(width: int, height: int) -> bytes:
    """A lossless WebP of one flat colour at any size up to 16384 a side (~40 bytes: a one-colour
    image codes every pixel in zero bits, so only the VP8L header's size changes)."""
    data = bytearray(encode(Image.new("RGB", (64, 64), (40, 90, 160)), "WEBP", lossless=True, method=0))
    assert data[12:16] == b"VP8L" and data[20] == 0x2F
    bits = struct.unpack_from("<I", data, 21)[0] & ~((1 << 28) - 1)
    struct.pack_into("<I", data, 21, bits | (width - 1) | (height - 1) << 14)
    return bytes(data)

def tiff_float32_tiles(width: int, height: int, tile: int = 256) -> bytes:
    """A deflated, tiled float32 RGB TIFF, every tile its own copy of one flat tile (nothing
    overlaps), yet 14000x14000 (2.35 GB decoded) is a ~2.4 MB file."""
    body = zlib.compress(np.full((tile, tile, 3), 0.25, "<f4").tobytes(), 9)
    n = -(-width // tile) * -(-height // tile)
    tags = {256: width, 257: height, 258: [32] * 3, 259: 8, 262: 2, 277: 3, 284: 1, 322: tile, 323: tile,
            324: [-1 - i * len(body) for i in range(n)], 325: [len(body)] * n, 339: [3] * 3}
    return tiff_bytes(tags, body * n)

def icc_padded(size: int) -> bytes:
    """LittleCMS's sRGB profile grown to ``size`` bytes by one private tag (still a valid sRGB profile)."""
    icc = bytearray(imagecodecs.cms_profile("srgb"))
    count = struct.unpack_from(">I", icc, 128)[0]
    shift = 12  # one more tag-table entry moves every tag's data
    for i in range(count):
        struct.pack_into(">I", icc, 132 + 12 * i + 4, struct.unpack_from(">I", icc, 132 + 12 * i + 4)[0] + shift)
    pad = size - len(icc) - shift
    entry = struct.pack(">4sII", b"csrP", len(icc) + shift, pad)
    data = icc[:128] + struct.pack(">I", count + 1) + icc[132:132 + 12 * count] + entry + icc[132 + 12 * count:]
    data += b"zzzz" + bytes(pad - 4)
    struct.pack_into(">I", data, 0, len(data))
    return bytes(data)

#: The tags LibRaw needs in a CFA DNG: CFA layout and pattern, DNG version, camera model, colour matrix.
_DNG_TAGS = [(33421, "H", 2, (2, 2)), (33422, "B", 4, (0, 1, 1, 2)), (50706, "B", 4, (1, 4, 0, 0)),
             (50708, "s", 0, "csr hostile", True),
             (50721, "2i", 9, (10000, 10000, 0, 10000, 0, 10000, 0, 10000, 0, 10000, 0, 10000,
                               0, 10000, 0, 10000, 10000, 10000), True)]


def dng_shared_tiles(width: int, height: int, tile: int = 256) -> bytes:
    """A 16-bit CFA DNG whose tile offsets all point at its one stored tile: ~130 kB that LibRaw
    would develop as ``width`` x ``height``. Written by tifffile at one tile, then its size tags
    patched and its tile tables rewritten at the end of the file."""
    out = io.BytesIO()
    tifffile.imwrite(out, np.full((tile, tile), 4000, np.uint16), photometric="cfa", tile=(tile, tile),
                     extratags=_DNG_TAGS, byteorder="<")
    data = bytearray(out.getvalue())
    tags = tifffile.TiffFile(io.BytesIO(bytes(data))).pages.first.tags
    n = -(-width // tile) * -(-height // tile)
    for code, values in ((324, [tags[324].value[0]] * n), (325, [tags[325].value[0]] * n)):
        struct.pack_into("<HI", data, tags[code].offset + 2, 4, n)  # LONG x n, at the end
        struct.pack_into("<I", data, tags[code].offset + 8, len(data))
        data += struct.pack(f"<{n}I", *values)
    for code, value in ((256, width), (257, height)):
        struct.pack_into("<HII", data, tags[code].offset + 2, 4, 1, value)
    return bytes(data)


def heif_encode(im: Image.Image, fmt: str, **kw) -> bytes:
    """A real single-image AVIF (Pillow, libavif) or HEIC (pillow-heif, x265) of ``im``."""
    if fmt == "AVIF":
        return encode(im, "AVIF", **kw)
    import pillow_heif

    out = io.BytesIO()
    pillow_heif.from_pillow(im).save(out, **kw)
    return out.getvalue()


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> dict[bytes, bytes]:
    """The boxes in data[start:end] (type -> whole box), for files of one box each type."""
    found, pos, end = {}, start, len(data) if end is None else end
    while pos < end:
        size = struct.unpack_from(">I", data, pos)[0]
        found[data[pos + 4:pos + 8]] = data[pos:pos + size]
        pos += size
    return found


def _box(kind: bytes, body: bytes, full: int | None = None) -> bytes:
    head = b"" if full is None else struct.pack(">I", full)  # FullBox: version << 24 | flags
    return struct.pack(">I", 8 + len(head) + len(body)) + kind + head + body


def heif_single_parts(data: bytes) -> tuple[bytes, bytes, list[bytes], bytes]:
    """(ftyp box, item type, property boxes other than ispe, coded data) of a one-item HEIF/AVIF as
    Pillow and pillow-heif write it (no alpha: the mdat holds exactly the one item's data)."""
    top = _boxes(data)
    meta = _boxes(top[b"meta"], 12)
    ipco = _boxes(_boxes(meta[b"iprp"], 8)[b"ipco"], 8)
    props = [b for k, b in ipco.items() if k != b"ispe"]
    kind = b"av01" if b"av1C" in ipco else b"hvc1"
    return top[b"ftyp"], kind, props, top[b"mdat"][8:]


def heif_file(ftyp: bytes, kind: bytes, tiles: list[tuple[list[bytes], bytes]], tile_size: tuple[int, int],
              grid: tuple[int, int, int, int] | None = None) -> bytes:
    """A HEIF/AVIF of coded ``tiles`` ((property boxes, coded data) each, ``kind`` items) of
    ``tile_size``; with ``grid`` = (rows, columns, width, height) they are the tiles of a grid image
    of that output size, else one image. Tiles given the same data object share one copy of it.
    The grid descriptor lies in 'idat' (iloc version 1), as libheif and Apple write it."""
    ipco: list[bytes] = [_box(b"ispe", struct.pack(">II", *(grid[2:] if grid else tile_size)), 0),
                         _box(b"ispe", struct.pack(">II", *tile_size), 0)]
    first = 2 if grid else 1  # first tile's item ID
    infe = [(1, b"grid")] if grid else []
    ipma = [(1, [1])] if grid else []
    stored: dict[int, int] = {}  # id(data) -> offset in mdat
    mdat = b""
    places = []
    for i, (props, coded) in enumerate(tiles):
        indices = []
        for prop in props:
            if prop not in ipco:
                ipco.append(prop)
            essential = 0x80 if prop[4:8] in (b"av1C", b"hvcC") else 0
            indices.append(essential | ipco.index(prop) + 1)
        infe.append((first + i, kind))
        ipma.append((first + i, [2, *indices]))
        if id(coded) not in stored:
            stored[id(coded)] = len(mdat)
            mdat += coded
        places.append((stored[id(coded)], len(coded)))
    descriptor = struct.pack(">BBBBII", 0, 1, grid[0] - 1, grid[1] - 1, grid[2], grid[3]) if grid else b""

    def meta(mdat_at: int) -> bytes:
        iloc = [struct.pack(">HHHHII", 1, 1, 0, 1, 0, len(descriptor))] if grid else []  # method 1: idat
        iloc += [struct.pack(">HHHHII", first + i, 0, 0, 1, mdat_at + off, n) for i, (off, n) in enumerate(places)]
        entries = [struct.pack(">HB", item, len(idx)) + bytes(idx) for item, idx in ipma]
        refs = _box(b"dimg", struct.pack(f">HH{len(tiles)}H", 1, len(tiles), *range(first, first + len(tiles)))) if grid else b""
        return _box(b"meta", b"".join([
            _box(b"hdlr", bytes(4) + b"pict" + bytes(13), 0),
            _box(b"pitm", struct.pack(">H", 1), 0),
            _box(b"iinf", struct.pack(">H", len(infe)) + b"".join(
                _box(b"infe", struct.pack(">HH", item, 0) + t + b"\0", 2 << 24) for item, t in infe), 0),
            _box(b"iloc", struct.pack(">BBH", 0x44, 0, len(iloc)) + b"".join(iloc), 1 << 24),
            _box(b"iref", refs, 0) if grid else b"",
            _box(b"iprp", _box(b"ipco", b"".join(ipco)) + _box(b"ipma", struct.pack(">I", len(ipma)) + b"".join(entries), 0)),
            _box(b"idat", descriptor) if grid else b""]), 0)

    at = len(ftyp) + len(meta(0)) + 8
    return ftyp + meta(at) + _box(b"mdat", mdat)


def heif_declaring(fmt: str, width: int, height: int) -> bytes:
    """A real 8x8 AVIF or HEIC whose size box ('ispe') declares ``width`` x ``height`` (~300-500 bytes)."""
    data = bytearray(heif_encode(Image.fromarray(pixels(8, 8, seed=8)), fmt, quality=50))
    at = data.index(b"ispe")
    struct.pack_into(">II", data, at + 8, width, height)
    return bytes(data)


def heif_shared_grid(fmt: str, width: int, height: int, tile: int = 256) -> bytes:
    """A grid image of ``width`` x ``height`` whose tiles (3,025 at 14000x14000) all point at the
    coded data of one real ``tile`` x ``tile`` image."""
    ftyp, kind, props, coded = heif_single_parts(heif_encode(Image.fromarray(pixels(tile, tile, seed=9)), fmt,
                                                             quality=30))
    rows, cols = -(-height // tile), -(-width // tile)
    return heif_file(ftyp, kind, [(props, coded)] * (rows * cols), (tile, tile), (rows, cols, width, height))


def heif_grid(tiles: list[bytes], rows: int, cols: int) -> bytes:
    """An honest grid image of ``tiles``: real single-image files of one format and size, each
    coded on its own, row-major."""
    parts = [heif_single_parts(t) for t in tiles]
    (w, h) = Image.open(io.BytesIO(tiles[0])).size if parts[0][1] == b"av01" else _heic_size(tiles[0])
    return heif_file(parts[0][0], parts[0][1], [(p[2], p[3]) for p in parts], (w, h), (rows, cols, w * cols, h * rows))


def _heic_size(data: bytes) -> tuple[int, int]:
    import pillow_heif

    return pillow_heif.open_heif(io.BytesIO(data)).size


def dng_cut_short() -> bytes:
    """A 64x96 CFA DNG cut off 2,000 bytes into its strip, whose byte count claims only 100 bytes:
    the strip check passes, and LibRaw runs off the end of the data (printing "unknown file:
    Unexpected end of file" on fd 2 itself)."""
    out = io.BytesIO()
    tifffile.imwrite(out, pixels(64, 96, 1, np.uint16) >> 4, photometric="cfa", extratags=_DNG_TAGS, byteorder="<")
    data = bytearray(out.getvalue())
    page = tifffile.TiffFile(io.BytesIO(bytes(data))).pages.first
    counts = page.tags[279]
    struct.pack_into("<HII", data, counts.offset + 2, 4, 1, 100)
    return bytes(data[:page.dataoffsets[0] + 2000])


# ----------------------------------------------------------------------------- the corpus

@functools.cache
def corpus() -> tuple[Case, ...]:
    rgb = pixels(12, 16)
    im = Image.fromarray(rgb)
    jpg, png, tif = encode(im, "JPEG", quality=90), encode(im, "PNG"), tiff(rgb)
    ok = (12, 16)
    cases: list[Case] = []
    add = lambda *a, **k: cases.append(Case(*a, **k))  # noqa: E731

    # controls, odd names and mismatched extensions
    add("plain.jpg", jpg, "ok", shape=ok)
    add("plain.png", png, "ok", shape=ok)
    add("plain.tif", tif, "ok", shape=ok)
    add("plain.webp", encode(im, "WEBP", quality=90), "ok", shape=ok)
    add("plain.bmp", encode(im, "BMP"), "ok", shape=ok)
    add("still.gif", encode(im, "GIF"), "ok", shape=ok)
    add("with spaces and ümlauts 写真.jpg", jpg, "ok", shape=ok)
    add("quote's \"$(touch x)\" ;&.png", png, "ok", shape=ok)
    add("émoji 📷 folder-name.tif", tif, "ok", shape=ok)
    add("png-named.jpg", png, "ok", shape=ok)
    add("UPPER.JPEG", jpg, "ok", shape=ok)

    # tiny and thin
    add("1x1.png", encode(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"), "ok", shape=(1, 1))
    add("1x1.jpg", encode(Image.new("RGB", (1, 1), (10, 200, 30)), "JPEG"), "ok", shape=(1, 1))
    add("1x1.tif", tiff(np.full((1, 1, 3), 7, np.uint8)), "ok", shape=(1, 1))
    add("1x1.webp", encode(Image.new("RGB", (1, 1), "red"), "WEBP"), "ok", shape=(1, 1))
    add("1xN.png", encode(Image.fromarray(pixels(57, 1)), "PNG"), "ok", shape=(57, 1))
    add("Nx1.jpg", encode(Image.fromarray(pixels(1, 57)), "JPEG"), "ok", shape=(1, 57))
    add("1xN16.tif", tiff(pixels(1, 300, dtype=np.uint16)), "ok", shape=(1, 300))

    # colour models and sample types
    add("palette.png", encode(im.quantize(7), "PNG"), "ok", shape=ok)
    add("palette-trns.png", encode(im.quantize(7), "PNG", transparency=2), "ok", shape=ok)
    add("palette.gif", encode(im.quantize(5), "GIF", transparency=1), "ok", shape=ok)
    add("gray.png", encode(im.convert("L"), "PNG"), "ok", shape=ok)
    add("gray-alpha.png", encode(im.convert("LA"), "PNG"), "ok", shape=ok)
    add("bilevel.png", encode(im.convert("1"), "PNG"), "ok", shape=ok)
    add("bilevel.tif", encode(im.convert("1"), "TIFF"), "ok", shape=ok)
    add("rgba.tif", tiff(pixels(12, 16, 4), photometric="rgb", extrasamples=(2,)), "ok", shape=ok)
    add("gray-alpha.tif", tiff(pixels(12, 16, 2), photometric="minisblack", extrasamples=(2,)),
        "either", shape=ok)
    add("palette.tif", encode(im.quantize(6), "TIFF"), "ok", shape=ok)
    add("rgb16.png", imagecodecs.png_encode(pixels(12, 16, dtype=np.uint16)), "ok", shape=ok)
    add("rgba16.png", imagecodecs.png_encode(pixels(12, 16, 4, dtype=np.uint16)), "ok", shape=ok)
    add("gray16.png", imagecodecs.png_encode(pixels(12, 16, 1, dtype=np.uint16)), "ok", shape=ok)
    add("rgb16.tif", tiff(pixels(12, 16, dtype=np.uint16)), "ok", shape=ok)
    weird = pixels(12, 16, dtype=np.float32)
    weird[0, :4] = np.array([np.nan, np.inf, -np.inf, 7.0])[:, None]
    weird[1, :2] = -3.0
    add("float32.tif", tiff(weird), "ok", shape=ok)
    add("float32-gray.tif", tiff(pixels(12, 16, 1, dtype=np.float32)), "ok", shape=ok)
    add("float16.tif", tiff(pixels(12, 16, dtype=np.float16)), "either", shape=ok)
    add("float64.tif", tiff(pixels(12, 16, dtype=np.float64)), "either", shape=ok)
    add("int16.tif", tiff(pixels(12, 16, dtype=np.uint16).astype(np.int16)), "either", shape=ok)
    add("uint32.tif", tiff(pixels(12, 16, dtype=np.uint32)), "either", shape=ok)
    add("minisw.tif", tiff(pixels(12, 16, 1), photometric="miniswhite"), "ok", shape=ok)
    add("cmyk.jpg", encode(im.convert("CMYK"), "JPEG"), "error", "CMYK")
    add("cmyk.tif", encode(im.convert("CMYK"), "TIFF"), "error", "CMYK")
    add("lab.tif", encode(im.convert("LAB"), "TIFF"), "error", "unsupported|not supported|cannot decode")
    add("ycbcr.jpg", jpg, "ok", shape=ok)

    # animation: refused, never half-handled
    frames = [Image.new("RGB", (8, 6), c) for c in ("red", "blue", "green")]
    add("animated.gif", encode(frames[0], "GIF", save_all=True, append_images=frames[1:]), "error", "animated")
    add("animated.webp", encode(frames[0], "WEBP", save_all=True, append_images=frames[1:]), "error",
        "animated")
    add("animated.png", encode(frames[0], "PNG", save_all=True, append_images=frames[1:]), "error",
        "animated")

    # EXIF and XMP orientation: bogus values are ignored, good ones applied (of any integer type,
    # as exiv2, exiftool and Pillow read them)
    for value, typ in ((0, 3), (9, 3), (65535, 3), (6, 4), (6, 3)):
        add(f"orient-{value}-t{typ}.jpg", encode(im, "JPEG", exif=b"Exif\0\0" + _exif(value, typ)), "ok",
            shape=(16, 12) if value == 6 else ok)
    add("exif-garbage.jpg", _jpeg_app(jpg, 0xE1, b"Exif\0\0" + b"MM\0*\xff\xff\xff\xf0" + bytes(20)), "ok",
        shape=ok)
    add("exif-truncated.jpg", _jpeg_app(jpg, 0xE1, b"Exif\0\0" + _exif(6)[:14]), "ok", shape=ok)
    add("exif-loop.png", png_insert(png, png_chunk(b"eXIf", b"II*\0\x08\0\0\0\x01\0" + struct.pack(
        "<HHII", 0x8769, 4, 1, 8) + b"\x08\0\0\0")), "ok", shape=ok)
    add("exif-orient-99.png", png_insert(png, png_chunk(b"eXIf", _exif(99))), "ok", shape=ok)
    add("xmp-orient-9.png", png_insert(png, png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0"
                                                      b"<x tiff:Orientation=\"9\"/>")), "ok", shape=ok)
    add("xmp-damaged.png", png_insert(png, png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\x01")), "ok", shape=ok)

    # broken colour profiles: warned about, ignored
    junk = bytes(np.random.default_rng(1).integers(0, 256, 600, dtype=np.uint8))
    add("icc-junk.png", encode(im, "PNG", icc_profile=junk), "ok", shape=ok)
    add("icc-junk.jpg", encode(im, "JPEG", icc_profile=junk), "ok", shape=ok)
    add("icc-junk.tif", tiff(rgb, iccprofile=junk), "ok", shape=ok)
    srgb = imagecodecs.cms_profile("srgb")
    add("icc-truncated.png", encode(im, "PNG", icc_profile=srgb[:200]), "ok", shape=ok)
    add("icc-gray-on-rgb.jpg", encode(im, "JPEG", icc_profile=imagecodecs.cms_profile("gray")), "ok", shape=ok)
    add("icc-rgb-on-gray.png", encode(im.convert("L"), "PNG", icc_profile=srgb), "ok", shape=ok)
    bomb_icc = b"ICC Profile\0\0" + zlib.compress(bytes(17 << 20), 1)  # inflates past _unzip's 16 MB cap
    add("icc-zip-bomb.png", png_insert(png, png_chunk(b"iCCP", bomb_icc)), "ok", shape=ok)

    # not images at all
    add("empty.jpg", b"", "error", "empty file")
    add("empty.png", b"", "error", "empty file")
    add("empty.tif", b"", "error", "empty file")
    add("text.jpg", b"hello, this is not a picture\n" * 4, "error", "not a supported image")
    add("page.png", b"<!doctype html><html><script>alert(1)</script></html>", "error", "not a supported image")
    add("vector.png", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "error",
        "not a supported image")
    add("postscript.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n", "error",
        "not a supported image")
    add("document.tif", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", "error", "not a supported image")
    add("archive.jpg", b"PK\x03\x04" + bytes(60), "error", "not a supported image")
    add("magic-only.jpg", b"\xff\xd8\xff", "error", "")
    add("magic-only.png", b"\x89PNG\r\n\x1a\n", "error", "")
    add("magic-only.tif", b"II*\0", "error", "")

    # truncated and corrupted
    add("half.jpg", jpg[: len(jpg) // 2], "error", "")
    add("header-only.jpg", jpg[: jpg.index(b"\xff\xda") + 2], "error", "")
    add("no-eoi.jpg", jpg[:-2], "either", shape=ok)
    garbled = bytearray(jpg)
    start = jpg.index(b"\xff\xda") + 20
    garbled[start:start + 40] = bytes(np.random.default_rng(2).integers(0, 255, 40, dtype=np.uint8))
    add("garbled-scan.jpg", bytes(garbled), "either", shape=ok)
    add("half.png", png[: len(png) // 2], "error", "")
    add("after-ihdr.png", png[:33], "error", "")
    add("no-iend.png", png[:-12], "either", shape=ok)
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF
    add("bad-ihdr-crc.png", bytes(bad_crc), "either", shape=ok)
    zeroed = bytearray(png)
    idat = png.index(b"IDAT")
    zeroed[idat + 6:idat + 30] = bytes(24)
    add("zeroed-idat.png", bytes(zeroed), "error", "")
    add("half.tif", tif[: len(tif) // 2], "either", shape=ok)
    add("ifd-past-eof.tif", b"II*\0" + struct.pack("<I", 1 << 30), "error", "")
    add("strip-past-eof.tif", tiff_bytes({256: 16, 257: 12, 258: [8, 8, 8], 259: 1, 262: 2, 273: 1 << 30,
                                          277: 3, 278: 12, 279: 576}), "either", shape=ok)
    add("ifd-loop.tif", _tiff_rgb(4, 4, next_ifd=8), "either", shape=(4, 4))  # next IFD -> itself
    add("unknown-compression.tif", _tiff_rgb(4, 4, compression=54321), "error", "")
    add("zero-width.tif", _tiff_rgb(0, 4, payload=b""), "error", "")
    add("deflate-garbage.tif", _tiff_rgb(8, 8, compression=8, payload=b"\x78\x9c" + bytes(30)), "either",
        shape=(8, 8))

    # decompression bombs: a tiny file declaring a huge image
    add("bomb-ihdr.png", png_with_ihdr(100_000, 100_000), "error", "too large")
    add("bomb-sof.jpg", jpeg_with_sof(65_000, 65_000), "error", "too large")
    add("bomb-tags.tif", _tiff_rgb(100_000, 100_000, payload=bytes(64)), "error", "too large")
    add("bomb-samples.tif", _tiff_rgb(4000, 4000, spp=65_535, photometric=1, payload=bytes(64),
                                      **{"258": 8, "338": [0] * 65_534}), "error", "too large")
    add("bomb-tiles.tif", tiff_bytes({256: 8, 257: 8, 258: [8, 8, 8], 259: 1, 262: 2, 277: 3, 284: 1,
                                      322: 65_536 - 16, 323: 65_536 - 16, 324: -1, 325: 64},
                                     bytes(64), types={322: 4, 323: 4, 324: 4, 325: 4}), "error", "too large")
    gif = bytearray(encode(im.quantize(4), "GIF"))
    struct.pack_into("<HH", gif, 6, 65535, 65535)
    add("bomb-screen.gif", bytes(gif), "error", "too large")
    bmp = bytearray(encode(im, "BMP"))
    struct.pack_into("<ii", bmp, 18, 1_000_000, 1_000_000)
    add("bomb-header.bmp", bytes(bmp), "error", "")

    # amplification (issue 10): cost out of proportion to the file, refused from its structure
    add("truncated-with-eoi.jpg", jpeg_truncated_with_eoi(jpg), "error", "truncated|damaged")
    add("truncated-progressive.jpg", jpeg_truncated_with_eoi(jpeg_repeated_scans(1, size=64)), "error",
        "truncated|damaged")
    add("bomb-grey-14000.jpg", jpeg_with_sof(14_000, 14_000), "error", "")
    add("scans-x150.jpg", jpeg_repeated_scans(150, size=16), "error", "scans")
    add("tiles-shared-f64.tif", tiff_shared_tiles(7000, 7000), "error", "")
    add("idat-overlong.png", png_overlong_idat(50 << 20), "error", "more than the 588 bytes")
    add("chunks-x20000.png", png_many_chunks(20_000), "error", "chunks")
    add("idat-x20000.png", png_tiny_idats(20_000), "error", "chunks")
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (16383).to_bytes(3, "little") * 2
    add("bomb-canvas.webp", b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x, "error", "")
    return tuple(_unique_stems(cases))


def _unique_stems(cases: list[Case]) -> list[Case]:
    """'1x1.png' + '1x1.jpg' -> '1x1-png.png' + '1x1-jpg.jpg': batch outputs must not collide."""
    stems: dict[str, int] = {}
    for c in cases:
        stem = Path(c.name).stem.lower()
        stems[stem] = stems.get(stem, 0) + 1
    out = []
    for c in cases:
        p = Path(c.name)
        if stems[p.stem.lower()] > 1:
            c = dataclasses.replace(c, name=f"{p.stem}-{p.suffix[1:].lower()}{p.suffix}")
        out.append(c)
    assert len({Path(c.name).stem.lower() for c in out}) == len(out)
    return out


def seeds() -> dict[str, bytes]:
    """Small valid files of each decoder's format, for mutation fuzzing."""
    rgb = pixels(6, 8, seed=3)
    im = Image.fromarray(rgb)
    return {"png": encode(im, "PNG"), "png16": imagecodecs.png_encode(pixels(6, 8, dtype=np.uint16)),
            "jpeg": encode(im, "JPEG", quality=80, exif=b"Exif\0\0" + _exif(6)), "tiff": tiff(rgb),
            "tiff16z": tiff(pixels(6, 8, dtype=np.uint16), compression="zlib", predictor=True),
            "webp": encode(im, "WEBP"), "gif": encode(im.quantize(4), "GIF"), "bmp": encode(im, "BMP")}


def write_corpus(folder: Path, cases=None) -> dict[Path, Case]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for case in cases or corpus():
        path = folder / case.name
        path.write_bytes(case.data)
        out[path] = case
    return out


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder`` (hidden temp files included)."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- judging outcomes

WRITABLE = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp")
#: Known failures of retouching (not decoding) still to fix: case name -> bug. None at present.
KNOWN_RETOUCH_BUGS: dict[str, str] = {}


class Findings:
    """Violations collected over a whole corpus, reported together (one test per entry point)."""

    def __init__(self, entry: str):
        self.entry, self.items = entry, []

    def add(self, case: Case, problem: str) -> None:
        self.items.append((case.name, problem))

    def error(self, case: Case, message: str, name: str | None = None, check_why: bool = True) -> None:
        """Check a refusal: allowed for this case, one line, names the file, says why."""
        if case.expect == "ok":
            self.add(case, f"expected a photo, got the error {message!r}")
        if not message or "\n" in message.strip():
            self.add(case, f"error is not one line: {message!r}")
        if name is not None and name not in message:
            self.add(case, f"error does not name the file {name!r}: {message!r}")
        if check_why and case.why and case.expect == "error" and not _search(case.why, message):
            self.add(case, f"error {message!r} does not say {case.why!r}")
        if "Traceback" in message or "<_io." in message:
            self.add(case, f"raw internals in the error: {message!r}")

    def photo(self, case: Case, rgb) -> None:
        """Check a decoded/retouched array: allowed for this case, HxWx3 of the right size."""
        if case.expect == "error":
            self.add(case, "expected an error, got a photo")
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype.name not in ("uint8", "uint16", "float32"):
            self.add(case, f"bad pixels {rgb.shape} {rgb.dtype}")
        elif case.shape is not None and rgb.shape[:2] != tuple(case.shape):
            self.add(case, f"size {rgb.shape[:2]}, expected {case.shape}")

    def output(self, case: Case, path: Path) -> None:
        """Check a written result: it exists and decodes completely to the right size."""
        from csr_core.errors import ImageError
        from csr_core.image_io import load_photo

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # damaged metadata is carried over as it came
                self.photo(case, load_photo(path).rgb)
        except (ImageError, OSError) as exc:
            self.add(case, f"output {path.name} does not decode: {exc}")

    def unexpected(self, case: Case, exc: BaseException) -> None:
        self.add(case, f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")

    def check(self, known: dict[str, str] | None = None) -> None:
        """Fail on any violation not in ``known``; xfail (listing them) if only known ones remain."""
        import pytest

        known = known or {}
        new = [f"  {n}: {p}" for n, p in self.items if n not in known]
        assert not new, f"{self.entry}: {len(new)} violation(s):\n" + "\n".join(new)
        hit = sorted({n for n, _ in self.items})
        if hit:
            why = "; ".join(sorted({known[n] for n in hit}))
            pytest.xfail(f"{self.entry}: known bug(s) still present for {', '.join(hit)}: {why}")


def _search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text, re.IGNORECASE) is not None


def leftovers(folder: Path) -> list[str]:
    """Temp/partial files under ``folder`` (what atomic_write leaves if it is interrupted)."""
    return sorted(p.name for p in Path(folder).rglob("*") if p.name.endswith(".part") or p.name.startswith(".tmp"))


def out_name(case: Case, prefix: str = "out ") -> str:
    """An output file name for ``case``: unicode/space-bearing, with a writable extension."""
    p = Path(case.name)
    return f"{prefix}{p.stem}{p.suffix if p.suffix.lower() in WRITABLE else '.png'}"


# ----------------------------------------------------------------------------- capped subprocesses

@dataclass
class Capped:
    """How a capped child process ended: exit status, output, wall seconds, peak RSS in MB."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_mb: float

    @property
    def hit_cap(self) -> bool:  # killed (SIGKILL/SIGXCPU), or out of memory inside Python
        return self.returncode < 0 or "MemoryError" in self.stderr or "out of memory" in self.stderr


def run_capped(args: list[str], *, mem_mb: int = 2048, cpu_s: int = 120, wall_s: int = 300,
               cwd: Path | None = None, env: dict | None = None, stdin: Path | None = None) -> Capped:
    """Run ``args`` under RLIMIT_AS = ``mem_mb`` and RLIMIT_CPU = ``cpu_s`` (and a wall-clock kill), its
    stdin read from the file ``stdin`` (default: empty)."""
    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))

    env = dict(os.environ if env is None else env, OMP_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            open(stdin or os.devnull, "rb") as source:
        t0 = time.monotonic()
        proc = subprocess.Popen(args, stdout=out, stderr=err, stdin=source, preexec_fn=limits, cwd=cwd, env=env)
        timer = threading.Timer(wall_s, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - t0
        out.seek(0), err.seek(0)
        return Capped(proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                      seconds, usage.ru_maxrss / 1024)


def check_child(capped: Capped, expected: int) -> list[dict]:
    """The results a capped ``capped_entry.py`` child printed: it must have ended within its caps
    (else: which input it was on, its peak and its stderr) and reported ``expected`` inputs."""
    import json

    lines = [json.loads(line) for line in capped.stdout.splitlines() if line.startswith("{")]
    started = next((r["start"] for r in reversed(lines) if "start" in r), "?")
    assert not capped.hit_cap and capped.returncode == 0, (
        f"child hit its caps or failed (exit {capped.returncode}, {capped.seconds:.0f} s, peak {capped.peak_mb:.0f} MB)"
        f" on {started!r}: {capped.stderr[-1500:]}")
    results = [r for r in lines if "name" in r]
    assert len(results) == expected, capped.stdout
    return results
