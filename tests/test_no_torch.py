"""Retouching needs no PyTorch: with torch (and onnx) made unimportable, the retouch path runs and never
asks for them, and the commands that do need them say in one line how to install them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from csr_core.errors import install_command

REPO = Path(__file__).resolve().parents[1]
CSR = Path(sys.executable).with_name("csr")
#: Imported when torch is missing, this stands in for it: any import of torch fails loudly.
BLOCKER = "raise ImportError('{} is blocked by tests/test_no_torch.py')\n"


@pytest.fixture(scope="module")
def no_torch_env(tmp_path_factory):
    shadow = tmp_path_factory.mktemp("no_torch")
    for module in ("torch", "onnx"):
        (shadow / module).mkdir()
        (shadow / module / "__init__.py").write_text(BLOCKER.format(module))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow), str(REPO)]), CSR_DEBUG="0")
    return env


def run(env, *args, **kw):
    return subprocess.run([str(CSR), *map(str, args)], env=env, capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize("module", ["torch", "onnx"])
def test_blocker_works(no_torch_env, module):
    p = subprocess.run([sys.executable, "-c", f"import {module}"], env=no_torch_env, capture_output=True, text=True)
    assert p.returncode != 0 and "blocked" in p.stderr


def test_retouch_path_modules_import_without_torch(no_torch_env):
    code = ("import sys, csr_core, csr_core.pipeline, csr_core.registry, csr_core.inference, csr_core.lut, "
            "csr_core.evaluate, csr_core.image_io, csr_core.batch, csr_core.engine, csr_core.architecture, "
            "csr_plugins.gimp.worker, csr_cli.main\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx')))")
    p = subprocess.run([sys.executable, "-c", code], env=no_torch_env, capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]"


def test_cli_retouches_lists_evaluates_and_exports_without_torch(no_torch_env, tmp_path, csr_home):
    src = REPO / "samples" / "coffee_dark.jpg"
    for extra in ([], ["--exact"], ["--style", "C:0.5,auto:0.5", "--strength", "0.8"]):
        out = tmp_path / f"out{len(extra)}.jpg"
        p = run(no_torch_env, "retouch", src, "-o", out, *extra)
        assert p.returncode == 0 and out.stat().st_size > 1000, p.stderr
    p = run(no_torch_env, "retouch", src, "-o", tmp_path / "x.jpg", "--device", "auto")  # auto -> cpu
    assert p.returncode == 0, p.stderr
    p = run(no_torch_env, "styles", "list", "--json")
    assert p.returncode == 0 and "auto" in [s["name"] for s in json.loads(p.stdout)]
    assert run(no_torch_env, "styles", "show", "auto").returncode == 0
    p = run(no_torch_env, "export-lut", src, "-o", tmp_path / "look.cube")
    assert p.returncode == 0 and (tmp_path / "look.cube").stat().st_size > 10000, p.stderr
    pairs = tmp_path / "pairs"
    for role in ("before", "after"):
        (pairs / role).mkdir(parents=True)
    from PIL import Image

    img = np.asarray(Image.open(src))[:120, :160]
    for i in range(2):
        Image.fromarray(img).save(pairs / "before" / f"p{i}.png")
        Image.fromarray(np.clip(img.astype(int) + 20 + i, 0, 255).astype(np.uint8)).save(pairs / "after" / f"p{i}.png")
    p = run(no_torch_env, "eval", "--pairs", pairs, "--json")
    assert p.returncode == 0 and len(json.loads(p.stdout)["pairs"]) == 2, p.stderr


@pytest.mark.parametrize("extra, args", [
    ("train", ["train", "--photos", "{tmp}", "--name", "x"]),
    ("train", ["finetune", "--pairs", "{tmp}", "--name", "x"]),
    ("train", ["styles", "import", "{tmp}/x.pth", "--name", "x"]),
    ("train", ["retouch", str(REPO / "samples" / "coffee_dark.jpg"), "-o", "{tmp}/o.jpg", "--device", "cuda"]),
    ("onnx", ["export-onnx", "auto", "-o", "{tmp}/auto.onnx"]),
])
def test_commands_needing_an_extra_say_how_to_install_it(no_torch_env, tmp_path, extra, args):
    (tmp_path / "x.pth").write_bytes(b"not used")
    p = run(no_torch_env, *[a.format(tmp=tmp_path) for a in args])
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1, p.stderr
    assert ("PyTorch" if extra == "train" else "ONNX") in lines[0] and install_command(extra) in lines[0]
