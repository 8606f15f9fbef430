"""Photos/s of the plain CLI vs ``--cluster local[1]`` and ``local[2]``, Dask's per-task cost, and a projection.

    python benchmarks/cluster_bench.py [--photos 12] [--megapixels 4] [--tasks 400] [--cores 16] [--s3 URL]

Needs the cluster extra (pip install "csr-retouch[cluster]"). Measured on this machine, in one run:
  cost     one photo through pipeline.retouch_file in this process (best of 3; wall and CPU seconds)
  cli      whole-process times of ``csr retouch IN -o OUT [--cluster ...]`` with N photos and with 1 photo:
           photos/s = N / T(N), the fixed start-up cost T(1), the steady cost per photo (T(N)-T(1))/(N-1);
           the object-store row reads and writes the same photos in S3 (s3://... -o s3://... on local[2]):
           moto's S3 server on 127.0.0.1 (the test extra), or a real store with --s3 s3://BUCKET/PREFIX
           (credentials and endpoint from the environment or fsspec's config, as for csr)
  engine   --tasks no-op tasks through the same bounded submit/as_completed loop as csr_core.cluster on
           local[2]: the engine's cost per task (driver + scheduler + worker, end to end), with csr's
           window (2 tasks per worker thread: round-trip latency) and with 256 in flight (throughput)
  plan     jobs/s of the driver's planning (batch.plan + the existing-output check) over empty files
The projection for 10 and 100 machines of --cores cores each is printed from these numbers. Not a test:
timings depend on the machine and its load (printed).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CSR = Path(sys.executable).parent / "csr"


def make_photos(folder: Path, n: int, megapixels: float) -> list[Path]:
    """Photo-like JPEGs (the astronaut sample upscaled, plus grain, q92), each a little different."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    w = int((megapixels * 1e6 * 1.5) ** 0.5)
    h = int(w / 1.5)
    base = np.asarray(Image.open(REPO / "samples" / "astronaut.jpg").convert("RGB").resize((w, h)), np.int16)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        grain = rng.integers(-6, 7, base.shape, dtype=np.int16)
        path = folder / f"photo{i:03d}.jpg"
        Image.fromarray(np.clip(base + grain + 4 * i, 0, 255).astype(np.uint8)).save(path, quality=92)
        paths.append(path)
    return paths


def photo_cost(src: Path, scratch: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one photo in this process, best of 3 (CPU: all its threads together)."""
    from csr_core.pipeline import retouch_file

    retouch_file(src, scratch, style="auto")  # first call: model load, LUT code paths
    times = []
    for _ in range(3):
        t0, c0 = time.perf_counter(), time.process_time()
        retouch_file(src, scratch, style="auto")
        times.append((time.perf_counter() - t0, time.process_time() - c0))
    return min(t for t, _ in times), min(c for _, c in times)


def cli_time(inputs: list, out, cluster: str | None, extra: list[str] = (), env: dict | None = None) -> float:
    args = [str(CSR), "retouch", *map(str, inputs), "-o", str(out)] + (["--cluster", cluster] if cluster else [])
    t0 = time.perf_counter()
    res = subprocess.run(args + list(extra), capture_output=True, text=True, timeout=1800, env=env)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"cluster_bench: {' '.join(args)} failed:\n{res.stderr}")
    return elapsed


class Store:
    """An S3 prefix for the object-store row: ``url`` (a real store) or moto's server on 127.0.0.1."""

    def __init__(self, url: str | None):
        import fsspec

        self.server, self.args, self.env = None, [], dict(os.environ)
        if url is None:
            from moto.server import ThreadedMotoServer

            self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self.server.start()
            host, port = self.server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
            self.env = dict(os.environ)
            self.args = ["--storage-option", f"endpoint_url={endpoint}"]
            self.fs = fsspec.filesystem("s3", endpoint_url=endpoint)
            self.fs.mkdir("csr-bench")
            url = "s3://csr-bench/run"
        else:
            self.fs = fsspec.filesystem("s3")
        self.url = url.rstrip("/")
        self.where = "moto on 127.0.0.1" if self.server else self.url

    def upload(self, photos: list[Path]) -> str:
        for p in photos:
            self.fs.put_file(str(p), f"{self.url}/in/{p.name}")
        return f"{self.url}/in"

    def close(self):
        self.fs.rm(self.url, recursive=True)
        if self.server:
            self.server.stop()


def engine_overhead(tasks: int, wide: int = 256) -> tuple[tuple[float, float], tuple[float, float], float]:
    """(wall, driver+scheduler CPU) seconds per no-op task on local[2] with csr_core.cluster's window
    (latency-bound here) and with ``wide`` tasks in flight (throughput, as with hundreds of workers), and
    the seconds local[2] takes to start. LocalCluster runs the scheduler in this process, so this
    process's CPU time is what the driver and the scheduler spend per task."""
    from distributed import as_completed

    from csr_core import cluster

    t0 = time.perf_counter()
    with cluster.connect("local[2]", quiet=True) as client:
        started = time.perf_counter() - t0
        client.submit(_noop, -1, pure=False).result()  # warm
        window = cluster.IN_FLIGHT_PER_THREAD * sum(client.nthreads().values())
        return _through(client, as_completed, tasks, window), _through(client, as_completed, tasks, wide), started


def _through(client, as_completed, tasks: int, window: int) -> tuple[float, float]:
    """The bounded submit / as_completed loop of csr_core.cluster.run, on no-op tasks."""
    todo = iter(range(tasks))
    running = as_completed()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(min(window, tasks)):
        running.add(client.submit(_noop, next(todo), pure=False))
    for future in running:
        future.result()
        future.release()
        if (i := next(todo, None)) is not None:
            running.add(client.submit(_noop, i, pure=False))
    return (time.perf_counter() - t0) / tasks, (time.process_time() - c0) / tasks


def _noop(i: int) -> tuple[str, str]:
    return "ok", ""


def plan_rate(folder: Path, n: int) -> float:
    from csr_core import batch

    folder.mkdir()
    for i in range(n):
        (folder / f"f{i:06d}.jpg").touch()
    t0 = time.perf_counter()
    jobs, _, _ = batch.plan([str(folder)], str(folder.parent / "plan_out"))
    for job in jobs:
        batch.check_destination(job, False, False, set())
    return n / (time.perf_counter() - t0)


def main() -> None:
    from csr_core.cluster import MAX_PHOTOS_PER_TASK

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=12)
    ap.add_argument("--megapixels", type=float, default=4.0)
    ap.add_argument("--tasks", type=int, default=400)
    ap.add_argument("--cores", type=int, default=16, help="cores per machine for the projection")
    ap.add_argument("--s3", metavar="URL", help="the object-store row on this S3 prefix (it is emptied after) "
                    "instead of moto's server on 127.0.0.1")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = make_photos(tmp / "in", args.photos, args.megapixels)
        mb_in = sum(p.stat().st_size for p in photos) / len(photos) / 1e6
        cost, cost_cpu = photo_cost(photos[0], tmp / "one.jpg")
        mb_out = (tmp / "one.jpg").stat().st_size / 1e6
        print(f"photos: {args.photos} x {args.megapixels:g} MP JPEG, {mb_in:.1f} MB in, {mb_out:.1f} MB out each")
        print(f"cost: {cost:.3f} s wall, {cost_cpu:.3f} s CPU per photo (retouch_file, in process)")
        print(f"\n{'command':<22}{'T(1) s':>9}{'T(N) s':>9}{'photos/s':>10}{'vs plain':>10}{'steady s/photo':>16}")
        base = None
        for k, (name, addr) in enumerate((("plain", None), ("--cluster local[1]", "local[1]"),
                                          ("--cluster local[2]", "local[2]"))):
            t1 = cli_time(photos[:1], tmp / f"one_{k}", addr)
            tn = cli_time([tmp / "in"], tmp / f"all_{k}", addr)
            rate = args.photos / tn
            base = base or rate
            steady = (tn - t1) / (args.photos - 1)
            print(f"{name:<22}{t1:>9.2f}{tn:>9.2f}{rate:>10.2f}{rate / base:>9.2f}x{steady:>16.3f}")
            if addr == "local[2]":
                local2 = rate
        try:
            store = Store(args.s3)
        except ImportError as exc:
            print(f"(no object-store row: {exc.name} is not installed; pip install \"csr-retouch[cluster,test]\")")
        else:
            try:
                src = store.upload(photos)
                t1 = cli_time([f"{src}/{photos[0].name}"], f"{store.url}/one", "local[2]", store.args, store.env)
                tn = cli_time([src + "/"], f"{store.url}/all", "local[2]", store.args, store.env)
                rate, steady = args.photos / tn, (tn - t1) / (args.photos - 1)
                print(f"{'local[2], S3 in+out':<22}{t1:>9.2f}{tn:>9.2f}{rate:>10.2f}{rate / base:>9.2f}x{steady:>16.3f}"
                      f"   ({rate / local2:.2f}x the local-disk local[2] row; store: {store.where})")
            finally:
                store.close()
        (latency, _), (per_task, sched_cpu), start = engine_overhead(args.tasks)
        print(f"\nengine ({args.tasks} no-op tasks on local[2], which starts in {start:.1f} s): "
              f"{latency * 1e3:.2f} ms per task with csr's window of 4; with 256 in flight {per_task * 1e3:.2f} ms "
              f"wall, {sched_cpu * 1e3:.2f} ms driver+scheduler CPU")
        planned = plan_rate(tmp / "plan", 5000)
        print(f"plan: {planned:.0f} jobs/s on the driver (5000 files, local disk)")
    print("\nprojection (one worker process per core, each photo costing the CPU time it took here on one "
          "core; the scheduler and the driver each capped by the CPU they spent per task here, a task "
          f"holding {MAX_PHOTOS_PER_TASK} photos):")
    scheduler_cap = MAX_PHOTOS_PER_TASK / sched_cpu  # big batches: tasks of MAX_PHOTOS_PER_TASK photos
    for machines in (10, 100):
        compute = machines * args.cores / cost_cpu
        rate = min(compute, scheduler_cap, planned)
        limit = "compute" if rate == compute else ("scheduler" if rate == scheduler_cap else "driver planning")
        print(f"  {machines:>3} x {args.cores} cores: compute {compute:7.0f} photos/s, scheduler {scheduler_cap:6.0f}, "
              f"planning {planned:6.0f} -> {rate:6.0f} photos/s ({limit}); storage must serve "
              f"{rate * (mb_in + mb_out) / 1e3:.2f} GB/s")


if __name__ == "__main__":
    main()
