"""Batches: expand files, folders and globs into (source, destination) jobs, then run them.

Rules: a folder is searched recursively and its sub-folder structure is kept under the output folder; in a
pattern, ``**`` stands for any depth of sub-folders. Links to folders are not followed inside either (a
link loop cannot make the search endless), and a file reached twice (through a link, or named twice) is one
input. A folder that cannot be read is an error line; the rest of the batch still runs.
A re-run never takes its own results as inputs: the output folder, when it lies inside an input folder,
is not searched, and a folder or pattern never yields a file that carries csr's XMP record (an earlier
run's result, wherever it lies). A file named on its own is retouched whatever it carries, unless it is
another input's output (this batch's, or ``NAME_retouched.EXT`` beside it) that carries the record: as
this batch's output it is replaced with ``overwrite`` and kept with ``skip_existing``.
Another input's output without that record is an original: it is skipped, not retouched, and never
replaced; nor is an existing ``NAME_retouched.EXT`` without the record. No output may be an input of the
batch, compared by identity (device and inode: hard links, symbolic links and case-insensitive names
included), whatever ``overwrite`` says. An existing output is an error unless ``overwrite`` or
``skip_existing``. An output name ending in a slash is a folder. Every check runs per file: one bad name
never stops the batch.
"""
from __future__ import annotations

import glob
import os
import stat
import sys
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from . import metadata, storage
from .errors import CsrError, UsageError
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
    keep_dest: bool = False    # the existing output is a photo csr did not write: never replaced


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
    if p.suffix.lower() not in SUPPORTED_EXTENSIONS or p.name.startswith("."):
        return False
    try:
        return p.is_file()
    except OSError:  # it cannot be examined: tried, and reported as its own failure
        return True


def _tree(folder: str | os.PathLike, prune: Identity | None, problems: list[str]) -> Iterator[tuple[str, list[str]]]:
    """(folder, file names) for ``folder`` and each sub-folder, in name order, except the sub-folder
    ``prune`` (the output) and hidden ones (a card's trash, thumbnail caches: names starting with a dot, which
    glob skips too); links to folders are not followed. An unreadable folder is a problem line."""
    def unreadable(exc: OSError) -> None:
        problems.append(f"{exc.filename}: cannot read folder ({exc.strerror or exc})")

    for top, dirs, names in os.walk(folder, onerror=unreadable):
        kept = []
        for d in sorted(dirs):
            if d.startswith("."):
                continue
            try:
                if prune is None or identity(os.path.join(top, d)) != prune:
                    kept.append(d)
            except OSError:
                kept.append(d)
        dirs[:] = kept
        yield top, names


def _matches(pattern: str, prune: Identity | None, problems: list[str], walked: bool = False) -> list[Path]:
    """Paths matching a glob pattern; ``**`` matches any depth of sub-folders, searched as a folder is. The
    folders a pattern's last part is matched in are problem lines when unreadable (``walked``: reported)."""
    parts = Path(pattern).parts
    if "**" not in parts:
        if not walked:
            _unreadable_folders(os.path.dirname(pattern), problems)
        return [Path(f) for f in glob.glob(pattern)]
    i = parts.index("**")
    head, tail = str(Path(*parts[:i])), parts[i + 1:] or ("*",)
    bases = glob.glob(head) if glob.has_magic(head) else [head]
    return [f for base in bases if os.path.isdir(base) for top, _ in _tree(base, prune, problems)
            for f in _matches(os.path.join(glob.escape(top), *tail), prune, problems, walked=True)]


def _unreadable_folders(head: str, problems: list[str]) -> None:
    """A problem line for each folder matching ``head`` that cannot be listed (glob skips them silently)."""
    for folder in glob.glob(head) if glob.has_magic(head) else [head or os.curdir]:
        try:
            os.scandir(folder).close()
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            problems.append(f"{folder}: cannot read folder ({exc.strerror or exc})")


#: How a problem line names a folder or a pattern of inputs.
_KIND = {"folder": "folder has", "pattern": "pattern matches"}


#: How many store objects' records are read at once (each is a request or two).
RECORD_READERS = 8


def _made_by_csr(file: Path | storage.Url) -> bool:
    """Whether csr wrote the file: its header and XMP record are read, never its pixels."""
    return file.made_by_csr() if isinstance(file, storage.Url) else metadata.made_by_csr(file)


def _records(files: list) -> list[bool]:
    """``_made_by_csr`` of each file; store objects RECORD_READERS at a time (a request waits on the network)."""
    if not any(isinstance(f, storage.Url) for f in files):
        return [_made_by_csr(f) for f in files]
    with ThreadPoolExecutor(RECORD_READERS, thread_name_prefix="csr-records") as pool:
        return list(pool.map(_made_by_csr, files))


def _photos(images: list, item: str, kind: str, problems: list[str], quiet: bool, made: dict) -> list:
    """The ``images`` (in name order) that are not csr's own results (``made`` records, for each image,
    whether csr wrote it); when there are none, a problem line (unless ``quiet``: an unreadable folder or
    key was reported)."""
    made.update(zip(images, _records(images)))
    photos = [f for f in images if not made[f]]
    if images and not photos:
        problems.append(f"{item}: {_KIND[kind]} only photos csr wrote ({len(images)}); to retouch them again, "
                        "name them one by one")
    elif not images and not quiet:
        problems.append(f"{item}: {_KIND[kind]} no supported images ({', '.join(SUPPORTED_EXTENSIONS)})")
    return photos


def expand_inputs(inputs: Iterable[str], output: str | None = None
                  ) -> tuple[list[tuple[Path, Path]], list[str], dict[Path, bool]]:
    """(file, root) pairs for files, folders (recursive) and glob patterns, problem lines, and for each image
    file of the folders and patterns whether csr wrote it (those are left out).

    The folder ``output``, when it is a sub-folder of an input folder, is not searched.
    """
    found, problems, made = [], [], {}
    try:
        prune = identity(output) if output and not isinstance(output, storage.Url) and os.path.isdir(output) else None
    except OSError:
        prune = None
    for item in inputs:
        if isinstance(item, storage.Url):
            files, lines, kind = storage.expand(item, output)
            problems += lines
            roots = dict(files)
            found += [(f, roots[f]) for f in _photos(list(roots), str(item), kind, problems, bool(lines), made)] \
                if kind in _KIND else files
            continue
        try:
            mode = os.stat(item).st_mode
        except (FileNotFoundError, NotADirectoryError):
            mode = None
        except OSError as exc:  # no permission, a name too long, a link loop
            problems.append(f"{item}: cannot read ({exc.strerror or exc})")
            continue
        p, before = Path(item), len(problems)
        if mode is not None and stat.S_ISDIR(mode):
            listed = [Path(top, n) for top, names in _tree(p, prune, problems) for n in names]
            found += [(f, p) for f in _photos(sorted(filter(_is_image, listed)), item, "folder", problems,
                                              len(problems) > before, made)]
        elif mode is not None and stat.S_ISREG(mode):
            found.append((p, p.parent))
        elif mode is None and glob.has_magic(item):
            listed = _matches(item, prune, problems)
            found += [(f, f.parent) for f in _photos(sorted(filter(_is_image, listed)), item, "pattern", problems,
                                                     len(problems) > before, made)]
        elif mode is not None:  # a FIFO, socket or device: reading it may block or never end
            problems.append(f"{item}: not a regular file (a pipe or device); to read a stream, pass '-' for stdin")
        else:
            problems.append(f"{item}: no such file or folder")
    return found, problems, made


def _destination(src: Path, root: Path, out: Path | None, to_file: bool, ext: str | None) -> Path:
    if to_file:
        return out
    if out is None:
        return src.with_name(f"{src.stem}{DEFAULT_SUFFIX}{ext or output_extension(src.name)}")
    return out / src.relative_to(root).with_suffix(ext or output_extension(src.name))


def _same_file_key(path: Path) -> str:
    """What two output paths share when they name one file: Windows and (by default) macOS disks ignore the
    case of names, so IMG_1_retouched.jpg and IMG_1_retouched.JPG would overwrite each other there."""
    key = os.path.normcase(os.path.abspath(path))
    return key.casefold() if sys.platform == "darwin" else key


def plan(inputs: Iterable[str], output: str | None, fmt: str | None = None) -> tuple[list[Job], list[str], int]:
    """Jobs for the inputs, problem lines, and how many files were left out as csr's own results. ``output``:
    a file (one input), a folder (always when it ends in a slash), or None (beside each input). Inputs and
    ``output`` may be store URLs (:func:`csr_core.storage.location`)."""
    found, problems, made = expand_inputs(inputs, output)

    def by_csr(path: Path) -> bool:  # a file of a folder or pattern was read once, while searching
        return made[path] if path in made else _made_by_csr(path)
    ext = _EXT[format_for_path(Path(f"x.{fmt}"))] if fmt else None
    out = output if isinstance(output, storage.Url) else Path(output) if output else None
    if out is not None and not (isinstance(output, str) and output.endswith(("/", os.sep))):
        named_file = out.suffix != "" and not (out.is_dir() if isinstance(out, storage.Url) else os.path.isdir(out))
    else:
        named_file = False
        if isinstance(out, Path) and os.path.exists(out) and not os.path.isdir(out):
            raise UsageError(f"{output}: a file, not a folder (choose another output folder)")
    if named_file and len(found) > 1:
        raise UsageError(f"{output}: several inputs need an output folder, not a file name (a folder: end it with /)")
    to_file = named_file and len(found) == 1
    if to_file and fmt:
        check_format(out, fmt)
    jobs = [Job(src, _destination(src, root, out, to_file, ext)) for src, root in found]
    storage.list_outputs(jobs)
    outputs: dict[Identity, Path] = {}  # existing outputs of this batch -> their input
    beside: dict[Identity, Path] = {}   # existing NAME_retouched.EXT beside an input (an in-place run's) -> it
    inputs_seen: set[Identity] = set()
    unique = []
    for job in jobs:
        try:
            job.src_id = identity(job.src)
            if job.src_id in inputs_seen:
                continue  # the same file reached twice: one input
            dest_id = identity(job.dest)
            beside_id = identity(_destination(job.src, job.src.parent, None, False, ext)) if out else None
        except OSError:
            unique.append(job)
            continue  # reported per file when the job runs
        unique.append(job)
        if job.src_id is not None:
            inputs_seen.add(job.src_id)
        if dest_id is not None:
            outputs.setdefault(dest_id, job.src)
            job.keep_dest = out is None and not by_csr(job.dest)
        if beside_id is not None:
            beside.setdefault(beside_id, job.src)
    jobs = [job for job in unique if not _earlier_result(job, {**beside, **outputs}, by_csr)]
    earlier = len(unique) - len(jobs)
    seen: dict[str, Path] = {}
    for job in jobs:
        owner = outputs.get(job.src_id) if job.src_id else None
        if owner is not None and owner != job.src:  # named like another job's output: never retouched
            job.skip = f"{job.src}: skipped, it is the output of {owner} (not retouched again)"
            continue
        key = str(job.dest) if isinstance(job.dest, storage.Url) else _same_file_key(job.dest)
        if key in seen:
            job.error = (f"{job.src}: output {job.dest} is also the output of {seen[key]} (two photos of one name: "
                         f"retouch this one on its own with -o)")
            continue
        seen[key] = job.src
        try:
            format_for_path(str(job.dest))
        except CsrError as exc:
            job.error = str(exc)
    return jobs, problems, sum(made.values()) + earlier


def check_format(output: Path | storage.Url | str, fmt: str) -> None:
    """Refuse an output file whose extension names another format than ``fmt`` ('jpg', 'png', 'tif', 'webp')."""
    try:
        named = format_for_path(str(output))
    except CsrError:
        return  # no output format in the name: reported where the output is written
    if named != format_for_path(f"x.{fmt}"):
        raise UsageError(f"{output}: its extension means {named} but --format asks for {fmt.lower()}; "
                       f"drop --format or end the name in .{fmt.lower()}")


def _earlier_result(job: Job, outputs: dict[Identity, Path], by_csr: Callable[[Path], bool]) -> bool:
    """Whether the job's input is an earlier run's result: another input's output (in this batch, or
    beside it) that csr wrote.
    (Another job's output without csr's record is kept as a skipped input: never retouched, never
    replaced.)"""
    owner = outputs.get(job.src_id) if job.src_id else None
    if owner is None or owner == job.src:
        return False
    return by_csr(job.src)


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
        return Outcome(job, "failed", f"{job.dest}: cannot write ({exc.strerror or exc})")
    if dest_id is None:
        return None
    if dest_id == job.src_id:
        return Outcome(job, "failed", f"{job.src}: refusing to overwrite the input (choose another output)")
    if skip_existing:
        return Outcome(job, "skipped", f"{job.dest}: exists, skipped")
    if dest_id in protected:
        return Outcome(job, "failed", f"{job.src}: refusing to replace {job.dest}, an input of this batch "
                                      "(choose another output)")
    if job.keep_dest:
        return Outcome(job, "failed", f"{job.src}: refusing to replace {job.dest}, a photo csr did not write "
                                      "(choose another output with -o)")
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
