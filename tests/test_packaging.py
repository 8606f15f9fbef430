"""The wheel: its own distribution name, only the project's own import packages, no build warnings, and
an installed copy that runs without the checkout."""
from __future__ import annotations

import os
import re
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


# ``pip install ARGS`` in any text; ARGS end at the end of the line, a shell separator or a backquote
_PIP = re.compile(r"pip3? (?:un)?install ([^\n`;|&]*)")
# one requirement as written in a hint: NAME[extras]==version, '.' or '-e .', quoted or not
_REQ = re.compile(r"""^(["']?)(\.|[A-Za-z0-9][\w.-]*)(?:\[([\w,-]+)\])?(?:[=<>!~]=?[\w.*+]+)*\1[.,:)]*$""")


def install_hints(text: str) -> list[tuple[str, str]]:
    """(name, extras) of every requirement that a ``pip install`` hint in ``text`` names."""
    found = []
    for match in _PIP.finditer(text):
        tokens = match.group(1).split()
        while tokens:
            token = tokens.pop(0)
            if token in ("--index-url", "--extra-index-url", "-r", "-c"):
                tokens = tokens[1:]  # the option's value is no requirement
            elif token.startswith("-"):
                continue
            elif (req := _REQ.match(token)) is None:
                break  # prose after the command
            else:
                found.append((req.group(2), req.group(3) or ""))
    return found


def _texts():
    """(path, text) of every file that can tell a user how to install csr: docs, sources, scripts."""
    for path in sorted(REPO.rglob("*")):
        parts = set(path.relative_to(REPO).parts)
        if path.is_file() and not parts & SKIP and not any(p.endswith(".egg-info") for p in parts) and (
                path.suffix in (".md", ".py", ".sh", ".toml", ".txt", ".cfg") or path.parent.name == ".ci"):
            yield path.relative_to(REPO), path.read_text("utf-8", errors="replace")


def test_every_install_hint_names_this_distribution():
    """Issue 31: no message, help text or doc may send a user to another distribution (on PyPI 'csr' is
    an unrelated sparse-matrix library); every extra named exists."""
    from csr_core.errors import DISTRIBUTION

    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]["optional-dependencies"])
    wrong, ours = [], 0
    for path, text in _texts():
        wrong += [f"{path}: {m.group(0)}" for m in re.finditer(r"(?<![\w.-])csr\[[a-z]", text)]
        for name, extra in install_hints(text):
            if name in (".", DISTRIBUTION):
                ours += 1
                wrong += [f"{path}: unknown extra {e!r}" for e in extra.split(",") if e and e not in extras]
            elif name.lower().replace("_", "-").startswith("csr"):
                wrong.append(f"{path}: pip install {name}")
    assert wrong == []
    assert ours >= 5  # the README's install commands at least
    assert install_hints("""pip install -e ".[test,app]" && pytest""") == [(".", "test,app")]
    old = "needs: pip install 'csr" + "[raw]'."  # (spelled apart, or this file would be flagged)
    assert install_hints(old) == [("csr", "raw")]  # the scan sees such a hint
    assert install_hints("pip install torch --index-url https://x/cpu && pip install .") == [("torch", ""), (".", "")]


def test_install_hints_in_messages_come_from_the_one_constant(monkeypatch):
    """The hints users see at run time: a missing RAW/HEIF decoder, a missing extra, --cluster's help."""
    from click.testing import CliRunner

    from csr_cli.main import cli
    from csr_core import camera
    from csr_core.errors import EXTRAS, MissingExtra, install_command, require

    monkeypatch.setitem(sys.modules, "rawpy", None)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    for decode, extra in ((camera.develop_raw, "raw"), (camera.decode_heif, "heif")):
        with pytest.raises(camera.MissingExtra, match=re.escape(install_command(extra))):
            decode(b"", lambda w, h: None)
    for extra, (module, _) in EXTRAS.items():
        monkeypatch.setitem(sys.modules, module, None)
        with pytest.raises(MissingExtra, match=re.escape(install_command(extra))):
            require(extra, "this")
    help_text = " ".join(CliRunner().invoke(cli, ["retouch", "--help"]).output.split())
    assert install_command("cluster") in help_text


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
