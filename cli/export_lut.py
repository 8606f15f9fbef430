"""``csr export-lut``: the look a style gives one photo, as a .cube LUT or a Hald CLUT PNG."""
from __future__ import annotations

from pathlib import Path

import click

from csr_core import MAX_STRENGTH
from csr_core.errors import CsrError, printable

from .common import EXIT_USAGE, fail, handle_errors, registry

EXAMPLES = """\b
Examples:
  csr export-lut in.jpg -o look.cube                     # 65^3 .cube (Resolve, Photoshop, ffmpeg)
  csr export-lut in.jpg --style C --strength 0.8 --size 33 -o look.cube
  csr export-lut in.jpg -o look.png                      # Hald CLUT level 8 (GIMP/G'MIC, darktable)
"""
CUBE_SIZE, HALD_LEVEL = 65, 8  # CUBE_SIZE: csr_core.lut.DEFAULT_SIZE, the lattice retouching uses


@click.command("export-lut", epilog=EXAMPLES)
@click.argument("photo")
@click.option("-o", "--output", required=True, help="A .cube file, or a .png for a 16-bit Hald CLUT.")
@click.option("-s", "--style", default="auto", show_default=True,
              help="Style name or a mix like 'C:0.7,auto:0.3' (see: csr styles list).")
@click.option("--strength", type=click.FloatRange(0, MAX_STRENGTH), default=1.0, show_default=True,
              help="0 = unchanged, 1 = full style, up to 2 = exaggerated.")
@click.option("--size", type=click.IntRange(2, 129), help=f"Lattice size of a .cube  [default: {CUBE_SIZE}]")
@click.option("--level", type=click.IntRange(2, 16),
              help=f"Hald CLUT level of a .png (level L: L^3 x L^3 pixels)  [default: {HALD_LEVEL}]")
@click.option("--device", type=click.Choice(["cpu", "cuda", "mps", "auto"]), default="cpu", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@handle_errors
def command(photo, output, style, strength, size, level, device, overwrite):
    """Export the colour transform STYLE applies to PHOTO as a 3-D LUT.

    CSRNet adapts its look to each photo, so the LUT is exact for PHOTO and a consistent
    starting point for similar shots (apply it in any LUT-capable editor). The LUT assumes
    sRGB-encoded input and output; at the default size it reproduces `csr retouch`.
    """
    from csr_core.image_io import load_photo
    from csr_core.inference import resolve_device
    from csr_core.inference import look_lut
    from csr_core.lut import write_cube, write_hald

    kind = {".cube": "cube", ".png": "hald"}.get(Path(output).suffix.lower())
    if kind is None:
        fail(f"{output}: choose a .cube (3-D LUT) or .png (Hald CLUT) output", EXIT_USAGE)
    if kind == "cube" and level:
        fail("--level is for Hald .png output; a .cube takes --size", EXIT_USAGE)
    if kind == "hald" and size:
        fail("--size is for .cube output; a Hald CLUT's size is set by --level", EXIT_USAGE)
    if Path(output).exists() and not overwrite:
        fail(f"{output}: already exists (use --overwrite)")
    try:
        dev = resolve_device(device)
        look = registry().look(style)
    except CsrError as exc:
        fail(str(exc), EXIT_USAGE)
    rgb = load_photo(photo).rgb
    level = level or HALD_LEVEL
    n = (size or CUBE_SIZE) if kind == "cube" else level ** 2
    lut = look_lut(rgb, look, n, strength, dev)
    title = f"csr {style} x{strength:g} for {Path(photo).name}"
    try:
        if kind == "cube":
            write_cube(lut, output, title)
        else:
            write_hald(lut, output, level)
    except OSError as exc:
        raise CsrError(f"{output}: cannot write ({exc.strerror or exc})") from None
    what = f"{n}^3 .cube" if kind == "cube" else f"Hald CLUT level {level} ({n}^3)"
    click.echo(printable(f"wrote {output}: {what}, style {style!r} at strength {strength:g} for {photo}"))
