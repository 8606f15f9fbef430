"""csr eval: per-pair and mean PSNR / SSIM / dE2000 of a style against do-nothing and autocontrast."""
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageOps

from csr_core.evaluate import autocontrast, evaluate
from csr_core.metrics import score
from pairs_util import write_pairs


@pytest.fixture
def pairs_dir(tmp_path):
    return write_pairs(tmp_path / "pairs", 3)


def test_scores_match_metrics_and_baselines(pairs_dir, toy_registry):
    res = evaluate(pairs_dir, "auto", registry=toy_registry, baselines=("autocontrast",))
    assert res["methods"] == ["do-nothing", "autocontrast", "auto"]
    assert [r["name"] for r in res["pairs"]] == ["p00", "p01", "p02"]
    b = np.asarray(Image.open(pairs_dir / "before/p01.png"))
    a = np.asarray(Image.open(pairs_dir / "after/p01.png"))
    row = res["pairs"][1]
    assert row["do-nothing"] == score(b, a)
    assert row["autocontrast"] == score(np.asarray(ImageOps.autocontrast(Image.fromarray(b), cutoff=0.5)), a)
    assert res["mean"]["auto"]["psnr"] == pytest.approx(np.mean([r["auto"]["psnr"] for r in res["pairs"]]))
    assert res["mean"]["do-nothing"]["psnr"] < 40  # the pairs really differ


def test_strength_zero_is_do_nothing(pairs_dir, toy_registry):
    res = evaluate(pairs_dir, "auto", registry=toy_registry, strength=0.0)
    assert res["mean"]["auto"] == res["mean"]["do-nothing"]


def test_autocontrast_stretches_each_channel():
    img = np.zeros((10, 10, 3), np.uint8)
    img[..., 0] = np.linspace(50, 100, 10)[None].astype(np.uint8)
    out = autocontrast(img)
    assert out[..., 0].min() == 0 and out[..., 0].max() >= 250 and not out[..., 1:].any()


def test_cli_table_and_json(pairs_dir, toy_registry, monkeypatch):
    import csr_cli.eval

    monkeypatch.setattr(csr_cli.eval, "registry", lambda: toy_registry)
    runner = CliRunner()
    out = runner.invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir), "--baseline", "autocontrast"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert "do-nothing" in lines[0] and "autocontrast" in lines[0] and "auto" in lines[0]
    assert lines[-1].startswith("mean") and len(lines) == 3 + 3 + 2
    out = runner.invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir), "--json", "--strength", "0.5"])
    data = json.loads(out.output)
    assert data["strength"] == 0.5 and len(data["pairs"]) == 3 and set(data["mean"]) == {"do-nothing", "auto"}


def test_cli_unknown_style_is_one_line(pairs_dir, toy_registry, monkeypatch):
    import csr_cli.eval

    monkeypatch.setattr(csr_cli.eval, "registry", lambda: toy_registry)
    out = CliRunner().invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir), "--style", "nope"])
    assert out.exit_code == 2 and out.output.startswith("csr: error: unknown style 'nope'")  # a usage error


def test_fivek_do_nothing_matches_manifest(shared_dir):
    root = shared_dir / "data" / "fivek-c-dev"
    rows = {r.split("\t")[0]: r.split("\t") for r in (root / "MANIFEST.tsv").read_text().splitlines()[1:]}
    col = (root / "MANIFEST.tsv").read_text().splitlines()[0].split("\t").index("psnr_identity")
    from csr_core.pairs import discover_pairs

    pairs = [p for p in discover_pairs(root)[0] if p.name == "a0212"]
    res = evaluate(pairs, None)
    assert res["pairs"][0]["do-nothing"]["psnr"] == pytest.approx(float(rows["a0212"][col]), abs=0.01)


def test_identical_pair_is_capped_not_infinite(pairs_dir, toy_registry, monkeypatch):
    """A photo its editor left alone (before == after) scores PSNR_CAP, so the means and the JSON stay finite."""
    import shutil

    import csr_cli.eval
    from csr_core.metrics import PSNR_CAP

    shutil.copyfile(pairs_dir / "before/p01.png", pairs_dir / "after/p01.png")
    res = evaluate(pairs_dir, "auto", registry=toy_registry, strength=0.0)
    assert res["pairs"][1]["do-nothing"]["psnr"] == PSNR_CAP == 100.0
    others = [r["do-nothing"]["psnr"] for r in res["pairs"] if r["name"] != "p01"]
    assert res["mean"]["do-nothing"]["psnr"] == pytest.approx((100.0 + sum(others)) / 3)
    monkeypatch.setattr(csr_cli.eval, "registry", lambda: toy_registry)
    out = CliRunner().invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir), "--json"])
    assert out.exit_code == 0 and "Infinity" not in out.output and "inf" not in out.output.lower()
    json.loads(out.output, parse_constant=lambda c: pytest.fail(f"non-finite {c} in the JSON"))
    table = CliRunner().invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir)]).output
    assert "100.00" in table and "inf" not in table
