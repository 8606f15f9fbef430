"""Synthetic degradation: random global edits that a retouching model learns to undo.

Each degradation is a global per-pixel colour map (exposure, white-balance cast, contrast,
saturation, tone curve) applied to a good photo; training pairs are (degraded, original).
A share of samples is left untouched so that the model learns to leave good photos alone.
"""
from __future__ import annotations

import numpy as np
import torch

# Rec. 709 / sRGB luminance weights.
LUMA = torch.tensor([0.2126, 0.7152, 0.0722])


def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-8) ** (1 / 2.4) - 0.055)


def _luma(x: torch.Tensor) -> torch.Tensor:
    return (x * LUMA.to(x)).sum(-1, keepdim=True)


def random_params(rng: np.random.Generator, identity_prob: float = 0.12) -> dict[str, float]:
    """Draw one degradation; about ``identity_prob`` of draws are the identity."""
    if rng.random() < identity_prob:
        return dict(ev=0.0, temp=0.0, tint=0.0, contrast=1.0, saturation=1.0, gamma=1.0, lift=0.0, knee=0.0)
    mild = rng.random() < 0.25  # small edits: the model must be gentle near "already good"
    s = 0.35 if mild else 1.0
    return dict(
        ev=float(rng.uniform(-2.2, 0.9) * s),        # exposure in stops (more under than over)
        temp=float(rng.normal(0, 0.22) * s),          # blue<->amber cast, log gain
        tint=float(rng.normal(0, 0.12) * s),          # green<->magenta cast, log gain
        contrast=float(np.exp(rng.uniform(-0.7, 0.3) * s)),
        saturation=float(np.exp(rng.uniform(-0.9, 0.45) * s)),
        gamma=float(np.exp(rng.uniform(-0.35, 0.45) * s)),
        lift=float(rng.uniform(0.0, 0.12) * s * (rng.random() < 0.4)),  # washed-out blacks
        knee=float(rng.uniform(0.0, 0.25) * s * (rng.random() < 0.3)),  # compressed highlights
    )


def apply(x: torch.Tensor, p: dict[str, float]) -> torch.Tensor:
    """Apply a degradation to sRGB values in [0, 1] (any shape ending in 3 channels)."""
    lin = srgb_to_linear(x.clamp(0, 1))
    gains = torch.tensor([np.exp(p["temp"] + p["tint"] / 2), np.exp(-p["tint"]), np.exp(-p["temp"] + p["tint"] / 2)])
    gains = gains / (gains * LUMA).sum()  # a cast, not an exposure change
    lin = lin * gains.to(x) * (2.0 ** p["ev"])
    y = linear_to_srgb(lin)
    y = y.clamp(0, 1) ** p["gamma"]
    mid = _luma(y).mean()
    y = mid + p["contrast"] * (y - mid)
    lum = _luma(y)
    y = lum + p["saturation"] * (y - lum)
    y = p["lift"] + (1 - p["lift"]) * y.clamp(0, 1)
    if p["knee"] > 0:  # soft highlight roll-off
        y = y * (1 - p["knee"] * y * y)
    return y.clamp(0, 1)
