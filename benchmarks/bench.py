"""Speed and memory at full resolution: baked LUT vs exact tiled vs the naive one-pass forward.

    python benchmarks/bench.py [--sizes 1,12,24] [--style auto | --weights x.safetensors]

For each size a photo-like JPEG (an upscaled photo plus grain, q92) is written to a temp dir. Each
variant runs in a fresh subprocess (peak RSS = its own ru_maxrss, interpreter and torch included):
  floor  decode + encode only (image_io.load_photo + save_photo)
  lut    pipeline.retouch_file (default path) ; infer = retouch_array
  exact  pipeline.retouch_file(exact=True)    ; infer = retouch_array(exact=True)
  naive  the reference implementation's way: the whole NCHW tensor through model.forward
         (conditioned on itself at full resolution); skipped when its estimated memory is too big.
Floor and LUT times are the best of --repeat runs (steady state, as in a batch; a one-off CLI call
also pays first-touch memory); exact and naive run once. Not a test: timings depend on the machine
and its load (printed).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NAIVE_LIMIT_GB = 16.0


def _rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def _look(style: str, weights: str | None):
    from csr_core.engine import Net
    from csr_core.inference import Look
    from csr_core.registry import Registry

    if weights:
        from safetensors.numpy import load_file

        return Look.of(Net(load_file(weights)), 256), Path(weights).stem
    reg = Registry()
    if style in reg.names():
        return reg.look(style), style
    import torch

    from csr_core.model import CSRNet, numpy_state

    torch.manual_seed(0)
    return Look.of(Net(numpy_state(CSRNet())), 256), "random-init (no style installed)"


def child(args) -> None:
    """One variant on one image; prints a JSON line."""
    import numpy as np

    from csr_core.image_io import load_photo, save_photo
    from csr_core.inference import retouch_array
    from csr_core.pipeline import retouch_file

    look, _ = _look(args.style, args.weights)
    src, dest = Path(args.image), Path(args.image).with_name(f"out_{args.child}.jpg")
    res = {}
    warm = np.asarray(load_photo(REPO / "samples" / "astronaut.jpg").rgb)
    if args.child in ("lut", "exact"):
        retouch_array(np.tile(warm, (2, 2, 1)), look, exact=args.child == "exact")  # one-time init
    repeat = 1 if args.child == "exact" else args.repeat
    if args.child == "floor":
        for _ in range(repeat):
            t = time.perf_counter()
            photo = load_photo(src)
            save_photo(photo, photo.rgb, dest)
            res["e2e"] = min(res.get("e2e", 1e9), time.perf_counter() - t)
    elif args.child in ("lut", "exact"):
        for _ in range(repeat):
            t = time.perf_counter()
            retouch_file(src, dest, style=look, exact=args.child == "exact")
            res["e2e"] = min(res.get("e2e", 1e9), time.perf_counter() - t)
        rgb = load_photo(src).rgb
        for _ in range(repeat):
            t = time.perf_counter()
            retouch_array(rgb, look, exact=args.child == "exact")
            res["infer"] = min(res.get("infer", 1e9), time.perf_counter() - t)
    else:  # naive: the reference code's whole-image forward (in torch)
        import torch

        from csr_core.model import from_state

        model = from_state(look.base.state)
        t0 = time.perf_counter()
        photo = load_photo(src)
        res["rss_loaded"] = _current_rss_mb()
        t1 = time.perf_counter()
        with torch.no_grad():
            x = torch.from_numpy(photo.rgb).permute(2, 0, 1)[None].float().div_(255)
            y = model(x)
            out = y[0].clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(1, 2, 0).numpy()
        del x, y
        t2 = time.perf_counter()
        save_photo(photo, out, dest)
        res["e2e"], res["infer"] = time.perf_counter() - t0, t2 - t1
    res["rss"] = _rss_mb()
    print(json.dumps(res))


def make_photo(path: Path, mp: float) -> None:
    """An upscaled real photo plus grain (so it compresses like a camera JPEG), 3:2, q92."""
    import numpy as np
    from PIL import Image

    shared = sorted((REPO.parent / "shared" / "data" / "photos").glob("*.jpg"))
    base = Image.open(shared[len(shared) // 2] if shared else REPO / "samples" / "astronaut.jpg").convert("RGB")
    w = int(round((mp * 1e6 * 1.5) ** 0.5))
    h = int(round(w / 1.5))
    img = np.asarray(base.resize((w, h), Image.BICUBIC), dtype=np.int16)
    rng = np.random.default_rng(0)
    grain = rng.integers(-3, 4, size=(h, w, 1), dtype=np.int16)
    Image.fromarray(np.clip(img + grain, 0, 255).astype(np.uint8)).save(path, quality=92)


def run_child(variant: str, image: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, "--image", str(image), "--style", args.style,
           "--repeat", str(args.repeat)]
    if args.weights:
        cmd += ["--weights", args.weights]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        return {"error": f"exit {p.returncode}: {(p.stderr.strip().splitlines() or ['?'])[-1][:80]}"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def sample_identity(look) -> str:
    """Max difference between the LUT and exact paths on the README's sample (coffee_dark.jpg)."""
    import numpy as np

    from csr_core.image_io import load_photo
    from csr_core.inference import apply_base, base_fn, look_modulation, retouch_array
    from csr_core.lut import DEFAULT_SIZE, apply_lut, bake_lut

    rgb = load_photo(REPO / "samples" / "coffee_dark.jpg").rgb
    mod = look_modulation(look, rgb)
    exact = apply_base(look.base, rgb, mod).astype(int)
    lut = apply_lut(rgb, bake_lut(base_fn(look.base, mod), DEFAULT_SIZE))
    return (f"sample coffee_dark.jpg: max |LUT - exact| = {np.abs(lut - exact).max()}/255, "
            f"default path vs exact = {np.abs(retouch_array(rgb, look) - exact).max()}/255")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,12,24", help="megapixels, comma-separated")
    ap.add_argument("--style", default="auto")
    ap.add_argument("--weights", help="a full CSRNet .safetensors instead of a registry style")
    ap.add_argument("--variants", default="floor,lut,exact,naive")
    ap.add_argument("--repeat", type=int, default=3, help="floor and LUT timings: best of N (exact, naive: 1)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--image", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    look, label = _look(args.style, args.weights)
    print(f"style: {label}; cpus: {os.cpu_count()}; "
          f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(sample_identity(look))
    variants = args.variants.split(",")
    mem_gb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2 ** 30
    per_px = None  # naive bytes per pixel, measured at the smallest size
    head = (f"{'MP':>5} {'variant':>7} {'e2e s':>7} {'x floor':>8} {'infer s':>8} {'LUT speed-up':>13} "
            f"{'peak RSS':>9}")
    print(head)
    with tempfile.TemporaryDirectory(prefix="csr-bench-") as tmp:
        for mp in [float(s) for s in args.sizes.split(",")]:
            image = Path(tmp) / f"photo_{mp:g}mp.jpg"
            make_photo(image, mp)
            pixels = mp * 1e6
            res = {}
            for v in variants:
                need = per_px * pixels / 2 ** 30 if per_px else None
                if v == "naive" and need and need > min(NAIVE_LIMIT_GB, 0.8 * mem_gb):
                    res[v] = {"skipped": f"skipped (needs ~{need:.0f} GB)"}
                    continue
                res[v] = run_child(v, image, args)
                if v == "naive" and "rss" in res[v] and per_px is None:
                    per_px = (res[v]["rss"] - res[v]["rss_loaded"]) * 2 ** 20 / pixels * 1.1
            floor = res.get("floor", {}).get("e2e")
            lut_infer = res.get("lut", {}).get("infer")
            rows = []
            for v in variants:
                r = res[v]
                if "e2e" not in r:
                    rows.append(f"{mp:>5g} {v:>7}  {r.get('skipped') or r.get('error')}")
                    continue
                ratio = f"{r['e2e'] / floor:8.2f}" if floor else f"{'':>8}"
                infer = f"{r['infer']:8.3f}" if "infer" in r else f"{'-':>8}"
                speed = (f"{r['infer'] / lut_infer:12.1f}x" if lut_infer and "infer" in r and v != "lut"
                         else f"{'':>13}")
                rows.append(f"{mp:>5g} {v:>7} {r['e2e']:7.3f} {ratio} {infer} {speed} {r['rss']:7.0f}MB")
            print("\n".join(rows), flush=True)
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("x floor = end to end / (decode + encode); LUT speed-up = that variant's infer time / the LUT's")


if __name__ == "__main__":
    main()
