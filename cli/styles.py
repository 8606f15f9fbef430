"""``csr styles``: list, show, import and remove styles in the shared registry."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import click

from csr_core.errors import printable
from csr_core.registry import licence_label, score_summary, validation_method

from .common import (EXIT_FAILED, EXIT_USAGE, cond_size_option, fail, handle_errors, overwrite_style_option, plural,
                     registry)


@click.group("styles")
def command() -> None:
    """List, show, import and remove styles: the built-in ones and your own.

    Your own styles are kept in $CSR_HOME/styles; without CSR_HOME in ~/.local/share/csr/styles on Linux,
    ~/Library/Application Support/csr/styles on macOS and %LOCALAPPDATA%\\csr\\styles on Windows. The command
    line, the web app and the GIMP plug-in share them.
    """



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
    """Show a style's card: what it does, its licence and scores, then how it was made."""
    reg = registry()
    style = reg.get(name)
    card = {**style.card, "name": style.name, "origin": "built-in" if style.builtin else "user", "path": str(style.path)}
    # user cards are untrusted: every summary line is shown without raw control characters
    click.echo(json.dumps(card, indent=2) if as_json else "\n".join(printable(ln) for ln in describe(style, reg.base_name(style))))


def describe(style, base_name: str = "") -> list[str]:
    """A style's card as a photographer reads it: what the style does, its licence and its scores first, then
    the details (how it was made, every score, its file); ``base_name``: the installed base network of a
    condition style. The raw card: ``--json``."""
    card, name = style.card, style.name
    training = _dict(card.get("training"))
    start = training.get("initialised_from")
    if style.kind == "condition":
        base = card["base"]  # the registry checked it: a name and a sha256
        start = start if isinstance(start, str) else base["name"]
        out = [f"{name} ({'built-in' if style.builtin else 'user'} style, fine-tuned from '{start}')"]
    else:
        out = [f"{name} ({'built-in' if style.builtin else 'user'} style)"]
    if style.description:
        out += _wrap("", style.description)
    out += _wrap("licence: ", card.get("licence") or "unknown (the card states none)")
    out += _summary_table(card, name, start)
    warnings = card.get("warnings")
    for w in warnings if isinstance(warnings, list) else []:
        out += _wrap("warning: ", str(w))
    out += ["", "details (how the style was made and measured):"]
    if style.kind == "condition":
        out += _wrap("runs on: ", f"'{base_name or base['name']}' (sha256 {base['sha256'][:12]}...), a full network "
                                  f"that stays as it is; {name} holds only the layers its fine-tune changed")
    if "data" in training:
        out += _wrap("data: ", _data_text(training["data"]))
    if "recipe" in training:
        out += _wrap("recipe: ", _recipe_text(training["recipe"], _dict(card.get("validation"))))
    if training.get("chosen_by"):
        out += _wrap("chosen by: ", training["chosen_by"])
    scores = _dict(card.get("scores"))
    if any(isinstance(v, dict) for k, v in scores.items() if k != "sets"):  # the sets: in the table above
        out += _wrap("", "every score (PSNR dB; SSIM, 1 = the same picture; dE, CIEDE2000 colour difference, lower "
                         "is closer; the PSNR of a pair is capped at 100 dB):")
        for key, value in scores.items():
            if isinstance(value, dict) and key != "sets":
                out += _score_lines(_set_title(key, value, card), value, name, start)
    out.append(f"file: {style.path} (sha256 {style.sha256[:12]}..., checked before loading)")
    if card.get("created"):
        out.append(f"created: {card['created']}")
    out.append(f"the full card: csr styles show {name} --json")
    return out


#: The score sets of the cards, by key: their names in ``styles show``, as (the noun counted, what follows it).
SET_TITLES = {"fivek_c_val": ("FiveK test-split pair", ""), "renderings": ("FiveK pair", " in other renderings"),
              "in_sample_14": ("FiveK train-range pair", ""), "fivek_c_real": ("FiveK train-range pair", ""),
              "fivek_c_dev": ("of the 14 FiveK train-range pair", ""),
              "synthetic_holdout": ("held-out photo", " with synthetic faults"),
              "good_photos_left_alone": ("good photo", " left alone (the result against the photo itself)")}


def _titled(key: str, n) -> str:
    """The name of the set ``key`` for ``n`` pairs or photos ('1 held-out photo with synthetic faults')."""
    noun, rest = SET_TITLES[key]
    return plural(n, noun).lstrip() + rest


def _dict(value) -> dict:
    """A card field that should be an object (user cards are untrusted): itself, or empty."""
    return value if isinstance(value, dict) else {}


def _count(entry: dict):
    return next((entry[k] for k in ("images", "pairs", "photos") if k in entry), "")


def _set_title(key: str, entry: dict, card: dict) -> str:
    """The name of a score set on a card; the validation's names the pairs and the method."""
    n = _count(entry)
    if key != "validation":
        return _titled(key, n) if key in SET_TITLES else key.replace("_", " ") + (f" ({n})" if n else "")
    learned = _learned_set(card)
    pairs = _titled(learned, n) if learned in SET_TITLES else "its own " + plural(n, "pair").lstrip()
    return " ".join(filter(None, (f"{pairs},", validation_method(card), "validation")))


def _learned_set(card: dict) -> str | None:
    """The key of the score set whose pairs the style was trained on, if any."""
    ids = _dict(_dict(card.get("training")).get("data")).get("ids")
    for key, entry in _dict(_dict(card.get("scores")).get("sets")).items():
        if isinstance(ids, list) and set(_dict(_dict(entry).get("per_pair"))) & set(map(str, ids)):
            return key
    return None


def _psnr(value):
    """A PSNR on a card: a number, or an object's 'psnr'; None otherwise (user cards are untrusted)."""
    value = value.get("psnr") if isinstance(value, dict) else value
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _psnrs(entry: dict, name: str, start) -> tuple:
    """A score set's PSNRs in any of the cards' layouts, None where absent: [the style, the style it started from
    (``start``), Pillow's autocontrast, doing nothing], and whether that autocontrast is the per-channel one
    (the tone-keeping one, which the README compares, where the card has it)."""
    at1, flat = _dict(entry.get("by_strength")).get("1"), "psnr" in entry
    mine = _psnr(at1 if at1 else entry if flat else entry.get(name))
    nothing = _psnr(entry.get("baseline_psnr") if flat and not at1 else entry.get("do-nothing"))
    begun = _psnr(entry.get("base_style", entry.get(start) if isinstance(start, str) and start != name else None))
    tone, per_channel = _psnr(entry.get("autocontrast-tone")), _psnr(entry.get("autocontrast"))
    return [mine, begun, per_channel if tone is None else tone, nothing], tone is None


def _summary_table(card: dict, name: str, start=None) -> list[str]:
    """One table of the style's PSNR on each set it was measured on, beside the style it started from
    (``start``), Pillow's autocontrast and doing nothing where the card has them: its validation first,
    then the card's other sets."""
    scores = _dict(card.get("scores"))
    learned = _learned_set(card)
    entries = [("validation", scores.get("validation")), *_dict(scores.get("sets")).items(),
               ("synthetic_holdout", scores.get("synthetic_holdout"))]
    rows = []  # (title, PSNRs, whether its autocontrast is per channel)
    for key, entry in entries:
        if isinstance(entry, dict):
            psnrs, per_channel = _psnrs(entry, name, start)
            if psnrs[0] is not None:
                rows.append((_set_title(key, entry, card) + (", learned from" if key == learned else ""), psnrs,
                             per_channel))
    if not rows:
        return []
    kinds = {per_channel for _, psnrs, per_channel in rows if psnrs[2] is not None}
    heads = [name, _start_label(name, start), "autocontrast", "do nothing"]
    shown = [i for i in range(4) if i in (0, 3) or any(psnrs[i] is not None for _, psnrs, _ in rows)]
    widths = {i: max(len(heads[i][:12]), 6) for i in shown}

    def cell(psnrs: list, per_channel: bool, i: int) -> str:  # both autocontrasts: the per-channel one marked
        mark = ("*" if per_channel else " ") if i == 2 and len(kinds) > 1 else ""
        return "" if psnrs[i] is None else f"{psnrs[i]:.2f}{mark}"
    width = max(len(r[0]) for r in rows)
    lines = ["scores (PSNR dB against each pair's 'after' photo; higher is closer):",
             f"  {'set':<{width}}" + "".join(f"  {heads[i][:12]:>{widths[i]}}" for i in shown)]
    lines += [f"  {title:<{width}}" + "".join(f"  {cell(psnrs, per, i):>{widths[i]}}" for i in shown)
              for title, psnrs, per in rows]
    if kinds:
        lines.append("  autocontrast: Pillow's (cutoff 0.5%), " + ("keeping the tones; * per channel" if len(kinds) > 1
                                                                  else "per channel" if True in kinds
                                                                  else "keeping the tones"))
    if isinstance(scores.get("validation"), dict):
        lines.append("  validation: each pair scored by a version of the style that did not learn from it")
    if scores.get("sets"):
        lines.append("  " + ("only the set marked 'learned from' was trained on" if learned else
                             "no set was trained on"))
    return lines


def _wrap(label: str, text: str, width: int = 100) -> list[str]:
    return textwrap.wrap(str(text), width, initial_indent=label, subsequent_indent="  ",
                         break_on_hyphens=False) or [label]


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


#: The end of an older card's method that ``_recipe_text`` now says with the count.
_OLD_STEPS_PHRASE = ", step count chosen by validation"


def _recipe_text(recipe, validation: dict) -> str:
    if not isinstance(recipe, dict):
        return str(recipe)
    text = str(recipe.get("method", ""))
    chosen = validation.get("chosen_steps", recipe.get("chosen_steps"))
    if chosen is None:
        if "steps" in recipe:
            text += f"; {recipe['steps']} steps"
    elif not chosen:  # validation kept the start: nothing was learned
        text = text.removesuffix(_OLD_STEPS_PHRASE)
        text += f"; no steps kept: {validation.get('method', 'the')} validation found none better than the start"
    elif not validation.get("fixed_steps", "pairs_only" in validation):  # a fixed count is in the method already
        # (cards without the flag: runs with finished photos, the only fixed ones, also record "pairs_only")
        text = text.removesuffix(_OLD_STEPS_PHRASE)
        text += f"; {chosen} steps, chosen by {validation.get('method', 'the')} validation"
    if recipe.get("command"):
        text += f"; reproduce: {recipe['command']}"
    return text.strip("; ") or json.dumps(recipe)


def _start_label(name: str, start) -> str:
    """The style ``name`` was fine-tuned from, by its name; 'start style' where it has none or the same one
    (a style tuned again from its own earlier version)."""
    return start if isinstance(start, str) and start != name else "start style"


def _score_lines(title: str, s: dict, name: str, start) -> list[str]:
    """A score set of a card, one line per method (flat or per-method layouts); the style it was
    fine-tuned from (``start``) is named as itself."""
    methods = {k: v for k, v in s.items() if isinstance(v, dict) and "psnr" in v}
    if "psnr" in s and name not in methods:
        methods = {name: s, **methods}
    if "baseline_psnr" in s and "do-nothing" not in methods:
        methods["do-nothing"] = {m: s.get(f"baseline_{m}") for m in ("psnr", "ssim", "delta_e")}
    labels = {"base_style": _start_label(name, start), "output_vs_input": name, "do-nothing": "do nothing",
              "pairs_only": "pairs only (no finished photos)"}
    rows = [(labels.get(k, k.replace("_", " ")), m) for k, m in methods.items()]
    width = max([len(label) for label, _ in rows] + [10])
    lines = [f"  {title}:"]
    for label, m in rows:
        lines.append(f"    {label:<{width}}  " + "  ".join(
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
    """Delete one of your styles (built-in styles cannot be removed).

    A style that other styles were fine-tuned from stays until those are removed.
    """
    reg = registry()
    damaged = name in reg.damaged()
    style = None if damaged else reg.get(name)
    if style is not None and not style.builtin:
        reg.check_unused(style, "remove")  # before asking: the answer would not matter
    if (damaged or not style.builtin) and not yes:
        if not sys.stdin.isatty():
            fail(f"not removing '{name}' without confirmation: add -y (--yes) to confirm", EXIT_USAGE)
        if not click.confirm(f"Remove {'damaged' if damaged else 'user'} style '{name}'?"):
            fail(f"kept style '{name}' (-y confirms without asking)", EXIT_FAILED)
    reg.remove(name)
    click.echo(f"removed style '{name}'")


@command.command("import")
@click.argument("file", type=click.Path(path_type=Path))  # a folder: one csr error line, exit 1 (common.py)
@click.option("--name", required=True, metavar="NAME",
              help="Name of the new style: 1-64 letters, digits, '-' or '_'.")
@cond_size_option
@click.option("--description", default="", help="One line shown in 'csr styles list'.")
@overwrite_style_option
@handle_errors
def import_(file, name, cond_size, description, overwrite):
    """Add a CSRNet network trained elsewhere as one of your styles.

    FILE is a PyTorch .pth file holding the network's weights (its state_dict). Only the weights are read:
    a file that would run code when opened is refused. Give --cond-size the size the network was trained with.
    """
    style = registry().import_checkpoint(file, name, cond_size, description, overwrite)
    click.echo(f"imported '{style.name}' -> {style.path}")
