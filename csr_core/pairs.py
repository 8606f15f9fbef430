"""Discover and load before/after training pairs from a folder a user points at.

Accepted layouts (first that applies wins):
  (a) ``before/`` + ``after/`` sub-folders, files matched by stem;
  (b) one folder of ``X_input.*`` + ``X_target.*`` (or ``X_before.*`` + ``X_after.*``);
  (c) MIT-Adobe FiveK: ``input/`` (or ``original/``) + ``expertA``..``expertE`` / ``expert_c`` / ``C``.
Stems that start with a FiveK id (``a0001``, ``a0001-IMG_1234``) are matched on that id, and FiveK's
test split (a4501-a5000) is left out for training; evaluation may include it (``include_test``) so that
published numbers can be reproduced.
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from PIL import Image

from csr_core.errors import ImageError, PairsError
from csr_core.image_io import SUPPORTED_EXTENSIONS, load_photo, to_float
from csr_core.metrics import to_uint8

__all__ = ["Pair", "LoadedPair", "SUPPORTED_EXTS", "FIVEK_TEST_IDS", "is_fivek_test_id", "fivek_id",
           "discover_pairs", "load_pair", "load_pairs", "pixels_key", "shrink", "scene_score"]

#: What csr retouch reads, RAW and HEIC included: a photographer's natural pair is a RAW file and the JPEG
#: exported from its edit (a RAW and its camera JPEG side by side are two "befores": that pair is skipped).
SUPPORTED_EXTS = SUPPORTED_EXTENSIONS
FIVEK_TEST_IDS = frozenset(f"a{n:04d}" for n in range(4501, 5001))
def layouts(expert: str | None = None) -> str:
    """The accepted pair layouts, in words (naming the FiveK expert folder asked for, if any)."""
    m = _EXPERT_RE.match(expert.strip()) if expert else None
    folder = f"expert{m.group(1).upper()}/" if m else "expertA/ .. expertE/"
    return ("before/ + after/ folders, X_input + X_target (or X_before + X_after) files, "
            f"or FiveK input/ + {folder} folders")

_FIVEK_RE = re.compile(r"^(a\d{4})(?:[-_ .].*)?$", re.IGNORECASE)
_ROLE_RE = re.compile(r"^(.+)_(input|target|before|after)$", re.IGNORECASE)
_EXPERT_RE = re.compile(r"^(?:expert[_ -]?)?([a-e])$", re.IGNORECASE)
_INPUT_DIRS = ("input", "original")
# Sidecar / metadata files that sit beside photos: skipped quietly instead of reported (.aae: an iPhone's edits,
# .dop: DxO's, .cos: Capture One's, .thm: a camera's thumbnail).
_QUIET_EXTS = {".txt", ".md", ".tsv", ".csv", ".json", ".yaml", ".yml", ".xmp", ".pp3", ".ini", ".db",
               ".log", ".pdf", ".html", ".aae", ".dop", ".cos", ".thm"}


@dataclass
class Pair:
    """One training example: ``before`` (the input photo) and ``after`` (its retouch), named by id/stem."""
    name: str
    before: Path
    after: Path


@dataclass
class LoadedPair:
    """A pair read for learning or scoring: 8-bit sRGB H x W x 3 ``before`` and ``after`` of one size, and the
    warnings its reading gave (an 'after' resized to its 'before')."""
    pair: Pair
    before: np.ndarray
    after: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.pair.name


def fivek_id(name: str) -> str | None:
    """The leading FiveK id of a stem ('a0001-IMG_1.png' -> 'a0001'), or None."""
    m = _FIVEK_RE.match(name)
    return m.group(1).lower() if m else None


def is_fivek_test_id(name: str) -> bool:
    """True when ``name`` starts with a FiveK test-split id (a4501-a5000)."""
    return fivek_id(name) in FIVEK_TEST_IDS


def _key(stem: str) -> str:
    return fivek_id(stem) or _fold(stem)


def _fold(name: str) -> str:
    """``name`` as names are compared: without case, and with accents composed one way (a name from a Mac's
    older disks spells 'é' as 'e' and a combining accent)."""
    return unicodedata.normalize("NFC", name).casefold()


def _listdir(d: Path) -> list[Path]:
    try:
        return sorted(d.iterdir())
    except OSError as e:
        raise PairsError(f"{d}: cannot list folder ({e.strerror or e})") from e


def _images(d: Path, root: Path, problems: list[str]) -> list[Path]:
    """Supported image files directly in ``d``; other files (not hidden, not metadata) are problems, and so are
    the folders inside a pairs folder (``d`` other than ``root``), which are not searched."""
    out = []
    for p in _listdir(d):
        if p.name.startswith("."):
            continue
        if p.is_dir() and d != root:
            problems.append(f"{_rel(p, root)}/: a folder inside {d.name}/; only the photos directly in "
                            f"{d.name}/ are read")
        if not p.is_file():
            continue
        if p.suffix.lower() in SUPPORTED_EXTS:
            out.append(p)
        elif p.suffix.lower() not in _QUIET_EXTS:
            problems.append(f"{_rel(p, root)}: unsupported file type; expected a photo ({', '.join(SUPPORTED_EXTS)})")
    return out


def _rel(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return str(p)


#: Files named for each reason a file is left out (no match, FiveK's test split); the rest are counted in a line.
SHOWN = 5


def _match(before: dict[str, list[tuple[str, Path]]], after: dict[str, list[tuple[str, Path]]], root: Path,
           problems: list[str], labels: tuple[str, str], include_test: bool = False) -> list[Pair]:
    """Pair ``_group``'s (stem, file) lists by key; ``labels`` describe each side. A pair keyed by a FiveK id is
    named by it, any other by the 'before' file's stem. Files left out for one reason (a 'before' folder that
    holds a whole shoot) are named up to SHOWN, then counted."""
    pairs, left = [], {}  # left: the files left out, by reason
    for key in sorted(set(before) | set(after)):
        b, a = [p for _, p in before.get(key, [])], [p for _, p in after.get(key, [])]
        files = ", ".join(_rel(p, root) for p in b + a)
        if key in FIVEK_TEST_IDS and not include_test:
            left.setdefault("FiveK test split (a4501-a5000); excluded, never used for training", []).append(files)
        elif len(b) > 1 or len(a) > 1:
            problems.append(f"{files}: several files for '{key}' on one side; keep only one")
        elif not a or not b:
            left.setdefault(f"no matching {labels[0 if a else 1]}", []).append(files)
        else:
            pairs.append(Pair(key if fivek_id(key) == key else before[key][0][0], b[0], a[0]))
    for why, names in left.items():
        problems += [f"{files}: {why}" for files in names[:SHOWN]]
        if len(names) > SHOWN:
            problems.append(f"and {len(names) - SHOWN} more: {why}")
    return pairs


def _group(before: list[tuple[str, Path]], after: list[tuple[str, Path]]) -> tuple[dict, dict]:
    """Each side's (stem, file) items by key: the stem's FiveK id ('a0001-IMG_1234' -> 'a0001'), or the stem.
    An id that several different stems on one side share ('a6400_0001', 'a6400_0002', a camera's names) is
    no FiveK id: those files are keyed by their whole stem, on both sides."""
    shared = set()
    for side in (before, after):
        stems: dict[str, set[str]] = {}
        for stem, _ in side:
            stems.setdefault(_key(stem), set()).add(_fold(stem))
        shared |= {k for k, v in stems.items() if len(v) > 1}
    out: tuple[dict, dict] = ({}, {})
    for grouped, side in zip(out, (before, after)):
        for stem, p in side:
            key = _key(stem)
            grouped.setdefault(_fold(stem) if key in shared else key, []).append((stem, p))
    return out


def _expert_dirs(subdirs: list[Path]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {}
    for d in subdirs:
        m = _EXPERT_RE.match(d.name)
        if m:
            out.setdefault(m.group(1).upper(), []).append(d)
    return out


def _pick_expert(root: Path, experts: dict[str, list[Path]], expert: str | None) -> Path:
    found = ", ".join(d.name for ds in experts.values() for d in ds)
    if expert is None:
        if len(experts) > 1:
            raise PairsError(f"{root}: several FiveK expert folders ({found}); choose one with --expert")
        letter = next(iter(experts))
    else:
        m = _EXPERT_RE.match(expert.strip())
        letter = m.group(1).upper() if m else None
        if letter not in experts:
            raise PairsError(f"{root}: no folder for expert '{expert}'; found {found}")
    if len(experts[letter]) > 1:
        raise PairsError(f"{root}: several folders for expert {letter} ({found}); keep only one")
    return experts[letter][0]


def discover_pairs(root, expert: str | None = None, include_test: bool = False,
                   loose: list[Path] | None = None) -> tuple[list[Pair], list[str]]:
    """Find pairs under ``root``: (pairs sorted by name, problem lines each naming a file).

    ``expert`` ('A'..'E', 'expertC', ...) picks the FiveK expert folder; needed when there are several.
    FiveK test-split pairs are left out (with a problem line) unless ``include_test`` (evaluation only).
    ``loose``, when given, receives the photos lying directly in ``root`` beside its before/ and after/
    folders, which no layout reads (finished photos kept with the pairs, say). Raises PairsError if ``root``
    is not a folder or no pair is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise PairsError(f"{root}: not a folder")
    problems: list[str] = []
    subdirs = [p for p in _listdir(root) if p.is_dir()]
    by_name = {d.name.casefold(): d for d in subdirs}
    inputs = [d for d in subdirs if d.name.casefold() in _INPUT_DIRS]
    experts = _expert_dirs(subdirs)

    if "before" in by_name and "after" in by_name:
        before, after = by_name["before"], by_name["after"]
        if loose is not None:
            loose += _images(root, root, [])  # other files there are not the pairs' business
    elif inputs and experts:
        if len(inputs) > 1:
            raise PairsError(f"{root}: several input folders ({', '.join(d.name for d in inputs)}); keep only one")
        before, after = inputs[0], _pick_expert(root, experts, expert)
    else:
        before = after = None

    if before is not None:
        sides = [[(p.stem, p) for p in _images(d, root, problems)] for d in (before, after)]
        pairs = _match(*_group(*sides), root, problems, (f"file in {before.name}/", f"file in {after.name}/"),
                       include_test=include_test)
    else:
        sides = [[], []]
        for p in _images(root, root, problems):
            m = _ROLE_RE.match(p.stem)
            if not m:
                problems.append(f"{_rel(p, root)}: not named X_input/X_target or X_before/X_after")
                continue
            sides[m.group(2).lower() in ("target", "after")].append((m.group(1), p))
        pairs = _match(*_group(*sides), root, problems, ("X_input/X_before file", "X_target/X_after file"),
                       include_test=include_test)

    if not pairs:
        first = f"; first problem: {problems[0]}" if problems else ""
        side = root.resolve()
        if side.name.casefold() in ("before", "after", *_INPUT_DIRS) or _EXPERT_RE.match(side.name):
            first = f"; {side.name}/ holds one side of the pairs: give the folder that holds it, {side.parent}"
        raise PairsError(f"{root}: no image pairs found (expected {layouts(expert)}){first}")
    if expert is not None and not (inputs and experts and before in inputs):
        raise PairsError(f"{root}: --expert picks a FiveK expert folder (input/ beside expertA/ .. expertE/); "
                         "these pairs have none, so leave it out")
    pairs.sort(key=lambda p: p.name)
    return pairs, problems


def _read_rgb(path: Path) -> np.ndarray:
    """Read an image as float32 HxWx3 in [0, 1], alpha dropped (the one place pairs touch files)."""
    try:
        return to_float(load_photo(path).rgb)
    except ImageError as e:
        raise PairsError(str(e)) from e


def _resize(x: np.ndarray, w: int, h: int, method, box: tuple[float, ...] | None = None) -> np.ndarray:
    """Resize float [0,1] HxWx3 (or its region ``box``: left, top, right, bottom, in fractions of pixels) per
    channel in Pillow 'F' mode (no 8-bit rounding)."""
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c])).resize((w, h), method, box))
             for c in range(x.shape[2])]
    return np.clip(np.stack(chans, axis=-1), 0.0, 1.0).astype(np.float32)


def _close(n: int, m: int, tol: float) -> bool:
    return abs(n - m) <= tol * max(n, m)


def load_pair(pair: Pair, max_side: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Load a pair as float32 [0,1] HxWx3 (before, after, warnings).

    A differently sized ``after`` is lined up with its ``before``, with a warning: an ``after`` smaller on both
    sides that is a crop of the ``before`` (``_crop_box``) has the ``before`` cropped to match; otherwise it is
    resized to ``before`` when aspect ratios agree within 2% or each side differs by at most 3%, and any other
    size is a PairsError. ``max_side`` shrinks both (area average) so the long side is at most ``max_side``:
    each photo is shrunk as soon as it is read, so no copy larger than the larger file's own pixels is made.
    """
    if max_side is not None and max_side < 1:
        raise ValueError("max_side must be a positive integer")
    before = _read_rgb(pair.before)
    hb, wb = before.shape[:2]
    before = shrink(before, max_side)
    after = _read_rgb(pair.after)
    ha, wa = after.shape[:2]
    warnings: list[str] = []
    if (hb, wb) != (ha, wa):
        sizes = f"after {pair.after.name} is {wa}x{ha}, before is {wb}x{hb}"
        box = _crop_box(before, after, (wb, hb))
        if box is not None:
            x, y, w, h = box
            before = _resize(before, round(w), round(h), Image.Resampling.BICUBIC, (x, y, x + w, y + h))
            warnings.append(f"pair {pair.name}: {sizes}; the after is a crop of the before, which is cropped to match")
        elif not (_close(wb * ha, wa * hb, 0.02) or (_close(wb, wa, 0.03) and _close(hb, ha, 0.03))):
            turned = "; the after is turned a quarter turn: export it the same way up" \
                if wb != hb and _close(wb * wa, ha * hb, 0.02) else ""  # (wb/hb) vs (ha/wa)
            raise PairsError(f"pair {pair.name}: before {pair.before.name} is {wb}x{hb} but after "
                             f"{pair.after.name} is {wa}x{ha}; sizes too different to align{turned}")
        else:
            warnings.append(f"pair {pair.name}: {sizes}; resized after to match")
        h, w = before.shape[:2]
        after = _resize(after, w, h, Image.Resampling.BOX if wa * ha > w * h else Image.Resampling.LANCZOS)
    return before, shrink(after, max_side), warnings


#: An 'after' smaller than its 'before' on both sides by at most this share may be a crop of it.
CROP = 0.2
#: ``_crop_box`` finds a crop at this long side, then places it at up to REFINE_SIDE (or the photo's own size).
FIND_SIDE, REFINE_SIDE = 256, 1024


def _crop_box(before: np.ndarray, after: np.ndarray, full: tuple[int, int]) -> tuple[float, ...] | None:
    """Where ``after`` (its file's size) lies in ``before`` (shrunk from its file's size ``full``, width and
    height) if it is a crop of it: the box (x, y, width, height) in ``before``'s pixels, to a fraction of a
    pixel; None when it is not
    smaller on both sides by at most CROP, when a photo is flat, or when stretching it over the whole ``before``
    (an export at another size) lines its edges up as well. Edge strength is compared (a colour edit keeps it)
    by OpenCV's normalised cross-correlation at FIND_SIDE, then within a few pixels at REFINE_SIDE (where the
    stretched ``after`` is compared too)."""
    import cv2

    (wb, hb), (ha, wa) = full, after.shape[:2]
    if not (wb * (1 - CROP) <= wa <= wb and hb * (1 - CROP) <= ha <= hb) or (wa, ha) == (wb, hb):
        return None

    def edges(x: np.ndarray, k: float, size: tuple[int, int] | None = None) -> np.ndarray:
        """Gradient magnitude of luma, ``x`` resized by ``k`` (or to ``size``)."""
        h, w = x.shape[:2]
        y = np.ascontiguousarray(x @ np.array([0.299, 0.587, 0.114], np.float32), np.float32)
        y = cv2.resize(y, size or (max(3, round(w * k)), max(3, round(h * k))), interpolation=cv2.INTER_AREA)
        gy, gx = np.gradient(y)
        return np.hypot(gx, gy).astype(np.float32)

    k = min(1.0, FIND_SIDE / max(wb, hb))  # file pixels -> search pixels
    b = edges(before, k * wb / before.shape[1])
    t = edges(after, k)
    if min(b.std(), t.std()) < FLAT or t.shape[0] > b.shape[0] or t.shape[1] > b.shape[1]:
        return None
    found = cv2.matchTemplate(b, t, cv2.TM_CCOEFF_NORMED)
    _, score, _, (x, y) = cv2.minMaxLoc(found)
    if score < SAME_SCENE:
        return None
    k2 = min(before.shape[1] / wb, REFINE_SIDE / max(wb, hb))  # file pixels -> placing pixels
    b2, t2 = edges(before, k2 * wb / before.shape[1]), edges(after, k2)
    r = int(np.ceil(k2 / k)) + 2
    x2, y2 = round(x * k2 / k), round(y * k2 / k)
    x0, y0 = max(0, x2 - r), max(0, y2 - r)
    window = b2[y0:y2 + r + t2.shape[0], x0:x2 + r + t2.shape[1]]
    if window.shape[0] < t2.shape[0] or window.shape[1] < t2.shape[1]:
        return None
    found = cv2.matchTemplate(window, t2, cv2.TM_CCOEFF_NORMED)
    _, score, _, (dx, dy) = cv2.minMaxLoc(found)
    # crop or export is told here: a crop of 1% is a pixel or two at FIND_SIDE, where a stretch lines up as well
    if score <= float(cv2.matchTemplate(b2, edges(after, 0, b2.shape[1::-1]), cv2.TM_CCOEFF_NORMED).max()):
        return None
    s = before.shape[1] / wb  # file pixels -> before's pixels
    w, h = max(1.0, wa * s), max(1.0, ha * s)
    left = min(max(0.0, (x0 + dx + _peak(found[dy, :], dx)) / k2 * s), before.shape[1] - w)
    top = min(max(0.0, (y0 + dy + _peak(found[:, dx], dy)) / k2 * s), before.shape[0] - h)
    return left, top, w, h


def _peak(row: np.ndarray, i: int) -> float:
    """The sub-pixel offset (-0.5..0.5) of the maximum at ``row[i]``, by the parabola through it and its two
    neighbours."""
    if not 0 < i < len(row) - 1:
        return 0.0
    left, mid, right = row[i - 1], row[i], row[i + 1]
    bend = left - 2 * mid + right
    return float(np.clip(0.5 * (left - right) / bend, -0.5, 0.5)) if bend < 0 else 0.0


def load_pairs(pairs: Iterable[Pair | LoadedPair], max_side: int | None = None,
               skipped: list[str] | None = None) -> Iterator[LoadedPair]:
    """The ``pairs`` that can be read and aligned (``load_pair``), one at a time, in 8 bit; a pair that cannot
    is left out with one line in ``skipped`` naming it and why, and so is a second copy of a pair (the same
    pixels before and after: it would count twice, and in validation score a pair seen in training) and a pair
    whose before and after show different scenes (``scene_score``: two photos that share a name). A pair
    already read is passed on as it is."""
    seen: dict[bytes, str] = {}
    skipped = [] if skipped is None else skipped
    for pair in pairs:
        if isinstance(pair, LoadedPair):
            yield pair
            continue
        try:
            before, after, warnings = load_pair(pair, max_side)
        except PairsError as e:
            why = str(e).removeprefix(f"pair {pair.name}: ")
            skipped.append(f"pair {pair.name}: {why}; left out")
            continue
        loaded = LoadedPair(pair, to_uint8(before), to_uint8(after), warnings)
        key = pixels_key(loaded.before, loaded.after)
        if key in seen:
            skipped.append(f"pair {pair.name}: the same photos as pair {seen[key]}; counted once")
            continue
        if scene_score(loaded.before, loaded.after) < SAME_SCENE:
            skipped.append(f"pair {pair.name}: its before and after look like different photos (check the names); "
                           "left out")
            continue
        seen[key] = pair.name
        yield loaded


def pixels_key(*images: np.ndarray) -> bytes:
    """A digest of ``images``' pixels (and shapes and types): equal exactly when the pixels are."""
    digest = hashlib.blake2b(str([(x.shape, x.dtype.str) for x in images]).encode(), digest_size=16)
    for x in images:
        digest.update(np.ascontiguousarray(x))
    return digest.digest()


def shrink(x: np.ndarray, max_side: int | None) -> np.ndarray:
    """A float [0,1] H x W x 3 image shrunk (area average) so that its long side is at most ``max_side``."""
    h, w = x.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return x
    s = max_side / max(h, w)
    return _resize(x, max(1, round(w * s)), max(1, round(h * s)), Image.Resampling.BOX)


#: ``scene_score`` compares edges at this long side (pixels), up to SHIFT pixels apart (a small crop, resized).
SCENE_SIDE, SHIFT = 64, 1
#: Below this correlation of edge strength a pair's two photos are different scenes. Measured (``scene_score``):
#: real pairs >= 0.690 (all 36 FiveK pairs: dev, extra, val, renderings); different photos <= 0.333 (1260 FiveK
#: swaps). With a shift search written in numpy that agreed within 0.05: 200 other photos edited here (curves,
#: black and white, 3 and 5 stops darker, 2 brighter, clipped) >= 0.51; 4200 of them swapped, colour-edited,
#: <= 0.36; an after cropped 3% and resized back: 1 in 200 below (0.43).
SAME_SCENE = 0.45
#: A side whose edge strength varies less than this (standard deviation, luma 0-1 per pixel at SCENE_SIDE) is
#: flat (a grey card, a clear sky's smooth ramp): nothing to compare, so it passes. Real photos: >= 0.015 (FiveK),
#: >= 0.0039 (5 stops darker); a noisy sky's ramp, 300x400 or larger: <= 0.0025.
FLAT = 0.003


def _edges(x: np.ndarray) -> np.ndarray:
    """Gradient magnitude of ``x``'s luma (8-bit RGB), shrunk (area average) to SCENE_SIDE."""
    y = x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255
    h, w = y.shape
    s = min(1.0, SCENE_SIDE / max(h, w))
    y = np.asarray(Image.fromarray(y).resize((max(2, round(w * s)), max(2, round(h * s))), Image.Resampling.BOX))
    gy, gx = np.gradient(y)
    return np.hypot(gx, gy)


def scene_score(before: np.ndarray, after: np.ndarray) -> float:
    """How well 8-bit ``before`` and ``after`` (one size) show one scene: the correlation (-1..1) of their edge
    strength at SCENE_SIDE, the best over shifts of up to SHIFT pixels; 1.0 when a side is flat (nothing to
    compare). A global colour or tone edit (exposure, white balance, curves, black and white) keeps a photo's
    edges where they were; two different photos score below SAME_SCENE."""
    import cv2

    b, a = _edges(before), _edges(after)
    if b.shape != a.shape or min(b.std(), a.std()) < FLAT or min(b.shape) <= 2 * SHIFT:
        return 1.0
    inner = b[SHIFT:-SHIFT, SHIFT:-SHIFT]  # OpenCV's normalised cross-correlation, at every shift at once
    return float(cv2.matchTemplate(a.astype(np.float32), inner.astype(np.float32), cv2.TM_CCOEFF_NORMED).max())
