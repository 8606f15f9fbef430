"""CSRNet architecture: parameter count, parity with the authors' checkpoint, split forward."""
import numpy as np
import pytest
import torch
from PIL import Image

from csr_core.inference import condition_input
from csr_core.model import PARAMETER_COUNT, CSRNet, condition_state, count_parameters


def test_parameter_count_matches_paper():
    assert count_parameters(CSRNet()) == PARAMETER_COUNT == 36489


def test_condition_state_is_condition_net_and_gfm_only():
    keys = condition_state(CSRNet().state_dict())
    assert all(k.startswith(("cond_net.", "cond_scale", "cond_shift")) for k in keys)
    assert sum(v.numel() for v in keys.values()) == 36489 - (3 * 64 + 64 + 64 * 64 + 64 + 64 * 3 + 3)


@pytest.mark.parametrize("name", ["a2803", "kodim"])
def test_parity_with_authors_checkpoint(shared_dir, name):
    ref = shared_dir / "reference" / "csrnet-official"
    model = CSRNet()
    model.load_state_dict(torch.load(ref / "csrnet.pth", weights_only=True))
    model.eval()
    x = np.asarray(Image.open(ref / f"{name}_input.png").convert("RGB"), dtype=np.float32) / 255
    expected = np.load(ref / f"{name}_expected_output.npy")
    t = torch.from_numpy(x).permute(2, 0, 1)[None]
    with torch.no_grad():
        nchw = model(t)[0].permute(1, 2, 0).numpy()
        rows = model.base(t.flatten(2).transpose(1, 2), model.modulation(t))[0].reshape(x.shape).numpy()
    assert np.abs(nchw - expected).max() < 1e-5
    assert np.abs(rows - expected).max() < 1e-5


def test_pixel_rows_equal_nchw_forward():
    torch.manual_seed(0)
    model = CSRNet().eval()
    x = torch.rand(1, 3, 20, 30)
    with torch.no_grad():
        mod = model.modulation(x)
        a = model.base(x, mod)
        b = model.base(x.flatten(2).transpose(1, 2), mod).transpose(1, 2).reshape(a.shape)
    assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("shape", [(300, 451), (451, 300), (64, 64), (5, 1000), (1, 1)])
def test_condition_input_long_side(shape):
    t = condition_input(np.zeros((*shape, 3), np.uint8), 256)
    assert t.shape[2] == 3 and t.dtype == np.float32 and max(t.shape[:2]) == 256
    assert abs(t.shape[0] / t.shape[1] - shape[0] / shape[1]) < 0.02 * max(1, shape[0] / shape[1]) or min(t.shape[:2]) == 5


def test_core_imports_no_front_end():
    """Every csr_core module imports without click, gradio or GIMP (a fresh interpreter tells)."""
    import subprocess
    import sys

    code = ("import importlib, pkgutil, sys, csr_core\n"
            "for m in pkgutil.iter_modules(csr_core.__path__): importlib.import_module('csr_core.' + m.name)\n"
            "print(sorted({k.split('.')[0] for k in sys.modules} & {'click', 'gradio', 'gi', 'gimpfu'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
