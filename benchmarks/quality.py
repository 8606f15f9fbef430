"""Quality of every built-in style and of the classical one-click baselines on real expert-C pairs.

    python benchmarks/quality.py [--json]

Pairs: the 14 real MIT-Adobe FiveK expert-C pairs in ../shared/data (fivek-c-dev: 13, fivek-c-extra: 1).
Scores: PSNR and CIEDE2000 on 8-bit sRGB, per pair then the mean, each method through the same
``csr_core.evaluate`` path a user runs (``csr eval``). Protocol, printed with the table:
  - ``auto-v1`` is never trained on any FiveK pair, so its scores on these pairs are validation; ``auto``
    is auto-v1 calibrated to one strength picked on these pairs: its row prints the leave-one-out score
    of that choice beside it.
  - ``C`` is trained on these pairs: its row here is in-sample and flagged; its validation score is the
    k-fold one on its card (each fold's pseudo-pairs built without the held-out pairs' maps), printed
    beside it. ``python tools/build_c.py`` rebuilds C with that protocol.
  - Baselines: Pillow ``ImageOps.autocontrast(cutoff=0.5)`` per channel and with ``preserve_tone=True``;
    AutoLevels (PyPI) when it is installed.
Not a test: it needs ../shared (skips with a message where it is absent).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PAIR_DIRS = [REPO.parent / "shared" / "data" / d for d in ("fivek-c-dev", "fivek-c-extra")]
BASELINES = ("autocontrast", "autocontrast-tone")


def _merge(results: list[dict]) -> dict:
    rows = [r for res in results for r in res["pairs"]]
    return dict(rows=rows, warnings=[w for res in results for w in res["warnings"]])


def _mean(rows, method, metric):
    return float(np.mean([r[method][metric] for r in rows]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not all(d.is_dir() for d in PAIR_DIRS):
        print("quality: ../shared/data/fivek-c-dev and fivek-c-extra are absent; nothing to score")
        return 0
    from csr_core.evaluate import evaluate
    from csr_core.pipeline import default_registry
    reg = default_registry()
    builtins = [s.name for s in reg.styles() if s.builtin]
    table, protocol = {}, {}
    base = _merge([evaluate(d, None, baselines=BASELINES) for d in PAIR_DIRS])
    rows = base["rows"]
    for m in ("do-nothing", *BASELINES):
        table[m] = [r[m] for r in rows]
        protocol[m] = "no training"
    for name in builtins:
        res = _merge([evaluate(d, name, registry=reg) for d in PAIR_DIRS])
        table[name] = [r[name] for r in res["rows"]]
        card = reg.get(name).card
        val = card.get("validation", {})
        if res["warnings"]:
            protocol[name] = f"IN-SAMPLE (trained on these pairs); validation on its card: " \
                             f"{val.get('method', '?').split(';')[0]} {val.get('mean', {}).get('psnr', float('nan')):.2f} dB"
        elif "calibration" in card.get("training", {}):
            cal = card["training"]["calibration"]
            protocol[name] = (f"never trained on a FiveK pair, but its strength ({cal['chosen_strength']:g}) was picked "
                              f"on these pairs; picked by leave-one-out: {cal['leave_one_out']['psnr']:.2f} dB")
        else:
            protocol[name] = "validation (never trained on these pairs)"
    ref = [s["psnr"] for s in table["autocontrast-tone"]]
    names = [r["name"] for r in rows]
    out = {m: dict(psnr=float(np.mean([s["psnr"] for s in v])), delta_e=float(np.mean([s["delta_e"] for s in v])),
                   wins_vs_autocontrast_tone=int(sum(s["psnr"] > b for s, b in zip(v, ref))),
                   per_pair={n: round(s["psnr"], 3) for n, s in zip(names, v)}, protocol=protocol[m])
           for m, v in table.items()}
    if args.json:
        print(json.dumps(dict(pairs=names, methods=out), indent=1))
        return 0
    print(f"{len(names)} real FiveK expert-C pairs: {', '.join(names)}")
    print(f"{'method':<20} {'PSNR dB':>8} {'dE2000':>7} {'wins':>6}  protocol")
    for m, r in out.items():
        print(f"{m:<20} {r['psnr']:8.2f} {r['delta_e']:7.2f} {r['wins_vs_autocontrast_tone']:>3}/{len(names)}  {r['protocol']}")
    print("wins: pairs on which the method's PSNR beats autocontrast(cutoff=0.5, preserve_tone=True)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
