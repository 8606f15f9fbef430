"""Training: the default style from synthetic degradations, full training and condition-only fine-tuning.

CPU-cheap by design: the condition net sees a small copy (long side = ``cond_size``) and the L1 loss
is taken on randomly sampled pixels, whose colour map is all the base net learns.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from . import degrade
from .errors import CsrError, PairsError
from .fsutil import atomic_write
from .inference import condition_input
from .metrics import psnr_from_mse
from .model import CONDITION_PREFIXES, CSRNet, Modulation
from .pairs import LoadedPair, discover_pairs, load_pairs

Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (cond input 1x3xhxw, x pixels Px3, y pixels Px3)


@dataclass
class TrainConfig:
    steps: int = 6000
    batch: int = 16
    lr: float = 1e-3
    lr_min: float = 2e-5
    pixels: int = 4096            # sampled pixels per image for the per-pixel loss
    cond_size: int = 256
    seed: int = 0
    eval_every: int = 250
    checkpoint_every: int = 250
    patience: int = 0             # evals without improvement before stopping (0 = never stop early)
    condition_only: bool = False  # train only condition net + GFM (the base stays frozen)
    ema: float = 0.0              # >0: validate, keep and return an exponential moving average of the weights
    loss: str = "l1"              # "l1", "mse" (per pixel) or "psnr" (minus the mean per-image PSNR)
    extra: dict = field(default_factory=dict)


def _log_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Minus the batch's mean per-image PSNR (peak 1; 1e-5 added to each MSE): what a mean-PSNR score rewards."""
    return 10 * torch.log10(((pred - target) ** 2).mean(dim=(1, 2)) + 1e-5).mean()


_LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss, "psnr": _log_mse}


def cond_tensor(rgb: np.ndarray, size: int, workers: int | None = None) -> torch.Tensor:
    """``inference.condition_input`` as the 1 x 3 x h x w tensor the torch model takes."""
    return torch.from_numpy(condition_input(rgb, size, workers)).permute(2, 0, 1)[None].contiguous()


def _modulation(model: CSRNet, conds: Sequence[torch.Tensor]) -> Modulation:
    mods = [model.modulation(c) for c in conds]
    cat = lambda parts: tuple(torch.cat([m[i] for m in parts]) for i in range(3))  # noqa: E731
    return Modulation(cat([m.scales for m in mods]), cat([m.shifts for m in mods]))


def predict(model: CSRNet, samples: Sequence[Sample]) -> torch.Tensor:
    """Model output for a batch of samples, N x P x 3."""
    mod = _modulation(model, [s[0] for s in samples])
    return model.base(torch.stack([s[1] for s in samples]), mod)


def trainable_parameters(model: CSRNet, condition_only: bool) -> list[torch.nn.Parameter]:
    """All parameters, or only the condition net + GFM (the base is frozen)."""
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_(not condition_only or name.startswith(CONDITION_PREFIXES))
        if p.requires_grad:
            params.append(p)
    return params


def fit(model: CSRNet, draw: Callable[[np.random.Generator, int], list[Sample]], cfg: TrainConfig,
        validate: Callable[[CSRNet], float], checkpoint: Path | None = None,
        on_progress: Callable[[dict], None] | None = None) -> dict:
    """Adam + cosine schedule with periodic validation (higher is better, e.g. PSNR).

    Keeps the best weights in memory (returned model holds them); resumes from ``checkpoint`` if present
    and writes it atomically every ``checkpoint_every`` steps and when interrupted (Ctrl-C). Returns a
    history dict.
    """
    if cfg.loss not in _LOSSES:
        raise ValueError(f"unknown loss {cfg.loss!r}; choose one of {', '.join(_LOSSES)}")
    params = trainable_parameters(model, cfg.condition_only)
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.99))
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    hist = dict(step=0, best=-math.inf, best_step=0, evals=[], seconds=0.0)
    best_state = {k: v.clone() for k, v in model.state_dict().items()}
    if checkpoint and checkpoint.exists():
        ck = torch.load(checkpoint, weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        best_state = ck["best_state"]
        hist.update({k: ck["hist"][k] for k in ("step", "best", "best_step", "seconds")})
        hist["evals"] = [tuple(e) for e in ck["hist"]["evals"]]
        rng = np.random.default_rng([cfg.seed, hist["step"]])
    avg = _Average(params, cfg.ema) if cfg.ema > 0 else None
    if avg and checkpoint and checkpoint.exists() and "ema" in ck:
        avg.shadow = list(ck["ema"])
    t0 = time.perf_counter() - hist["seconds"]
    stale, saved = 0, hist["step"]

    def save() -> None:
        extra = dict(ema=avg.shadow) if avg else {}
        with atomic_write(checkpoint) as fh:
            torch.save(dict(model=model.state_dict(), opt=opt.state_dict(), best_state=best_state,
                            hist=dict(hist, evals=[list(e) for e in hist["evals"]]), cfg=asdict(cfg), **extra), fh)

    try:
        while hist["step"] < cfg.steps:
            step = hist["step"]
            lr = cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * step / cfg.steps))
            for g in opt.param_groups:
                g["lr"] = lr
            samples = draw(rng, cfg.batch)
            model.train()
            loss = _LOSSES[cfg.loss](predict(model, samples), torch.stack([s[2] for s in samples]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if avg:
                avg.update()
            hist["step"] = step = step + 1
            info = dict(step=step, steps=cfg.steps, loss=loss.item(), lr=lr)
            with avg.swapped() if avg else contextlib.nullcontext():
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    model.eval()
                    with torch.no_grad():
                        score = float(validate(model))
                    hist["evals"].append((step, score))
                    if score > hist["best"]:
                        hist.update(best=score, best_step=step)
                        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                        stale = 0
                    else:
                        stale += 1
                    info.update(val=score, best=hist["best"])
                hist["seconds"] = time.perf_counter() - t0
                if on_progress:  # sees the averaged weights when there are any
                    on_progress(info)
            if checkpoint and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
                save()
                saved = step
            if cfg.patience and stale >= cfg.patience:
                break
    except KeyboardInterrupt:
        if checkpoint and hist["step"] > saved:  # the steps done are kept: the same command resumes there
            save()
        raise
    model.load_state_dict(best_state)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return hist


class _Average:
    """Exponential moving average of ``params`` (Polyak averaging); ``swapped()`` puts it in place."""

    def __init__(self, params: Sequence[torch.nn.Parameter], decay: float):
        self.params, self.decay = list(params), decay
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params):
            s.lerp_(p, 1 - self.decay)

    @contextlib.contextmanager
    def swapped(self):
        live = [p.detach().clone() for p in self.params]
        with torch.no_grad():
            for p, s in zip(self.params, self.shadow):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(self.params, live):
                    p.copy_(v)


#: The options of ``csr train`` a run keeps from start to end (its ``TrainConfig`` fields); ``extra['data']``
#: names what it learns from.
RUN_OPTIONS = {"batch": "--batch", "lr": "--lr", "cond_size": "--cond-size", "seed": "--seed"}


def checkpoint_step(path: Path, cfg: TrainConfig) -> int:
    """The number of steps a resumable checkpoint holds (it is read with ``weights_only=True``); CsrError if
    it is damaged or its run had other options or data than ``cfg`` (resuming would blend two runs)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
        step, saved = int(ck["hist"]["step"]), dict(ck["cfg"])
    except Exception as exc:  # damaged, foreign or a pickle payload: never run, never a traceback
        raise CsrError(f"{path}: cannot resume from this checkpoint ({type(exc).__name__}); "
                       "delete it to start over") from None
    now = asdict(cfg)
    other = [f"{opt} {saved[k]}" for k, opt in RUN_OPTIONS.items() if k in saved and saved[k] != now[k]]
    data = (saved.get("extra") or {}).get("data")
    if data and data != now["extra"].get("data"):
        other.append(data)
    if other:
        raise CsrError(f"{path}: holds a run with other options or data ({', '.join(other)}); run that command "
                       f"again to resume it, or delete the checkpoint to start over")
    return step


# -- synthetic data (the default style) ---------------------------------------------------------
class SyntheticPairs:
    """Good photos kept in memory at condition size; each draw degrades one at random."""

    def __init__(self, images: Iterable[np.ndarray], cond_size: int, pixels: int):
        self.images = [torch.from_numpy(condition_input(im, cond_size)) for im in images]
        self.pixels = pixels

    def sample(self, y: torch.Tensor, params: dict, rng: np.random.Generator) -> Sample:
        if rng.random() < 0.5:
            y = y.flip(1)
        x = torch.round(degrade.apply(y, params) * 255) / 255  # degraded inputs are 8-bit files
        flat_x, flat_y = x.reshape(-1, 3), y.reshape(-1, 3)
        idx = torch.from_numpy(rng.integers(0, flat_x.shape[0], self.pixels))
        return x.permute(2, 0, 1)[None], flat_x[idx], flat_y[idx]

    def draw(self, rng: np.random.Generator, n: int) -> list[Sample]:
        picks = rng.integers(0, len(self.images), n)
        return [self.sample(self.images[i], degrade.random_params(rng), rng) for i in picks]

    def fixed_set(self, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """A deterministic (degraded, original) full-image set for validation."""
        rng = np.random.default_rng(seed)
        out = []
        for y in self.images:
            x = torch.round(degrade.apply(y, degrade.random_params(rng, identity_prob=0.0)) * 255) / 255
            out.append((x, y))
        return out


def psnr_on(model: CSRNet, pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Mean PSNR (8-bit, clamped and rounded as in the paper's evaluation) of model(x) vs y."""
    scores = []
    for x, y in pairs:
        cond = x.permute(2, 0, 1)[None]
        out = model.base(x.reshape(1, -1, 3), model.modulation(cond)).reshape(x.shape)
        out = torch.round(out.clamp(0, 1) * 255)
        mse = float(((out - torch.round(y * 255)) ** 2).mean())
        scores.append(psnr_from_mse(mse))
    return float(np.mean(scores))


def split_holdout(paths: Sequence, every: int = 25) -> tuple[list, list]:
    """Deterministic split: every ``every``-th file (sorted by name; or index) is held out for validation."""
    paths = sorted(paths)
    return [p for i, p in enumerate(paths) if i % every], [p for i, p in enumerate(paths) if i % every == 0]


#: Most memory the photos of ``csr train --photos`` take (condition-size float copies): a larger folder is
#: sampled evenly (2730 photos at --cond-size 256).
TRAIN_PHOTO_BYTES = 2 << 30


def read_training_photos(photo_dir: Path, cond_size: int) -> tuple[list[np.ndarray], list[str]]:
    """(the readable photos under ``photo_dir`` as condition-size float copies in name order, at most
    TRAIN_PHOTO_BYTES of them; problem lines); CsrError with fewer than 2."""
    from .finished import read_photos

    limit = max(2, TRAIN_PHOTO_BYTES // (cond_size * cond_size * 3 * 4))
    photos, problems, _ = read_photos(Path(photo_dir), lambda rgb: condition_input(rgb, cond_size), limit)
    if len(photos) < 2:
        first = f"; {problems[0]}" if problems else ""
        raise CsrError(f"{photo_dir}: training needs at least 2 photos (one of every 25 is held out to score the "
                       f"style), found {len(photos)}{first}")
    return photos, problems


def train_synthetic(photos: Sequence[np.ndarray], cfg: TrainConfig, checkpoint: Path | None = None,
                    on_progress: Callable[[dict], None] | None = None) -> tuple[CSRNet, dict]:
    """Train the whole network to undo random degradations of ``photos`` (``read_training_photos``; one of
    every 25 is held out to score it)."""
    train_idx, val_idx = split_holdout(range(len(photos)))
    train = SyntheticPairs((photos[i] for i in train_idx), cfg.cond_size, cfg.pixels)
    val = SyntheticPairs((photos[i] for i in val_idx), cfg.cond_size, cfg.pixels).fixed_set(seed=1234)
    torch.manual_seed(cfg.seed)
    model = CSRNet()
    hist = fit(model, train.draw, cfg, lambda m: psnr_on(m, val), checkpoint, on_progress)
    hist.update(train_images=len(train_idx), val_images=len(val_idx), val_identity_psnr=_identity_psnr(val))
    return model, hist


def _identity_psnr(pairs: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
    scores = []
    for x, y in pairs:
        mse = float(((torch.round(x * 255) - torch.round(y * 255)) ** 2).mean())
        scores.append(psnr_from_mse(mse))
    return float(np.mean(scores))


# -- real before/after pairs (fine-tuning and full training on a user's own set) -----------------
#: Most memory the condition views of one ``RealPairs`` keep between draws (8 views per pair at --cond-size 256 are
#: 4x a 512-px pair's own 8-bit pixels): views beyond it are made again from the pair when drawn.
VIEW_CACHE_BYTES = 512 << 20


class RealPairs:
    """Before/after pairs in memory at ``max_side``, as 8 bit; draws (cond view, sampled pixels) for ``fit``.

    Augmentations keep the global statistics the condition net sees: a horizontal flip and a mild
    crop (>= 90% of each side) of the condition input. Pixels are sampled from the whole image, and
    turned into float rows only when drawn. A view is kept as where it lies in the 'before' photo
    (``_Crop``) and made into the condition net's float input when drawn; the last ones made are kept
    while they fit ``cache_bytes``.
    """

    def __init__(self, images: Sequence[tuple[np.ndarray, np.ndarray]], cond_size: int, pixels: int,
                 views: int = 8, seed: int = 0,
                 encode: Callable[[list[torch.Tensor]], list[torch.Tensor]] | None = None,
                 cache_bytes: int = VIEW_CACHE_BYTES):
        """``images``: (before, after) HxWx3 arrays, kept as 8 bit; ``encode`` maps a list of condition
        views as they are made, a few dozen at a time (e.g. to frozen condition-net features, so the
        images need not be kept): its results are kept instead of the views' places."""
        from .metrics import to_uint8
        rng = np.random.default_rng([seed, 77])
        self.pixels, self.cache = pixels, _Cache(cache_bytes)
        before = [np.ascontiguousarray(to_uint8(b)) for b, _ in images]
        self.x = [torch.from_numpy(b).reshape(-1, 3) for b in before]
        self.y = [torch.from_numpy(np.ascontiguousarray(to_uint8(a))).reshape(-1, 3) for _, a in images]
        self.views: list[list[torch.Tensor | _Crop]] = [_crops(b, views, rng, cond_size) for b in before]
        if encode is None:
            return
        chunk: list[int] = []
        for i in range(len(before)):  # a few dozen views at a time
            chunk.append(i)
            if sum(len(self.views[k]) for k in chunk) >= 64 or i == len(before) - 1:
                flat = iter(encode([cond_tensor(c.pixels(), cond_size) for k in chunk for c in self.views[k]]))
                for k in chunk:
                    self.views[k] = [next(flat) for _ in self.views[k]]
                chunk = []

    def extended(self, other: "RealPairs") -> "RealPairs":
        """These pairs followed by ``other``'s (views as each was made)."""
        out = copy.copy(self)
        out.x, out.y, out.views = self.x + other.x, self.y + other.y, self.views + other.views
        return out

    def subset(self, idx: Sequence[int]) -> "RealPairs":
        """The pairs ``idx`` only."""
        out = copy.copy(self)
        out.x, out.y, out.views = ([getattr(self, a)[i] for i in idx] for a in ("x", "y", "views"))
        return out

    def __len__(self) -> int:
        return len(self.x)

    def view(self, i: int, j: int) -> torch.Tensor:
        """Condition view ``j`` of pair ``i`` (1 x 3 x h x w float32, or what ``encode`` made of it)."""
        v = self.views[i][j]
        if isinstance(v, torch.Tensor):
            return v
        return self.cache.get(v, lambda: cond_tensor(v.pixels(), v.size, workers=1))  # small: threads cost more

    def rows_at(self, i: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels ``idx`` of pair ``i`` as 8-bit (before, after) rows; ``as_float`` makes them what ``fit`` uses."""
        return (torch.index_select(self.x[i], 0, idx),  # index_select: 4x faster than x[idx]
                torch.index_select(self.y[i], 0, idx))

    def pixels_at(self, i: int, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixels ``idx`` of pair ``i`` as float32 (before, after) rows in [0, 1]."""
        return tuple(as_float(r) for r in self.rows_at(i, idx))

    def draw(self, rng: np.random.Generator, n: int) -> list[Sample]:
        out = []
        for i in rng.integers(0, len(self.x), n):
            v = self.view(i, rng.integers(0, len(self.views[i])))
            idx = torch.from_numpy(rng.integers(0, self.x[i].shape[0], self.pixels))
            out.append((v, *self.pixels_at(i, idx)))
        return out


def as_float(rows: torch.Tensor) -> torch.Tensor:
    """8-bit pixel rows as float32 in [0, 1] (float rows are passed on as they are)."""
    return rows.float().div_(255) if rows.dtype == torch.uint8 else rows


@dataclass(eq=False)  # compared and hashed by identity: a cache key that keeps its photo
class _Crop:
    """One condition view of a pair: rows y0:y0+h and columns x0:x0+w of its 8-bit 'before', maybe mirrored,
    shrunk to ``size`` when drawn."""
    image: np.ndarray
    box: tuple[int, int, int, int]  # y0, x0, h, w
    mirror: bool
    size: int  # the condition net's long side

    def pixels(self) -> np.ndarray:
        y0, x0, h, w = self.box
        crop = self.image[y0:y0 + h, x0:x0 + w]
        return np.ascontiguousarray(crop[:, ::-1] if self.mirror else crop)


def _crops(img: np.ndarray, n: int, rng: np.random.Generator, size: int) -> list[_Crop]:
    """The image, its mirror, then random mild crops (some mirrored): ``n`` views in all, shrunk to ``size``."""
    h, w = img.shape[:2]
    out = [_Crop(img, (0, 0, h, w), False, size), _Crop(img, (0, 0, h, w), True, size)]
    while len(out) < n:
        ch, cw = (max(1, round(s * rng.uniform(0.9, 1.0))) for s in (h, w))
        y0, x0 = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        out.append(_Crop(img, (int(y0), int(x0), ch, cw), bool(rng.random() < 0.5), size))
    return out[:n]


class _Cache:
    """The views made last, while they fit ``limit`` bytes (least recently drawn first out)."""

    def __init__(self, limit: int):
        self.limit, self.bytes, self.kept = limit, 0, {}

    def get(self, key: _Crop, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key in self.kept:
            self.kept[key] = v = self.kept.pop(key)  # the most recent last
            return v
        v = make()
        self.kept[key], self.bytes = v, self.bytes + v.nbytes
        while self.bytes > self.limit:
            self.bytes -= self.kept.pop(next(iter(self.kept))).nbytes
        return v


def pixel_psnr(model: CSRNet, cond: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """8-bit PSNR of model(x | cond) vs y on pixel rows (P x 3; 8-bit or float), as in ``psnr_on``."""
    x, y = as_float(x), as_float(y)
    with torch.no_grad():
        out = model.base(x[None], model.modulation(cond))[0]
    mse = float(((torch.round(out.clamp(0, 1) * 255) - torch.round(y * 255)) ** 2).mean())
    return psnr_from_mse(mse)


def holdout_split(n: int, fraction: float = 0.2, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic (train, val) index split with ``fraction`` (at least 1) held out."""
    order = np.random.default_rng([seed, n]).permutation(n)
    k = max(1, round(n * fraction))
    return sorted(order[k:].tolist()), sorted(order[:k].tolist())


#: Long side the pairs of ``csr train --pairs`` are shrunk to as they are read.
PAIR_SIDE = 512


def pairs_data(folder: Path, pairs: Sequence[LoadedPair]) -> str:
    """What a ``csr train --pairs`` run learns from, for its checkpoint (``TrainConfig.extra['data']``): the folder
    and which of its pairs were used, so that a run never resumes on another set (one pair more would move
    pairs between the training and the held-out ones)."""
    names = hashlib.sha256("/".join(p.name for p in pairs).encode()).hexdigest()[:12]
    return f"--pairs {Path(folder).resolve()} ({len(pairs)} pairs, {names})"


def train_pairs(pairs: Path | str | Sequence[LoadedPair], cfg: TrainConfig, checkpoint: Path | None = None,
                on_progress: Callable[[dict], None] | None = None, expert: str | None = None,
                max_side: int = PAIR_SIDE, val_pixels: int = 16384) -> tuple[CSRNet, dict]:
    """Train the whole network on a user's before/after pairs (~20% held out for validation).

    ``pairs``: a folder, or pairs already read (``pairs.load_pairs``); a pair that cannot be read or aligned is
    left out. Resumes from ``checkpoint``; keeps the weights that score best on the held-out pairs. The history
    carries ``train_pairs``/``val_pairs`` (names), ``warnings`` and ``problems``.
    """
    problems: list[str] = []
    if isinstance(pairs, (str, Path)):
        source, (found, problems) = f"{pairs}: ", discover_pairs(pairs, expert=expert)
        pairs = list(load_pairs(found, max_side, problems))
    else:
        source, pairs = "", list(pairs)
    if len(pairs) < 2:
        raise PairsError(f"{source}full training needs at least 2 pairs, found {len(pairs)}")
    loaded, warnings = [(p.before, p.after) for p in pairs], [w for p in pairs for w in p.warnings]
    tr, va = holdout_split(len(pairs), seed=cfg.seed)
    train = RealPairs([loaded[i] for i in tr], cfg.cond_size, cfg.pixels, seed=cfg.seed)
    val = RealPairs([loaded[i] for i in va], cfg.cond_size, val_pixels, views=1)
    val_set = [(val.view(i, 0), *fixed_pixels(val, i, val_pixels, cfg.seed)) for i in range(len(va))]
    torch.manual_seed(cfg.seed)
    model = CSRNet()
    hist = fit(model, train.draw, cfg, lambda m: float(np.mean([pixel_psnr(m, *s) for s in val_set])),
               checkpoint, on_progress)
    hist.update(train_pairs=[pairs[i].name for i in tr], val_pairs=[pairs[i].name for i in va],
                warnings=warnings, problems=problems)
    return model, hist


def fixed_pixels(data: RealPairs, i: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed pixel subsample of pair ``i`` (all pixels when it has fewer than ``n``), as 8-bit rows."""
    total = data.x[i].shape[0]
    idx = torch.arange(total) if total <= n else \
        torch.from_numpy(np.random.default_rng([seed, i, 5]).choice(total, n, replace=False))
    return data.rows_at(i, idx)
