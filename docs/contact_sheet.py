"""Render a contact sheet: each photo before and after a few styles (and its target, for pairs).

    python docs/contact_sheet.py                        # docs/contact_sheet.jpg from the bundled samples
    python docs/contact_sheet.py --pairs ../shared/data/fivek-c-dev --out /tmp/fivek_sheet.jpg

With --pairs every row also shows autocontrast and the target, each labelled with its PSNR to the
target; a style's score on a pair it was trained on is flagged "(trained on it)". FiveK images are research-only: render them outside the repository, never commit them.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from csr_core.evaluate import autocontrast  # noqa: E402
from csr_core.fsutil import write_bytes_atomic  # noqa: E402
from csr_core.metrics import psnr, to_uint8  # noqa: E402
from csr_core.pipeline import default_registry, retouch  # noqa: E402

CELL, LABEL = 240, 18


def _cell(rgb: np.ndarray, text: str) -> Image.Image:
    im = Image.fromarray(to_uint8(rgb))
    im.thumbnail((CELL, CELL), Image.Resampling.LANCZOS)
    out = Image.new("RGB", (CELL, im.height + LABEL), "white")  # the label right above the picture
    out.paste(im, ((CELL - im.width) // 2, LABEL))
    ImageDraw.Draw(out).text((4, 3), text, fill="black")
    return out


def rows_from_samples(folder: Path, styles: list[str]) -> list[list[Image.Image]]:
    from csr_core.image_io import load_photo

    rows = []
    for path in sorted(folder.glob("*.jpg")):
        rgb = load_photo(path).rgb
        rows.append([_cell(rgb, f"{path.stem}: before")] + [_cell(retouch(rgb, s), s) for s in styles])
    return rows


def _training_ids(spec: str) -> set[str]:
    """Pair ids/names in the training data of any style in ``spec`` (in-sample scores are flagged)."""
    out = set()
    for part in spec.split(","):
        data = default_registry().get(part.split(":")[0].strip()).card.get("training", {}).get("data", {})
        if isinstance(data, dict):
            out |= set(data.get("ids", [])) | set(data.get("names", []))
    return out


def rows_from_pairs(folder: Path, styles: list[str], expert: str | None, limit: int) -> list[list[Image.Image]]:
    from csr_core.pairs import discover_pairs, load_pair

    rows = []
    for pair in discover_pairs(folder, expert=expert)[0][:limit]:
        before, after, _ = load_pair(pair)
        b8, a8 = to_uint8(before), to_uint8(after)
        cells = [_cell(b8, f"{pair.name} input {psnr(b8, a8):.1f} dB"),
                 _cell(autocontrast(b8), f"autocontrast {psnr(autocontrast(b8), a8):.1f} dB")]
        for s in styles:
            out = retouch(b8, s)
            seen = " (trained on it)" if pair.name in _training_ids(s) else ""
            cells.append(_cell(out, f"{s} {psnr(out, a8):.1f} dB{seen}"))
        rows.append(cells + [_cell(a8, "target")])
    return rows


def sheet(rows: list[list[Image.Image]]) -> Image.Image:
    cols = max(len(r) for r in rows)
    heights = [max(cell.height for cell in row) for row in rows]  # landscape rows are shorter
    out = Image.new("RGB", (cols * CELL, sum(heights)), "white")
    for y, row in zip(np.cumsum([0] + heights[:-1]).tolist(), rows):
        for x, cell in enumerate(row):
            out.paste(cell, (x * CELL, y))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, help="render before/after pairs instead of the bundled samples")
    ap.add_argument("--expert", help="FiveK expert folder (A-E) when --pairs has several")
    ap.add_argument("--style", action="append", help="style or mix to show (repeatable)")
    ap.add_argument("--limit", type=int, default=13, help="most pairs to render")
    ap.add_argument("--out", type=Path, help="output JPEG (default docs/contact_sheet.jpg for samples)")
    args = ap.parse_args(argv)
    names = default_registry().names()
    styles = args.style or ["auto"] + (["C", "C:0.5,auto:0.5"] if "C" in names else [])
    if args.pairs:
        if args.out is None or REPO in args.out.resolve().parents:
            ap.error("--pairs needs --out outside the repository (pair images may not be redistributable)")
        rows = rows_from_pairs(args.pairs, styles, args.expert, args.limit)
    else:
        rows = rows_from_samples(REPO / "samples", styles)
    buf = io.BytesIO()
    sheet(rows).save(buf, "JPEG", quality=88)
    out = args.out or REPO / "docs" / "contact_sheet.jpg"
    write_bytes_atomic(out, buf.getvalue())
    print(f"wrote {out} ({len(rows)} rows: before, {', '.join(styles)})")


if __name__ == "__main__":
    main()
