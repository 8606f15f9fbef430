"""Who may use the web app: Gradio's own login, with credentials from a file or an environment variable.

A password is never a command-line argument (other users of the machine see those in ``ps``). The file
(``csr app --auth-file PATH``) and ``CSR_APP_AUTH`` hold one ``user:password`` per line (a password may
contain ':'); blank lines and lines starting with '#' are skipped.
"""
from __future__ import annotations

import ipaddress
import os
import stat
import warnings
from pathlib import Path

from csr_core.errors import CsrError

ENV = "CSR_APP_AUTH"
MAX_FILE_BYTES = 64 << 10


def parse(text: str, where: str) -> list[tuple[str, str]]:
    """[(user, password), ...] from ``user:password`` lines; CsrError naming ``where`` if none or malformed."""
    pairs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise CsrError(f"{where}, line {number}: expected user:password")
        pairs.append((user.strip(), password))
    if not pairs:
        raise CsrError(f"{where}: no user:password line")
    return pairs


def credentials(file: str | os.PathLike | None = None) -> list[tuple[str, str]] | None:
    """The logins from ``file``, else from $CSR_APP_AUTH, else None (no login)."""
    if file is None:
        text = os.environ.get(ENV)
        return parse(text, f"environment variable {ENV}") if text else None
    path = Path(file)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE_BYTES:
            raise CsrError(f"{path}: not a login file (a small text file of user:password lines)")
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CsrError(f"{path}: cannot read the login file ({getattr(exc, 'strerror', None) or exc})") from None
    if st.st_mode & 0o077:
        warnings.warn(f"{path}: other users of this machine can read this login file (chmod 600 {path})")
    return parse(text, str(path))


def is_loopback(host: str) -> bool:
    """Whether ``host`` serves this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
