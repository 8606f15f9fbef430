"""Recipes of the built-in styles (issue 14): real FiveK expert-C pairs, their fitted global colour maps,
pseudo-pairs made from expert-C finished photos, and the scores of every method on the real pairs.

Run from the repository root: ``python tools/styles_lab.py baselines`` etc. Needs ../shared.
"""
from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from csr_core.evaluate import autocontrast  # noqa: E402
from csr_core.metrics import psnr  # noqa: E402


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def real_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The 14 real expert-C pairs: (id, input uint8, target uint8)."""
    out = []
    for d in ("fivek-c-dev", "fivek-c-extra"):
        for p in sorted((SHARED / d).glob("*_input.png")):
            fid = p.name.split("_")[0]
            out.append((fid, _rgb(p), _rgb(p.with_name(f"{fid}_target.png"))))
    return out


def expert_targets() -> list[tuple[str, np.ndarray]]:
    return [(p.name.split("_")[0], _rgb(p)) for p in sorted((SHARED / "fivek-c-targets").glob("*_target.png"))]


def autocontrast_pt(x: np.ndarray) -> np.ndarray:
    return autocontrast(x, preserve_tone=True)


# -- global colour maps: a cubic polynomial in R, G, B ------------------------------------------
def poly(x: np.ndarray) -> np.ndarray:
    """13 terms: 1, r, g, b, r2, g2, b2, rg, rb, gb, r3, g3, b3 (x: N x 3 floats in [0, 1])."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return np.stack([np.ones_like(r), r, g, b, r * r, g * g, b * b, r * g, r * b, g * b, r ** 3, g ** 3, b ** 3], 1)


def fit_map(src: np.ndarray, dst: np.ndarray, n: int = 60000, seed: int = 0) -> np.ndarray:
    """Least-squares 13x3 coefficients mapping src colours to dst colours (uint8 HxWx3 each)."""
    s = src.reshape(-1, 3).astype(np.float64) / 255
    d = dst.reshape(-1, 3).astype(np.float64) / 255
    idx = np.random.default_rng(seed).choice(len(s), min(n, len(s)), replace=False)
    A = poly(s[idx])
    coef, *_ = np.linalg.lstsq(A.T @ A + 1e-6 * np.eye(A.shape[1]), A.T @ d[idx], rcond=None)
    return coef


def map_terms(img: np.ndarray) -> np.ndarray:
    """The polynomial terms of a uint8 image's colours (what every map applied to it multiplies)."""
    return poly(img.reshape(-1, 3).astype(np.float64) / 255)


def apply_map(coef: np.ndarray, img: np.ndarray, terms: np.ndarray | None = None) -> np.ndarray:
    """Apply a fitted map to a uint8 image -> float32 HxWx3 in [0, 1] (``terms``: its map_terms, when
    the caller applies many maps to one image)."""
    terms = map_terms(img) if terms is None else terms
    return np.clip(terms @ coef, 0, 1).reshape(img.shape).astype(np.float32)


def q8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


#: The style C is tuned from (the full network every built-in style runs on; option base=).
C_BASE = "auto-v1"


#: How pseudo-inputs are drawn (c-kfold / c-final options blend=, gain=, wb=, near=, sat=, spread=, amp=, cam=,
#: meter=, cast=).
PSEUDO = dict(blend=2, gain=0.15, wb=0.03, near=0.0, sat=0.0, spread=0.0, amp=0.0, cam=0.0, meter=0.0, cast=0.0)


def _balance(img: np.ndarray, means: np.ndarray | None = None) -> np.ndarray:
    """A photo's global exposure and colour balance: log of its mean brightness, log R/G and log B/G of
    its channel means (uint8 HxWx3; ``means``: those channel means, when the caller has them)."""
    m = (img.reshape(-1, 3).mean(0) if means is None else means) / 255 + 1e-3
    return np.array([np.log(m.mean()), np.log(m[0] / m[1]), np.log(m[2] / m[1])])


@functools.lru_cache(maxsize=1)
def _balance_ref() -> np.ndarray:
    """The expert-C photos' mean ``_balance`` (the point ``meter`` and ``cast`` pivot on)."""
    return np.mean([_balance(t) for _, t in expert_targets()], 0)


def fit_balance(pairs, targets, family, seed: int) -> dict[str, float]:
    """``meter`` and ``cast`` fitted on real (id, input, target) pairs (option balance=fit): how far the
    slopes of the real inputs' ``_balance`` on their expert photo's differ from those of pseudo-inputs
    drawn without them (least squares over the pairs; brightness for ``meter``, the mean of R/G and B/G
    for ``cast``; never negative)."""
    def slopes(xy):
        x, y = (np.array([_balance(v) for v in vs]) for vs in zip(*xy))
        return np.array([np.polyfit(y[:, c], x[:, c], 1)[0] for c in range(3)])
    saved = dict(PSEUDO)
    PSEUDO.update(meter=0.0, cast=0.0)
    try:
        ps = slopes(make_pseudo(targets, family, 1, seed))
    finally:
        PSEUDO.update(saved)
    re = slopes([(x, y) for _, x, y in pairs])
    return dict(meter=round(max(0.0, float(ps[0] - re[0])), 3), cast=round(max(0.0, float(np.mean(re[1:] - ps[1:]))), 3))


def set_balance(which: str, pairs, targets, family, seed: int) -> dict[str, float]:
    """Option balance=: set ``fit`` (meter and cast), ``meter`` or ``cast`` (the other one off), fitted on
    ``pairs``, as the pseudo-input options; returns and prints them."""
    fit = fit_balance(pairs, targets, family, seed)
    fit = fit if which == "fit" else {k: (v if k == which else 0.0) for k, v in fit.items()}
    PSEUDO.update(fit)
    print(f"balance {fit}", flush=True)
    return fit


def camera_balance(target: np.ndarray) -> np.ndarray:
    """Per-channel gains that give a pseudo-input the real inputs' relation to their expert photo: with
    ``meter`` = b, a camera's metering (the input's brightness follows the expert photo's with a slope
    lowered by b: a bright finished photo came from a mid-grey input); with ``cast`` = c, its as-shot
    white balance (the input's R/G and B/G follow the expert photo's with a slope raised by c: the
    family's inverse maps shrink a photo's colour cast, real inputs carry it)."""
    means = target.reshape(-1, 3).mean(0)
    d = _balance(target, means) - _balance_ref()
    k = np.exp(float(PSEUDO["cast"]) * np.array([d[1], 0.0, d[2]]))
    m = means + 1e-3
    return k * m.sum() / (k * m).sum() * np.exp(-float(PSEUDO["meter"]) * d[0])


def look(img: np.ndarray) -> np.ndarray:
    """A photo's look in 6 numbers: mean and spread of brightness, red-green and blue-green balance,
    and the 5th and 95th brightness percentiles (uint8 HxWx3)."""
    f = img.reshape(-1, 3).astype(np.float64) / 255
    v = f.mean(1)
    return np.array([v.mean(), v.std(), (f[:, 0] - f[:, 1]).mean(), (f[:, 2] - f[:, 1]).mean(),
                     *np.percentile(v, [5, 95])])


@functools.lru_cache(maxsize=1)
def _look_spread() -> np.ndarray:
    """The spread of ``look`` over the expert-C photos (the unit of nearness)."""
    return np.array([look(t) for _, t in expert_targets()]).std(0)


def family_of(pairs) -> list[tuple[np.ndarray, np.ndarray]]:
    """The pseudo-input family of real (id, input, target) pairs: each pair's inverse map (target to
    input) and the look of the expert photo it was fitted on."""
    return [(fit_map(y, x), look(y)) for _, x, y in pairs]


def pick_weights(target: np.ndarray, family) -> np.ndarray | None:
    """How likely each family map is to make a pseudo-input for ``target``: with ``near`` > 0, a Gaussian
    in the distance between the target's look and the look each map was fitted on (``near`` spreads,
    in units of ``_look_spread``): the expert's edit depends on the photo. None (uniform) when 0."""
    tau = float(PSEUDO["near"])
    if not tau:
        return None
    z = (np.array([lk for _, lk in family]) - look(target)) / _look_spread()
    w = np.exp(-0.5 * (z ** 2).sum(1) / tau ** 2)
    w = w / w.sum() + 1e-3  # every map stays possible
    return w / w.sum()


def pseudo_input(target: np.ndarray, family, rng: np.random.Generator,
                 terms: np.ndarray | None = None, p: np.ndarray | None = None,
                 balance: np.ndarray | None = None) -> np.ndarray:
    """A FiveK-like input rendering for an expert-C target: a random blend of ``blend`` inverse maps of
    the family (``family_of``; picked with probabilities ``p``, Dirichlet weights), a random exposure
    factor (1 +- ``gain``), a white-balance jitter (``wb``, log gain per channel) and, with ``sat`` > 0, a
    saturation factor (1 +- ``sat``, around each pixel's grey), quantised to 8 bits. ``spread`` > 0 adds
    zero-sum Gaussian noise (that sd) to every family map's weight: inputs from maps the family spans but
    does not hold (the real pairs' maps are 12 points; a held-out pair's map is rarely inside their hull).
    ``amp`` > 0 scales the blend's change to the target by a factor 1 +- ``amp``: weaker and stronger
    degradations of the same kind (held-out pairs the family under-corrects lie beyond its magnitudes).
    ``cam`` > 0: that share of pseudo-inputs is a camera-like rendering (``camera_params``) of the target
    instead (flat, dark, as-shot renderings beyond the family's 12 maps). ``meter`` and ``cast`` > 0
    scale it by ``camera_balance`` (``balance``: the target's, when the caller has it)."""
    if (c := float(PSEUDO["cam"])) and rng.random() < c:
        import torch
        from csr_core import degrade
        return q8(degrade.apply(torch.from_numpy(target / np.float32(255)), camera_params(rng)).numpy())
    k = int(PSEUDO["blend"])
    picks = rng.choice(len(family), k, replace=len(family) < k, p=p)
    w = rng.dirichlet(np.ones(k))
    terms = map_terms(target) if terms is None else terms
    if spread := float(PSEUDO["spread"]):  # weights off the blend, summing to 1: maps beyond the family's hull
        z = rng.normal(0, spread, len(family))
        w_all = z - z.mean()
        np.add.at(w_all, picks, w)
        x = np.clip(sum(wi * apply_map(m, target, terms) for wi, (m, _) in zip(w_all, family)), 0, 1)
    else:
        x = sum(wi * apply_map(family[i][0], target, terms) for wi, i in zip(w, picks))
    if amp := float(PSEUDO["amp"]):
        t = target / 255.0
        x = t + rng.uniform(1 - amp, 1 + amp) * (x - t)
    g = float(PSEUDO["gain"])
    gain = rng.uniform(1 - g, 1 + g) * np.exp(rng.normal(0, float(PSEUDO["wb"]), 3))
    if balance is None and (float(PSEUDO["meter"]) or float(PSEUDO["cast"])):
        balance = camera_balance(target)
    if balance is not None:
        gain = gain * balance
    if s := float(PSEUDO["sat"]):  # inputs more and less saturated than the expert's: C reads saturation
        grey = x.mean(-1, keepdims=True)
        x = grey + rng.uniform(1 - s, 1 + s) * (x - grey)
    return q8(x * gain)


def score_fn(fn, pairs) -> list[float]:
    return [psnr(fn(x), y) for _, x, y in pairs]


def style_fn(spec: str, strength: float = 1.0):
    from csr_core.inference import retouch_array
    look = _registry().look(spec)
    return lambda x: retouch_array(x, look, strength, "cpu", exact=True)


def cmd_baselines() -> None:
    pairs = real_pairs()
    rows = {"do-nothing": score_fn(lambda x: x, pairs), "autocontrast": score_fn(autocontrast, pairs),
            "autocontrast_pt": score_fn(autocontrast_pt, pairs)}
    for s in sys.argv[2:] or ["auto", "C"]:
        rows[s] = score_fn(style_fn(s), pairs)
    ids = [p[0] for p in pairs]
    print("id      " + " ".join(f"{k[:14]:>14}" for k in rows))
    for i, fid in enumerate(ids):
        print(f"{fid}   " + " ".join(f"{v[i]:14.2f}" for v in rows.values()))
    print("mean    " + " ".join(f"{np.mean(v):14.2f}" for v in rows.values()))
    # how global are the real pairs' maps, and how well does the inverse reproduce the input?
    for fid, x, y in pairs:
        fwd, inv = fit_map(x, y), fit_map(y, x)
        print(fid, f"fwd {psnr(q8(apply_map(fwd, x)), y):.2f}  inv {psnr(q8(apply_map(inv, y)), x):.2f}")




# -- auto: camera-like and generic degradations of natural photos and expert-C finished photos -------
RUNS = ROOT / "runs"


def _auto_data():
    """(train, val) float images: the 737 natural photos and the 221 expert-C finished photos
    (no inputs: no FiveK pair is used), every 25th natural / every 10th expert photo held out."""
    from csr_core.image_io import SUPPORTED_EXTENSIONS, load_photo, to_float
    from csr_core.train import split_holdout
    photos = [p for p in (SHARED / "photos").rglob("*") if p.suffix.lower() in SUPPORTED_EXTENSIONS]
    ptr, pva = split_holdout(photos)
    experts = sorted((SHARED / "fivek-c-targets").glob("*_target.png"))
    etr, eva = split_holdout(experts, every=10)
    load = lambda p: to_float(load_photo(p).rgb)  # noqa: E731
    return [load(p) for p in ptr + etr], [load(p) for p in pva + eva], (len(ptr), len(etr), len(pva), len(eva))


def camera_params(rng: np.random.Generator) -> dict[str, float]:
    """A camera-like rendering of a finished photo: a neutral RAW development with as-shot white balance,
    no brightening and a flat tone curve: mostly under-exposed, lifted blacks, low in contrast and
    saturation, sometimes with compressed highlights (the look of MIT-Adobe FiveK's input renderings).
    Casts stay milder than ``random_params``' so that a warm or cool scene is not neutralised."""
    return dict(
        ev=float(rng.uniform(-1.8, 0.5)),
        temp=float(rng.normal(0, 0.12)),
        tint=float(rng.normal(0, 0.06)),
        contrast=float(np.exp(rng.uniform(-0.6, 0.05))),
        saturation=float(np.exp(rng.uniform(-0.6, 0.1))),
        gamma=float(np.exp(rng.uniform(-0.15, 0.4))),
        lift=float(rng.uniform(0.03, 0.15) * (rng.random() < 0.8)),
        knee=float(rng.uniform(0.0, 0.3) * (rng.random() < 0.4)),
    )


def cmd_auto() -> None:
    """Continue training 'auto' (whole network, warm start from the shipped auto) on a mix of generic
    and camera-like degradations of natural and expert-C finished photos (no FiveK pair, no fitted map).
    Options (key=value): steps, lr, ema, camera (share of camera-like draws), identity, expert (share of
    draws from expert-C photos), train=cond (the base stays frozen: condition features for a style that
    shares it, e.g. ``c-kfold base=runs/OUT/auto_stepN.safetensors``), threads, out, every (EMA snapshots saved as
    runs/OUT/auto_stepN.safetensors). Resumable (runs/OUT/ckpt.pt)."""
    import torch
    from safetensors.torch import save_file
    from csr_core import degrade
    from csr_core.train import SyntheticPairs, TrainConfig, fit, psnr_on
    a = dict(x.split("=") for x in sys.argv[2:])
    torch.set_num_threads(int(a.get("threads", 1)))
    out = RUNS / a.get("out", "auto4")
    out.mkdir(parents=True, exist_ok=True)
    tr, va, counts = _auto_data()
    train = SyntheticPairs(tr, 256, 4096)
    camera_share, identity = float(a.get("camera", 0.6)), float(a.get("identity", 0.0))
    n_nat, n_exp = counts[0], counts[1]
    expert = float(a.get("expert", n_exp / (n_nat + n_exp)))  # share of draws from expert-C photos
    weight = np.r_[np.full(n_nat, (1 - expert) / n_nat), np.full(n_exp, expert / n_exp)]

    def draw(rng, n):
        out = []
        for i in rng.choice(len(train.images), n, p=weight):
            u = rng.random()
            params = (degrade.random_params(rng, identity_prob=1.0) if u < identity else
                      camera_params(rng) if u < identity + camera_share else degrade.random_params(rng))
            out.append(train.sample(train.images[i], params, rng))
        return out

    val = SyntheticPairs(va, 256, 1).fixed_set(seed=1234)
    model = _load_base(a.get("base", C_BASE)).train()
    for p in model.parameters():
        p.requires_grad_(True)
    every = int(a.get("every", 250))
    cfg = TrainConfig(steps=int(a.get("steps", 3000)), batch=16, lr=float(a.get("lr", 3e-4)),
                      lr_min=float(a.get("lr_min", 1e-5)), eval_every=every, checkpoint_every=every, seed=3,
                      ema=float(a.get("ema", 0.995)), condition_only=a.get("train") == "cond")
    t0 = time.time()

    def progress(info):
        if info["step"] % every == 0:
            save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
                      str(out / f"auto_step{info['step']}.safetensors"))
        if "val" in info or info["step"] % 50 == 0:
            print(json.dumps(dict(info, t=round(time.time() - t0))), flush=True)

    hist = fit(model, draw, cfg, lambda m: psnr_on(m, val), out / "ckpt.pt", progress)
    (out / "hist.json").write_text(json.dumps(dict(hist, counts=counts, camera_share=camera_share,
                                                   cfg=cfg.__dict__), default=str))


def cmd_auto_strength() -> None:
    """How far should 'auto' go? Its 14-real-pair PSNR at strengths 0.5..1.0, and a leave-one-out estimate
    of picking the strength on these pairs (each pair scored at the strength best on the other 13).
    Writes runs/strength_STYLE.json. Options: style (default auto-v1, the uncalibrated network)."""
    from csr_core.inference import retouch_array
    a = dict(x.split("=") for x in sys.argv[2:])
    style = a.get("style", C_BASE)
    pairs, look = real_pairs(), _registry().look(style)
    ids = [p[0] for p in pairs]
    ac = np.array(score_fn(autocontrast_pt, pairs))
    grid = [round(float(g), 2) for g in np.arange(0.5, 1.001, 0.05)]
    scores = np.array([score_fn(lambda x: retouch_array(x, look, g, "cpu", exact=True), pairs) for g in grid])
    loo = []
    for i in range(len(pairs)):
        b = int(scores[:, [j for j in range(len(pairs)) if j != i]].mean(1).argmax())
        loo.append((grid[b], float(scores[b, i])))
    held = np.array([v for _, v in loo])
    res = dict(style=style, sha256=_registry().get(style).sha256, pairs=ids, autocontrast_tone=float(ac.mean()),
               by_strength={g: dict(psnr=round(float(r.mean()), 3), wins=int((r > ac).sum())) for g, r in zip(grid, scores)},
               loo=dict(strengths=dict(zip(ids, [g for g, _ in loo])), psnr=round(float(held.mean()), 3),
                        gain=round(float(held.mean() - ac.mean()), 3), wins=int((held > ac).sum())))
    print(json.dumps(res, indent=1))
    (RUNS / f"strength_{style}.json").write_text(json.dumps(res, indent=1))


def cmd_auto_calibrate() -> None:
    """Bake a strength into 'auto' (its GFM layers only: base and condition convs stay, so C and every
    style fine-tuned on auto keep their exact output): distil auto at ``strength`` on degradations of the
    natural photos (camera-like, generic, identity; no FiveK image, no fitted map).
    Options: strength, base, steps, per (degradations per photo), lr, ema, out (runs/OUT/auto.safetensors)."""
    import torch
    from safetensors.torch import save_file
    from csr_core import degrade
    from csr_core.inference import condition_input
    a = dict(x.split("=") for x in sys.argv[2:])
    torch.set_num_threads(1)
    s, per = float(a.get("strength", 0.7)), int(a.get("per", 4))
    out = RUNS / a.get("out", "auto_cal")
    out.mkdir(parents=True, exist_ok=True)
    a.setdefault("base", C_BASE)  # the uncalibrated full network (recorded: the card's command names it)
    teacher = _load_base(a["base"])
    tr, va, (n_tr, _, n_va, _) = _auto_data()
    tr, va = tr[:n_tr], va[:n_va]  # natural photos only: auto's weights stay free of FiveK images
    rng = np.random.default_rng(5)

    def pairs(images, n):
        res = []
        for im in images:
            y0 = torch.from_numpy(condition_input(im, 256))
            for _ in range(n):
                u = rng.random()
                p = (degrade.random_params(rng, identity_prob=1.0) if u < 0.15 else
                     camera_params(rng) if u < 0.6 else degrade.random_params(rng, identity_prob=0.0))
                x = torch.round(degrade.apply(y0, p) * 255) / 255
                with torch.no_grad():
                    f = teacher.base(x.reshape(1, -1, 3), teacher.modulation(x.permute(2, 0, 1)[None]))
                t = (x.reshape(1, -1, 3) + s * (f - x.reshape(1, -1, 3))).clamp(0, 1).reshape(x.shape)
                res.append((q8(x.numpy()), q8(t.numpy())))
        return res

    train, val = pairs(tr, per), pairs(va, 1)
    print(f"{len(train)} train / {len(val)} val distillation pairs", flush=True)
    t0 = time.time()
    m, curve = tune_c(teacher, train, [], int(a.get("steps", 1500)), val, lr=float(a.get("lr", 1e-3)),
                      eval_every=int(a.get("every", 250)), seed=5, ema=float(a.get("ema", 0.99)))
    for st, sc, _ in curve:
        print(f"step {st}: distil val {np.mean(sc):.2f} dB", flush=True)
    save_file({k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}, str(out / "auto.safetensors"))
    (out / "recipe.json").write_text(json.dumps(dict(args=a, strength=s, pairs=len(train), seconds=round(time.time() - t0),
                                                     curve=[(st, float(np.mean(sc))) for st, sc, _ in curve])))
    print("saved", out / "auto.safetensors", round(time.time() - t0), "s", flush=True)


# -- C: condition-only fine-tune on pseudo-pairs from expert-C finished photos -----------------------
def _features(model, img8: np.ndarray, views: int, rng) -> list:
    """Frozen condition-net features (1 x C x 1 x 1) of ``views`` augmented copies of an image, or
    (``model`` None) the 8-bit views themselves, for a run that trains the condition convs too
    (``_cond_input`` makes their condition inputs when drawn: a quarter of the memory)."""
    import torch
    from csr_core.train import _views, cond_tensor
    if model is None:
        return _views(img8, views, rng)
    with torch.no_grad():
        return [model.cond_net(cond_tensor(v, 256))[:, :, None, None] for v in _views(img8, views, rng)]


def _cond_input(f):
    """What the model's condition side takes for a stored ``_features`` entry."""
    from csr_core.train import cond_tensor
    return cond_tensor(f, 256) if isinstance(f, np.ndarray) else f


class PairSet:
    """In-memory (features per view, input pixels, target pixels) for ``fit``'s draw."""

    def __init__(self, model, pairs: list[tuple[np.ndarray, np.ndarray]], views: int, seed: int, weight=None,
                 shrink: float = 1.0):
        """``model`` None: keep condition inputs instead of frozen features. ``shrink`` < 1 moves every
        target that share of the way from the input (a style calibrated to go less far)."""
        self.shrink = shrink
        import torch
        rng = np.random.default_rng(seed)
        self.feats = [_features(model, x, views, rng) for x, _ in pairs]
        self.x = [torch.from_numpy(x.reshape(-1, 3).copy()) for x, _ in pairs]
        self.y = [torch.from_numpy(y.reshape(-1, 3).copy()) for _, y in pairs]
        self.p = None if weight is None else np.asarray(weight, float) / np.sum(weight)

    def draw(self, rng, n, pixels=4096):
        import torch
        out = []
        for i in rng.choice(len(self.x), n, p=self.p):
            f = _cond_input(self.feats[i][rng.integers(0, len(self.feats[i]))])
            idx = torch.from_numpy(rng.integers(0, self.x[i].shape[0], pixels))
            x, y = self.x[i][idx].float() / 255, self.y[i][idx].float() / 255
            out.append((f, x, y if self.shrink == 1 else x + self.shrink * (y - x)))
        return out


def make_pseudo(targets, family, per_target: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    balanced = float(PSEUDO["meter"]) or float(PSEUDO["cast"])
    for _, t in targets:
        terms, p = map_terms(t), pick_weights(t, family)
        b = camera_balance(t) if balanced else None
        out += [(pseudo_input(t, family, rng, terms, p, b), t) for _ in range(per_target)]
    return out


@functools.lru_cache(maxsize=1)
def natural_targets() -> list[tuple[str, np.ndarray]]:
    """The natural photos squashed to 256 x 256 like the expert-C targets (c-kfold option nat=)."""
    from csr_core.image_io import SUPPORTED_EXTENSIONS
    paths = sorted(p for p in (SHARED / "photos").rglob("*") if p.suffix.lower() in SUPPORTED_EXTENSIONS)
    return [(p.stem, np.asarray(Image.open(p).convert("RGB").resize((256, 256), Image.BICUBIC))) for p in paths]


def _pseudo_set(args: dict, targets, family, seed: int) -> list:
    """``per`` pseudo-inputs per expert-C target, plus ``nat`` per natural photo (as extra targets)."""
    pairs = make_pseudo(targets, family, int(args.get("per", 4)), seed)
    if int(args.get("nat", 0)):
        pairs += make_pseudo(natural_targets(), family, int(args["nat"]), seed + 1000)
    return pairs


def tune_c(base_model, train_pairs, real_train, steps, val=None, *, lr=1e-3, batch=8, real_weight=0.0,
           eval_every=50, seed=0, views_pseudo=2, views_real=8, on_progress=None, ema=0.0, lr_min=None,
           train_all=False, loss="l1", shrink=1.0, snapshots=None, lp=0):
    """Condition-side tune of a copy of ``base_model`` (GFM only, or with ``train_all`` the condition convs
    too); returns (model, curve [(step, [psnr per val pair], [{strength: psnr} per val pair])]).
    ``snapshots`` (a list) receives the GFM tensors at every validation, for weight soups. ``lp`` > 0: first
    ``lp`` GFM-only steps at lr 1e-3 (unvalidated), then ``steps`` of this tune from there (linear probe,
    then fine-tune: with ``train_all`` the convs start learning from a GFM that already fits)."""
    import copy
    if lp:
        base_model, _ = tune_c(base_model, train_pairs, real_train, lp, None, batch=batch, real_weight=real_weight,
                               seed=seed, views_pseudo=views_pseudo, views_real=views_real, ema=ema, loss=loss,
                               shrink=shrink)
    from csr_core.finetune import _Features
    from csr_core.train import TrainConfig, fit
    enc = None if train_all else base_model
    data = PairSet(enc, train_pairs, views_pseudo, seed, shrink=shrink)
    real = PairSet(enc, real_train, views_real, seed + 1, shrink=shrink) if real_train and real_weight > 0 else None
    m = copy.deepcopy(base_model)
    cond = m.cond_net
    if not train_all:
        m.cond_net = _Features()

    def draw(rng, n):
        k = int(rng.binomial(n, real_weight)) if real else 0
        return data.draw(rng, n - k) + (real.draw(rng, k) if k else [])

    curve = []
    vfeat = _val_features(enc, val or [])

    def validate(model):
        if not vfeat:
            return 0.0
        if snapshots is not None:
            snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items() if k.startswith(GFM)})
        scores, per = _val_scores(model, vfeat)
        curve.append((len(curve) * eval_every + eval_every, scores, per))
        return float(np.mean(scores))

    cfg = TrainConfig(steps=steps, batch=batch, lr=lr, lr_min=lr if lr_min is None else lr_min,
                      eval_every=eval_every if val else 10 ** 9, checkpoint_every=10 ** 9, seed=seed,
                      condition_only=True, ema=ema, loss=loss)
    fit(m, draw, cfg, validate, on_progress=(lambda info: on_progress(m, info)) if on_progress else None)
    if not train_all:
        m.cond_net = cond
    # fit() restored the best-validated state; callers that pick steps by the curve re-run without val.
    return m, curve


def _val_features(enc, val) -> list:
    """(features, input, target) per validation pair: one unaugmented view."""
    return [(_cond_input(_features(enc, x, 1, np.random.default_rng(0))[0]), x, y) for x, y in val]


def _val_scores(model, vfeat) -> tuple[list[float], list[dict]]:
    """PSNR per validation pair at strength 1, and at every one of STRENGTHS."""
    per = [_psnr_full(model, f, x, y) for f, x, y in vfeat]
    return [r[1.0] for r in per], per


#: The GFM tensors' name prefixes (what a condition-only tune changes; a soup averages them).
GFM = ("cond_scale", "cond_shift")


def soup(base_model, states: list[dict]):
    """``base_model`` with the mean of several tunes' GFM tensors (a uniform weight soup)."""
    import copy
    m = copy.deepcopy(base_model)
    m.load_state_dict({k: sum(st[k] for st in states) / len(states) for k in states[0]}, strict=False)
    return m


def _soup_curve(base_model, runs: list[list[dict]], val, eval_every: int) -> list:
    """tune_c's curve for the soup of several runs' snapshots, step by step."""
    from csr_core.finetune import _Features
    vfeat = _val_features(base_model, val)
    curve = []
    for si in range(min(len(r) for r in runs)):
        m = soup(base_model, [r[si] for r in runs])
        m.cond_net = _Features()  # the features are precomputed, as in tune_c's validation
        curve.append(((si + 1) * eval_every, *_val_scores(m, vfeat)))
    return curve


#: Strengths the k-fold also scores (calibration: how far the style should go).
STRENGTHS = (1.0, 0.85, 1.15)


def _psnr_full(model, feat, x8, y8) -> dict[float, float]:
    """PSNR of the style on a whole pair at each of STRENGTHS."""
    import torch
    x = torch.from_numpy(x8.reshape(1, -1, 3).astype(np.float32) / 255)
    with torch.no_grad():
        out = model.base(x, model.modulation(feat))[0]
    res = {}
    for s in STRENGTHS:
        o = (x[0] + s * (out - x[0])).numpy()
        res[s] = psnr(np.clip(np.round(o * 255), 0, 255).astype(np.uint8).reshape(x8.shape), y8)
    return res


def cmd_c_kfold() -> None:
    """k-fold over the 14 real pairs: each fold's pseudo-pairs use only the other folds' maps.
    ``balance=fit`` sets ``meter`` and ``cast`` per fold from its training pairs (``fit_balance``;
    ``balance=meter`` or ``cast``: that one only).
    ``maps=N`` keeps a random N of each fold's maps (how the score grows with the number of real pairs).
    ``only=0,1,2`` runs those folds alone and writes their curves to runs/OUT.partN.json (parallel
    processes); ``c-merge`` then summarises the parts as one k-fold run."""
    import torch
    torch.set_num_threads(1)
    args = dict(a.split("=") for a in sys.argv[2:])
    k, steps, seeds = int(args.get("k", 7)), int(args.get("steps", 1200)), int(args.get("seeds", 1))
    opts = _kfold_opts(args)
    base_model = _load_base(args.get("base", C_BASE))
    real = real_pairs()
    targets = expert_targets()
    maps = dict(zip([p[0] for p in real], family_of(real)))
    folds = _c_folds(len(real), k)
    curves, fitted = [], {}
    t0 = time.time()
    only = [int(f) for f in args["only"].split(",")] if "only" in args else list(range(k))
    for fi, held in enumerate(folds):
        if fi not in only:
            continue
        keep = [i for i in range(len(real)) if i not in held]
        family = [maps[real[i][0]] for i in keep]
        if "maps" in args:  # a learning curve in real maps: a random subset of the fold's family
            if not 1 <= int(args["maps"]) <= len(family):
                raise SystemExit(f"maps={args['maps']}: a fold has {len(family)} maps")
            sub = np.random.default_rng(fi + 1000 * int(args.get("draw", 0)) + 7).choice(
                len(family), int(args["maps"]), replace=False)
            family = [family[j] for j in sorted(sub)]
        val = [(real[i][1], real[i][2]) for i in held]
        if "balance" in args:  # meter and/or cast from this fold's training pairs only
            fitted[fi] = set_balance(args["balance"], [real[i] for i in keep], targets, family, seed=fi + 500)
        every, runs = int(args.get("every", 25)), []
        for si in range(seeds):  # seeds > 1: a soup of tunes on different pseudo-pair draws
            sd = 100 * si + 1000 * int(args.get("draw", 0))  # draw=N: the same recipe, other random draws
            pseudo = _pseudo_set(args, targets, family, seed=fi + sd)
            runs.append([])
            _, curve = tune_c(base_model, pseudo, [(real[i][1], real[i][2]) for i in keep], steps, val,
                              seed=fi + sd, eval_every=every, snapshots=runs[-1], **opts)
        if seeds > 1:
            curve = _soup_curve(base_model, runs, val, every)
        curves.append((held, curve))
        best = max(curve, key=lambda c: np.mean(c[1]))
        print(f"fold {fi} held {[real[i][0] for i in held]} best step {best[0]} "
              f"{[round(s, 2) for s in best[1]]} t={time.time() - t0:.0f}s", flush=True)
    if "only" in args:
        part = RUNS / f"{args.get('out', 'c_kfold.json')}.part{args['only'].replace(',', '-')}.json"
        part.write_text(json.dumps(dict(args=args, k=k, curves=curves, seconds=round(time.time() - t0),
                                        **({"balance_fitted": fitted} if fitted else {}))))
        return
    _kfold_summary(args, k, real, folds, curves, time.time() - t0, fitted=fitted)


def cmd_c_capacity() -> None:
    """``c-capacity [steps=1500] [every=100]``: what C's trainable part (the GFM layers on the base's
    frozen condition features) can reach when tuned on the 14 real pairs themselves and scored on them:
    an in-sample ceiling for the recipe family, not validation."""
    import torch
    torch.set_num_threads(1)
    args = dict(a.split("=") for a in sys.argv[2:])
    real = real_pairs()
    pairs = [(x, y) for _, x, y in real]
    _, curve = tune_c(_load_base(args.get("base", C_BASE)), pairs, [], int(args.get("steps", 1500)), pairs,
                      eval_every=int(args.get("every", 100)), seed=0, ema=0.99)
    for st, sc, _ in curve:
        print(f"step {st}: {np.mean(sc):.2f} dB in-sample  " + " ".join(f"{r[0]} {v:.1f}" for r, v in zip(real, sc)),
              flush=True)


def _c_folds(n: int, k: int) -> list[list[int]]:
    """The k-fold split of the n real pairs (fixed: every c-kfold run and part uses the same folds)."""
    order = np.random.default_rng(0).permutation(n)
    return [sorted(order[f::k].tolist()) for f in range(k)]


def cmd_c_merge() -> None:
    """``c-merge [at=STEP] runs/OUT.part0-1-2.json runs/OUT.part3-4.json ...``: one k-fold result from
    parts (``at``: report that step, fixed in advance, instead of the mean curve's best)."""
    opt = dict(a.split("=") for a in sys.argv[2:] if "=" in a)
    parts = [json.loads(Path(p).read_text()) for p in sys.argv[2:] if "=" not in p]
    args = {k: v for k, v in parts[0]["args"].items() if k != "only"}
    if any({k: v for k, v in p["args"].items() if k != "only"} != args for p in parts):
        raise SystemExit("the parts were run with different options")
    k, real = parts[0]["k"], real_pairs()
    folds = _c_folds(len(real), k)
    by_fold = {tuple(h): [(st, sc, [{float(g): v for g, v in d.items()} for d in per]) for st, sc, per in c]
               for p in parts for h, c in p["curves"]}
    if sorted(by_fold) != sorted(tuple(f) for f in folds):
        raise SystemExit(f"the parts hold folds {sorted(by_fold)}, not all {k}")
    curves = [(f, by_fold[tuple(f)]) for f in folds]
    fitted = {int(f): v for p in parts for f, v in p.get("balance_fitted", {}).items()}
    _kfold_summary(args, k, real, folds, curves, sum(p["seconds"] for p in parts),
                   at=int(opt["at"]) if "at" in opt else None, fitted=fitted)


def _kfold_summary(args: dict, k: int, real, folds, curves, seconds: float, at: int | None = None,
                   fitted: dict | None = None) -> None:
    """Print and save (runs/OUT) a k-fold run: the mean curve, its best step, per-pair scores, wins (and
    ``fitted``: option balance='s meter and cast per fold)."""
    steps_seen = [c[0] for c in curves[0][1]]
    mean_curve = []
    for si, st in enumerate(steps_seen):
        vals = {real[i][0]: c[si][1][j] for held, c in curves for j, i in enumerate(held)}
        mean_curve.append((st, float(np.mean(list(vals.values()))), vals))
    for st, m, _ in mean_curve:
        print(f"step {st}: {m:.3f}")
    best = max(mean_curve, key=lambda r: r[1])
    fixed = [r for r in mean_curve if r[0] == at]
    if at is not None and not fixed:
        raise SystemExit(f"at={at}: the curve has steps {steps_seen[0]} to {steps_seen[-1]} every {steps_seen[0]}")
    st, m, vals = fixed[0] if fixed else best
    si = [c[0] for c in curves[0][1]].index(st)
    by_strength = {s: float(np.mean([c[si][2][j][s] for _, c in curves for j in range(len(c[si][2]))]))
                   for s in STRENGTHS}
    print(f"step {st} by strength: {by_strength}")
    ac = dict(zip([p[0] for p in real], score_fn(autocontrast_pt, real)))
    wins = sum(vals[f] > ac[f] for f in vals)
    print(f"{'BEST' if at is None else 'FIXED'} step {st}: mean {m:.3f} dB; autocontrast_pt "
          f"{np.mean(list(ac.values())):.3f}; wins {wins}/14")
    res = dict(args=args, k=k, folds=[[real[i][0] for i in f] for f in folds], best_step=st, mean=m,
               step_fixed_in_advance=at is not None, curve_best=dict(step=best[0], mean=best[1]),
               per_pair=vals, autocontrast_tone=ac, wins=wins, by_strength=by_strength,
               curve=[(s, v) for s, v, _ in mean_curve], seconds=round(seconds),
               **({"balance_fitted": {str(f): fitted[f] for f in sorted(fitted)}} if fitted else {}))
    print(json.dumps(res))
    (RUNS / args.get("out", "c_kfold.json")).write_text(json.dumps(res, indent=1))


def _registry():
    """This checkout's built-in styles (``default_registry`` follows the editable install, which may be
    another checkout) plus the user's."""
    from csr_core.registry import Registry
    return Registry(ROOT / "weights")


def _load_base(base: str):
    """A torch model: a full .safetensors file, or a registry style."""
    from csr_core.model import CSRNet, from_state
    if base.endswith(".safetensors"):
        from safetensors.torch import load_file
        m = CSRNet()
        m.load_state_dict(load_file(base))
        return m.eval()
    return from_state(_registry().net(base).state).eval()


def cmd_score_ckpt() -> None:
    """Score a training checkpoint (or .safetensors) as a full style on the 14 real pairs and good photos."""
    import torch
    from csr_core.inference import Look, retouch_array
    from csr_core.model import CSRNet
    path = Path(sys.argv[2])
    m = CSRNet()
    if path.suffix == ".pt":
        ck = torch.load(path, weights_only=True)
        m.load_state_dict(ck["model"] if len(sys.argv) < 4 else ck["best_state"])
    else:
        m = _load_base(str(path))
    m.eval()
    from csr_core.engine import Net
    from csr_core.model import numpy_state
    look = Look.of(Net(numpy_state(m)), 256)
    pairs = real_pairs()
    for s in (1.0,):
        v = score_fn(lambda x: retouch_array(x, look, s, "cpu", exact=True), pairs)
        ac = score_fn(autocontrast_pt, pairs)
        print(f"strength {s}: 14-pair mean {np.mean(v):.3f} (autocontrast_pt {np.mean(ac):.3f}), wins "
              f"{sum(a > b for a, b in zip(v, ac))}/14", [round(x, 2) for x in v])
    from csr_core.image_io import SUPPORTED_EXTENSIONS, load_photo
    from csr_core.train import split_holdout
    _, good = split_holdout([p for p in (SHARED / "photos").rglob("*") if p.suffix.lower() in SUPPORTED_EXTENSIONS])
    g = [psnr(retouch_array(load_photo(p).rgb, look, 1.0, "cpu", exact=True), load_photo(p).rgb) for p in good]
    print(f"good photos left alone: {np.mean(g):.2f} dB over {len(g)}")



def _kfold_opts(args: dict) -> dict:
    """tune_c's keyword options from a c-kfold / c-final argument dict (and PSEUDO updated)."""
    PSEUDO.update({k: float(args[k]) for k in PSEUDO if k in args})
    if "balance" in args:
        if args["balance"] not in ("fit", "meter", "cast"):
            raise SystemExit(f"balance={args['balance']}: use fit, meter or cast")
        if "meter" in args or "cast" in args or float(args.get("cam", 0)):
            raise SystemExit("balance= fits meter and cast itself (and scales family blends only): not with "
                             "meter=, cast= or cam=")
    if "maps" in args and ("balance" in args or float(args.get("rw", 0))):
        raise SystemExit("maps= thins the family only: not with balance= or rw= (they would still use 12 pairs)")
    if int(args.get("seeds", 1)) > 1 and args.get("train") == "all":
        raise SystemExit("seeds= soups the GFM tensors only: not with train=all")
    return dict(ema=float(args.get("ema", 0)), train_all=args.get("train") == "all", loss=args.get("loss", "l1"),
                lr_min=float(args["lr_min"]) if "lr_min" in args else None, lr=float(args.get("lr", 1e-3)),
                real_weight=float(args.get("rw", 0.0)), shrink=float(args.get("shrink", 1.0)),
                lp=int(args.get("lp", 0)))


def cmd_c_final() -> None:
    """The shipped C: a c-kfold run's recipe (its JSON: options and chosen step count) on all 14 maps
    (and real pairs): ``c-final runs/K.json`` writes runs/C/C.safetensors (condition tensors + base)."""
    import torch
    from safetensors.torch import save_file
    torch.set_num_threads(1)
    kf = json.loads(Path(sys.argv[2]).read_text())
    args = kf["args"]
    if "maps" in args:
        raise SystemExit("maps= is a k-fold measurement (fewer real maps per fold), not a recipe to ship")
    base_model = _load_base(args.get("base", C_BASE))
    real = real_pairs()
    maps = family_of(real)
    opts = _kfold_opts(args)
    targets, models = expert_targets(), []
    if "balance" in args:
        set_balance(args["balance"], real, targets, maps, seed=599)
    for sd in range(int(args.get("seeds", 1))):
        pseudo = _pseudo_set(args, targets, maps, seed=99 + 100 * sd)
        models.append(tune_c(base_model, pseudo, [(x, y) for _, x, y in real], int(kf["best_step"]), None,
                             seed=99 + 100 * sd, **opts)[0])
    m = models[0] if len(models) == 1 else soup(
        base_model, [{k: v for k, v in mm.state_dict().items() if k.startswith(GFM)} for mm in models])
    out = RUNS / "C"
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().clone().contiguous() for k, v in m.state_dict().items()}, str(out / "C.safetensors"))
    print("saved", out / "C.safetensors", flush=True)


def _r3(d: dict) -> dict:
    return {k: round(float(v), 3) for k, v in d.items()}


def _read_manifest() -> dict:
    return json.loads((ROOT / "weights" / "manifest.json").read_text())


def _write_manifest(manifest: dict) -> None:
    """Replace weights/manifest.json atomically (the styles' cards)."""
    from csr_core.fsutil import atomic_write
    with atomic_write(ROOT / "weights" / "manifest.json", "w") as fh:
        json.dump(manifest, fh, indent=1)


def _real_scores(spec: str, baselines=()) -> tuple[list[dict], dict]:
    """Per-pair rows and means of a registry style on the 14 real pairs (a fresh default registry)."""
    from csr_core.evaluate import evaluate
    reg = _registry()
    rows = [r for d in ("fivek-c-dev", "fivek-c-extra")
            for r in evaluate(SHARED / d, spec, registry=reg, baselines=baselines)["pairs"]]
    methods = [spec, *baselines, "do-nothing"]
    return rows, {m: _r3({k: np.mean([r[m][k] for r in rows]) for k in rows[0][m]}) for m in methods}


def cmd_score_auto() -> None:
    """Measure the shipped auto (as the registry composes it) and write every score onto its card."""
    from publish_auto import auto_scores
    scores = auto_scores(_registry().look("auto"))
    rows, mean = _real_scores("auto", ("autocontrast", "autocontrast-tone"))
    manifest = _read_manifest()
    card = manifest["styles"]["auto"]
    picked = ("; the calibration strength was chosen on them (its leave-one-out estimate is on the card)"
              if "calibration" in card["training"] else "")
    scores["fivek_c_dev"]["note"] += picked
    scores["fivek_c_real"] = {
        "pairs": len(rows), **mean, "wins_vs_autocontrast_tone": sum(r["auto"]["psnr"] > r["autocontrast-tone"]["psnr"] for r in rows),
        "per_pair": {r["name"]: round(r["auto"]["psnr"], 3) for r in rows},
        "note": "the 14 real expert-C pairs (../shared/data/fivek-c-dev + fivek-c-extra); never used for training" + picked}
    card["scores"] = scores
    _write_manifest(manifest)
    print(json.dumps(scores, indent=1))


#: How the card names each training loss.
LOSS_WORDS = {"l1": "L1", "mse": "MSE", "psnr": "minus the mean per-image PSNR"}


def _c_recipe(a: dict, steps: int, fixed: bool = False) -> str:
    """The card's one-paragraph recipe of a c-kfold argument dict."""
    what = ("GFM layers and condition convs tuned; base frozen" if a.get("train") == "all"
            else "GFM layers tuned; condition convs and base frozen")
    ema = f", weights averaged (EMA decay {a['ema']})" if float(a.get("ema", 0)) else ""
    shrink = float(a.get("shrink", 1))
    calib = (f"; every training target moved {shrink:g} of the way from its input (calibration: held-out "
             "pairs showed the full correction goes too far)") if shrink != 1 else ""
    nat = (f"; plus {a['nat']} pseudo-inputs per natural photo of ../shared/data/photos (squashed to 256 x 256) "
           "as further targets") if int(a.get("nat", 0)) else ""
    near = (f"; each photo's maps picked with probability following a Gaussian (spread {a['near']}) in the "
            "distance between its look and the look of the photo each map was fitted on") if float(a.get("near", 0)) else ""
    sat = f", saturation x1+-{a['sat']}" if float(a.get("sat", 0)) else ""
    amp = f", the blend's change scaled x1+-{a['amp']}" if float(a.get("amp", 0)) else ""
    cam = (f"; a share {a['cam']} of pseudo-inputs a camera-like rendering instead (as-shot white balance, "
           "under-exposure, flat tone curve, lifted blacks)") if float(a.get("cam", 0)) else ""
    kinds = {"meter": "exposure (a camera's metering)", "cast": "colour balance (a camera's as-shot white balance)"}
    bal = ("; each pseudo-input's " + " and ".join(v for k, v in kinds.items() if a["balance"] in (k, "fit"))
           + f" rescaled to the real inputs' slope on their expert photo (option balance={a['balance']}, fitted on the "
           "training pairs)") if "balance" in a else ""
    why = "fixed in advance" if fixed else "the k-fold's best step count"
    n = int(a.get("seeds", 1))
    soup_ = (f"; a uniform soup: the mean GFM tensors of {n} such tunes on different pseudo-pair draws "
             f"(seeds 99, 199, ...)") if n > 1 else ""
    return (f"condition-only fine-tune ({what}) from '{a.get('base', C_BASE)}' on pseudo-pairs: each real pair's "
            "inverse global colour map (13-term cubic in R, G, B, least squares, target -> input) is fitted; each "
            f"expert-C finished photo gets {a.get('per', 4)} pseudo-inputs (a random Dirichlet-weighted blend of "
            f"{int(float(a.get('blend', 2)))} inverse maps, exposure x1+-{a.get('gain', 0.15)}, white-balance jitter "
            f"{a.get('wb', 0.03)}{sat}{amp}, 8-bit), 2 condition views each; real pairs drawn with probability "
            f"{a.get('rw', 0.0)}; {LOSS_WORDS[a.get('loss', 'l1')]} on 4096 sampled pixels, batch 8, Adam lr "
            f"{a.get('lr', 1e-3)} constant{ema}, {steps} steps ({why}), seed 99, 1 CPU thread"
            f"{cam}{near}{bal}{calib}{nat}{soup_}")


def _rename_scores(card: dict, old: str, new: str) -> dict:
    """A card whose score tables name the style ``new`` where they said ``old``."""
    return dict(card, scores={k: {(new if m == old else m): v for m, v in t.items()} for k, t in card["scores"].items()})


def cmd_publish_auto_cal() -> None:
    """Ship a calibrated auto (``auto-calibrate``'s output, ``auto-strength``'s choice) as 'auto': its GFM
    tensors on the full network of the auto trained before, which stays as 'auto-v1' (same bytes and
    sha256, so C and every style fine-tuned on it load unchanged). Re-runnable: unchanged tensors keep
    their file.

    python tools/styles_lab.py publish-auto-cal runs/auto_cal
    """
    import hashlib
    from safetensors.numpy import load_file, save
    from csr_core.architecture import CONDITION_KEYS
    from csr_core.fsutil import write_bytes_atomic
    src = Path(sys.argv[2])
    wdir, manifest = ROOT / "weights", _read_manifest()
    styles = manifest["styles"]
    if styles["auto"]["kind"] == "full":  # first run: the full auto becomes auto-v1 (copied, never moved)
        if "auto-v1" in styles:
            raise SystemExit("weights/ has a full 'auto' and an 'auto-v1': publish one base network, not two")
        blob = (wdir / styles["auto"]["file"]).read_bytes()
        write_bytes_atomic(wdir / "auto-v1.safetensors", blob)
        v1 = _rename_scores(dict(styles["auto"], file="auto-v1.safetensors", description=(
            "auto as first trained, before its strength calibration: it goes about 1.4x as far as auto; "
            "the base network that every built-in style runs on")), "auto", "auto-v1")
        description = styles["auto"]["description"]
    else:
        v1, description = styles["auto-v1"], styles["auto"]["description"]
    rec = json.loads((src / "recipe.json").read_text())
    cal = json.loads((RUNS / "strength_auto-v1.json").read_text())
    s = rec["strength"]
    if cal["sha256"] != v1["sha256"] or rec["args"].get("base") != "auto-v1":
        raise SystemExit("the strength scan and the distillation must both be of auto-v1 (sha256 and base=)")
    best = max(cal["by_strength"], key=lambda g: cal["by_strength"][g]["psnr"])
    if abs(float(best) - s) > 1e-9:
        raise SystemExit(f"distilled at strength {s:g}, but the scan's best strength is {best}")
    base = load_file(str(wdir / "auto-v1.safetensors"))
    new = load_file(str(src / "auto.safetensors"))
    moved = sorted(k for k in new if not np.array_equal(new[k], base[k]))
    if not set(moved) <= CONDITION_KEYS:
        raise SystemExit(f"not a condition-only change: {sorted(set(moved) - CONDITION_KEYS)}")
    state = {k: new[k] for k in moved}
    old = wdir / "auto.safetensors"
    shipped = load_file(str(old)) if styles["auto"]["kind"] == "condition" else {}
    if sorted(shipped) == moved and all(np.array_equal(v, state[k]) for k, v in shipped.items()):
        blob = old.read_bytes()  # the same tensors: keep the file (its header bytes are not reproducible)
    else:
        blob = save(state, metadata={"name": "auto", "architecture": "csrnet"})
        write_bytes_atomic(old, blob)
    args = rec["args"]
    card = {
        "file": "auto.safetensors", "sha256": hashlib.sha256(blob).hexdigest(), "architecture": "csrnet",
        "kind": "condition", "cond_size": 256, "base": {"name": "auto-v1", "sha256": v1["sha256"]},
        "description": description,
        "training": {
            "data": "the 707 training photos of auto-v1 (../shared/data/photos; every 25th file by name held out): "
                    "no MIT-Adobe FiveK image was used.",
            "recipe": f"auto-v1's GFM layers (base and condition convs frozen and shared) distilled toward auto-v1 "
                      f"at strength {s:g} (x + {s:g} (f(x) - x)) on {rec['pairs']} degradations of those photos "
                      f"(csr_core.degrade: 15% identity, 45% camera-like renderings, 40% generic faults; 256 px, "
                      f"8-bit); L1 on 4096 pixels, batch 8, Adam lr {args.get('lr', 1e-3)}, EMA "
                      f"{args.get('ema', 0.99)}, {args.get('steps', 1500)} steps; the step with the best "
                      f"distillation PSNR on the 30 held-out photos. Command: python tools/styles_lab.py "
                      f"auto-calibrate {' '.join(f'{k}={v}' for k, v in args.items())}",
            "train_seconds": rec["seconds"],
            "calibration": {
                "why": "auto-v1 over-corrects real camera renderings: on the 14 real expert-C pairs it scores best "
                       "at a strength well below 1",
                "chosen_strength": s,
                "auto_v1_by_strength": cal["by_strength"],
                "leave_one_out": dict(cal["loo"], note="auto-v1, each pair scored at the strength best on the "
                                                        "other 13: the estimate of choosing one number on these pairs"),
                "disclosure": "one number, the strength, was picked by scoring auto-v1 on the 14 real FiveK "
                              "pairs; no FiveK image reached the weights' training",
                "command": "python tools/styles_lab.py auto-strength style=auto-v1",
            },
            "distillation_validation": rec["curve"],
        },
        "scores": styles["auto"]["scores"] if styles["auto"]["kind"] == "condition" else {},
        "licence": v1["licence"] + f" One number, the calibration strength ({s:g}), was chosen by scoring auto-v1 on "
                                   f"{len(cal['pairs'])} real MIT-Adobe FiveK pairs.",
    }
    rest = {k: v for k, v in styles.items() if k not in ("auto", "auto-v1")}
    if rest.get("C", {}).get("base", {}).get("sha256") == v1["sha256"]:
        rest["C"]["base"]["name"] = "auto-v1"
    manifest["styles"] = {"auto": card, **rest, "auto-v1": v1}
    _write_manifest(manifest)
    cmd_score_auto()


def _card_recipe(card: dict) -> dict:
    """C's card's shipped recipe as a compared_not_shipped entry (its c-kfold options and scores)."""
    cmd = card["training"]["recipe"]["command"].split(" && ")[0].split()[3:]
    return {"options": dict(o.split("=") for o in cmd), "best_step": card["validation"]["chosen_steps"],
            "mean": card["validation"]["mean"]["psnr"], "wins": card["validation"]["wins_vs_autocontrast_tone"]}


def _compared(old: list[dict], shipped_out: str | None, runs: list[dict]) -> list[dict]:
    """C's card's compared_not_shipped: ``old`` entries followed by ``runs`` (k-fold JSONs), one entry per
    run name (``out``), leaving out the shipped run ``shipped_out``."""
    new = [{"options": o["args"], "best_step": o["best_step"], "mean": round(o["mean"], 3), "wins": o["wins"],
            **({"note": o["note"]} if "note" in o else {})} for o in runs]
    out, seen = [], {shipped_out}
    for e in old + new:
        if e["options"].get("out") not in seen:
            seen.add(e["options"].get("out"))
            out.append(e)
    return out


def cmd_c_compared() -> None:
    """``c-compared runs/K.json ...``: add k-fold runs (``c-merge`` outputs) to C's card's
    compared_not_shipped; the weights and the rest of the card stay as they are."""
    manifest = _read_manifest()
    card = manifest["styles"]["C"]
    val = card["validation"]
    runs = [json.loads(Path(f).read_text()) for f in sys.argv[2:]]
    val["compared_not_shipped"] = _compared(val.get("compared_not_shipped", []), _card_recipe(card)["options"].get("out"), runs)
    _write_manifest(manifest)
    print(f"C's card now compares {len(val['compared_not_shipped'])} recipes")


def cmd_publish_c() -> None:
    """Write weights/C.safetensors (condition tensors on auto's base) and its card from c-final + c-kfold.

    python tools/styles_lab.py publish-c runs/C/C.safetensors runs/K.json [runs/OTHER.json ...]

    Further k-fold JSONs are the recipes compared with it and not shipped: the card lists them
    (choosing among them makes the shipped recipe's k-fold mean slightly optimistic).
    """
    import hashlib
    from safetensors.numpy import load_file, save
    from csr_core.fsutil import write_bytes_atomic
    c_w, c_kf = Path(sys.argv[2]), Path(sys.argv[3])
    kf = json.loads(c_kf.read_text())
    manifest = _read_manifest()
    old_c = manifest["styles"].get("C", {})  # its compared list and, replaced now, its shipped recipe
    old_runs = ([*old_c["validation"].get("compared_not_shipped", []), _card_recipe(old_c)]
                if old_c.get("validation") else [])
    reg = _registry()
    auto_style = reg._base_style(reg.get("auto"))  # the shared full base
    base = reg.net(auto_style).state
    cstate = {k: v for k, v in load_file(str(c_w)).items() if not np.array_equal(v, base[k])}  # what tuning changed
    cblob = save(dict(sorted(cstate.items())), metadata={"name": "C", "architecture": "csrnet"})
    write_bytes_atomic(ROOT / "weights" / "C.safetensors", cblob)
    a = kf["args"]
    ids = [fid for fid, _, _ in real_pairs()]
    ac = kf["autocontrast_tone"]
    c_card = {
        "file": "C.safetensors", "sha256": hashlib.sha256(cblob).hexdigest(), "architecture": "csrnet",
        "kind": "condition", "cond_size": 256, "base": {"name": auto_style.name, "sha256": auto_style.sha256},
        "description": "MIT-Adobe FiveK expert C's look: brighter, cleaner blacks, natural colour (the "
                       f"{'condition net and GFM layers' if a.get('train') == 'all' else 'GFM layers'} "
                       f"of '{auto_style.name}' fine-tuned on expert-C photos)",
        "training": {
            "data": {"pairs": len(ids), "ids": ids,
                     "target_ids": [fid for fid, _ in expert_targets()],
                     "source": "../shared/data/fivek-c-dev (13 pairs) and fivek-c-extra (a0634): MIT-Adobe FiveK inputs "
                               "+ expert C; ../shared/data/fivek-c-targets: 221 expert-C finished photos without inputs "
                               "(ids a0017-a4500). None from the FiveK test split (ids 4501 to 5000)."},
            "recipe": {
                "method": _c_recipe(a, kf["best_step"], kf.get("step_fixed_in_advance", False)),
                "command": f"python tools/styles_lab.py c-kfold {' '.join(f'{k}={v}' for k, v in a.items())} && "
                           f"python tools/styles_lab.py c-final runs/{a.get('out', 'c_kfold.json')}",
                "chosen_steps": kf["best_step"],
            },
        },
        "validation": {
            "method": f"{kf['k']}-fold over the 14 real pairs; each fold's pseudo-pairs use only the other folds' "
                      "colour maps (a held-out pair's own map never reaches training); "
                      + ("the step count was fixed in advance" if kf.get("step_fixed_in_advance") else
                         "the mean curve over folds picks the step count")
                      + ", and the recipe was picked among those in compared_not_shipped (so the mean is slightly "
                      "optimistic)",
            "folds": kf["folds"], "chosen_steps": kf["best_step"],
            "curve": [[s, round(v, 3)] for s, v in kf["curve"]],
            "mean": {"psnr": round(kf["mean"], 3)},
            "autocontrast_tone": {"psnr": round(float(np.mean(list(ac.values()))), 3)},
            "wins_vs_autocontrast_tone": kf["wins"],
            "per_pair": {n: {"psnr": round(v, 3), "autocontrast_tone": round(ac[n], 3)} for n, v in kf["per_pair"].items()},
            "by_strength": {str(k): round(v, 3) for k, v in kf.get("by_strength", {}).items()},
            "compared_not_shipped": _compared(old_runs, a.get("out"), [json.loads(Path(f).read_text()) for f in sys.argv[4:]]),
        },
        "scores": {},
        "licence": "research only: trained on MIT-Adobe FiveK data (expert C retouches), whose licence permits "
                   "research use; the weights inherit it",
    }
    manifest["styles"]["C"] = c_card
    _write_manifest(manifest)
    _, insample = _real_scores("C", ("autocontrast-tone",))  # the card is in place: score the shipped style
    c_card["scores"] = {
        "validation": {"pairs": len(ids), "method": f"{kf['k']}-fold (see 'validation')", "psnr": round(kf["mean"], 3),
                       "baseline_psnr": insample["do-nothing"]["psnr"],
                       "autocontrast_tone_psnr": c_card["validation"]["autocontrast_tone"]["psnr"]},
        "in_sample_real_pairs": {"pairs": len(ids), **insample,
                                 "note": "the 14 pairs C was trained on: not validation"}}
    _write_manifest(manifest)
    print(json.dumps(c_card["validation"]["mean"]), "in-sample", insample["C"])


if __name__ == "__main__":
    globals()["cmd_" + sys.argv[1].replace("-", "_")]()
