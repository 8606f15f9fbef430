"""Keep LibRaw's own stderr lines out of the csr command's output.

LibRaw reports damaged data by printing to file descriptor 2 itself ("unknown file: Unexpected end
of file", "data corrupted at N"), and rawpy offers no way to install LibRaw's data-error callback;
csr then says the same in its one error line. So a process that opts in (``divert_python_stderr``,
called by the csr command) first moves Python's ``sys.stderr`` onto a duplicate of fd 2, which its
messages, progress bar and warnings use from then on; ``libraw_quiet`` then points fd 2 itself at a
temporary file while LibRaw runs. Windows of concurrent threads share one capture (counted under a
lock, so decodes still overlap); when the last one ends, fd 2 is restored and whatever other native
code printed meanwhile is passed on, LibRaw's known lines dropped. A process that does not opt in
(a program importing csr_core, the web app started on its own) is left alone: fd 2 belongs to it.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading

#: LibRaw's default data and memory callbacks (libraw_datastream.cpp, libraw_alloc.h).
_LIBRAW_LINE = re.compile(rb"[^\n]*: (Unexpected end of file|data corrupted at -?\d+|Out of memory in [^\n]*)\n?")

_lock = threading.Lock()
_state = {"diverted": False, "users": 0, "saved": -1, "sink": None}


def divert_python_stderr() -> None:
    """Point ``sys.stderr`` at a duplicate of fd 2, so that ``libraw_quiet`` may borrow fd 2 itself."""
    with _lock:
        if _state["diverted"]:
            return
        old = sys.stderr
        try:
            old.flush()
            fd = os.dup(old.fileno())
        except (AttributeError, OSError, ValueError):  # no stderr, or not a file (io.UnsupportedOperation)
            return
        sys.stderr = open(fd, "w", buffering=1, encoding=old.encoding, errors=old.errors)
        _state["diverted"] = True


@contextlib.contextmanager
def libraw_quiet():
    """While LibRaw runs, capture fd 2 (only in a process that called ``divert_python_stderr``)."""
    if not _state["diverted"]:
        yield
        return
    with _lock:
        if _state["users"] == 0:
            import tempfile  # here: the csr command imports this module at start

            sink = tempfile.TemporaryFile()
            _state["saved"], _state["sink"] = os.dup(2), sink
            os.dup2(sink.fileno(), 2)
        _state["users"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["users"] -= 1
            if _state["users"] == 0:
                os.dup2(_state["saved"], 2)
                os.close(_state["saved"])
                sink = _state["sink"]
                sink.seek(0)
                others = _LIBRAW_LINE.sub(b"", sink.read())
                sink.close()
                while others:
                    others = others[os.write(2, others):]
