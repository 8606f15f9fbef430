"""Atomic file writes: a temp file in the target folder, fsync, then rename."""
from __future__ import annotations

import contextlib
import errno
import glob
import io
import os
from pathlib import Path
from typing import IO, BinaryIO, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", replace: bool = True) -> Iterator[IO]:
    """Open a temp file beside ``path`` (creating its folder); on success it replaces ``path`` in one rename.

    A new file gets the permissions any new file gets (0o666 less the umask); a replaced one keeps its own.
    With ``replace=False`` it becomes ``path`` only if no file of that name exists (one hard link, which
    fails with FileExistsError otherwise): of two writers racing for a new name, exactly one wins.
    On any exception (or KeyboardInterrupt) the temp file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # only now: a failed job leaves no empty folders
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            with contextlib.suppress(OSError):  # nothing to replace (or nothing we may see): a new file's mode
                os.chmod(tmp, os.stat(path).st_mode & 0o777)
            os.replace(tmp, path)
        else:
            _create_from(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _create_temp(path: Path) -> tuple[int, str]:
    """A new, empty temp file ``.NAME.XXXXXXXX.part`` beside ``path``: (descriptor, name). It is created
    with mode 0o666, which the system narrows by the umask (and a folder's default ACL), as for any new file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    prefix = os.path.join(path.parent, f".{_short(path.name)}.")
    for _ in range(100):
        tmp = f"{prefix}{os.urandom(4).hex()}.part"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


def _create_from(tmp: str, path: Path) -> None:
    """Give ``tmp`` the name ``path`` unless that exists (FileExistsError). A file system without hard
    links falls back to claiming the name with an exclusive create, then renaming over the claim."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise
    except OSError:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(tmp, path)
        return
    os.unlink(tmp)


#: Bytes a temporary name adds to the target's name: "." + "." + 8 random characters + ".part".
_TEMP_EXTRA = 15


def _short(name: str, limit: int = 255) -> str:
    """``name`` cut (at a character boundary) so that its temporary name fits ``limit`` bytes, the
    usual file-name limit: a target name that fits must never fail for its temporary name's sake."""
    raw = os.fsencode(name)
    if len(raw) + _TEMP_EXTRA <= limit:
        return name
    return os.fsdecode(raw[:limit - _TEMP_EXTRA].decode("utf-8", "ignore").encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)


class StreamWriter:
    """A binary stream (stdout) that is written in full or raises OSError: short writes (a full disk,
    a file-size limit) are retried until the OS says why it cannot take more."""

    def __init__(self, stream: IO, name: str = "<stdout>"):
        self.stream, self.name = stream, name

    def write(self, data: bytes) -> int:
        view = memoryview(data).cast("B")
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            fd = None
        if fd is None:  # not backed by a file descriptor (a test runner's buffer)
            out: BinaryIO = getattr(self.stream, "buffer", self.stream)
            written = out.write(bytes(view))
            out.flush()
            if written is not None and written != len(view):
                raise OSError(errno.EIO, f"short write ({written} of {len(view)} bytes)")
            return len(view)
        self.stream.flush()  # whatever Python buffered goes first
        total = len(view)
        while view:
            n = os.write(fd, view)
            if n <= 0:
                raise OSError(errno.EIO, f"short write ({total - len(view)} of {total} bytes)")
            view = view[n:]
        return total


def remove_partials(path: str | os.PathLike) -> None:
    """Remove the temp files that writers of ``path`` killed mid-write left beside it (never ``path``)."""
    path = Path(path)
    pattern = f".{glob.escape(_short(path.name))}.{'?' * 8}.part"  # _create_temp's names
    for tmp in path.parent.glob(pattern):
        with contextlib.suppress(OSError):
            tmp.unlink()
