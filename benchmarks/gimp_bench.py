"""The GIMP filter on a big layer, worker start included, in a real headless GIMP 3, as ratios against
GIMP's own filters in the same session.

    sudo python benchmarks/gimp_bench.py [--root CHROOT] [--mp 12] [--calls 2] [--repo DIR] [--compare DIR]

Needs the GIMP 3 chroot of tests/test_gimp_e2e.py (.ci/gimp-chroot.sh; --root, default $CSR_GIMP_ROOT)
and root (bind mounts, tests/gimp_chroot.py). One fresh headless GIMP session per checkout: after
``csr gimp install`` from that checkout (worker = this interpreter importing that checkout) it loads
one --mp megapixel 8-bit RGB JPEG (bench.make_photo), then times with time.time() inside the batch,
on the whole layer (no selection), non-interactive:
  levels-stretch          gimp-drawable-levels-stretch (GIMP's core, in process): the baseline
  gegl:color-enhance      a GEGL op of the same kind (a pass over the layer for its range, then per
                          pixel), applied through a Gimp.DrawableFilter (merge_filter)
  csr-retouch call N      python-fu-csr-retouch, style --style: GIMP starts the plug-in process for
                          every call and the plug-in starts the worker, so each call includes the worker's
                          start (call 1 cold, later calls with warm file caches)
``--repo DIR`` runs another checkout's plug-in and worker (e.g. a worktree of an older commit) with this
interpreter; ``--compare DIR`` also runs DIR (the "before", after --repo, in the same run) and adds the
ratio --repo / --compare. ``--marks`` prints the plug-in's own CSR_GIMP_TIMING lines. Not a test:
timings depend on the machine and its load (printed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(REPO / "tests")]
from bench import make_photo  # noqa: E402
from gimp_chroot import Checkout, bind_mounts, gimp_batch, is_chroot, mount_paths  # noqa: E402

BASELINE = "levels-stretch"
BATCH = r'''
import json, time
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio
res = {}
pdb = Gimp.get_pdb()
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(%(photo)r))
layer = img.get_layers()[0]
res["layer"] = [layer.get_width(), layer.get_height(), layer.get_bpp()]

def timed(key, fn):
    t = time.time()
    try:
        error = fn()
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    res[key] = dict(seconds=time.time() - t, error=error)

def gegl_filter():
    layer.merge_filter(Gimp.DrawableFilter.new(layer, "gegl:color-enhance", "bench"))

def retouch():
    proc = pdb.lookup_procedure("python-fu-csr-retouch")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [layer])
    cfg.set_property("style", %(style)r)
    r = proc.run(cfg)
    if r.index(0) != Gimp.PDBStatusType.SUCCESS:
        return f"{r.index(0).value_nick}: {pdb.get_last_error()}"

timed("levels-stretch", lambda: None if layer.levels_stretch() else "failed")
timed("gegl:color-enhance", gegl_filter)
for i in range(1, %(calls)d + 1):
    timed(f"csr-retouch call {i}", retouch)
with open(%(results)r, "w") as fh:
    json.dump(res, fh)
'''


def session(root: str, repo: Path, photo: Path, work: Path, args) -> dict:
    """One headless GIMP session with ``repo``'s plug-in; the batch's results plus 'session' seconds."""
    checkout = Checkout(repo)
    tag = checkout.repo.name
    profile, home, results = work / f"profile-{tag}", work / f"home-{tag}", work / f"results-{tag}.json"
    home.mkdir()
    (work / "csr_home").mkdir(exist_ok=True)  # no user styles: the built-in ones only
    plugin_dir = checkout.install(profile, work, device="cpu")
    batch = BATCH % dict(photo=str(photo), style=args.style, calls=args.calls, results=str(results))
    env = dict(HOME=home, GIMP3_DIRECTORY=profile, CSR_HOME=work / "csr_home")
    if args.marks:
        env["CSR_GIMP_TIMING"] = "1"
    with bind_mounts(root, mount_paths(checkout.repo, work)):
        print(f"{tag}: {checkout.worker_origin(root, plugin_dir)}", flush=True)
        t = time.time()
        run = gimp_batch(root, batch, env, timeout=900)
        took = time.time() - t
    err = run.stderr.decode(errors="replace")
    if run.returncode or not results.is_file():
        raise SystemExit(f"{tag}: gimp exit {run.returncode}:\n{run.stdout.decode(errors='replace')[-2000:]}{err[-3000:]}")
    if args.marks:
        print("\n".join(line for line in err.splitlines() if line.startswith("csr_retouch:")))
    return dict(json.loads(results.read_text()), session=dict(seconds=took, error=None))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=os.environ.get("CSR_GIMP_ROOT", ""), help="the GIMP 3 chroot")
    ap.add_argument("--mp", type=float, default=12.0, help="megapixels of the layer")
    ap.add_argument("--calls", type=int, default=2, help="csr-retouch calls in the session")
    ap.add_argument("--style", default="auto")
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose plug-in to run (default: this one)")
    ap.add_argument("--compare", type=Path, help="a second checkout (the 'before') run in the same invocation")
    ap.add_argument("--marks", action="store_true", help="print the plug-in's CSR_GIMP_TIMING lines")
    args = ap.parse_args()
    if not is_chroot(args.root):
        raise SystemExit("no GIMP 3 chroot: build it with .ci/gimp-chroot.sh and pass --root or set CSR_GIMP_ROOT")
    repos = [args.repo] + ([args.compare] if args.compare else [])
    print(f"cpus: {os.cpu_count()}; load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="csr-gimpbench-") as tmp:
        work = Path(tmp)
        photo = work / f"photo_{args.mp:g}mp.jpg"
        make_photo(photo, args.mp)
        runs = [session(args.root, repo, photo, work, args) for repo in repos]
    w, h, bpp = runs[0]["layer"]
    print(f"layer {w}x{h} ({w * h / 1e6:.1f} MP, {bpp} bytes/pixel), style {args.style!r}; "
          + "; ".join(f"{name} = {repo.resolve()}" for name, repo in zip(("A", "B"), repos)))
    head = f"{'what':>24}" + "".join(f" {n + ' s':>8} {'x base':>7}" for n in ("A", "B")[:len(runs)])
    print(head + (f" {'A / B':>7}" if len(runs) == 2 else ""))
    for key in [k for k in runs[0] if k != "layer"]:
        line = f"{key:>24}"
        for res in runs:
            r = res[key]
            if r["error"]:
                line += f" {'failed':>8} {'':>7}"
                print(f"  {key}: {r['error']}", file=sys.stderr)
            else:
                line += f" {r['seconds']:8.3f} {r['seconds'] / res[BASELINE]['seconds']:7.2f}"
        if len(runs) == 2 and not (runs[0][key]["error"] or runs[1][key]["error"]):
            line += f" {runs[0][key]['seconds'] / runs[1][key]['seconds']:7.2f}"
        print(line)
    print(f"x base: seconds / {BASELINE} in the same session; session: the whole gimp-console run "
          f"(start, plug-in query, load, all calls, quit)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
