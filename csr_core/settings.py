"""Numeric settings read from environment variables, checked one way for every front end."""
from __future__ import annotations

import math
import os

from .errors import CsrError


def env_number(name: str, default: float, what: str, example: str, *, count: bool = False) -> float:
    """The number in environment variable ``name`` (unset or empty: ``default``): a finite number above 0,
    or with ``count`` one of at least 1, truncated to an int. Anything else is one error line saying what
    the variable takes (``what``, then ``example``)."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isfinite(value) and (value >= 1 if count else value > 0):
        return int(value) if count else value
    raise CsrError(f"environment variable {name}={text!r}: expected {what}, a number such as {example}")
