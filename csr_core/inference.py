"""Inference at any size: condition on a small copy, run the base net over full-resolution strips.

The condition vector is computed from a copy resized so its long side equals the style's recorded
``cond_size`` (the same rule at training time), so results do not drift with resolution. The base
net is a per-pixel map, so running it strip by strip gives exactly the one-pass result in bounded memory;
by default it is baked into a 3-D LUT for the image and interpolated (``csr_core.lut``), unless ``exact``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CsrError
from .pixels import from_float, to_float
from .lut import DEFAULT_SIZE as LUT_SIZE, apply_lut, bake_lut, single_threaded
from .model import CSRNet, Modulation

#: Pixels per strip of the full-resolution pass (bounds memory: ~64 floats of activations each).
STRIP_PIXELS = 1 << 18
MAX_STRENGTH = 2.0
#: 8-bit images from this size on get their condition input by the uint8 resize (look_modulation).
FAST_CONDITION_PIXELS = 1 << 20


def resolve_device(device: str = "cpu") -> torch.device:
    """'cpu', 'cuda', 'mps' or 'auto' (the best available) -> torch.device; clear error if unavailable."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CsrError("device 'cuda' requested but no CUDA GPU is available (try --device auto)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CsrError("device 'mps' requested but Apple MPS is not available (try --device auto)")
    if device not in ("cpu", "cuda", "mps"):
        raise CsrError(f"unknown device {device!r}: choose cpu, cuda, mps or auto")
    return torch.device(device)


#: The condition net's 7x7 stride-2 first conv (padding 1) needs at least 5 pixels on each side.
MIN_CONDITION_SIDE = 5


def condition_hw(h: int, w: int, size: int) -> tuple[int, int]:
    """Size of the condition copy: long side ``size``, aspect kept, short side at least MIN_CONDITION_SIDE."""
    scale = size / max(h, w)
    return max(MIN_CONDITION_SIDE, round(h * scale)), max(MIN_CONDITION_SIDE, round(w * scale))


def condition_input(rgb: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """The condition net's input: a (1, 3, h, w) copy whose long side is ``size`` (antialiased)."""
    t = torch.from_numpy(to_float(np.asarray(rgb))) if isinstance(rgb, np.ndarray) else rgb
    t = t.permute(2, 0, 1)[None].float()
    h, w = t.shape[-2:]
    scale = size / max(h, w)
    out_hw = condition_hw(h, w, size)
    if out_hw == (h, w):
        return t.contiguous()
    return F.interpolate(t, size=out_hw, mode="bilinear", antialias=scale < 1, align_corners=False)


@dataclass
class Look:
    """What retouches one image: a base net plus one or more weighted condition nets sharing it."""

    base: CSRNet
    parts: Sequence[tuple[CSRNet, int, float]]  # (model, cond_size, weight); weights sum to 1

    def modulation(self, rgb: np.ndarray, device: torch.device) -> Modulation:
        mods, weights = [], []
        with torch.inference_mode():
            for model, cond_size, weight in self.parts:
                mods.append(model.to(device).modulation(condition_input(rgb, cond_size).to(device)))
                weights.append(weight)
        return mods[0] if len(mods) == 1 else Modulation.mix(mods, weights)


def apply_base(base: CSRNet, rgb: np.ndarray, mod: Modulation, strength: float = 1.0,
               device: torch.device | str = "cpu", strip_pixels: int = STRIP_PIXELS,
               out: np.ndarray | None = None) -> np.ndarray:
    """Run the modulated base net over every pixel, strip by strip; same dtype and shape out
    (written into ``out`` if given, which may be ``rgb`` itself: each strip is read before it is written)."""
    _check_strength(strength)
    device = torch.device(device)
    h, w, _ = rgb.shape
    out = np.empty_like(rgb) if out is None else out
    rows = max(1, strip_pixels // max(w, 1))
    base = base.to(device)
    with torch.inference_mode():
        for y0 in range(0, h, rows):
            x = torch.from_numpy(to_float(rgb[y0:y0 + rows])).to(device)
            pix = x.reshape(1, -1, 3)
            y = base.base(pix, mod)
            if strength != 1.0:
                y = pix + strength * (y - pix)
            out[y0:y0 + rows] = from_float(y.reshape(x.shape).cpu().numpy(), rgb.dtype)
    return out


def _check_strength(strength: float) -> None:
    if not 0.0 <= strength <= MAX_STRENGTH:
        raise CsrError(f"strength must be between 0 and {MAX_STRENGTH:g}, got {strength:g}")


def look_modulation(look: Look, rgb: np.ndarray, device: torch.device | str = "cpu") -> Modulation:
    """``look.modulation``, faster for large 8-bit images.

    Those are shrunk to each condition size by torch's uint8 antialiased bilinear kernel (the same
    filter as ``condition_input``, rounded to 8 bits: outputs agree to > 100 dB) instead of first
    making a full-size float copy; the small condition nets then run on one intra-op thread.
    """
    device = torch.device(device)
    if rgb.dtype != np.uint8 or rgb.shape[0] * rgb.shape[1] < FAST_CONDITION_PIXELS:
        return look.modulation(rgb, device)
    src = torch.from_numpy(rgb if rgb.flags.writeable else rgb.copy()).permute(2, 0, 1)[None]  # channels-last
    h, w = rgb.shape[:2]
    conds = []
    for _, size, _ in look.parts:
        scale = size / max(h, w)
        hw = condition_hw(h, w, size)
        small = F.interpolate(src, size=hw, mode="bilinear", antialias=scale < 1, align_corners=False)
        conds.append(small.float().mul_(1 / 255).contiguous().to(device))
    mods = []

    def run() -> None:
        with torch.inference_mode():
            mods.extend(m.to(device).modulation(c) for (m, _, _), c in zip(look.parts, conds))

    single_threaded(run) if device.type == "cpu" else run()
    return mods[0] if len(mods) == 1 else Modulation.mix(mods, [w for _, _, w in look.parts])


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

    By default the modulated base net is baked into a ``LUT_SIZE``^3 LUT and interpolated (see
    ``csr_core.lut``); ``exact`` runs the net on every pixel. Images with fewer pixels than the LUT
    has points always take the exact path (it is then the cheaper one).
    """
    _check_strength(strength)
    dev = resolve_device(device)
    if strength == 0:
        return _unchanged
    mod = look_modulation(look, rgb, dev)
    if exact or rgb.shape[0] * rgb.shape[1] <= LUT_SIZE ** 3:
        return lambda px, out=None: apply_base(look.base, px, mod, strength, dev, out=out)
    lut = bake_lut(look.base, mod, LUT_SIZE, strength, dev)
    return lambda px, out=None: apply_lut(px, lut, out=out)


def retouch_array(rgb: np.ndarray, look: Look, strength: float = 1.0, device: str = "cpu",
                  exact: bool = False) -> np.ndarray:
    """Retouch HxWx3 sRGB pixels (uint8 / uint16 / float32) with a prepared look (see ``colour_map``)."""
    return colour_map(look, rgb, strength, device, exact)(rgb)
