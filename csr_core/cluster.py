"""Retouch batches on a Dask distributed cluster (the ``cluster`` extra: ``pip install "csr-retouch[cluster]"``).

The driver plans the batch exactly as the plain CLI does (:mod:`csr_core.batch`: output names, inputs never
overwritten, existing outputs refused or skipped) and sends each remaining job to a worker as two file
paths; the style's networks go to every worker once. A worker runs the core's :func:`retouch_file`, which
writes atomically, and returns a one-line outcome, so a bad photo is reported and its worker carries on.
When a worker dies, Dask's scheduler reruns its tasks elsewhere; a photo whose workers keep dying (it
crashes a decoder or exhausts memory) fails after ``distributed.scheduler.allowed-failures`` deaths.

Inputs and outputs must be on a filesystem that the driver and every worker see at the same paths, or
in object storage (s3://, gs://, any fsspec URL: :mod:`csr_core.storage`) that every worker can reach
with credentials from its own environment (only the URLs and storage options travel in the tasks).
Dask is imported only inside these functions: importing this module costs nothing without the extra.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import time
from typing import Callable, Iterable, Iterator

from . import __version__, batch
from .batch import Job, Outcome
from .errors import ClusterError, CsrError, install_command, require
from .fsutil import remove_partials
from .storage import Url, check_options, location

LOCAL = re.compile(r"local\[([1-9][0-9]*)\]")
#: Tasks in flight per worker thread: enough to hide the round trip, few enough that a catalogue of
#: millions is never all on the scheduler at once.
IN_FLIGHT_PER_THREAD = 2
#: Photos a task retouches at most: ~1 s a photo against a few ms of scheduler time a task (measured in
#: benchmarks/cluster_bench.py) keeps one scheduler far from saturation at thousands of worker cores.
MAX_PHOTOS_PER_TASK = 16


def _distributed():
    return require("cluster", "--cluster")


@contextlib.contextmanager
def connect(address: str, timeout: float = 30.0, quiet: bool = False) -> Iterator:
    """A Dask ``Client`` for ``address``: a scheduler such as ``tcp://host:8786``, or ``local[N]`` for a
    cluster of N single-threaded worker processes on this machine (closed on exit).

    Waits up to ``timeout`` seconds for a worker and checks that the workers run this version of csr.
    ``quiet`` hides Dask's own log lines (the CLI prints its own report): on this process's ``distributed``
    logger below errors, and in a local cluster's worker processes, which share this terminal, below
    critical (a worker's heartbeat to a scheduler that is shutting down logs a traceback at error level).
    """
    local = LOCAL.fullmatch(address.strip())
    if not local and address.strip().startswith("local"):
        raise ClusterError(f"{address}: a local cluster is written local[N], N worker processes (N >= 1)")
    distributed = _distributed()
    if quiet:
        logging.getLogger("distributed").setLevel(logging.ERROR)
    with contextlib.ExitStack() as stack:
        try:
            if local:
                cluster = stack.enter_context(distributed.LocalCluster(
                    n_workers=int(local.group(1)), threads_per_worker=1, processes=True, host="127.0.0.1",
                    dashboard_address=None, silence_logs=logging.CRITICAL if quiet else logging.WARN))
                client = stack.enter_context(distributed.Client(cluster, timeout=timeout))
            else:
                client = stack.enter_context(distributed.Client(address, timeout=timeout))
            client.wait_for_workers(1, timeout=timeout)
        except Exception as exc:
            raise ClusterError(f"cannot use the cluster at {address} ({_one_line(exc)}); give a Dask scheduler "
                           "address such as tcp://HOST:8786, or local[N]") from None
        _check_workers(client, address)
        yield client


def _check_workers(client, address: str) -> None:
    try:
        versions = client.run(_csr_version)
    except Exception as exc:
        raise ClusterError(f"the workers of {address} cannot run csr ({_one_line(exc)}); "
                       f"run {install_command('cluster', __version__)} on every worker") from None
    wrong = sorted({v for v in versions.values() if v != __version__})
    if wrong:
        raise ClusterError(f"the workers of {address} run csr {', '.join(wrong)}, this is csr {__version__}; "
                       "install the same version everywhere (outputs must not depend on the machine)")


def _csr_version() -> str:
    return __version__


def run(jobs: list[Job], client, look, *, overwrite: bool = False, skip_existing: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None, photos_per_task: int | None = None,
        **options) -> list[Outcome]:
    """Run planned jobs on the cluster behind ``client``, like :func:`csr_core.batch.run` runs them here.

    ``look`` is the resolved style (sent to every worker once); ``options`` are :func:`retouch_file`'s
    (strength, quality, fmt, device, exact). Existing outputs are settled here, before any task is sent.
    A task retouches ``photos_per_task`` photos (default: 1 for small batches, up to
    ``MAX_PHOTOS_PER_TASK`` for big ones, so the scheduler's cost per task stays small); a task whose
    worker keeps dying is split into one task a photo, so only the photo that kills it fails.
    ``on_outcome`` is called in completion order; the returned list follows the order of ``jobs``.
    """
    distributed = _distributed()
    outcomes: list[Outcome | None] = [None] * len(jobs)

    def report(i: int, outcome: Outcome) -> None:
        outcomes[i] = outcome
        if on_outcome:
            on_outcome(outcome)

    protected = {job.src_id for job in jobs if job.src_id is not None}
    todo = (i for i, job in enumerate(jobs) if not _settled(i, job, overwrite, skip_existing, protected, report))
    window = _Window(client)
    per_task = photos_per_task or _photos_per_task(len(jobs), window.size())
    group = list(itertools.islice(todo, per_task))
    if not group:
        return outcomes  # type: ignore[return-value]
    shared_look = client.scatter(look, broadcast=True, hash=False)
    index: dict = {}  # future -> the indices of its jobs
    running = distributed.as_completed()

    def submit(ids: list[int]) -> None:
        future = client.submit(_retouch_task, [jobs[i] for i in ids], shared_look, options, pure=False)
        index[future] = ids
        running.add(future)

    def fill() -> None:
        while len(index) < window.size() and (ids := list(itertools.islice(todo, per_task))):
            submit(ids)

    try:
        submit(group)
        fill()
        for future in running:
            ids = index.pop(future)
            if len(ids) > 1 and _killed(future):
                for i in ids:  # find the photo that kills its workers
                    submit([i])
            else:
                for i, outcome in zip(ids, _outcomes(future, [jobs[i] for i in ids])):
                    report(i, outcome)
            future.release()
            fill()
    finally:
        if index:  # interrupted: tasks not started yet are dropped (running ones still write atomically)
            client.cancel(list(index))
        for outcome in outcomes:  # temp files of tasks whose worker was killed mid-write
            if outcome is not None and outcome.status != "skipped" and not isinstance(outcome.job.dest, Url):
                remove_partials(outcome.job.dest)  # (a store publishes an object only when its upload completes)
    return outcomes  # type: ignore[return-value]


def _photos_per_task(n_jobs: int, in_flight: int) -> int:
    """Enough tasks for every worker to get several (load balance, a fine progress bar), at most the cap."""
    return max(1, min(MAX_PHOTOS_PER_TASK, n_jobs // (4 * in_flight)))


def _settled(i: int, job: Job, overwrite: bool, skip_existing: bool, protected: set, report) -> bool:
    outcome = batch.check_destination(job, overwrite, skip_existing, protected)
    if outcome is not None:
        report(i, outcome)
    return outcome is not None


class _Window:
    """How many tasks to keep in flight: re-read from the scheduler every few seconds (workers come and go)."""

    def __init__(self, client, every: float = 5.0):
        self._client, self._every, self._at, self._size = client, every, float("-inf"), 1

    def size(self) -> int:
        if time.monotonic() - self._at > self._every:
            threads = sum(self._client.nthreads().values())
            self._size, self._at = max(1, IN_FLIGHT_PER_THREAD * threads), time.monotonic()
        return self._size


def _retouch_task(jobs: list[Job], look, options: dict) -> list[tuple[str, str]]:
    """On a worker: retouch photos from their paths; a failure is a result, not an exception."""
    from .pipeline import retouch_file

    def process(job: Job) -> None:
        retouch_file(job.src, job.dest, style=look, **options)

    return [(o.status, o.message) for o in (batch.attempt(job, process) for job in jobs)]


def _killed(future) -> bool:
    return future.status != "finished" and type(future.exception()).__name__ == "KilledWorker"


def _outcomes(future, jobs: list[Job]) -> list[Outcome]:
    if future.status == "finished":
        return [Outcome(job, *result) for job, result in zip(jobs, future.result())]
    if _killed(future):
        message = "its worker died each time it was tried (the photo may crash the decoder or exhaust memory)"
    else:
        message = f"cluster error ({_one_line(future.exception())})"
    return [Outcome(job, "failed", f"{job.src}: {message}") for job in jobs]


def _one_line(exc: BaseException) -> str:
    detail = " ".join(str(exc).split())[:200]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def retouch_many(paths: Iterable[str | os.PathLike] | str | os.PathLike, out: str | os.PathLike | None, style="auto", client=None, *, fmt: str | None = None,
                 overwrite: bool = False, skip_existing: bool = False,
                 on_outcome: Callable[[Outcome], None] | None = None, registry=None,
                 storage_options: dict | None = None, **options) -> list[Outcome]:
    """Retouch files, folders or globs into ``out`` on a Dask cluster, with the CLI's naming and rules.

    ``style`` is a style name, a mix ('C:0.7,auto:0.3') or a Look; ``client`` defaults to the current Dask
    client (``distributed.get_client()``); ``fmt`` is an output format like the CLI's --format ('jpg',
    'png', 'tif', 'webp'; default: the output name's, else the input's). Paths and ``out`` may be store
    URLs (s3://bucket/prefix/...), read with ``storage_options`` (endpoint, region; never credentials,
    which each machine takes from its environment or config files). ``options``: strength, quality,
    device, exact. Inputs that match nothing raise CsrError before any work is sent; each photo's
    result (ok, skipped, or failed with a one-line message) is in the returned list, in input order.
    """
    from .image_io import format_for_path
    from .inference import Look
    from .pipeline import default_registry

    if overwrite and skip_existing:
        raise CsrError("overwrite and skip_existing exclude each other")
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else paths
    store = check_options(storage_options)
    jobs, problems, _ = batch.plan([location(os.fspath(p), store) for p in paths],
                                None if out is None else location(os.fspath(out), store), fmt)
    if problems:
        raise CsrError("; ".join(problems))
    look = style if isinstance(style, Look) else (registry or default_registry()).look(style)
    client = client or _distributed().get_client()
    return run(jobs, client, look, overwrite=overwrite, skip_existing=skip_existing, on_outcome=on_outcome,
               fmt=format_for_path(f"x.{fmt}") if fmt else None, **options)
