"""Parallel strips on our own threads, with OpenCV and BLAS single-threaded meanwhile.

For many small operations this beats the libraries' own thread pools: those gain little on idle
cores and, when the cores are busy, every call waits at a barrier for a descheduled thread (measured
up to 10x slower). The libraries' settings are process-wide, so they are switched to one thread when
the first user enters and restored when the last one leaves (two batch jobs may overlap). Where OpenBLAS
was started with one thread (the ``csr`` command sets ``OPENBLAS_NUM_THREADS=1``) BLAS is left alone.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence

import cv2

import csr_core

_lock = threading.Lock()
_users = 0
_saved: tuple = ()


def _limit_blas():
    """BLAS on one thread (threadpoolctl's limit, to restore later), or None when OpenBLAS was started
    with one thread (``csr_core.BLAS_STARTED_SERIAL``) and there is nothing to limit."""
    if csr_core.BLAS_STARTED_SERIAL:
        return None
    from threadpoolctl import threadpool_limits  # it inspects every loaded library: libraries loaded since count

    return threadpool_limits(1, user_api="blas")


def cores() -> int:
    """CPU cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """How many threads csr spreads its own work over by default: this process's cores, at most 8."""
    return min(cores(), 8)


@contextlib.contextmanager
def serial_libraries() -> Iterator[None]:
    """OpenCV and BLAS on one thread each while the block runs (reference-counted across threads)."""
    global _users, _saved
    with _lock:
        if _users == 0:
            _saved = (cv2.getNumThreads(), _limit_blas())
            cv2.setNumThreads(1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                cv2.setNumThreads(_saved[0])
                if _saved[1] is not None:
                    _saved[1].restore_original_limits()


def for_each(fn: Callable[[int], object], starts: Sequence[int], workers: int | None = None) -> None:
    """``fn(start)`` for every start, spread over up to ``workers`` (default: cores, at most 8) threads
    with the libraries single-threaded; the first exception is re-raised."""
    n = max(1, min(len(starts), workers or default_workers()))
    with serial_libraries():
        if n == 1:
            for s in starts:
                fn(s)
            return
        with ThreadPoolExecutor(n, thread_name_prefix="csr-strip") as pool:
            list(pool.map(fn, starts))
