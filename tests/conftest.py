"""Shared fixtures: the ../shared data folder (skipped when absent), RNG, an isolated registry."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

# CI is reproducible (a fixed example sequence); a developer's runs keep exploring new inputs.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(autouse=True)
def csr_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty user-style folder (CSR_HOME), never the real one."""
    home = tmp_path_factory.mktemp("csr_home")
    monkeypatch.setenv("CSR_HOME", str(home))
    pipeline = sys.modules.get("csr_core.pipeline")
    if pipeline is not None:  # drop the cached registry of an earlier test
        monkeypatch.setattr(pipeline, "_registry", None)
    return home


def write_builtin(folder: Path, name: str = "auto", seed: int = 0, cond_size: int = 64) -> dict:
    """A built-in registry folder holding one random full style; returns its card."""
    import hashlib
    import json

    import torch
    from safetensors.numpy import save

    from csr_core.model import CSRNet, numpy_state

    torch.manual_seed(seed)
    blob = save(numpy_state(CSRNet()))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.safetensors").write_bytes(blob)
    card = dict(file=f"{name}.safetensors", sha256=hashlib.sha256(blob).hexdigest(), architecture="csrnet",
                kind="full", cond_size=cond_size, description=f"random test style {name}")
    manifest = folder / "manifest.json"
    data = json.loads(manifest.read_text()) if manifest.exists() else {"format": 1, "styles": {}}
    data["styles"][name] = card
    manifest.write_text(json.dumps(data))
    return card


@pytest.fixture
def run(toy_registry, monkeypatch):
    """Invoke the ``csr`` CLI in-process on the toy registry: ``run("retouch", src, "-o", out)``."""
    from click.testing import CliRunner

    import csr_core.pipeline as pipeline
    from csr_cli.main import cli

    monkeypatch.setattr(pipeline, "_registry", toy_registry)

    def invoke(*args, stdin=None):
        return CliRunner().invoke(cli, [str(a) for a in args], input=stdin, catch_exceptions=False)

    return invoke


@pytest.fixture
def toy_registry(tmp_path):
    """A Registry with one random built-in full style 'auto' and an empty user folder."""
    from csr_core.registry import Registry

    write_builtin(tmp_path / "builtin")
    return Registry(tmp_path / "builtin", tmp_path / "user")


def lively_model(seed: int = 7):
    """A random CSRNet made near-identity plus random ReLU bends (plain random init outputs ~black)."""
    import torch

    from csr_core.model import CSRNet

    torch.manual_seed(seed)
    m = CSRNet().eval()
    eye = torch.eye(3)
    with torch.no_grad():
        m.conv1.weight[:3, :, 0, 0] = eye
        m.conv1.bias[:3] = 0
        m.conv1.weight[3:] *= 3
        m.conv2.weight[:3] = 0
        m.conv2.weight[:3, :3, 0, 0] = eye
        m.conv2.bias[:3] = 0
        m.conv3.weight[:, :3, 0, 0] = eye
        m.conv3.weight[:, 3:] *= 0.5
        m.conv3.bias[:] = 0
        for lin in (m.cond_scale1, m.cond_scale2, m.cond_scale3, m.cond_shift1, m.cond_shift2, m.cond_shift3):
            lin.weight.mul_(0.3)
            lin.bias.mul_(0.3)
    return m


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny tensors on a shared, loaded machine: one torch thread avoids oversubscription (~15x faster)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lively_net(seed: int = 7):
    """``lively_model`` as the numpy engine's Net (what the registry and retouching use)."""
    from csr_core.engine import Net
    from csr_core.model import numpy_state

    return Net(numpy_state(lively_model(seed)))
