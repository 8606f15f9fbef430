"""Read a JPEG's structure before it is decoded: frame size, components, scans.

libjpeg decodes every scan of a progressive JPEG over the whole image, so a small file repeating a
refinement scan thousands of times costs minutes; and a progressive (or multi-scan) JPEG buffers the
DCT coefficients of the whole image (2 bytes per sample) besides the decoded pixels. ``inspect``
walks the markers (entropy-coded data is skipped with one regular-expression search per scan) so
that both can be budgeted from the file before libjpeg sees it.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass

#: Start-of-frame markers (all but DHT C4, JPG C8, DAC CC); C2, C6, CA, CE are progressive, C9-CF arithmetic.
_SOF = {m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC)}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
#: The end of an entropy-coded segment: 0xFF followed by neither a stuffed 0x00, an RSTn nor a fill 0xFF.
_SEGMENT_END = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


@dataclass
class JpegInfo:
    width: int = 0
    height: int = 0
    sampling: tuple[tuple[int, int], ...] = ()  # (h, v) sampling factors per component
    progressive: bool = False
    arithmetic: bool = False
    scans: int = 0
    scan_bytes: int = 0  # entropy-coded data, all scans together

    def blocks(self) -> int:
        """8x8 blocks of all components (without MCU padding)."""
        if not self.sampling:
            return 0
        hmax = max(h for h, _ in self.sampling)
        vmax = max(v for _, v in self.sampling)
        return sum(-(-self.width * h // (8 * hmax)) * -(-self.height * v // (8 * vmax)) for h, v in self.sampling)

    def too_little_data(self) -> bool:
        """True when the scans cannot hold the frame: with Huffman coding every block costs at least
        one bit (its DC code; baseline: DC + end-of-block), whatever the image. libjpeg would
        otherwise decode a 600-byte file declaring 14000x14000 into 196 MP of grey before its
        warning surfaces."""
        return not self.arithmetic and self.scan_bytes * 8 < self.blocks()

    def coefficient_bytes(self) -> int:
        """Bytes libjpeg holds for the whole image's DCT coefficients (0 for one-scan baseline files)."""
        if not self.progressive and self.scans <= 1:
            return 0
        return self.blocks() * 64 * 2


def inspect(data: bytes, max_scans: int) -> JpegInfo:
    """The frame and the scan count, stopping (ValueError) once there are more than ``max_scans`` scans.

    Damaged structure ends the walk quietly: the decoder then says what is wrong.
    """
    info = JpegInfo()
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == 0xD9:  # EOI
            break
        (length,) = struct.unpack_from(">H", data, pos + 2)
        body = pos + 4
        pos += 2 + length
        if marker in _SOF and length >= 8 and body + 6 <= end and not info.sampling:
            info.height, info.width = struct.unpack_from(">HH", data, body + 1)
            count = data[body + 5]
            factors = data[body + 6:body + 6 + 3 * count]
            info.sampling = tuple((max(1, b >> 4), max(1, b & 15)) for b in factors[1::3])
            info.progressive = marker in _PROGRESSIVE
            info.arithmetic = marker >= 0xC9
        elif marker == 0xDA:
            info.scans += 1
            if info.scans > max_scans:
                raise ValueError(f"more than {max_scans} scans")
            found = _SEGMENT_END.search(data, pos)
            stop = found.start() if found is not None else end
            info.scan_bytes += stop - pos
            if found is None:
                break
            pos = stop
    return info
