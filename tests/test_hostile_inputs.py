"""Every entry point gets every hostile/odd file of tests/hostile.py.

The rule, checked for each: one clear error or a correct result; never a traceback, never a partial
or leftover output file (no ``*.part``, no destination created on failure), never a changed input.
Entry points: load_photo (path, bytes, stream), retouch_file, load_pair, ``csr retouch`` through
click's CliRunner (single file, stdin/stdout, a whole folder) and through real ``python -m csr_cli.main``
subprocesses, and the web app's Service.load / Service.render behind its ``friendly`` wrapper.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import csr_core.pipeline as pipeline
from csr_cli.main import cli
from csr_core.errors import CsrError, ImageError, PairsError
from csr_core.image_io import load_photo
from csr_core.pairs import Pair, load_pair
from csr_core.pipeline import retouch_file
from hostile import KNOWN_RETOUCH_BUGS, Findings, corpus, leftovers, out_name, snapshot, write_corpus

REPO = Path(__file__).resolve().parents[1]
SLOW_S = 10.0  # per case and entry point: generous for a loaded 2-core machine; a bomb would take minutes


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile") / "in put 入力"
    write_corpus(folder)
    return folder


@pytest.fixture
def unchanged(corpus_dir):
    """Asserts after the test that no input file was modified, added or removed."""
    before = snapshot(corpus_dir)
    yield corpus_dir
    assert snapshot(corpus_dir) == before, "an input file was changed"


@pytest.fixture
def run(toy_registry, monkeypatch):
    monkeypatch.setattr(pipeline, "_registry", toy_registry)

    def invoke(*args, stdin=None):
        return CliRunner().invoke(cli, [str(a) for a in args], input=stdin)

    return invoke


def _cases(folder: Path):
    for case in corpus():
        yield case, folder / case.name


def _timed(findings, case, t0):
    if time.monotonic() - t0 > SLOW_S:
        findings.add(case, f"took {time.monotonic() - t0:.1f} s")


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ----------------------------------------------------------------------------- core

def test_load_photo_path_bytes_and_stream(unchanged):
    f = Findings("load_photo")
    for case, path in _cases(unchanged):
        t0 = time.monotonic()
        outcomes = []
        for label, src in (("path", path), ("bytes", case.data), ("stream", io.BytesIO(case.data))):
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    ph = load_photo(src)
                f.photo(case, ph.rgb)
                if ph.alpha is not None and ph.alpha.shape != ph.rgb.shape[:2]:
                    f.add(case, f"alpha {ph.alpha.shape} does not match {ph.rgb.shape}")
                for w in caught:
                    if "\n" in str(w.message).strip():
                        f.add(case, f"multi-line warning {w.message}")
                outcomes.append("ok")
            except ImageError as exc:
                f.error(case, str(exc), str(path) if label == "path" else "<stdin>")
                outcomes.append("error")
            except Exception as exc:  # noqa: BLE001 - anything else is the failure under test
                f.unexpected(case, exc)
                outcomes.append("crash")
        if len(set(outcomes)) > 1:
            f.add(case, f"path/bytes/stream disagree: {outcomes}")
        _timed(f, case, t0)
    f.check()


def test_retouch_file(unchanged, toy_registry, tmp_path):
    f = Findings("retouch_file")
    out = tmp_path / "out dir ü"
    out.mkdir()
    for case, path in _cases(unchanged):
        dest = out / out_name(case)
        t0 = time.monotonic()
        try:
            with _quiet():
                retouch_file(path, dest, style="auto", registry=toy_registry, strength=0.8)
            f.output(case, dest)
        except CsrError as exc:
            f.error(case, str(exc), str(path))
            if dest.exists():
                f.add(case, "failed, but the destination exists")
        except Exception as exc:  # noqa: BLE001
            f.unexpected(case, exc)
            if dest.exists():
                f.add(case, "crashed, and the destination exists")
        _timed(f, case, t0)
    assert leftovers(out) == []
    f.check(KNOWN_RETOUCH_BUGS)


def test_load_pair(unchanged, tmp_path):
    good = tmp_path / "good.png"
    from PIL import Image

    Image.new("RGB", (16, 12), (90, 120, 150)).save(good)
    f = Findings("load_pair")
    for case, path in _cases(unchanged):
        for pair in (Pair("x", path, good), Pair("x", good, path)):
            try:
                with _quiet():
                    before, after, _ = load_pair(pair, max_side=8)
                if case.expect == "error":
                    f.add(case, "expected an error, got a pair")
                if before.shape != after.shape or before.dtype != np.float32:
                    f.add(case, f"bad pair arrays {before.shape} {after.shape}")
            except PairsError as exc:
                msg = str(exc)
                if case.expect == "ok" and "too different" not in msg:
                    f.add(case, f"expected a pair, got {msg!r}")
                if "\n" in msg:
                    f.add(case, f"multi-line error {msg!r}")
            except Exception as exc:  # noqa: BLE001
                f.unexpected(case, exc)
    f.check()


# ----------------------------------------------------------------------------- CLI (in process)

def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("csr: error:")]


def test_cli_single_file(unchanged, run, tmp_path):
    """``csr retouch FILE -o 'new dir/sub/out NAME'``: on failure no file is created (see also
    test_failed_retouch_creates_no_folder)."""
    f = Findings("csr retouch FILE")
    for i, (case, path) in enumerate(_cases(unchanged)):
        parent = tmp_path / f"new dir {i}" / "sub"
        dest = parent / out_name(case)
        with _quiet():
            res = run("retouch", path, "-o", dest, "--strength", "1.2")
        text = res.output
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            f.unexpected(case, res.exception)
        elif "Traceback" in text:
            f.add(case, "traceback in the output")
        elif res.exit_code == 0:
            f.output(case, dest)
        else:
            lines = _error_lines(text)
            if res.exit_code != 1 or len(lines) != 1:
                f.add(case, f"exit {res.exit_code} with {len(lines)} error lines: {text!r}")
            else:
                f.error(case, lines[0].removeprefix("csr: error: "), str(path))
            made = [p for p in (tmp_path / f"new dir {i}").rglob("*") if not p.is_dir()]
            if made:
                f.add(case, f"failed, but created {made}")
    assert leftovers(tmp_path) == []
    f.check(KNOWN_RETOUCH_BUGS)


def test_failed_retouch_creates_no_folder(run, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    res = run("retouch", bad, "-o", tmp_path / "new" / "out.jpg")
    assert res.exit_code == 1
    assert not (tmp_path / "new").exists()


def test_cli_stdin_to_stdout(run):
    f = Findings("csr retouch - -o -")
    for case in corpus():
        with _quiet():
            res = run("retouch", "-", "-o", "-", "--format", "png", stdin=case.data)
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            f.unexpected(case, res.exception)
        elif res.exit_code == 0:
            try:
                f.photo(case, load_photo(res.stdout_bytes).rgb)
            except ImageError as exc:
                f.add(case, f"stdout is not a complete PNG: {exc}")
        else:
            lines = _error_lines(res.stderr)
            if res.stdout_bytes:
                f.add(case, f"failed, but wrote {len(res.stdout_bytes)} bytes to stdout")
            if len(lines) != 1:
                f.add(case, f"exit {res.exit_code} with {len(lines)} error lines: {res.stderr!r}")
            else:
                f.error(case, lines[0].removeprefix("csr: error: "), "<stdin>")
    f.check(KNOWN_RETOUCH_BUGS)


def _check_batch(f: Findings, corpus_dir: Path, out: Path, code: int, stderr: str, ext: str) -> None:
    errors = _error_lines(stderr)
    if code != 1:
        f.add(corpus()[0], f"batch exit status {code}, expected 1")
    for case, path in _cases(corpus_dir):
        dest = out / (Path(case.name).stem + ext)
        mine = [e for e in errors if e.startswith(f"csr: error: {path}: ")]
        if dest.exists():
            f.output(case, dest)
            if mine:
                f.add(case, f"has an output and an error: {mine}")
        elif len(mine) != 1:
            f.add(case, f"no output and {len(mine)} error lines")
        else:
            f.error(case, mine[0].removeprefix("csr: error: "), str(path))
    if leftovers(out):
        f.add(corpus()[0], f"leftover temp files {leftovers(out)}")
    n_ok = sum(1 for p in out.iterdir()) if out.exists() else 0
    summary = f"{n_ok} retouched, 0 skipped, {len(corpus()) - n_ok} failed"
    if summary not in stderr:
        f.add(corpus()[0], f"summary {summary!r} missing")


def test_cli_whole_folder(unchanged, run, tmp_path):
    """One batch over the whole corpus: each bad file is one error line, the rest are retouched."""
    f = Findings("csr retouch FOLDER")
    out = tmp_path / "edited ✓"
    with _quiet():
        res = run("retouch", unchanged, "-o", out, "--format", "png")
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        f.unexpected(corpus()[0], res.exception)
        f.check()
    _check_batch(f, unchanged, out, res.exit_code, res.stderr, ".png")
    f.check(KNOWN_RETOUCH_BUGS)


# ----------------------------------------------------------------------------- CLI (real processes)

def _user_style(csr_home: Path, tmp_path: Path) -> str:
    """A random full user style in $CSR_HOME (real subprocesses cannot see the toy built-in)."""
    import torch

    from csr_core.model import CSRNet
    from csr_core.registry import Registry

    torch.manual_seed(7)
    Registry(tmp_path / "no-builtins", csr_home / "styles").save_style("hostile", CSRNet().state_dict(), {"cond_size": 64})
    return "hostile"


def _env() -> dict:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONIOENCODING="utf-8")


def test_real_processes(unchanged, csr_home, tmp_path):
    """``python -m csr_cli.main retouch`` over the whole corpus in one real process (one only: each pays
    torch's import, ~8 s on a loaded machine; single-file mode is covered through CliRunner above and
    by test_cli.py's real-entry-point test)."""
    style = _user_style(csr_home, tmp_path)
    out = tmp_path / "batch out"
    res = subprocess.run([sys.executable, "-m", "csr_cli.main", "retouch", str(unchanged), "-o", str(out), "--style",
                          style, "--format", "tif"], cwd=REPO, env=_env(), capture_output=True, timeout=300)
    stderr = res.stderr.decode("utf-8", "replace")
    f = Findings("python -m csr_cli.main retouch")
    if "Traceback" in stderr:
        f.add(corpus()[0], f"batch traceback: ...{stderr[-800:]}")
        f.check()
    assert not res.stdout, "a batch writes nothing to stdout"
    _check_batch(f, unchanged, out, res.returncode, stderr, ".tif")
    f.check(KNOWN_RETOUCH_BUGS)


# ----------------------------------------------------------------------------- web app

def test_web_app_service(unchanged, toy_registry):
    """The app's upload handlers (Service.load / Service.render): a result or a CsrError, which the
    UI's ``friendly`` wrapper shows as a one-line gr.Error. The wrapper itself is exercised too when
    gradio is already imported (importing it costs ~10 s on a loaded machine; test_gradio_api does)."""
    service_mod = pytest.importorskip("csr_plugins.gradio_app.service")
    svc = service_mod.Service(toy_registry, service_mod.Limits())
    load, render, own_error = svc.load, svc.render, CsrError
    if "gradio" in sys.modules:
        import gradio as gr

        from csr_plugins.gradio_app.app import friendly

        load, render, own_error = friendly(svc.load), friendly(svc.render), gr.Error
    f = Findings("web app Service.load / Service.render")
    try:
        for case, path in _cases(unchanged):
            for label, call in (("load", lambda: load(str(path))),
                                ("render", lambda: render(str(path), "auto", 1.0))):
                t0 = time.monotonic()
                try:
                    with _quiet():
                        result = call()
                    if label == "load":
                        f.photo(case, np.asarray(result.before))
                    else:
                        f.output(case, Path(result))
                except own_error as exc:
                    msg = str(getattr(exc, "message", exc))
                    if "unexpected error" in msg:
                        f.add(case, f"{label}: {msg}")
                    else:  # the app words its own size/format checks: the reason is not compared
                        f.error(case, msg, path.name, check_why=False)
                except Exception as exc:  # noqa: BLE001
                    f.unexpected(case, exc)
                _timed(f, case, t0)
        assert leftovers(svc.out_dir) == []
    finally:
        svc.close()
    f.check(KNOWN_RETOUCH_BUGS)


def _zip(path: Path, entries) -> Path:
    import stat
    import zipfile

    with zipfile.ZipFile(path, "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate entry we want
        for name, data, *link in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if link:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return path


_PNG = next(c.data for c in corpus() if c.name == "plain-png.png")
ZIPS = {
    "zip-slip": [("../../evil.png", _PNG)], "absolute": [("/tmp/evil.png", _PNG)],
    "backslashes": [("..\\..\\evil.png", _PNG)], "drive": [("C:/evil.png", _PNG)],
    "dotdot-inside": [("a/../../evil.png", _PNG)], "symlink": [("link.png", "/etc/passwd", "link")],
    "duplicate": [("x.png", _PNG), ("x.png", _PNG)], "bomb": [("big.png", bytes(101 << 20))],
    "file-then-folder": [("a.png", _PNG), ("a.png/b.png", _PNG)],
    "unicode": [("before/ü 写真.png", _PNG), ("after/ü 写真.png", _PNG)],
}


@pytest.mark.parametrize("kind", sorted(ZIPS))
def test_web_app_teaching_zip_uploads(kind, tmp_path):
    """Uploaded pair archives are staged inside the staging folder or refused with a PairsError."""
    teach = pytest.importorskip("csr_plugins.gradio_app.teach")
    from csr_plugins.gradio_app.service import Limits

    upload = _zip(tmp_path / "pairs upload.zip", ZIPS[kind])
    root = tmp_path / "stage"
    root.mkdir()
    try:
        teach.Stager(root, Limits()).add(upload)
    except PairsError as exc:
        assert "\n" not in str(exc) and kind != "unicode"
    else:
        assert kind in ("unicode",), f"{kind} was accepted"
    outside = [p for p in tmp_path.rglob("*") if p not in (upload, root) and root not in p.parents]
    assert outside == [], f"written outside the staging folder: {outside}"


# ----------------------------------------------------------------------------- targeted regressions

def test_tiff_tiles_and_samples_are_bounded_before_decoding(monkeypatch):
    """A TIFF's tiles and samples per pixel count towards the pixel limit (a tiny image can declare
    gigantic tiles: tifffile allocates each tile whole)."""
    import tifffile

    import hostile

    def decoded(*a, **k):
        raise AssertionError("decoder ran")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", decoded)
    tiles = hostile.tiff_bytes({256: 8, 257: 8, 258: [8, 8, 8], 259: 1, 262: 2, 277: 3, 284: 1,
                                322: 2048, 323: 2048, 324: -1, 325: 64}, bytes(64),
                               types={322: 4, 323: 4, 324: 4, 325: 4})
    with pytest.raises(ImageError, match="too large: 2048x2048"):
        load_photo(tiles, max_pixels=1_000_000)
    samples = next(c for c in corpus() if c.name == "bomb-samples.tif").data
    with pytest.raises(ImageError, match="too large: .*65535 samples per pixel"):
        load_photo(samples)


# ----------------------------------------------------------------------------- registry through the CLI

def _small_photo(path: Path) -> Path:
    from PIL import Image

    Image.fromarray(np.full((12, 16, 3), 100, np.uint8)).save(path)
    return path


def _one_error(res, code: int, pattern: str) -> str:
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = _error_lines(res.output)
    assert res.exit_code == code and len(lines) == 1 and "Traceback" not in res.output, res.output
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def test_cli_refuses_tampered_weights(run, toy_registry, tmp_path):
    from csr_core.model import CSRNet

    toy_registry.save_style("mine", CSRNet().state_dict(), {"cond_size": 64})
    for weights in (toy_registry.get("mine").path, toy_registry.builtin_path / "auto.safetensors"):
        data = bytearray(weights.read_bytes())
        data[-3] ^= 0x01  # one bit: still a valid safetensors file, but not the one the card vouches for
        weights.write_bytes(bytes(data))
    src = _small_photo(tmp_path / "in.png")
    for style in ("mine", "auto"):
        out = tmp_path / f"out-{style}.png"
        _one_error(run("retouch", src, "-o", out, "--style", style), 2, r"fails its sha256 check.*modified or corrupted")
        assert not out.exists()
    res = run("styles", "list")  # listing still works: the check is at load time
    assert res.exit_code == 0 and "mine" in res.output


def test_cli_half_written_manifest(run, toy_registry, tmp_path):
    manifest = toy_registry.builtin_path / "manifest.json"
    text = manifest.read_text()
    src = _small_photo(tmp_path / "in.png")
    for cut in (0, 1, len(text) // 2, len(text) - 1):
        manifest.write_text(text[:cut])
        _one_error(run("styles", "list"), 1, r"manifest.json: built-in style manifest is damaged")
        _one_error(run("retouch", src, "-o", tmp_path / "o.png"), 2, r"manifest is damaged")
        assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("name", ["../../x", "..", "a/b", "/tmp/x", "CON", "nul", "Com1", "x" * 65, ".hidden",
                                  "é", "a b", "x\nCON"])
def test_cli_style_names_with_path_tricks_refused(run, toy_registry, tmp_path, name):
    import torch

    from csr_core.model import CSRNet

    torch.save(CSRNet().state_dict(), tmp_path / "ok.pth")
    before = snapshot(tmp_path)
    _one_error(run("styles", "import", tmp_path / "ok.pth", "--name", name), 2, r"invalid style name")
    assert snapshot(tmp_path) == before and not toy_registry.user_path.exists()
    for args, code in ((("styles", "show", name), 2), (("styles", "remove", name, "--yes"), 2),  # unknown: usage
                       (("retouch", _small_photo(tmp_path / "in.png"), "--style", name), 2)):
        res = run(*args)
        assert res.exit_code == code and "Traceback" not in res.output and not isinstance(res.exception, Exception)
    assert toy_registry.names() == ["auto"]


class _Payload:
    """Unpickling this calls open(marker, 'w'): the marker file proves the pickle ran code."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("container", ["torch-zip", "raw-pickle", "state_dict-wrapper"])
def test_cli_import_never_runs_pickle_payloads(run, toy_registry, tmp_path, container):
    import pickle

    import torch

    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    payload = {"conv1.weight": _Payload(marker)}
    if container == "torch-zip":
        torch.save(payload, evil)
    elif container == "raw-pickle":
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save({"state_dict": payload, "epoch": 3}, evil)
    assert not marker.exists()
    _one_error(run("styles", "import", evil, "--name", "evil"), 1, r"evil.pth: not a plain PyTorch state_dict")
    assert not marker.exists(), "the pickle payload was executed"
    assert "evil" not in toy_registry.names() and not toy_registry.user_path.exists()


def test_messages_carry_no_terminal_escapes_from_file_data():
    """Bytes from a hostile file (here an ICC colour-space field) never reach the terminal raw."""
    import imagecodecs
    from PIL import Image

    import hostile

    icc = bytearray(imagecodecs.cms_profile("srgb"))
    icc[16:20] = b"\x1b[2J"
    data = hostile.encode(Image.new("RGB", (4, 4)), "PNG", icc_profile=bytes(icc))
    with pytest.warns(UserWarning) as caught:
        load_photo(data, name="esc.png")
    texts = [str(w.message) for w in caught]
    assert any("ICC profile" in t for t in texts) and not any("\x1b" in t for t in texts), texts
