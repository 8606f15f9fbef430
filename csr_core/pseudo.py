"""Pseudo-pairs: realistic "before" photos for finished photos, made with the colour maps of real pairs.

A retouch is (mostly) a global colour map. Fitting each real before/after pair's *inverse* map (after ->
before: a 13-term cubic polynomial in R, G, B, least squares) gives a family of realistic "undo this
edit" maps; a random blend of two of them, times a random exposure factor, turns any finished photo into
a plausible unedited one. Fine-tuning on such pseudo-pairs teaches a look from a portfolio of finished
photos and a few real pairs (``csr finetune --finished``; the built-in style ``C`` is made the same way,
with darker "before" photos).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = ["PseudoRecipe", "poly_terms", "fit_inverse_map", "apply_map", "pseudo_before", "pseudo_pairs"]


@dataclass(frozen=True)
class PseudoRecipe:
    """How pseudo-inputs are drawn: ``per`` inputs per finished photo, each a uniform blend of two
    different inverse maps times one exposure factor drawn from 1 +- ``exposure``; with ``stretch`` > 1,
    the blend's change to the photo is scaled by a factor drawn log-uniformly from [1/stretch**0.5,
    stretch] (milder and, more often, stronger edits than the pairs show); ``exposure_ev`` multiplies every
    exposure factor by ``2**exposure_ev`` (on the sRGB-encoded values, as the whole factor is; negative:
    darker "before" photos than the pairs' maps make, for photos that need more correction than the pairs
    show)."""
    per: int = 2
    exposure: float = 0.15
    stretch: float = 1.0
    exposure_ev: float = 0.0


def poly_terms(rgb: np.ndarray) -> np.ndarray:
    """The 13 polynomial terms 1, r, g, b, r2, g2, b2, rg, rb, gb, r3, g3, b3 of N x 3 colours in [0, 1]."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return np.stack([np.ones_like(r), r, g, b, r * r, g * g, b * b, r * g, r * b, g * b, r ** 3, g ** 3, b ** 3], 1)


def _terms(img8: np.ndarray) -> np.ndarray:
    return poly_terms(img8.reshape(-1, 3).astype(np.float64) / 255)


def fit_inverse_map(before8: np.ndarray, after8: np.ndarray, samples: int = 60000, seed: int = 0) -> np.ndarray:
    """13 x 3 least-squares coefficients mapping a pair's ``after`` colours to its ``before`` colours
    (uint8 H x W x 3 arrays of the same size)."""
    a = after8.reshape(-1, 3).astype(np.float64) / 255
    b = before8.reshape(-1, 3).astype(np.float64) / 255
    idx = np.random.default_rng(seed).choice(len(a), min(samples, len(a)), replace=False)
    A = poly_terms(a[idx])
    coef, *_ = np.linalg.lstsq(A.T @ A + 1e-6 * np.eye(A.shape[1]), A.T @ b[idx], rcond=None)
    return coef


def apply_map(coef: np.ndarray, img8: np.ndarray, terms: np.ndarray | None = None) -> np.ndarray:
    """A fitted map applied to a uint8 image: float32 H x W x 3 in [0, 1] (``terms``: its ``_terms``)."""
    t = _terms(img8) if terms is None else terms
    return np.clip(t @ coef, 0, 1).reshape(img8.shape).astype(np.float32)


def pseudo_before(after8: np.ndarray, maps: Sequence[np.ndarray], rng: np.random.Generator,
                  recipe: PseudoRecipe = PseudoRecipe(), terms: np.ndarray | None = None) -> np.ndarray:
    """One pseudo-input (uint8) for a finished photo: ``w*M_i + (1-w)*M_j`` of two different maps, w
    uniform, times an exposure factor, clipped and quantised to 8 bits."""
    terms = _terms(after8) if terms is None else terms
    if len(maps) == 1:
        x = apply_map(maps[0], after8, terms)
    else:
        i, j = rng.choice(len(maps), 2, replace=False)
        w = rng.uniform()
        x = w * apply_map(maps[i], after8, terms) + (1 - w) * apply_map(maps[j], after8, terms)
    if recipe.stretch != 1.0:
        t = after8.astype(np.float32) / 255
        x = t + np.exp(rng.uniform(-0.5, 1.0) * np.log(recipe.stretch)) * (x - t)
    x = x * (rng.uniform(1 - recipe.exposure, 1 + recipe.exposure) * 2.0 ** recipe.exposure_ev)
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def pseudo_pairs(finished: Sequence[np.ndarray], maps: Sequence[np.ndarray], seed: int = 0,
                 recipe: PseudoRecipe = PseudoRecipe(),
                 on_photo: Callable[[], None] = lambda: None) -> list[tuple[np.ndarray, np.ndarray]]:
    """``recipe.per`` (pseudo-input, finished photo) pairs per finished photo (uint8 arrays); ``on_photo``
    is called after each finished photo."""
    rng = np.random.default_rng([seed, 5150])
    out = []
    for after8 in finished:
        terms = _terms(after8)
        out += [(pseudo_before(after8, maps, rng, recipe, terms), after8) for _ in range(recipe.per)]
        on_photo()
    return out
