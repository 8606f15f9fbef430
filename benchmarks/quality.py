"""Quality of every built-in style and the baselines on three sets of real FiveK expert-C pairs.

    python benchmarks/quality.py [--json]

Sets (in ../shared/data; PSNR on 8-bit sRGB per pair, then the mean, through ``csr eval``'s code):
  - 14 pairs: fivek-c-dev (13) + fivek-c-extra (1), FiveK's train range. Styles trained on them show
    their k-fold validation score from their card (each fold's pseudo-pairs built without the held-out
    pairs' maps), never the in-sample one.
  - fivek-c-val: 11 pairs of FiveK's test split (a4501-a5000): never trained on; recipes, step counts and
    calibrations were chosen on it together with the k-fold, so it is validation, not a test.
  - renderings: 11 train-range pairs whose inputs are other renderings (under-exposed, raw decodes).
Baselines: do nothing; Pillow ``ImageOps.autocontrast(cutoff=0.5)``, per channel and with
``preserve_tone=True``; the plain recipe (``python tools/build_c.py --plain`` builds it as the user style
'plain-recipe'; its row is left out until then). Not a test: it needs ../shared (skips where absent).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "data"
SETS = {"14 pairs": ("fivek-c-dev", "fivek-c-extra"), "fivek-c-val": ("fivek-c-val",),
        "renderings": ("fivek-c-renderings",)}
BASELINES = ("autocontrast", "autocontrast-tone")
PLAIN = "plain-recipe"


def _rows(dirs, spec, registry) -> list[dict]:
    from csr_core.evaluate import evaluate
    return [r for d in dirs for r in evaluate(DATA / d, spec, registry=registry, baselines=BASELINES)["pairs"]]


def _kfold(card: dict) -> float | None:
    """A style's k-fold score on the 14 pairs, from its card (None when it has none)."""
    v = card.get("scores", {}).get("validation", {})
    return v.get("psnr") if "fold" in str(card.get("validation", {}).get("method", "")) else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not all((DATA / d).is_dir() for dirs in SETS.values() for d in dirs):
        print("quality: ../shared/data lacks the FiveK pair sets; nothing to score")
        return 0
    from csr_core.pipeline import default_registry
    reg = default_registry()
    styles = [s.name for s in reg.styles() if s.builtin] + ([PLAIN] if PLAIN in reg.names() else [])
    table: dict[str, dict] = {}
    for set_name, dirs in SETS.items():
        base = _rows(dirs, None, reg)
        ref = [r["autocontrast-tone"]["psnr"] for r in base]
        methods = {m: [r[m]["psnr"] for r in base] for m in ("do-nothing", *BASELINES)}
        for name in styles:
            rows = _rows(dirs, name, reg)
            methods[name] = [r[name]["psnr"] for r in rows]
        for m, v in methods.items():
            cell = dict(psnr=round(float(np.mean(v)), 2), wins=int(sum(a > b for a, b in zip(v, ref))), pairs=len(v))
            if set_name == "14 pairs" and m in styles and (k := _kfold(reg.get(m).card)) is not None:
                cell = dict(psnr=round(k, 2), in_sample=cell["psnr"], pairs=len(v), protocol="k-fold")
            table.setdefault(m, {})[set_name] = cell
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    print("PSNR dB (wins over autocontrast-tone, of the set's pairs)")
    print(f"{'method':<20}" + "".join(f"{s:>18}" for s in SETS))
    for m, cells in table.items():
        text = [f"{c['psnr']:6.2f} {'k-fold' if c.get('protocol') else '(' + str(c['wins']) + '/' + str(c['pairs']) + ')':>8}"
                for c in cells.values()]
        print(f"{m:<20}" + "".join(f"{t:>18}" for t in text))
    print("14 pairs: styles trained on them show their card's k-fold score; fivek-c-val chose recipes and")
    print("calibrations (validation, never training); renderings: inputs no style was trained on.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
