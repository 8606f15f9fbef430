"""Vet a PNG's image data before libpng sees it.

imagecodecs' ``png_decode`` (2026.3) leaks one reference to ``None`` each time libpng fails while
reading the image data (a damaged deflate stream, too little data, a bad row filter, a truncated
file): a few thousand damaged PNGs then abort the process ("deallocating None"), which a web app
must not allow. So the deflate stream is inflated here first, in bounded pieces and with Python's
zlib, checking what libpng would fail on; only a PNG that passes is handed to libpng.
"""
from __future__ import annotations

import struct
import zlib
from typing import Sequence

import numpy as np

#: Channels per colour type, and the bit depths each allows (PNG spec, table 11.1).
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}
#: Adam7 passes: (x0, y0, dx, dy).
ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_PIECE = 1 << 20  # inflate output per step: bounded memory whatever the image size
_MAX_FILTER = 4


class PngDataError(ValueError):
    """The PNG's image data is damaged (the message says how)."""


def row_starts(ihdr: bytes) -> tuple[np.ndarray, int]:
    """Offsets of every scanline's filter byte in the inflated data, and the data's total length."""
    width, height, depth, ctype, _compression, _filter, interlace = struct.unpack(">IIBBBBB", ihdr)
    if ctype not in _CHANNELS or depth not in _DEPTHS[ctype] or interlace not in (0, 1):
        raise PngDataError(f"invalid PNG header (colour type {ctype}, bit depth {depth}, interlace {interlace})")
    bits = _CHANNELS[ctype] * depth
    passes = ADAM7 if interlace else ((0, 0, 1, 1),)
    starts, total = [], 0
    for x0, y0, dx, dy in passes:
        w, h = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if w <= 0 or h <= 0:
            continue
        row = 1 + (w * bits + 7) // 8
        starts.append(total + row * np.arange(h, dtype=np.int64))
        total += row * h
    return (np.concatenate(starts) if starts else np.zeros(0, np.int64)), total


def decoded_bytes(ihdr: bytes) -> int:
    """Bytes of the decoded pixels (palette expanded to RGB(A), depths below 8 to one byte)."""
    width, height, depth, ctype = struct.unpack_from(">IIBB", ihdr)
    channels = 4 if ctype == 3 else _CHANNELS.get(ctype, 4)
    return width * height * channels * (2 if depth == 16 else 1)


def check_image_data(ihdr: bytes, idat: Sequence[memoryview | bytes]) -> None:
    """Raise PngDataError unless the IDAT stream inflates completely, to exactly the size the
    header implies, with a valid filter type (0-4) at the start of every scanline. Inflating stops
    one byte past that size: image data that inflates to more is refused at the cost of the image."""
    starts, expected = row_starts(ihdr)
    inflater, done = zlib.decompressobj(), 0
    try:
        for chunk in idat:
            data = chunk
            while not inflater.eof:
                out = inflater.decompress(data, min(_PIECE, expected - done + 1))
                if done + len(out) > expected:
                    raise PngDataError(f"damaged PNG image data (more than the {expected} bytes its header needs)")
                data = inflater.unconsumed_tail
                if out:
                    lo, hi = np.searchsorted(starts, (done, done + len(out)))
                    filters = np.frombuffer(out, np.uint8)[starts[lo:hi] - done]
                    if filters.size and int(filters.max()) > _MAX_FILTER:
                        raise PngDataError(f"damaged PNG image data (bad row filter {int(filters.max())})")
                    done += len(out)
                elif not data:
                    break
            if inflater.eof:
                break
    except zlib.error as exc:
        raise PngDataError(f"damaged PNG image data ({exc})") from None
    if not inflater.eof:
        raise PngDataError("truncated PNG image data")
    if done < expected:
        raise PngDataError(f"not enough PNG image data ({done} of {expected} bytes)")
