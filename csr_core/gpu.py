"""The torch engine behind ``--device cuda|mps|auto``: the modulated base net on a GPU.

Imported only for those devices (it needs the ``train`` extra); the condition net always runs in numpy
on the small condition copy, and CPU retouching never touches this module.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import torch

from .engine import Modulation, Net
from .errors import CsrError
from .model import CSRNet, Modulation as TorchModulation, from_state


def resolve(device: str) -> str:
    """'cuda', 'mps' or 'auto' -> the device name to use; a clear error if it is not available."""
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if mps else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CsrError("device 'cuda' requested but no CUDA GPU is available (try --device auto)")
    if device == "mps" and not mps:
        raise CsrError("device 'mps' requested but Apple MPS is not available (try --device auto)")
    return device


@functools.lru_cache(maxsize=8)
def _model(net: Net, device: str) -> CSRNet:
    return from_state(net.state).to(device)


def base_fn(net: Net, mod: Modulation, strength: float, device: str) -> Callable[[np.ndarray], np.ndarray]:
    """P x 3 float32 pixel rows -> the modulated base net's P x 3 float32 output, computed on ``device``."""
    model, tmod = _model(net, device), TorchModulation.from_numpy(mod, device)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)[None]
            y = model.base(t, tmod)
            if strength != 1.0:
                y = t + strength * (y - t)
            return y[0].cpu().numpy()

    return run
