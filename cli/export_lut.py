"""``csr export-lut``: the look a style gives one photo, as a .cube LUT or a Hald CLUT PNG."""
from __future__ import annotations

from pathlib import Path

import click

from csr_core.errors import CsrError, printable

from .common import (EXIT_USAGE, device_option, fail, handle_errors, read_stdin, registry, strength_option,
                     style_option, WholeNumber)

EXAMPLES = """\b
Examples:
  csr export-lut in.jpg -o look.cube                     # 65^3 .cube (Resolve, Photoshop, ffmpeg)
  csr export-lut in.jpg --style C --strength 0.8 --size 33 -o look.cube
  csr export-lut in.jpg -o look.png                      # 64^3 Hald CLUT, level 8 (GIMP/G'MIC, darktable)
  cat in.jpg | csr export-lut - -o look.cube             # the photo from stdin
"""
CUBE_SIZE, HALD_LEVEL = 65, 8  # CUBE_SIZE: csr_core.lut.DEFAULT_SIZE, the lattice retouching uses


@click.command("export-lut", epilog=EXAMPLES)
@click.argument("photo")
@click.option("-o", "--output", required=True, help="A .cube file (65^3 by default: the lattice csr retouch "
              "uses), or a .png for a 16-bit Hald CLUT (level 8 by default: 64^3).")
@style_option
@strength_option
@click.option("--size", type=WholeNumber(2, 129), help=f"Lattice size of a .cube  [default: {CUBE_SIZE}]")
@click.option("--level", type=WholeNumber(2, 16),
              help=f"Hald CLUT level of a .png (level L: L^3 x L^3 pixels)  [default: {HALD_LEVEL}]")
@device_option
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@handle_errors
def command(photo, output, style, strength, size, level, device, overwrite):
    """Export the colour transform STYLE applies to PHOTO ('-': stdin) as a 3-D LUT.

    CSRNet adapts its look to each photo, so the LUT is exact for PHOTO and a consistent
    starting point for similar shots (apply it in any LUT-capable editor). The LUT assumes
    sRGB-encoded input and output. A .cube holds, by default, the very 65^3 lattice `csr retouch`
    uses; a Hald CLUT's lattice is its level squared (64^3 at level 8). Applied to PHOTO, either
    gives `csr retouch`'s result within 2/255.
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
    if photo != "-":
        _refuse_input(photo, output)
    if Path(output).exists() and not overwrite:
        fail(f"{output}: already exists (use --overwrite)")
    try:
        dev = resolve_device(device)
        look = registry().look(style)
    except CsrError as exc:
        fail(str(exc), EXIT_USAGE)
    rgb = load_photo(read_stdin() if photo == "-" else photo).rgb
    level = level or HALD_LEVEL
    n = (size or CUBE_SIZE) if kind == "cube" else level ** 2
    lut = look_lut(rgb, look, n, strength, dev)
    name = "<stdin>" if photo == "-" else photo
    title = f"csr {style} x{strength:g} for {Path(name).name}"
    try:
        if kind == "cube":
            write_cube(lut, output, title)
        else:
            write_hald(lut, output, level)
    except OSError as exc:
        raise CsrError(f"{output}: cannot write ({exc.strerror or exc})") from None
    what = f"{n}^3 .cube" if kind == "cube" else f"Hald CLUT level {level} ({n}^3)"
    click.echo(printable(f"wrote {output}: {what}, style {style!r} at strength {strength:g} for {name}"))


def _refuse_input(photo: str, output: str) -> None:
    """Fail when OUTPUT is PHOTO itself (by identity: links and other spellings included), as retouch
    does: the checks of an output that --overwrite never lifts."""
    from csr_core import batch

    try:
        src_id = batch.identity(photo)
    except OSError:  # an unreadable photo: loading it reports why
        src_id = None
    decided = batch.check_destination(batch.Job(photo, Path(output), src_id=src_id), overwrite=True,
                                      skip_existing=False, protected=set())
    if decided is not None:
        fail(decided.message)
