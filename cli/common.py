"""Shared CLI plumbing: one-line errors, exit codes, the shared registry.

Exit status of every csr command (each error is one ``csr: error:`` line on stderr, never a traceback):

- 0 (EXIT_OK): done.
- 1 (EXIT_FAILED): the command is well formed but csr could not do it with the files and styles it found:
  a file it reads that is missing, unreadable, damaged or a folder (a photo, a checkpoint, a login file, a
  style's card or weights); a name another style has; a style that is built in or that other styles run on;
  a folder it cannot write; a question answered no; in a batch, any photo that failed (each is named).
- 2 (EXIT_USAGE): a usage error, the command line is wrong as typed: an unknown command or option, a missing
  argument, a value out of range, options that exclude each other, a style name that is invalid or that no
  style has (``csr_core.errors.UsageError``), a --style that retouch or an export cannot load (nothing is
  done), an output or folder option of the wrong kind (a file named as a folder; --pairs, --photos or
  --finished naming no folder), a question (``csr styles remove`` without -y) with no terminal to ask it.
- 130 (EXIT_INTERRUPTED): interrupted (Ctrl-C).
"""
from __future__ import annotations

import functools
import math
import os
import sys
import warnings

import click

from csr_core import COND_SIZES, DEVICES, MAX_STRENGTH
from csr_core.errors import CsrError, UsageError, printable

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class FiniteFloatRange(click.FloatRange):
    """A click.FloatRange that also refuses nan and inf (nan passes every range check), and calls its
    values numbers in its errors (click's own word is 'float range')."""

    name = "number"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


class WholeNumber(click.IntRange):
    """A click.IntRange that takes 50e6 as well as 50000000, and calls its values whole numbers in its
    errors (click's own word is 'integer range')."""

    name = "whole number"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and "e" in value.lower():
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if math.isfinite(number) and number.is_integer():
                value = int(number)
        return super().convert(value, param, ctx)


# Options several commands share: one definition each, so they read and behave the same everywhere.
style_option = click.option("-s", "--style", default="auto", show_default=True,
                            help="Style name or a mix like 'C:0.7,auto:0.3' (see: csr styles list).")
strength_option = click.option("--strength", type=FiniteFloatRange(0, MAX_STRENGTH), default=1.0,
                               show_default=True, help="0 = unchanged, 1 = full style, up to 2 = exaggerated.")
device_option = click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True,
                             help="Where the network runs: cpu, or through PyTorch (the train extra) cuda, "
                                  "mps or auto (the best available).")


class _Expert(click.Choice):
    """One of FiveK's experts A-E, in any case; help and errors name them in capitals, as FiveK does (click
    names the choices of a case-insensitive option in lower case)."""

    def normalize_choice(self, choice, ctx) -> str:
        return super().normalize_choice(choice, ctx).upper()


def expert_option(help: str):
    """--expert, the FiveK expert folder."""
    return click.option("--expert", type=_Expert(list("ABCDE"), case_sensitive=False), help=help)


overwrite_style_option = click.option("--overwrite", is_flag=True, help="Replace an existing user style of that name.")
cond_size_option = click.option("--cond-size", type=WholeNumber(*COND_SIZES), default=256, show_default=True,
                                help="Long side, in pixels, of the small copy of each photo the style studies "
                                     "to choose its adjustments.")


def say(kind: str, message: str, newline_first: bool = False) -> None:
    """Print ``csr: KIND: message`` on stderr, control characters escaped (a file name holding a
    newline or a terminal escape can neither forge a line nor drive the terminal)."""
    click.echo(f"{chr(10) if newline_first else ''}csr: {kind}: {printable(message)}", err=True)


def fail(message: str, code: int = EXIT_FAILED) -> None:
    """Print ``csr: error: message`` on stderr and exit with ``code``."""
    say("error", message)
    sys.exit(code)


#: Most bytes read from stdin: a photo's file is smaller than its pixels, which the image size limit caps.
MAX_STDIN_BYTES = 1 << 30


def read_stdin() -> bytes:
    """All of stdin, at most MAX_STDIN_BYTES (one read: the bytes object is never copied or regrown)."""
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        fail(f"<stdin>: more than {MAX_STDIN_BYTES >> 20:,} MB; save a larger photo to a file and name the file "
             "instead")
    return data


class UsageLine(click.ClickException):
    """A click usage error (a bad option value, an unknown option, a missing argument) shown as csr shows
    every error: one ``csr: error:`` line, exit 2."""

    exit_code = EXIT_USAGE

    def show(self, file=None) -> None:
        say("error", self.message)


def usage_line(exc: click.UsageError, args: list[str]) -> UsageLine:
    """``exc`` as one lower-case line; an unknown option that is a file name (``-dash.jpg``, among the
    command line's ``args``) gets the hint that ``--`` ends the options."""
    message = exc.format_message().rstrip(".")
    if isinstance(exc, click.NoSuchOption):
        name = next((a for a in args if a.startswith(exc.option_name) and ("." in a or "/" in a)), None)
        if name is not None:
            message += f"; for the file '{name}', write ./{name}, or put -- before it (after every option)"
    return UsageLine(message[:1].lower() + message[1:])


def handle_errors(fn):
    """Turn CsrError into one line + exit 1 (a UsageError, such as an unknown style name: exit 2), Ctrl-C into
    exit 130; never a traceback for user errors (the exit codes: this module's docstring)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            fail(str(exc), EXIT_USAGE)
        except CsrError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            fail("interrupted", EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # a bug, not a user error: still one line unless CSR_DEBUG=1
            if os.environ.get("CSR_DEBUG") == "1":
                raise
            fail(f"unexpected error ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                 "rerun with CSR_DEBUG=1 for details")

    return wrapper


def _show_warning(message, category, filename, lineno, file=None, line=None):
    say("warning", str(message))


def quiet_warnings() -> None:
    """Show Python warnings as one ``csr: warning:`` line each (no source paths)."""
    if os.environ.get("CSR_DEBUG") != "1":
        warnings.showwarning = _show_warning


def plural(n: int, word: str) -> str:
    """'1 pair', '3 pairs'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def read_photos(folder, what: str, read) -> list:
    """Read the photos in ``folder`` with ``read()`` (-> photos, notes), saying so first (it may take a while),
    then each note and how many ``what`` ('finished photo', 'photo') were read."""
    click.echo(f"reading the {what}s in {folder}", err=True)
    photos, notes = read()
    for line in notes:
        say("warning", line)
    click.echo(f"{plural(len(photos), what)} in {folder}", err=True)
    return photos


def read_pairs(folder, expert: str | None, max_side: int, loose: list | None = None) -> tuple[list, list, str]:
    """(the pairs found in ``folder``; those that can be read, as ``csr_core.pairs.LoadedPair``; the folder's
    name), naming each file or pair left out and saying how many pairs were read; ``loose`` receives the
    photos beside its before/ and after/ folders (``csr_core.pairs.discover_pairs``)."""
    from csr_core.evaluate import resolve_pairs
    from csr_core.pairs import load_pairs

    found, problems, source = resolve_pairs(folder, expert, loose=loose)
    for line in problems:
        say("skipped", line)
    skipped: list[str] = []
    loaded = list(load_pairs(found, max_side, skipped))
    for line in skipped:
        say("skipped", line)
    click.echo(f"{plural(len(loaded), 'pair')} in {folder}", err=True)
    return found, loaded, source


def warn_if_worse_than_nothing(psnr: float, nothing: float, where: str, hint: str) -> None:
    """A loud warning, with the numbers, when a new style scores below leaving the photos alone."""
    if psnr < nothing:
        click.echo(f"csr: warning: the new style scores {psnr:.2f} dB on the {where} pairs, worse than doing "
                   f"nothing ({nothing:.2f} dB); {hint}", err=True)


def registry():
    from csr_core.pipeline import default_registry

    return default_registry()
