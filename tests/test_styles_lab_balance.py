"""C's recipe tool: the camera-balance option of its pseudo-inputs (meter=, cast=, balance=fit)."""
import sys

import numpy as np
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import styles_lab as lab  # noqa: E402


@pytest.fixture
def pseudo(monkeypatch):
    """styles_lab's pseudo-input options, restored after the test, and a fixed balance pivot (no ../shared)."""
    monkeypatch.setattr(lab, "PSEUDO", dict(lab.PSEUDO))
    monkeypatch.setattr(lab, "_balance_ref", lambda: np.array([np.log(0.4), 0.0, 0.0]))
    return lab.PSEUDO


def photos(n: int, seed: int = 0) -> list[np.ndarray]:
    """Textured photos of random exposure and colour cast (uint8, 32 x 32)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        base = rng.uniform(0.2, 0.8, (32, 32, 1)) * np.exp(rng.normal(0, 0.3, 3)) * rng.uniform(0.5, 1.2)
        out.append(lab.q8(np.clip(base, 0, 1)))
    return out


def slopes(targets, gains) -> np.ndarray:
    """Least-squares slopes of the balanced images' ``_balance`` on the targets' (brightness, R/G, B/G)."""
    t = np.array([lab._balance(y) for y in targets])
    x = np.array([lab._balance(lab.q8(y / 255 * g)) for y, g in zip(targets, gains)])
    return np.array([np.polyfit(t[:, c], x[:, c], 1)[0] for c in range(3)])


def test_off_is_identity(pseudo):
    for y in photos(5):
        assert np.allclose(lab.camera_balance(y), 1.0)


def test_meter_and_cast_move_the_slopes(pseudo):
    targets = photos(60)
    pseudo.update(meter=0.3, cast=0.5)
    s = slopes(targets, [lab.camera_balance(y) for y in targets])
    assert s[0] == pytest.approx(0.7, abs=0.06)  # brightness follows the photo's less (metering)
    assert s[1] == pytest.approx(1.5, abs=0.1) and s[2] == pytest.approx(1.5, abs=0.1)  # casts kept, grown


def test_cast_alone_keeps_brightness(pseudo):
    pseudo.update(cast=0.8)
    for y in photos(10, seed=1):
        before, after = y.reshape(-1, 3).mean(), (y.reshape(-1, 3) * lab.camera_balance(y)).mean()
        assert after == pytest.approx(before, rel=1e-5)


def test_fit_balance_recovers_the_real_slopes(pseudo, monkeypatch):
    """Pseudo-inputs are the photos themselves (slopes 1); real inputs follow brightness at 0.6 and casts
    at 1.4: the fit says meter 0.4, cast 0.4, and leaves the options as they were."""
    targets = photos(40, seed=2)
    def make_pseudo(ts, fam, per, seed):
        assert lab.PSEUDO["meter"] == lab.PSEUDO["cast"] == 0  # slopes of pseudo-inputs drawn without them
        return [(t, t) for _, t in ts]

    monkeypatch.setattr(lab, "make_pseudo", make_pseudo)
    ref = np.array([np.log(0.4), 0.0, 0.0])
    real = []
    for i, y in enumerate(targets):
        d = lab._balance(y) - ref
        g = np.exp(np.array([0.4 * d[1], 0.0, 0.4 * d[2]]))
        g = g * y.reshape(-1, 3).mean(0).sum() / (g * y.reshape(-1, 3).mean(0)).sum() * np.exp(-0.4 * d[0])
        real.append((str(i), lab.q8(y / 255 * g), y))
    pseudo.update(meter=0.7, cast=0.1)
    fit = lab.fit_balance(real, [(str(i), y) for i, y in enumerate(targets)], family=None, seed=0)
    assert fit["meter"] == pytest.approx(0.4, abs=0.05) and fit["cast"] == pytest.approx(0.4, abs=0.05)
    assert (pseudo["meter"], pseudo["cast"]) == (0.7, 0.1)


def test_balance_draws_no_random_numbers(pseudo):
    """Options off give the pseudo-inputs of before; on, the same random draws (runs stay paired)."""
    photos_ = photos(4, seed=3)
    family = lab.family_of([(str(i), lab.q8(y / 255 * 0.7), y) for i, y in enumerate(photos_[:3])])
    target = photos_[3]
    rng_off, rng_on = np.random.default_rng(5), np.random.default_rng(5)
    off = lab.pseudo_input(target, family, rng_off)
    pseudo.update(meter=0.0, cast=0.0)
    assert np.array_equal(lab.pseudo_input(target, family, np.random.default_rng(5)), off)
    pseudo.update(meter=0.3, cast=0.5)
    on = lab.pseudo_input(target, family, rng_on)
    assert not np.array_equal(on, off)
    assert rng_on.bit_generator.state == rng_off.bit_generator.state


@pytest.mark.parametrize("opts", ["balance=sometimes", "balance=fit meter=0.2", "balance=meter cam=0.3",
                                  "maps=6 balance=fit", "maps=6 rw=0.2"])
def test_option_clashes_are_refused(pseudo, opts):
    with pytest.raises(SystemExit):
        lab._kfold_opts(dict(o.split("=") for o in opts.split()))
