"""Inference: strips equal one pass, strength, dtypes, resolution independence, devices."""
import numpy as np
import pytest
import torch

from csr_core.errors import CsrError
from csr_core.engine import Net
from csr_core.inference import Look, apply_base, condition_input, look_modulation, resolve_device, retouch_array
from csr_core.model import CSRNet, from_state, numpy_state


@pytest.fixture
def look():
    torch.manual_seed(3)
    return Look.of(Net(numpy_state(CSRNet())), 64)


def test_strips_equal_one_pass(look, rng):
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    mod = look_modulation(look, img)
    one = apply_base(look.base, img, mod, strip_pixels=10 ** 9)
    for strip in (1, 53, 100, 999):
        assert np.array_equal(apply_base(look.base, img, mod, strip_pixels=strip), one)


def test_one_pass_matches_model_forward(look, rng):
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    out = retouch_array(img, look)
    x = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)[None]
    model = from_state(look.base.state)
    cond = torch.from_numpy(condition_input(img, 64)).permute(2, 0, 1)[None]
    with torch.no_grad():
        ref = model.base(x, model.modulation(cond))[0].permute(1, 2, 0).numpy()
    assert np.abs(out.astype(int) - np.rint(np.clip(ref, 0, 1) * 255)).max() <= 1


def test_strength_zero_is_identity_and_half_is_blend(look, rng):
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    assert np.array_equal(retouch_array(img, look, strength=0), img)
    full = retouch_array(img.astype(np.float32) / 255, look, strength=1)
    half = retouch_array(img.astype(np.float32) / 255, look, strength=0.5)
    inside = (full > 0) & (full < 1)
    expected = img.astype(np.float32) / 255 + 0.5 * (full - img.astype(np.float32) / 255)
    assert np.abs(half - expected)[inside].max() < 1e-5


@pytest.mark.parametrize("bad", [-0.1, 2.01])
def test_strength_out_of_range(look, bad):
    with pytest.raises(CsrError, match="strength"):
        retouch_array(np.zeros((2, 2, 3), np.uint8), look, strength=bad)


def test_uint16_keeps_precision(look, rng):
    img16 = rng.integers(0, 65536, (24, 24, 3), dtype=np.uint16)
    out16 = retouch_array(img16, look)
    assert out16.dtype == np.uint16
    outf = retouch_array(img16.astype(np.float32) / 65535, look)
    assert np.abs(out16 / 65535 - outf).max() < 2 / 65535
    assert len(np.unique(out16)) > 256  # not squeezed through 8 bits


def test_condition_does_not_drift_with_resolution(look, rng):
    small = rng.integers(0, 256, (8, 12, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((64, 64, 1), np.uint8))  # the same picture at 64x the size
    mid = np.kron(small, np.ones((16, 16, 1), np.uint8))
    a = look_modulation(look, big).scales[0]
    b = look_modulation(look, mid).scales[0]
    assert np.allclose(a, b, atol=2e-3)


def test_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(CsrError, match="no CUDA"):
            resolve_device("cuda")
    with pytest.raises(CsrError, match="unknown device"):
        resolve_device("tpu")
