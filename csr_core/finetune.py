"""Condition-only fine-tuning: a new style from a few before/after pairs on a frozen base network.

Only the condition net + GFM learn (by default the condition convs stay frozen too, so their features
are computed once per augmented view and a step costs little); an L2 pull toward the starting weights
and early stopping keep a few pairs from being memorised. Validation is honest: k-fold (k = min(5, n))
below ``kfold_below`` pairs, whose mean curve picks the step count of the final run on all pairs, or
a ~20% held-out split above it. Nothing is written until the style is complete.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .errors import PairsError, StyleError
from .evaluate import autocontrast, mean_scores, resolve_pairs
from .finished import load_finished
from .engine import Net
from .inference import Look, retouch_array
from .metrics import score, to_uint8
from .model import CSRNet, condition_state, from_state, numpy_state
from .pairs import LoadedPair, Pair, load_pairs
from .pseudo import PseudoRecipe, fit_inverse_map, pseudo_pairs
from .fsutil import write_bytes_atomic
from .registry import Style, licence_label
from .threads import cores, default_workers
from .train import RealPairs, TrainConfig, fit, fixed_pixels, holdout_split, pixel_psnr, trainable_parameters

MIN_PAIRS = 5
MIN_PAIRS_FINISHED = 3  # with finished photos: enough colour maps to blend
#: What each ``FinetuneConfig.train`` tunes, in the words of the card ('bias': the GFM layers' biases; 'gfm': the
#: GFM layers; 'all': the condition network and its GFM layers; docs/training.md names the parts).
TRAINED = {"bias": "the fixed part of the adjustments it makes from its reading of the whole photo",
           "gfm": "the part that turns its reading of the whole photo into adjustments",
           "all": "the part that reads the whole photo and turns it into adjustments"}


@dataclass
class FinetuneConfig:
    steps: int = 600          # most steps of one run (early stopping usually ends it sooner)
    batch: int = 8
    lr: float = 1e-3          # constant: the k-fold step count then transfers to the final run
    pixels: int = 4096        # sampled pixels per pair per step
    eval_every: int = 20
    patience: int = 5         # evaluations without improvement before a run stops
    anchor: float = 0.0       # L2 pull toward the starting weights (per unit of squared distance)
    train: str = "gfm"        # 'bias': GFM biases only (one global offset), 'gfm': GFM, 'all': + condition convs
    views: int = 8            # augmented condition views per pair (flip + mild crops)
    max_side: int = 512
    val_pixels: int = 16384   # pixels per validation pair for the PSNR curve
    kfold_below: int = 20     # k-fold under this many pairs, else a held-out split
    folds: int = 5
    holdout: float = 0.2
    seed: int = 0
    threads: int | None = None  # torch CPU threads while tuning (process-wide); None: this process's cores, up to 8
    # With finished photos (``finished=``): pseudo-pairs made with the real pairs' inverse colour maps.
    pseudo_per: int = 2           # pseudo-inputs per finished photo
    pseudo_exposure: float = 0.15  # each one's exposure factor is drawn from 1 +- this
    pseudo_exposure_ev: float = 0.0  # ... times 2**this (C: -0.1, 7% darker: FiveK's photos are darker than its pairs)
    pseudo_stretch: float = 2.0    # each one's change to the photo scaled by 1/sqrt(2)..2 (log-uniform): edits
                                   # milder and, more often, stronger than the pairs show (typical photos need more)
    pseudo_views: int = 2         # condition views per pseudo-pair (the photo and its mirror)
    pseudo_ema: float = 0.99      # the weights' moving average is validated and kept (a smooth curve)
    pseudo_steps: int = 1200      # steps of every run on pseudo-pairs (a fixed count; k-fold scores it)
    finished_side: int = 256      # finished photos are read at this long side (only their colours matter)
    finished_limit: int = 400     # at most this many finished photos (an even sample of a larger folder)


class _Features(nn.Module):
    """Stands in for a frozen condition net: its input is the precomputed feature map (N x C x 1 x 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class _Tuner:
    """Trains copies of a start model on subsets of the loaded pairs (plus, per run, extra pairs)."""

    def __init__(self, start: CSRNet, loaded: Sequence[tuple[np.ndarray, np.ndarray]], cond_size: int,
                 cfg: FinetuneConfig, on_step: Callable[[dict], None]):
        self.start, self.cfg, self.on_step, self.cond_size = start, cfg, on_step, cond_size
        self.data = self.dataset(loaded, cfg.views)
        self.val = [(self.data.view(i, 0), *fixed_pixels(self.data, i, cfg.val_pixels, cfg.seed))
                    for i in range(len(self.data))]

    def dataset(self, images: Sequence[tuple[np.ndarray, np.ndarray]], views: int, seed: int = 0,
                on_views: Callable[[int], None] | None = None) -> RealPairs:
        """Pairs in memory with their condition views (frozen condition convs: their features, in batches;
        ``on_views`` is called with the number of views in each batch once it is done)."""
        encode = None if self.cfg.train == "all" else (lambda vs: self._features(vs, on_views))
        return RealPairs(images, self.cond_size, self.cfg.pixels, views=views, seed=self.cfg.seed + seed,
                         encode=encode)

    def _features(self, views: list[torch.Tensor], on_views: Callable[[int], None] | None = None) -> list[torch.Tensor]:
        """Frozen condition-net features (C x 1 x 1 each) of condition views, batched by size."""
        out: list = [None] * len(views)
        by_shape: dict[tuple, list[int]] = {}
        for i, v in enumerate(views):
            by_shape.setdefault(tuple(v.shape), []).append(i)
        with torch.no_grad(), _threads(cores()):  # batched convs, unlike the tiny steps, use every core
            for idx in by_shape.values():
                for k in range(0, len(idx), 16):
                    part = idx[k:k + 16]
                    feats = self.start.cond_net(torch.cat([views[i] for i in part]))
                    for i, f in zip(part, feats):
                        out[i] = f[None, :, None, None].clone()
                    if on_views:
                        on_views(len(part))
        return out

    def model(self) -> CSRNet:
        """A trainable copy of the start model (condition convs replaced by their features unless trained)."""
        m = copy.deepcopy(self.start)
        if self.cfg.train != "all":
            m.cond_net = _Features()
        return m

    def restore(self, m: CSRNet) -> CSRNet:
        """The full network (real condition convs back in place), eval mode, frozen."""
        if self.cfg.train != "all":
            m.cond_net = copy.deepcopy(self.start.cond_net)
        for p in m.parameters():
            p.requires_grad_(False)
        return m.eval()

    def run(self, train: Sequence[int], val: Sequence[int], steps: int, patience: int,
            extra: RealPairs | None = None) -> tuple[CSRNet, dict]:
        """Fit on pairs ``train`` (or on ``extra`` instead: pseudo-pairs); the history has per-eval ``curve``
        [(step, [psnr per val pair])] and snapshots."""
        cfg = self.cfg
        tc = TrainConfig(steps=steps, batch=cfg.batch, lr=cfg.lr, lr_min=cfg.lr, pixels=cfg.pixels,
                         seed=cfg.seed, eval_every=cfg.eval_every if val else steps,
                         checkpoint_every=10 ** 9, patience=patience if val else 0, condition_only=True,
                         ema=cfg.pseudo_ema if extra is not None else 0.0)
        model = self.model()
        sub = self.data.subset(train) if extra is None else extra  # pseudo-pairs: the pairs only validate
        curve, snaps = [], {}

        def validate(m: CSRNet) -> float:
            if not val:
                return 0.0
            step = min(curve[-1][0] + cfg.eval_every, steps) if curve else 0  # fit's evaluation rule
            scores = [pixel_psnr(m, *self.val[i]) for i in val]
            curve.append((step, scores))
            snaps[step] = {k: v.clone() for k, v in condition_state(m.state_dict()).items()}
            return float(np.mean(scores))

        if val:
            validate(model)  # step 0: the start weights
        hooks = self._hooks(model)
        try:
            hist = fit(model, sub.draw, tc, validate, on_progress=self.on_step)
        finally:
            for h in hooks:
                h.remove()
        return model, dict(hist, curve=curve, snaps=snaps)

    def _hooks(self, model: CSRNet) -> list:
        """Gradient hooks: the L2 pull toward the start weights; zero gradients for frozen GFM weights."""
        cfg, hooks = self.cfg, []
        trainable_parameters(model, condition_only=True)
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if cfg.train == "bias" and not name.endswith(".bias"):
                hooks.append(p.register_hook(torch.zeros_like))  # Adam never moves a zero-gradient weight
            elif cfg.anchor:
                p0 = p.detach().clone()
                hooks.append(p.register_hook(lambda g, p=p, p0=p0: g + cfg.anchor * (p.detach() - p0)))
        return hooks


@contextlib.contextmanager
def _threads(n: int, exactly: bool = False):
    """torch's CPU threads raised to ``n`` (``exactly``: set to ``n``) for a while (process-wide)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n if exactly else max(before, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _folds(n: int, k: int, seed: int) -> list[list[int]]:
    order = np.random.default_rng([seed, n, k]).permutation(n)
    return [sorted(order[f::k].tolist()) for f in range(k)]


def _summary(per: dict[int, dict]) -> dict:
    rows = list(per.values())
    keys = ("style", "base", "do-nothing", "autocontrast") + (("pairs_only",) if "pairs_only" in rows[0] else ())
    m = {k: mean_scores([r[k] for r in rows]) for k in keys}
    extra = {"pairs_only": m["pairs_only"]} if "pairs_only" in m else {}
    return dict(m["style"], baseline_psnr=m["do-nothing"]["psnr"], baseline_ssim=m["do-nothing"]["ssim"],
                baseline_delta_e=m["do-nothing"]["delta_e"], base_style=m["base"], autocontrast=m["autocontrast"],
                images=len(rows), **extra)


def finetune_style(pairs: str | Path | list[Pair] | list[LoadedPair], name: str, base: str = "auto", *, expert=None,
                   registry=None, on_progress: Callable[[dict], None] | None = None,
                   config: FinetuneConfig | None = None, overwrite: bool = False,
                   finished: str | Path | Sequence[np.ndarray] | None = None) -> Style:
    """Fine-tune the condition net + GFM of ``base`` on before/after pairs; save and return the new Style.

    ``pairs``: a folder, found pairs, or pairs already read (``pairs.load_pairs``); a pair that cannot be read
    or aligned is left out, and named in the card's problems.
    ``finished``: a folder of finished photos in the same look (or the photos, uint8 arrays): the pairs'
    inverse colour maps turn them into pseudo-pairs that the style learns from (``csr_core.pseudo``),
    while the real pairs give those maps and validate.

    ``on_progress`` gets dicts with step (done so far, all runs), steps (an upper bound of the total that
    only shrinks), loss and phase; with a held-out split, val_psnr when a validation ran; in k-fold, once the
    first fold is done, held_out (psnr, pairs, of): the pooled score of every pair held out so far, at the step
    count validation would choose now (on sampled pixels), then, from the final run on, the validation score of
    the card. Between runs, while finished photos are turned into a run's examples and while the held-out pairs
    are scored on whole photos (seconds each), dicts with no loss but task (what is being done, in words) and
    task_done (the fraction of it done) come at each whole percent. The last one has step == steps.
    """
    cfg = config or FinetuneConfig()
    with _threads(cfg.threads or default_workers(), exactly=True):
        return _finetune(pairs, name, base, expert, registry, on_progress, cfg, overwrite, finished)


def _finetune(pairs, name, base, expert, registry, on_progress, cfg: FinetuneConfig, overwrite: bool,
              finished) -> Style:
    from .pipeline import default_registry

    if cfg.train not in TRAINED:
        raise ValueError(f"FinetuneConfig.train must be one of {sorted(TRAINED)}, not {cfg.train!r}")
    reg = registry or default_registry()
    reg.check_new_name(name, overwrite)
    start_style = reg.get(base)
    base_style = reg._base_style(start_style)

    if not isinstance(pairs, (str, Path)) and pairs and all(isinstance(p, LoadedPair) for p in pairs):
        loaded, problems, source = list(pairs), [], "pairs"
        befores = [p.pair.before for p in loaded]
    else:
        found, problems, source = resolve_pairs(pairs, expert)
        check_enough_pairs(len(found), source, finished is not None)
        loaded, befores = list(load_pairs(found, cfg.max_side, problems)), [p.before for p in found]
    check_enough_pairs(len(loaded), source, finished is not None)
    warnings = [w for p in loaded for w in p.warnings]
    if finished is not None and not isinstance(finished, (str, Path)):
        finished = [np.array(to_uint8(f)) for f in finished]  # writable copies (torch shares them)
    elif finished is not None:  # files skipped are notes of this run, as the pairs' are: not the style's warnings
        finished, more = load_finished(finished, cfg.finished_side, cfg.finished_limit, befores)
        problems = [*problems, *(f"finished photos: {line}" for line in more)]
    names, loaded = [p.name for p in loaded], [(p.before, p.after) for p in loaded]  # 8 bit, as the files were
    progress = _Progress(on_progress)
    tuner = _Tuner(from_state(reg.net(start_style).state), loaded, start_style.cond_size, cfg, progress)
    scorer = _Scorer(loaded, start_style.cond_size, from_state(reg.net(start_style).state))  # what --from picked
    run = _kfold if len(loaded) < cfg.kfold_below else _holdout
    pseudo = _Pseudo(tuner, loaded, finished, cfg) if finished is not None else None
    model, per, validation = run(tuner, scorer, progress, len(loaded), pseudo)
    progress.complete()
    validation = {k: _named(v, names) if k in ("folds", "val_pairs") else v for k, v in validation.items()}
    validation["per_pair"] = {names[i]: per[i] for i in sorted(per)}
    if not validation["chosen_steps"]:
        more = "more pairs" + ("" if finished is not None else ", or your finished photos (--finished),")
        warnings.append(f"on pairs it did not learn from, nothing it learned came closer to your edits than "
                        f"'{base}': the new style is '{base}' unchanged; {more} may help")
    summary = _summary(per)
    warnings += _below_start(summary, base, finished is not None)

    who = f"MIT-Adobe FiveK expert {expert}'s" if expert else "your"
    photos = f" and {len(finished)} finished photos" if finished is not None else ""
    data = dict(pairs=len(loaded), expert=expert, names=names)
    if finished is not None:
        data["finished"] = len(finished)
    method = recipe_method(cfg, finished is not None)
    card = dict(
        description=f"{who} look, fine-tuned from '{base}' on {len(loaded)} before/after pairs{photos}",
        cond_size=start_style.cond_size,
        training=dict(data=data, initialised_from=start_style.name, recipe=dict(asdict(cfg), method=method)),
        validation=validation, scores=dict(validation=summary), warnings=warnings, problems=problems,
        licence=_licence(start_style, expert),
    )
    return _save(reg, name, model, card, base_style, overwrite)


def _licence(start: Style, expert: str | None) -> str:
    """A fine-tuned style's terms: its pairs', and the research-only terms of the style it starts from."""
    if expert:
        return "MIT-Adobe FiveK images are licensed for research use only; so is a style learned from them"
    if licence_label(start.card) == "research use only":  # its weights start from that style's
        return (f"research use only, as '{start.name}' is, the style it was fine-tuned from ({start.card['licence']}); "
                "the licence of your training pairs applies as well")
    return "the licence of your training pairs applies to this style"


def check_enough_pairs(count: int, source: str, finished: bool) -> None:
    """PairsError unless there are enough pairs to fine-tune on (fewer with finished photos)."""
    least = MIN_PAIRS_FINISHED if finished else MIN_PAIRS
    if count < least:
        more = " with finished photos" if finished else f" ({MIN_PAIRS_FINISHED} with finished photos)"
        raise PairsError(f"{source}: fine-tuning needs at least {least} before/after pairs{more}, found {count}")


def recipe_method(cfg: FinetuneConfig, finished: bool) -> str:
    """How a fine-tune trains, in a photographer's words on its card (``csr styles show`` adds a step count
    that validation chose; one with finished photos is fixed, and given here). The technical terms (GFM layers,
    L1 loss, Adam, EMA) are in docs/training.md; the card's recipe keeps every setting as a number."""
    views = cfg.pseudo_views if finished else cfg.views  # the photo, its mirror image, then mild crops
    seen = "as it is" + (", mirrored and slightly cropped" if views > 2 else " and mirrored" if views == 2 else "")
    text = (f"only {TRAINED[cfg.train]} was retuned, the part that retouches each pixel stays as it was; it "
            f"learned to match the 'after' photos on samples of their pixels, reading each 'before' photo {seen}")
    if finished:
        average = (f"; what it learned is averaged over about its last {round(1 / (1 - cfg.pseudo_ema))} steps, "
                   "which steadies it") if 0 < cfg.pseudo_ema < 1 else ""
        text += (f"; its examples are the finished photos, each given {cfg.pseudo_per} made-up 'before' photos (two "
                 "of the pairs' edits blended at random and undone, made "
                 f"{cfg.pseudo_stretch ** -0.5:.2g} to {cfg.pseudo_stretch:g} times as strong, the brightness "
                 f"changed by up to {cfg.pseudo_exposure:.0%} either way{_shift_text(cfg.pseudo_exposure_ev)})"
                 f"{average}; {cfg.pseudo_steps} steps; the pairs show how the edits change a photo and score the "
                 "style: each trial style's made-up photos use only the edits of pairs it is not scored on")
    return text


class _Progress:
    """Turns each run's fit() progress into honest overall counts for ``on_progress``.

    ``step`` is the steps really done across all runs; ``steps`` an upper bound of the total that only
    shrinks (early stopping ends runs sooner, and later folds never run longer than an earlier one).
    Once set, ``held_out`` (psnr, pairs, of) goes with every report; work between runs is a ``task`` whose
    ``task_done`` (a fraction) is reported at each whole percent.
    """

    def __init__(self, callback: Callable[[dict], None] | None):
        self.callback, self.done, self.limit, self.later, self.phase, self.validating = callback, 0, 0, 0, "", False
        self.held: dict | None = None
        self.shown: tuple = ()  # the task and percent last reported

    def start(self, phase: str, limit: int, later: int, validating: bool = True) -> None:
        """A run of at most ``limit`` steps begins; the runs after it take at most ``later`` steps in all."""
        self.phase, self.limit, self.later, self.validating = phase, limit, later, validating
        self.shown = ()

    def finish(self, steps: int) -> None:
        """The run ended after ``steps`` steps (work reported before the next run counts no more of it)."""
        self.done, self.limit = self.done + steps, 0

    def held_out(self, psnr: float, pairs: int, of: int) -> None:
        """The mean score of the ``pairs`` (of ``of``) held out by the runs done so far."""
        self.held = dict(psnr=psnr, pairs=pairs, of=of)

    def task(self, text: str, fraction: float) -> None:
        """Work between runs, ``text``, is ``fraction`` done (reported at each whole percent)."""
        percent = int(min(max(fraction, 0.0), 1.0) * 100)
        if (text, percent) != self.shown:
            self.shown = (text, percent)
            self._emit(dict(step=self.done, steps=self.done + self.limit + self.later, phase=self.phase,
                            task=text, task_done=percent / 100))

    def examples(self, fraction: float) -> None:
        """Finished photos are being turned into the next run's examples: ``fraction`` of that is done."""
        self.task("turning finished photos into examples", fraction)

    def scoring(self, fraction: float) -> None:
        """Whole photos of the held-out pairs are being scored: ``fraction`` of them are done."""
        self.task("scoring the held-out pairs", fraction)

    def complete(self) -> None:
        """The last report: every step is done (``step == steps``)."""
        self._emit(dict(step=self.done, steps=self.done, phase=self.phase))

    def __call__(self, info: dict) -> None:
        out = dict(info, step=self.done + info["step"], steps=self.done + self.limit + self.later, phase=self.phase)
        out.pop("val", None)
        if self.validating and "val" in info:
            out["val_psnr"] = info["val"]
        self._emit(out)

    def _emit(self, out: dict) -> None:
        if self.callback:
            self.callback(dict(out, held_out=dict(self.held)) if self.held else out)


class _Scorer:
    """Full-image scores per pair: the tuned model, the base style, do-nothing and autocontrast."""

    def __init__(self, loaded, cond_size: int, base: CSRNet):
        self.loaded, self.cond_size, self.base = loaded, cond_size, base

    def __call__(self, model: CSRNet, idx: Sequence[int], pairs_only: CSRNet | None = None,
                 done: Callable[[], None] = lambda: None) -> dict[int, dict]:
        """Each pair's scores; ``pairs_only``: also that model's, beside the same yardsticks; ``done`` is called
        after each pair (seconds each)."""
        out = {}
        for i in idx:
            b8, a8 = self.loaded[i]
            out[i] = {"style": score(self._retouch(model, b8), a8), "base": score(self._retouch(self.base, b8), a8),
                      "do-nothing": score(b8, a8), "autocontrast": score(autocontrast(b8), a8)}
            if pairs_only is not None:
                out[i]["pairs_only"] = score(self._retouch(pairs_only, b8), a8)
            done()
        return out

    def _retouch(self, model: CSRNet, rgb: np.ndarray) -> np.ndarray:
        return retouch_array(rgb, Look.of(Net(numpy_state(model)), self.cond_size), exact=True)


class _Pseudo:
    """Pseudo-pairs from finished photos: those of a run use only its training pairs' colour maps."""

    def __init__(self, tuner: _Tuner, loaded, finished: Sequence[np.ndarray], cfg: FinetuneConfig):
        self.tuner, self.finished = tuner, finished
        self.maps = [fit_inverse_map(*pair) for pair in loaded]  # each pair's map, fitted once for every run
        self.recipe = PseudoRecipe(per=cfg.pseudo_per, exposure=cfg.pseudo_exposure, stretch=cfg.pseudo_stretch,
                                   exposure_ev=cfg.pseudo_exposure_ev)
        self.views = cfg.pseudo_views

    def pairs(self, train: Sequence[int], seed: int, report: Callable[[float], None] = lambda done: None) -> RealPairs:
        """The pseudo-pairs of a run on pairs ``train``; ``report`` gets the fraction done as they are made
        (the first third: the 'before' photos; the rest: their condition features, which take twice as long)."""
        maps = [self.maps[i] for i in train]
        made = pseudo_pairs(self.finished, maps, seed=self.tuner.cfg.seed * 1000 + seed, recipe=self.recipe,
                            on_photo=_Share(report, len(self.finished), 0.0, 1 / 3))
        data = self.tuner.dataset(made, self.views, seed=seed,
                                  on_views=_Share(report, len(made) * self.views, 1 / 3, 2 / 3))
        report(1.0)
        return data


class _Share:
    """Counts units of work done out of ``total`` and reports the fraction of a task done, the units making
    ``span`` of it from ``start`` on."""

    def __init__(self, report: Callable[[float], None], total: int, start: float = 0.0, span: float = 1.0):
        self.report, self.total, self.start, self.span, self.done = report, max(total, 1), start, span, 0
        report(start)

    def __call__(self, units: int = 1) -> None:
        self.done += units
        self.report(self.start + self.span * min(self.done / self.total, 1.0))


def _kfold(tuner: _Tuner, scorer: _Scorer, progress: _Progress, n: int, pseudo: _Pseudo | None = None):
    """k-fold: the pooled held-out curve picks the step count; the style is then trained on all pairs.

    With ``pseudo`` (finished photos), each fold trains on pseudo-pairs made with its own training pairs'
    colour maps only (the pairs give the maps and validate) for a fixed ``pseudo_steps``, and the same folds
    are run on the pairs alone for comparison.
    """
    cfg = tuner.cfg
    k = min(cfg.folds, n)
    folds = _folds(n, k, cfg.seed)
    kinds = ("style", "pairs_only") if pseudo else ("style",)
    limit = {"style": cfg.pseudo_steps if pseudo else cfg.steps, "pairs_only": cfg.steps}
    patience = {"style": 0 if pseudo else cfg.patience, "pairs_only": cfg.patience}
    runs: dict[str, list] = {kind: [] for kind in kinds}
    plan = [(f, kind) for f in range(k) for kind in kinds]
    for pos, (f, kind) in enumerate(plan):
        train = [i for i in range(n) if i not in folds[f]]
        later = sum(limit[kd] for _, kd in plan[pos + 1:]) + limit["style"]  # the runs left + the final run
        # a fold's own score swings with its one or two pairs: the pooled score of the folds done is shown instead
        progress.start(f"fold {f + 1}/{k}" + (", pairs only" if kind == "pairs_only" else ""), limit[kind], later,
                       validating=False)
        extra = pseudo.pairs(train, seed=f + 1, report=progress.examples) if kind == "style" and pseudo else None
        runs[kind].append(tuner.run(train, folds[f], limit[kind], patience[kind], extra)[1])
        progress.finish(runs[kind][-1]["step"])
        limit[kind] = min(limit[kind], runs[kind][-1]["curve"][-1][0])  # only steps every fold reached are pooled
        if kind == "style":  # the score the step count would be chosen by now, over every pair held out so far
            step, axis, pooled = _choice(runs["style"], pseudo is not None)
            progress.held_out(pooled[axis.index(step)], sum(len(folds[g]) for g in range(f + 1)), n)
    picked = {kind: _choice(h, pseudo is not None and kind == "style") for kind, h in runs.items()}
    per: dict[int, dict] = {}
    progress.start(f"{k} folds done", 0, limit["style"], validating=False)  # then at most the final run
    scored = _Share(progress.scoring, n)
    for f, val in enumerate(folds):
        models = {kind: _snapshot(tuner, runs[kind][f], picked[kind][0]) for kind in kinds}
        per.update(scorer(models["style"], val, models.get("pairs_only"), scored))
    progress.held_out(_summary(per)["psnr"], n, n)  # on whole photos: the validation score of the card
    chosen, axis, pooled = picked["style"]
    progress.start("final (all pairs)", chosen, later=0, validating=False)
    extra = pseudo.pairs(list(range(n)), seed=0, report=progress.examples) if pseudo and chosen else None
    model = tuner.restore(tuner.run(list(range(n)), [], chosen, 0, extra)[0]) if chosen else copy.deepcopy(tuner.start)
    progress.finish(chosen)
    validation = dict(method=f"{k}-fold", folds=folds, chosen_steps=chosen, fixed_steps=pseudo is not None,
                      curve=[[s, round(p, 3)] for s, p in zip(axis, pooled)],
                      fold_stopped_at=[h["curve"][-1][0] for h in runs["style"]])
    if pseudo:
        validation["pairs_only"] = dict(chosen_steps=picked["pairs_only"][0],
                                        fold_stopped_at=[h["curve"][-1][0] for h in runs["pairs_only"]])
    return model, per, validation


def _choice(runs: list[dict], fixed: bool) -> tuple[int, list[int], list[float]]:
    """(the step count chosen, steps, pooled held-out PSNR per step) of k-fold runs; ``fixed``: pseudo-pair runs,
    which have a fixed length (their pooled curve is flat; harder photos want every step)."""
    best, axis, pooled = _pooled(runs)
    return (_fixed_length(axis, pooled) if fixed else best), axis, pooled


def _pooled(runs: list[dict]) -> tuple[int, list[int], list[float]]:
    """(best step, steps, mean held-out PSNR per step) of k-fold runs' curves, pooled over every pair."""
    common = min(len(h["curve"]) for h in runs)
    axis = [runs[0]["curve"][j][0] for j in range(common)]
    pooled = [float(np.mean([s for h in runs for s in h["curve"][j][1]])) for j in range(common)]
    return axis[int(np.argmax(pooled))], axis, pooled


def _shift_text(ev: float) -> str:
    """``pseudo_exposure_ev`` in words: the factor it multiplies the pixel values by, as a percentage."""
    return f", then {abs(1 - 2.0 ** ev):.0%} {'darker' if ev < 0 else 'brighter'}" if ev else ""


def _fixed_length(axis: list[int], scores: list[float]) -> int:
    """The step a fixed-length run keeps: its last, unless it scores below the start (0: the start weights)."""
    return axis[-1] if scores[-1] > scores[0] else 0


def _snapshot(tuner: _Tuner, run: dict, step: int) -> CSRNet:
    """A run's model as it was at ``step``."""
    m = tuner.model()
    m.load_state_dict(run["snaps"][step], strict=False)
    return tuner.restore(m)


def _holdout(tuner: _Tuner, scorer: _Scorer, progress: _Progress, n: int, pseudo: _Pseudo | None = None):
    """~20% held out: early stopping on it; the best weights are the style. With ``pseudo``, the style
    trains on pseudo-pairs made with the training pairs' maps for a fixed ``pseudo_steps`` (as in k-fold),
    and a run on the pairs alone compares."""
    cfg = tuner.cfg
    train, val = holdout_split(n, cfg.holdout, cfg.seed)
    runs = {}
    for kind in ("style", "pairs_only") if pseudo else ("style",):
        fixed = kind == "style" and pseudo is not None
        steps, patience = (cfg.pseudo_steps, 0) if fixed else (cfg.steps, cfg.patience)
        name = "train (held-out validation)" + (", pairs only" if kind == "pairs_only" else "")
        progress.start(name, steps, later=cfg.steps if fixed else 0)
        extra = pseudo.pairs(train, seed=1, report=progress.examples) if fixed else None
        model, h = tuner.run(train, val, steps, patience, extra)
        progress.finish(h["step"])
        if fixed:
            chosen = _fixed_length([s for s, _ in h["curve"]], [float(np.mean(p)) for _, p in h["curve"]])
            model = _snapshot(tuner, h, chosen) if chosen else copy.deepcopy(tuner.start)
        else:
            chosen = h["best_step"] if h["best"] > float(np.mean(h["curve"][0][1])) else 0
            model = tuner.restore(model) if chosen else copy.deepcopy(tuner.start)
        runs[kind] = (model, h, chosen)
    model, h, chosen = runs["style"]
    progress.start("training done", 0, 0)
    per = scorer(model, val, runs["pairs_only"][0] if pseudo else None, _Share(progress.scoring, len(val)))
    validation = dict(method="held-out", val_pairs=val, chosen_steps=chosen, fixed_steps=pseudo is not None,
                      curve=[[s, round(float(np.mean(p)), 3)] for s, p in h["curve"]])
    if pseudo:
        validation["pairs_only"] = dict(chosen_steps=runs["pairs_only"][2])
    return model, per, validation


def _below_start(summary: dict, base: str, finished: bool) -> list[str]:
    """A warning when the new style scores below the style it started from on pairs it did not learn from."""
    new, start = summary["psnr"], summary["base_style"]["psnr"]
    if round(new, 2) >= round(start, 2):
        return []
    more = "more or more consistent pairs may help" if finished else \
        "more or more consistent pairs, or your finished photos (--finished), may help"
    return [f"on pairs it did not learn from, the new style scores {new:.2f} dB, below '{base}' ({start:.2f} dB): "
            f"'{base}' comes closer to these edits; {more}"]


def _named(v, names: list[str]):
    return [_named(x, names) for x in v] if isinstance(v, list) else names[v]


def _save(reg, name: str, model: CSRNet, card: dict, base_style, overwrite: bool):
    """Save atomically; an interrupted save leaves no card and no orphan weights. A save that fails (a full
    disk, the name taken meanwhile) keeps the trained network as a .pth and says where."""
    before = set(reg.user_path.glob(f"{name}.*safetensors"))
    try:
        return reg.save_style(name, model.state_dict(), card, base=base_style, overwrite=overwrite)
    except (StyleError, OSError) as exc:
        raise StyleError(f"{exc}; {_keep(model, name, card['cond_size'])}") from None
    except BaseException:
        card_path = reg.user_path / f"{name}.json"
        kept = json.loads(card_path.read_text("utf-8")).get("file") if card_path.exists() else None
        for p in set(reg.user_path.glob(f"{name}.*safetensors")) - before:
            if p.name != kept:
                p.unlink(missing_ok=True)
        raise


def _keep(model: CSRNet, name: str, cond_size: int) -> str:
    """Write the trained network (a full state_dict) to NAME.finetuned.pth in the current folder, else the
    temporary folder; what to tell the user about it."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    for folder in (Path.cwd(), Path(tempfile.gettempdir())):
        path = folder / f"{name}.finetuned.pth"
        try:
            write_bytes_atomic(path, buf.getvalue())
        except OSError:
            continue
        return (f"the trained network is kept in {path}: once there is room, add it with: "
                f"csr styles import {path} --name {name} --cond-size {cond_size}")
    return "the trained network could not be kept either (no writable space in the current or temporary folder)"
