"""The ``csr`` command: retouch photos with CSRNet styles from the shell."""
from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys

import click

import csr_core
from csr_core import __version__, native_stderr

from .common import quiet_warnings, usage_line

#: One module per command in this package, each defining ``command`` (a click command or group).
COMMANDS = ("retouch", "styles", "train", "app", "gimp", "finetune", "eval", "export_lut", "export_onnx")
#: The usage error click raises to show a group's help when it is called without a command (click 8.2+).
_HELP_INSTEAD = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Commands(click.Group):
    """Each command's module is imported only when that command is used (or listed by ``csr --help``),
    so ``csr --version`` and ``csr CMD --help`` start without the image and numeric libraries."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(m.replace("_", "-") for m in COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = name.replace("-", "_")
        if module not in COMMANDS:
            return None
        return importlib.import_module(f".{module}", __package__).command

    # A usage error anywhere on the command line (parsed here, or in a command's or sub-command's context,
    # which this group's invoke makes) is one ``csr: error:`` line, exit 2, not click's usage block.
    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        typed = list(args)  # click's parser consumes the list it is given
        with _one_line_usage_errors(typed):
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta["csr.args"] = typed
        return ctx

    def invoke(self, ctx: click.Context):
        with _one_line_usage_errors(ctx.meta.get("csr.args", [])):
            return super().invoke(ctx)


@contextlib.contextmanager
def _one_line_usage_errors(args: list[str]):
    """Re-raise a click usage error as common.usage_line's one line (a bare group's help stays)."""
    try:
        yield
    except click.UsageError as exc:
        if isinstance(exc, _HELP_INSTEAD):
            raise
        raise usage_line(exc, args) from None


EPILOG = """\b
Examples:
  csr retouch photo.jpg -o photo_out.jpg             # default style 'auto'
  csr retouch shoot/ -o edited/ --style C --strength 0.8
  cat in.jpg | csr retouch - -o - --format png > out.png
  csr styles list
"""


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@click.version_option(__version__, "-V", "--version", prog_name="csr")
def cli() -> None:
    """Automatic global photo retouching with CSRNet (exposure, white balance, contrast, colour)."""



def main() -> None:
    # csr spreads its work over its own threads with BLAS on one (csr_core.threads): OpenBLAS's own pool,
    # started when numpy is first imported, would only cost start-up time (a user's setting is kept)
    if "numpy" not in sys.modules and os.environ.setdefault("OPENBLAS_NUM_THREADS", "1") == "1":
        csr_core.BLAS_STARTED_SERIAL = True
    quiet_warnings()
    native_stderr.divert_python_stderr()  # LibRaw's own lines then stay out of csr's output
    try:
        cli(prog_name="csr")
    finally:
        gc.freeze()  # the process ends here: its final garbage collection over every object is spared


if __name__ == "__main__":
    main()
