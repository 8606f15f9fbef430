"""``csr train``: train a whole network (the default style's recipe, or your own large paired set)."""
from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path

import click

from csr_core.errors import require

from .common import (cond_size_option, expert_option, FiniteFloatRange, handle_errors, overwrite_style_option, plural,
                     read_pairs, read_photos, registry, say, warn_if_worse_than_nothing, WholeNumber)
from .progress import StepProgress

FEW_PAIRS_HINT = ("a whole network needs many pairs; with a few, 'csr finetune' (which keeps a trained "
                  "base network and tunes only its modulation) learns far more from them")


@click.command("train")
@click.option("--photos", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder of good photos: learn to undo random synthetic degradations (the 'auto-v1' recipe).")
@click.option("--pairs", "pairs_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder of before/after pairs (before/ + after/, X_input + X_target, FiveK input/ + expertX/): "
                   "learn your look with the whole network (for large sets; ~20% held out).")
@expert_option("With --pairs on FiveK: the expert folder to learn.")
@click.option("--name", required=True, help="Name of the new user style.")
@click.option("--steps", type=WholeNumber(1), default=5000, show_default=True,
              help="Training steps (the weights that score best on the held-out photos are kept).")
@click.option("--batch", type=WholeNumber(1), default=16, show_default=True, help="Photos per training step.")
@click.option("--lr", type=FiniteFloatRange(min=0, min_open=True), default=1e-3, show_default=True,
              help="Learning rate (Adam).")
@cond_size_option
@click.option("--seed", type=WholeNumber(0), default=0, show_default=True,
              help="Random seed: the same seed, data and options give the same style.")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="Resumable checkpoint file (default: NAME.ckpt in the current folder).")
@click.option("--threads", type=WholeNumber(1), help="CPU threads for torch.")
@overwrite_style_option
@handle_errors
def command(photos, pairs_dir, expert, name, steps, batch, lr, cond_size, seed, checkpoint, threads, overwrite):
    """Train a full CSRNet and save it as a user style.

    \b
    Learn to fix exposure, colour and contrast from a folder of good photos
    (the recipe of the built-in 'auto-v1', the full network under 'auto'):
      csr train --photos ~/Pictures/good --name my-auto
    Learn a look from many before/after pairs (for a few pairs use csr finetune):
      csr train --pairs my_edits/ --name mine
    Interrupted? Run the same command again: it resumes from the checkpoint.
    """
    torch = require("train", "csr train")
    from csr_core.train import TrainConfig, read_training_photos, train_synthetic

    if threads:
        torch.set_num_threads(threads)
    reg = registry()
    reg.check_new_name(name, overwrite)
    if (photos is None) == (pairs_dir is None):
        raise click.UsageError("give exactly one of --photos DIR (synthetic degradation) or --pairs DIR (your pairs)")
    data = f"--photos {photos.resolve()}" if photos is not None else f"--pairs {pairs_dir.resolve()}"
    cfg = TrainConfig(steps=steps, batch=batch, lr=lr, cond_size=cond_size, seed=seed, extra={"data": data})
    ckpt = (checkpoint or Path(f"{name}.ckpt")).absolute()
    if pairs_dir is not None:
        return _train_pairs(reg, pairs_dir, expert, name, cfg, ckpt, overwrite)
    _announce_checkpoint(ckpt, cfg)
    images = read_photos(photos, "photo", lambda: read_training_photos(photos, cond_size))
    with _resumable(ckpt), StepProgress("training") as progress:
        model, hist = train_synthetic(images, cfg, ckpt, progress)
    card = dict(
        description=f"trained by csr train on {photos.resolve().name}: undoes exposure, cast, contrast, saturation, "
                    "tone",
        cond_size=cond_size,
        training=dict(data=f"{hist['train_images']} photos from {photos.resolve().name} (every 25th held out)",
                      recipe=_recipe(cfg, "your photos with random exposure, colour cast, contrast, saturation "
                                          "and tone faults to undo; L1 on sampled pixels")),
        scores=dict(synthetic_holdout=dict(psnr=hist["best"], baseline_psnr=hist["val_identity_psnr"],
                                           images=hist["val_images"], best_step=hist["best_step"])),
        licence="the licence of your training photos applies to this style",
    )
    style = reg.save_style(name, model.state_dict(), card, overwrite=overwrite)
    ckpt.unlink(missing_ok=True)
    click.echo(f"saved style '{style.name}' -> {style.path}: held-out PSNR {hist['best']:.2f} dB "
               f"(do-nothing {hist['val_identity_psnr']:.2f} dB)")
    warn_if_worse_than_nothing(hist["best"], hist["val_identity_psnr"], "held-out synthetic",
                               "train longer (--steps) or on more photos")


@contextlib.contextmanager
def _resumable(ckpt: Path):
    """On Ctrl-C, say where the steps done are kept (training writes its checkpoint as it stops)."""
    try:
        yield
    except KeyboardInterrupt:
        if ckpt.exists():
            say("note", f"the steps done are kept in {ckpt}: run the same command again to resume")
        raise


def _recipe(cfg, method: str) -> dict:
    """A card's recipe: the run's settings (not where its data lies on this computer) and its method."""
    return dict(asdict(cfg), extra={}, method=method)


def _announce_checkpoint(ckpt: Path, cfg) -> None:
    """Say where the checkpoint goes and, when one is there, that (and from where) training resumes."""
    from csr_core.train import checkpoint_step

    if ckpt.exists():
        done = checkpoint_step(ckpt, cfg)
        click.echo(f"resuming from {ckpt}: {done} of {cfg.steps} steps already done "
                   f"(delete it to start over)", err=True)
    else:
        click.echo(f"checkpoint: {ckpt} (every {cfg.checkpoint_every} steps; if interrupted, run the same "
                   "command again to resume; removed once the style is saved)", err=True)


def _train_pairs(reg, pairs_dir: Path, expert, name: str, cfg, ckpt: Path, overwrite: bool) -> None:
    """Whole-network training on a user's pairs, then the csr eval yardstick on the held-out pairs."""
    from csr_core.evaluate import evaluate
    from csr_core.engine import Net
    from csr_core.inference import Look
    from csr_core.model import numpy_state
    from csr_core.train import PAIR_SIDE, pairs_data, train_pairs

    _, pairs, _ = read_pairs(pairs_dir, expert, PAIR_SIDE)
    cfg.extra["data"] = pairs_data(pairs_dir, pairs)  # the pairs it can read: a resumed run has the same
    _announce_checkpoint(ckpt, cfg)
    with _resumable(ckpt), StepProgress("training") as progress:
        model, hist = train_pairs(pairs, cfg, ckpt, progress)
    for line in hist["warnings"]:
        say("warning", line)
    val = [p for p in pairs if p.name in set(hist["val_pairs"])]
    res = evaluate(val, Look.of(Net(numpy_state(model)), cfg.cond_size), baselines=("autocontrast",))
    m = res["mean"]
    card = dict(
        description=f"trained by csr train on {len(pairs)} pairs from {pairs_dir.resolve().name}"
                    + (f" (FiveK expert {expert})" if expert else ""),
        cond_size=cfg.cond_size,
        training=dict(data=dict(pairs=len(pairs), source=pairs_dir.resolve().name, expert=expert,
                                train=hist["train_pairs"], val=hist["val_pairs"]),
                      recipe=_recipe(cfg, "whole network, L1 on sampled pixels, ~20% of pairs held out")),
        scores=dict(validation=dict(m["style"], baseline_psnr=m["do-nothing"]["psnr"],
                                    baseline_ssim=m["do-nothing"]["ssim"], baseline_delta_e=m["do-nothing"]["delta_e"],
                                    autocontrast=m["autocontrast"], images=len(val), best_step=hist["best_step"],
                                    method="held-out")),
        warnings=hist["warnings"], licence="the licence of your training pairs applies to this style",
    )
    style = reg.save_style(name, model.state_dict(), card, overwrite=overwrite)
    ckpt.unlink(missing_ok=True)
    click.echo(f"saved style '{style.name}' -> {style.path}: held-out PSNR {m['style']['psnr']:.2f} dB, dE2000 "
               f"{m['style']['delta_e']:.2f} (do-nothing {m['do-nothing']['psnr']:.2f} dB, "
               f"autocontrast {m['autocontrast']['psnr']:.2f} dB; {plural(len(val), 'pair')})")
    warn_if_worse_than_nothing(m["style"]["psnr"], m["do-nothing"]["psnr"], "held-out", FEW_PAIRS_HINT)
