"""CSRNet (He et al., ECCV 2020): condition network, global feature modulation, base network.

Parameter names match the authors' checkpoint, so their ``state_dict`` loads as is.
The base network is split from its modulation so that the condition vector can be
computed once on a small copy and the base net run over full-resolution pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

ARCHITECTURE = "csrnet"
PARAMETER_COUNT = 36489
#: Prefixes of the parameters a condition-only fine-tune trains (condition net + GFM).
CONDITION_PREFIXES = ("cond_net.", "cond_scale", "cond_shift")


class ConditionNet(nn.Module):
    """Three stride-2 convs (7x7, 3x3, 3x3; padding 1) with ReLU, then a global mean."""

    def __init__(self, channels: int = 32):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 7, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
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


class CSRNet(nn.Module):
    """Conditional Sequential Retouching Network: 36,489 parameters."""

    def __init__(self, in_nc: int = 3, out_nc: int = 3, base_nf: int = 64, cond_nf: int = 32):
        super().__init__()
        self.cond_net = ConditionNet(cond_nf)
        self.cond_scale1 = nn.Linear(cond_nf, base_nf)
        self.cond_scale2 = nn.Linear(cond_nf, base_nf)
        self.cond_scale3 = nn.Linear(cond_nf, out_nc)
        self.cond_shift1 = nn.Linear(cond_nf, base_nf)
        self.cond_shift2 = nn.Linear(cond_nf, base_nf)
        self.cond_shift3 = nn.Linear(cond_nf, out_nc)
        self.conv1 = nn.Conv2d(in_nc, base_nf, 1)
        self.conv2 = nn.Conv2d(base_nf, base_nf, 1)
        self.conv3 = nn.Conv2d(base_nf, out_nc, 1)

    # -- the two halves -------------------------------------------------------------------------
    def modulation(self, cond_input: torch.Tensor) -> Modulation:
        """Scales and shifts from an NCHW image (the condition input)."""
        c = self.cond_net(cond_input)
        return Modulation(
            (self.cond_scale1(c), self.cond_scale2(c), self.cond_scale3(c)),
            (self.cond_shift1(c), self.cond_shift2(c), self.cond_shift3(c)),
        )

    def base(self, x: torch.Tensor, mod: Modulation) -> torch.Tensor:
        """Run the modulated base net over an NCHW image (or N x P x 3 pixel rows)."""
        convs = (self.conv1, self.conv2, self.conv3)
        if x.dim() == 4:  # NCHW: 1x1 convs, modulation broadcast over H, W
            for i, conv in enumerate(convs):
                x = conv(x) * (1 + mod.scales[i][:, :, None, None]) + mod.shifts[i][:, :, None, None]
                if i < 2:
                    x = F.relu(x)
            return x
        for i, conv in enumerate(convs):  # N x P x C pixel rows: the same maps as linear layers
            x = F.linear(x, conv.weight.flatten(1), conv.bias)
            x = x * (1 + mod.scales[i][:, None, :]) + mod.shifts[i][:, None, :]
            if i < 2:
                x = F.relu(x)
        return x

    def forward(self, x: torch.Tensor, cond_input: torch.Tensor | None = None) -> torch.Tensor:
        """The paper's forward: condition on ``cond_input`` (default: ``x`` itself)."""
        return self.base(x, self.modulation(x if cond_input is None else cond_input))


def condition_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The condition-net + GFM part of a state dict (what a fine-tune changes)."""
    return {k: v for k, v in state.items() if k.startswith(CONDITION_PREFIXES)}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
