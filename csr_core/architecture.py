"""CSRNet's layer table: the one statement of the architecture, shared by every engine.

The torch model (``csr_core.model``, training and GPUs), the numpy engine (``csr_core.engine``,
retouching) and the ONNX export (``csr_core.onnx_export``) are all built from these tables, and
weights are checked against them before they are used. Parameter names are the authors' checkpoint
keys (``cond_net.conv1.weight``, ``cond_scale1.bias``, ``conv3.weight``, ...). No torch here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

ARCHITECTURE = "csrnet"
IN_CHANNELS, BASE_CHANNELS, COND_CHANNELS = 3, 64, 32


@dataclass(frozen=True)
class Conv:
    """A 2-D convolution ``name`` (weight: out x in x k x k, bias: out), ReLU after it if ``relu``."""

    name: str
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    padding: int = 0
    relu: bool = True

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"{self.name}.weight": (self.cout, self.cin, self.kernel, self.kernel), f"{self.name}.bias": (self.cout,)}


@dataclass(frozen=True)
class Linear:
    """A fully connected layer ``name`` (weight: out x in, bias: out)."""

    name: str
    cin: int
    cout: int

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {f"{self.name}.weight": (self.cout, self.cin), f"{self.name}.bias": (self.cout,)}


#: The condition network: three stride-2 convs with ReLU, then a global mean over the feature map.
CONDITION = (
    Conv("cond_net.conv1", IN_CHANNELS, COND_CHANNELS, kernel=7, stride=2, padding=1),
    Conv("cond_net.conv2", COND_CHANNELS, COND_CHANNELS, kernel=3, stride=2, padding=1),
    Conv("cond_net.conv3", COND_CHANNELS, COND_CHANNELS, kernel=3, stride=2, padding=1),
)
#: The base network: 1x1 convs, i.e. a per-pixel MLP; no ReLU after the last.
BASE = (
    Conv("conv1", IN_CHANNELS, BASE_CHANNELS),
    Conv("conv2", BASE_CHANNELS, BASE_CHANNELS),
    Conv("conv3", BASE_CHANNELS, IN_CHANNELS, relu=False),
)
#: Global feature modulation: for base layer i, a scale and a shift from the condition vector;
#: base layer i's output becomes ``out * (1 + scale_i) + shift_i``.
SCALES = tuple(Linear(f"cond_scale{i + 1}", COND_CHANNELS, conv.cout) for i, conv in enumerate(BASE))
SHIFTS = tuple(Linear(f"cond_shift{i + 1}", COND_CHANNELS, conv.cout) for i, conv in enumerate(BASE))
LAYERS = (*CONDITION, *SCALES, *SHIFTS, *BASE)

#: Every parameter's name and shape (the state-dict layout).
SHAPES: dict[str, tuple[int, ...]] = {k: v for layer in LAYERS for k, v in layer.shapes.items()}
PARAMETER_COUNT = sum(int(np.prod(s)) for s in SHAPES.values())
#: The layers a condition-only fine-tune trains (condition net + GFM); the rest is the base.
CONDITION_LAYERS = (*CONDITION, *SCALES, *SHIFTS)
CONDITION_KEYS = frozenset(k for layer in CONDITION_LAYERS for k in layer.shapes)
CONDITION_PREFIXES = ("cond_net.", "cond_scale", "cond_shift")


def condition_state(state: Mapping[str, object]) -> dict:
    """The condition-net + GFM part of a state dict (what a fine-tune changes)."""
    return {k: v for k, v in state.items() if k in CONDITION_KEYS}


def check_state(state: Mapping[str, object], keys=None) -> dict[str, np.ndarray]:
    """``state`` as float32 numpy arrays, checked against the table (all of ``keys``, default every
    parameter; no other names; each shape as listed). Raises ValueError naming the first problem."""
    keys = set(SHAPES if keys is None else keys)
    state = {str(k).removeprefix("module."): v for k, v in state.items()}
    missing, unexpected = sorted(keys - set(state)), sorted(set(state) - keys)
    if missing or unexpected:
        what = [f"missing {', '.join(missing[:3])}" if missing else "", f"unexpected {', '.join(unexpected[:3])}" if unexpected else ""]
        raise ValueError("; ".join(w for w in what if w))
    out = {}
    for k in sorted(keys):
        a = np.ascontiguousarray(np.asarray(state[k]), dtype=np.float32)
        if a.shape != SHAPES[k]:
            raise ValueError(f"{k} has shape {tuple(a.shape)}, expected {SHAPES[k]}")
        out[k] = a
    return out
