"""What the web app does, without any Gradio: limits, previews, full-size renders, the style table.

Everything here raises ``CsrError`` subclasses with one line; ``app.py`` turns them into ``gr.Error``.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from csr_core import SAMPLE_PHOTOS, data_dir
from csr_core.errors import CsrError, ImageError, StyleError
from csr_core.fsutil import write_bytes_atomic
from csr_core.image_io import SUPPORTED_EXTENSIONS, from_float, load_photo, output_extension, to_float
from csr_core.inference import MAX_STRENGTH
from csr_core.pipeline import retouch, retouch_file
from csr_core.registry import Registry, mix_spec, score_summary
from csr_core.settings import env_number

NO_MIX = "(none)"
RENDER_TTL_S, SHOWN_TTL_S = 3600, 600  # how long full-size results and shown previews stay in Service.out_dir


@dataclass(frozen=True)
class Limits:
    """Caps on what one request may ask for (CLI flags, else CSR_APP_* environment variables)."""

    max_mb: float = 100.0             # per uploaded file (Gradio's max_file_size, re-checked here)
    max_total_mb: float = 500.0       # all uploads the app holds at once (uploads.UploadGuard)
    max_pixels: int = 50_000_000      # per photo, checked from the header before decoding
    preview_side: int = 1024          # long side of the interactive preview
    max_files: int = 400              # files in one teaching upload (zip members included)
    max_unzipped_mb: float = 2048.0   # total extracted from teaching zips
    concurrency: int = 2              # retouch requests running at once

    @classmethod
    def from_env(cls, **overrides) -> "Limits":
        env = dict(max_mb=env_number("CSR_APP_MAX_MB", cls.max_mb, "the largest upload in MB", "50"),
                   max_total_mb=env_number("CSR_APP_MAX_TOTAL_MB", cls.max_total_mb,
                                           "the most MB of uploads held at once", "500"),
                   max_pixels=env_number("CSR_APP_MAX_PIXELS", cls.max_pixels, "the largest photo in pixels",
                                         "50000000 or 50e6", count=True),
                   preview_side=env_number("CSR_APP_PREVIEW_SIDE", cls.preview_side,
                                           "the preview's long side in pixels", "1024", count=True),
                   concurrency=env_number("CSR_APP_CONCURRENCY", cls.concurrency,
                                          "how many retouches run at once", "2", count=True))
        return cls(**{**env, **{k: v for k, v in overrides.items() if v is not None}})

    @property
    def max_bytes(self) -> int:
        return int(self.max_mb * 1024 * 1024)


def check_upload(path: str | os.PathLike, limits: Limits) -> Path:
    """An uploaded file that exists, has a supported extension and fits the size cap."""
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        raise ImageError(f"{path.name}: unsupported file type; upload {', '.join(SUPPORTED_EXTENSIONS)}")
    try:
        size = path.stat().st_size
    except OSError:
        raise ImageError(f"{path.name}: upload is missing; upload it again") from None
    if size > limits.max_bytes:
        raise ImageError(f"{path.name}: file is {size / 2**20:.1f} MB; the limit is {limits.max_mb:g} MB")
    return path


def check_pixels(path: Path, limits: Limits) -> tuple[int, int]:
    """(width, height) of a readable photo within the pixel cap (the core's header check, then a decode)."""
    h, w = load_photo(path, max_pixels=limits.max_pixels, name=path.name).rgb.shape[:2]
    return w, h


def style_spec(style: str | None, mix: str | None = None, weight: float = 0.0) -> str:
    """The registry spec for a style optionally mixed with a second one ('C:0.7,auto:0.3')."""
    if not style:
        raise StyleError("choose a style")
    return mix_spec(style, None if mix == NO_MIX else mix, weight)


def check_strength(strength: float) -> float:
    strength = float(strength)
    if not 0 <= strength <= MAX_STRENGTH:
        raise CsrError(f"strength must be between 0 and {MAX_STRENGTH:g}, got {strength:g}")
    return strength


@dataclass
class Loaded:
    """One session's photo: the downscaled float copy the previews are computed on."""

    key: tuple
    name: str
    size: tuple[int, int]         # full (width, height)
    preview: np.ndarray           # float32 HxWx3, long side <= preview_side
    before: np.ndarray            # uint8 copy of ``preview`` for display


def downscale(rgb: np.ndarray, side: int) -> np.ndarray:
    """float32 copy with long side <= ``side`` (area averaging; 8/16-bit photos are averaged in their own
    type, so no full-size float copy is made)."""
    import cv2

    h, w = rgb.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return np.ascontiguousarray(to_float(rgb), dtype=np.float32)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    x = rgb if rgb.dtype in (np.uint8, np.uint16) else to_float(rgb)
    return to_float(cv2.resize(x, size, interpolation=cv2.INTER_AREA))


def public(message: str) -> str:
    """An error as a remote user should read it: no folder of the server (a file is named by its name
    alone), no advice to set the server's environment variables (the app's own limits apply)."""
    for root in {tempfile.gettempdir(), os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()}:
        message = re.sub(re.escape(root.rstrip(os.sep)) + r"/(?:[^/:\n]*/)*", "", message)
    return re.sub(r"\s*\(set CSR_\w+ to raise it\)|; set CSR_\w+ to raise it", "", message)


READ_ONLY = ("this app serves the style registry read-only; restart it with 'csr app --allow-edits' "
             "to {what}")


def check_edits(allowed: bool, what: str) -> None:
    """StyleError unless the app was started with ``--allow-edits``."""
    if not allowed:
        raise StyleError(READ_ONLY.format(what=what))


class Service:
    """The app's operations on one registry, within ``limits``; the registry is read-only unless
    ``allow_edits`` (anyone who reaches the app could otherwise delete the user's styles)."""

    def __init__(self, registry: Registry, limits: Limits, device: str = "cpu", allow_edits: bool = False):
        self.registry, self.limits, self.device, self.allow_edits = registry, limits, device, allow_edits
        self._tmp = tempfile.TemporaryDirectory(prefix="csr-app-")  # removed at exit at the latest
        self.out_dir = Path(self._tmp.name)

    # -- retouching --------------------------------------------------------------------------
    def load(self, path: str, cached: Loaded | None = None) -> Loaded:
        """The photo's preview copy, reusing ``cached`` when it is the same upload."""
        p = check_upload(path, self.limits)
        st = p.stat()
        key = (str(p), st.st_size, st.st_mtime_ns, self.limits.preview_side)
        if cached is not None and cached.key == key:
            return cached
        photo = load_photo(p, max_pixels=self.limits.max_pixels, name=p.name)
        small = downscale(photo.rgb, self.limits.preview_side)
        h, w = photo.rgb.shape[:2]
        return Loaded(key, p.name, (w, h), small, from_float(small, np.uint8))

    def preview(self, loaded: Loaded, spec: str, strength: float) -> np.ndarray:
        """The retouched preview (uint8) of a loaded photo."""
        look = self.registry.look(spec)
        out = retouch(loaded.preview, look, check_strength(strength), self.device)
        return from_float(out, np.uint8)

    def render(self, path: str, spec: str, strength: float, quality: int = 95) -> Path:
        """The full-resolution result, written by ``retouch_file`` exactly as the CLI would."""
        src = check_upload(path, self.limits)
        self.registry.look(spec)  # an unknown style fails before anything is written
        self._prune()
        dest_dir = Path(tempfile.mkdtemp(dir=self.out_dir))
        dest = dest_dir / f"{src.stem}_retouched{output_extension(src)}"
        retouch_file(src, dest, style=spec, strength=check_strength(strength), quality=quality,
                     device=self.device, registry=self.registry, max_pixels=self.limits.max_pixels)
        return dest

    def shown(self, rgb: np.ndarray) -> str:
        """A PNG of the uint8 image ``rgb`` for the page to show, named by its pixels and written once: the
        same image (a photo's 'before', previewed again) is never rewritten while a browser fetches it."""
        import imagecodecs

        key = hashlib.sha256(repr(rgb.shape).encode() + np.ascontiguousarray(rgb).tobytes()).hexdigest()[:32]
        path = self.out_dir / f"shown-{key}.png"
        try:
            os.utime(path)  # shown again: kept from _prune
        except FileNotFoundError:
            self._prune()
            write_bytes_atomic(path, imagecodecs.png_encode(rgb, level=1))
        return str(path)

    def _prune(self) -> None:
        """Forget renders older than RENDER_TTL_S and shown previews older than SHOWN_TTL_S (Gradio keeps
        its own copy of each to serve)."""
        now = time.time()
        for p in self.out_dir.iterdir():
            try:
                if p.is_dir():
                    if now - p.stat().st_mtime > RENDER_TTL_S:
                        shutil.rmtree(p, ignore_errors=True)
                elif now - p.stat().st_mtime > SHOWN_TTL_S:
                    p.unlink()
            except OSError:
                pass

    def close(self) -> None:
        self._tmp.cleanup()

    # -- styles ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return self.registry.names()

    def table(self) -> list[list]:
        """One row per style: name, origin, kind, base, description, validation score."""
        rows = []
        for s in self.registry.styles():
            base = self.registry.base_name(s) if s.kind == "condition" else ""
            rows.append([s.name, "built-in" if s.builtin else "user", s.kind, base, s.description,
                         score_summary(s.card)])
        return rows

    def card(self, name: str) -> dict:
        s = self.registry.get(name)
        return {**s.card, "name": s.name, "origin": "built-in" if s.builtin else "user"}

    def delete(self, name: str) -> str:
        check_edits(self.allow_edits, "delete styles")
        if not name:
            raise StyleError("choose a style to delete")
        self.registry.remove(name)  # refuses built-ins with a StyleError
        return f"Deleted user style '{name}'."



def sample_photos() -> list[Path]:
    """The bundled sample photos (``csr_core.SAMPLE_PHOTOS``; a reader's own results beside them are not samples)."""
    folder = data_dir("samples")
    return [folder / name for name in SAMPLE_PHOTOS if (folder / name).is_file()]
