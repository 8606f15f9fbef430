"""The wheel: its own distribution name, only the project's own import packages, no build warnings, and
an installed copy that runs without the checkout."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

SKIP = {".git", ".venv", ".venv-ci", "build", "dist", ".ci-cache", "test-artifacts", ".hypothesis",
        ".pytest_cache", "__pycache__"}


def _setuptools_ok() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 77  # SPDX `license` strings


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> tuple[Path, str]:
    """(wheel path, build output) built from a copy of the source tree (the checkout stays clean)."""
    if not _setuptools_ok():
        pytest.skip("setuptools >= 77 is not installed")
    src = tmp_path_factory.mktemp("src") / "csr"
    shutil.copytree(REPO, src, ignore=lambda d, names: [n for n in names if n in SKIP or n.endswith(".egg-info")])
    out = subprocess.run([sys.executable, "-W", "always", "-c",
                          "import setuptools.build_meta as b; print(b.build_wheel('dist'))"],
                         cwd=src, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return src / "dist" / out.stdout.strip().splitlines()[-1], out.stdout + out.stderr


def test_distribution_name_is_our_own_and_in_one_place():
    from csr_core.errors import DISTRIBUTION, install_command

    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["name"] == DISTRIBUTION == "csr-retouch"  # 'csr' on PyPI is a sparse-matrix package
    assert project["scripts"] == {"csr": "csr_cli.main:main"}  # the command stays 'csr'
    assert project["license"] == "MIT" and (REPO / "LICENSE").read_text().startswith("MIT License")
    assert install_command("app") == 'pip install "csr-retouch[app]"'


def test_wheel_installs_only_project_packages_and_builds_without_warnings(wheel):
    path, log = wheel
    for noise in ("SetuptoolsDeprecationWarning", "is absent from the `packages` configuration",
                  "License classifiers are deprecated", "as a TOML table is deprecated"):
        assert noise not in log, noise
    names = zipfile.ZipFile(path).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"csr_core", "csr_cli", "csr_plugins"}  # no generic 'cli' / 'plugins'
    assert {"csr_core/weights/manifest.json", "csr_core/samples/coffee_dark.jpg",
            "csr_plugins/gimp/csr_retouch/csr_retouch.py", "csr_cli/main.py"} <= set(names)
    import re

    stale = re.compile(r"^\s*(from|import)\s+(cli|plugins)\b|-m\s+(cli|plugins)\.|[\"'](cli|plugins)\.\w", re.M)
    for n in names:
        if n.endswith(".py"):
            assert not stale.search(zipfile.ZipFile(path).read(n).decode()), n  # only csr_cli / csr_plugins
    meta = zipfile.ZipFile(path).read("csr_retouch-0.1.0.dist-info/METADATA").decode()
    assert "Name: csr-retouch" in meta and "License-Expression: MIT" in meta and "License-File: LICENSE" in meta


def test_installed_copy_runs_without_the_checkout(wheel, tmp_path):
    """Installed next to nothing else of the repository: the command, the web app and the GIMP worker
    import from csr_cli / csr_plugins alone (no leftover 'cli.' or 'plugins.' import)."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
                    str(target), str(wheel[0])], check=True, capture_output=True, timeout=300)
    code = ("import sys, importlib; sys.path.insert(0, sys.argv[1]);\n"
            "for m in ('csr_cli.main', 'csr_cli.app', 'csr_cli.gimp', 'csr_plugins.gimp.worker',"
            " 'csr_plugins.gradio_app.service'):\n"
            "    mod = importlib.import_module(m); assert mod.__file__.startswith(sys.argv[1]), mod.__file__\n"
            "sys.argv = ['csr', 'styles', 'list']\n"
            "from csr_cli.main import main; main()\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", code, str(target)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[0].split()[:3] == ["style", "origin", "licence"]
    assert any(line.startswith("auto ") for line in out.stdout.splitlines())
