"""Shared CLI plumbing: one-line errors, exit codes, the shared registry."""
from __future__ import annotations

import functools
import sys

import click

from csr_core.errors import CsrError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def fail(message: str, code: int = EXIT_FAILED) -> None:
    """Print ``csr: error: message`` on stderr and exit with ``code``."""
    click.echo(f"csr: error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn):
    """Turn CsrError into one line + exit 1, Ctrl-C into exit 130; never a traceback for user errors."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CsrError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)

    return wrapper


def registry():
    from csr_core.pipeline import default_registry

    return default_registry()
