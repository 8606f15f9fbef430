"""csr eval: per-pair and mean PSNR / SSIM / dE2000 of a style against do-nothing and autocontrast."""
import json
from pathlib import Path

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
    lines = out.stdout.splitlines()  # the table; progress goes to stderr
    assert "do-nothing" in lines[0] and "autocontrast" in lines[0] and "auto" in lines[0]
    assert lines[-1].startswith("mean") and len(lines) == 3 + 3 + 2
    out = runner.invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir), "--json", "--strength", "0.5"])
    data = json.loads(out.stdout)
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
    assert out.exit_code == 0 and "Infinity" not in out.stdout and "inf" not in out.stdout.lower()
    json.loads(out.stdout, parse_constant=lambda c: pytest.fail(f"non-finite {c} in the JSON"))
    table = CliRunner().invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir)]).stdout
    assert "100.00" in table and "inf" not in table
    lines = [line for line in table.splitlines() if not line.startswith("-")]
    assert len({tuple(i for i, c in enumerate(line) if c == "|") for line in lines}) == 1, table  # columns line up


def _fivek_pairs(root, ids):
    """FiveK-named X_input/X_target pairs (a tiny synthetic look) for the given ids."""
    write_pairs(root, len(ids), layout="files")
    for i, fid in enumerate(ids):
        for role in ("input", "target"):
            (root / f"p{i:02d}_{role}.png").rename(root / f"{fid}_{role}.png")
    return root


def test_eval_scores_the_fivek_test_split_that_training_refuses(tmp_path, toy_registry):
    from csr_core.pairs import discover_pairs
    root = _fivek_pairs(tmp_path / "pairs", ["a0001", "a4600"])
    assert [p.name for p in discover_pairs(root)[0]] == ["a0001"]  # training never sees a4600
    res = evaluate(root, "auto", registry=toy_registry)
    assert [r["name"] for r in res["pairs"]] == ["a0001", "a4600"]


def test_eval_warns_when_pairs_are_in_the_styles_training_data(tmp_path, toy_registry):
    import json as _json
    root = _fivek_pairs(tmp_path / "pairs", ["a0001", "a0002", "a0003"])
    assert not evaluate(root, "auto", registry=toy_registry)["warnings"]
    manifest = toy_registry.builtin_path / "manifest.json"
    data = _json.loads(manifest.read_text())
    data["styles"]["auto"]["training"] = {"data": {"ids": ["a0002"], "target_ids": ["a0003"]}, "recipe": "toy"}
    manifest.write_text(_json.dumps(data))
    from csr_core.registry import Registry
    res = evaluate(root, "auto", registry=Registry(toy_registry.builtin_path, toy_registry.user_path))
    assert len(res["warnings"]) == 1
    assert "2 of 3 pairs (a0002, a0003) are in style auto's training data" in res["warnings"][0]
    assert "not validation" in res["warnings"][0]


def test_autocontrast_tone_baseline_keeps_colour_balance(tmp_path, toy_registry):
    root = write_pairs(tmp_path / "pairs", 2)
    res = evaluate(root, None, baselines=("autocontrast", "autocontrast-tone"))
    assert res["methods"] == ["do-nothing", "autocontrast", "autocontrast-tone"]
    b = np.asarray(Image.open(root / "before/p00.png"))
    a = np.asarray(Image.open(root / "after/p00.png"))
    tone = np.asarray(ImageOps.autocontrast(Image.fromarray(b), cutoff=0.5, preserve_tone=True))
    assert res["pairs"][0]["autocontrast-tone"] == score(tone, a)
    assert res["pairs"][0]["autocontrast-tone"] != res["pairs"][0]["autocontrast"]


def test_cli_offers_every_core_baseline():
    import csr_cli.eval
    from csr_core.evaluate import BASELINES
    opt = next(o for o in csr_cli.eval.command.params if o.name == "baselines")
    assert tuple(opt.type.choices) == BASELINES


def test_a_pair_that_cannot_be_read_is_left_out_and_named(pairs_dir, toy_registry, monkeypatch):
    """csr eval scores the pairs it can read; a damaged or misaligned one is named on one line, not the end of the
    run; with none left, one clear error."""
    import csr_cli.eval

    monkeypatch.setattr(csr_cli.eval, "registry", lambda: toy_registry)
    (pairs_dir / "after/p01.png").write_bytes(b"\x89PNG damaged")
    out = CliRunner().invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir)])
    assert out.exit_code == 0, out.output
    (skipped,) = [ln for ln in out.stderr.splitlines() if ln.startswith("csr: skipped:")]
    assert skipped.startswith("csr: skipped: pair p01: ") and "p01.png" in skipped and "left out" in skipped
    assert [ln.split()[0] for ln in out.stdout.splitlines()[3:-2]] == ["p00", "p02"] and "p01" not in out.stdout
    Image.new("RGB", (10, 40)).save(pairs_dir / "after/p00.png")
    (pairs_dir / "after/p02.png").write_bytes(b"")
    out = CliRunner().invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir)])
    assert out.exit_code == 1 and "Traceback" not in out.output
    assert out.output.splitlines()[-1].startswith("csr: error: pairs: none of the 3 pairs could be used (pair ")


def test_two_photos_that_share_a_name_are_named_and_left_out(pairs_dir, toy_registry, monkeypatch):
    """A camera's counter restarted: before/IMG_0001 and after/IMG_0001 are different photos of one size. Scored,
    they would score far below any real pair and pull the mean down; they are named on one line and left out."""
    import csr_cli.eval

    monkeypatch.setattr(csr_cli.eval, "registry", lambda: toy_registry)
    samples = Path(__file__).resolve().parents[1] / "samples"
    for side, name in (("before", "astronaut"), ("after", "coffee_dark")):
        Image.open(samples / f"{name}.jpg").convert("RGB").resize((96, 72)).save(pairs_dir / side / "IMG_0001.png")
    out = CliRunner().invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir)])
    assert out.exit_code == 0, out.output
    assert [ln for ln in out.stderr.splitlines() if ln.startswith("csr: skipped:")] == [
        "csr: skipped: pair IMG_0001: its before and after look like different photos (check the names); left out"]
    assert [ln.split()[0] for ln in out.stdout.splitlines()[3:-2]] == ["p00", "p01", "p02"]


def test_cli_table_escapes_control_characters_in_pair_names(pairs_dir, toy_registry, monkeypatch):
    """A file name holding a newline or a terminal escape can neither forge a row of the table nor drive the
    terminal: it is shown escaped, and the columns still line up."""
    import csr_cli.eval

    monkeypatch.setattr(csr_cli.eval, "registry", lambda: toy_registry)
    for side in ("before", "after"):
        (pairs_dir / side / "p01.png").rename(pairs_dir / side / "x\x1b[2J\nforged.png")
    out = CliRunner().invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir)])
    assert out.exit_code == 0, out.output
    assert "\x1b" not in out.output and "\\x1b[2J\\nforged" in out.output
    lines = [line for line in out.stdout.splitlines() if not line.startswith("-")]
    assert len(lines) == 2 + 3 + 1 and len({line.index("|") for line in lines}) == 1, out.output


def test_cli_says_how_far_the_scoring_is(pairs_dir, toy_registry, monkeypatch):
    """A pair of camera size takes many seconds to score: csr eval reports its progress on stderr (here off a
    terminal: a line at the start and at the end), and stdout holds only the table."""
    import csr_cli.eval

    monkeypatch.setattr(csr_cli.eval, "registry", lambda: toy_registry)
    out = CliRunner().invoke(csr_cli.eval.command, ["--pairs", str(pairs_dir), "--json"])
    assert out.exit_code == 0, out.output
    lines = out.stderr.splitlines()
    assert lines[:2] == ["scoring: pair 0/3", "scoring: pair 3/3"] and lines[2].startswith("scoring: done in ")
    assert len(json.loads(out.stdout)["pairs"]) == 3
