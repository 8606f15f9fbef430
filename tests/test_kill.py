"""SIGKILL at any moment leaves outputs and the style registry valid.

A "zygote" process imports the CLI once (torch takes ~8 s to import on a loaded machine) and forks one
child per trial; each child runs a real ``csr`` command (``csr_cli.main.cli``) and the test SIGKILLs it:
- while it writes: an optional hook slows ``atomic_write``'s file writes (8 chunks with pauses; the
  hook lives in the child only, csr_core is not modified) and the test kills as soon as a temp file
  appears, so the kill lands mid-write every time, not by luck;
- at random delays over a whole run, with no hook (timing-independent: the invariant holds whenever).
Invariants: every file at a final name decodes completely (never truncated), the registry lists and
every listed style loads, and running the command again afterwards completes.
"""
from __future__ import annotations

import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import csr_core.pipeline as pipeline
from csr_core.errors import ImageError
from csr_core.image_io import load_photo
from csr_core.registry import Registry

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and SIGKILL (POSIX)")

ZYGOTE = r'''
import json, os, sys, threading, time
import csr_cli.main
import csr_core.fsutil as fsutil


class Slow:
    """A file whose first bytes go out in 8 pieces with a pause after each: the kill window."""

    def __init__(self, fh, pause):
        self._fh, self._pause, self._pauses = fh, pause, 8

    def write(self, data):
        step = max(1, len(data) // 8)
        i = 0
        while i < len(data) and self._pauses:
            self._fh.write(data[i:i + step])
            self._fh.flush()
            time.sleep(self._pause)
            self._pauses -= 1
            i += step
        self._fh.write(data[i:])
        return len(data)

    def __enter__(self):
        self._fh.__enter__()
        return self

    def __exit__(self, *exc):
        return self._fh.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self._fh, name)


class SlowOs:
    def __init__(self, pause):
        self._pause = pause

    def __getattr__(self, name):
        return getattr(os, name)

    def fdopen(self, *a, **k):
        return Slow(os.fdopen(*a, **k), self._pause)


def child(cmd):
    fd = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    if cmd.get("pause"):
        fsutil.os = SlowOs(cmd["pause"])
    code = 0
    try:
        if "argv" in cmd:
            csr_cli.main.cli.main(args=cmd["argv"], prog_name="csr")
        else:
            exec(cmd["python"], {})
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# forking is only safe while this process is single-threaded (no torch op has run here)
print("ready", threading.active_count(), len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1,
      flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            child(cmd)
        finally:
            os._exit(70)
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
'''


class Zygote:
    def __init__(self, env: dict):
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=REPO, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, bufsize=0)
        self._buf = b""
        ready = self._line(timeout=180).split()
        assert ready[0] == "ready" and ready[1:] == ["1", "1"], f"zygote is not single-threaded: {ready}"

    def _line(self, timeout: float | None = None) -> str | None:
        """The next line from the zygote; None if none arrives within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            assert chunk, "zygote died"
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode()

    def start(self, log: Path, **cmd) -> int:
        self.proc.stdin.write((json.dumps(dict(cmd, log=str(log))) + "\n").encode())
        return int(self._line(timeout=60))

    def result(self, timeout: float | None = None) -> int | None:
        line = self._line(timeout)
        return None if line is None else int(line)

    def run(self, log: Path, timeout: float = 240, **cmd) -> int:
        self.start(log, **cmd)
        code = self.result(timeout)
        assert code is not None, f"command did not finish in {timeout} s: {cmd}"
        return code

    def kill_mid_write(self, log: Path, ready, attempts: int = 3, reset=None, **cmd) -> bool:
        """``kill_when`` with the slow-write hook; if a starved test process missed the window and the
        command completed, ``reset()`` undoes it and the trial is retried."""
        for _ in range(attempts):
            if self.kill_when(log, ready, pause=0.08, **cmd)[0]:
                return True
            if reset:
                reset()
        return False

    def kill_when(self, log: Path, ready, timeout: float = 120, **cmd) -> tuple[bool, float]:
        """Start ``cmd``; SIGKILL it once ``ready()`` is true. Returns (killed, seconds it ran)."""
        pid, t0 = self.start(log, **cmd), time.monotonic()
        while time.monotonic() - t0 < timeout:
            if ready(time.monotonic() - t0):
                os.kill(pid, signal.SIGKILL)
                code = self.result(60)
                return code == -signal.SIGKILL, time.monotonic() - t0
            code = self.result(0.002)
            if code is not None:
                return False, time.monotonic() - t0  # it finished first
        os.kill(pid, signal.SIGKILL)
        self.result(60)
        raise AssertionError(f"trigger never fired within {timeout} s: {cmd}")

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("kill_home")


@pytest.fixture(scope="module")
def zygote(home):
    env = dict(os.environ, CSR_HOME=str(home), OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    z = Zygote(env)
    yield z
    z.close()


@pytest.fixture(scope="module")
def base_style(home, tmp_path_factory) -> str:
    """A full user style (the children cannot see the toy built-ins of other tests)."""
    import torch

    from csr_core.model import CSRNet

    torch.manual_seed(3)
    Registry(tmp_path_factory.mktemp("nob"), home / "styles").save_style("killbase", CSRNet().state_dict(), {"cond_size": 64})
    return "killbase"


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".part")]


def _when_temp_file(folder: Path, final: str = ""):
    """Trigger: a temp file being written for a final name matching the regex ``final`` has some bytes."""
    def ready(_t):
        for p in _temp_files(folder):
            try:
                if re.match(final, p.name[1:]) and p.stat().st_size > 0:
                    return True
            except FileNotFoundError:
                pass
        return False
    return ready


# ----------------------------------------------------------------------------- csr retouch

@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("kill_in")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        p = folder / f"photo {i}.png"
        Image.fromarray(rng.integers(0, 256, (360, 480, 3), dtype=np.uint8)).save(p, compress_level=1)
        paths.append(p)
    return folder, paths


def _check_outputs(out: Path, names: list[str], fmt_ext: str) -> list[str]:
    """Every final-name output decodes completely; returns the names present."""
    present = []
    for p in sorted(out.glob(f"*{fmt_ext}")) if out.exists() else []:
        assert not p.name.startswith("."), p
        try:
            ph = load_photo(p)
        except ImageError as exc:
            raise AssertionError(f"{p.name} at its final name is damaged: {exc}") from None
        assert ph.rgb.shape == (360, 480, 3), p
        present.append(p.stem)
    assert set(present) <= set(names)
    return present


def test_kill_retouch_mid_write_and_at_random(zygote, base_style, photos, tmp_path):
    folder, paths = photos
    names = [p.stem for p in paths]

    def argv(out, ext):
        return ["retouch", str(folder), "-o", str(out), "--style", base_style, "--format", ext[1:]]

    hits = 0
    for trial, ext in enumerate((".tif", ".png")):  # mid-write: killed once a temp file has bytes
        out = tmp_path / f"slow {trial}"
        assert zygote.kill_mid_write(tmp_path / f"slow{trial}.log", _when_temp_file(out), argv=argv(out, ext),
                                     reset=lambda o=out: shutil.rmtree(o))
        hits += bool(_temp_files(out))
        _check_outputs(out, names, ext)
    assert hits == 2, "the kill did not land during a write"

    t0 = time.monotonic()  # an uninterrupted run: its length sets the random kill times
    out = tmp_path / "full"
    assert zygote.run(tmp_path / "full.log", argv=argv(out, ".tif")) == 0, (tmp_path / "full.log").read_text()
    span = time.monotonic() - t0
    assert sorted(_check_outputs(out, names, ".tif")) == sorted(names)

    rnd = random.Random(7)
    for trial in range(3):  # no hook: at uniformly random moments of a whole run
        out, ext = tmp_path / f"random {trial}", (".tif", ".png")[trial % 2]
        delay = rnd.uniform(0.05, span)
        zygote.kill_when(tmp_path / f"rnd{trial}.log", lambda t, d=delay: t >= d, argv=argv(out, ext))
        _check_outputs(out, names, ext)

    # the killed batch can be resumed: stale temp files are ignored, every output completes
    out = tmp_path / "slow 1"
    code = zygote.run(tmp_path / "resume.log", argv=[*argv(out, ".png"), "--skip-existing"])
    assert code == 0, (tmp_path / "resume.log").read_text()
    assert sorted(_check_outputs(out, names, ".png")) == sorted(names)


# ----------------------------------------------------------------------------- the registry

def _registry_sound(styles: Path, tmp_path: Path, monkeypatch) -> list[str]:
    """The user registry lists, every listed style loads, and ``csr styles list`` works."""
    reg = Registry(tmp_path / "no-builtins", styles)
    names = reg.names()
    for name in names:
        reg.net(name)  # sha256-checked load: raises StyleError if a listed style is damaged
    from csr_cli.main import cli

    monkeypatch.setattr(pipeline, "_registry", reg)
    res = CliRunner().invoke(cli, ["styles", "list"])
    assert res.exit_code == 0 and not isinstance(res.exception, Exception), res.output
    return names


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import torch

    from csr_core.model import CSRNet

    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("ckpt") / "net.pth"
    torch.save(CSRNet().state_dict(), path)
    return path


@pytest.mark.parametrize("stage", ["weights", "card", "random"])
def test_kill_styles_import(zygote, home, checkpoint, tmp_path, monkeypatch, stage):
    styles = home / "styles"
    name = f"imp-{stage}"
    argv = ["styles", "import", str(checkpoint), "--name", name]
    log = tmp_path / "import.log"
    if stage == "random":
        t0 = time.monotonic()
        assert zygote.run(log, argv=[*argv[:-1], f"{name}-full"]) == 0, log.read_text()
        span = time.monotonic() - t0
        for delay in random.Random(1).sample([i * span / 10 for i in range(10)], 3):
            zygote.kill_when(log, lambda t, d=delay: t >= d, argv=argv)
            _registry_sound(styles, tmp_path, monkeypatch)
    else:
        final = rf"{name}\.[0-9a-f]{{12}}\.safetensors\." if stage == "weights" else rf"{name}\.json\."
        assert zygote.kill_mid_write(log, _when_temp_file(styles, final), argv=argv,
                                     reset=lambda: Registry(tmp_path / "nob", styles).remove(name))
        assert name not in _registry_sound(styles, tmp_path, monkeypatch)  # killed before its card landed
    # whatever the kill left, importing again under the same name works
    if name not in Registry(tmp_path / "nob", styles).names():
        assert zygote.run(log, argv=argv) == 0, log.read_text()
    assert name in _registry_sound(styles, tmp_path, monkeypatch)


SAVE = """
import torch
from pathlib import Path
from csr_core.model import CSRNet
from csr_core.registry import Registry
torch.manual_seed({seed})
Registry(Path({nob!r}), Path({styles!r})).save_style({name!r}, CSRNet().state_dict(), {{"cond_size": 64}}, overwrite=True)
"""


def test_kill_registry_overwrite_between_weights_and_card(zygote, tmp_path, monkeypatch):
    styles = tmp_path / "styles"  # not the shared home: this test leaves a damaged style behind
    cmd = lambda seed: SAVE.format(seed=seed, nob=str(tmp_path / "nob"), styles=str(styles), name="over")  # noqa: E731
    assert zygote.run(tmp_path / "a.log", python=cmd(1)) == 0
    assert zygote.kill_mid_write(tmp_path / "b.log", _when_temp_file(styles, r"over\.json\."), python=cmd(2))
    _registry_sound(styles, tmp_path, monkeypatch)


def test_kill_finetune(zygote, home, base_style, tmp_path, monkeypatch):
    """``csr finetune`` killed while it saves the new style: the registry stays sound."""
    from pairs_util import write_pairs

    pairs = write_pairs(tmp_path / "pairs", 5, size=(8, 12))
    styles = home / "styles"
    argv = ["finetune", "--pairs", str(pairs), "--name", "tuned", "--from", base_style, "--steps", "2"]
    assert zygote.kill_mid_write(tmp_path / "ft.log", _when_temp_file(styles, r"tuned\.[0-9a-f]{12}\.safetensors\."), attempts=1,
                                 argv=argv), (tmp_path / "ft.log").read_text()
    assert "tuned" not in _registry_sound(styles, tmp_path, monkeypatch)
