"""csr export-onnx: onnxruntime runs the exported graph to within 1/255 of ``csr retouch --exact``."""
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from csr_cli.main import cli  # noqa: E402
from conftest import lively_model  # noqa: E402
from csr_core import lut as L  # noqa: E402
from csr_core.image_io import load_photo  # noqa: E402
from csr_core.inference import base_fn, condition_input, look_modulation  # noqa: E402
from csr_core.registry import Registry  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def run_onnx(path: Path, rgb: np.ndarray, cond_size: int) -> np.ndarray:
    """What a user of another language does: condition copy + pixel rows in, pixel rows out."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert int(meta["cond_size"]) == cond_size
    cond = np.ascontiguousarray(condition_input(rgb, cond_size).transpose(2, 0, 1)[None])
    (y,) = session.run(["rgb"], {"condition": cond, "pixels": rgb.reshape(-1, 3).astype(np.float32) / 255})
    return np.rint(y * 255).reshape(rgb.shape)


@pytest.fixture
def styles(csr_home):
    """The built-in styles plus a lively user style and a condition style fine-tuned onto it."""
    import torch

    reg = Registry()
    reg.save_style("lively", lively_model().state_dict(), {"cond_size": 64})
    tuned = lively_model(seed=9)
    with torch.no_grad():
        tuned.cond_shift3.bias.add_(0.1)
    reg.save_style("tuned", tuned.state_dict(), {"cond_size": 64}, base=reg.get("lively"))
    return reg


def test_onnx_reproduces_retouch_exact(styles, tmp_path):
    src = REPO / "samples" / "coffee_dark.jpg"
    rgb = load_photo(src).rgb
    for style in styles.names():
        model, out = tmp_path / f"{style}.onnx", tmp_path / f"{style}.png"
        r = invoke("export-onnx", style, "-o", model)
        assert r.exit_code == 0 and "wrote" in r.output, r.output
        assert invoke("retouch", src, "-o", out, "-s", style, "--exact").exit_code == 0
        exact = load_photo(out).rgb
        assert np.abs(exact.astype(int) - rgb).mean() > 2, style  # the style changes the photo
        assert np.abs(run_onnx(model, rgb, styles.get(style).cond_size) - exact).max() <= 1, style


def test_onnx_bakes_the_same_lut(styles, tmp_path):
    invoke("export-onnx", "tuned", "-o", tmp_path / "t.onnx")
    rgb = load_photo(REPO / "samples" / "astronaut.jpg").rgb
    look = styles.look("tuned")
    session = ort.InferenceSession(str(tmp_path / "t.onnx"), providers=["CPUExecutionProvider"])
    cond = np.ascontiguousarray(condition_input(rgb, 64).transpose(2, 0, 1)[None])
    (y,) = session.run(None, {"condition": cond, "pixels": L.lattice(17).reshape(-1, 3)})
    assert np.abs(y.reshape(17, 17, 17, 3) - L.bake_lut(base_fn(look.base, look_modulation(look, rgb)), 17)).max() < 1e-5


def test_export_errors_are_one_line(styles, tmp_path):
    r = invoke("export-onnx", "nope", "-o", tmp_path / "x.onnx")
    assert r.exit_code == 2 and "unknown style 'nope'" in r.output
    for mix in ("lively:0.5,tuned:0.5", "tuned:0.7"):  # not 'unknown style', which reads as a missing one
        r = invoke("export-onnx", mix, "-o", tmp_path / "x.onnx")
        assert r.exit_code == 2 and r.output == (f"csr: error: {mix}: export-onnx takes one style, not a mix or a "
                                                 "weight; export each style on its own (csr export-lut bakes a mix's "
                                                 "look for one photo)\n"), r.output
    r = invoke("export-onnx", "auto", "-o", tmp_path / "x.txt")
    assert r.exit_code == 2 and ".onnx" in r.output
    (tmp_path / "x.onnx").write_bytes(b"old")
    r = invoke("export-onnx", "lively", "-o", tmp_path / "x.onnx")
    assert r.exit_code == 1 and "already exists" in r.output and (tmp_path / "x.onnx").read_bytes() == b"old"
