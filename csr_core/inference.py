"""Inference at any size: condition on a small copy, run the base net over full-resolution strips.

The condition vector is computed from a copy resized so its long side equals the style's recorded
``cond_size`` (the same rule at training time), so results do not drift with resolution. The base
net is a per-pixel map, so running it strip by strip gives exactly the one-pass result in bounded memory;
by default it is baked into a 3-D LUT for the image and interpolated (``csr_core.lut``), unless ``exact``.
Everything runs in the numpy engine (``csr_core.engine``); ``device`` 'cuda', 'mps' or 'auto' runs the
base net in torch instead (``csr_core.gpu``, the ``train`` extra).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import cv2
import numpy as np

from . import DEVICES, MAX_STRENGTH
from .engine import Modulation, Net
from .errors import CsrError, require
from .lut import DEFAULT_SIZE as LUT_SIZE, LazyLut, bake_lut, cells_meanwhile
from .pixels import from_float, to_float
from .threads import for_each, serial_libraries

#: Pixels per strip of the full-resolution pass (bounds memory: ~64 floats of activations each).
STRIP_PIXELS = 1 << 16
#: The condition net's 7x7 stride-2 first conv (padding 1) needs at least 5 pixels on each side.
MIN_CONDITION_SIDE = 5
#: Big 8/16-bit photos are box-averaged to at least this many pixels per condition pixel first.
PRESHRINK = 4
_RESIZE_ROWS = 4  # output rows per group of the condition resize (bounds its float copy)
_RESIZE_COLS = 32  # output columns per group of its column pass

__all__ = ["Look", "MAX_STRENGTH", "Modulation", "apply_base", "base_fn", "colour_map", "condition_hw",
           "condition_input", "look_lut", "look_modulation", "resolve_device", "retouch_array"]


def resolve_device(device: str = "cpu") -> str:
    """'cpu', 'cuda', 'mps' or 'auto' (the best available) -> the device name; a clear error if it is
    unavailable. Only the GPU devices need PyTorch; 'auto' without it is 'cpu'."""
    if device not in DEVICES:
        raise CsrError(f"unknown device {device!r}: choose cpu, cuda, mps or auto")
    if device == "cpu":
        return device
    try:
        require("train", f"device {device!r}")
    except CsrError:
        if device == "auto":
            return "cpu"
        raise
    from . import gpu  # the torch engine: only for GPU devices, by design

    return gpu.resolve(device)


def check_strength(strength: float) -> None:
    if not 0.0 <= strength <= MAX_STRENGTH:
        raise CsrError(f"strength must be between 0 and {MAX_STRENGTH:g}, got {strength:g}")


def condition_hw(h: int, w: int, size: int) -> tuple[int, int]:
    """Size of the condition copy: long side ``size``, aspect kept, short side at least MIN_CONDITION_SIDE."""
    scale = size / max(h, w)
    return max(MIN_CONDITION_SIDE, round(h * scale)), max(MIN_CONDITION_SIDE, round(w * scale))


def _resize_weights(n_in: int, n_out: int, scale: float | None = None) -> np.ndarray:
    """(n_out, n_in) weights of antialiased bilinear resampling: a triangle filter widened by the
    downscale factor, normalised per output (Pillow's BILINEAR and torch's ``antialias=True``;
    for upscaling the plain half-pixel-centred bilinear). ``scale``: input pixels per output pixel
    (default n_in / n_out; given when the input is a box-averaged copy missing its last rows)."""
    scale = n_in / n_out if scale is None else scale
    support, inv = max(scale, 1.0), 1.0 / max(scale, 1.0)
    c = (np.arange(n_out) + 0.5) * scale  # each output's centre, in input pixels
    lo = np.maximum((c - support + 0.5).astype(np.int64), 0)
    hi = np.minimum((c + support + 0.5).astype(np.int64), n_in)
    j = lo[:, None] + np.arange(int(2 * support) + 2)  # each output's support, and beyond it
    inside = j < hi[:, None]
    w = np.where(inside, np.maximum(0.0, 1.0 - np.abs((j - c[:, None] + 0.5) * inv)), 0.0)
    w /= w.sum(axis=1, keepdims=True)
    m = np.zeros((n_out, n_in), np.float32)
    m[np.nonzero(inside)[0], j[inside]] = w[inside]
    return m


def _spans(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each output's first and past-the-last input with a non-zero weight (rows of ``_resize_weights``)."""
    nz = weights != 0
    return nz.argmax(axis=1), weights.shape[1] - nz[:, ::-1].argmax(axis=1)


def condition_input(rgb: np.ndarray, size: int, workers: int | None = None) -> np.ndarray:
    """The condition net's input: an h x w x 3 float32 copy in [0, 1] whose long side is ``size``
    (antialiased bilinear). Separable: the rows pass is a banded matmul per group of output rows on the
    raw values of just the input rows it needs (no full-size float copy; groups run on all cores),
    the columns pass the same per group of output columns; the scale to [0, 1] is applied to the small
    result. ``workers``: the most threads (``csr_core.threads.for_each``); the result is the same.

    8/16-bit photos shrunk 8x or more are first box-averaged by an integer factor (OpenCV's INTER_AREA,
    to at least PRESHRINK pixels per output pixel; the last < k rows and columns are dropped): ~10x
    less work, and the copy differs from the direct filter by < 0.01 in 99% of its values (< 0.05 at
    the edges; outputs by < 0.05/255 on benchmarks/bench.py's photo; tests/test_engine.py bounds it)."""
    a = np.asarray(rgb)
    h, w = a.shape[:2]
    oh, ow = condition_hw(h, w, size)
    if (oh, ow) == (h, w):
        return to_float(a)
    k = min(int(max(h, w) / size) // PRESHRINK, h // oh, w // ow)  # never below the copy on either side
    scale_h, scale_w = h / oh, w / ow
    if k >= 2 and (a.dtype == np.uint8 or a.dtype == np.uint16):
        a = cv2.resize(a[:h - h % k, :w - w % k], (w // k, h // k), interpolation=cv2.INTER_AREA)
        h, w, scale_h, scale_w = h // k, w // k, scale_h / k, scale_w / k
    if a.dtype == np.uint8 or a.dtype == np.uint16:
        raw, top = (lambda y0, y1: a[y0:y1].astype(np.float32)), np.float32(np.iinfo(a.dtype).max)
    else:
        raw, top = (lambda y0, y1: to_float(a[y0:y1])), np.float32(1)
    wv, wh = _resize_weights(h, oh, scale_h), _resize_weights(w, ow, scale_w)
    first, last = _spans(wv)
    rows = np.empty((oh, w * 3), np.float32)

    def group(i0: int) -> None:
        i1 = min(i0 + _RESIZE_ROWS, oh)
        y0, y1 = first[i0:i1].min(), last[i0:i1].max()
        rows[i0:i1] = wv[i0:i1, y0:y1] @ raw(y0, y1).reshape(y1 - y0, w * 3)

    for_each(group, range(0, oh, _RESIZE_ROWS), workers)
    planar = np.ascontiguousarray(rows.reshape(oh, w, 3).transpose(0, 2, 1)).reshape(oh * 3, w)
    first, last = _spans(wh)
    cols = np.empty((oh * 3, ow), np.float32)
    for j0 in range(0, ow, _RESIZE_COLS):  # banded too: a dense matmul would be mostly zeros
        j1 = min(j0 + _RESIZE_COLS, ow)
        x0, x1 = first[j0:j1].min(), last[j0:j1].max()
        cols[:, j0:j1] = planar[:, x0:x1] @ wh[j0:j1, x0:x1].T
    out = cols.reshape(oh, 3, ow).transpose(0, 2, 1)
    return np.multiply(out, 1 / top, dtype=np.float32) if top != 1 else np.ascontiguousarray(out)


@dataclass
class Look:
    """What retouches one image: a base net plus one or more weighted condition nets sharing it."""

    base: Net
    parts: Sequence[tuple[Net, int, float]]  # (net, cond_size, weight); weights sum to 1
    name: str = "custom"  # the style or mix it was made from, as written (recorded in XMP); custom: a bare net

    @staticmethod
    def of(net: Net, cond_size: int) -> "Look":
        """The look of one full network."""
        return Look(net, [(net, cond_size, 1.0)])


def look_modulation(look: Look, rgb: np.ndarray) -> Modulation:
    """The modulation ``look`` gives the image ``rgb``: each part's condition net on its condition copy
    (small matmuls: BLAS on one thread is faster than its pool, see csr_core.threads)."""
    conds = [condition_input(rgb, size) for _, size, _ in look.parts]
    with serial_libraries():
        mods = [net.modulation(c) for (net, _, _), c in zip(look.parts, conds)]
    return Modulation.mix(mods, [w for _, _, w in look.parts])


def base_fn(net: Net, mod: Modulation, strength: float = 1.0,
            device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """The modulated base net as a function of P x 3 float32 pixel rows (on ``device``)."""
    check_strength(strength)
    if device == "cpu":
        folded = net.fold(mod)
        return lambda x: net.base(x, folded, strength)
    from . import gpu  # the torch engine, by design only for GPU devices

    return gpu.base_fn(net, mod, strength, resolve_device(device))


def apply_base(base: Net, rgb: np.ndarray, mod: Modulation, strength: float = 1.0, device: str = "cpu",
               strip_pixels: int = STRIP_PIXELS, out: np.ndarray | None = None) -> np.ndarray:
    """Run the modulated base net over every pixel, strip by strip; same dtype and shape out
    (written into ``out`` if given, which may be ``rgb`` itself: each strip is read before it is written)."""
    fn = base_fn(base, mod, strength, device)
    h, w, _ = rgb.shape
    out = np.empty_like(rgb) if out is None else out
    rows = max(1, strip_pixels // max(w, 1))

    def strip(y0: int) -> None:
        x = to_float(rgb[y0:y0 + rows])
        out[y0:y0 + rows] = from_float(fn(x.reshape(-1, 3)).reshape(x.shape), rgb.dtype)

    for_each(strip, range(0, h, rows), workers=None if device == "cpu" else 1)
    return out


def _unchanged(px: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    if out is None:
        return px.copy()
    np.copyto(out, px)
    return out


def colour_map(look: Look, rgb: np.ndarray, strength: float = 1.0, device: str = "cpu",
               exact: bool = False) -> Callable[..., np.ndarray]:
    """The colour map ``look`` gives the image ``rgb``: conditioned on all of ``rgb``, applicable to
    any pixels (the image itself, or a crop of it as the GIMP plug-in does for a selection), as
    ``apply(pixels, out=None)``; ``out`` may be ``pixels`` itself (in place).

    By default the modulated base net is baked into a ``LUT_SIZE``^3 LUT and interpolated, baked where
    the pixels it is applied to need it (``csr_core.lut.LazyLut``); ``exact`` runs the net on every
    pixel. Images with fewer pixels than the LUT has points always take the exact path.
    """
    return _colour_map(look, rgb, strength, device, exact, same_pixels=False)


def _colour_map(look: Look, rgb: np.ndarray, strength: float, device: str, exact: bool,
                same_pixels: bool) -> Callable[..., np.ndarray]:
    """``colour_map``; ``same_pixels``: it will be applied to ``rgb`` itself, so (8-bit, through the LUT)
    the lattice cells ``rgb`` reaches are found while the condition net runs."""
    check_strength(strength)
    dev = resolve_device(device)
    if strength == 0:
        return _unchanged
    if exact or rgb.shape[0] * rgb.shape[1] <= LUT_SIZE ** 3:
        mod = look_modulation(look, rgb)
        return lambda px, out=None: apply_base(look.base, px, mod, strength, dev, out=out)
    known = (rgb, cells_meanwhile(rgb, LUT_SIZE)) if same_pixels and rgb.dtype == np.uint8 else None
    mod = look_modulation(look, rgb)
    return LazyLut(base_fn(look.base, mod, strength, dev), LUT_SIZE, known)


def look_lut(rgb: np.ndarray, look: Look, size: int = LUT_SIZE, strength: float = 1.0,
             device: str = "cpu") -> np.ndarray:
    """The size^3 LUT that retouching ``rgb`` with ``look`` applies to it (``csr export-lut``)."""
    return bake_lut(base_fn(look.base, look_modulation(look, rgb), strength, resolve_device(device)), size)


def retouch_array(rgb: np.ndarray, look: Look, strength: float = 1.0, device: str = "cpu",
                  exact: bool = False, out: np.ndarray | None = None) -> np.ndarray:
    """Retouch HxWx3 sRGB pixels (uint8 / uint16 / float32) with a prepared look (see ``colour_map``),
    into ``out`` if given (which may be ``rgb`` itself)."""
    return _colour_map(look, rgb, strength, device, exact, same_pixels=True)(rgb, out=out)
