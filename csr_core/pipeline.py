"""One photo in, one retouched photo out: the job every front end runs."""
from __future__ import annotations

import io
import os
from typing import BinaryIO

import numpy as np

from .image_io import Photo, format_for_path, load_photo, save_photo
from .inference import Look, retouch_array
from .registry import DEFAULT_STYLE, Registry
from .storage import Url

_registry: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry (built-in + user styles); models are cached inside it."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry


def retouch(rgb: np.ndarray, style: str | Look = DEFAULT_STYLE, strength: float = 1.0,
            device: str = "cpu", registry: Registry | None = None, exact: bool = False) -> np.ndarray:
    """Retouch HxWx3 sRGB pixels (uint8 / uint16 / float32) with a style name, a mix or a Look.

    ``exact`` runs the network on every pixel instead of through the baked LUT (see retouch_array).
    """
    look = style if isinstance(style, Look) else (registry or default_registry()).look(style)
    return retouch_array(rgb, look, strength, device, exact=exact)


def retouch_photo(photo: Photo, style: str | Look = DEFAULT_STYLE, strength: float = 1.0,
                  device: str = "cpu", registry: Registry | None = None, exact: bool = False) -> np.ndarray:
    """The retouched pixels of a loaded photo (alpha and metadata stay on the Photo)."""
    return retouch(photo.rgb, style, strength, device, registry, exact=exact)


def retouch_file(src: str | os.PathLike | bytes | BinaryIO | Url | Photo, dest: str | os.PathLike | BinaryIO | Url, *,
                 style: str | Look = DEFAULT_STYLE, strength: float = 1.0, quality: int = 95,
                 fmt: str | None = None, device: str = "cpu", registry: Registry | None = None,
                 exact: bool = False, max_pixels: int | None = None) -> None:
    """Load, retouch and save one photo (atomically, metadata and alpha kept; the style and strength
    are recorded in the output's XMP).

    The decoded pixels are retouched in place (they are not needed again), which saves a full-size
    buffer. ``max_pixels`` lowers the decompression-bomb limit (checked from the header, before decoding).
    ``src`` and ``dest`` may be store URLs (:class:`csr_core.storage.Url`): the same bytes, one upload.
    ``src`` may also be a Photo already loaded (with the default limit) from the file.
    """
    limit = {} if max_pixels is None else {"max_pixels": max_pixels}
    if isinstance(src, Photo):
        photo = src
    elif isinstance(src, Url):
        photo = load_photo(src.read_bytes(), name=str(src), **limit)
    else:
        photo = load_photo(src, **limit)
    look = style if isinstance(style, Look) else (registry or default_registry()).look(style)
    pixels = photo.rgb
    rgb = retouch_array(pixels, look, strength, device, exact, out=pixels if pixels.flags.writeable else None)
    made = {"style": look.name, "strength": f"{strength:g}"}
    if isinstance(dest, Url):
        encoded = io.BytesIO()
        encoded.name = str(dest)  # named in messages
        save_photo(photo, rgb, encoded, fmt=fmt or format_for_path(dest.name), quality=quality, made=made)
        dest.write_bytes(encoded.getvalue())
    else:
        save_photo(photo, rgb, dest, fmt=fmt, quality=quality, made=made)
