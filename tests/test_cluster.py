"""Batches on a real Dask cluster on 127.0.0.1: the plain CLI's guarantees, a worker killed mid-job, the API.

The plain path never imports Dask (checked in a fresh interpreter); everything else needs the
``cluster`` extra and skips, saying so, without it.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import csr_core.pipeline as pipeline
from csr_core.errors import ClusterError, CsrError, install_command
from csr_core.pipeline import default_registry, retouch_file

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SUMMARY = re.compile(r"^(\d+) retouched, (\d+) skipped, (\d+) failed$", re.M)


def _photos(folder: Path, n: int, bad: bool = True) -> list[Path]:
    """``n`` tiny photos (JPEG and PNG, one in a sub-folder) and, with ``bad``, one corrupt JPEG."""
    rng = np.random.default_rng(3)
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / ("sub" if i == 0 else "") / f"p{i}.{'png' if i % 3 == 1 else 'jpg'}"
        Image.fromarray(rng.integers(0, 230, (24 + i, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    if bad:
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a photo")
    return paths


def _expected(src_root: Path, out_root: Path, srcs: list[Path], style) -> dict[Path, bytes]:
    """The single-machine result: the core's retouch_file in this process, per output path."""
    expected = {}
    for src in srcs:
        dest = out_root / src.relative_to(src_root)
        scratch = out_root.parent / "expected" / src.relative_to(src_root)
        retouch_file(src, scratch, style=style)
        expected[dest] = scratch.read_bytes()
    return expected


def _csr(*args, timeout=240, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "csr"), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, **kw)


PLAIN_THEN_NO_DASK = r'''
import json, sys
import csr_cli.main

def csr(*args):
    try:
        csr_cli.main.cli.main(args=list(args), prog_name="csr")
    except SystemExit as exc:
        return exc.code

plain = csr("retouch", sys.argv[1], "-o", sys.argv[2])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed") or m == "csr_core.cluster")
sys.modules["distributed"] = None   # as if the cluster extra were not installed
no_extra = csr("retouch", sys.argv[1], "-o", sys.argv[3], "--cluster", "local[1]")
print(json.dumps({"plain": plain, "leaked": leaked, "no_extra": no_extra}))
'''


def test_plain_cli_never_imports_dask_and_cluster_without_extra_is_one_line(tmp_path):
    src = _photos(tmp_path / "in", 1, bad=False)[0]
    res = subprocess.run([sys.executable, "-c", PLAIN_THEN_NO_DASK, src, tmp_path / "a.jpg", tmp_path / "b.jpg"],
                         capture_output=True, text=True, timeout=240, cwd=REPO)
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report == {"plain": 0, "leaked": [], "no_extra": 2}, res.stderr
    from csr_core.errors import install_command

    assert ("csr: error: --cluster needs Dask distributed, which is not installed: "
            f"{install_command('cluster')}") in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "b.jpg").exists()


def test_cluster_usage_errors_exit_2(tmp_path, toy_registry, monkeypatch):
    from click.testing import CliRunner

    from csr_cli.main import cli

    monkeypatch.setattr(pipeline, "_registry", toy_registry)
    src = _photos(tmp_path / "in", 1, bad=False)[0]
    for args, message in ((["-o", "-", "--format", "png", "--cluster", "local[1]"], "--cluster works with files"),
                          (["-o", tmp_path / "o.jpg", "--cluster", "local[0]"], "written local[N]"),
                          (["-o", tmp_path / "o.jpg", "--cluster", "local[2]", "--overwrite", "--skip-existing"],
                           "exclude each other")):
        res = CliRunner().invoke(cli, ["retouch", str(src), *map(str, args)])
        assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "o.jpg").exists()


try:
    import distributed
except ImportError:
    distributed = None
needs_dask = pytest.mark.skipif(distributed is None, reason="the cluster extra is not installed: "
                                + install_command("cluster"))


@needs_dask
def test_unreachable_scheduler_is_a_cluster_error():
    from csr_core import cluster

    with pytest.raises(ClusterError, match=r"cannot use the cluster at tcp://127\.0\.0\.1:9 .*Timed out"):
        with cluster.connect("tcp://127.0.0.1:9", timeout=1):
            pass


WORKER_LOGS = r'''
import logging, sys
from csr_core import cluster

def shout():  # what a worker's failed heartbeat does while the scheduler shuts down
    logging.getLogger("distributed.worker").error("Failed to communicate with scheduler during heartbeat.")

if __name__ == "__main__":  # worker processes start by importing this file
    with cluster.connect("local[1]", quiet=sys.argv[1] == "quiet") as client:
        client.run(shout)
'''


@needs_dask
def test_quiet_local_cluster_keeps_worker_processes_log_lines_off_the_terminal(tmp_path):
    """The CLI's workers share its stderr: their error-level log lines (a traceback when a worker loses the
    scheduler) must not reach it; without quiet, Dask's own logging is left as it is."""
    script = tmp_path / "logs.py"
    script.write_text(WORKER_LOGS)
    runs = {how: subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=120,
                                cwd=REPO) for how in ("quiet", "loud")}
    assert all(r.returncode == 0 for r in runs.values()), {k: r.stderr for k, r in runs.items()}
    assert "heartbeat" in runs["loud"].stderr
    assert runs["quiet"].stderr == "", runs["quiet"].stderr


@needs_dask
def test_api_on_local_cluster_ships_the_look_and_keeps_the_rules(tmp_path, toy_registry):
    """retouch_many on local[2]: the driver's style (a toy one the workers do not have) is what they use."""
    from csr_core import cluster

    srcs = _photos(tmp_path / "in", 3)
    look = toy_registry.look("auto")
    expected = _expected(tmp_path / "in", tmp_path / "out", srcs, look)
    retouch_file(srcs[1], tmp_path / "real.png", style="auto")  # the workers' own 'auto' gives other bytes
    assert (tmp_path / "real.png").read_bytes() != expected[tmp_path / "out" / "p1.png"]
    seen = []
    with cluster.connect("local[2]", quiet=True) as client:
        outcomes = cluster.retouch_many([tmp_path / "in"], tmp_path / "out", "auto", client, registry=toy_registry,
                                        on_outcome=seen.append, photos_per_task=2)  # tasks of 2 photos
        assert [o.job.src.name for o in outcomes] == ["broken.jpg", "p1.png", "p2.jpg", "p0.jpg"]
        assert sorted(o.status for o in outcomes) == ["failed", "ok", "ok", "ok"] and len(seen) == 4
        bad = next(o for o in outcomes if o.status == "failed")
        assert bad.message.startswith(str(tmp_path / "in" / "broken.jpg")) and "\n" not in bad.message
        for dest, data in expected.items():
            assert dest.read_bytes() == data, dest
        again = cluster.retouch_many([tmp_path / "in"], tmp_path / "out", look, client)
        assert sorted(o.status for o in again) == ["failed"] * 4
        assert sum("already exists" in o.message for o in again) == 3
        resumed = cluster.retouch_many([tmp_path / "in"], tmp_path / "out", look, client, skip_existing=True)
        assert sorted(o.status for o in resumed) == ["failed", "skipped", "skipped", "skipped"]
    for dest, data in expected.items():
        assert dest.read_bytes() == data, dest
    with pytest.raises(CsrError, match="nope: no such file or folder"):
        cluster.retouch_many([tmp_path / "nope"], tmp_path / "out", look, client=object())


SLOW_WRITES = r'''
"""Worker preload (this test only): each output's temp file stays open a while, marked with the worker pid."""
import contextlib, os, time
from pathlib import Path
import csr_core.image_io as image_io

_atomic_write = getattr(image_io, "_fast_atomic_write", image_io.atomic_write)  # Dask may import this twice
image_io._fast_atomic_write = _atomic_write


@contextlib.contextmanager
def slow_atomic_write(path, mode="wb"):
    with _atomic_write(path, mode) as fh:  # the temp file exists from here on
        (Path(os.environ["CSR_TEST_MARKS"]) / str(os.getpid())).write_text(str(path))
        time.sleep(float(os.environ["CSR_TEST_PAUSE"]))
        yield fh


image_io.atomic_write = slow_atomic_write
'''


class Cluster:
    """``dask scheduler`` + ``dask worker`` processes on 127.0.0.1 (no nanny: a killed worker stays dead)."""

    def __init__(self, folder: Path, workers: int, env: dict):
        self.folder, self.procs = folder, []
        folder.mkdir(parents=True)
        self.scheduler_file = folder / "scheduler.json"
        self._start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                    "--scheduler-file", self.scheduler_file, env=env)
        self._wait(lambda: self.scheduler_file.exists() and self.scheduler_file.stat().st_size, "scheduler")
        self.address = json.loads(self.scheduler_file.read_text())["address"]
        (folder / "slow_writes.py").write_text(SLOW_WRITES)
        self.workers = [self._start("worker", "--scheduler-file", self.scheduler_file, "--host", "127.0.0.1",
                                    "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                    "--preload", folder / "slow_writes.py", env=env) for _ in range(workers)]
        with distributed.Client(self.address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)

    def _start(self, *args, env):
        log = open(self.folder / f"{args[0]}{len(self.procs)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "dask", *map(str, args)], stdout=log, stderr=log,
                                env=env, cwd=self.folder)
        self.procs.append(proc)
        return proc

    def _wait(self, ready, what, timeout=120):
        deadline = time.monotonic() + timeout
        while not ready():
            assert time.monotonic() < deadline, f"{what} did not start"
            assert all(p.poll() is None for p in self.procs), f"{what} exited"
            time.sleep(0.1)

    def close(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@needs_dask
def test_worker_killed_mid_job_the_job_completes_with_single_machine_bytes(tmp_path):
    srcs = _photos(tmp_path / "in", 6)
    expected = _expected(tmp_path / "in", tmp_path / "out", srcs, default_registry().look("auto"))
    marks = tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ, CSR_TEST_MARKS=str(marks), CSR_TEST_PAUSE="0.6")
    cluster = Cluster(tmp_path / "cluster", 2, env)
    try:
        pids = {p.pid: p for p in cluster.workers}
        job = subprocess.Popen([str(BIN / "csr"), "retouch", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                                "--cluster", cluster.address], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=REPO)
        deadline = time.monotonic() + 180
        while not any(int(m.name) in pids for m in marks.iterdir()):  # a worker is inside a write
            assert job.poll() is None and time.monotonic() < deadline, "no worker started writing"
            time.sleep(0.02)
        victim = next(int(m.name) for m in marks.iterdir() if int(m.name) in pids)
        hit = Path((marks / str(victim)).read_text())
        assert list(hit.parent.glob(f".{hit.name}.*.part")), "the kill must land mid-write"
        os.kill(victim, signal.SIGKILL)
        pids[victim].wait(timeout=30)
        _, stderr = job.communicate(timeout=180)
        assert job.returncode == 1, stderr  # the corrupt photo
        assert SUMMARY.findall(stderr) == [("6", "0", "1")], stderr
        assert stderr.count("csr: error:") == 1 and "Traceback" not in stderr
        assert f"csr: error: {tmp_path / 'in' / 'broken.jpg'}: " in stderr
        for dest, data in expected.items():  # the killed worker's photo too, redone by the other one
            assert dest.read_bytes() == data, dest
        assert not list((tmp_path / "out").rglob("*.part")), "a killed write left its temp file"
        assert not (tmp_path / "out" / "broken.jpg").exists()
        alive = [p for p in cluster.workers if p.poll() is None]
        assert len(alive) == 1
        res = _csr("retouch", tmp_path / "in", "-o", tmp_path / "out", "--skip-existing", "--cluster", cluster.address)
        assert res.returncode == 1 and SUMMARY.findall(res.stderr) == [("0", "6", "1")], res.stderr
        for dest, data in expected.items():
            assert dest.read_bytes() == data, dest
    finally:
        if "job" in locals() and job.poll() is None:
            job.kill()
        cluster.close()
