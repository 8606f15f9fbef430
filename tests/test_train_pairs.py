"""Full training on a user's pairs: held-out split, resumable checkpoints, the CLI's --pairs option."""
import json

import pytest
from click.testing import CliRunner

from csr_core.pairs import discover_pairs, load_pairs
from csr_core.train import PAIR_SIDE, TrainConfig, holdout_split, pairs_data, train_pairs
from pairs_util import write_pairs

CFG = dict(batch=4, pixels=512, eval_every=10, checkpoint_every=10, lr=3e-3, cond_size=64)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _read(folder):
    """The pairs in ``folder`` that csr train --pairs reads."""
    return list(load_pairs(discover_pairs(folder)[0], PAIR_SIDE))


def test_holdout_split_is_deterministic_and_disjoint():
    tr, va = holdout_split(10)
    assert len(va) == 2 and sorted(tr + va) == list(range(10)) and holdout_split(10) == (tr, va)


def test_learns_and_resumes_from_checkpoint(tmp_path):
    pairs = write_pairs(tmp_path / "p", 6)
    ckpt = tmp_path / "run.ckpt"
    _, first = train_pairs(pairs, TrainConfig(steps=20, **CFG), ckpt)
    assert ckpt.exists() and first["step"] == 20 and len(first["val_pairs"]) == 1
    seen = []
    model, hist = train_pairs(pairs, TrainConfig(steps=60, **CFG), ckpt, on_progress=lambda i: seen.append(i["step"]))
    assert seen[0] == 21 and hist["step"] == 60  # resumed, not restarted
    assert hist["best"] > hist["evals"][0][1] + 2  # it learns the look on the held-out pair
    assert set(hist["train_pairs"]).isdisjoint(hist["val_pairs"])
    assert any(p.requires_grad is False for p in model.parameters())


def _held_bytes(obj, skip=()) -> int:
    """Bytes of the arrays and tensors ``obj`` holds (through lists, dicts and objects; attributes ``skip`` left
    out), each block of memory counted once."""
    import numpy as np
    import torch

    blocks, seen = {}, {}

    def walk(o):
        if id(o) in seen:
            return
        seen[id(o)] = o  # kept: the id of an object freed meanwhile could be another's
        if isinstance(o, torch.Tensor):
            blocks[o.untyped_storage().data_ptr()] = o.untyped_storage().nbytes()
        elif isinstance(o, np.ndarray):
            while isinstance(o.base, np.ndarray):
                o = o.base
            blocks[o.__array_interface__["data"][0]] = o.nbytes
        elif isinstance(o, (list, tuple)):
            for v in o:
                walk(v)
        elif isinstance(o, dict):
            for item in o.items():
                walk(item)
        elif hasattr(o, "__dict__"):
            for k, v in vars(o).items():
                if k not in skip:
                    walk(v)

    walk(obj)
    return sum(blocks.values())


def test_pairs_are_held_as_8_bit_and_their_condition_views_made_when_drawn():
    """A large set fits in memory: each pair is held as its 8-bit pixels (3 bytes a pixel, before and after),
    not as float condition views; the views made for training are kept only while they fit the cache."""
    import numpy as np

    from csr_core.train import RealPairs

    rng = np.random.default_rng(0)
    h, w, n = 48, 64, 12
    images = [tuple((rng.random((h, w, 3)) * 255).astype(np.uint8) for _ in range(2)) for _ in range(n)]
    view = 48 * 64 * 3 * 4  # one float32 view at --cond-size 64
    data = RealPairs(images, cond_size=64, pixels=256, views=8, cache_bytes=3 * view)
    for _ in range(20):
        data.draw(rng, 4)
    assert _held_bytes(data, skip={"cache"}) <= n * 2 * (h * w * 3)
    assert 0 < _held_bytes(list(data.cache.kept.values())) == data.cache.bytes <= 3 * view


def test_training_on_pairs_is_the_same_whether_views_are_made_up_front_or_when_drawn(tmp_path, monkeypatch):
    """Views made (again) when drawn, from the 8-bit pairs, train exactly the weights that views all made up
    front and kept give: the same seed, data and options give the same style."""
    import functools

    import torch

    import csr_core.train as train

    pairs = _read(write_pairs(tmp_path / "p", 6))
    cfg = dict(CFG, pixels=256)
    made, real = {}, train.RealPairs
    for how, kwargs in {"up front": dict(encode=lambda vs: vs), "cached": {}, "uncached": dict(cache_bytes=0)}.items():
        monkeypatch.setattr(train, "RealPairs", functools.partial(real, **kwargs))
        made[how] = train_pairs(pairs, TrainConfig(steps=12, **cfg))
    (ref, ref_hist), others = made.pop("up front"), made.values()
    for model, hist in others:
        assert hist["evals"] == ref_hist["evals"]
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in ref.state_dict().items())


def test_cli_train_pairs_saves_scored_style(tmp_path, toy_registry, monkeypatch):
    import csr_cli.train

    monkeypatch.setattr(csr_cli.train, "registry", lambda: toy_registry)
    pairs = write_pairs(tmp_path / "p", 6, layout="files")
    args = ["--pairs", str(pairs), "--name", "big", "--steps", "30", "--batch", "4", "--cond-size", "64",
            "--checkpoint", str(tmp_path / "c.ckpt")]
    out = CliRunner().invoke(csr_cli.train.command, args)
    assert out.exit_code == 0, out.output
    assert "held-out PSNR" in out.output and not (tmp_path / "c.ckpt").exists()
    card = json.loads((toy_registry.user_path / "big.json").read_text())
    s = card["scores"]["validation"]
    assert card["kind"] == "full" and s["images"] == 1 and {"baseline_psnr", "autocontrast", "delta_e"} <= set(s)
    assert "big" in toy_registry.names()


def test_cli_train_says_where_checkpoints_go_resumes_aloud_and_warns(tmp_path, toy_registry, monkeypatch):
    import csr_cli.train

    monkeypatch.setattr(csr_cli.train, "registry", lambda: toy_registry)
    pairs = write_pairs(tmp_path / "p", 6, layout="files")
    ckpt = tmp_path / "c.ckpt"
    args = ["--pairs", str(pairs), "--name", "big", "--batch", "4", "--cond-size", "64", "--checkpoint", str(ckpt)]
    cfg = dict(CFG, checkpoint_every=1, lr=1e-3, extra={"data": pairs_data(pairs, _read(pairs))})
    train_pairs(pairs, TrainConfig(steps=2, **cfg), ckpt)  # an interrupted run of the same command
    out = CliRunner().invoke(csr_cli.train.command, [*args, "--steps", "3"])
    assert out.exit_code == 0, out.output
    assert f"resuming from {ckpt}: 2 of 3 steps already done" in out.output
    assert "step 3/3" in out.output  # progress lines off a terminal
    # three steps of a whole network from scratch: far worse than leaving the photos alone, and said so
    card = json.loads((toy_registry.user_path / "big.json").read_text())
    s = card["scores"]["validation"]
    assert s["psnr"] < s["baseline_psnr"]
    assert (f"scores {s['psnr']:.2f} dB on the held-out pairs, worse than doing nothing "
            f"({s['baseline_psnr']:.2f} dB)") in out.output and "csr finetune" in out.output
    out = CliRunner().invoke(csr_cli.train.command, [*args[:3], "big2", *args[4:], "--steps", "1"])
    assert f"checkpoint: {ckpt} (every 250 steps" in out.output


def test_cli_train_needs_exactly_one_source(tmp_path, toy_registry, monkeypatch):
    import csr_cli.train

    monkeypatch.setattr(csr_cli.train, "registry", lambda: toy_registry)
    out = CliRunner().invoke(csr_cli.train.command, ["--name", "x"])
    assert out.exit_code == 2 and "exactly one of --photos" in out.output


@pytest.mark.parametrize("photos", [0, 1])
def test_cli_train_photos_needs_two_photos(tmp_path, toy_registry, monkeypatch, photos):
    import csr_cli.train
    from PIL import Image

    monkeypatch.setattr(csr_cli.train, "registry", lambda: toy_registry)
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a photo")
    for i in range(photos):
        Image.new("RGB", (16, 16), "grey").save(folder / f"{i}.jpg")
    out = CliRunner().invoke(csr_cli.train.command, ["--photos", str(folder), "--name", "x", "--checkpoint",
                                                     str(tmp_path / "c.ckpt")])
    assert out.exit_code == 1 and out.output.splitlines()[-1] == (
        f"csr: error: {folder}: training needs at least 2 photos (one of every 25 is held out to score the style), "
        f"found {photos}")
    assert "x" not in toy_registry.names()


def test_cli_train_replaces_a_style_with_overwrite_and_refuses_a_negative_seed(tmp_path, toy_registry, monkeypatch):
    import csr_cli.train
    from csr_core.model import CSRNet

    monkeypatch.setattr(csr_cli.train, "registry", lambda: toy_registry)
    toy_registry.save_style("big", CSRNet().state_dict(), {"description": "an earlier try"})
    args = ["--pairs", str(write_pairs(tmp_path / "p", 6, layout="files")), "--name", "big", "--steps", "2",
            "--batch", "4", "--cond-size", "64", "--checkpoint", str(tmp_path / "c.ckpt")]
    refused = CliRunner().invoke(csr_cli.train.command, args)
    assert refused.exit_code == 1 and "replace it with --overwrite" in refused.output
    out = CliRunner().invoke(csr_cli.train.command, [*args, "--overwrite"])
    assert out.exit_code == 0, out.output
    assert toy_registry.get("big").description.startswith("trained by csr train on 6 pairs")
    out = CliRunner().invoke(csr_cli.train.command, [*args, "--overwrite", "--seed", "-1"])
    assert out.exit_code == 2 and "-1 is not in the range x>=0" in out.output
    assert "x<=None" not in CliRunner().invoke(csr_cli.train.command, ["--help"]).output


def test_cli_train_photos_skips_unreadable_files_and_bounds_memory(tmp_path, toy_registry, monkeypatch):
    """A folder of photos as a photographer keeps it: an unreadable file is named and skipped (not the end
    of the run), hidden folders are not read, and a folder too large for memory is sampled evenly."""
    import csr_cli.train
    import csr_core.train
    from PIL import Image

    monkeypatch.setattr(csr_cli.train, "registry", lambda: toy_registry)
    monkeypatch.setattr(csr_core.train, "TRAIN_PHOTO_BYTES", 64 * 64 * 12 * 4, raising=False)  # 4 photos at 64
    folder = tmp_path / "good"
    (folder / ".thumbnails").mkdir(parents=True)
    for i in range(6):
        Image.new("RGB", (48, 32), (40 * i, 90, 200 - 30 * i)).save(folder / f"{i}.jpg")
    (folder / "3.jpg").write_bytes(b"\xff\xd8 damaged")
    (folder / ".thumbnails" / "x.jpg").write_bytes(b"not a photo")
    out = CliRunner().invoke(csr_cli.train.command, ["--photos", str(folder), "--name", "mine", "--steps", "1",
                                                     "--batch", "2", "--cond-size", "64", "--checkpoint",
                                                     str(tmp_path / "c.ckpt")])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    notes = ["csr: warning: skipped 3.jpg: not a supported image (unrecognised format or corrupt data)",
             "csr: warning: used 4 of the 6 photos (an even sample by name)", f"4 photos in {folder}"]
    start = lines.index(notes[0])
    assert lines[start:start + 3] == notes and "x.jpg" not in out.output
    assert start < min(i for i, ln in enumerate(lines) if ln.startswith("training"))
    card = json.loads((toy_registry.user_path / "mine.json").read_text())
    assert card["training"]["data"].startswith("3 photos") and card["scores"]["synthetic_holdout"]["images"] == 1
    assert str(tmp_path) not in json.dumps(card)  # the folder by its name, as for pairs: no path of the user's
    from csr_core.finished import read_photos

    photos, _, _ = read_photos(folder, lambda rgb: rgb, 4)  # 0, 2, 3, 5 spread over the names; 1 stands in for 3
    assert [round(float(p[0, 0, 0]) * 255 / 40) for p in photos] == [0, 1, 2, 5]


def test_cli_train_resumes_only_the_run_it_interrupted(tmp_path, toy_registry, monkeypatch):
    """A checkpoint left by a run on other data or with other options is refused, named and kept (resuming it
    would blend two runs into one style); the same command resumes it."""
    import csr_cli.train

    monkeypatch.setattr(csr_cli.train, "registry", lambda: toy_registry)
    pairs = write_pairs(tmp_path / "p", 6, layout="files")
    other = write_pairs(tmp_path / "q", 6, seed=1, layout="files")
    ckpt = tmp_path / "c.ckpt"
    cfg = dict(CFG, checkpoint_every=1, lr=1e-3, extra={"data": pairs_data(pairs, _read(pairs))})
    train_pairs(pairs, TrainConfig(steps=2, **cfg), ckpt)  # an interrupted run
    args = ["--name", "big", "--batch", "4", "--steps", "3", "--checkpoint", str(ckpt)]
    for source, size, differs in ((other, 64, pairs_data(pairs, _read(pairs))), (pairs, 128, "--cond-size 64")):
        out = CliRunner().invoke(csr_cli.train.command, ["--pairs", str(source), *args, "--cond-size", str(size)])
        assert out.exit_code == 1 and out.output.splitlines()[-1] == (
            f"csr: error: {ckpt}: holds a run with other options or data ({differs}); run that command again to "
            "resume it, or delete the checkpoint to start over"), out.output
    assert ckpt.exists() and "big" not in toy_registry.names()
    out = CliRunner().invoke(csr_cli.train.command, ["--pairs", str(pairs), *args, "--cond-size", "64"])
    assert out.exit_code == 0 and f"resuming from {ckpt}: 2 of 3 steps already done" in out.output


def test_ctrl_c_keeps_the_steps_done_and_the_same_command_resumes(tmp_path, toy_registry, monkeypatch):
    """Interrupted before its first periodic checkpoint, training still keeps what it did (csr train's help:
    'Interrupted? Run the same command again: it resumes from the checkpoint'), and says so."""
    import csr_cli.train

    class Interrupted:  # a progress display whose user presses Ctrl-C at step 3
        def __init__(self, *a, **k):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __call__(self, info):
            if info["step"] == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(csr_cli.train, "registry", lambda: toy_registry)
    ckpt = tmp_path / "c.ckpt"
    args = ["--pairs", str(write_pairs(tmp_path / "p", 6, layout="files")), "--name", "big", "--batch", "4",
            "--steps", "5", "--cond-size", "64", "--checkpoint", str(ckpt)]
    with monkeypatch.context() as m:
        m.setattr(csr_cli.train, "StepProgress", Interrupted)
        out = CliRunner().invoke(csr_cli.train.command, args)
    assert out.exit_code == 130 and out.output.splitlines()[-2:] == [
        f"csr: note: the steps done are kept in {ckpt}: run the same command again to resume",
        "csr: error: interrupted"]
    out = CliRunner().invoke(csr_cli.train.command, args)
    assert out.exit_code == 0 and f"resuming from {ckpt}: 3 of 5 steps already done" in out.output, out.output


def test_cli_train_pairs_leaves_out_a_pair_it_cannot_read(tmp_path, toy_registry, monkeypatch):
    """csr train --pairs: a damaged pair is named before the training and left out (the card counts the rest);
    with fewer than 2 pairs left, one clear line."""
    import csr_cli.train

    monkeypatch.setattr(csr_cli.train, "registry", lambda: toy_registry)
    pairs = write_pairs(tmp_path / "p", 6, layout="files")
    (pairs / "p04_target.png").write_bytes(b"\x89PNG damaged")
    args = ["--pairs", str(pairs), "--name", "big", "--steps", "2", "--batch", "4", "--cond-size", "64",
            "--checkpoint", str(tmp_path / "c.ckpt")]
    out = CliRunner().invoke(csr_cli.train.command, args)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    skipped = next(i for i, ln in enumerate(lines) if ln.startswith("csr: skipped: pair p04: "))
    assert "p04_target.png" in lines[skipped] and lines[skipped + 1] == f"5 pairs in {pairs}"
    assert skipped < min(i for i, ln in enumerate(lines) if ln.startswith("training"))
    card = json.loads((toy_registry.user_path / "big.json").read_text())
    assert card["training"]["data"]["pairs"] == 5 and "p04" not in card["training"]["data"]["train"]
    for i in (0, 1, 2, 3):
        (pairs / f"p{i:02d}_input.png").write_bytes(b"")
    out = CliRunner().invoke(csr_cli.train.command, [*args, "--overwrite"])
    assert out.exit_code == 1 and out.output.splitlines()[-1] == \
        "csr: error: full training needs at least 2 pairs, found 1"


def test_cli_train_never_resumes_a_run_on_another_set_of_pairs(tmp_path, toy_registry, monkeypatch):
    """A run that left out a damaged pair, then the pair mended: one pair more would move pairs between the
    training and the held-out ones, so the checkpoint is refused with one line instead of resumed."""
    import csr_cli.train

    monkeypatch.setattr(csr_cli.train, "registry", lambda: toy_registry)
    pairs = write_pairs(tmp_path / "p", 6, layout="files")
    good = (pairs / "p04_target.png").read_bytes()
    (pairs / "p04_target.png").write_bytes(b"\x89PNG damaged")
    ckpt = tmp_path / "c.ckpt"
    cfg = dict(CFG, checkpoint_every=1, extra={"data": pairs_data(pairs, _read(pairs))})
    train_pairs(_read(pairs), TrainConfig(steps=2, **cfg), ckpt)  # an interrupted run on the 5 readable pairs
    (pairs / "p04_target.png").write_bytes(good)
    args = ["--pairs", str(pairs), "--name", "big", "--steps", "3", "--batch", "4", "--cond-size", "64",
            "--lr", "0.003", "--checkpoint", str(ckpt)]
    out = CliRunner().invoke(csr_cli.train.command, args)
    assert out.exit_code == 1 and "holds a run with other options or data (--pairs " in out.output
    assert out.output.splitlines()[-1].endswith("delete the checkpoint to start over") and "6 pairs" in out.output
    (pairs / "p04_target.png").write_bytes(b"\x89PNG damaged")  # the same pairs again: it resumes
    out = CliRunner().invoke(csr_cli.train.command, args)
    assert out.exit_code == 0 and "2 of 3 steps already done" in out.output, out.output
