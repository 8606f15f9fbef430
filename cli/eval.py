"""``csr eval``: score a style on before/after pairs (PSNR, SSIM, CIEDE2000) against baselines."""
from __future__ import annotations

import json
from pathlib import Path

import click

from csr_core.errors import printable

from .common import (device_option, expert_option, handle_errors, registry, say, strength_option, style_option,
                     WholeNumber)
from .progress import StepProgress


def table(result: dict) -> str:
    """Per-pair and mean scores, one column group per method (a name's control characters escaped: a file name
    can neither forge a row nor drive the terminal)."""
    methods = result["methods"]
    names = [printable(r["name"]) for r in result["pairs"]]
    width = max([len(n) for n in names] + [4])
    head = " " * width + "".join(f" | {m[:19]:^19}" for m in methods)
    sub = f"{'pair':<{width}}" + " |   PSNR  SSIM   dE00" * len(methods)
    rows = [head, sub, "-" * len(sub)]

    def line(label, scores):
        return f"{label:<{width}}" + "".join(
            f" | {s['psnr']:6.2f} {s['ssim']:.3f} {s['delta_e']:6.2f}" for s in scores)

    rows += [line(n, [r[m] for m in methods]) for n, r in zip(names, result["pairs"])]
    rows += ["-" * len(sub), line("mean", [result["mean"][m] for m in methods])]
    return "\n".join(rows)


@click.command("eval")
@click.option("--pairs", "pairs_dir", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder of pairs: before/ + after/, X_input + X_target files, or FiveK input/ + expertX/.")
@style_option
@strength_option
@click.option("--baseline", "baselines", type=click.Choice(["autocontrast", "autocontrast-tone"]), multiple=True,  # = evaluate.BASELINES
              help="Extra baseline column (repeatable): Pillow's autocontrast (cutoff 0.5%), per channel or, "
                   "with -tone, keeping the tones (preserve_tone=True).")
@expert_option("FiveK expert folder to score against.")
@click.option("--max-side", type=WholeNumber(16), help="Shrink pairs so the long side is at most this.")
@device_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def command(pairs_dir, style, strength, baselines, expert, max_side, device, as_json):
    """Score a style on before/after pairs: PSNR, SSIM and CIE dE2000 per pair and the mean.

    The do-nothing baseline (before vs after) is always shown. FiveK test-split pairs (a4501-a5000) are
    scored (only training refuses them); a warning names pairs the style's card lists as training data. A
    pair that cannot be read or aligned, a second copy of one, or two different photos that share a name is
    named and left out.
    """
    from csr_core.evaluate import evaluate

    with StepProgress("scoring", unit="pair") as progress:  # a pair of camera size takes many seconds
        result = evaluate(pairs_dir, style, strength=strength, registry=registry(), baselines=baselines,
                          expert=expert, max_side=max_side, device=device,
                          on_progress=lambda i: progress(dict(step=i["done"], steps=i["total"])))
    for line in result["problems"]:
        say("skipped", line)
    for line in result["warnings"]:
        say("warning", line)
    click.echo(json.dumps(result, indent=2) if as_json else table(result))
