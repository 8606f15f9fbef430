"""Condition-only fine-tuning: base frozen, honest validation, clean interrupts, experts, mixing."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors.numpy import load_file

from conftest import REPO, write_builtin
from csr_core.errors import PairsError
from csr_core.finetune import FinetuneConfig, finetune_style
from csr_core.model import from_state
from csr_core.registry import Registry
from pairs_util import write_pairs

FAST = dict(steps=40, pseudo_steps=40, batch=4, pixels=512, eval_every=10, views=2, lr=3e-3, val_pixels=2048)


pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Words of the lab, not of a photographer, that a fine-tuned style's card does not use (the card's numbers
#: keep every setting; docs/training.md names the parts and the training terms).
LAB_WORDS = ("GFM", "L1", "Adam", "EMA", "modulation", "learning rate", "absolute error", "condition", "pseudo",
             "fold", "views", "weights")


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A toy base 'auto' and a style 'mine' fine-tuned from it on 6 pairs (with its progress log)."""
    root = tmp_path_factory.mktemp("ft")
    write_builtin(root / "builtin")
    reg = Registry(root / "builtin", root / "user")
    log = []
    style = finetune_style(write_pairs(root / "pairs", 6), "mine", registry=reg, on_progress=log.append,
                           config=FinetuneConfig(**FAST))
    return reg, style, log


def test_style_is_listed_and_only_condition_part_changed(tuned):
    reg, style, _ = tuned
    fresh = Registry(reg.builtin_path, reg.user_path)
    assert fresh.names() == ["auto", "mine"]
    base, mine = fresh.net("auto").state, fresh.net("mine").state
    for name, p in base.items():
        same = np.array_equal(p, mine[name])
        assert same == (not name.startswith(("cond_scale", "cond_shift"))), name  # only the GFM moved
    stored = load_file(str(style.path))  # only what fine-tuning changed: the GFM layers (~35 kB)
    assert stored and all(k.startswith(("cond_scale", "cond_shift")) for k in stored)
    assert style.path.stat().st_size < 40_000
    assert style.card["base"] == {"name": "auto", "sha256": fresh.get("auto").sha256}
    assert style.card["cond_size"] == fresh.get("auto").cond_size


def test_honest_kfold_validation_beats_base(tuned):
    _, style, _ = tuned
    v, s = style.card["validation"], style.card["scores"]["validation"]
    assert v["method"] == "5-fold"
    names = sorted(n for fold in v["folds"] for n in fold)
    assert names == [f"p{i:02d}" for i in range(6)] == sorted(v["per_pair"])  # each pair validated once
    assert 0 < v["chosen_steps"] <= FAST["steps"] and not v["fixed_steps"]
    assert s["images"] == 6 and s["psnr"] > s["base_style"]["psnr"] + 3
    assert {"baseline_psnr", "baseline_delta_e", "autocontrast", "ssim", "delta_e"} <= set(s)
    assert style.card["training"]["data"]["pairs"] == 6


def test_progress_is_honest(tuned):
    """Steps done only grow, the total is an upper bound that only shrinks, the end is step == steps."""
    _, style, log = tuned
    v = style.card["validation"]
    assert all({"step", "steps", "phase"} <= set(i) for i in log)
    assert all("loss" in i for i in log[:-1] if "task" not in i)  # work between runs (scoring) has no loss
    steps_done = [i["step"] for i in log]
    totals = [i["steps"] for i in log]
    assert steps_done == sorted(steps_done) and totals == sorted(totals, reverse=True)
    assert all(i["step"] <= i["steps"] for i in log)
    assert log[-1]["step"] == log[-1]["steps"] == sum(v["fold_stopped_at"]) + v["chosen_steps"]
    assert log[0]["steps"] == 6 * FAST["steps"]  # 5 folds + the final run, each at most --steps
    assert not any("val_psnr" in i for i in log)  # no fold's own swinging score, and no 'val 0.00 dB' at the end
    assert any("held_out" in i for i in log if i["phase"].startswith("fold"))  # the pooled one instead
    assert log[-1]["phase"].startswith("final")


def test_progress_shows_the_held_out_score_pooled_over_the_folds_done(toy_registry, tmp_path, monkeypatch):
    """A fold's own score swings with its one or two pairs: progress shows instead the mean score of every pair
    held out by the folds done so far, at the step count validation would choose from them, and from the final run
    on the style's validation score, the mean over all pairs (unchanged: each pair's whole-photo score)."""
    import csr_core.finetune as ft

    runs, real_run = [], ft._Tuner.run

    def run(self, train, val, *args):
        model, hist = real_run(self, train, val, *args)
        runs.append((list(val), hist))
        return model, hist

    monkeypatch.setattr(ft._Tuner, "run", run)
    log = []
    style = finetune_style(write_pairs(tmp_path / "p", 6), "mine", registry=toy_registry, on_progress=log.append,
                           config=FinetuneConfig(**FAST))
    folds = runs[:5]
    assert sorted(len(val) for val, _ in folds) == [1, 1, 1, 1, 2] and not runs[5][0]  # 5 folds, the final run
    for f in range(1, 6):
        shown = [i.get("held_out") for i in log if i["phase"] == f"fold {f}/5" and "task" not in i]
        assert shown and all(h == shown[0] for h in shown), f  # steady through a fold
        assert not any("val_psnr" in i for i in log if i["phase"] == f"fold {f}/5")
        if f == 1:
            assert shown[0] is None  # no pair scored yet
            continue
        done = [h["curve"] for _, h in folds[:f - 1]]  # every pair of the folds done, pooled, not fold by fold
        common = min(map(len, done))
        pooled = [np.mean([s for c in done for s in c[j][1]]) for j in range(common)]
        pairs = sum(len(v) for v, _ in folds[:f - 1])
        assert shown[0] == {"psnr": pytest.approx(max(pooled), abs=1e-9), "pairs": pairs, "of": 6}, f
    scoring = [i for i in log if i.get("task") == "scoring the held-out pairs"]  # whole photos, after the folds
    assert {i["phase"] for i in scoring} == {"5 folds done"}
    assert [i["task_done"] for i in scoring] == [0, 0.16, 0.33, 0.5, 0.66, 0.83, 1]  # 6 pairs, one by one
    assert all(i["held_out"]["pairs"] == 6 for i in scoring)
    s, per = style.card["scores"]["validation"], style.card["validation"]["per_pair"]
    assert s["psnr"] == pytest.approx(np.mean([r["style"]["psnr"] for r in per.values()]))  # each pair counts once
    final = [i["held_out"] for i in log if i["phase"].startswith("final")]
    assert final and all(h == {"psnr": s["psnr"], "pairs": 6, "of": 6} for h in final)


def test_too_few_pairs_is_clear(toy_registry, tmp_path):
    with pytest.raises(PairsError, match="at least 5 .* found 4"):
        finetune_style(write_pairs(tmp_path / "p", 4), "x", registry=toy_registry)


def test_interrupt_saves_nothing(toy_registry, tmp_path):
    def stop(info):
        if info["step"] >= 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune_style(write_pairs(tmp_path / "p", 5), "x", registry=toy_registry, on_progress=stop,
                       config=FinetuneConfig(**FAST))
    assert toy_registry.names() == ["auto"]
    assert not toy_registry.user_path.exists() or not any(toy_registry.user_path.iterdir())


def test_held_out_split_for_larger_sets_and_from_condition_style(tuned, tmp_path):
    reg, _, _ = tuned
    cfg = FinetuneConfig(**dict(FAST, kfold_below=5))
    style = finetune_style(write_pairs(tmp_path / "p", 6, seed=1), "mine2", "mine", registry=reg, config=cfg)
    assert style.card["validation"]["method"] == "held-out"
    assert len(style.card["validation"]["val_pairs"]) == 1
    assert style.card["base"] == {"name": "auto", "sha256": reg.get("auto").sha256}  # the full base, not 'mine'
    assert style.card["training"]["initialised_from"] == "mine"
    reg.look("mine2:0.5,mine:0.5")  # same base: they mix
    # "base style" in the scores is the style training started from (--from), not the full network below it
    from csr_core.image_io import load_photo
    from csr_core.inference import retouch_array
    from csr_core.metrics import psnr
    (val,) = style.card["validation"]["val_pairs"]
    before, after = (load_photo(tmp_path / "p" / d / f"{val}.png").rgb for d in ("before", "after"))
    got = style.card["scores"]["validation"]["base_style"]["psnr"]
    assert got == pytest.approx(psnr(retouch_array(before, reg.look("mine"), exact=True), after), abs=1e-3)
    assert got != pytest.approx(psnr(retouch_array(before, reg.look("auto"), exact=True), after), abs=1e-3)


def test_cli_expert_flag_reads_that_expert(toy_registry, tmp_path, monkeypatch):
    import csr_cli.finetune
    import csr_core.finetune

    monkeypatch.setattr(csr_cli.finetune, "registry", lambda: toy_registry)
    monkeypatch.setattr(csr_core.finetune, "FinetuneConfig", lambda **kw: FinetuneConfig(**dict(FAST, **kw)))
    root = write_pairs(tmp_path / "fivek", 5, layout="fivek")
    out = CliRunner().invoke(csr_cli.finetune.command, ["--pairs", str(root), "--name", "B"])
    assert out.exit_code == 1 and "several FiveK expert folders" in out.output
    assert "--expert [A|B|C|D|E] " in CliRunner().invoke(csr_cli.finetune.command, ["--help"]).output
    out = CliRunner().invoke(csr_cli.finetune.command, ["--pairs", str(root), "--expert", "x", "--name", "X"])
    assert out.exit_code == 2 and "'x' is not one of 'A', 'B', 'C', 'D', 'E'" in out.output, out.output  # as FiveK
    out = CliRunner().invoke(csr_cli.finetune.command,
                             ["--pairs", str(root), "--expert", "b", "--name", "B", "--steps", "20"])
    assert out.exit_code == 0, out.output
    card = json.loads((toy_registry.user_path / "B.json").read_text())
    assert card["training"]["data"]["expert"] == "B" and card["training"]["data"]["names"][0] == "a0001"
    assert "saved style 'B'" in out.output and "5-fold validation on 5 pairs" in out.output
    # the style learned expertB's look (expertC holds inverted images, far from anything learned)
    assert card["scores"]["validation"]["psnr"] > card["scores"]["validation"]["base_style"]["psnr"]
    assert any(ln.startswith("on pairs it did not learn from, the new style comes ") for ln in out.output.splitlines())


def test_a_style_tuned_from_a_research_only_style_keeps_its_terms(toy_registry, tmp_path):
    """--from C (FiveK, research use only): the new style's weights start from C's, so its card and the
    listing say research use only, not merely the licence of the user's pairs."""
    from csr_core.registry import licence_label

    terms = "research only: trained on MIT-Adobe FiveK data, whose licence permits research use"
    toy_registry.save_style("expert", from_state(toy_registry.net("auto").state).state_dict(), {"licence": terms},
                            base=toy_registry.get("auto"))
    cfg = FinetuneConfig(**dict(FAST, steps=5))
    own = finetune_style(write_pairs(tmp_path / "p", 5), "own", registry=toy_registry, config=cfg)
    assert licence_label(own.card) == "as your training data"
    mine = finetune_style(write_pairs(tmp_path / "p", 5), "mine", "expert", registry=toy_registry, config=cfg)
    assert licence_label(mine.card) == "research use only" and terms in mine.card["licence"]
    assert "your training pairs" in mine.card["licence"]


def test_missing_expert_message_gives_working_command(toy_registry):
    from csr_core.errors import StyleError

    with pytest.raises(StyleError) as err:
        toy_registry.get("C")
    assert "csr finetune --pairs /path/to/fivek --expert C --name C" in str(err.value)


@pytest.mark.skipif(not (REPO / "weights" / "C.safetensors").exists(), reason="weights/C.safetensors not built")
def test_real_c_mixing_endpoints_equal_pure_styles(rng):
    from csr_core.inference import retouch_array

    reg = Registry()
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    for pure, mix in (("C", "C:1,auto:0"), ("auto", "C:0,auto:1")):
        assert np.array_equal(retouch_array(img, reg.look(mix)), retouch_array(img, reg.look(pure)))
    half = retouch_array(img, reg.look("C:0.5,auto:0.5"))
    assert not np.array_equal(half, retouch_array(img, reg.look("C")))
    assert reg.get("C").base_sha256 == reg.get("auto").base_sha256 == reg.get("auto-v1").sha256


def test_interrupted_save_leaves_no_card_or_orphan(toy_registry, monkeypatch):
    import csr_core.registry
    from csr_core.finetune import _save
    from csr_core.model import CSRNet

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(csr_core.registry, "atomic_write", interrupted)  # dies at the card, after the weights
    with pytest.raises(KeyboardInterrupt):
        _save(toy_registry, "x", CSRNet(), {}, toy_registry.get("auto"), False)
    assert toy_registry.names() == ["auto"] and not list(toy_registry.user_path.glob("x*"))


def _finished_folder(root, n: int, seed: int = 3):
    """``n`` finished photos in the pairs' look (look() of fresh smooth images), as JPEG and PNG."""
    from PIL import Image

    from pairs_util import look, smooth_image

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    for i in range(n):
        img = Image.fromarray(np.round(look(smooth_image(rng)) * 255).astype(np.uint8))
        img.save(root / f"f{i:02d}.{'jpg' if i % 2 else 'png'}", **({"quality": 95} if i % 2 else {}))
    return root


def test_finished_photos_teach_from_three_pairs(toy_registry, tmp_path):
    """3 pairs + finished photos: k-fold validation on the real pairs beside the same folds without the
    finished photos; the card counts both folders, names no path; the user's folders are not touched."""
    pairs, finished = write_pairs(tmp_path / "p", 3), _finished_folder(tmp_path / "f", 12)
    before = {p: p.stat().st_mtime_ns for p in [*pairs.rglob("*"), *finished.rglob("*")]}
    log = []
    style = finetune_style(pairs, "mine", registry=toy_registry, finished=finished, on_progress=log.append,
                           config=FinetuneConfig(**FAST))
    card = style.card
    assert card["training"]["data"]["pairs"] == 3 and card["training"]["data"]["finished"] == 12
    assert str(tmp_path) not in json.dumps(card)
    s, v = card["scores"]["validation"], card["validation"]
    assert v["method"] == "3-fold" and s["images"] == 3 and set(v["pairs_only"]) >= {"chosen_steps"}
    assert {"psnr", "delta_e"} <= set(s["pairs_only"]) and s["psnr"] > s["base_style"]["psnr"]
    method = card["training"]["recipe"]["method"]
    assert "made-up 'before' photos" in method and "0.71 to 2 times as strong" in method
    assert not any(lab in method for lab in LAB_WORDS)
    assert v["chosen_steps"] == FAST["pseudo_steps"] and v["fixed_steps"]  # with finished photos: a fixed length
    assert any("pairs only" in i["phase"] for i in log) and log[-1]["step"] == log[-1]["steps"]
    assert {p: p.stat().st_mtime_ns for p in [*pairs.rglob("*"), *finished.rglob("*")]} == before


def test_turning_finished_photos_into_examples_reports_progress_as_it_goes(toy_registry, tmp_path, monkeypatch):
    """Before each run with finished photos, they are turned into its examples (13-26 s for 221 photos on 2 cores):
    progress is reported while the 'before' photos are made and while they are read for training, not only
    before and after, with the steps done and the bound unchanged."""
    import csr_core.finetune as ft

    log, during = [], []  # the reports made while pseudo_pairs and then the dataset are at work, per build
    real_pairs, real_dataset = ft.pseudo_pairs, ft._Tuner.dataset

    def pairs(*args, **kwargs):
        start = len(log)
        out = real_pairs(*args, **kwargs)
        during.append([log[start:]])
        return out

    def dataset(self, *args, **kwargs):
        start = len(log)
        out = real_dataset(self, *args, **kwargs)
        if during and len(during[-1]) == 1:  # the examples of a run with finished photos (not the pairs' own)
            during[-1].append(log[start:])
        return out

    monkeypatch.setattr(ft, "pseudo_pairs", pairs)
    monkeypatch.setattr(ft._Tuner, "dataset", dataset)
    style = finetune_style(write_pairs(tmp_path / "p", 3), "mine", registry=toy_registry, on_progress=log.append,
                           finished=_finished_folder(tmp_path / "f", 12), config=FinetuneConfig(**FAST))
    assert style.card["validation"]["chosen_steps"] == FAST["pseudo_steps"]  # so the final run has examples too
    assert len(during) == 4  # 3 folds and the final run
    for build, phase in zip(during, ["fold 1/3", "fold 2/3", "fold 3/3", "final (all pairs)"]):
        making, reading = build
        assert len(making) >= 4 and len(reading) >= 2, phase  # in the middle of each half, not only at its ends
        reports = [i for i in log if i["phase"] == phase and i.get("task")]
        assert {i["task"] for i in reports} == {"turning finished photos into examples"}
        done = [i["task_done"] for i in reports]
        assert done[0] == 0 and done[-1] == 1 and done == sorted(done) and len(set(done)) == len(done)
        assert all(0 < i["task_done"] < 1 / 3 for i in making[1:]) and all(1 / 3 < i["task_done"] <= 1 for i in reading)
        assert len({(i["step"], i["steps"]) for i in reports}) == 1 and "loss" not in reports[0]
        training = next(i for i in log if i["phase"] == phase and "task" not in i)
        assert training["step"] > reports[0]["step"] and training["steps"] == reports[0]["steps"]


def test_finished_photos_with_a_held_out_split_train_a_fixed_length(toy_registry, tmp_path):
    """Above ``kfold_below`` pairs: the held-out pairs validate; the pseudo-pair run has the same fixed
    length as in k-fold, beside the pairs alone with early stopping."""
    cfg = FinetuneConfig(**dict(FAST, kfold_below=5, pseudo_steps=60))
    style = finetune_style(write_pairs(tmp_path / "p", 6, seed=2), "mine", registry=toy_registry,
                           finished=_finished_folder(tmp_path / "f", 6), config=cfg)
    v, s = style.card["validation"], style.card["scores"]["validation"]
    assert v["method"] == "held-out" and len(v["val_pairs"]) == 1
    assert v["chosen_steps"] == 60 and v["curve"][-1][0] == 60
    assert s["psnr"] > s["base_style"]["psnr"] and "pairs_only" in s


def test_finished_fold_maps_exclude_held_out_pairs(toy_registry, tmp_path, monkeypatch):
    """A validation fold's pseudo-pairs are made only with the other folds' colour maps."""
    import csr_core.finetune as ft

    seen, fitted = [], {}  # the 'before' photo of every map each pseudo-pair run is given, in order
    real_fit, real_pairs = ft.fit_inverse_map, ft.pseudo_pairs

    def fit(b, a):
        coef = real_fit(b, a)
        fitted[id(coef)] = b.tobytes()
        return coef

    def pairs(finished, maps, **kw):
        seen.extend(fitted[id(m)] for m in maps)
        return real_pairs(finished, maps, **kw)

    monkeypatch.setattr(ft, "fit_inverse_map", fit)
    monkeypatch.setattr(ft, "pseudo_pairs", pairs)
    finetune_style(write_pairs(tmp_path / "p", 4), "mine", registry=toy_registry,
                   finished=_finished_folder(tmp_path / "f", 4), config=FinetuneConfig(**dict(FAST, folds=4)))
    from csr_core.pairs import discover_pairs, load_pair
    from csr_core.metrics import to_uint8
    befores = [to_uint8(load_pair(p, 512)[0]).tobytes() for p in discover_pairs(tmp_path / "p")[0]]
    per_fold = [seen[k * 3:(k + 1) * 3] for k in range(4)]
    for fold in per_fold:  # each fold: the 3 other pairs' maps, never its own held-out pair's
        assert len(set(fold)) == 3 and len(set(befores) - set(fold)) == 1
    assert len(set(b for f in per_fold for b in befores if b not in f)) == 4  # every pair held out once
    assert sorted(seen[12:]) == sorted(befores)  # the final run: all four maps


def test_skipped_finished_photos_are_said_before_training_and_are_no_warning_of_the_style(toy_registry, tmp_path,
                                                                                         monkeypatch):
    """csr finetune reads the finished photos first: a file it skips is named at once (inside the folder), not
    after the training, and stays out of the style's warnings (what 'csr styles show' calls warnings); the card
    names no path of the user's."""
    import csr_cli.finetune
    import csr_core.finetune
    import csr_core.pipeline
    from csr_cli.main import cli

    monkeypatch.setattr(csr_cli.finetune, "registry", lambda: toy_registry)
    monkeypatch.setattr(csr_core.pipeline, "_registry", toy_registry)
    monkeypatch.setattr(csr_core.finetune, "FinetuneConfig", lambda **kw: FinetuneConfig(**dict(FAST, **kw)))
    finished = _finished_folder(tmp_path / "f", 4)
    (finished / "sub").mkdir()
    (finished / "sub" / "broken.jpg").write_bytes(b"\xff\xd8 not a photo")
    out = CliRunner().invoke(csr_cli.finetune.command, ["--pairs", str(write_pairs(tmp_path / "p", 3)), "--finished",
                                                        str(finished), "--name", "mine", "--steps", "5"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    skipped = lines.index("csr: warning: skipped sub/broken.jpg: not a supported image (unrecognised format or "
                          "corrupt data)")
    assert skipped < min(i for i, ln in enumerate(lines) if ln.startswith("fine-tuning"))
    # off a terminal, a line when each run's examples are begun and another when its training starts; from the second
    # fold on, the score pooled over the pairs held out so far
    making = lines.index(next(ln for ln in lines if ln.startswith("fine-tuning: fold 2/3, turning finished photos "
                                                                  "into examples 0%, step ")))
    assert lines[making].split(" · held-out so far: ")[1].split(" dB ")[1] == "on 1 of 3 pairs"
    training = next(ln for ln in lines[making:] if "turning" not in ln)
    assert training.startswith("fine-tuning: fold 2/3, step ") and "on 1 of 3 pairs" in training
    assert lines[skipped + 1] == f"4 finished photos in {finished}" and out.output.count("broken.jpg") == 1
    card = json.loads((toy_registry.user_path / "mine.json").read_text())
    assert card["training"]["data"]["finished"] == 4 and not any("broken" in w for w in card["warnings"])
    assert "broken.jpg" not in CliRunner().invoke(cli, ["styles", "show", "mine"]).output
    style = finetune_style(write_pairs(tmp_path / "p2", 3), "mine2", registry=toy_registry, finished=finished,
                           config=FinetuneConfig(**dict(FAST, steps=5, pseudo_steps=5)))
    assert not any("broken" in w for w in style.card["warnings"]) and str(tmp_path) not in json.dumps(style.card)
    assert "finished photos: skipped sub/broken.jpg: not a supported image" in style.card["problems"][0]


def test_a_finished_folder_holding_the_pairs_never_takes_their_before_photos(toy_registry, tmp_path):
    """--finished my_edits/ (the pairs' own folder): the 'after' photos are finished photos in the look, the
    'before' photos are not, and are left out with a note."""
    pairs = write_pairs(tmp_path / "p", 3)
    style = finetune_style(pairs, "mine", registry=toy_registry, finished=pairs,
                           config=FinetuneConfig(**dict(FAST, steps=5, pseudo_steps=5)))
    assert style.card["training"]["data"]["finished"] == 3
    assert "finished photos: left out the pairs' 3 'before' photos: they are not finished" in style.card["problems"]


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no photos found"),
    (lambda d: [(d / f"x{i}.jpg").write_bytes(b"not a photo") for i in range(3)], "no readable photo among 3"),
])
def test_finished_folder_without_photos_is_one_clear_error(toy_registry, tmp_path, make, message):
    (tmp_path / "f").mkdir()
    make(tmp_path / "f")
    with pytest.raises(PairsError, match=message):
        finetune_style(write_pairs(tmp_path / "p", 3), "x", registry=toy_registry, finished=tmp_path / "f",
                       config=FinetuneConfig(**FAST))


def test_too_few_pairs_with_finished_is_clear(toy_registry, tmp_path):
    with pytest.raises(PairsError, match="at least 3 .* found 2"):
        finetune_style(write_pairs(tmp_path / "p", 2), "x", registry=toy_registry,
                       finished=_finished_folder(tmp_path / "f", 2))


def test_recipe_text_names_the_exposure_shift_of_the_before_photos():
    from csr_core.finetune import _shift_text

    assert _shift_text(0.0) == ""  # csr finetune's default says nothing
    assert _shift_text(-0.1) == ", then 7% darker"  # values x 2**-0.1 = 0.933
    assert _shift_text(1.0) == ", then 100% brighter"


def test_threads_help_states_the_default_that_is_used():
    from csr_cli.finetune import command
    from csr_core.threads import cores, default_workers

    option = next(p for p in command.params if p.name == "threads")
    assert option.help.endswith("(default: every core, up to 8).") and default_workers() == min(cores(), 8)


def test_a_pair_that_cannot_be_read_is_left_out_named_before_training_and_counted(toy_registry, tmp_path,
                                                                                  monkeypatch):
    """One damaged or misaligned pair is not the end of csr finetune: it is named before the training and the
    count says what is used; with too few pairs left, one clear line."""
    from PIL import Image

    import csr_cli.finetune
    import csr_core.finetune

    monkeypatch.setattr(csr_cli.finetune, "registry", lambda: toy_registry)
    monkeypatch.setattr(csr_core.finetune, "FinetuneConfig", lambda **kw: FinetuneConfig(**dict(FAST, **kw)))
    pairs = write_pairs(tmp_path / "p", 6)
    (pairs / "after/p02.png").write_bytes(b"\x89PNG damaged")
    args = ["--pairs", str(pairs), "--name", "mine", "--steps", "5"]
    out = CliRunner().invoke(csr_cli.finetune.command, args)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    skipped = next(i for i, ln in enumerate(lines) if ln.startswith("csr: skipped: pair p02: "))
    assert "p02.png" in lines[skipped] and lines[skipped + 1] == f"5 pairs in {pairs}"
    card = json.loads((toy_registry.user_path / "mine.json").read_text())
    assert card["training"]["data"]["pairs"] == 5 and "p02" not in card["training"]["data"]["names"]
    assert "5-fold validation on 5 pairs" in out.output
    Image.new("RGB", (10, 40)).save(pairs / "after/p03.png")  # sizes that cannot be aligned
    out = CliRunner().invoke(csr_cli.finetune.command, [*args[:3], "other"])
    assert out.exit_code == 1 and "csr: skipped: pair p03: before p03.png is 48x36 but after p03.png is 10x40" \
        in out.output
    assert out.output.splitlines()[-1] == ("csr: error: p: fine-tuning needs at least 5 before/after pairs (3 with "
                                           "finished photos), found 4")
    pairs = write_pairs(tmp_path / "p2", 6)
    (pairs / "before/p03.png").write_bytes(b"")
    style = finetune_style(pairs, "api", registry=toy_registry, config=FinetuneConfig(**FAST))
    assert style.card["training"]["data"]["pairs"] == 5 and any("pair p03" in p for p in style.card["problems"])


def test_finished_copies_count_once_and_tiny_photos_are_skipped(tmp_path):
    """A finished photo present twice (a copy, or the same pixels in another format) counts once, said in one
    line; a thumbnail or icon too small to teach anything is skipped, with the smallest size csr takes."""
    import shutil

    from PIL import Image

    from csr_core.finished import load_finished

    folder = _finished_folder(tmp_path / "f", 3)
    shutil.copy(folder / "f00.png", folder / "f00_copy.png")
    Image.open(folder / "f00.png").save(folder / "f00.tif")
    Image.new("RGB", (1, 1), "red").save(folder / "dot.png")
    Image.new("RGB", (64, 15), "red").save(folder / "strip.png")
    photos, notes = load_finished(folder)
    assert len(photos) == 3
    assert notes == ["skipped dot.png: 1x1 pixels, too small to learn from (at least 16 on each side)",
                     "skipped strip.png: 64x15 pixels, too small to learn from (at least 16 on each side)",
                     "left out 2 copies of a photo already read (the same pixels; each photo counts once): "
                     "f00.tif (= f00.png), f00_copy.png (= f00.png)"]


def test_a_style_scoring_below_its_start_says_so_on_its_card_and_at_the_end(toy_registry, tmp_path, monkeypatch):
    """Validation chose steps, yet on whole photos the new style scores below 'auto': the photographer is told,
    by csr finetune and by the card, that 'auto' comes closer to these edits."""
    import csr_cli.finetune
    import csr_core.finetune as ft

    scored = ft._Scorer.__call__

    def swapped(self, model, idx, pairs_only=None, done=lambda: None):  # the tuned style and its start trade places
        out = scored(self, model, idx, pairs_only, done)
        return {i: dict(r, style=r["base"], base=r["style"]) for i, r in out.items()}

    monkeypatch.setattr(ft._Scorer, "__call__", swapped)
    monkeypatch.setattr(csr_cli.finetune, "registry", lambda: toy_registry)
    monkeypatch.setattr(ft, "FinetuneConfig", lambda **kw: FinetuneConfig(**dict(FAST, **kw)))
    from csr_cli.main import cli

    result = CliRunner().invoke(cli, ["finetune", "--pairs", str(write_pairs(tmp_path / "p", 6)), "--name", "mine"])
    assert result.exit_code == 0, result.output
    s = toy_registry.get("mine").card["scores"]["validation"]
    assert s["psnr"] < s["base_style"]["psnr"]
    below = [w for w in toy_registry.get("mine").card["warnings"] if "below 'auto'" in w]
    assert below == [f"on pairs it did not learn from, the new style scores {s['psnr']:.2f} dB, below 'auto' "
                     f"({s['base_style']['psnr']:.2f} dB): 'auto' comes closer to these edits; more or more "
                     "consistent pairs, or your finished photos (--finished), may help"]
    assert below[0] in " ".join(result.output.split())


def test_a_style_that_beats_its_start_gets_no_below_warning(tuned):
    _, style, _ = tuned
    assert not any("below" in w for w in style.card["warnings"])


def test_finished_photos_alone_say_that_pairs_are_needed_beside_them(toy_registry, tmp_path, monkeypatch):
    import csr_cli.finetune
    from csr_cli.main import cli

    monkeypatch.setattr(csr_cli.finetune, "registry", lambda: toy_registry)
    (tmp_path / "portfolio").mkdir()
    alone = CliRunner().invoke(cli, ["finetune", "--finished", str(tmp_path / "portfolio"), "--name", "mine"])
    assert alone.exit_code == 2 and "Traceback" not in alone.output
    assert alone.output.strip().splitlines() == [
        "csr: error: missing option '--pairs': finished photos need 3 or more before/after pairs beside them "
        "(--pairs DIR), from which csr learns how your edits change colour and tone"]
    neither = CliRunner().invoke(cli, ["finetune", "--name", "mine"])
    assert neither.exit_code == 2 and neither.output.strip() == "csr: error: missing option '--pairs'"


@pytest.mark.parametrize("finished", [False, True])
def test_photos_beside_before_and_after_are_said_to_be_unused_unless_finished_names_them(
        toy_registry, tmp_path, monkeypatch, finished):
    """A photographer keeps 6 pairs and their finished photos in one folder: without --finished those photos
    are not learned from, and csr says so (and how to use them) before training."""
    import csr_cli.finetune
    import csr_core.finetune as ft
    from csr_cli.main import cli
    from PIL import Image

    folder = write_pairs(tmp_path / "shoot", 6)
    for i in range(3):
        Image.new("RGB", (40, 30), (90 + 40 * i, 80, 70)).save(folder / f"final{i}.jpg")
    (folder / "notes.txt").write_text("not a photo")

    def trained(*args, **kwargs):  # training itself is not what this checks
        raise PairsError("stopped here")

    monkeypatch.setattr(csr_cli.finetune, "registry", lambda: toy_registry)
    monkeypatch.setattr(ft, "finetune_style", trained)
    args = ["finetune", "--pairs", str(folder), "--name", "mine"] + (["--finished", str(folder)] if finished else [])
    out = CliRunner().invoke(cli, args).output
    assert "csr: error: stopped here" in out
    note = (f"csr: note: 3 photos in {folder} beside its before/ and after/ folders are not used; to learn from "
            f"finished photos, add --finished {folder}")
    assert (note in out.splitlines()) == (not finished), out


def test_the_end_of_a_fine_tune_says_in_plain_words_how_much_it_beats_its_start(tuned):
    from csr_cli.finetune import verdict

    _, style, _ = tuned
    s = style.card["scores"]["validation"]
    gain = round(s["psnr"], 2) - round(s["base_style"]["psnr"], 2)
    assert gain > 0 and verdict(style.card) == (
        f"on pairs it did not learn from, the new style comes {gain:.2f} dB closer to your edits than 'auto' "
        f"({s['psnr']:.2f} against {s['base_style']['psnr']:.2f} dB)")
    same = dict(style.card, scores=dict(validation=dict(s, psnr=s["base_style"]["psnr"])))
    assert verdict(same) == ""  # no gain: the warning on the card says so instead
    base = s["base_style"]
    off = dict(style.card, scores=dict(validation=dict(s, delta_e=base["delta_e"] + 0.4)))  # colours further off
    assert verdict(off) == verdict(style.card) + (f", though its colours differ more from them (dE2000 "
                                                  f"{base['delta_e'] + 0.4:.2f} against {base['delta_e']:.2f})")
    near = dict(style.card, scores=dict(validation=dict(s, delta_e=base["delta_e"] + 0.05)))
    assert verdict(near) == verdict(style.card)  # a colour gap under 0.1 dE2000 is noise, not news


def test_a_style_that_learned_nothing_says_it_is_its_start_unchanged_and_what_may_help(toy_registry, tmp_path,
                                                                                      monkeypatch):
    import csr_core.finetune as ft

    monkeypatch.setattr(ft, "_pooled", lambda runs: (0, [0], [0.0]))  # validation keeps the start weights
    style = finetune_style(write_pairs(tmp_path / "p", 5), "same", registry=toy_registry,
                           config=FinetuneConfig(**FAST))
    assert style.card["validation"]["chosen_steps"] == 0
    assert "on pairs it did not learn from, nothing it learned came closer to your edits than 'auto': the new " \
           "style is 'auto' unchanged; more pairs, or your finished photos (--finished), may help" \
           in style.card["warnings"]
    assert not any("below 'auto'" in w for w in style.card["warnings"])  # equal scores: one warning, not two


def test_the_card_of_a_fine_tuned_style_speaks_to_a_photographer(tuned, monkeypatch):
    """What csr styles show prints of a style csr finetune made: how it was made in a photographer's words, none of
    the lab's; for each part fine-tuning may retune, and with finished photos too."""
    import csr_core.pipeline
    from csr_cli.main import cli
    from csr_core.finetune import TRAINED, recipe_method

    reg, _, _ = tuned
    monkeypatch.setattr(csr_core.pipeline, "_registry", reg)
    text = CliRunner().invoke(cli, ["styles", "show", "mine"]).output
    lines = text.splitlines()
    start = next(k for k, ln in enumerate(lines) if ln.startswith("recipe: "))
    end = next(k for k in range(start + 1, len(lines)) if not lines[k].startswith("  "))
    recipe = " ".join(" ".join(lines[start:end]).split())
    assert recipe.startswith("recipe: only the part that turns its reading of the whole photo into adjustments was "
                             "retuned, the part that retouches each pixel stays as it was; "), recipe
    assert not any(lab in text for lab in ("GFM", "L1", "Adam", "EMA", "modulation", "learning rate", "pseudo")), text
    for train in TRAINED:
        for finished in (False, True):
            method = recipe_method(FinetuneConfig(train=train), finished)
            assert not [lab for lab in LAB_WORDS if lab in method], (train, finished, method)
    assert "1200 steps" in method and "about its last 100 steps" in method  # the fixed count; what is averaged


def test_help_speaks_to_a_photographer():
    """csr finetune --help says how the score is measured in plain words, without the trade's terms."""
    import csr_cli.finetune

    text = " ".join(CliRunner().invoke(csr_cli.finetune.command, ["--help"]).output.split())
    assert "The score it reports comes from pairs the style did not learn from" in text
    for jargon in ("k-fold", " folds", "base network", "frozen", "GFM", "held-out split"):
        assert jargon not in text, jargon
