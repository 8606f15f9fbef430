"""Whole-process timings of the CLI as a user runs it, as ratios against a decode+encode baseline.

    python benchmarks/cli_bench.py [--sizes 1,24] [--pairs 7] [--folder 6x6] [--baseline DIR]

Every number is one fresh process (interpreter start and imports included). The baseline ("floor") is
a whole-process Pillow decode + encode (quality 95) of the same file, run in pairs with csr: the two
alternate (floor first in even pairs, csr first in odd ones), so both see the same machine load, and
the ratio is the median over the pairs of csr's time over its floor's. Each row shows
  wall     median seconds (csr; floor) and the median ratio, with the best pair's ratio
  cpu      median user+sys CPU seconds of the process and their ratio (less sensitive to other
           processes than wall time, more to how much work runs on threads)
  peak     the largest peak RSS (the child's own ru_maxrss)
Jobs: csr retouch IN -o OUT per size (megapixels), csr retouch DIR -o OUTDIR against one process
decoding + encoding every file of DIR (--folder N x MP), and csr --version / csr retouch --help.
``--baseline DIR`` also runs another checkout's CLI (e.g. ``git archive`` of an older commit) with this
interpreter, in the same rounds, for before/after on the same machine. ``--repo DIR`` times DIR instead
of this checkout. Each checkout's modules are byte-compiled first, as an installed package's are (so
PYTHONDONTWRITEBYTECODE=1 does not make every run compile them). Photos: an upscaled real photo plus
grain, q92 (bench.py). The load average is printed at the start, per job and at the end. Not a test.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent

# The checkout's own cli/ as csr_cli (an editable install maps csr_cli to one checkout only); csr_core
# comes from the working folder, which ``python -c`` puts first on sys.path.
CLI = ("import sys, importlib.util as u; sys.argv[0] = 'csr'; "
       "s = u.spec_from_file_location('csr_cli', 'cli/__init__.py', submodule_search_locations=['cli']); "
       "m = sys.modules['csr_cli'] = u.module_from_spec(s); s.loader.exec_module(m); "
       "from csr_cli.main import main; sys.exit(main())")
FLOOR = ("import sys; from PIL import Image\n"
         "for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):\n"
         "    im = Image.open(src); im.load(); im.save(dst, quality=95)")


def make_photo(path: Path, mp: float) -> None:
    """bench.make_photo in a child: this process stays small, so a child's peak RSS (which on Linux
    starts from the parent's size at fork) is its own."""
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); from bench import make_photo; from pathlib import Path; " \
           f"make_photo(Path({str(path)!r}), {mp!r})"
    subprocess.run([sys.executable, "-c", code], check=True)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(cmd: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, user+sys CPU seconds, peak RSS MB) of one child process; raises if it fails."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace").strip()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}...: exit {os.waitstatus_to_exitcode(status)}: {err[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def rounds(jobs: dict[str, tuple[list[str], Path]], pairs: int) -> dict[str, list[tuple[float, float, float]]]:
    """Run every job once per round, ``pairs`` rounds, the order reversed every other round."""
    runs: dict[str, list] = {name: [] for name in jobs}
    names = list(jobs)
    for i in range(pairs):
        for name in (names if i % 2 == 0 else names[::-1]):
            runs[name].append(timed(*jobs[name]))
    return runs


def report(label: str, runs: dict[str, list], floor: str | None = "floor") -> None:
    """One line per job: medians, and (against ``floor``) the median and best per-round ratios."""
    for name, r in runs.items():
        wall, cpu, rss = (statistics.median(x[0] for x in r), statistics.median(x[1] for x in r),
                          max(x[2] for x in r))
        line = f"{label + ' ' + name:>34} {wall:7.3f} s {cpu:7.3f} s {rss:6.0f} MB"
        if floor and name != floor:
            ratios = [a[0] / b[0] for a, b in zip(r, runs[floor])]
            cpu_ratio = cpu / statistics.median(x[1] for x in runs[floor])
            line += f"   {statistics.median(ratios):5.2f}x (best {min(ratios):.2f}x)  cpu {cpu_ratio:5.2f}x"
        print(line, flush=True)
    print(f"{'':>34} load average now: {load()}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,24", help="megapixels, comma-separated")
    ap.add_argument("--pairs", type=int, default=7, help="rounds of (floor, csr) runs; medians over them")
    ap.add_argument("--folder", default="6x6", help="N x MP photos for the folder run ('' to skip)")
    ap.add_argument("--style", default="auto")
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose CLI to time (default: this one)")
    ap.add_argument("--baseline", type=Path, help="another checkout to time in the same rounds")
    args = ap.parse_args()
    if args.pairs < 1:
        ap.error("--pairs must be at least 1")
    checkouts = {"csr": args.repo.resolve()}
    if args.baseline:
        checkouts["baseline"] = args.baseline.resolve()
    py = sys.executable
    for repo in checkouts.values():
        subprocess.run([py, "-m", "compileall", "-q", "csr_core", "cli", "weights"], cwd=repo, check=True,
                       stdout=subprocess.DEVNULL)
    print(f"cli: {checkouts['csr']}" + (f"; baseline: {checkouts['baseline']}" if args.baseline else "") +
          f"; cpus: {os.cpu_count()}; {args.pairs} rounds; load average at start: {load()}")
    print(f"{'job':>34} {'wall':>9} {'cpu':>9} {'peak':>9}   ratio to floor (wall; cpu)")
    for what in (["--version"], ["retouch", "--help"]):
        runs = rounds({name: ([py, "-c", CLI, *what], repo) for name, repo in checkouts.items()}, args.pairs)
        report(" ".join(what), runs, floor=None)

    def csr_jobs(argv: list[str]) -> dict:
        return {name: ([py, "-c", CLI, "retouch", *argv, "--overwrite", "-s", args.style], repo)
                for name, repo in checkouts.items()}

    with tempfile.TemporaryDirectory(prefix="csr-clibench-") as tmp:
        tmp = Path(tmp)
        for mp in [float(s) for s in args.sizes.split(",") if s]:
            src = tmp / f"photo_{mp:g}mp.jpg"
            make_photo(src, mp)
            jobs = {"floor": ([py, "-c", FLOOR, str(src), str(tmp / "floor.jpg")], REPO),
                    **csr_jobs([str(src), "-o", str(tmp / f"out_{mp:g}mp.jpg")])}
            report(f"{mp:g} MP", rounds(jobs, args.pairs))
        if args.folder:
            n, mp = args.folder.split("x")
            folder = tmp / "shoot"
            folder.mkdir()
            make_photo(folder / "p0.jpg", float(mp))
            for i in range(1, int(n)):
                shutil.copy(folder / "p0.jpg", folder / f"p{i}.jpg")
            pairs = [str(x) for p in sorted(folder.iterdir()) for x in (p, tmp / f"floor_{p.name}")]
            jobs = {"floor": ([py, "-c", FLOOR, *pairs], REPO), **csr_jobs([str(folder), "-o", str(tmp / "edited")])}
            runs = rounds(jobs, args.pairs)
            report(f"folder {n}x{mp} MP", runs)
            for name in checkouts:
                wall = statistics.median(x[0] for x in runs[name])
                print(f"{name + ' folder throughput':>34} {int(n) * float(mp) / wall:7.1f} MP/s")
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
