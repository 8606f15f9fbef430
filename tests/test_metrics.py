import math

import numpy as np
import pytest

from csr_core import metrics as m

# CIEDE2000 test data: G. Sharma, W. Wu, E. N. Dalal, "The CIEDE2000 color-difference formula:
# implementation notes, supplementary test data, and mathematical observations", Color Res. Appl.
# 30(1), 2005, Table 1, all 34 pairs (http://www2.ece.rochester.edu/~gsharma/ciede2000/). L1 a1 b1 L2 a2 b2 dE.
SHARMA = np.array([
    [50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425],
    [50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615],
    [50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412],
    [50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000],
    [50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669],
    [50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195],
    [50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045],
    [50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461],
    [50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065],
    [50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492],
    [50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977],
    [50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030],
    [50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000],
    [50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000],
    [60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644],
    [63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630],
    [61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731],
    [35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645],
    [22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373],
    [36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146],
    [90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441],
    [90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381],
    [6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377],
    [2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082],
])


def _rand(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _noisy(a, amp, seed=1):
    rng = np.random.default_rng(seed)
    return np.clip(a.astype(int) + rng.integers(-amp, amp + 1, a.shape), 0, 255).astype(np.uint8)


def _smooth(h, w, seed=0):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([np.sin(6 * x + seed), np.cos(4 * y), np.sin(3 * (x + y))], -1) * 0.5 + 0.5
    return np.round(img * 255).astype(np.uint8)


def test_quantise_float_and_uint16():
    a = _rand((8, 9, 3))
    assert np.array_equal(m.to_uint8(a / 255.0), a)
    assert np.array_equal(m.to_uint8(a.astype(np.float32) / 255), a)
    assert np.array_equal(m.to_uint8(a.astype(np.uint16) * 257), a)
    assert np.array_equal(m.to_uint8(np.full((1, 1, 3), [-0.5, 1.7, np.nan])), [[[0, 255, 0]]])
    with pytest.raises(ValueError):
        m.to_uint8(np.zeros((4, 4)))
    with pytest.raises(ValueError):
        m.psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    assert m.psnr(a, a) == m.PSNR_CAP == 100.0  # capped: one identical pair cannot make a mean infinite
    assert m.psnr_from_mse(1e-30) == 100.0 and m.psnr_from_mse(0.0) == 100.0
    assert m.psnr(a, a + 1) == pytest.approx(48.13, abs=0.01)  # any visible difference stays below the cap
    assert m.psnr(a, a + 10) == pytest.approx(10 * math.log10(255 ** 2 / 100))
    b = _rand((16, 16, 3))
    assert m.psnr(b, _noisy(b, 20)) == m.psnr(b / 255.0, _noisy(b, 20).astype(np.float32) / 255)


@pytest.mark.parametrize("shape,amp", [((64, 80, 3), 25), ((11, 11, 3), 40), ((33, 17, 3), 5)])
def test_ssim_matches_skimage(shape, amp):
    skm = pytest.importorskip("skimage.metrics")
    for a in (_rand(shape), _smooth(*shape[:2])):
        b = _noisy(a, amp)
        ref = skm.structural_similarity(a, b, channel_axis=2, data_range=255, gaussian_weights=True,
                                        sigma=1.5, use_sample_covariance=False)
        assert m.ssim(a, b) == pytest.approx(ref, abs=1e-6)


def test_ssim_identical_and_tiny():
    a = _smooth(40, 30)
    assert m.ssim(a, a) == pytest.approx(1.0)
    t = _rand((5, 3, 3))
    assert m.ssim(t, t) == pytest.approx(1.0)
    assert -1 <= m.ssim(t, _noisy(t, 60)) < 1


def test_ciede2000_sharma_table():
    got = m.ciede2000_lab(SHARMA[:, :3], SHARMA[:, 3:6])
    np.testing.assert_allclose(got, SHARMA[:, 6], atol=1e-4)
    np.testing.assert_allclose(m.ciede2000_lab(SHARMA[:, 3:6], SHARMA[:, :3]), SHARMA[:, 6], atol=1e-4)


def test_srgb_to_lab_anchors():
    px = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0]]], np.uint8)
    lab = m.srgb_to_lab(px)
    np.testing.assert_allclose(lab[0, 0], [100, 0, 0], atol=1e-3)
    np.testing.assert_allclose(lab[0, 1], [0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(lab[0, 2], [53.24, 80.09, 67.20], atol=0.01)  # sRGB red, D65


def test_delta_e_matches_skimage():
    color = pytest.importorskip("skimage.color")
    a = _rand((40, 50, 3), seed=3)
    b = _noisy(a, 30, seed=4)
    np.testing.assert_allclose(m.srgb_to_lab(a), color.rgb2lab(a), atol=0.01)
    ref = color.deltaE_ciede2000(color.rgb2lab(a), color.rgb2lab(b))
    got = m.delta_e2000_map(a, b)
    assert got.shape == (40, 50)
    np.testing.assert_allclose(got, ref, atol=5e-3)
    assert m.delta_e2000(a, b) == pytest.approx(ref.mean(), abs=1e-4)
    assert m.delta_e2000(a, a) == 0.0


def test_score():
    a = _smooth(32, 32)
    s = m.score(a, _noisy(a, 10))
    assert set(s) == {"psnr", "ssim", "delta_e"}
    assert 25 < s["psnr"] < 60 and 0.5 < s["ssim"] < 1 and 0 < s["delta_e"] < 10


def test_scores_in_strips_equal_the_whole_image(monkeypatch):
    a = _smooth(37, 29)
    b = _noisy(a, 12)
    whole = m.score(a, b)
    monkeypatch.setattr(m, "STRIP_PIXELS", 50)  # strips of one row (SSIM: of one output row)
    assert m.score(a, b) == pytest.approx(whole, rel=1e-12)


def test_a_large_pair_is_scored_in_bounded_memory():
    """A 6 MP pair is scored under a 1 GB address-space cap (before: SSIM and CIEDE2000 held about 20
    float64 copies of the whole pair, and `csr eval` on one 24 MP pair peaked at 13 GB)."""
    import sys
    from pathlib import Path

    import hostile

    code = ("import numpy as np; from csr_core.metrics import score; rng = np.random.default_rng(0); "
            "a = rng.integers(0, 256, (2000, 3000, 3), dtype=np.uint8); print(score(a, a // 2)['psnr'])")
    capped = hostile.run_capped([sys.executable, "-c", code], mem_mb=1024, cwd=Path(__file__).parents[1])
    assert capped.returncode == 0 and not capped.hit_cap, capped.stderr[-1500:]
    assert 10 < float(capped.stdout) < 11
