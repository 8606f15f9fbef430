"""Baked 3-D LUTs: once the modulation is known, the base net is a fixed RGB->RGB map.

``bake_lut`` samples such a map on a size^3 lattice (indexed [r, g, b], values in [0, 1]); ``apply_lut``
interpolates it trilinearly: 8-bit pixels with one OpenCV ``remap`` per pixel in cache-sized strips on
all cores (measured ~3x faster than Pillow's ``Color3DLUT``, >10x faster than vectorised numpy
trilinear, and faster than a full 256^3 table once its expansion is counted), 16-bit and float pixels
with numpy trilinear in float32. ``LazyLut`` bakes only the lattice points that the 8-bit pixels it is
applied to can reach (a photo's colours touch a few percent of the cells), with a full bake's values.
``write_cube`` / ``write_hald`` export the lattice for Resolve, Photoshop, GIMP/G'MIC, darktable and
friends.
"""
from __future__ import annotations

import os
import queue
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import cv2
import numpy as np

from .errors import CsrError
from .fsutil import atomic_write, write_bytes_atomic
from .pixels import from_float, to_float
from .threads import default_workers, for_each

#: The lattice size retouching uses (chosen by benchmarks/lut_fidelity.py).
DEFAULT_SIZE = 65
#: Pixels per strip when applying a LUT (bounds the temporary memory).
STRIP_PIXELS = 1 << 20
#: Pixels per strip of the 8-bit and the float paths (cache-sized: several small strips beat one big one).
U8_STRIP_PIXELS = 1 << 16
_HIST_STRIP_PIXELS = 1 << 20  # a 3-D histogram per strip: 1 MB at size 65
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
    return _bake_rows(fn, lattice(size).reshape(-1, 3)).reshape(size, size, size, 3)


def _bake_rows(fn: Callable[[np.ndarray], np.ndarray], points: np.ndarray) -> np.ndarray:
    out = np.empty_like(points)

    def bake(p0: int) -> None:
        out[p0:p0 + _BAKE_CHUNK] = np.clip(fn(points[p0:p0 + _BAKE_CHUNK]), 0, 1)

    for_each(bake, range(0, len(points), _BAKE_CHUNK))
    return out


def _cell_of(size: int) -> tuple[np.ndarray, np.ndarray]:
    """For each 8-bit level: the lattice cell it falls in (the lower of the two lattice points the
    8-bit path interpolates between) and its float32 weight towards the upper one."""
    v = np.arange(256) * ((size - 1) / 255)
    i = np.minimum(v.astype(np.int64), size - 2)
    return i, (v - i).astype(np.float32)


def used_cells(rgb: np.ndarray, size: int) -> np.ndarray:
    """Which lattice cells (a (size-1)^3 bool array, [r, g, b]) the colours of 8-bit ``rgb`` fall in, as
    the 8-bit path of ``apply_lut`` interpolates them: one 3-D ``cv2.calcHist`` per band of rows, bands on
    all cores. Where the cells are OpenCV's uniform bins of [0, 256) (size 65, 33, 17...: checked) the
    histogram reads the pixels themselves, else their cell numbers (``cv2.LUT``, a strip at a time)."""
    n = size - 1
    cell = _cell_of(size)[0]
    direct = n & (n - 1) == 0 and np.array_equal(np.arange(256) * n // 256, cell)
    h = rgb.shape[0]
    rows = -(-h // default_workers()) if direct else max(1, _HIST_STRIP_PIXELS // max(rgb.shape[1], 1))
    found: list[np.ndarray] = [np.zeros((n, n, n), bool)]

    def band(y0: int) -> None:
        part = np.ascontiguousarray(rgb[y0:y0 + rows])
        hist = cv2.calcHist([part if direct else cv2.LUT(part, cell.astype(np.uint8))], [0, 1, 2], None,
                            [n, n, n], [0, 256, 0, 256, 0, 256] if direct else [0, n, 0, n, 0, n])
        found.append(hist > 0)

    if h and rgb.shape[1]:
        for_each(band, range(0, h, rows))
    return np.logical_or.reduce(found)


def cells_meanwhile(rgb: np.ndarray, size: int) -> Callable[[], np.ndarray]:
    """``used_cells(rgb, size)`` found on a thread from now on; the function returned waits for it (and
    re-raises what it raised). For work that can run while something else does (the condition net)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="csr-cells")
    found = pool.submit(used_cells, rgb, size)
    pool.shutdown(wait=False)
    return found.result


def cell_corners(cells: np.ndarray) -> np.ndarray:
    """The lattice points (a size^3 bool array) at the corners of the ``cells`` (size-1)^3."""
    n = cells.shape[0]
    points = np.zeros((n + 1,) * 3, bool)
    for dr in (0, 1):
        for dg in (0, 1):
            for db in (0, 1):
                points[dr:dr + n, dg:dg + n, db:db + n] |= cells
    return points


class LazyLut:
    """The colour map ``fn`` as a size^3 LUT baked on demand: applied to 8-bit pixels, only the corners
    of the cells their colours fall in are baked (those are all the 8-bit path reads with a non-zero
    weight; the rest stays 0); applied to 16-bit or float pixels, the whole lattice. Each point is baked
    once, with ``bake_lut``'s values (up to BLAS rounding, a few 1e-7), so the output is a full bake's
    (8-bit: within 1/255, in about one value in a million). Callable as ``apply(pixels, out=None)`` like
    ``apply_lut``; thread-safe."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], size: int = DEFAULT_SIZE,
                 known: tuple[np.ndarray, Callable[[], np.ndarray]] | None = None):
        """``known``: (pixels, their ``used_cells``), the latter a function (see ``cells_meanwhile``): the
        first call, if it is on those very pixels (unchanged since), takes the cells from it."""
        if not 2 <= size <= _U8_MAX_SIZE:
            raise CsrError(f"LUT size must be between 2 and {_U8_MAX_SIZE}, got {size}")
        self.fn, self.size, self._known = fn, size, known
        self.lut = np.zeros((size, size, size, 3), np.float32)
        self.baked = np.zeros((size, size, size), bool)
        self._lock = threading.Lock()

    def __call__(self, rgb: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        known, self._known = self._known, None
        if known is not None and rgb is known[0]:
            cells = known[1]()
        else:
            cells = used_cells(rgb, self.size) if rgb.dtype == np.uint8 else None
        self.bake(np.ones_like(self.baked) if cells is None else cell_corners(cells))
        return apply_lut(rgb, self.lut, out=out, cells=cells)

    def bake(self, points: np.ndarray) -> None:
        """Bake the lattice ``points`` (a size^3 bool array) not baked yet."""
        with self._lock:
            todo = points & ~self.baked
            if todo.any():
                index = np.nonzero(todo)
                grid = np.linspace(0, 1, self.size, dtype=np.float32)
                self.lut[index] = _bake_rows(self.fn, np.stack([grid[i] for i in index], axis=-1))
                self.baked |= todo


def _check_lut(lut: np.ndarray) -> np.ndarray:
    lut = np.asarray(lut, dtype=np.float32)
    if lut.ndim != 4 or lut.shape[3] != 3 or not lut.shape[0] == lut.shape[1] == lut.shape[2] >= 2:
        raise ValueError(f"a LUT must be (size, size, size, 3), got {lut.shape}")
    return lut


# -- applying ------------------------------------------------------------------------------------------
def _apply_u8(rgb: np.ndarray, lut: np.ndarray, out: np.ndarray, rows: int,
              cells: np.ndarray | None = None) -> None:
    """Trilinear via OpenCV: the lattice is first interpolated along r at the 256 8-bit levels
    (exact; with ``cells``, only at the levels of the cells used), so each pixel is one bilinear
    ``remap`` in its r slice's (g, b) plane; per-channel coordinates come from 256-entry tables
    (``cv2.LUT``)."""
    size = lut.shape[0]
    i, w = _cell_of(size)
    v = np.arange(256) * ((size - 1) / 255)
    planes = np.zeros((256, size, size, 3), np.float32)  # levels not prepared stay 0: read with weight 0
    used_r = np.ones(size - 1, bool) if cells is None else cells.any(axis=(1, 2))
    for k in np.flatnonzero(used_r):  # per cell, in place: no image-sized temporaries
        levels = slice(np.searchsorted(i, k), np.searchsorted(i, k, "right"))
        np.multiply(w[levels, None, None, None], lut[k + 1] - lut[k], out=planes[levels])
        planes[levels] += lut[k]
    planes = planes.reshape(256 * size, size, 3)
    pos = v.astype(np.float32).reshape(256, 1)  # lattice coordinate of a g or b value
    row0 = (np.arange(256) * size).astype(np.float32).reshape(256, 1)  # first row of r's slice

    h, width = rgb.shape[:2]
    spare: queue.SimpleQueue = queue.SimpleQueue()  # each worker's strip buffers, reused strip after strip

    def strip(y0: int) -> None:
        k = min(rows, h - y0)
        try:
            bufs = spare.get_nowait()
        except queue.Empty:
            bufs = ([np.empty((rows, width), np.uint8) for _ in range(3)],
                    [np.empty((rows, width), np.float32) for _ in range(3)], np.empty((rows, width, 3), np.float32))
        (r, g, b), (x, y, y_r), mapped = [c[:k] for c in bufs[0]], [c[:k] for c in bufs[1]], bufs[2][:k]
        cv2.split(np.ascontiguousarray(rgb[y0:y0 + k]), [r, g, b])
        cv2.add(cv2.LUT(g, pos, dst=y), cv2.LUT(r, row0, dst=y_r), dst=y)
        cv2.remap(planes, cv2.LUT(b, pos, dst=x), y, cv2.INTER_LINEAR, dst=mapped)
        dest = out[y0:y0 + k]
        if dest.flags.c_contiguous:  # (out may be rgb itself: the strip was read above)
            cv2.convertScaleAbs(mapped, dst=dest, alpha=255)
        else:
            dest[...] = cv2.convertScaleAbs(mapped, alpha=255)
        spare.put(bufs)

    for_each(strip, range(0, h, rows))


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
              out: np.ndarray | None = None, cells: np.ndarray | None = None) -> np.ndarray:
    """Apply a LUT to HxWx3 pixels (uint8 / uint16 / float32) strip by strip; same dtype and shape out
    (written into ``out`` if given, which may be ``rgb`` itself: each strip is read before it is written).
    ``cells``: 8-bit ``rgb``'s ``used_cells``, when known (then only those cells of the LUT are read)."""

    lut = _check_lut(lut)
    h, w, _ = rgb.shape
    out = np.empty_like(rgb) if out is None else out
    rows = max(1, min(strip_pixels, U8_STRIP_PIXELS) // max(w, 1))
    if not h * w:
        return out
    if rgb.dtype == np.uint8 and lut.shape[0] <= _U8_MAX_SIZE:
        _apply_u8(rgb, lut, out, rows, cells)
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
    """Write an Adobe / Resolve .cube file atomically (red index varies fastest). A .cube is ASCII text:
    characters of ``title`` outside it (a photo's name in another script) become '?'."""
    lut = _check_lut(lut)
    size = lut.shape[0]
    title = re.sub(r'["\r\n]', "'", title)[:200]
    rows = lut.transpose(2, 1, 0, 3)  # [b][g][r]
    with atomic_write(path, "wb") as fh:
        fh.write(f'TITLE "{title}"\n# written by csr (CSRNet photo retouching)\n# sRGB-encoded input and output\n'
                 f"LUT_3D_SIZE {size}\nDOMAIN_MIN 0.0 0.0 0.0\nDOMAIN_MAX 1.0 1.0 1.0\n".encode("ascii", "replace"))
        for b in range(size):  # one blue slice at a time: bounded memory
            fh.write((("%.6f %.6f %.6f\n" * size * size) % tuple(rows[b].reshape(-1).tolist())).encode("ascii"))


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
