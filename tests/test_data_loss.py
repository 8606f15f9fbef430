"""Issue 10, items 1-7 and 15: nothing a user has is ever lost, and no output is silently wrong.

Each test builds the situation the issue describes and checks that every original is byte-identical
afterwards (``snapshot``), that the batch did only what it should, and that refusals are one line.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import csr_core.pipeline as pipeline
from csr_cli.main import cli
from hostile import snapshot

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _photo(path: Path, seed: int = 0, size=(24, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("csr: error:")]


# ----------------------------------------------------------------------------- item 1

@pytest.mark.parametrize("flags", [(), ("--overwrite",), ("--skip-existing",)])
def test_output_never_replaces_another_input_of_the_batch(run, tmp_path, flags):
    """t/a.jpg -> t/a.png while t/a.png is a different photo (and input): a.png stays."""
    t = tmp_path / "t"
    _photo(t / "a.jpg", 1), _photo(t / "a.png", 2)
    before = snapshot(t)
    res = run("retouch", t, "-o", t, "--format", "png", *flags)
    assert snapshot(t) == before, res.output
    assert res.exit_code == (0 if "--skip-existing" in flags else 1), res.output
    assert "Traceback" not in res.output


def test_folder_into_another_input_folder(run, tmp_path):
    """csr retouch A/ B/ -o B/ --overwrite: B's photos are inputs and are never replaced."""
    _photo(tmp_path / "A" / "x.jpg", 1), _photo(tmp_path / "B" / "x.jpg", 2), _photo(tmp_path / "B" / "y.jpg", 3)
    before = snapshot(tmp_path)
    res = run("retouch", tmp_path / "A", tmp_path / "B", "-o", tmp_path / "B", "--overwrite")
    assert snapshot(tmp_path) == before
    assert res.exit_code == 1 and any("an input of this batch" in e for e in _errors(res.output)), res.output


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_output_that_is_an_input_through_a_link(run, tmp_path, link):
    """Identity, not names: the output name is a link to an input (another photo of the batch)."""
    _photo(tmp_path / "in" / "a.jpg", 1)
    other = _photo(tmp_path / "keep" / "b.jpg", 2)
    out = tmp_path / "out"
    out.mkdir()
    (os.link if link == "hard" else os.symlink)(other, out / "a.jpg")
    before = snapshot(tmp_path / "keep")
    res = run("retouch", tmp_path / "in", other, "-o", out, "--overwrite")
    assert snapshot(tmp_path / "keep") == before, res.output
    assert res.exit_code == 1 and "an input of this batch" in res.output


def test_default_names_beside_inputs_never_replace_an_input(run, tmp_path):
    """A folder holding x.jpg and a different photo x_retouched.jpg, with --overwrite."""
    _photo(tmp_path / "x.jpg", 1), _photo(tmp_path / "x_retouched.jpg", 2)
    before = snapshot(tmp_path)
    res = run("retouch", tmp_path, "--overwrite")
    after = snapshot(tmp_path)
    assert {k: after[k] for k in before} == before
    assert res.exit_code == 1 and "x_retouched_retouched.jpg" not in after


# ----------------------------------------------------------------------------- item 2

def test_stdin_follows_the_existing_output_rules(run, tmp_path):
    src = _photo(tmp_path / "other.png", 1).read_bytes()
    precious = tmp_path / "precious.png"
    precious.write_bytes(b"keep me")
    res = run("retouch", "-", "-o", precious, stdin=src)
    assert res.exit_code == 1 and "already exists" in res.output and precious.read_bytes() == b"keep me"
    res = run("retouch", "-", "-o", precious, "--skip-existing", stdin=src)
    assert res.exit_code == 0 and precious.read_bytes() == b"keep me"
    res = run("retouch", "-", "-o", precious, "--overwrite", stdin=src)
    assert res.exit_code == 0 and precious.read_bytes() != b"keep me"


def _csr(*args, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "csr_cli.main", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, timeout=300, **kw)


def test_stdin_redirected_from_the_output_file_is_refused(tmp_path, csr_home):
    """``csr retouch - -o x.png --overwrite < x.png``: stdin is the very file to be replaced."""
    x = _photo(tmp_path / "x.png", 1)
    before = x.read_bytes()
    with open(x, "rb") as stdin:
        res = _csr("retouch", "-", "-o", x, "--overwrite", "--style", "auto", stdin=stdin)
    assert x.read_bytes() == before
    assert res.returncode == 1 and b"refusing to overwrite the input" in res.stderr, res.stderr
    with open(x, "ab") as stdout:  # and the input never receives the output through stdout
        res = subprocess.run([sys.executable, "-m", "csr_cli.main", "retouch", str(x), "-o", "-"], cwd=REPO,
                             stdout=stdout, stderr=subprocess.PIPE, timeout=300)
    assert x.read_bytes() == before and res.returncode == 1 and b"stdout is the input" in res.stderr


# ----------------------------------------------------------------------------- item 3

def test_short_writes_to_stdout_fail(tmp_path):
    """A file-size limit (RLIMIT_FSIZE) makes write() short, then fail, as a full disk does."""
    import resource

    src = _photo(tmp_path / "in.png", 1, size=(300, 200))

    def limited():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    out = tmp_path / "out.png"
    with open(out, "wb") as stdout:
        res = subprocess.run([sys.executable, "-m", "csr_cli.main", "retouch", str(src), "-o", "-", "--format", "png"],
                             cwd=REPO, stdout=stdout, stderr=subprocess.PIPE, preexec_fn=limited, timeout=300)
    stderr = res.stderr.decode()
    assert res.returncode == 1, stderr
    assert len(_errors(stderr)) == 1 and "<stdout>: cannot write" in stderr and "Traceback" not in stderr
    if Path("/dev/full").exists():
        with open("/dev/full", "wb") as full:
            res = subprocess.run([sys.executable, "-m", "csr_cli.main", "retouch", str(src), "-o", "-"], cwd=REPO,
                                 stdout=full, stderr=subprocess.PIPE, timeout=300)
        assert res.returncode == 1 and b"No space left" in res.stderr, res.stderr


# ----------------------------------------------------------------------------- item 4

def test_rerun_beside_inputs_does_only_the_missing_photos(run, tmp_path):
    shoot = tmp_path / "shoot"
    _photo(shoot / "a.jpg", 1), _photo(shoot / "sub" / "b.png", 2)
    assert run("retouch", shoot).exit_code == 0
    first = snapshot(shoot)
    _photo(shoot / "c.jpg", 3)
    res = run("retouch", shoot, "--skip-existing")
    assert res.exit_code == 0, res.output
    # photos, not files: the earlier results are no inputs, and the summary says so
    assert "1 retouched, 2 skipped, 0 failed; 2 files csr wrote left out\n" in res.output, res.output
    names = sorted(snapshot(shoot))
    assert names == ["a.jpg", "a_retouched.jpg", "c.jpg", "c_retouched.jpg", "sub/b.png", "sub/b_retouched.png"]
    assert all(snapshot(shoot)[k] == v for k, v in first.items())


@pytest.mark.parametrize("flags", [(), ("--overwrite",), ("--skip-existing",)])
def test_rerun_in_place_takes_only_the_originals(run, tmp_path, flags):
    """csr retouch shoot/ twice: the second run's inputs are the originals only (the results carry csr's
    XMP record); it replaces the results with --overwrite, keeps them with --skip-existing, and counts
    photos."""
    shoot = tmp_path / "shoot"
    for i, name in enumerate(["a.jpg", "b.jpg", "c.png", "sub/d.jpg"]):
        _photo(shoot / name, i)
    assert run("retouch", shoot).exit_code == 0
    first = snapshot(shoot)
    results = sorted(k for k in first if "_retouched" in k)
    assert results == ["a_retouched.jpg", "b_retouched.jpg", "c_retouched.png", "sub/d_retouched.jpg"]
    for name in results:  # an earlier result, stamped, so that a replacement shows
        os.utime(shoot / name, ns=(0, 0))

    res = run("retouch", shoot, *flags)
    after = snapshot(shoot)
    assert sorted(after) == sorted(first), res.output  # no X_retouched_retouched, nothing lost
    assert {k: after[k] for k in first if k not in results} == {k: first[k] for k in first if k not in results}
    replaced = [k for k in results if (shoot / k).stat().st_mtime_ns != 0]
    if flags == ("--overwrite",):
        assert res.exit_code == 0 and "4 retouched, 0 skipped, 0 failed; 4 files csr wrote left out" in res.output
        assert replaced == results and after == first  # the same photos and options give the same bytes
    elif flags == ("--skip-existing",):
        assert res.exit_code == 0 and "0 retouched, 4 skipped, 0 failed" in res.output, res.output
        assert replaced == []
    else:
        errors = _errors(res.output)
        assert res.exit_code == 1 and "0 retouched, 0 skipped, 4 failed" in res.output, res.output
        assert len(errors) == 4 and all("already exists (use --overwrite or --skip-existing)" in e for e in errors)
        assert replaced == []
    res = run("retouch", shoot, "-o", tmp_path / "edited")  # results beside the photos are no inputs elsewhere
    assert res.exit_code == 0 and "4 retouched, 0 skipped, 0 failed" in res.output, res.output
    assert sorted(snapshot(tmp_path / "edited")) == ["a.jpg", "b.jpg", "c.png", "sub/d.jpg"]


def test_rerun_into_a_folder_inside_the_input_folder(run, tmp_path):
    shoot = tmp_path / "shoot"
    _photo(shoot / "a.jpg", 1), _photo(shoot / "b.jpg", 2)
    assert run("retouch", shoot, "-o", shoot / "edited").exit_code == 0
    for flags in (("--skip-existing",), ()):
        res = run("retouch", shoot, "-o", shoot / "edited", *flags)
        assert not (shoot / "edited" / "edited").exists(), res.output
    assert sorted(snapshot(shoot)) == ["a.jpg", "b.jpg", "edited/a.jpg", "edited/b.jpg"]
    res = run("retouch", f"{shoot}/**/*.jpg", "-o", shoot / "edited", "--skip-existing")  # globs too
    assert res.exit_code == 0 and sorted(snapshot(shoot)) == ["a.jpg", "b.jpg", "edited/a.jpg", "edited/b.jpg"]


def test_rerun_into_another_folder_inside_the_input_folder(run, tmp_path):
    """Two styles tried into two sub-folders of the shoot: the second run (and a pattern) takes the originals
    only, not the first run's results (they carry csr's record); a result named on its own is retouched."""
    shoot = tmp_path / "shoot"
    _photo(shoot / "a.jpg", 1), _photo(shoot / "sub" / "b.png", 2)
    assert run("retouch", shoot, "-o", shoot / "edited").exit_code == 0
    res = run("retouch", shoot, "-o", shoot / "edited2")
    assert res.exit_code == 0 and res.output.endswith("2 retouched, 0 skipped, 0 failed; 2 files csr wrote left out\n")
    res = run("retouch", shoot, "-o", shoot / "edited", "--skip-existing")
    assert res.exit_code == 0 and res.output.endswith("0 retouched, 2 skipped, 0 failed; 2 files csr wrote left out\n")
    res = run("retouch", shoot / "a.jpg", shoot / "edited" / "sub" / "b.png", "-o", tmp_path / "one")  # named ones
    assert res.exit_code == 0 and res.output.endswith("2 retouched, 0 skipped, 0 failed\n"), res.output
    assert sorted(snapshot(shoot)) == ["a.jpg", "edited/a.jpg", "edited/sub/b.png", "edited2/a.jpg",
                                       "edited2/sub/b.png", "sub/b.png"]
    res = run("retouch", f"{shoot}/**/*.jpg", "-o", tmp_path / "flat")
    assert res.exit_code == 0 and sorted(snapshot(tmp_path / "flat")) == ["a.jpg"], res.output
    res = run("retouch", shoot / "edited", "-o", tmp_path / "again")
    assert res.exit_code == 1 and _errors(res.output)[0] == (
        f"csr: error: {shoot / 'edited'}: folder has only photos csr wrote (2); to retouch them again, "
        "name them one by one"), res.output
    res = run("retouch", shoot / "edited" / "a.jpg", shoot / "edited" / "sub" / "b.png", "-o", tmp_path / "again")
    assert res.exit_code == 0 and sorted(snapshot(tmp_path / "again")) == ["a.jpg", "b.png"], res.output


def test_single_photo_never_replaces_a_name_retouched_photo_csr_did_not_write(run, tmp_path):
    """a.jpg beside the user's own a_retouched.jpg: refused, as in a folder run, even with --overwrite; an
    earlier result of csr is replaced, and an output named with -o is the user's choice."""
    a = _photo(tmp_path / "a.jpg", 1)
    mine = _photo(tmp_path / "a_retouched.jpg", 2)
    before = snapshot(tmp_path)
    for flags in ((), ("--overwrite",)):
        res = run("retouch", a, *flags)
        assert res.exit_code == 1 and _errors(res.output) == [
            f"csr: error: {a}: refusing to replace {mine}, a photo csr did not write (choose another output "
            "with -o)"], res.output
    assert run("retouch", a, "--skip-existing").exit_code == 0 and snapshot(tmp_path) == before
    assert run("retouch", a, "-o", mine, "--overwrite").exit_code == 0 and snapshot(tmp_path) != before
    assert run("retouch", a, "--overwrite").exit_code == 0  # now csr's own result


# ----------------------------------------------------------------------------- item 5

def test_an_over_long_name_fails_alone(run, tmp_path):
    """One output name over 255 bytes fails that photo only; a name that fits is written even when its
    temporary name (.NAME.XXXXXXXX.part) would not fit."""
    folder = tmp_path / "in"
    too_long = _photo(folder / ("x" * 250 + ".png"), 1)  # its _retouched name has 260 bytes
    just_fits = _photo(folder / ("y" * 240 + ".png"), 2)  # y..._retouched.png: 254 bytes
    ok = _photo(folder / "ok.png", 3)
    out = tmp_path / "out"
    res = run("retouch", folder, "-o", out)
    assert res.exit_code == 0, res.output  # -o keeps the names: all three fit
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (ok, just_fits, too_long))
    res = run("retouch", folder)  # beside the inputs: x..._retouched.png is too long
    errors = _errors(res.output)
    assert res.exit_code == 1 and len(errors) == 1 and "x" * 250 in errors[0], res.output
    assert (folder / "ok_retouched.png").exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_temporary_name_fits_when_the_target_does(tmp_path):
    from csr_core.fsutil import write_bytes_atomic

    for name in ("é" * 120 + ".png", "z" * 255):
        target = tmp_path / name
        write_bytes_atomic(target, b"data")
        assert target.read_bytes() == b"data"


# ----------------------------------------------------------------------------- item 6

def test_truncated_jpegs_are_errors(run, tmp_path):
    """Half a JPEG with an end-of-image marker appended, and 600 bytes declaring 14000x14000: libjpeg
    pads both with grey; they must be refused, and no output written."""
    import hostile

    big = Image.fromarray(hostile.pixels(256, 384, seed=5))
    cases = {"half-eoi.jpg": hostile.jpeg_truncated_with_eoi(hostile.encode(big, "JPEG", quality=92)),
             "half-progressive.jpg": hostile.jpeg_truncated_with_eoi(hostile.encode(big, "JPEG", progressive=True)),
             "grey-bomb.jpg": hostile.jpeg_with_sof(14_000, 14_000)}
    for name, data in cases.items():
        src = tmp_path / name
        src.write_bytes(data)
        res = run("retouch", src, "-o", tmp_path / f"out-{name}")
        assert res.exit_code == 1 and len(_errors(res.output)) == 1, (name, res.output)
        assert "truncated" in res.output or "damaged" in res.output, res.output
        assert not (tmp_path / f"out-{name}").exists()


# ----------------------------------------------------------------------------- item 7

def _user_style_with(registry, name: str, mutate) -> None:
    """A full user style whose weights ``mutate`` damages (the card's sha256 matches the damage:
    the file is what its card says, but its values are nonsense)."""
    import hashlib
    import json

    import torch
    from safetensors.torch import save

    from csr_core.model import CSRNet

    torch.manual_seed(3)
    state = {k: v.contiguous() for k, v in CSRNet().state_dict().items()}
    mutate(state)
    blob = save(state)
    registry.user_path.mkdir(parents=True, exist_ok=True)
    (registry.user_path / f"{name}.safetensors").write_bytes(blob)
    card = dict(file=f"{name}.safetensors", sha256=hashlib.sha256(blob).hexdigest(), kind="full", cond_size=64)
    (registry.user_path / f"{name}.json").write_text(json.dumps(card))


DAMAGE = {
    "nan": lambda s: s["conv1.weight"].view(-1).__setitem__(0, float("nan")),
    "huge": lambda s: s["conv2.weight"].mul_(1e30),
    "inf": lambda s: s["cond_scale1.bias"].fill_(float("inf")),
    "integer": lambda s: s.__setitem__("conv1.weight", s["conv1.weight"].round().to(__import__("torch").int32)),
    "shape": lambda s: s.__setitem__("conv3.weight", s["conv3.weight"][:2].contiguous()),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_style_weights_are_refused_with_one_line(run, toy_registry, tmp_path, damage):
    _user_style_with(toy_registry, f"bad_{damage}", DAMAGE[damage])
    src = _photo(tmp_path / "in.png", 1)
    out = tmp_path / "out.png"
    res = run("retouch", src, "-o", out, "--style", f"bad_{damage}")
    errors = _errors(res.output)
    assert res.exit_code == 2 and len(errors) == 1 and not out.exists(), res.output
    assert "unexpected error" not in errors[0] and f"bad_{damage}" in errors[0], errors[0]
    expected = {"shape": "has shape", "integer": "holds I32 tensors; weights must be F16, F32, F64"}
    assert expected.get(damage, "damaged weights") in errors[0], errors[0]


def test_import_refuses_damaged_checkpoints(run, toy_registry, tmp_path):
    import torch

    from csr_core.model import CSRNet

    state = CSRNet().state_dict()
    state["conv1.weight"].view(-1)[0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    res = run("styles", "import", tmp_path / "nan.pth", "--name", "nan")
    assert res.exit_code == 1 and "damaged weights" in res.output and "nan" not in toy_registry.names()


def test_cards_sharing_one_weights_file(toy_registry):
    """Removing (or replacing) one style never deletes a weights file another card still uses."""
    import json

    from csr_core.model import CSRNet

    first = toy_registry.save_style("one", CSRNet().state_dict(), {"cond_size": 64})
    card = json.loads((toy_registry.user_path / "one.json").read_text())
    (toy_registry.user_path / "two.json").write_text(json.dumps(card))  # a copied card
    toy_registry.remove("one")
    assert first.path.exists() and toy_registry.net("two") is not None
    toy_registry.save_style("two", CSRNet().state_dict(), {"cond_size": 64}, overwrite=True)  # its own file now
    assert not first.path.exists()  # the last user is gone: the file goes too


# ----------------------------------------------------------------------------- item 15

def test_control_characters_in_names_are_escaped(run, tmp_path):
    """A newline in a file name cannot forge a second line (``csr: note: ...``); ESC never reaches
    the terminal raw."""
    bad = tmp_path / "evil\ncsr: note: all fine\x1b[2J.jpg"
    bad.write_bytes(b"not a photo")
    _photo(tmp_path / "good.png", 1)
    res = run("retouch", tmp_path, "-o", tmp_path / "out")
    lines = res.output.splitlines()
    assert not any(line.startswith("csr: note:") for line in lines), lines
    assert "\x1b" not in res.output and res.exit_code == 1
    assert [line for line in lines if "evil" in line] == [
        next(line for line in lines if line.startswith("csr: error:"))], lines
    assert "evil\\ncsr: note: all fine\\x1b[2J.jpg" in res.output


def test_closed_standard_streams(tmp_path):
    src = _photo(tmp_path / "in.png", 1)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    exe = f"{shlex_quote(sys.executable)} -m csr_cli.main retouch"
    for cmd, says in ((f"{exe} - -o {tmp_path}/o.png <&-", "stdin is closed"),
                      (f"{exe} {src} -o - >&-", "stdout is closed")):
        res = subprocess.run(["bash", "-c", cmd], cwd=REPO, env=env, capture_output=True, timeout=300)
        stderr = res.stderr.decode()
        assert res.returncode == 2 and says in stderr and "unexpected" not in stderr, stderr


def shlex_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def test_unwritable_csr_home_is_found_before_training(tmp_path, monkeypatch):
    """CSR_HOME under a file: the fine-tune stops at once, before any training step."""
    import csr_core.finetune as finetune

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("CSR_HOME", str(blocker / "home"))
    monkeypatch.setattr(pipeline, "_registry", None)
    pairs = tmp_path / "pairs"
    for i in range(5):
        _photo(pairs / "before" / f"{i}.png", i), _photo(pairs / "after" / f"{i}.png", i + 10)
    monkeypatch.setattr(finetune, "finetune_style", lambda *a, **k: pytest.fail("training started"))
    res = CliRunner().invoke(cli, ["finetune", "--pairs", str(pairs), "--name", "mine"])
    assert res.exit_code == 1 and "cannot save styles there" in res.output, res.output
    shutil.rmtree(pairs)
