"""The yardstick: score a style on before/after pairs against do-nothing (and autocontrast) baselines.

Every score is PSNR / SSIM / CIEDE2000 on 8-bit sRGB (``csr_core.metrics``), per pair and the mean.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageOps

from .inference import Look, retouch_array
from .metrics import score, to_uint8
from .pairs import Pair, discover_pairs, load_pair

BASELINES = ("autocontrast",)
IDENTITY = "do-nothing"
METRICS = ("psnr", "ssim", "delta_e")


def autocontrast(rgb: np.ndarray) -> np.ndarray:
    """Pillow's per-channel autocontrast with 0.5% clipped at each end (the classic one-click fix)."""
    return np.asarray(ImageOps.autocontrast(Image.fromarray(to_uint8(rgb)), cutoff=0.5))


def resolve_pairs(pairs: str | Path | Sequence[Pair], expert: str | None = None) -> tuple[list[Pair], list[str], str]:
    """(pairs, problems, source name) from a folder or an explicit list of pairs."""
    if isinstance(pairs, (str, Path)):
        found, problems = discover_pairs(pairs, expert=expert)
        return found, problems, Path(pairs).resolve().name
    return list(pairs), [], "pairs"


def mean_scores(rows: Sequence[dict]) -> dict:
    """Mean of each metric over per-image score dicts."""
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def evaluate(pairs: str | Path | Sequence[Pair], style: str | Look | None = "auto", *, strength: float = 1.0,
             registry=None, baselines: Sequence[str] = (), expert: str | None = None,
             max_side: int | None = None, device: str = "cpu",
             on_progress: Callable[[dict], None] | None = None) -> dict:
    """Score ``style`` (a name, a mix such as 'C:0.7,auto:0.3', a Look, or None) on pairs.

    Returns ``{"methods": [...], "pairs": [{"name", "size", <method>: {psnr, ssim, delta_e}}],
    "mean": {<method>: {...}}, "warnings": [...], "problems": [...]}``; the do-nothing baseline
    (before vs after) is always included.
    """
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baseline(s) {sorted(unknown)}; choose from {BASELINES}")
    found, problems, _ = resolve_pairs(pairs, expert)
    look, label = None, None
    if style is not None:
        if isinstance(style, Look):
            look, label = style, "style"
        else:
            from .pipeline import default_registry
            look, label = (registry or default_registry()).look(style), str(style)
    methods = [IDENTITY, *baselines] + ([label] if look else [])
    rows, warnings = [], []
    for i, pair in enumerate(found):
        before, after, warn = load_pair(pair, max_side=max_side)
        warnings += warn
        b8, a8 = to_uint8(before), to_uint8(after)
        row = {"name": pair.name, "size": [b8.shape[1], b8.shape[0]], IDENTITY: score(b8, a8)}
        if "autocontrast" in baselines:
            row["autocontrast"] = score(autocontrast(b8), a8)
        if look:
            row[label] = score(retouch_array(b8, look, strength, device, exact=True), a8)
        rows.append(row)
        if on_progress:
            on_progress(dict(done=i + 1, total=len(found), name=pair.name))
    mean = {m: mean_scores([r[m] for r in rows]) for m in methods}
    return dict(methods=methods, style=label, strength=strength, pairs=rows, mean=mean,
                warnings=warnings, problems=problems)
