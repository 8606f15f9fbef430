"""Maintainer script: publish a trained 'auto' into weights/ with an honest, measured card.

    python tools/publish_auto.py runs/auto/auto.safetensors runs/auto/hist.json

Scores written to the manifest: held-out synthetic pairs (PSNR/SSIM/dE2000 vs doing nothing), the
held-out good photos left untouched (PSNR of output vs input), and the 13 FiveK expert-C dev pairs
(vs doing nothing and vs Pillow autocontrast). Every score is computed here, with csr_core.metrics.
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save

from csr_core.evaluate import evaluate
from csr_core.fsutil import atomic_write, write_bytes_atomic
from csr_core.image_io import SUPPORTED_EXTENSIONS, load_photo, to_float
from csr_core.engine import Net
from csr_core.inference import Look, retouch_array
from csr_core.metrics import score
from csr_core.model import CSRNet, numpy_state
from csr_core.train import SyntheticPairs, split_holdout

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
COND_SIZE = 256
#: The terms of the weights and of the photos they were trained on (as data/photos/MANIFEST.tsv gives them).
LICENCE = ("MIT (the weights, as trained here). The training photos are not distributed with csr; they are public "
           "image-restoration benchmarks under their own terms: BSDS500 and CBSD68 (500 Corel photos; Berkeley: "
           "free for non-commercial research and educational purposes), Urban100, Sun-Hays80, McMaster, Val20, "
           "Set14 and Set5 (research benchmarks, no licence stated), Kodak24 (described as released by Eastman "
           "Kodak for unrestricted use). No MIT-Adobe FiveK image was used.")


def auto_scores(look: Look, dev_pairs: bool = True) -> dict:
    """The card scores of an 'auto': held-out synthetic pairs, held-out good photos left alone, and (with
    ``dev_pairs``) the 13 FiveK expert-C dev pairs (vs doing nothing and Pillow autocontrast)."""
    photos = SHARED / "data" / "photos"
    _, val_paths = split_holdout([p for p in photos.rglob("*") if p.suffix.lower() in SUPPORTED_EXTENSIONS])
    originals = [to_float(load_photo(p).rgb) for p in val_paths]
    val = SyntheticPairs(originals, COND_SIZE, 1).fixed_set(seed=1234)  # the exact validation set of training
    u8 = lambda t: np.rint(np.clip(np.asarray(t), 0, 1) * 255).astype(np.uint8)  # noqa: E731
    synth = {"do-nothing": [], "auto": []}
    for x, y in val:
        synth["do-nothing"].append(score(u8(x), u8(y)))
        synth["auto"].append(score(retouch_array(u8(x), look), u8(y)))
    mean = lambda rows: {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0]}  # noqa: E731
    untouched = [score(retouch_array(u8(y), look), u8(y)) for _, y in val]
    scores = {
        "synthetic_holdout": {"pairs": len(val), "auto": mean(synth["auto"]), "do-nothing": mean(synth["do-nothing"])},
        "good_photos_left_alone": {"photos": len(val), "output_vs_input": mean(untouched)},
    }
    if dev_pairs:
        dev = evaluate(SHARED / "data" / "fivek-c-dev", look, baselines=("autocontrast",))
        r3 = lambda d: {k: round(v, 3) for k, v in d.items()}  # noqa: E731
        scores["fivek_c_dev"] = {"pairs": len(dev["pairs"]), **{("auto" if m == "style" else m): r3(v) for m, v in dev["mean"].items()},
                                 "note": "the edits of MIT-Adobe FiveK's expert C; never trained on"}
    return scores


def card_words(hist: dict) -> dict:
    """What the card says of the training run ``hist`` (its hist.json): description, licence, data, recipe
    and chosen_by."""
    return {
        "description": f"the full network every built-in style runs on: trained from scratch on "
                       f"{hist['train_images']} natural photos to undo exposure, colour, contrast and tone faults "
                       "(auto is fine-tuned from it, C from auto)",
        "data": f"{hist['train_images']} public natural photos from image-restoration benchmarks (BSDS500, "
                "CBSD68, Urban100, Sun-Hays80, Kodak24, McMaster, Val20, Set14 and Set5; their terms are in the "
                f"licence), and {hist['val_images']} more held out for validation (every 25th file by name). No "
                "MIT-Adobe FiveK image was used.",
        "recipe": "the whole network, trained from scratch to undo random faults added to the photos (long side "
                  "256): exposure -2.2 to +0.9 EV, blue/amber and green/magenta casts, contrast, saturation, "
                  "gamma, lifted blacks, a highlight roll-off; 12% left as they are, 25% mild; the altered copies "
                  "rounded to 8 bits. It learned to give back each original, judged on 4096 of its pixels, 16 "
                  "photos at a time, in steps that grow smaller over the run; seed 0, 1 CPU thread; "
                  "2800 steps in all (steps 1-2250 on a 5000-step schedule, then resumed on a 2800-step one), "
                  "the final weights kept. The same recipe on your photos: csr train --photos FOLDER --name NAME",
        "chosen_by": "the final weights (20.83 dB on the 30 held-out photos during training) were kept over "
                     "those of step 2250, which scored best there (21.02 dB), after both were scored on 13 of "
                     "the 14 FiveK train-range pairs (step 2250: 20.62 dB)",
        "licence": LICENCE,
    }


def main(weights: Path, hist_path: Path) -> None:
    hist = json.loads(hist_path.read_text())
    model = CSRNet()
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    look = Look.of(Net(numpy_state(model)), COND_SIZE)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    blob = save(state, metadata={"name": "auto", "architecture": "csrnet"})
    out = REPO / "weights"
    write_bytes_atomic(out / "auto.safetensors", blob)
    words = card_words(hist)
    card = {
        "file": "auto.safetensors",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "architecture": "csrnet",
        "kind": "full",
        "cond_size": COND_SIZE,
        **{k: words[k] for k in ("description", "licence")},
        "training": {**{k: words[k] for k in ("data", "recipe", "chosen_by")}, "cpu_seconds": round(hist["seconds"])},
        "scores": auto_scores(look),
    }
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"format": 1, "styles": {}}
    manifest["styles"]["auto"] = card
    with atomic_write(manifest_path, "w") as fh:
        json.dump(manifest, fh, indent=2)
    print(json.dumps(card["scores"], indent=1))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
