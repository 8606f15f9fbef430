"""A JPEG or PNG retouch imports only what it needs: Pillow, tifffile and threadpoolctl made unimportable,
``csr retouch`` still retouches JPEG to JPEG and PNG to PNG, and gives the same pixels as in-process."""
import os
import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CSR = Path(sys.executable).with_name("csr")
BLOCKED = ("PIL", "tifffile", "threadpoolctl")


@pytest.fixture
def lean_env(tmp_path_factory, csr_home):
    shadow = tmp_path_factory.mktemp("lean")
    for module in BLOCKED:
        (shadow / module).mkdir()
        (shadow / module / "__init__.py").write_text(f"raise ImportError('{module} is blocked by {__name__}')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow), str(REPO)]), CSR_DEBUG="1")
    env.pop("OPENBLAS_NUM_THREADS", None)  # the csr command sets it: BLAS needs no limiting then
    return env


def test_blocker_works(lean_env):
    p = subprocess.run([sys.executable, "-c", "import PIL"], env=lean_env, capture_output=True, text=True)
    assert p.returncode != 0 and "blocked" in p.stderr


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_jpeg_and_png_runs_need_neither_pillow_nor_tifffile(lean_env, tmp_path, fmt):
    from csr_core.image_io import load_photo
    from csr_core.pipeline import retouch

    y, x = np.mgrid[0:300, 0:400] / 400
    img = np.rint(np.stack([0.2 + 0.7 * x, 0.3 + 0.5 * y, 0.5 + 0.4 * np.sin(9 * x * y)], -1) * 255).astype(np.uint8)
    src = tmp_path / f"in.{fmt}"
    src.write_bytes(imagecodecs.jpeg8_encode(img, level=90) if fmt == "jpg" else imagecodecs.png_encode(img))
    out = tmp_path / f"out.{fmt}"
    p = subprocess.run([str(CSR), "retouch", str(src), "-o", str(out)], env=lean_env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    got = load_photo(out).rgb
    expected = retouch(load_photo(src).rgb)
    if fmt == "png":
        assert np.array_equal(got, expected)
    else:  # JPEG: the same pixels, compressed
        assert np.abs(got.astype(int) - expected).mean() < 2
