"""Baked 3-D LUTs: once the modulation is known, the base net is a fixed RGB->RGB map.

``bake_lut`` samples it on a size^3 lattice (indexed [r, g, b], values in [0, 1]); ``apply_lut``
interpolates it trilinearly: 8-bit pixels with one OpenCV ``remap`` per pixel in cache-sized strips on
all cores (measured ~3x faster than Pillow's ``Color3DLUT``, >10x faster than vectorised numpy
trilinear or ``grid_sample``, and faster than a full 256^3 table once its expansion is counted),
16-bit and float pixels with torch ``grid_sample`` in float32. ``write_cube`` / ``write_hald`` export
the lattice for Resolve, Photoshop, GIMP/G'MIC, darktable and friends.
"""
from __future__ import annotations

import contextlib
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .errors import CsrError
from .pixels import from_float, to_float
from .fsutil import atomic_write, write_bytes_atomic
from .model import CSRNet, Modulation

#: The lattice size retouching uses (chosen by benchmarks/lut_fidelity.py).
DEFAULT_SIZE = 65
#: Pixels per strip when applying a LUT (bounds the temporary memory).
STRIP_PIXELS = 1 << 20
#: Pixels per strip of the 8-bit path (cache-sized: several small strips beat one big one).
U8_STRIP_PIXELS = 1 << 16
_U8_MAX_SIZE = 127  # remap coordinates are 16-bit: 256 * size rows must stay below 32768
_BAKE_CHUNK = 1 << 12
_cv2_lock = threading.Lock()
_cv2_users, _cv2_saved = 0, 1


def lattice(size: int) -> np.ndarray:
    """The identity lattice, (size, size, size, 3) float32 indexed [r, g, b]."""
    v = np.linspace(0, 1, size, dtype=np.float32)
    return np.stack(np.meshgrid(v, v, v, indexing="ij"), axis=-1)


def bake_lut(base: CSRNet, mod: Modulation, size: int = DEFAULT_SIZE, strength: float = 1.0,
             device: torch.device | str = "cpu") -> np.ndarray:
    """The modulated base net on a size^3 lattice: out = x + strength * (f(x) - x), clamped to [0, 1]."""
    from .inference import MAX_STRENGTH

    if not 2 <= size <= 256:
        raise CsrError(f"LUT size must be between 2 and 256, got {size}")
    if not 0.0 <= strength <= MAX_STRENGTH:
        raise CsrError(f"strength must be between 0 and {MAX_STRENGTH:g}, got {strength:g}")
    ident = lattice(size).reshape(-1, 3)
    out = np.empty_like(ident)
    base = base.to(device)
    chunks = range(0, len(ident), _BAKE_CHUNK)  # cache-sized chunks of the lattice

    def bake(starts) -> None:
        with torch.inference_mode():
            for p0 in starts:
                x = torch.from_numpy(ident[p0:p0 + _BAKE_CHUNK]).to(device)[None]
                y = base.base(x, mod)
                if strength != 1.0:
                    y = x + strength * (y - x)
                out[p0:p0 + _BAKE_CHUNK] = y.clamp_(0, 1)[0].cpu().numpy()

    if torch.device(device).type == "cpu":
        n = min(_cores(), len(chunks))
        single_threaded(*(lambda k=k: bake(chunks[k::n]) for k in range(n)))
    else:
        bake(chunks)
    return out.reshape(size, size, size, 3)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def single_threaded(*fns: Callable[[], object]) -> None:
    """Run each function in its own helper thread limited to one torch intra-op thread (a per-thread
    setting), and wait for all.

    For many small ops this beats torch's own threads: those gain little on idle cores and, when the
    cores are busy, every op waits at an OpenMP barrier for a descheduled thread (measured 10x slower).
    """
    before, errors = torch.get_num_threads(), []

    def run(fn) -> None:
        try:
            torch.set_num_threads(1)
            fn()
        except BaseException as exc:  # re-raised in the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,), name="csr-torch") for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if torch.get_num_threads() != before:  # a build where the setting is process-wide
        torch.set_num_threads(before)
    if errors:
        raise errors[0]


def look_lut(rgb: np.ndarray, look, size: int = DEFAULT_SIZE, strength: float = 1.0,
             device: torch.device | str = "cpu") -> np.ndarray:
    """The LUT that retouching ``rgb`` with ``look`` (an inference.Look) applies to it."""
    from .inference import look_modulation, resolve_device

    dev = resolve_device(device) if isinstance(device, str) else device
    return bake_lut(look.base, look_modulation(look, rgb, dev), size, strength, dev)


def _check_lut(lut: np.ndarray) -> np.ndarray:
    lut = np.asarray(lut, dtype=np.float32)
    if lut.ndim != 4 or lut.shape[3] != 3 or not lut.shape[0] == lut.shape[1] == lut.shape[2] >= 2:
        raise ValueError(f"a LUT must be (size, size, size, 3), got {lut.shape}")
    return lut


# -- applying ------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _cv2_serial() -> Iterator[None]:
    """OpenCV single-threaded while strips run in our own threads (its pool on small strips is slower,
    and stalls when cores are busy); the previous setting returns when the last user leaves."""
    global _cv2_users, _cv2_saved
    with _cv2_lock:
        if _cv2_users == 0:
            _cv2_saved = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _cv2_users += 1
    try:
        yield
    finally:
        with _cv2_lock:
            _cv2_users -= 1
            if _cv2_users == 0:
                cv2.setNumThreads(_cv2_saved)


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

    starts = range(0, rgb.shape[0], rows)
    with _cv2_serial(), ThreadPoolExecutor(max(1, min(len(starts), _cores(), 8))) as pool:
        list(pool.map(strip, starts))


def trilinear(x: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Trilinear lookup of float pixels (..., 3) in [0, 1] -> float32 (..., 3) (torch grid_sample)."""
    lut = _check_lut(lut)
    table = torch.from_numpy(lut).permute(3, 0, 1, 2)[None]  # (1, 3, D=r, H=g, W=b)
    g = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(1, 1, 1, -1, 3)
    g = g.flip(-1).mul(2).sub_(1)  # grid order is (W, H, D) = (b, g, r), in [-1, 1]
    with torch.inference_mode():
        y = F.grid_sample(table, g, mode="bilinear", padding_mode="border", align_corners=True)
    return y[0, :, 0, 0].T.numpy().reshape(x.shape)


def apply_lut(rgb: np.ndarray, lut: np.ndarray, strip_pixels: int = STRIP_PIXELS,
              out: np.ndarray | None = None) -> np.ndarray:
    """Apply a LUT to HxWx3 pixels (uint8 / uint16 / float32) strip by strip; same dtype and shape out
    (written into ``out`` if given, which may be ``rgb`` itself: each strip is read before it is written)."""

    lut = _check_lut(lut)
    h, w, _ = rgb.shape
    out = np.empty_like(rgb) if out is None else out
    rows = max(1, strip_pixels // max(w, 1))
    if rgb.dtype == np.uint8 and lut.shape[0] <= _U8_MAX_SIZE and h * w:
        _apply_u8(rgb, lut, out, max(1, min(strip_pixels, U8_STRIP_PIXELS) // max(w, 1)))
        return out
    for y0 in range(0, h, rows):  # grid_sample is multi-threaded itself
        out[y0:y0 + rows] = from_float(trilinear(to_float(rgb[y0:y0 + rows]), lut), rgb.dtype)
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
        fh.write(f'TITLE "{title}"\n# written by csr (CSRNet photo retouching)\n'
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
