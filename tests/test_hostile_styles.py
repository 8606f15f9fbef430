"""Issue 35: what a user style folder, a style file or a second csr process may not do.

Hostile cases run in a child process under RLIMIT_AS = 2 GB and a CPU-time cap (``hostile.run_capped``).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import hostile

REPO = Path(__file__).resolve().parents[1]
CSR = [sys.executable, "-m", "csr_cli.main"]
ENTRY = [sys.executable, str(REPO / "tests" / "capped_entry.py")]


def _csr(*args: str, home: Path, wall_s: int = 120) -> hostile.Capped:
    return hostile.run_capped([*CSR, *args], cwd=REPO, env=dict(os.environ, CSR_HOME=str(home)), wall_s=wall_s)


def _one_line(capped: hostile.Capped) -> str:
    lines = capped.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in capped.stderr and "unexpected" not in capped.stderr, capped.stderr
    return lines[0]


# ----------------------------------------------------------------------------- item 11: a damaged card

def test_a_deeply_nested_card_is_skipped_with_a_warning_by_every_command(tmp_path):
    """200 kB of '[[[[...' as a user card: every command still works, warning once about that card, and
    ``csr styles remove`` deletes it (before: RecursionError in every command, the app would not start)."""
    home = tmp_path / "home"
    styles = home / "styles"
    styles.mkdir(parents=True)
    (styles / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (styles / "deep.0123456789ab.safetensors").write_bytes(b"saved with it")
    (styles / "deeper.json").write_text(json.dumps({"file": "x.safetensors", "sha256": "0" * 64, "cond_size": 64,
                                                    "scores": {"a": json.loads("[" * 20 + "]" * 20)}}))

    listing = _csr("styles", "list", home=home)
    assert listing.returncode == 0 and "auto" in listing.stdout and "deep" not in listing.stdout, listing
    warned = listing.stderr.strip().splitlines()
    assert len(warned) == 2 and all(w.startswith("csr: warning: ") for w in warned), listing.stderr
    assert "deep.json: skipped, invalid style card (nested more than 16 levels deep)" in warned[0], warned
    assert warned[0].endswith("; csr styles remove deep") and "deeper.json" in warned[1], warned

    out = tmp_path / "out.jpg"
    retouched = _csr("retouch", str(REPO / "samples" / "coffee_dark.jpg"), "-o", str(out), home=home)
    assert retouched.returncode == 0 and out.stat().st_size > 0, retouched.stderr

    capped = hostile.run_capped([*ENTRY, "app"], cwd=REPO, env=dict(os.environ, CSR_HOME=str(home)))
    built = [json.loads(line) for line in capped.stdout.splitlines() if '"name"' in line]
    assert capped.returncode == 0 and built and built[0]["outcome"] == "ok", capped.stderr[-2000:]
    assert "auto" in built[0]["message"].split(",")

    removed = _csr("styles", "remove", "deep", "-y", home=home)
    assert removed.returncode == 0 and "removed style 'deep'" in removed.stdout, removed.stderr
    assert sorted(p.name for p in styles.iterdir()) == [".lock", "deeper.json"]  # .lock: the folder's lock file


def test_removing_a_damaged_card_keeps_weights_another_card_uses(toy_registry):
    import numpy as np

    reg = toy_registry
    state = {k: np.array(v) for k, v in reg.net("auto").state.items()}
    style = reg.save_style("good", state, {"description": "kept"})
    shared = style.path.name
    (reg.user_path / "bad.json").write_text("{")
    os.link(style.path, reg.user_path / f"bad.{shared.split('.')[1]}.safetensors")
    with pytest.warns(UserWarning, match="bad.json: skipped, invalid style card"):
        assert "bad" in reg.damaged()
    reg.remove("bad")
    assert not (reg.user_path / "bad.json").exists() and style.path.exists()
    assert [s.name for s in reg.styles() if not s.builtin] == ["good"]


# ----------------------------------------------------------------------------- item 12: two savers at once

def _save_after(barrier, user: str, builtin: str, name: str, seed: int, results) -> None:
    """Child: wait for the other saver, then save style ``name`` (weights differing per child)."""
    import numpy as np

    from csr_core.errors import StyleExistsError
    from csr_core.registry import Registry

    reg = Registry(Path(builtin), Path(user))
    state = {k: np.array(v) for k, v in reg.net("auto").state.items()}
    state["conv1.bias"] = state["conv1.bias"] + np.float32(seed * 1e-3)
    barrier.wait()
    try:
        reg.save_style(name, state, {"description": f"saver {seed}"})
        results.put((seed, "saved"))
    except StyleExistsError as exc:
        results.put((seed, str(exc)))


def test_two_processes_saving_one_new_name_one_is_refused(toy_registry):
    """Both savers start together, 8 rounds (before: both reported success in 18 of 20 rounds, one style
    silently replaced, its weights orphaned): one is saved, the other refused, no file left over."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    user, builtin = toy_registry.user_path, toy_registry.builtin_path
    for round_ in range(8):
        name = f"race{round_}"
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_save_after, args=(barrier, str(user), str(builtin), name, seed, results))
                 for seed in (1, 2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
            assert p.exitcode == 0
        outcomes = dict(results.get(timeout=5) for _ in procs)
        saved = [seed for seed, what in outcomes.items() if what == "saved"]
        assert len(saved) == 1, f"round {round_}: {outcomes}"
        [refused] = [what for what in outcomes.values() if what != "saved"]
        assert refused == f"user style '{name}' was just saved by another csr process; choose another name"
        card = json.loads((user / f"{name}.json").read_text())
        assert card["description"] == f"saver {saved[0]}"
    cards = {json.loads(p.read_text())["file"] for p in user.glob("*.json")}
    assert sorted(p.name for p in user.glob("*.safetensors")) == sorted(cards)
    assert not hostile.leftovers(user)
    assert len(toy_registry.styles()) == 9


# ----------------------------------------------------------------------------- item 15: odd tensor types

def _user_style(home: Path, name: str, blob: bytes, cond_size: int = 64) -> Path:
    import hashlib

    styles = home / "styles"
    styles.mkdir(parents=True, exist_ok=True)
    (styles / f"{name}.safetensors").write_bytes(blob)
    card = {"file": f"{name}.safetensors", "sha256": hashlib.sha256(blob).hexdigest(), "kind": "full",
            "cond_size": cond_size}
    (styles / f"{name}.json").write_text(json.dumps(card))
    return styles


@pytest.mark.parametrize("dtype", ["bfloat16", "float8_e4m3fn"])
def test_weights_of_an_unreadable_type_are_a_style_error(tmp_path, dtype):
    """BF16 / F8 weights in a user style: one line and exit 2, as for any bad style (before: "unexpected
    error (KeyError: 'BF16')", exit 1)."""
    import torch
    from safetensors.torch import save

    from csr_core.model import CSRNet

    state = {k: v.to(getattr(torch, dtype)) for k, v in CSRNet().state_dict().items()}
    _user_style(tmp_path, "odd", save(state))
    capped = _csr("retouch", str(REPO / "samples" / "coffee_dark.jpg"), "-o", str(tmp_path / "o.jpg"), "-s", "odd",
                  home=tmp_path)
    label = {"bfloat16": "BF16", "float8_e4m3fn": "F8_E4M3"}[dtype]
    assert capped.returncode == 2, capped
    assert _one_line(capped) == (f"csr: error: style 'odd': odd.safetensors holds {label} tensors; "
                                 "weights must be F16, F32, F64")


# ----------------------------------------------------------------------------- item 9: declared sizes

def test_a_checkpoint_view_declaring_a_billion_values_is_refused_before_copying(tmp_path):
    """A 1.8 kB .pth whose tensor is a stride-0 view of 2^30 values (before: killed at 4.1 GB; the child's
    2 GB address-space cap is the memory bound: its peak RSS would include the forking test process)."""
    import torch

    pth = tmp_path / "view.pth"
    torch.save({"conv1.weight": torch.zeros(1).expand(1 << 30)}, pth)
    assert pth.stat().st_size < 4096
    capped = hostile.run_capped([*ENTRY, "import", str(pth)], cwd=REPO, env=dict(os.environ, CSR_HOME=str(tmp_path)))
    assert not capped.hit_cap and capped.returncode == 0, capped
    [r] = [json.loads(line) for line in capped.stdout.splitlines() if '"name"' in line]
    assert r["outcome"] == "error" and r["s"] < 20, r
    assert r["message"].endswith("view.pth: checkpoint declares 1,073,741,824 values; a CSRNet has 36,489"), r


# ----------------------------------------------------------------------------- item 8: what a style may ask

def test_a_style_cannot_ask_for_a_costly_condition_copy(tmp_path, toy_registry):
    """cond_size 4096 (before: accepted; a 600x400 photo then cost 13 s and 2.25 GB): the card is skipped
    with a warning, and no command saves such a style. The top of the range costs ~1 s and 0.2 GB."""
    import numpy as np
    from safetensors.numpy import save

    from csr_core import COND_SIZES
    from csr_core.errors import StyleError

    state = {k: np.array(v) for k, v in toy_registry.net("auto").state.items()}
    _user_style(tmp_path, "huge", save(state), cond_size=4096)
    photo = tmp_path / "p.png"
    from PIL import Image

    Image.fromarray(hostile.pixels(400, 600)).save(photo)
    capped = _csr("retouch", str(photo), "-o", str(tmp_path / "o.png"), "-s", "huge", home=tmp_path)
    assert capped.returncode == 2 and capped.seconds < 20, capped
    (error,) = capped.stderr.strip().splitlines()  # one line: no warning repeats the error
    assert error == (f"csr: error: user style 'huge' cannot be used: invalid style card ('cond_size' must be an "
                     f"integer from 32 to {COND_SIZES[1]}); csr styles remove huge"), error

    with pytest.raises(StyleError, match="'cond_size' must be an integer from 32 to 1024"):
        toy_registry.save_style("huge", state, {"cond_size": 4096})
    assert not list(toy_registry.user_path.glob("*"))
    imported = _csr("styles", "import", str(tmp_path / "x.pth"), "--name", "x", "--cond-size", "4096", home=tmp_path)
    assert imported.returncode == 2 and "4096 is not in the range 32<=x<=1024" in imported.stderr, imported

    _user_style(tmp_path, "top", save(state), cond_size=COND_SIZES[1])
    capped = _csr("retouch", str(photo), "-o", str(tmp_path / "o.png"), "-s", "top", home=tmp_path)
    assert capped.returncode == 0 and not capped.hit_cap and (tmp_path / "o.png").exists(), capped


# ----------------------------------------------------------------------------- item 18: a full disk

@pytest.fixture
def full_styles_disk(monkeypatch, toy_registry):
    """Every write into the user style folder fails as on a full disk (ENOSPC); elsewhere writes work."""
    import errno

    real = os.fsync
    folder = str(toy_registry.user_path)

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").startswith(folder):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return toy_registry


def test_import_onto_a_full_disk_is_one_line_and_leaves_nothing(run, full_styles_disk, tmp_path):
    import torch

    from csr_core.model import CSRNet

    torch.save(CSRNet().state_dict(), tmp_path / "net.pth")
    res = run("styles", "import", tmp_path / "net.pth", "--name", "mine")
    assert res.exit_code == 1, res.output
    assert res.output.strip() == (f"csr: error: cannot save style 'mine' in {full_styles_disk.user_path} "
                                  "(No space left on device)")
    assert [p.name for p in full_styles_disk.user_path.iterdir()] == [".lock"] and full_styles_disk.names() == ["auto"]


def test_a_finetune_that_cannot_be_saved_keeps_the_trained_network(full_styles_disk, tmp_path, monkeypatch):
    """The trained result is written to NAME.finetuned.pth and the error says how to add it."""
    import torch

    from csr_core.finetune import _save
    from csr_core.model import CSRNet

    monkeypatch.chdir(tmp_path)
    reg = full_styles_disk
    model = CSRNet()
    with pytest.raises(Exception) as caught:
        _save(reg, "mine", model, {"cond_size": 64}, reg.get("auto"), False)
    kept = tmp_path / "mine.finetuned.pth"
    assert str(caught.value) == (f"cannot save style 'mine' in {reg.user_path} (No space left on device); the "
                                 f"trained network is kept in {kept}: once there is room, add it with: "
                                 f"csr styles import {kept} --name mine --cond-size 64")
    assert [p.name for p in reg.user_path.iterdir()] == [".lock"]
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # room again
    style = reg.import_checkpoint(kept, "mine", cond_size=64)
    assert all(torch.equal(torch.from_numpy(reg.net(style).state[k]), v) for k, v in model.state_dict().items())
