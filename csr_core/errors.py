"""User-facing errors: each carries one clear line naming what went wrong."""


class CsrError(Exception):
    """Base class for every error csr reports to a user (one line, no traceback)."""


class ImageError(CsrError):
    """An image could not be read, decoded or written."""


class StyleError(CsrError):
    """A style is unknown, invalid, tampered with or cannot be saved."""


class PairsError(CsrError):
    """Training pairs could not be discovered or read."""
