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

#: Start-of-frame markers (all but DHT C4, JPG C8, DAC CC); C2, C6, CA, CE are progressive.
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
    scans: int = 0

    def coefficient_bytes(self) -> int:
        """Bytes libjpeg holds for the whole image's DCT coefficients (0 for one-scan baseline files)."""
        if not self.sampling or (not self.progressive and self.scans <= 1):
            return 0
        hmax = max(h for h, _ in self.sampling)
        vmax = max(v for _, v in self.sampling)
        total = 0
        for h, v in self.sampling:
            bw = -(-self.width * h // (8 * hmax))
            bh = -(-self.height * v // (8 * vmax))
            total += bw * bh * 64 * 2
        return total


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
        elif marker == 0xDA:
            info.scans += 1
            if info.scans > max_scans:
                raise ValueError(f"more than {max_scans} scans")
            found = _SEGMENT_END.search(data, pos)
            if found is None:
                break
            pos = found.start()
    return info
