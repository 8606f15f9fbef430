"""Headless GIMP 3 in a chroot (Debian 13, built by .ci/gimp-chroot.sh): shared by tests/test_gimp_e2e.py
and benchmarks/gimp_bench.py.

Needs root (bind mounts). The checkout, this Python (venv and base prefix) and a work folder are
bind-mounted into the chroot at the same paths, so the plug-in calls this very environment. A plain
module, no pytest: ``mount_paths`` raises ChrootError, which the test turns into a skip.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

GIMP = ["gimp-console-3.0", "-i", "-n", "-d", "-f", "-c", "--batch-interpreter=python-fu-eval", "-b", "-", "--quit"]
PLUGIN = "csr_retouch"


class ChrootError(Exception):
    """The chroot cannot be used with this environment (one line, e.g. a venv on the system Python)."""


def is_chroot(root: str) -> bool:
    return bool(root) and os.path.isfile(os.path.join(root, "usr/bin/gimp-console-3.0"))


def mounted() -> set[str]:
    with open("/proc/self/mounts") as fh:
        return {line.split()[1].replace("\\040", " ") for line in fh}


@contextmanager
def bind_mounts(root: str, paths: list[str]):
    """Bind each host path at the same path inside ``root``; always unmounted again (and the mount
    point removed when this made it)."""
    done, made = [], []
    try:
        for path in paths:
            target = root + path
            if not os.path.isdir(target):
                os.makedirs(target)
                made.append(target)
            while target in mounted():  # left over by a killed run
                subprocess.run(["umount", "-l", target], check=True)
            subprocess.run(["mount", "--bind", path, target], check=True)
            done.append(target)
        yield
    finally:
        for target in reversed(done):
            for _ in range(50):  # GIMP's helpers may take a moment to let go
                if subprocess.run(["umount", target], capture_output=True).returncode == 0:
                    break
                time.sleep(0.2)
            else:
                subprocess.run(["umount", "-l", target], check=False)
            if target in made and target not in mounted():
                try:
                    os.rmdir(target)
                except OSError:
                    pass


def mount_paths(*folders: Path) -> list[str]:
    """The folders to bind: ``folders`` (checkouts, work folders) plus this Python's prefixes, none
    inside another; ChrootError when one would cover the chroot's own system."""
    paths = []
    for p in sorted({str(Path(p).resolve()) for p in (*folders, sys.prefix, sys.base_prefix)}, key=len):
        if p in ("/", "/usr") or p.startswith(("/usr/", "/bin", "/lib", "/etc")):
            raise ChrootError(f"{p} cannot be bind-mounted over the chroot's own system; use a venv "
                              f"on a non-system Python (pyenv, uv, conda)")
        if not any(p == q or p.startswith(q + "/") for q in paths):  # parents come first
            paths.append(p)
    return paths


class Checkout:
    """A source tree of the project as this interpreter runs it: its CLI module, its packages, and a
    PYTHONPATH under which they import from this tree (not from whatever checkout is pip-installed)."""

    def __init__(self, repo: Path):
        self.repo = Path(repo).resolve()
        meta = tomllib.loads((self.repo / "pyproject.toml").read_text())
        setup = meta.get("tool", {}).get("setuptools", {})
        self.cli = meta["project"]["scripts"]["csr"].split(":")[0]  # csr_cli.main, or cli.main once
        packages = setup.get("packages", [])
        self.plugins = next(p for p in packages if p.endswith(".gimp")).split(".")[0]  # csr_plugins | plugins
        # top-level packages kept under another folder name (csr_cli = "cli"): importable only installed
        self.renamed = {k: v for k, v in setup.get("package-dir", {}).items() if "." not in k and k != v}

    def pythonpath(self, work: Path) -> str:
        """The checkout's root, behind a folder of links named as installed when needed (work: a folder
        the chroot sees)."""
        if not self.renamed or self._resolves_here():
            return str(self.repo)
        links = Path(work) / f"pkgs-{self.repo.name}"
        links.mkdir(parents=True, exist_ok=True)
        for name, folder in self.renamed.items():
            if not (links / name).is_symlink():
                (links / name).symlink_to(self.repo / folder)
        return f"{links}{os.pathsep}{self.repo}"

    def _resolves_here(self) -> bool:
        code = "import importlib.util as u, sys; print(*(u.find_spec(n).origin for n in sys.argv[1:]))"
        out = subprocess.run([sys.executable, "-c", code, *self.renamed], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(self.repo)), cwd=self.repo).stdout.split()
        return len(out) == len(self.renamed) and all(Path(o).resolve().is_relative_to(self.repo) for o in out)

    def install(self, profile: Path, work: Path, device: str = "cpu") -> Path:
        """``csr gimp install --profile PROFILE`` from this checkout; the recorded worker imports this
        checkout too. Returns the plug-in folder."""
        path = self.pythonpath(work)
        subprocess.run([sys.executable, "-m", self.cli, "gimp", "install", "--profile", str(profile),
                        "--device", device], check=True, cwd=self.repo, timeout=300,
                       env=dict(os.environ, PYTHONPATH=path))
        dest = Path(profile) / "plug-ins" / PLUGIN
        cfg = dest / f"{PLUGIN}.json"
        config = json.loads(cfg.read_text())
        if path != str(self.repo) or config.get("pythonpath", path) != path:
            cfg.write_text(json.dumps(dict(config, pythonpath=path), indent=2))
        return dest

    def worker_origin(self, root: str, plugin_dir: Path) -> str:
        """Inside the chroot (mounted): where the recorded worker's modules come from, and whether it
        imports torch for a retouch request (csr_core.inference); one line."""
        cfg = json.loads((Path(plugin_dir) / f"{PLUGIN}.json").read_text())
        code = (f"import sys, {self.plugins}.gimp.worker as w, csr_core, csr_core.inference; "
                "print(f'worker {w.__file__}, csr_core {csr_core.__file__}, torch imported: {\"torch\" in sys.modules}')")
        run = subprocess.run(["chroot", root, "env", "-i", "PATH=/usr/bin:/bin", f"PYTHONPATH={cfg.get('pythonpath', '')}",
                              cfg["python"], "-c", code], capture_output=True, text=True, timeout=120)
        return run.stdout.strip() or f"cannot import the worker: {run.stderr.strip().splitlines()[-1:]}"


def gimp_batch(root: str, batch: str, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run a python-fu batch (stdin) in a fresh headless gimp-console session inside ``root`` with only
    ``env`` (plus PATH and LANG); the mounts must be in place."""
    cmd = ["chroot", root, "env", "-i", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
           *(f"{k}={v}" for k, v in env.items()), *GIMP]
    return subprocess.run(cmd, input=batch.encode(), capture_output=True, timeout=timeout)
