"""User-facing errors: each carries one clear line naming what went wrong."""


def printable(text: str) -> str:
    """``text`` with every non-printable character (newline, ESC, bidi controls, undecodable bytes of a
    file name) written as its Python escape: safe to show on a terminal as one line."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in str(text))


class CsrError(Exception):
    """Base class for every error csr reports to a user (one line, no traceback)."""


class ImageError(CsrError):
    """An image could not be read, decoded or written."""


class StyleError(CsrError):
    """A style is unknown, invalid, tampered with or cannot be saved."""


class UnknownStyleError(StyleError):
    """No style has that name (a usage error: the CLI exits 2, as for a bad option)."""


class StyleExistsError(StyleError):
    """A new style's name is already taken by a user style."""


class PairsError(CsrError):
    """Training pairs could not be discovered or read."""
