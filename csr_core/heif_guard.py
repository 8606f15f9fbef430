"""Read a HEIF/AVIF file's item structure before it is decoded, to refuse a declared size that the
coded data cannot fill.

libavif scales a coded image up to the size its 'ispe' box declares, and libheif and libavif
decode every tile a grid names, however many point at the same bytes: a 300-byte AVIF declaring
14000x14000, or a 127 kB grid of 3,025 tiles sharing one, cost 7-9 s and 2.2 GB. Neither pillow-heif
nor Pillow tells what the items point at before decoding, so the few ISOBMFF boxes needed are read
here (ftyp, meta: pitm, iinf/infe, iloc, iref 'dimg', iprp: ipco/ispe/av1C/colr, ipma; idat; the AV1
sequence header): about what libheif parses before its first allocation, with every count and
size bounded by the file itself. ``inspect`` raises only ``HeifDataError``. It also tells the colour
space the primary image declares (nclx) and an AV1 image's bit depth, which decide how it is decoded.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

#: A primary image may declare at most this many pixels per byte of coded data it reaches (its own
#: items and its grid tiles, each byte counted once), and any image may declare FREE_PIXELS. The
#: cheapest honest coding measured: a flat 8192x8192 AVIF (libaom, quality 0) is 90,000 pixels per
#: coded byte, 16 MP flat HEIC (x265) 4,000; a 14000x14000 'ispe' on an 8x8 image is 6 million.
PIXELS_PER_BYTE = 1 << 20
FREE_PIXELS = 1 << 22
#: Bounds on the walk: boxes in one container, items, entries in any one table, nesting.
MAX_BOXES = 1 << 17
MAX_ITEMS = 1 << 17
_MAX_DEPTH = 4


class HeifDataError(ValueError):
    """The file's structure is damaged or declares more than its data can hold (the message says how)."""


@dataclass
class _Item:
    type: bytes = b""
    extents: list[tuple[int, int]] = field(default_factory=list)  # (file offset, length); idat: offset < 0
    props: list[int] = field(default_factory=list)  # 1-based indices into ipco
    tiles: list[int] = field(default_factory=list)  # 'dimg' references, in order


@dataclass
class HeifInfo:
    width: int = 0   # the primary image as declared (its 'ispe'; a grid's own descriptor if larger)
    height: int = 0
    coded_bytes: int = 0  # bytes of coded data the primary image reaches, each counted once
    tiles: int = 0
    nclx: tuple[int, int] | None = None  # its 'colr' nclx (colour primaries, transfer), else its first tile's
    depth: int = 8  # bits a sample of an AV1 image (its 'av1C', else its first tile's); 8 for HEVC


def _boxes(data: bytes, start: int, end: int):
    """(type, body start, body end) of the boxes in data[start:end], bounded in number."""
    pos, count = start, 0
    while pos + 8 <= end:
        count += 1
        if count > MAX_BOXES:
            raise HeifDataError(f"damaged HEIF file (more than {MAX_BOXES} boxes in one container)")
        size, kind = struct.unpack_from(">I4s", data, pos)
        head = 8
        if size == 1:
            if pos + 16 > end:
                raise HeifDataError("truncated HEIF file")
            size, head = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            raise HeifDataError(f"damaged HEIF file (box {_name(kind)} of {size:,} bytes at {pos:,} overruns its container)")
        yield kind, pos + head, pos + size
        pos += size


def _name(kind: bytes) -> str:
    return repr(kind.decode("latin-1"))


class _Reader:
    """Big-endian fields from data[pos:end]; reading past ``end`` is a HeifDataError."""

    def __init__(self, data: bytes, pos: int, end: int):
        self.data, self.pos, self.end = data, pos, end

    def uint(self, size: int) -> int:
        if size == 0:
            return 0
        if self.pos + size > self.end:
            raise HeifDataError("damaged HEIF file (a box is shorter than its fields)")
        value = int.from_bytes(self.data[self.pos:self.pos + size], "big")
        self.pos += size
        return value

    def count(self, size: int, limit: int = MAX_ITEMS) -> int:
        n = self.uint(size)
        if n > limit:
            raise HeifDataError(f"damaged HEIF file (a table of {n:,} entries; the limit is {limit:,})")
        return n


def inspect(data: bytes) -> HeifInfo:
    """The primary image's declared size and the coded bytes it reaches; HeifDataError if grid
    tiles share data, or the declared size is more than the data can fill (see PIXELS_PER_BYTE)."""
    meta = next((b for b in _boxes(data, 0, len(data)) if b[0] == b"meta"), None)
    if meta is None:
        raise HeifDataError("not a HEIF image (no 'meta' box)")
    items: dict[int, _Item] = {}
    ipco: list[tuple[bytes, int, int]] = []
    primary, idat = None, (0, 0)
    for kind, start, end in _boxes(data, meta[1] + 4, meta[2]):  # meta is a FullBox
        r = _Reader(data, start, end)
        if kind in (b"pitm", b"iinf", b"iloc", b"iref"):  # FullBoxes: version and flags first
            version = r.uint(1)
            r.uint(3)
        if kind == b"pitm":
            primary = r.uint(2 if version == 0 else 4)
        elif kind == b"iinf":
            r.count(2 if version == 0 else 4)
            for sub, s, e in _boxes(data, r.pos, end):
                if sub == b"infe" and e - s >= 4 and data[s] >= 2:  # versions 0-1 carry no item type
                    ir = _Reader(data, s + 4, e)
                    item_id = ir.uint(2 if data[s] == 2 else 4)
                    ir.uint(2)
                    _item(items, item_id).type = bytes(data[ir.pos:ir.pos + 4])
        elif kind == b"iloc":
            _read_iloc(r, version, items)
        elif kind == b"iref":
            for ref, s, e in _boxes(data, r.pos, end):
                ir = _Reader(data, s, e)
                size = 2 if version == 0 else 4
                source = ir.uint(size)
                targets = [ir.uint(size) for _ in range(ir.count(2, MAX_ITEMS))]
                if ref == b"dimg":
                    _item(items, source).tiles.extend(targets)
        elif kind == b"iprp":
            for sub, s, e in _boxes(data, start, end):
                if sub == b"ipco":
                    ipco = list(_boxes(data, s, e))
                elif sub == b"ipma":
                    _read_ipma(_Reader(data, s, e), items)
        elif kind == b"idat":
            idat = (start, end)
    if primary is None or primary not in items:
        raise HeifDataError("damaged HEIF file (no primary image)")
    return _check(data, items, ipco, idat, primary)


def _item(items: dict[int, _Item], item_id: int) -> _Item:
    if item_id not in items and len(items) >= MAX_ITEMS:
        raise HeifDataError(f"damaged HEIF file (more than {MAX_ITEMS:,} items)")
    return items.setdefault(item_id, _Item())


def _read_iloc(r: _Reader, version: int, items: dict[int, _Item]) -> None:
    sizes = r.uint(2)
    offset_size, length_size, base_size = sizes >> 12, sizes >> 8 & 15, sizes >> 4 & 15
    index_size = sizes & 15 if version in (1, 2) else 0
    if any(s not in (0, 4, 8) for s in (offset_size, length_size, base_size, index_size)):
        raise HeifDataError("damaged HEIF file (invalid 'iloc' field sizes)")
    for _ in range(r.count(2 if version < 2 else 4)):
        item = _item(items, r.uint(2 if version < 2 else 4))
        method = r.uint(2) & 15 if version in (1, 2) else 0
        r.uint(2)  # data_reference_index
        base = r.uint(base_size)
        for _ in range(r.count(2)):
            r.uint(index_size)
            offset, length = base + r.uint(offset_size), r.uint(length_size)
            if method == 0:
                item.extents.append((offset, length))
            elif method == 1:
                item.extents.append((-1 - offset, length))  # in idat


def _read_ipma(r: _Reader, items: dict[int, _Item]) -> None:
    version = r.uint(1)
    wide = r.uint(3) & 1
    for _ in range(r.count(4)):
        item = _item(items, r.uint(2 if version == 0 else 4))
        for _ in range(r.uint(1)):
            item.props.append(r.uint(2) & 0x7FFF if wide else r.uint(1) & 0x7F)


def _check(data: bytes, items: dict[int, _Item], ipco, idat, primary: int) -> HeifInfo:
    def prop(item: _Item, kind: bytes):
        return next((ipco[i - 1] for i in item.props if 0 < i <= len(ipco) and ipco[i - 1][0] == kind), None)

    def size(item: _Item) -> tuple[int, int]:
        box = prop(item, b"ispe")
        return struct.unpack_from(">II", data, box[1] + 4) if box and box[2] - box[1] >= 12 else (0, 0)

    def span(offset: int, length: int) -> tuple[int, int]:
        lo, hi = (offset, len(data)) if offset >= 0 else (idat[0] - 1 - offset, idat[1])
        end = hi if length == 0 else lo + length  # length 0: to the end of the file (or idat)
        if end > hi:
            raise HeifDataError(f"truncated HEIF file (an item's data ends at {end:,}, past {hi:,})")
        return lo, end

    top = items[primary]
    width, height = size(top)
    reached, spans, level = {primary}, [], [primary]
    for _ in range(_MAX_DEPTH):  # a grid's tiles, an overlay's layers, a derived item's source
        nxt = []
        for item_id in level:
            item = items.get(item_id)
            if item is None:
                raise HeifDataError(f"damaged HEIF file (item {item_id} is referenced but not described)")
            spans.extend(span(*e) for e in item.extents)
            if item.type == b"grid":  # its tiles: each once, and none sharing another's bytes
                if item_id == primary:
                    width, height = _grid_size(data, item, span, (width, height))
                tile_spans = [span(*e) for t in set(item.tiles) for e in items.get(t, _Item()).extents]
                if len(set(item.tiles)) < len(item.tiles) or _union(tile_spans) < sum(b - a for a, b in tile_spans):
                    raise HeifDataError(f"refusing a HEIF grid whose {len(item.tiles):,} tiles share coded data")
            nxt += [t for t in item.tiles if t not in reached]
            reached.update(item.tiles)
            if item.type == b"av01":
                _check_av1(data, item, prop(item, b"av1C"), span, size(item))
        level = nxt
    coded = _union(spans)
    if width * height > max(FREE_PIXELS, coded * PIXELS_PER_BYTE):
        raise HeifDataError(f"refusing a HEIF image that declares {width}x{height} pixels with {coded:,} bytes "
                            "of coded data (more than that data can fill)")
    tile = items.get(top.tiles[0]) if top.tiles else None
    colour = _nclx(data, top, ipco) or (_nclx(data, tile, ipco) if tile else None)
    depth = _av1_depth(data, prop(top, b"av1C") or (prop(tile, b"av1C") if tile else None))
    return HeifInfo(width, height, coded, len(reached) - 1, colour, depth)


def _av1_depth(data: bytes, av1c) -> int:
    """8, 10 or 12 from an 'av1C' box's high_bitdepth and twelve_bit flags (AV1-ISOBMFF 2.3.3); 8 without one."""
    if av1c is None or av1c[2] - av1c[1] < 3:
        return 8
    flags = data[av1c[1] + 2]
    return 8 if not flags & 0x40 else 12 if flags & 0x20 else 10


def _nclx(data: bytes, item: _Item, ipco) -> tuple[int, int] | None:
    """(colour primaries, transfer characteristics) of an item's 'colr' box of type nclx (ISO 23091-2)."""
    for i in item.props:
        if 0 < i <= len(ipco):
            kind, lo, hi = ipco[i - 1]
            if kind == b"colr" and hi - lo >= 8 and data[lo:lo + 4] == b"nclx":
                return struct.unpack_from(">HH", data, lo + 4)
    return None


def _grid_size(data: bytes, item: _Item, span, declared: tuple[int, int]) -> tuple[int, int]:
    """The larger of a grid's 'ispe' and the output size in its descriptor (ISO 23008-12, 6.6.2.3)."""
    if not item.extents:
        return declared
    lo, hi = span(*item.extents[0])
    r = _Reader(data, lo, hi)
    r.uint(1)
    wide = 4 if r.uint(1) & 1 else 2
    r.uint(2)  # rows and columns minus one
    width, height = r.uint(wide), r.uint(wide)
    return max(width, declared[0]), max(height, declared[1])


def _check_av1(data: bytes, item: _Item, av1c, span, declared: tuple[int, int]) -> None:
    """An AV1 image's 'ispe' may not exceed the frame size of its sequence header (libavif would
    scale the coded image up to it)."""
    headers = [span(*e) for e in item.extents[:1]]
    if av1c and av1c[2] - av1c[1] > 4:
        headers.append((av1c[1] + 4, av1c[2]))  # configOBUs
    for lo, hi in headers:
        frame = _av1_max_frame(data, lo, min(hi, lo + 4096))
        if frame and (declared[0] > frame[0] or declared[1] > frame[1]):
            raise HeifDataError(f"refusing an AVIF image that declares {declared[0]}x{declared[1]} pixels for a coded "
                                f"image of at most {frame[0]}x{frame[1]}")


def _av1_max_frame(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """max_frame_width/height of the first sequence header OBU in data[pos:end] (AV1 spec 5.5), or None."""
    for _ in range(8):
        if pos >= end:
            return None
        header = data[pos]
        kind, has_size, extension = header >> 3 & 15, header >> 1 & 1, header >> 2 & 1
        pos += 1 + extension
        if not has_size:
            length = end - pos
        else:
            length = shift = 0
            for _ in range(8):  # leb128
                if pos >= end:
                    return None
                byte = data[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
        if kind == 1:
            try:
                return _sequence_header(_Bits(data, pos, min(end, pos + length)))
            except IndexError:
                return None
        pos += length
    return None


class _Bits:
    def __init__(self, data: bytes, pos: int, end: int):
        self.data, self.bit, self.end = data, pos * 8, end * 8

    def __call__(self, n: int) -> int:
        if self.bit + n > self.end:
            raise IndexError
        value = 0
        for _ in range(n):
            value = value << 1 | self.data[self.bit >> 3] >> (7 - (self.bit & 7)) & 1
            self.bit += 1
        return value

    def uvlc(self) -> int:
        zeros = 0
        while not self(1):
            zeros += 1
            if zeros >= 32:
                raise IndexError
        return self(zeros) + (1 << zeros) - 1


def _sequence_header(f: _Bits) -> tuple[int, int]:
    f(3)  # seq_profile
    f(1)  # still_picture
    if f(1):  # reduced_still_picture_header
        f(5)
    else:
        decoder_model = buffer_delay = 0
        if f(1):  # timing_info_present_flag
            f(32), f(32)
            if f(1):  # equal_picture_interval
                f.uvlc()
            decoder_model = f(1)
            if decoder_model:
                buffer_delay = f(5) + 1
                f(32), f(5), f(5)
        display_delay = f(1)
        for _ in range(f(5) + 1):  # operating points
            f(12)
            if f(5) > 7:
                f(1)
            if decoder_model and f(1):
                f(buffer_delay), f(buffer_delay), f(1)
            if display_delay and f(1):
                f(4)
    width_bits, height_bits = f(4) + 1, f(4) + 1
    return f(width_bits) + 1, f(height_bits) + 1


def _union(spans: list[tuple[int, int]]) -> int:
    total, reach = 0, 0
    for lo, hi in sorted(spans):
        if hi > reach:
            total += hi - max(lo, reach)
            reach = hi
    return total
