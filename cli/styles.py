"""``csr styles``: list, show, import and remove styles in the shared registry."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import click

from csr_core.errors import printable
from csr_core.registry import licence_label, score_summary

from .common import EXIT_FAILED, EXIT_USAGE, cond_size_option, fail, handle_errors, registry


@click.group("styles")
def command() -> None:
    """Manage the style registry (built-in and your own styles)."""



@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def list_styles(as_json):
    """List every style: origin, licence, description and validation score."""
    reg = registry()
    styles = reg.styles()
    if as_json:
        click.echo(json.dumps([{**s.card, "name": s.name, "builtin": s.builtin} for s in styles], indent=2))
        return
    if not styles:
        click.echo("no styles installed")
        return
    width = max([len(s.name) for s in styles] + [5])
    labels = {s.name: licence_label(s.card) for s in styles}
    lwidth = max(len(v) for v in labels.values())
    click.echo(f"{'style':<{width}}  {'origin':<8}  {'licence':<{lwidth}}  description")
    for s in styles:
        origin = "built-in" if s.builtin else "user"
        base = f" (on {reg.base_name(s)})" if s.kind == "condition" else ""
        score = score_summary(s.card)
        line = (f"{s.name:<{width}}  {origin:<8}  {labels[s.name]:<{lwidth}}  {s.description}{base}"
                + (f"  [{score}]" if score else ""))
        click.echo(printable(line))  # user cards are untrusted: no raw control characters
    click.echo("Full terms, data and scores of a style: csr styles show NAME")


@command.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the raw card (JSON) instead of the summary.")
@handle_errors
def show(name, as_json):
    """Show a style's card: licence, training data and recipe, validation scores, base."""
    reg = registry()
    style = reg.get(name)
    card = {**style.card, "name": style.name, "origin": "built-in" if style.builtin else "user", "path": str(style.path)}
    # user cards are untrusted: every summary line is shown without raw control characters
    click.echo(json.dumps(card, indent=2) if as_json else "\n".join(printable(ln) for ln in describe(style, reg.base_name(style))))


def describe(style, base_name: str = "") -> list[str]:
    """A readable summary of a style's card (the raw card: ``--json``); ``base_name``: the installed base."""
    card = style.card
    out = [f"{style.name} ({'built-in' if style.builtin else 'user'} style, {style.kind})"]
    if style.description:
        out += _wrap("", style.description)
    out += _wrap("licence: ", card.get("licence") or "unknown (the card states none)")
    out += _summary_table(card, style.name)
    if style.kind == "condition":
        base = card["base"]
        out.append(f"base: '{base_name or base['name']}' (sha256 {base['sha256'][:12]}...), frozen; "
                   "this style holds only what fine-tuning changed")
    training = card.get("training", {})
    if "data" in training:
        out += _wrap("data: ", _data_text(training["data"]))
    if "initialised_from" in training:
        out.append(f"started from: '{training['initialised_from']}'")
    if "recipe" in training:
        out += _wrap("recipe: ", _recipe_text(training["recipe"], card.get("validation", {})))
    if training.get("chosen_by"):
        out += _wrap("chosen by: ", training["chosen_by"])
    scores = card.get("scores", {})
    if scores:
        out.append("scores (PSNR dB / SSIM / CIEDE2000; per-pair PSNR capped at 100 dB):")
        for key, value in scores.items():
            if isinstance(value, dict) and key != "sets":  # the sets are in the table above
                out += _score_lines(key, value, style.name)
    for w in card.get("warnings", []) or []:
        out += _wrap("warning: ", str(w))
    out.append(f"file: {style.path} (sha256 {style.sha256[:12]}..., checked before loading)")
    if card.get("created"):
        out.append(f"created: {card['created']}")
    out.append(f"the full card: csr styles show {style.name} --json")
    return out


SET_TITLES = {"fivek_c_val": "FiveK test-split pairs", "renderings": "other renderings",
              "in_sample_14": "14 FiveK train-range pairs"}


def _summary_table(card: dict, name: str) -> list[str]:
    """One table of a style's scores on each set it was measured on (PSNR dB, higher is closer to the
    target), beside doing nothing: its validation first, then the card's other sets."""
    scores = card.get("scores", {})
    rows = []
    v = scores.get("validation")
    if isinstance(v, dict) and isinstance(v.get("psnr"), (int, float)):
        how = str(card.get("validation", {}).get("method", "validation")).split(" ")[0]
        extra = v.get("pairs_only", {}).get("psnr") if isinstance(v.get("pairs_only"), dict) else None
        rows.append((f"its pairs, {how} validation", v.get("images", v.get("pairs", "")), v["psnr"], extra,
                     v.get("baseline_psnr")))
    for key, entry in (scores.get("sets") or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("by_strength"), dict):
            at1 = entry["by_strength"].get("1", {})
            title = SET_TITLES.get(key, key.replace("_", " "))
            data = card.get("training", {}).get("data")
            learned = isinstance(data, dict) and set(entry.get("per_pair", {})) & set(data.get("ids", []))
            rows.append((title + (" (learned from)" if learned else ""), entry.get("pairs", ""), at1.get("psnr"),
                         None, entry.get("do-nothing")))
    if not rows:
        return []
    with_extra = any(r[3] is not None for r in rows)
    num = lambda x: f"{x:6.2f}" if isinstance(x, (int, float)) else "      "  # noqa: E731
    lines = ["scores (PSNR dB, higher is closer to the expert's edit; only sets marked 'learned from' were "
             "trained on):",
             f"  {'set':<42}{'pairs':>6}{name[:10]:>11}" + (f"{'pairs only':>12}" if with_extra else "") + f"{'do nothing':>12}"]
    for title, n, psnr, extra, nothing in rows:
        lines.append(f"  {title:<42}{n!s:>6}{num(psnr):>11}" + (f"{num(extra):>12}" if with_extra else "")
                     + f"{num(nothing):>12}")
    return lines


def _wrap(label: str, text: str, width: int = 100) -> list[str]:
    return textwrap.wrap(str(text), width, initial_indent=label, subsequent_indent="  ") or [label]


def _data_text(data) -> str:
    if not isinstance(data, dict):
        return str(data)
    parts = [f"{data['pairs']} before/after pairs" if "pairs" in data else ""]
    if data.get("finished"):
        parts.append(f"{data['finished']} finished photos (made into more pairs with the pairs' colour maps)")
    if data.get("expert"):
        parts.append(f"FiveK expert {data['expert']}")
    if data.get("source"):
        parts.append(f"from {data['source']}")
    return ", ".join(p for p in parts if p) or json.dumps(data)


def _recipe_text(recipe, validation: dict) -> str:
    if not isinstance(recipe, dict):
        return str(recipe)
    text = recipe.get("method", "")
    chosen = validation.get("chosen_steps", recipe.get("chosen_steps"))
    if chosen is None:
        if "steps" in recipe:
            text += f"; {recipe['steps']} steps"
    elif not validation.get("fixed_steps", "pairs_only" in validation):  # a fixed count is in the method already
        # (cards without the flag: runs with finished photos, the only fixed ones, also record "pairs_only")
        text += f"; {chosen} steps chosen by {validation.get('method', 'validation')} validation"
    if recipe.get("command"):
        text += f"; reproduce: {recipe['command']}"
    return text.strip("; ") or json.dumps(recipe)


def _score_lines(key: str, s: dict, name: str) -> list[str]:
    """One header and one line per method of a card's score set (flat or per-method layouts)."""
    methods = {k: v for k, v in s.items() if isinstance(v, dict) and "psnr" in v}
    if "psnr" in s and name not in methods:
        methods = {name: s, **methods}
    if "baseline_psnr" in s and "do-nothing" not in methods:
        methods["do-nothing"] = {m: s.get(f"baseline_{m}") for m in ("psnr", "ssim", "delta_e")}
    count = next((f"{s[k]} {k}" for k in ("images", "pairs", "photos") if k in s), "")
    count = count.replace("images", "pairs") if key == "validation" else count
    how = ", ".join(str(x) for x in (count, s.get("method")) if x)
    title = {"fivek_c_dev": "FiveK expert C dev pairs", "synthetic_holdout": "synthetic held-out",
             "fivek_c_real": "14 real FiveK expert C pairs"}.get(key, key)
    lines = [f"  {title.replace('_', ' ')}" + (f" ({how})" if how else "") + ":"]
    width = max(len(k) for k in methods) if methods else 0
    for label, m in methods.items():
        label = "base style" if label == "base_style" else label.replace("_", " ")
        lines.append(f"    {label:<{max(width, 10)}}  " + "  ".join(
            f"{unit} {m[k]:{fmt}}" for k, unit, fmt in (("psnr", "PSNR", "6.2f"), ("ssim", "SSIM", ".3f"),
                                                        ("delta_e", "dE", "5.2f"))
            if isinstance(m.get(k), (int, float))))
    if s.get("note"):
        lines += _wrap("    note: ", s["note"])
    return lines


@command.command("remove")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def remove(name, yes):
    """Delete one of your styles (built-in styles cannot be removed)."""
    reg = registry()
    damaged = name in reg.damaged()
    if (damaged or not reg.get(name).builtin) and not yes:
        if not sys.stdin.isatty():
            fail(f"not removing '{name}' without confirmation: add -y (--yes) to confirm", EXIT_USAGE)
        if not click.confirm(f"Remove {'damaged' if damaged else 'user'} style '{name}'?"):
            fail(f"kept style '{name}' (-y confirms without asking)", EXIT_FAILED)
    reg.remove(name)
    click.echo(f"removed style '{name}'")


@command.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name of the new style.")
@cond_size_option
@click.option("--description", default="", help="One line shown in 'csr styles list'.")
@handle_errors
def import_(file, name, cond_size, description):
    """Import a CSRNet .pth state_dict (loaded safely, weights only) as a user style."""
    style = registry().import_checkpoint(file, name, cond_size, description)
    click.echo(f"imported '{style.name}' -> {style.path}")
