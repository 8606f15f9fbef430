"""The shipped styles: manifest cards are complete and honest, weights verify, and `auto` works."""
import json
from pathlib import Path

import numpy as np
import pytest

from csr_core import data_dir
from csr_core.image_io import load_photo
from csr_core.metrics import delta_e2000, psnr
from csr_core.pipeline import retouch
from csr_core.registry import Registry, sha256_file

WEIGHTS = data_dir("weights")
SAMPLES = data_dir("samples")
REQUIRED = ("file", "sha256", "architecture", "kind", "cond_size", "description", "training", "scores", "licence")


def test_manifest_cards_complete_and_weights_verify():
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    assert "auto" in manifest["styles"]
    for name, card in manifest["styles"].items():
        missing = [k for k in REQUIRED if k not in card]
        assert not missing, f"{name}: card lacks {missing}"
        assert sha256_file(WEIGHTS / card["file"]) == card["sha256"]
        assert {"data", "recipe"} <= set(card["training"])
        assert (WEIGHTS / card["file"]).stat().st_size < 1_000_000  # small files
    reg = Registry(WEIGHTS, Path("/nonexistent-user-dir"))
    for name in manifest["styles"]:
        reg.net(name)  # loads with its sha256 checked


def test_no_fivek_test_split_in_training_records():
    text = (WEIGHTS / "manifest.json").read_text()
    assert not any(f"a{i:04d}" in text for i in range(4501, 5001))


@pytest.mark.parametrize("name,original", [("coffee_dark", "coffee"), ("cat_cast_flat", "chelsea")])
def test_auto_repairs_degraded_samples(name, original):
    """The bundled samples are degraded CC0 photos; `auto` must move them measurably back toward the original."""
    skdata = pytest.importorskip("skimage.data")
    truth = getattr(skdata, original)()
    damaged = load_photo(SAMPLES / f"{name}.jpg").rgb
    fixed = retouch(damaged, "auto")
    assert psnr(fixed, truth) > psnr(damaged, truth) + 2.0
    assert delta_e2000(fixed, truth) < delta_e2000(damaged, truth) - 2.0


def test_auto_nearly_leaves_a_good_photo_alone():
    good = load_photo(SAMPLES / "astronaut.jpg").rgb
    assert psnr(retouch(good, "auto"), good) > 28.0


def test_auto_beats_do_nothing_on_fivek_dev_pairs(shared_dir):
    from csr_core.evaluate import evaluate

    res = evaluate(shared_dir / "data" / "fivek-c-dev", "auto")
    assert res["mean"]["auto"]["psnr"] > res["mean"]["do-nothing"]["psnr"] + 0.5


def test_recorded_dev_scores_are_what_the_shipped_weights_measure(shared_dir):
    """The cards' FiveK dev numbers are re-measured here: a re-trained weights file must update its card."""
    from csr_core.evaluate import evaluate

    styles = json.loads((WEIGHTS / "manifest.json").read_text())["styles"]
    res = evaluate(shared_dir / "data" / "fivek-c-dev", "auto", baselines=("autocontrast",))
    recorded = styles["auto"]["scores"]["fivek_c_dev"]
    for method in ("auto", "do-nothing", "autocontrast"):
        for metric in ("psnr", "ssim", "delta_e"):
            assert res["mean"][method][metric] == pytest.approx(recorded[method][metric], abs=2e-3), (method, metric)
    per_pair = styles["C"]["validation"]["per_pair"]  # C's k-fold rows carry its base's (auto's) own scores
    for row in res["pairs"]:
        name = row["name"]
        assert row["auto"]["psnr"] == pytest.approx(per_pair[name]["base"]["psnr"], abs=2e-3), name
        assert row["autocontrast"]["psnr"] == pytest.approx(per_pair[name]["autocontrast"]["psnr"], abs=2e-3), name


def test_c_clears_the_autocontrast_bar_on_the_pairs_it_learned_from(shared_dir):
    """A regression guard, not validation (C saw these pairs; its honest k-fold score is on its card)."""
    from csr_core.evaluate import evaluate

    res = evaluate(shared_dir / "data" / "fivek-c-dev", "C", baselines=("autocontrast",))
    assert res["mean"]["C"]["psnr"] > res["mean"]["autocontrast"]["psnr"] + 1.0
    assert res["mean"]["C"]["psnr"] > res["mean"]["do-nothing"]["psnr"] + 2.0
