"""The numpy engine: CSRNet's forward (condition net, GFM, base net) in float32 numpy, no torch.

Built from the layer table in ``csr_core.architecture``. The condition net is im2col + matmul
(``sliding_window_view``) on the small condition copy; the base net is three matmuls per pixel row,
with the image's modulation folded into its weights first (``Modulation.fold``): ``(x W + b)(1 + s) + t``
equals ``x (W (1 + s)) + (b (1 + s) + t)``, so a modulated base net is a plain per-pixel MLP.
Equals the torch model (``csr_core.model``) within 1e-5 (tests/test_engine.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .architecture import BASE, CONDITION, SCALES, SHIFTS, Conv, check_state


@dataclass(frozen=True)
class Modulation:
    """One image's scales and shifts for the three base layers (1-D float32 arrays, one per layer)."""

    scales: tuple[np.ndarray, ...]
    shifts: tuple[np.ndarray, ...]

    @staticmethod
    def mix(mods: Sequence["Modulation"], weights: Sequence[float]) -> "Modulation":
        """Weighted sum of modulations (weights are used as given; callers normalise)."""
        if len(mods) == 1 and weights[0] == 1:
            return mods[0]
        pick = lambda attr, i: sum(np.float32(w) * getattr(m, attr)[i] for m, w in zip(mods, weights))  # noqa: E731
        return Modulation(tuple(pick("scales", i) for i in range(len(BASE))),
                          tuple(pick("shifts", i) for i in range(len(BASE))))


class Net:
    """One CSRNet's weights (checked against the layer table) and its forward in numpy."""

    def __init__(self, state: Mapping[str, object]):
        self.state = check_state(state)

    def features(self, image: np.ndarray) -> np.ndarray:
        """The condition vector (COND_CHANNELS,) of an H x W x 3 float32 image in [0, 1]."""
        x = np.asarray(image, dtype=np.float32)
        for conv in CONDITION:
            x = _conv2d(x, self.state[f"{conv.name}.weight"], self.state[f"{conv.name}.bias"], conv)
        return x.mean(axis=(0, 1), dtype=np.float32)

    def modulation(self, image: np.ndarray) -> Modulation:
        """Scales and shifts from an H x W x 3 float32 image (the condition input)."""
        c = self.features(image)
        lin = lambda layer: self.state[f"{layer.name}.weight"] @ c + self.state[f"{layer.name}.bias"]  # noqa: E731
        return Modulation(tuple(lin(s) for s in SCALES), tuple(lin(s) for s in SHIFTS))

    def fold(self, mod: Modulation) -> list[tuple[np.ndarray, np.ndarray, bool]]:
        """The modulated base net as (in x out weight, bias, relu) per layer."""
        out = []
        for conv, s, t in zip(BASE, mod.scales, mod.shifts):
            w = self.state[f"{conv.name}.weight"].reshape(conv.cout, conv.cin)
            gain = 1 + s
            out.append((np.ascontiguousarray(w.T * gain), self.state[f"{conv.name}.bias"] * gain + t, conv.relu))
        return out

    def base(self, pixels: np.ndarray, mod: Modulation | list, strength: float = 1.0) -> np.ndarray:
        """The modulated base net on P x 3 float32 pixel rows -> P x 3 float32 (not clamped);
        ``strength`` blends: ``x + strength * (f(x) - x)``. ``mod`` may be already folded."""
        x = np.asarray(pixels, dtype=np.float32)
        y = x
        for w, b, relu in (self.fold(mod) if isinstance(mod, Modulation) else mod):
            y = y @ w
            y += b
            if relu:
                np.maximum(y, 0, out=y)
        if strength != 1.0:
            y -= x
            y *= np.float32(strength)
            y += x
        return y


def _conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, conv: Conv) -> np.ndarray:
    """H x W x Cin -> H' x W' x Cout: zero padding, im2col with a strided window view, one matmul, ReLU."""
    p, k, s = conv.padding, conv.kernel, conv.stride
    if p:
        x = np.pad(x, ((p, p), (p, p), (0, 0)))
    # H' x W' x k x k x Cin: channels innermost, so the im2col copy moves runs of Cin values
    win = sliding_window_view(x, (k, k), axis=(0, 1))[::s, ::s].transpose(0, 1, 3, 4, 2)
    h, wd = win.shape[:2]
    y = win.reshape(h * wd, -1) @ w.transpose(0, 2, 3, 1).reshape(conv.cout, -1).T
    y += b
    if conv.relu:
        np.maximum(y, 0, out=y)
    return y.reshape(h, wd, conv.cout)
