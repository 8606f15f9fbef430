"""A folder of photos read for training: finished photos (a portfolio, an exported album) for
``csr finetune --finished``, good photos for ``csr train --photos``.

Photos are read with the loader of ``csr retouch`` (every format, orientation, colour profile and size
limit it knows), converted to sRGB and shrunk to a small long side. A folder of many files costs bounded
time and memory: at most ``limit`` photos are read (an even, deterministic sample of the sorted names
when there are more) and at most ``limit * 4`` files are tried; a file that cannot be read, a photo
smaller than MIN_SIDE and a second copy of a photo (the same pixels) are skipped.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .errors import ImageError, PairsError, printable
from .image_io import SUPPORTED_EXTENSIONS, load_photo, to_float
from .metrics import to_uint8
from .pairs import pixels_key, shrink

__all__ = ["MIN_SIDE", "load_finished", "read_photos"]

#: Fewest pixels on each side of a photo worth learning from (a thumbnail or an icon teaches nothing).
MIN_SIDE = 16


def _candidates(folder: Path, cap: int, exclude: frozenset[Path] = frozenset()) -> tuple[list[Path], int]:
    """Image-named files under ``folder`` (recursive, hidden ones and the resolved paths ``exclude`` skipped):
    at most ``cap`` of them, spread evenly over the sorted list, and how many there were in all."""
    found = []
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(top, n) for n in names if not n.startswith(".") and Path(n).suffix.lower() in SUPPORTED_EXTENSIONS]
    if exclude:
        found = [p for p in found if p.resolve() not in exclude]
    found.sort()
    if len(found) <= cap:
        return found, len(found)
    pick = np.linspace(0, len(found) - 1, cap).round().astype(int)
    return [found[i] for i in pick], len(found)


def read_photos(folder: Path, convert: Callable[[np.ndarray], np.ndarray], limit: int, what: str = "photos",
                exclude: frozenset[Path] = frozenset()) -> tuple[list[np.ndarray], list[str], int]:
    """(``convert`` of each readable photo under ``folder`` as float H x W x 3 sRGB, in name order: at most
    ``limit``; problem lines naming files by their path inside ``folder``; how many image files there are).
    ``what`` names the photos in those lines; the resolved paths ``exclude`` are left out."""
    paths, total = _candidates(folder, limit * 4, exclude)
    sample = set(np.linspace(0, len(paths) - 1, min(limit, len(paths))).round().astype(int).tolist())
    order = sorted(range(len(paths)), key=lambda i: i not in sample)  # the rest stand in for unreadable files
    read, problems, unreadable, seen, copies = {}, [], 0, {}, []
    for i in order:
        if len(read) >= limit:
            break
        p = paths[i]
        name = printable(p.relative_to(folder).as_posix())
        try:
            rgb = load_photo(p).rgb
        except ImageError as exc:
            unreadable += 1
            if len(problems) < 5:
                why = str(exc).removeprefix(str(p)).removeprefix(":").strip()
                problems.append(f"skipped {name}: {printable(why)}")
            continue
        if min(rgb.shape[:2]) < MIN_SIDE:
            unreadable += 1
            if len(problems) < 5:
                problems.append(f"skipped {name}: {rgb.shape[1]}x{rgb.shape[0]} pixels, too small to learn from "
                                f"(at least {MIN_SIDE} on each side)")
            continue
        key = pixels_key(rgb)
        if key in seen:
            copies.append(f"{name} (= {seen[key]})")
            continue
        seen[key] = name
        read[i] = convert(to_float(rgb))
    photos = [read[i] for i in sorted(read)]
    if unreadable > len(problems):
        problems.append(f"skipped {unreadable} unreadable or too small files in all")
    if copies:
        more = f" and {len(copies) - 5} more" if len(copies) > 5 else ""
        problems.append(f"left out {len(copies)} {'copy' if len(copies) == 1 else 'copies'} of a photo already read "
                        f"(the same pixels; each photo counts once): {', '.join(copies[:5])}{more}")
    if total > limit:
        problems.append(f"used {len(photos)} of the {total} {what} (an even sample by name)")
    return photos, problems, total


def load_finished(folder: str | os.PathLike, max_side: int = 256, limit: int = 400,
                  befores: Iterable[Path] = ()) -> tuple[list[np.ndarray], list[str]]:
    """(finished photos as uint8 H x W x 3 with long side at most ``max_side``, problem lines naming files
    by their path inside ``folder``). ``befores``: the pairs' 'before' photos, never taken as finished ones
    (a folder that holds the pairs).

    Raises PairsError when the folder holds no readable photo.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PairsError(f"{printable(folder)}: not a folder of finished photos")
    befores = frozenset(Path(p).resolve() for p in befores)
    inside = sum(1 for p in befores if p.is_relative_to(folder.resolve()))
    photos, problems, total = read_photos(folder, lambda rgb: to_uint8(shrink(rgb, max_side)), limit,
                                          "finished photos", befores)
    if inside:
        problems.insert(0, f"left out the pairs' {inside} 'before' photos: they are not finished")
    if not photos:
        first = f" (the first: {problems[0].removeprefix('skipped ')})" if problems else ""
        raise PairsError(f"{printable(folder)}: no readable photo among {total} image files{first}" if total else
                         f"{printable(folder)}: no photos found (JPEG, PNG, TIFF, WebP, HEIC, ...)")
    return photos, problems
