"""Batches: expand files, folders and globs into (source, destination) jobs, then run them.

Rules: a folder is searched recursively and its sub-folder structure is kept under the output folder;
an input is never overwritten; an existing output is an error unless ``overwrite`` or ``skip_existing``.
"""
from __future__ import annotations

import glob
import os
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import CsrError
from .image_io import SUPPORTED_EXTENSIONS, format_for_path

DEFAULT_SUFFIX = "_retouched"
_EXT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}


@dataclass
class Job:
    src: Path
    dest: Path
    error: str | None = None   # a planning problem (reported, the rest of the batch still runs)


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS and not p.name.startswith(".")


def expand_inputs(inputs: Iterable[str]) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(file, root) pairs for files, folders (recursive) and glob patterns, plus problem lines."""
    found, problems = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if _is_image(f))
            if not files:
                problems.append(f"{item}: folder has no supported images ({', '.join(SUPPORTED_EXTENSIONS)})")
            found += [(f, p) for f in files]
        elif p.is_file():
            found.append((p, p.parent))
        elif glob.has_magic(item):
            files = sorted(Path(f) for f in glob.glob(item, recursive=True) if _is_image(Path(f)))
            if not files:
                problems.append(f"{item}: pattern matches no supported images")
            found += [(f, f.parent) for f in files]
        else:
            problems.append(f"{item}: no such file or folder")
    return found, problems


def plan(inputs: Iterable[str], output: str | None, fmt: str | None = None) -> tuple[list[Job], list[str]]:
    """Jobs for the inputs. ``output``: a file (one input), a folder, or None (beside each input)."""
    found, problems = expand_inputs(inputs)
    ext = _EXT[format_for_path(Path(f"x.{fmt}"))] if fmt else None
    out = Path(output) if output else None
    to_file = out is not None and len(found) == 1 and not out.is_dir() and out.suffix != ""
    if out is not None and not to_file and out.suffix and not out.is_dir() and len(found) > 1:
        raise CsrError(f"{output}: several inputs need an output folder, not a file name")
    jobs, seen = [], {}
    for src, root in found:
        if to_file:
            dest = out
        elif out is None:
            dest = src.with_name(f"{src.stem}{DEFAULT_SUFFIX}{ext or src.suffix}")
        else:
            rel = src.relative_to(root)
            dest = out / rel.with_suffix(ext or src.suffix)
        job = Job(src, dest)
        key = os.path.normcase(os.path.abspath(dest))
        if _same_file(src, dest):
            job.error = f"{src}: refusing to overwrite the input (choose another output)"
        elif key in seen:
            job.error = f"{src}: output {dest} is also the output of {seen[key]}"
        else:
            seen[key] = src
            try:
                format_for_path(dest)
            except CsrError as exc:
                job.error = str(exc)
        jobs.append(job)
    return jobs, problems


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


@dataclass
class Outcome:
    job: Job
    status: str                 # 'ok' | 'skipped' | 'failed'
    message: str = ""


def run(jobs: list[Job], process: Callable[[Job], None], overwrite: bool = False, skip_existing: bool = False,
        on_outcome: Callable[[Outcome], None] | None = None, workers: int = 2) -> list[Outcome]:
    """Run ``process`` on every job; one failure never stops the batch.

    Up to ``workers`` jobs run at once in threads (decoding, inference and encoding release the GIL),
    so one photo's decode or encode overlaps another's inference while at most ``workers`` photos are
    in memory. ``on_outcome`` is called from this thread in completion order; the returned list
    follows the order of ``jobs``.
    """
    outcomes: list[Outcome | None] = [None] * len(jobs)

    def report(i: int, outcome: Outcome) -> None:
        outcomes[i] = outcome
        if on_outcome:
            on_outcome(outcome)

    def attempt(job: Job) -> Outcome:
        try:
            process(job)
            return Outcome(job, "ok")
        except CsrError as exc:
            return Outcome(job, "failed", str(exc))
        except OSError as exc:
            return Outcome(job, "failed", f"{job.dest}: cannot write ({exc.strerror or exc})")
        except MemoryError:
            return Outcome(job, "failed", f"{job.src}: out of memory")
        except Exception as exc:  # a bug hit by one photo must not abort the rest of the batch
            detail = " ".join(str(exc).split())[:200]
            return Outcome(job, "failed", f"{job.src}: unexpected error ({type(exc).__name__}: {detail})")

    import torch

    workers = max(1, min(workers, len(jobs)))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="csr-batch") if workers > 1 else None
    threads = torch.get_num_threads()
    if pool:  # split the cores between the jobs in flight rather than oversubscribe them
        torch.set_num_threads(max(1, threads // workers))
    pending: dict = {}
    try:
        for i, job in enumerate(jobs):
            if job.error:
                report(i, Outcome(job, "failed", job.error))
            elif job.dest.exists() and skip_existing:
                report(i, Outcome(job, "skipped", f"{job.dest}: exists, skipped"))
            elif job.dest.exists() and not overwrite:
                message = f"{job.dest}: already exists (use --overwrite or --skip-existing)"
                report(i, Outcome(job, "failed", message))
            elif pool is None:
                report(i, attempt(job))
            else:
                while len(pending) >= workers:  # at most ``workers`` photos in flight
                    _drain(pending, report, FIRST_COMPLETED)
                pending[pool.submit(attempt, job)] = i
        _drain(pending, report, ALL_COMPLETED)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)
    return outcomes  # type: ignore[return-value]


def _drain(pending: dict, report: Callable[[int, Outcome], None], when: str) -> None:
    done, _ = wait(list(pending), return_when=when)
    for fut in [f for f in pending if f in done]:  # submission order within one wake-up
        report(pending.pop(fut), fut.result())
