"""User-facing errors: each carries one clear line naming what went wrong."""


def printable(text: str) -> str:
    """``text`` with every non-printable character (newline, ESC, bidi controls, undecodable bytes of a
    file name) written as its Python escape: safe to show on a terminal as one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in str(text))


class CsrError(Exception):
    """Base class for every error csr reports to a user (one line, no traceback)."""


class UsageError(CsrError):
    """The command asks for something that cannot be done as given (the CLI exits 2, as for a bad option)."""


class ImageError(CsrError):
    """An image could not be read, decoded or written."""


class StyleError(CsrError):
    """A style is unknown, invalid, tampered with or cannot be saved."""


class UnknownStyleError(StyleError, UsageError):
    """No style has that name (a usage error)."""


class InvalidNameError(StyleError, UsageError):
    """A style name that no style can have (a usage error)."""


class StyleExistsError(StyleError):
    """A new style's name is already taken by a user style."""


class PairsError(CsrError):
    """Training pairs could not be discovered or read."""


class ClusterError(CsrError):
    """A cluster cannot be reached or used (no workers, a version mismatch)."""


class StorageError(CsrError):
    """A store (s3://, gs://...) refuses a request, or its bucket is missing."""


class MissingExtra(CsrError):
    """An optional dependency (PyTorch, ONNX, Gradio) is not installed; the message says how to get it."""


#: The distribution name users install, the one place it is spelled: every install hint is built from it
#: (``install_command``). The PyPI project named csr is unrelated; the command is ``csr``, the import
#: packages csr_core, csr_cli, csr_plugins.
DISTRIBUTION = "csr-retouch"
#: What each optional feature needs: extra -> (module to import, what it brings).
EXTRAS = {"train": ("torch", "PyTorch"), "onnx": ("onnx", "ONNX"), "app": ("gradio", "Gradio"),
          "cluster": ("distributed", "Dask distributed")}


def install_command(extra: str, version: str | None = None) -> str:
    """The exact command that installs an extra, e.g. ``pip install "csr-retouch[train]"`` (with
    ``version``: ``pip install "csr-retouch[cluster]==0.1.0"``)."""
    return f'pip install "{DISTRIBUTION}[{extra}]{"==" + version if version else ""}"'


def require(extra: str, what: str):
    """Import and return the module behind ``extra``, or raise MissingExtra: '<what> needs PyTorch:
    pip install "csr-retouch[train]"'."""
    import importlib

    module, name = EXTRAS[extra]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{what} needs {name}, which is not installed: {install_command(extra)}") from None
