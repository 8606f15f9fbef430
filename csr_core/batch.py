"""Batches: expand files, folders and globs into (source, destination) jobs, then run them.

Rules: a folder is searched recursively and its sub-folder structure is kept under the output folder.
A re-run never takes its own results as inputs: the output folder, when it lies inside an input folder,
is not searched, and a file that is another input's output (this batch's, or ``NAME_retouched.EXT``
beside it) and carries csr's XMP record is an earlier run's result, no input at all: as this batch's
output it is replaced with ``overwrite`` and kept with ``skip_existing``.
Another input's output without that record is an original: it is skipped, not retouched, and never
replaced. No output may be an input of the batch, compared by identity (device and inode: hard links,
symbolic links and case-insensitive names included), whatever ``overwrite`` says. An existing output
is an error unless ``overwrite`` or ``skip_existing``. Every check runs per file: one bad name never stops the batch.
"""
from __future__ import annotations

import glob
import os
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import storage
from .errors import CsrError
from .image_io import SUPPORTED_EXTENSIONS, format_for_path, output_extension

DEFAULT_SUFFIX = "_retouched"
_EXT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}

Identity = tuple[int, int] | tuple[str, str]  # (st_dev, st_ino); (protocol, key) in a store


@dataclass
class Job:
    src: Path | str | storage.Url
    dest: Path | storage.Url
    error: str | None = None   # a planning problem (reported, the rest of the batch still runs)
    skip: str | None = None    # why this input is not retouched (it is another job's output)
    src_id: Identity | None = None  # (st_dev, st_ino) of the input, when it is a file


def identity(path: str | os.PathLike | int) -> Identity | None:
    """(st_dev, st_ino) of an existing path (following links) or open descriptor; None if it does not
    exist. Other errors (a name too long, no permission) raise OSError."""
    if isinstance(path, storage.Url):
        return path.identity()
    try:
        st = os.fstat(path) if isinstance(path, int) else os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return st.st_dev, st.st_ino


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in SUPPORTED_EXTENSIONS and not p.name.startswith(".") and p.is_file()


def _walk(folder: Path, prune: Identity | None) -> list[Path]:
    """Image files under ``folder``, recursively, skipping the sub-folder ``prune`` (the output)."""
    files = []
    for top, dirs, names in os.walk(folder):
        kept = []
        for d in sorted(dirs):
            try:
                if prune is None or identity(os.path.join(top, d)) != prune:
                    kept.append(d)
            except OSError:
                kept.append(d)
        dirs[:] = kept
        files += [Path(top, n) for n in names if _is_image(Path(top, n))]
    return sorted(files)


def expand_inputs(inputs: Iterable[str], output: str | None = None) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(file, root) pairs for files, folders (recursive) and glob patterns, plus problem lines.

    The folder ``output``, when it is a sub-folder of an input folder, is not searched.
    """
    found, problems = [], []
    try:
        prune = identity(output) if output and not isinstance(output, storage.Url) and os.path.isdir(output) else None
    except OSError:
        prune = None
    for item in inputs:
        if isinstance(item, storage.Url):
            files, lines = storage.expand(item, output)
            found, problems = found + files, problems + lines
            continue
        p = Path(item)
        if p.is_dir():
            files = _walk(p, prune)
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
        elif p.exists():  # a FIFO, socket or device: reading it may block or never end
            problems.append(f"{item}: not a regular file (a pipe or device); to read a stream, pass '-' for stdin")
        else:
            problems.append(f"{item}: no such file or folder")
    return found, problems


def _destination(src: Path, root: Path, out: Path | None, to_file: bool, ext: str | None) -> Path:
    if to_file:
        return out
    if out is None:
        return src.with_name(f"{src.stem}{DEFAULT_SUFFIX}{ext or output_extension(src.name)}")
    return out / src.relative_to(root).with_suffix(ext or output_extension(src.name))


def plan(inputs: Iterable[str], output: str | None, fmt: str | None = None) -> tuple[list[Job], list[str]]:
    """Jobs for the inputs. ``output``: a file (one input), a folder, or None (beside each input).
    Inputs and ``output`` may be store URLs (:func:`csr_core.storage.location`)."""
    found, problems = expand_inputs(inputs, output)
    ext = _EXT[format_for_path(Path(f"x.{fmt}"))] if fmt else None
    out = output if isinstance(output, storage.Url) else Path(output) if output else None
    to_file = out is not None and len(found) == 1 and not out.is_dir() and out.suffix != ""
    if out is not None and not to_file and out.suffix and not out.is_dir() and len(found) > 1:
        raise CsrError(f"{output}: several inputs need an output folder, not a file name")
    jobs = [Job(src, _destination(src, root, out, to_file, ext)) for src, root in found]
    storage.list_outputs(jobs)
    outputs: dict[Identity, Path] = {}  # existing outputs of this batch -> their input
    beside: dict[Identity, Path] = {}   # existing NAME_retouched.EXT beside an input (an in-place run's) -> it
    for job in jobs:
        try:
            job.src_id = identity(job.src)
            dest_id = identity(job.dest)
            beside_id = identity(_destination(job.src, job.src.parent, None, False, ext)) if out else None
        except OSError:
            continue  # reported per file when the job runs
        if dest_id is not None:
            outputs.setdefault(dest_id, job.src)
        if beside_id is not None:
            beside.setdefault(beside_id, job.src)
    jobs = [job for job in jobs if not _earlier_result(job, {**beside, **outputs})]
    seen: dict[str, Path] = {}
    for job in jobs:
        owner = outputs.get(job.src_id) if job.src_id else None
        if owner is not None and owner != job.src:  # named like another job's output: never retouched
            job.skip = f"{job.src}: skipped, it is the output of {owner} (not retouched again)"
            continue
        key = str(job.dest) if isinstance(job.dest, storage.Url) else os.path.normcase(os.path.abspath(job.dest))
        if key in seen:
            job.error = f"{job.src}: output {job.dest} is also the output of {seen[key]}"
            continue
        seen[key] = job.src
        try:
            format_for_path(str(job.dest))
        except CsrError as exc:
            job.error = str(exc)
    return jobs, problems


def _earlier_result(job: Job, outputs: dict[Identity, Path]) -> bool:
    """Whether the job's input is an earlier run's result: another input's output (in this batch, or
    beside it) that csr wrote.
    (Another job's output without csr's record is kept as a skipped input: never retouched, never
    replaced.)"""
    owner = outputs.get(job.src_id) if job.src_id else None
    if owner is None or owner == job.src:
        return False
    from . import metadata

    try:
        return metadata.made_by_csr(Path(job.src).read_bytes(), format_for_path(job.src))
    except (OSError, CsrError):
        return False


def check_destination(job: Job, overwrite: bool, skip_existing: bool,
                      protected: set[Identity]) -> "Outcome | None":
    """The outcome decided before any work (planning error, skip, an existing output), or None to run.

    An existing output that is one of the ``protected`` inputs (by identity) is never replaced.
    """
    if job.error:
        return Outcome(job, "failed", job.error)
    if job.skip:
        return Outcome(job, "skipped", job.skip)
    try:
        dest_id = identity(job.dest)
    except OSError as exc:
        return Outcome(job, "failed", f"{job.dest}: unusable output name ({exc.strerror or exc})")
    if dest_id is None:
        return None
    if dest_id == job.src_id:
        return Outcome(job, "failed", f"{job.src}: refusing to overwrite the input (choose another output)")
    if skip_existing:
        return Outcome(job, "skipped", f"{job.dest}: exists, skipped")
    if dest_id in protected:
        return Outcome(job, "failed", f"{job.src}: refusing to replace {job.dest}, an input of this batch "
                                      "(choose another output)")
    if not overwrite:
        return Outcome(job, "failed", f"{job.dest}: already exists (use --overwrite or --skip-existing)")
    return None


@dataclass
class Outcome:
    job: Job
    status: str                 # 'ok' | 'skipped' | 'failed'
    message: str = ""


def attempt(job: Job, process: Callable[[Job], None]) -> Outcome:
    """Run ``process`` on one job; any failure becomes a one-line 'failed' outcome naming the file."""
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

    workers = max(1, min(workers, len(jobs)))
    pool = ThreadPoolExecutor(workers, thread_name_prefix="csr-batch") if workers > 1 else None
    pending: dict = {}
    protected = {job.src_id for job in jobs if job.src_id is not None}
    try:
        for i, job in enumerate(jobs):
            decided = check_destination(job, overwrite, skip_existing, protected)
            if decided is not None:
                report(i, decided)
            elif pool is None:
                report(i, attempt(job, process))
            else:
                while len(pending) >= workers:  # at most ``workers`` photos in flight
                    _drain(pending, report, FIRST_COMPLETED)
                pending[pool.submit(attempt, job, process)] = i
        _drain(pending, report, ALL_COMPLETED)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return outcomes  # type: ignore[return-value]


def _drain(pending: dict, report: Callable[[int, Outcome], None], when: str) -> None:
    done, _ = wait(list(pending), return_when=when)
    for fut in [f for f in pending if f in done]:  # submission order within one wake-up
        report(pending.pop(fut), fut.result())
