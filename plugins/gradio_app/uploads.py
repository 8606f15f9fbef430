"""What the web app lets into its upload folder: photos and .zip archives only, within a total cap.

Gradio stores every file POSTed to its upload route before any component sees it. ``UploadGuard`` (an
ASGI middleware) refuses an upload that would take the app's stored uploads past ``Limits.max_total_mb``
before a byte is stored (from its Content-Length), and deletes at once, with a 415, any stored file that
is not a photo or a .zip by its name and first bytes. Gradio deletes what remains after ``UPLOAD_TTL_S``.
Every upload component of the app shares these caps (``Limits``).
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

from PIL import UnidentifiedImageError

from csr_core import camera
from csr_core.image_io import SUPPORTED_EXTENSIONS
from csr_core.pillow import pil_image

from .service import Limits

#: Uploads (and results) older than this are deleted, checked every UPLOAD_TTL_S / 3 seconds.
UPLOAD_TTL_S = 1800
ACCEPTED = (*SUPPORTED_EXTENSIONS, ".zip")


def is_photo_or_zip(path: Path) -> bool:
    """A file named as a photo that starts like one (Pillow's header check or a camera format), or a zip."""
    suffix = path.suffix.lower()
    if suffix not in ACCEPTED:
        return False
    if suffix == ".zip":
        return zipfile.is_zipfile(path)
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if camera.sniff(head, path.name):
        return True
    try:
        with pil_image().open(path) as im:
            return bool(im.format)
    except (UnidentifiedImageError, OSError, ValueError):
        return False


class UploadGuard:
    """ASGI middleware on Gradio's upload route (see the module docstring); ``stored()`` is the set of
    paths the app holds as uploads (Gradio's ``Blocks.upload_file_set``)."""

    def __init__(self, app, limits: Limits, stored):
        self.app, self.limits, self.stored = app, limits, stored

    def used(self) -> int:
        total = 0
        for p in list(self.stored()):
            try:
                total += Path(p).stat().st_size
            except OSError:
                self.stored().discard(p)
        return total

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].endswith("/upload"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        try:
            length = int(headers[b"content-length"])
        except (KeyError, ValueError):
            return await _reply(send, 411, "uploads must state their size (Content-Length)")
        cap = int(self.limits.max_total_mb * 2**20)
        if self.used() + length > cap:
            return await _reply(send, 413, f"the app holds the most uploads it keeps ({self.limits.max_total_mb:g} MB "
                                           "in all); try again later")
        held: list[dict] = []

        async def hold(message):  # the reply (a short JSON list of stored paths) is checked before it goes
            held.append(message)

        await self.app(scope, receive, hold)
        start = held[0] if held else {}
        if start.get("status") != 200:
            for message in held:
                await send(message)
            return
        body = b"".join(m.get("body", b"") for m in held[1:])
        try:
            paths = [Path(p) for p in json.loads(body)]
        except (ValueError, TypeError):
            paths = []
        refused = [p for p in paths if not is_photo_or_zip(p)]
        if refused:
            for p in paths:  # the whole request is refused: none of its files stays
                p.unlink(missing_ok=True)
                self.stored().discard(str(p))
            return await _reply(send, 415, f"{refused[0].name}: not a photo or a .zip; upload "
                                           f"{', '.join(SUPPORTED_EXTENSIONS)} files or a .zip of them")
        for message in held:
            await send(message)


async def _reply(send, status: int, text: str) -> None:
    body = text.encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
