"""Tiny synthetic before/after pair folders for the fine-tuning, eval and training tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def look(x: np.ndarray) -> np.ndarray:
    """A fixed global 'style': brighter midtones, warmer."""
    return np.clip(x ** 0.75 * np.array([1.06, 1.0, 0.9]), 0, 1)


def smooth_image(rng: np.random.Generator, h: int = 36, w: int = 48) -> np.ndarray:
    """A smooth random colour image, float in [0, 1], darkish (room for the look to act)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    chans = [sum(rng.uniform(-1, 1) * np.cos(rng.uniform(0, 6) * xx + rng.uniform(0, 6) * yy + rng.uniform(0, 6))
                 for _ in range(3)) for _ in range(3)]
    img = np.stack(chans, -1)
    img = (img - img.min()) / (np.ptp(img) + 1e-6)
    return np.clip(img * rng.uniform(0.4, 0.8) + rng.uniform(0, 0.1), 0, 1)


def write_pairs(root: Path, n: int, seed: int = 0, layout: str = "before_after", size=(36, 48)) -> Path:
    """``n`` pairs (before, look(before)) as 8-bit PNGs in one of the pairs layouts."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        before = smooth_image(rng, *size)
        after = look(before)
        if layout == "before_after":
            dests = (root / "before" / f"p{i:02d}.png", root / "after" / f"p{i:02d}.png")
        elif layout == "fivek":  # expertB holds the look; expertC a different one (must not be used)
            dests = (root / "input" / f"a{i + 1:04d}.png", root / "expertB" / f"a{i + 1:04d}.png")
            _save(1 - before, root / "expertC" / f"a{i + 1:04d}.png")
        else:
            dests = (root / f"p{i:02d}_input.png", root / f"p{i:02d}_target.png")
        _save(before, dests[0])
        _save(after, dests[1])
    return root


def _save(x: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(x * 255).astype(np.uint8)).save(path)
