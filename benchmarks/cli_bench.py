"""Whole-process timings of the CLI as a user runs it, as ratios against a decode+encode baseline.

    python benchmarks/cli_bench.py [--sizes 1,24] [--repeat 3] [--folder 6x6] [--repo DIR]

Every number is one fresh process (interpreter start and imports included), best of --repeat, with its
peak RSS (the child's own ru_maxrss). The baseline ("floor") is a whole-process Pillow decode + encode
(quality 95) of the same file in the same run, so the ratio holds across machines and loads:
  csr retouch IN -o OUT       vs floor of IN          (per size, megapixels)
  csr retouch DIR -o OUTDIR   vs one process decoding + encoding every file of DIR (--folder N x MP)
  csr --version, csr retouch --help   (seconds)
``--repo DIR`` runs another checkout's CLI (e.g. a worktree of an older commit) with this interpreter,
to measure before/after on the same machine. Photos: an upscaled real photo plus grain, q92 (bench.py).
Not a test: timings depend on the machine and its load (printed).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

# csr_cli (cli/) resolves through the installed (editable) copy: --repo DIR needs DIR's own environment.
CLI = "import sys; sys.argv[0] = 'csr'; from csr_cli.main import main; sys.exit(main())"
FLOOR = ("import sys; from PIL import Image\n"
         "for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):\n"
         "    im = Image.open(src); im.load(); im.save(dst, quality=95)")


def make_photo(path: Path, mp: float) -> None:
    """bench.make_photo in a child: this process stays small, so a child's peak RSS (which on Linux
    starts from the parent's size at fork) is its own."""
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); from bench import make_photo; from pathlib import Path; " \
           f"make_photo(Path({str(path)!r}), {mp!r})"
    subprocess.run([sys.executable, "-c", code], check=True)


def timed(cmd: list[str], env: dict, cwd: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child process; raises if it fails."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace").strip()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}...: exit {os.waitstatus_to_exitcode(status)}: {err[-300:]}")
    return wall, usage.ru_maxrss / 1024


def best(cmd: list[str], env: dict, repeat: int) -> tuple[float, float]:
    """Best time and largest peak RSS of ``repeat`` runs, in the CLI's checkout (``python -c`` puts the
    current folder first on sys.path)."""
    runs = [timed(cmd, env, Path(env["PYTHONPATH"])) for _ in range(repeat)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,24", help="megapixels, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--folder", default="6x6", help="N x MP photos for the folder run ('' to skip)")
    ap.add_argument("--style", default="auto")
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose CLI to run (default: this one)")
    args = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=str(args.repo.resolve()))
    csr = [sys.executable, "-c", CLI]
    floor = [sys.executable, "-c", FLOOR]
    print(f"cli: {args.repo.resolve()}; cpus: {os.cpu_count()}; load average at start: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{'what':>28} {'seconds':>8} {'x floor':>8} {'peak RSS':>9}")
    for what in (["--version"], ["retouch", "--help"]):
        t, rss = best(csr + what, env, args.repeat)
        print(f"{'csr ' + ' '.join(what):>28} {t:8.3f} {'':>8} {rss:7.0f}MB")
    with tempfile.TemporaryDirectory(prefix="csr-clibench-") as tmp:
        tmp = Path(tmp)
        for mp in [float(s) for s in args.sizes.split(",") if s]:
            src, dst = tmp / f"photo_{mp:g}mp.jpg", tmp / f"out_{mp:g}mp.jpg"
            make_photo(src, mp)
            f, frss = best(floor + [str(src), str(dst)], env, args.repeat)
            t, rss = best(csr + ["retouch", str(src), "-o", str(dst), "--overwrite", "-s", args.style], env, args.repeat)
            print(f"{f'floor {mp:g} MP':>28} {f:8.3f} {1:8.2f} {frss:7.0f}MB")
            print(f"{f'csr retouch {mp:g} MP':>28} {t:8.3f} {t / f:8.2f} {rss:7.0f}MB", flush=True)
        if args.folder:
            n, mp = args.folder.split("x")
            folder = tmp / "shoot"
            folder.mkdir()
            make_photo(folder / "p0.jpg", float(mp))
            for i in range(1, int(n)):
                shutil.copy(folder / "p0.jpg", folder / f"p{i}.jpg")
            pairs = [str(x) for p in sorted(folder.iterdir()) for x in (p, tmp / f"floor_{p.name}")]
            f, frss = best(floor + pairs, env, args.repeat)
            out = tmp / "edited"
            t, rss = best(csr + ["retouch", str(folder), "-o", str(out), "--overwrite", "-s", args.style], env, args.repeat)
            print(f"{f'floor folder {n}x{mp} MP':>28} {f:8.3f} {1:8.2f} {frss:7.0f}MB")
            print(f"{f'csr retouch folder {n}x{mp}':>28} {t:8.3f} {t / f:8.2f} {rss:7.0f}MB")
            print(f"{'folder throughput':>28} {int(n) * float(mp) / t:8.1f} MP/s")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
