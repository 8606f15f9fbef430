"""``csr styles``: list, show, import and remove styles in the shared registry."""
from __future__ import annotations

import json
from pathlib import Path

import click

from csr_core.errors import printable
from csr_core.registry import score_summary

from .common import handle_errors, registry


@click.group("styles")
def command() -> None:
    """Manage the style registry (built-in and your own styles)."""



@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def list_styles(as_json):
    """List every style with its origin and description."""
    styles = registry().styles()
    if as_json:
        click.echo(json.dumps([{**s.card, "name": s.name, "builtin": s.builtin} for s in styles], indent=2))
        return
    width = max([len(s.name) for s in styles] + [4])
    for s in styles:
        origin = "built-in" if s.builtin else "user"
        base = f" (on {s.card['base']['name']})" if s.kind == "condition" else ""
        score = score_summary(s.card)
        line = f"{s.name:<{width}}  {origin:<8}  {s.description}{base}" + (f"  [{score}]" if score else "")
        click.echo(printable(line))  # user cards are untrusted: no raw control characters
    if not styles:
        click.echo("no styles installed")


@command.command("show")
@click.argument("name")
@handle_errors
def show(name):
    """Show a style's card: provenance, training data and recipe, scores, licence."""
    style = registry().get(name)
    card = {**style.card, "name": style.name, "origin": "built-in" if style.builtin else "user", "path": str(style.path)}
    click.echo(json.dumps(card, indent=2))


@command.command("remove")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def remove(name, yes):
    """Delete one of your styles (built-in styles cannot be removed)."""
    reg = registry()
    style = reg.get(name)
    if not style.builtin and not yes:
        click.confirm(f"Remove user style '{name}'?", abort=True)
    reg.remove(name)
    click.echo(f"removed style '{name}'")


@command.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name of the new style.")
@click.option("--cond-size", type=click.IntRange(32, 4096), default=256, show_default=True,
              help="Long side of the copy the condition net sees.")
@click.option("--description", default="", help="One line shown in 'csr styles list'.")
@handle_errors
def import_(file, name, cond_size, description):
    """Import a CSRNet .pth state_dict (loaded safely, weights only) as a user style."""
    style = registry().import_checkpoint(file, name, cond_size, description)
    click.echo(f"imported '{style.name}' -> {style.path}")
