"""``csr retouch``: files, folders, globs or stdin in; retouched photos out."""
from __future__ import annotations

import contextlib
import gc
import io
import os
import stat
import sys
import threading
from pathlib import Path

import click

from csr_core.errors import ClusterError, CsrError, MissingExtra, install_command
from csr_core.fsutil import StreamWriter

from .common import (EXIT_FAILED, EXIT_OK, EXIT_USAGE, device_option, fail, handle_errors, plural, read_stdin,
                     registry, say, strength_option, style_option, WholeNumber)

EXAMPLES = """\b
Examples:
  csr retouch in.jpg -o out.jpg
  csr retouch in.jpg -o out.jpg --style C --strength 0.7
  csr retouch shoot/ -o edited/                  # recursive, keeps sub-folders
  csr retouch 'raw/**/*.tif' -o edited/ --skip-existing
  csr retouch in.png --style "C:0.7,auto:0.3"    # writes in_retouched.png
  cat in.jpg | csr retouch - -o - --format jpg > out.jpg
  csr retouch shoot/ -o edited/ --cluster tcp://scheduler:8786   # on a Dask cluster (the cluster extra)
  csr retouch shoot/ -o edited/ --cluster 'local[4]'             # 4 worker processes here
  csr retouch s3://bucket/shoot/ -o s3://bucket/edited/ --cluster tcp://scheduler:8786   # object storage
"""


@click.command("retouch", epilog=EXAMPLES)
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", help="Output file (one input), folder, or '-' for stdout. "
              "Default: beside each input as NAME_retouched.EXT.")
@style_option
@strength_option
@click.option("-q", "--quality", type=WholeNumber(1, 100), default=95, show_default=True,
              help="JPEG/WebP quality.")
@click.option("-f", "--format", "fmt", type=click.Choice(["jpg", "png", "tif", "webp"], case_sensitive=False),
              help="Output format (default: from the output name, else the input's).")
@click.option("--overwrite", is_flag=True, help="Replace existing output files (never the inputs).")
@click.option("--skip-existing", is_flag=True, help="Skip inputs whose output exists (resume a batch).")
@device_option
@click.option("--exact", is_flag=True, help="Run the network on every pixel instead of through the "
              "per-photo 3-D LUT (slower; the LUT is at most 2/255 off, ~63 dB on average).")
@click.option("--cluster", metavar="ADDRESS", help="Run the batch on a Dask cluster: a scheduler address "
              "(tcp://HOST:8786) or local[N] for N worker processes here. Local paths must be the same on every "
              "machine (a shared filesystem); s3:// and other store URLs need none.\n\n"
              f"\b\nNeeds: {install_command('cluster')}")  # \b: the command is never wrapped at its hyphen
@click.option("--storage-option", "storage_options", multiple=True, metavar="KEY=VALUE",
              help="For s3://, gs://, az:// paths: a setting of the store such as endpoint_url=https://HOST "
              "or client_kwargs.region_name=eu-west-1 (repeatable). Never credentials: they come from the "
              "environment, the store's config files or an instance role.")
@handle_errors
def command(inputs, output, style, strength, quality, fmt, overwrite, skip_existing, device, exact, cluster,
            storage_options):
    """Retouch photos with a CSRNet style.

    INPUTS are files, folders (searched recursively) or glob patterns; '-' reads stdin. Folders and
    patterns leave out hidden sub-folders and the photos csr wrote (name one on its own to retouch it again).
    Exit status: 0 all done, 1 some files failed (each is named), 2 usage error.
    """
    with _starting_up():
        if overwrite and skip_existing:
            fail("--overwrite and --skip-existing exclude each other", EXIT_USAGE)
        early = _EarlyLoad.of(inputs, output, cluster)  # first: the photo decodes while the rest loads
        from csr_core import batch
        from csr_core.image_io import format_for_path

        inputs, output = _locations(inputs, output, storage_options)
        from csr_core.inference import resolve_device
        from csr_core.pipeline import retouch_file

        try:
            resolve_device(device)
            look = registry().look(style)
        except CsrError as exc:
            fail(str(exc), EXIT_USAGE)
        fmt_name = format_for_path(f"x.{fmt}") if fmt else None

    options = dict(strength=strength, quality=quality, fmt=fmt_name, device=device, exact=exact)

    def run_one(src, dest):
        photo = early.photo() if early and early.path == src else None  # None: not decoded early, or given
        retouch_file(src if photo is None else photo, dest, style=look, **options)

    if "-" in inputs or output == "-":
        if cluster:
            fail("--cluster works with files, folders and patterns, not '-' (stdin/stdout)", EXIT_USAGE)
        return _stream(inputs, output, fmt, run_one, overwrite, skip_existing)
    jobs, problems, left_out = batch.plan(inputs, output, fmt)
    for line in problems:
        say("error", line)
    if not jobs:
        if problems:  # each input's problem is named above
            sys.exit(EXIT_FAILED)
        fail("nothing to do", EXIT_USAGE)
    if cluster:
        failed = _on_cluster(cluster, jobs, look, options, overwrite, skip_existing, len(problems), left_out)
    else:
        process = lambda job: run_one(job.src, job.dest)  # noqa: E731
        failed = _run_batch(jobs, lambda report: batch.run(jobs, process, overwrite, skip_existing, report),
                            len(problems), left_out)
    sys.exit(EXIT_FAILED if failed or problems else EXIT_OK)


@contextlib.contextmanager
def _starting_up():
    """No garbage collection while csr loads: its libraries make ~10^5 objects and no garbage, so
    collecting meanwhile only costs time. The collector's state is restored after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _EarlyLoad:
    """One local input file decoded on a thread from the moment the command knows it, while the rest of csr
    starts up (the JPEG decoder runs without the GIL). A daemon thread: an error elsewhere exits at once."""

    def __init__(self, path: str):
        from csr_core import metadata
        from csr_core.image_io import load_photo

        self.path, self._done, self._result = Path(path), threading.Event(), (None, None)

        def load():
            try:
                self._result = (load_photo(path), None)
            except BaseException as exc:  # raised where the photo is needed, as loading it there would
                self._result = (None, exc)
            finally:
                self._done.set()

        threading.Thread(target=load, name="csr-early-load", daemon=True).start()
        metadata.library()  # the reading of the photo's metadata needs it; it loads while the pixels decode

    @classmethod
    def of(cls, inputs, output, cluster) -> "_EarlyLoad | None":
        """For a single regular file retouched here (not stdin or stdout, not a URL, not on a cluster)."""
        if cluster or output == "-" or len(inputs) != 1 or inputs[0] == "-" or "://" in inputs[0]:
            return None
        return cls(inputs[0]) if os.path.isfile(inputs[0]) else None

    def photo(self):
        self._done.wait()
        photo, exc = self._result
        self._result = (None, None)  # given once (then None): the pixels or an error's frames stay nowhere here
        if exc is not None:
            raise exc
        return photo


def _locations(inputs, output, storage_options):
    """The inputs and output, store URLs (s3://...) as storage.Url; a bad URL or option is a usage error."""
    from csr_core import storage

    if not storage_options and not any(map(storage.is_url, (*inputs, output))):
        return inputs, output  # the plain local path: fsspec is never imported
    try:
        options = storage.check_options(storage.options_from_args(storage_options))
        return ([storage.location(i, options) for i in inputs],
                storage.location(output, options) if output else output)
    except CsrError as exc:
        fail(str(exc), EXIT_USAGE)


def _on_cluster(address, jobs, look, options, overwrite, skip_existing, problems: int, left_out: int) -> int:
    from csr_core import cluster  # Dask is imported only on this path

    try:
        with cluster.connect(address, quiet=True) as client:
            return _run_batch(jobs, lambda report: cluster.run(jobs, client, look, overwrite=overwrite,
                                                               skip_existing=skip_existing, on_outcome=report,
                                                               **options), problems, left_out)
    except (ClusterError, MissingExtra) as exc:  # nothing was retouched: the address, extra or workers are wrong
        fail(str(exc), EXIT_USAGE)


def _file_identity(stream):
    """(st_dev, st_ino) of a standard stream redirected from/to a regular file, else None."""
    try:
        st = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


def _stream(inputs, output, fmt, run_one, overwrite, skip_existing):
    """stdin and/or stdout: the same existing-output rules as files; stdout is written in full or exit 1."""
    from csr_core import batch

    if len(inputs) != 1:
        fail("'-' (stdin/stdout) works with exactly one input", EXIT_USAGE)
    if inputs[0] == "-":
        if sys.stdin is None:
            fail("stdin is closed; nothing to read", EXIT_USAGE)
        if output not in (None, "-") and (str(output).endswith(("/", os.sep)) or os.path.isdir(str(output))):
            fail(f"{output}: a photo read from stdin needs an output file name (-o NAME.jpg) or '-' (stdout), "
                 "not a folder", EXIT_USAGE)
        label, src_id = "<stdin>", _file_identity(sys.stdin)
        src = None  # read once the output is known to be writable
    else:
        label, src = inputs[0], inputs[0]
        try:
            src_id = batch.identity(src)
        except OSError:
            src_id = None
    if output in (None, "-"):
        # without --format, stdout gets the input's format (read from its bytes)
        if sys.stdout is None:
            fail("stdout is closed; nowhere to write (use -o FILE)", EXIT_USAGE)
        if src_id is not None and _file_identity(sys.stdout) == src_id:
            fail(f"{label}: refusing to write the output over the input (stdout is the input file)")
        dest = StreamWriter(sys.stdout, "<stdout>")
    else:
        job = batch.Job(label, output if isinstance(output, batch.storage.Url) else Path(output), src_id=src_id)
        if fmt:
            batch.check_format(job.dest, fmt)
        decided = batch.check_destination(job, overwrite, skip_existing, {src_id} if src_id else set())
        if decided is not None and decided.status == "skipped":
            return
        if decided is not None:
            fail(decided.message)
        dest = output
    run_one(read_stdin() if src is None else src, dest)


def _run_batch(jobs, execute, problems: int = 0, left_out: int = 0) -> int:
    """Run ``execute(on_outcome)`` with a progress bar (on a terminal), error lines and one summary line,
    whose failures include the ``problems`` already reported (inputs that could not be read), and which
    counts the ``left_out`` files of folders and patterns that csr wrote."""
    show_bar = len(jobs) > 1 and sys.stderr.isatty()
    counts = {"ok": 0, "skipped": 0, "failed": problems}

    def report(outcome):
        counts[outcome.status] += 1
        if outcome.status == "failed":
            say("error", outcome.message, newline_first=show_bar)

    if show_bar:
        with click.progressbar(length=len(jobs), label="retouching", file=sys.stderr) as bar:
            execute(lambda o: (report(o), bar.update(1)))
    else:
        execute(report)
    if len(jobs) > 1 or left_out:
        results = f"; {plural(left_out, 'file')} csr wrote left out" if left_out else ""
        click.echo(f"{counts['ok']} retouched, {counts['skipped']} skipped, {counts['failed']} failed{results}",
                   err=True)
    return counts["failed"]
