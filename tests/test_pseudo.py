"""Pseudo-pairs: inverse colour maps fitted from real pairs, and the 'before' photos drawn with them."""
import numpy as np

from csr_core.pseudo import PseudoRecipe, apply_map, fit_inverse_map, pseudo_before, pseudo_pairs


def _photo(seed: int = 0, h: int = 48, w: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.1 + 0.8 * x, 0.15 + 0.7 * y, 0.5 + 0.4 * np.sin(7 * x * y)], -1)
    return np.clip(np.rint((base + rng.normal(0, 0.03, base.shape)) * 255), 0, 255).astype(np.uint8)


def _darken(after8: np.ndarray) -> np.ndarray:
    """A smooth 'unedit': darker, flatter, a little cooler."""
    a = after8 / 255
    return np.clip(np.rint((0.75 * a ** 1.3 * np.array([0.95, 1.0, 1.05]) + 0.03) * 255), 0, 255).astype(np.uint8)


def test_inverse_map_recovers_a_smooth_edit():
    after = _photo()
    coef = fit_inverse_map(_darken(after), after)
    back = apply_map(coef, _photo(1))  # another photo: the map generalises over colours, not pixels
    err = np.abs(back * 255 - _darken(_photo(1)).astype(float))
    assert coef.shape == (13, 3) and err.mean() < 1.5 and err.max() < 8


def test_pseudo_before_with_one_map_and_no_jitter_is_that_map():
    after = _photo()
    coef = fit_inverse_map(_darken(after), after)
    x = pseudo_before(after, [coef], np.random.default_rng(0), PseudoRecipe(exposure=0.0))
    assert x.dtype == np.uint8 and x.shape == after.shape
    assert np.abs(x.astype(int) - np.rint(apply_map(coef, after) * 255)).max() <= 1


def test_exposure_ev_scales_the_before_photo_by_two_to_its_power():
    after = _photo()
    coef = fit_inverse_map(_darken(after), after)
    plain = pseudo_before(after, [coef], np.random.default_rng(0), PseudoRecipe(exposure=0.0)).astype(float)
    darker = pseudo_before(after, [coef], np.random.default_rng(0), PseudoRecipe(exposure=0.0, exposure_ev=-1.0))
    assert np.abs(darker - plain / 2).max() <= 1  # one stop down halves it (before rounding)


def test_stretch_scales_the_edit_within_its_range():
    after = _photo()
    coef = fit_inverse_map(_darken(after), after)
    change = apply_map(coef, after) * 255 - after  # the map's own change to the photo
    rng, recipe = np.random.default_rng(3), PseudoRecipe(exposure=0.0, stretch=2.0)
    factors = []
    for _ in range(40):
        d = pseudo_before(after, [coef], rng, recipe).astype(float) - after
        inside = np.abs(change) > 20  # away from clipping and rounding
        factors.append(np.median(d[inside] / change[inside]))
    factors = np.array(factors)
    assert factors.min() > 2 ** -0.5 - 0.05 and factors.max() < 2 + 0.05
    assert np.mean(factors > 1) > 0.5  # log-uniform over [1/sqrt 2, 2]: stronger edits are the more common


def test_pseudo_pairs_are_reproducible_and_counted():
    photos = [_photo(i) for i in range(3)]
    maps = [fit_inverse_map(_darken(p), p) for p in photos]
    a = pseudo_pairs(photos, maps, seed=5, recipe=PseudoRecipe(per=3))
    b = pseudo_pairs(photos, maps, seed=5, recipe=PseudoRecipe(per=3))
    c = pseudo_pairs(photos, maps, seed=6, recipe=PseudoRecipe(per=3))
    assert len(a) == 9 and all(y is photos[k // 3] for k, (_, y) in enumerate(a))
    assert all(np.array_equal(x, x2) for (x, _), (x2, _) in zip(a, b))
    assert not all(np.array_equal(x, x2) for (x, _), (x2, _) in zip(a, c))
