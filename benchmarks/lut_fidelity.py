"""Fidelity of the baked-LUT path: PSNR of LUT output vs the exact per-pixel network, per lattice size.

    python benchmarks/lut_fidelity.py [--sizes 17,33,65] [--every 3] [--weights extra.safetensors ...]

Images: ../shared/data/photos (every N-th) and the FiveK inputs in ../shared/data/fivek-c-dev, 8-bit.
Styles: the registry's built-in styles; ``--weights`` adds full CSRNet safetensors files (e.g. a
quickly trained one); ``--synthetic`` adds a random-init CSRNet (its clamped output is ~black, so it
says little) and a random near-identity one with ReLU bends (tests/test_lut.py's ``lively_model``).
Each image is conditioned on itself exactly as ``retouch_array`` does; the LUT output is the real
8-bit path as retouching runs it (``LazyLut``: only the lattice points the photo's colours reach are
baked). ``vs full bake`` is its largest difference from a LUT baked on the whole lattice (``bake_lut`` +
``apply_lut``), in 8-bit levels, and the share of values that differ at all. Not a test.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from csr_core.image_io import load_photo  # noqa: E402
from csr_core.engine import Net  # noqa: E402
from csr_core.inference import Look, apply_base, base_fn, look_modulation  # noqa: E402
from csr_core.lut import LazyLut, apply_lut, bake_lut  # noqa: E402
from csr_core.registry import Registry  # noqa: E402

SHARED = REPO.parent / "shared" / "data"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return 99.0 if mse == 0 else float(10 * np.log10(255 ** 2 / mse))


def looks(weights: list[str], synthetic: bool) -> dict[str, Look]:
    out = {}
    reg = Registry()
    for style in reg.styles():
        if style.builtin:
            out[style.name] = reg.look(style.name)
    for path in weights:
        from safetensors.numpy import load_file

        out[Path(path).stem] = Look.of(Net(load_file(path)), 256)
    if synthetic or not out:
        sys.path.insert(0, str(REPO / "tests"))
        import torch

        from conftest import lively_net
        from csr_core.model import CSRNet, numpy_state

        torch.manual_seed(0)
        out["random-init"] = Look.of(Net(numpy_state(CSRNet())), 256)
        out["random-residual"] = Look.of(lively_net(), 256)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="17,33,65")
    ap.add_argument("--every", type=int, default=3, help="use every N-th photo")
    ap.add_argument("--strength", type=float, default=1.0)
    ap.add_argument("--weights", nargs="*", default=[])
    ap.add_argument("--synthetic", action="store_true", help="also two random CSRNets (see above)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    files = sorted((SHARED / "photos").glob("*.jpg"))[::args.every]
    files += sorted((SHARED / "fivek-c-dev").glob("*_input.png"))
    if not files:
        sys.exit(f"no images under {SHARED}")
    print(f"{len(files)} images, sizes {sizes}, strength {args.strength:g}")
    for name, look in looks(args.weights, args.synthetic).items():
        t0 = time.time()
        res = {s: [] for s in sizes}
        for f in files:
            rgb = load_photo(f).rgb
            mod = look_modulation(look, rgb)
            exact = apply_base(look.base, rgb, mod, args.strength)
            for s in sizes:
                fn = base_fn(look.base, mod, args.strength)
                out = LazyLut(fn, s)(rgb)
                d = np.abs(out.astype(np.int16) - exact)
                full = np.abs(out.astype(np.int16) - apply_lut(rgb, bake_lut(fn, s)))
                res[s].append((psnr(out, exact), int(d.max()), float((d > 1).mean()), f.name,
                               int(full.max()), float((full > 0).mean())))
        print(f"\nstyle {name} ({time.time() - t0:.0f} s)")
        print(f"{'size':>5} {'mean dB':>8} {'worst dB':>9} {'worst image':>26} {'max |d|':>8} {'>1 level':>9} "
              f"{'vs full bake: max':>18} {'differ':>8}")
        for s in sizes:
            r = res[s]
            worst = min(r)
            print(f"{s:>5} {np.mean([x[0] for x in r]):8.2f} {worst[0]:9.2f} {worst[3]:>26} "
                  f"{max(x[1] for x in r):8d} {np.mean([x[2] for x in r]):9.2e} "
                  f"{max(x[4] for x in r):18d} {np.mean([x[5] for x in r]):8.1e}")


if __name__ == "__main__":
    main()
