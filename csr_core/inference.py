"""Inference at any size: condition on a small copy, run the base net over full-resolution strips.

The condition vector is computed from a copy resized so its long side equals the style's recorded
``cond_size`` (the same rule at training time), so results do not drift with resolution. The base
net is a per-pixel map, so running it strip by strip gives exactly the one-pass result in bounded memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CsrError
from .model import CSRNet, Modulation

#: Pixels per strip of the full-resolution pass (bounds memory: ~64 floats of activations each).
STRIP_PIXELS = 1 << 18
MAX_STRENGTH = 2.0


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


def to_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float pixels -> float32 in [0, 1]."""
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) * np.float32(1 / 255)
    if rgb.dtype == np.uint16:
        return rgb.astype(np.float32) * np.float32(1 / 65535)
    return np.clip(rgb, 0, 1, dtype=np.float32) if rgb.dtype != np.float32 else np.clip(rgb, 0, 1)


def from_float(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float [0, 1] -> ``dtype`` (rounded for integer types)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8)
    if dtype == np.uint16:
        return np.rint(np.clip(x, 0, 1) * 65535).astype(np.uint16)
    return np.clip(x, 0, 1).astype(dtype)


def condition_input(rgb: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """The condition net's input: a (1, 3, h, w) copy whose long side is ``size`` (antialiased)."""
    t = torch.from_numpy(to_float(np.asarray(rgb))) if isinstance(rgb, np.ndarray) else rgb
    t = t.permute(2, 0, 1)[None].float()
    h, w = t.shape[-2:]
    scale = size / max(h, w)
    out_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
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
               device: torch.device | str = "cpu", strip_pixels: int = STRIP_PIXELS) -> np.ndarray:
    """Run the modulated base net over every pixel, strip by strip; same dtype and shape out."""
    if not 0.0 <= strength <= MAX_STRENGTH:
        raise CsrError(f"strength must be between 0 and {MAX_STRENGTH:g}, got {strength:g}")
    device = torch.device(device)
    h, w, _ = rgb.shape
    out = np.empty_like(rgb)
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


def retouch_array(rgb: np.ndarray, look: Look, strength: float = 1.0, device: str = "cpu") -> np.ndarray:
    """Retouch HxWx3 sRGB pixels (uint8 / uint16 / float32) with a prepared look."""
    dev = resolve_device(device)
    if strength == 0:
        return rgb.copy()
    return apply_base(look.base, rgb, look.modulation(rgb, dev), strength, dev)
