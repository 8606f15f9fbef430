"""CSRNet (He et al., ECCV 2020) in torch, for training and GPUs: condition net, GFM, base network.

Built from the layer table in ``csr_core.architecture`` (parameter names are the authors' checkpoint
keys, so their ``state_dict`` loads as is). Retouching on the CPU uses the numpy engine
(``csr_core.engine``) instead; ``from_state`` / ``numpy_state`` move weights between the two.
The base network is split from its modulation so that the condition vector can be computed once on a
small copy and the base net run over full-resolution pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .architecture import (ARCHITECTURE, BASE, CONDITION, CONDITION_PREFIXES, PARAMETER_COUNT, SCALES, SHIFTS,
                           Conv, check_state, condition_state)

__all__ = ["ARCHITECTURE", "CONDITION_PREFIXES", "PARAMETER_COUNT", "CSRNet", "ConditionNet", "Modulation",
           "condition_state", "count_parameters", "from_state", "numpy_state"]


def _conv(c: Conv) -> nn.Conv2d:
    return nn.Conv2d(c.cin, c.cout, c.kernel, stride=c.stride, padding=c.padding)


class ConditionNet(nn.Module):
    """Three stride-2 convs with ReLU (architecture.CONDITION), then a global mean."""

    def __init__(self):
        super().__init__()
        for c in CONDITION:
            self.add_module(c.name.split(".")[-1], _conv(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in CONDITION:
            x = getattr(self, c.name.split(".")[-1])(x)
            if c.relu:
                x = F.relu(x)
        return x.mean(dim=(2, 3))


@dataclass
class Modulation:
    """Per-image scales and shifts for the three base layers, each of shape (N, C)."""

    scales: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
    shifts: tuple[torch.Tensor, torch.Tensor, torch.Tensor]

    @staticmethod
    def mix(mods: Sequence["Modulation"], weights: Sequence[float]) -> "Modulation":
        """Weighted sum of modulations (weights are used as given; callers normalise)."""
        scales = tuple(sum(w * m.scales[i] for m, w in zip(mods, weights)) for i in range(3))
        shifts = tuple(sum(w * m.shifts[i] for m, w in zip(mods, weights)) for i in range(3))
        return Modulation(scales, shifts)  # type: ignore[arg-type]

    @staticmethod
    def from_numpy(mod, device: torch.device | str = "cpu") -> "Modulation":
        """An ``engine.Modulation`` (one image) as a batch of one on ``device``."""
        to = lambda a: torch.from_numpy(np.asarray(a))[None].to(device)  # noqa: E731
        return Modulation(tuple(map(to, mod.scales)), tuple(map(to, mod.shifts)))  # type: ignore[arg-type]


class CSRNet(nn.Module):
    """Conditional Sequential Retouching Network: 36,489 parameters."""

    def __init__(self):
        super().__init__()
        self.cond_net = ConditionNet()
        for lin in (*SCALES, *SHIFTS):
            self.add_module(lin.name, nn.Linear(lin.cin, lin.cout))
        for c in BASE:
            self.add_module(c.name, _conv(c))

    # -- the two halves -------------------------------------------------------------------------
    def modulation(self, cond_input: torch.Tensor) -> Modulation:
        """Scales and shifts from an NCHW image (the condition input)."""
        c = self.cond_net(cond_input)
        return Modulation(tuple(getattr(self, s.name)(c) for s in SCALES),  # type: ignore[arg-type]
                          tuple(getattr(self, s.name)(c) for s in SHIFTS))

    def base(self, x: torch.Tensor, mod: Modulation) -> torch.Tensor:
        """Run the modulated base net over an NCHW image (or N x P x 3 pixel rows)."""
        for i, c in enumerate(BASE):
            conv = getattr(self, c.name)
            if x.dim() == 4:  # NCHW: 1x1 convs, modulation broadcast over H, W
                x = conv(x) * (1 + mod.scales[i][:, :, None, None]) + mod.shifts[i][:, :, None, None]
            else:  # N x P x C pixel rows: the same maps as linear layers
                x = F.linear(x, conv.weight.flatten(1), conv.bias)
                x = x * (1 + mod.scales[i][:, None, :]) + mod.shifts[i][:, None, :]
            if c.relu:
                x = F.relu(x)
        return x

    def forward(self, x: torch.Tensor, cond_input: torch.Tensor | None = None) -> torch.Tensor:
        """The paper's forward: condition on ``cond_input`` (default: ``x`` itself)."""
        return self.base(x, self.modulation(x if cond_input is None else cond_input))


def from_state(state: Mapping[str, object]) -> CSRNet:
    """A CSRNet (eval mode) holding ``state`` (numpy arrays or tensors, checked against the layer table)."""
    model = CSRNet()
    model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in check_state(state).items()})
    return model.eval()


def numpy_state(model: nn.Module) -> dict[str, np.ndarray]:
    """A model's weights as float32 numpy arrays (what the registry saves and the engine runs)."""
    return {k: v.detach().cpu().float().numpy().copy() for k, v in model.state_dict().items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
