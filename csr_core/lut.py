"""Baked 3-D LUTs: once the modulation is known, the base net is a fixed RGB->RGB map.

``bake_lut`` samples such a map on a size^3 lattice (indexed [r, g, b], values in [0, 1]); ``apply_lut``
interpolates it trilinearly: 8-bit pixels with one OpenCV ``remap`` per pixel in cache-sized strips on
all cores (measured ~3x faster than Pillow's ``Color3DLUT``, >10x faster than vectorised numpy
trilinear, and faster than a full 256^3 table once its expansion is counted), 16-bit and float pixels
with numpy trilinear in float32. ``write_cube`` / ``write_hald`` export the lattice for Resolve,
Photoshop, GIMP/G'MIC, darktable and friends.
"""
from __future__ import annotations

import os
import re
from typing import Callable

import cv2
import numpy as np

from .errors import CsrError
from .fsutil import atomic_write, write_bytes_atomic
from .pixels import from_float, to_float
from .threads import for_each

#: The lattice size retouching uses (chosen by benchmarks/lut_fidelity.py).
DEFAULT_SIZE = 65
#: Pixels per strip when applying a LUT (bounds the temporary memory).
STRIP_PIXELS = 1 << 20
#: Pixels per strip of the 8-bit and the float paths (cache-sized: several small strips beat one big one).
U8_STRIP_PIXELS = 1 << 16
_U8_MAX_SIZE = 127  # remap coordinates are 16-bit: 256 * size rows must stay below 32768
_BAKE_CHUNK = 1 << 14


def lattice(size: int) -> np.ndarray:
    """The identity lattice, (size, size, size, 3) float32 indexed [r, g, b]."""
    v = np.linspace(0, 1, size, dtype=np.float32)
    return np.stack(np.meshgrid(v, v, v, indexing="ij"), axis=-1)


def bake_lut(fn: Callable[[np.ndarray], np.ndarray], size: int = DEFAULT_SIZE) -> np.ndarray:
    """The colour map ``fn`` (P x 3 float32 rows -> P x 3, e.g. ``inference.base_fn``) on a size^3
    lattice, clamped to [0, 1]; lattice chunks run on all cores."""
    if not 2 <= size <= 256:
        raise CsrError(f"LUT size must be between 2 and 256, got {size}")
    ident = lattice(size).reshape(-1, 3)
    out = np.empty_like(ident)

    def bake(p0: int) -> None:
        out[p0:p0 + _BAKE_CHUNK] = np.clip(fn(ident[p0:p0 + _BAKE_CHUNK]), 0, 1)

    for_each(bake, range(0, len(ident), _BAKE_CHUNK))
    return out.reshape(size, size, size, 3)


def _check_lut(lut: np.ndarray) -> np.ndarray:
    lut = np.asarray(lut, dtype=np.float32)
    if lut.ndim != 4 or lut.shape[3] != 3 or not lut.shape[0] == lut.shape[1] == lut.shape[2] >= 2:
        raise ValueError(f"a LUT must be (size, size, size, 3), got {lut.shape}")
    return lut


# -- applying ------------------------------------------------------------------------------------------
def _apply_u8(rgb: np.ndarray, lut: np.ndarray, out: np.ndarray, rows: int) -> None:
    """Trilinear via OpenCV: the lattice is first interpolated along r at the 256 8-bit levels
    (exact), so each pixel is one bilinear ``remap`` in its r slice's (g, b) plane; per-channel
    coordinates come from 256-entry tables (``cv2.LUT``)."""
    size = lut.shape[0]
    v = np.arange(256) * ((size - 1) / 255)
    i = np.minimum(v.astype(np.int64), size - 2)
    w = (v - i).astype(np.float32)[:, None, None, None]
    planes = np.ascontiguousarray((lut[i] + w * (lut[i + 1] - lut[i])).reshape(256 * size, size, 3))
    pos = v.astype(np.float32).reshape(256, 1)  # lattice coordinate of a g or b value
    row0 = (np.arange(256) * size).astype(np.float32).reshape(256, 1)  # first row of r's slice

    def strip(y0: int) -> None:
        r, g, b = cv2.split(np.ascontiguousarray(rgb[y0:y0 + rows]))
        y = cv2.add(cv2.LUT(g, pos), cv2.LUT(r, row0))
        mapped = cv2.remap(planes, cv2.LUT(b, pos), y, cv2.INTER_LINEAR)
        out[y0:y0 + rows] = cv2.convertScaleAbs(mapped, alpha=255)

    for_each(strip, range(0, rgb.shape[0], rows))


def trilinear(x: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Trilinear lookup of float pixels (..., 3) in [0, 1] -> float32 (..., 3) (clamped at the edges)."""
    lut = _check_lut(lut)
    n = lut.shape[0]
    flat = lut.reshape(-1, 3)
    p = np.clip(np.asarray(x, dtype=np.float32).reshape(-1, 3), 0, 1) * np.float32(n - 1)
    i = np.minimum(p.astype(np.intp), n - 2)
    f = p - i
    g = 1 - f
    base = (i[:, 0] * n + i[:, 1]) * n + i[:, 2]
    out = np.zeros_like(p)
    for dr in (0, 1):
        wr = f[:, 0] if dr else g[:, 0]
        for dg in (0, 1):
            wrg = wr * (f[:, 1] if dg else g[:, 1])
            for db in (0, 1):
                w = wrg * (f[:, 2] if db else g[:, 2])
                out += w[:, None] * flat[base + ((dr * n + dg) * n + db)]
    return out.reshape(np.shape(x))


def apply_lut(rgb: np.ndarray, lut: np.ndarray, strip_pixels: int = STRIP_PIXELS,
              out: np.ndarray | None = None) -> np.ndarray:
    """Apply a LUT to HxWx3 pixels (uint8 / uint16 / float32) strip by strip; same dtype and shape out
    (written into ``out`` if given, which may be ``rgb`` itself: each strip is read before it is written)."""

    lut = _check_lut(lut)
    h, w, _ = rgb.shape
    out = np.empty_like(rgb) if out is None else out
    rows = max(1, min(strip_pixels, U8_STRIP_PIXELS) // max(w, 1))
    if not h * w:
        return out
    if rgb.dtype == np.uint8 and lut.shape[0] <= _U8_MAX_SIZE:
        _apply_u8(rgb, lut, out, rows)
        return out

    def strip(y0: int) -> None:
        out[y0:y0 + rows] = from_float(trilinear(to_float(rgb[y0:y0 + rows]), lut), rgb.dtype)

    for_each(strip, range(0, h, rows))
    return out


# -- export --------------------------------------------------------------------------------------------
def resample(lut: np.ndarray, size: int) -> np.ndarray:
    """The LUT on another lattice size (trilinear)."""
    lut = _check_lut(lut)
    return lut if lut.shape[0] == size else trilinear(lattice(size), lut)


def write_cube(lut: np.ndarray, path: str | os.PathLike, title: str = "csr") -> None:
    """Write an Adobe / Resolve .cube file atomically (red index varies fastest)."""
    lut = _check_lut(lut)
    size = lut.shape[0]
    title = re.sub(r'["\r\n]', "'", title)[:200]
    rows = lut.transpose(2, 1, 0, 3)  # [b][g][r]
    with atomic_write(path, "w") as fh:
        fh.write(f'TITLE "{title}"\n# written by csr (CSRNet photo retouching)\n# sRGB-encoded input and output\n'
                 f"LUT_3D_SIZE {size}\nDOMAIN_MIN 0.0 0.0 0.0\nDOMAIN_MAX 1.0 1.0 1.0\n")
        for b in range(size):  # one blue slice at a time: bounded memory
            fh.write(("%.6f %.6f %.6f\n" * size * size) % tuple(rows[b].reshape(-1).tolist()))


def hald_image(lut: np.ndarray, level: int = 8) -> np.ndarray:
    """A Hald CLUT image (level^3 square, cube size level^2, red fastest) as uint16 HxWx3."""
    if not 2 <= level <= 16:
        raise CsrError(f"Hald level must be between 2 and 16, got {level}")
    n = level * level
    cube = resample(lut, n).transpose(2, 1, 0, 3)  # [b][g][r]: pixel index r + g*n + b*n*n
    return np.rint(cube.reshape(level ** 3, level ** 3, 3) * 65535).astype(np.uint16)


def write_hald(lut: np.ndarray, path: str | os.PathLike, level: int = 8) -> None:
    """Write a 16-bit Hald CLUT PNG atomically (level 8 -> 512x512, a 64^3 cube)."""
    import imagecodecs

    write_bytes_atomic(path, imagecodecs.png_encode(hald_image(lut, level), level=6))
