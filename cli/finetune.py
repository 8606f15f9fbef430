"""``csr finetune``: teach a new style from your own before/after pairs (condition-only fine-tune)."""
from __future__ import annotations

from pathlib import Path

import click

from csr_core.errors import UsageError, require

from .common import (expert_option, handle_errors, overwrite_style_option, plural, read_pairs, read_photos, registry,
                     say, warn_if_worse_than_nothing, WholeNumber)
from .progress import StepProgress


def summary_lines(card: dict) -> list[str]:
    """The validation scores of a fine-tuned style against its yardsticks, one line each."""
    s, v = card["scores"]["validation"], card["validation"]
    nothing = {k: s[f"baseline_{k}"] for k in ("psnr", "ssim", "delta_e")}
    steps = ("no gain: the style equals its start" if not v["chosen_steps"] else
             f"{v['chosen_steps']} steps, fixed" if v.get("fixed_steps") else f"steps chosen: {v['chosen_steps']}")
    start = card.get("training", {}).get("initialised_from", "start style")  # the style --from named
    lines = [f"{v['method']} validation on {plural(s['images'], 'pair')} ({steps}):"]
    rows = [("new style", s)] + ([("pairs only", s["pairs_only"])] if "pairs_only" in s else [])
    for label, m in rows + [("do-nothing", nothing), (start, s["base_style"]), ("autocontrast", s["autocontrast"])]:
        lines.append(f"  {label:<13} PSNR {m['psnr']:5.2f} dB  SSIM {m['ssim']:.3f}  dE2000 {m['delta_e']:5.2f}")
    return lines


def verdict(card: dict) -> str:
    """In plain words, how much closer to the pairs' edits the new style comes than the style it started
    from, on pairs it did not learn from ('' when it does not: a warning then says so)."""
    s = card["scores"]["validation"]
    new, start = round(s["psnr"], 2), round(s["base_style"]["psnr"], 2)
    name = card.get("training", {}).get("initialised_from", "start style")
    if new <= start:
        return ""
    text = (f"on pairs it did not learn from, the new style comes {new - start:.2f} dB closer to your edits than "
            f"'{name}' ({new:.2f} against {start:.2f} dB)")
    de, de_start = s["delta_e"], s["base_style"]["delta_e"]
    if de - de_start >= 0.1:  # closer by PSNR, yet colours further off: said, not hidden (a smaller gap is noise)
        text += f", though its colours differ more from them (dE2000 {de:.2f} against {de_start:.2f})"
    return text


@click.command("finetune")
@click.option("--pairs", "pairs_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder of pairs: before/ + after/, X_input + X_target files, or FiveK input/ + expertX/ "
                   "(required).")
@click.option("--finished", "finished_dir", type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="Folder of finished photos in the same look (a portfolio, an exported album): the pairs' "
                   "colour maps turn them into more examples to learn from. Needs only 3 pairs.")
@click.option("--name", required=True, help="Name of the new style.")
@click.option("--from", "base", default="auto", show_default=True,
              help="Style to start from: the new style is a retuned copy of it.")
@expert_option("FiveK expert whose folder (expertX/) holds the 'after' photos.")
@click.option("--steps", type=WholeNumber(1),
              help="Most training steps per run (default 600; 1200 with --finished).")
@overwrite_style_option
@click.option("--threads", type=WholeNumber(1), help="CPU threads for training (default: every core, up to 8).")
@handle_errors
def command(pairs_dir, finished_dir, name, base, expert, steps, overwrite, threads):
    """Teach a new style your look from before/after pairs (5 or more), or from
    3 or more pairs plus a folder of finished photos (--finished).

    The score it reports comes from pairs the style did not learn from: with
    fewer than 20 pairs, each pair is scored by a trial style taught without it
    (these trials also choose how long to train), then the style learns from
    all pairs; with 20 or more, a fifth of them is held out. With --finished,
    the examples made for each trial use only the other pairs' edits, and the
    pairs alone are scored beside it. Your folders are only read.

    \b
    Examples:
      csr finetune --pairs my_edits/ --name mine
      csr finetune --pairs my_edits/ --finished portfolio/ --name mine
      csr finetune --pairs /data/fivek --expert B --name B
    """
    if pairs_dir is None:  # a photographer with only finished photos learns why pairs are needed
        raise UsageError("missing option '--pairs'" + (
            ": finished photos need 3 or more before/after pairs beside them (--pairs DIR), from which csr "
            "learns how your edits change colour and tone" if finished_dir is not None else ""))
    require("train", "csr finetune")
    from csr_core.finetune import FinetuneConfig, check_enough_pairs, finetune_style
    from csr_core.finished import load_finished

    reg = registry()
    reg.check_new_name(name, overwrite)
    cfg = FinetuneConfig(threads=threads, **({"steps": steps, "pseudo_steps": steps} if steps else {}))
    loose: list[Path] = []
    found, loaded, source = read_pairs(pairs_dir, expert, cfg.max_side, loose)
    check_enough_pairs(len(loaded), source, finished_dir is not None)
    if loose and finished_dir is None:  # finished photos beside before/ and after/ are learned from with --finished
        n = len(loose)
        say("note", f"{plural(n, 'photo')} in {pairs_dir} beside its before/ and after/ folders "
                    f"{'is' if n == 1 else 'are'} not used; to learn from finished photos, add "
                    f"--finished {pairs_dir}")
    finished = None
    if finished_dir is not None:  # read first: what is skipped is said before minutes of training
        finished = read_photos(finished_dir, "finished photo", lambda: load_finished(
            finished_dir, cfg.finished_side, cfg.finished_limit, [p.before for p in found]))
    with StepProgress("fine-tuning", bound=True) as progress:  # early stopping: the total is an upper bound
        style = finetune_style(loaded, name, base, expert=expert, registry=reg, on_progress=progress,
                               config=cfg, overwrite=overwrite, finished=finished)
    for line in style.card.get("warnings", []):
        say("warning", line)
    click.echo(f"saved style '{style.name}' (fine-tuned from '{style.card['training']['initialised_from']}', on "
               f"the network '{style.card['base']['name']}') -> {style.path}")
    for line in summary_lines(style.card):
        click.echo(line)
    gain = verdict(style.card)
    if gain:
        click.echo(gain)
    s = style.card["scores"]["validation"]
    warn_if_worse_than_nothing(s["psnr"], s["baseline_psnr"], f"{style.card['validation']['method']} validation",
                               "more or more consistent pairs, or --from another style, may help")
