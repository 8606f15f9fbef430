"""``csr export-onnx``: a style as an ONNX graph, to run CSRNet from any language's ONNX runtime."""
from __future__ import annotations

from pathlib import Path

import click

from csr_core.errors import CsrError

from .common import EXIT_USAGE, fail, handle_errors, registry

EXAMPLES = """\b
Examples:
  csr export-onnx auto -o auto.onnx
  csr export-onnx C -o C.onnx --overwrite
"""


@click.command("export-onnx", epilog=EXAMPLES)
@click.argument("style")
@click.option("-o", "--output", required=True, help="The .onnx file to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@handle_errors
def command(style, output, overwrite):
    """Export STYLE as an ONNX model, to run it from other programs and languages.

    The model takes two inputs, a small copy of the photo (long side 256 for the built-in styles) and
    the photo's pixels as rows of RGB values from 0 to 1, and returns the retouched pixels. docs/onnx.md
    in csr's source repository shows how to feed it, with an example in JavaScript.

    \b
    Needs the onnx extra: pip install "csr-retouch[onnx]"
    """
    from csr_core.onnx_export import export

    if Path(output).suffix.lower() != ".onnx":
        fail(f"{output}: the output must be a .onnx file", EXIT_USAGE)
    if Path(output).exists() and not overwrite:
        fail(f"{output}: already exists (use --overwrite)")
    if set(style) & set(",:"):
        fail(f"{style}: export-onnx takes one style, not a mix or a weight; export each style on its own "
             "(csr export-lut bakes a mix's look for one photo)", EXIT_USAGE)
    reg = registry()
    try:
        info = reg.get(style)
    except CsrError as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        size = export(reg.net(info), info.cond_size, output, info.name)
    except OSError as exc:
        raise CsrError(f"{output}: cannot write ({exc.strerror or exc})") from None
    click.echo(f"wrote {output}: style {info.name!r} ({size / 1e3:.0f} kB), condition input long side {info.cond_size}")
