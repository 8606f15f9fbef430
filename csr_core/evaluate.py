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
from .errors import PairsError
from .pairs import LoadedPair, Pair, discover_pairs, fivek_id, load_pairs

BASELINES = ("autocontrast", "autocontrast-tone")
IDENTITY = "do-nothing"
METRICS = ("psnr", "ssim", "delta_e")


def autocontrast(rgb: np.ndarray, preserve_tone: bool = False) -> np.ndarray:
    """Pillow's autocontrast with 0.5% clipped at each end (the classic one-click fix): per channel, or
    with ``preserve_tone`` one stretch of the luminance for all channels (no colour shift)."""
    return np.asarray(ImageOps.autocontrast(Image.fromarray(to_uint8(rgb)), cutoff=0.5, preserve_tone=preserve_tone))


BASELINE_FNS = {"autocontrast": autocontrast, "autocontrast-tone": lambda rgb: autocontrast(rgb, True)}


def resolve_pairs(pairs: str | Path | Sequence[Pair | LoadedPair], expert: str | None = None,
                  include_test: bool = False, loose: list[Path] | None = None
                  ) -> tuple[list[Pair | LoadedPair], list[str], str]:
    """(pairs, problems, source name) from a folder or an explicit list of pairs (found, or already read);
    ``loose`` as in ``discover_pairs``."""
    if isinstance(pairs, (str, Path)):
        found, problems = discover_pairs(pairs, expert=expert, include_test=include_test, loose=loose)
        return found, problems, Path(pairs).resolve().name
    return list(pairs), [], "pairs"


def training_ids(card: dict) -> set[str]:
    """The pair/photo ids a style's card lists as its training data (FiveK ids or stems)."""
    data = card.get("training", {}).get("data", {})
    if not isinstance(data, dict):
        return set()
    ids = [*data.get("ids", []), *data.get("target_ids", []), *data.get("names", [])]
    return {str(i).casefold() for i in ids}


def trained_on_warning(pairs: Sequence[Pair], registry, spec: str) -> str | None:
    """A warning naming the scored pairs that the style (or a part of a mix) was trained on, or None."""
    from .registry import parse_spec
    seen = []
    for name, _ in parse_spec(spec):
        ids = training_ids(registry.get(name).card)
        hit = [p.name for p in pairs if p.name.casefold() in ids or (fivek_id(p.name) or "") in ids]
        if hit:
            shown = ", ".join(hit[:5]) + (f" and {len(hit) - 5} more" if len(hit) > 5 else "")
            seen.append(f"{len(hit)} of {len(pairs)} pairs ({shown}) are in style {name}'s training data")
    if not seen:
        return None
    return "; ".join(seen) + ": those scores are not validation (the card's validation scores are)"


def mean_scores(rows: Sequence[dict]) -> dict:
    """Mean of each metric over per-image score dicts."""
    return {k: float(np.mean([r[k] for r in rows])) for k in METRICS}


def evaluate(pairs: str | Path | Sequence[Pair | LoadedPair], style: str | Look | None = "auto", *,
             strength: float = 1.0, registry=None, baselines: Sequence[str] = (), expert: str | None = None,
             max_side: int | None = None, device: str = "cpu",
             on_progress: Callable[[dict], None] | None = None) -> dict:
    """Score ``style`` (a name, a mix such as 'C:0.7,auto:0.3', a Look, or None) on pairs.

    ``on_progress`` gets dicts with done (pairs scored or left out), total and name (None at the start).
    Returns ``{"methods": [...], "pairs": [{"name", "size", <method>: {psnr, ssim, delta_e}}],
    "mean": {<method>: {...}}, "warnings": [...], "problems": [...]}``; the do-nothing baseline
    (before vs after) is always included.
    """
    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baseline(s) {sorted(unknown)}; choose from {BASELINES}")
    found, problems, source = resolve_pairs(pairs, expert, include_test=True)
    look, label, warnings = None, None, []
    if style is not None:
        if isinstance(style, Look):
            look, label = style, "style"
        else:
            from .pipeline import default_registry
            registry = registry or default_registry()
            look, label = registry.look(style), str(style)
            leak = trained_on_warning(found, registry, label)
            if leak:
                warnings.append(leak)
    methods = [IDENTITY, *baselines] + ([label] if look else [])
    rows, discovered = [], len(problems)
    if on_progress:
        on_progress(dict(done=0, total=len(found), name=None))
    for pair in load_pairs(found, max_side, problems):
        warnings += pair.warnings
        b8, a8 = pair.before, pair.after
        row = {"name": pair.name, "size": [b8.shape[1], b8.shape[0]], IDENTITY: score(b8, a8)}
        for b in baselines:
            row[b] = score(BASELINE_FNS[b](b8), a8)
        if look:
            row[label] = score(retouch_array(b8, look, strength, device, exact=True), a8)
        rows.append(row)
        if on_progress:
            on_progress(dict(done=len(rows) + len(problems) - discovered, total=len(found), name=pair.name))
    if not rows:
        last = f" ({problems[-1]})" if problems else ""
        raise PairsError(f"{source}: none of the {len(found)} pairs could be used{last}")
    mean = {m: mean_scores([r[m] for r in rows]) for m in methods}
    return dict(methods=methods, style=label, strength=strength, pairs=rows, mean=mean,
                warnings=warnings, problems=problems)
