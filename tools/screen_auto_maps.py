"""Screen (not shipped): auto's recipe with FiveK's inverse colour maps as a share of the "before" photos.

    python tools/screen_auto_maps.py TAG maps=0.4 neutral=0 identity=0.25 stretch=2 ev=-0.1 seed=2

Each natural photo's "before" is, by share: left alone (identity), made with a blend of the 14 train-range
pairs' inverse maps (maps; ``csr_core.pseudo.pseudo_before`` with C's scaling ``stretch`` and offset ``ev``),
a neutral camera rendering (neutral; ``build_auto.neutral_params``), or a generic fault (the rest). auto-v1's
GFM layers are tuned as ``build_auto.py auto-neutral`` does, and the result is scored on the test split, the 14
pairs (their maps were used, so not unseen), the other renderings, good photos and the bundled samples.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_auto as A  # noqa: E402
import build_c as B  # noqa: E402
from csr_core import degrade, finetune as ft  # noqa: E402
from csr_core.evaluate import evaluate  # noqa: E402
from csr_core.image_io import SUPPORTED_EXTENSIONS, load_photo  # noqa: E402
from csr_core.pseudo import PseudoRecipe, fit_inverse_map, pseudo_before  # noqa: E402
from csr_core.registry import Registry  # noqa: E402
from csr_core.train import split_holdout  # noqa: E402


def main(tag: str, *opts: str) -> None:
    a = dict(maps=0.4, identity=0.25, neutral=0.0, stretch=2.0, ev=-0.1, seed=2, steps=1200, per=2)
    for kv in opts:
        k, v = kv.split("=")
        a[k] = type(a[k])(v)
    maps = [fit_inverse_map(np.asarray(load_photo(p.before).rgb), np.asarray(load_photo(p.after).rgb))
            for p in B.train_pairs()]
    recipe = PseudoRecipe(stretch=a["stretch"], exposure_ev=a["ev"])
    photos = [p for p in (A.SHARED / "photos").rglob("*") if p.suffix.lower() in SUPPORTED_EXTENSIONS]
    train_paths, val_paths = split_holdout(photos)
    rng = np.random.default_rng(a["seed"])

    def degraded(paths, per):
        pairs = []
        for path in paths:
            y8 = A._small_u8(path)
            for _ in range(per):
                u = rng.random()
                if u < a["identity"]:
                    x8 = y8
                elif u < a["identity"] + a["maps"]:
                    x8 = pseudo_before(y8, maps, rng, recipe)
                else:
                    p = (A.neutral_params(rng) if u < a["identity"] + a["maps"] + a["neutral"]
                         else degrade.random_params(rng, identity_prob=0.0))
                    y = torch.from_numpy(y8.astype(np.float32) / 255)
                    x8 = torch.round(degrade.apply(y, p) * 255).to(torch.uint8).numpy()
                pairs.append((x8, y8))
        return pairs

    train, val = degraded(train_paths, a["per"]), degraded(val_paths, 1)
    cfg = ft.FinetuneConfig(seed=a["seed"])
    tuner = ft._Tuner(A._load_base("auto-v1"), val, 256, cfg, lambda info: None)
    _, run = tuner.run([], list(range(len(val))), a["steps"], 0, extra=tuner.dataset(train, cfg.pseudo_views, seed=1))
    model = ft._snapshot(tuner, run, run["curve"][-1][0])
    reg = Registry(B.ROOT / "weights", A.RUNS / "screen_auto_maps")
    name = f"am-{tag}"
    reg.save_style(name, {k: v.detach() for k, v in model.state_dict().items()}, {"description": "screen"},
                   base=reg.get("auto-v1"), overwrite=True)
    out = dict(tag=tag, options=a)
    for key, dirs in (("val", ["fivek-c-val"]), ("14 pairs", B.TRAIN_SETS), ("renderings", ["fivek-c-renderings"])):
        rows = [r for d in dirs
                for r in evaluate(B.DATA / d, name, registry=reg, baselines=("autocontrast-tone",))["pairs"]]
        out[key] = round(float(np.mean([r[name]["psnr"] for r in rows])), 2)
        out[key + " wins"] = int(sum(r[name]["psnr"] > r["autocontrast-tone"]["psnr"] for r in rows))
    out.update(A._draw_scores(reg.look(name)))
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
