"""Teaching a style from uploaded before/after pairs and finished photos: safe staging, one fine-tuning
job at a time."""
from __future__ import annotations

import itertools
import shutil
import stat
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Callable, Sequence

from csr_core.errors import ImageError, PairsError, StyleExistsError, require
from csr_core.image_io import SUPPORTED_EXTENSIONS
from csr_core.registry import Registry, score_summary

from .service import Limits, check_edits, check_pixels, public

#: Entries of any kind (folders, sidecars, __MACOSX copies) a zip may list, per file of the limit.
ZIP_ENTRIES_PER_FILE = 2
_ZIP_ENTRY_BYTES = 1024  # central-directory bytes allowed per entry (46 + name + extra fields)
PAIRS_HINT = "X_input + X_target (or X_before + X_after) images, or a .zip of them (before/ + after/ folders work too)"
FINISHED_HINT = "finished photos in your look (JPEG, PNG, TIFF, WebP, HEIC, ...), or a .zip of them"


def check_new_name(registry: Registry, name: str) -> str:
    """A valid name that no style uses yet (any case)."""
    name = (name or "").strip()
    try:
        registry.check_new_name(name)
    except StyleExistsError:
        raise StyleExistsError(f"a style named '{name}' already exists; choose another name, "
                               "or delete it in the Styles tab first") from None
    return name


def _safe_parts(member: str) -> list[str] | None:
    """The path parts of a zip member, None for entries to skip; PairsError for unsafe paths."""
    name = member.replace("\\", "/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if name.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise PairsError(f"zip entry {member!r}: unsafe path (absolute or with '..'); refusing the archive")
    if not parts or parts[0] == "__MACOSX" or any(p.startswith(".") for p in parts):
        return None
    if Path(parts[-1]).suffix.lower() not in SUPPORTED_EXTENSIONS:
        return None  # READMEs, sidecars, ...: not needed for training
    return parts


class Stager:
    """Copies uploads into one folder, extracting zips safely under size and count caps.

    ``unzipped``: bytes already extracted for the same job (its uploads share ``max_unzipped_mb``);
    ``hint``: what the upload should hold, for the error on a file of another kind; ``keep_both``: a second
    file of a name already staged is kept as 'NAME (2).EXT' (finished photos: names pair nothing up),
    rather than refused (pairs: which of the two would be the pair?).
    """

    def __init__(self, root: Path, limits: Limits, unzipped: int = 0, hint: str = PAIRS_HINT,
                 keep_both: bool = False):
        self.root, self.limits, self.hint, self.keep_both = root, limits, hint, keep_both
        self.files = 0
        self.unzipped = unzipped

    def _count(self, what: str) -> None:
        self.files += 1
        if self.files > self.limits.max_files:
            raise PairsError(f"{what}: more than {self.limits.max_files} files in one upload")

    def add(self, path: Path) -> None:
        size = path.stat().st_size
        if size > self.limits.max_bytes:
            raise PairsError(f"{path.name}: file is {size / 2**20:.1f} MB; the limit is {self.limits.max_mb:g} MB")
        if path.suffix.lower() == ".zip":
            return self._unzip(path)
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise PairsError(f"{path.name}: not an image or a .zip; expected {self.hint}")
        self._count(path.name)
        shutil.copyfile(path, self._new(self.root / path.name, f"{path.name}: uploaded twice"))

    def _check_directory(self, path: Path) -> None:
        """Refuse an archive whose central directory holds more entries (of any kind) than
        ``ZIP_ENTRIES_PER_FILE`` x the file limit, from its end record, before zipfile parses it:
        a million empty entries would otherwise cost seconds and close to a gigabyte."""
        most = ZIP_ENTRIES_PER_FILE * self.limits.max_files
        with open(path, "rb") as fh:
            end = zipfile._EndRecData(fh)  # the stdlib's own end-record reader (zip64 included)
        if end is None:
            raise PairsError(f"{path.name}: not a valid zip archive")
        entries, size = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]
        if entries > most or size > most * _ZIP_ENTRY_BYTES:
            raise PairsError(f"{path.name}: the archive lists {entries:,} entries ({size:,} bytes of directory); "
                             f"at most {most} entries are accepted")

    def _unzip(self, path: Path) -> None:
        cap = int(self.limits.max_unzipped_mb * 2**20)
        self._check_directory(path)
        try:
            with zipfile.ZipFile(path) as zf:
                for info in zf.infolist():
                    parts = _safe_parts(info.filename)
                    if info.is_dir() or parts is None:
                        continue
                    if stat.S_ISLNK(info.external_attr >> 16):
                        raise PairsError(f"{path.name}: entry {info.filename!r} is a symbolic link; "
                                         "refusing the archive")
                    self._count(path.name)
                    if info.file_size > self.limits.max_bytes:
                        raise PairsError(f"{path.name}: {info.filename} unpacks to {info.file_size / 2**20:.0f} MB; "
                                         f"the limit is {self.limits.max_mb:g} MB per file")
                    dest = self._new(self.root.joinpath(*parts), f"{path.name}: {info.filename} is there twice")
                    try:
                        dest.parent.mkdir(parents=True, exist_ok=True)
                    except (FileExistsError, NotADirectoryError):
                        raise PairsError(f"{path.name}: {info.filename} lies under a file of the same name") from None
                    if info.flag_bits & 0x1:
                        raise PairsError(f"{path.name}: {info.filename} is protected by a password; "
                                         "zip the photos again without one")
                    try:
                        self._copy_member(zf, info, dest, cap, path.name)
                    except (NotImplementedError, RuntimeError):  # Deflate64, a compression module missing, ...
                        raise PairsError(f"{path.name}: {info.filename} is compressed in a way csr cannot read; "
                                         "zip the photos again with the usual (Deflate) compression") from None
        except zipfile.BadZipFile:
            raise PairsError(f"{path.name}: not a valid zip archive") from None

    def _new(self, dest: Path, twice: str) -> Path:
        """``dest``, or when a file of that name is staged already: PairsError ``twice``, or with ``keep_both``
        the first free 'NAME (N).EXT' beside it."""
        if not dest.exists():
            return dest
        if not self.keep_both:
            raise PairsError(twice)
        names = (dest.with_name(f"{dest.stem} ({n}){dest.suffix}") for n in itertools.count(2))
        return next(d for d in names if not d.exists())

    def _copy_member(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, cap: int, zname: str) -> None:
        written = 0
        with zf.open(info) as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 20):  # count real bytes: headers can lie
                written += len(chunk)
                self.unzipped += len(chunk)
                if written > self.limits.max_bytes or self.unzipped > cap:
                    raise PairsError(f"{zname}: archive unpacks to more than the allowed size "
                                     f"({self.limits.max_mb:g} MB per file, {self.limits.max_unzipped_mb:g} MB in all)")
                out.write(chunk)

    def folder(self) -> Path:
        """The staged folder, unwrapping a lone top-level folder (a zipped 'pairs/' directory)."""
        root = self.root
        while True:
            entries = [p for p in root.iterdir() if not p.name.startswith(".")]
            if len(entries) == 1 and entries[0].is_dir() and entries[0].name.lower() not in ("before", "after"):
                root = entries[0]
            else:
                return root

    def check_pixels(self) -> None:
        for p in self.root.rglob("*"):
            if p.is_file():
                check_pixels(p, self.limits)

    def keep_readable(self) -> tuple[int, list[str]]:
        """Delete the staged photos that cannot be read within the limits, as ``csr finetune --finished``
        skips them; (photos kept, one line per photo deleted)."""
        kept, skipped = 0, []
        for p in sorted(self.root.rglob("*")):
            if not p.is_file() or p.name.startswith("."):
                continue
            try:
                check_pixels(p, self.limits)
                kept += 1
            except ImageError as exc:
                p.unlink()
                skipped.append(public(str(exc)))
        return kept, skipped


class Teacher:
    """Runs condition-only fine-tuning jobs one at a time (the rest wait on a lock)."""

    def __init__(self, registry: Registry, limits: Limits, finetune: Callable | None = None,
                 allow_edits: bool = False, **finetune_kwargs):
        self.registry, self.limits, self.allow_edits = registry, limits, allow_edits
        self._finetune, self.finetune_kwargs = finetune, finetune_kwargs
        self._lock, self._guard = threading.Lock(), threading.Lock()
        self._jobs = 0  # running + waiting

    @property
    def jobs(self) -> int:
        return self._jobs

    def finetune(self) -> Callable:
        if self._finetune is None:
            require("train", "teaching a style")
            from csr_core.finetune import finetune_style

            self._finetune = finetune_style
        return self._finetune

    def run(self, files: Sequence[str] | None, name: str, base: str = "auto",
            on_progress: Callable[[float, str], None] | None = None,
            finished: Sequence[str] | None = None) -> str:
        """Stage ``files`` (and the ``finished`` photos), fine-tune a new style ``name`` on them; returns a
        one-paragraph summary."""
        check_edits(self.allow_edits, "teach new styles")
        name = check_new_name(self.registry, name)
        if not files:
            raise PairsError(f"upload before/after pairs: {PAIRS_HINT}")
        report = on_progress or (lambda frac, text: None)
        with self._guard:
            ahead, self._jobs = self._jobs, self._jobs + 1
        try:
            if ahead:
                report(0.0, f"queued: {ahead} teaching job(s) ahead")
            with self._lock, tempfile.TemporaryDirectory(prefix="csr-teach-") as tmp:
                pairs = self._stage(Path(tmp, "pairs"), files)
                pairs.check_pixels()
                photos, skipped = None, []
                if finished:
                    report(0.0, "reading the finished photos")
                    photos, skipped = self._stage_finished(Path(tmp, "finished"), finished, pairs.unzipped)
                name = check_new_name(self.registry, name)  # it may have been taken while we waited
                report(0.0, "fine-tuning")
                style = self._call(pairs.folder(), name, base, report, photos)
        finally:
            with self._guard:
                self._jobs -= 1
        return summary(style, skipped)

    def _stage(self, root: Path, files: Sequence[str], **kwargs) -> Stager:
        root.mkdir()
        stager = Stager(root, self.limits, **kwargs)
        for f in files:
            stager.add(Path(f))
        return stager

    def _stage_finished(self, root: Path, files: Sequence[str], unzipped: int) -> tuple[Path, list[str]]:
        """(folder of the readable finished photos, a line per skipped one); PairsError when none is."""
        try:
            stager = self._stage(root, files, unzipped=unzipped, hint=FINISHED_HINT, keep_both=True)
        except PairsError as exc:
            raise PairsError(f"finished photos: {exc}") from None
        kept, skipped = stager.keep_readable()
        if not kept:
            raise PairsError(f"finished photos: no readable photo in the upload ({len(skipped)} skipped; the first: "
                             f"{skipped[0]})"
                             if skipped else f"finished photos: the upload holds no photo; upload {FINISHED_HINT}")
        return stager.root, skipped

    def _call(self, folder: Path, name: str, base: str, report: Callable, finished: Path | None):
        last: dict = {}

        def on_progress(info: dict) -> None:
            last.update({k: info[k] for k in ("val_psnr",) if info.get(k) is not None})
            report(*progress_info({**last, **info}))

        return self.finetune()(folder, name, base or "auto", registry=self.registry, on_progress=on_progress,
                               finished=finished, **self.finetune_kwargs)


def summary(style, skipped: Sequence[str] = ()) -> str:
    """What teaching made: the validation score and, with finished photos, the same pairs without them."""
    card = style.card
    score = score_summary(card)
    text = f"Style **{style.name}** saved" + (f" — validation PSNR {score}" if score else "")
    only = card.get("scores", {}).get("validation", {}).get("pairs_only", {})
    count = card.get("training", {}).get("data", {}).get("finished")
    if isinstance(only, dict) and isinstance(only.get("psnr"), (int, float)):
        text += f"; the same pairs without the {f'{count} ' if count else ''}finished photos: {only['psnr']:.2f} dB"
    text += "."
    if skipped:
        text += f" Skipped {len(skipped)} finished photo(s) that could not be read (the first: {skipped[0]})."
    left = [public(str(x)) for x in card.get("problems") or ()]  # pairs and photos the fine-tune left out
    if left:
        text += f" Left out or counted once: {len(left)} (the first: {left[0]})."
    return text


def progress_info(info: dict) -> tuple[float, str]:
    """(fraction done, text) from a fine-tuning progress dict (step, steps, phase, task, task_done, val_psnr,
    held_out)."""
    step, steps = info.get("step", 0), info.get("steps", 0)
    task = f"{info['task']} {info.get('task_done', 0):.0%}" if info.get("task") else ""
    text = " · ".join(str(t) for t in (info.get("phase"), task, f"step {step}/{steps}" if steps else "") if t)
    if info.get("val_psnr") is not None:
        text += f" · validation PSNR {info['val_psnr']:.2f} dB"
    held = info.get("held_out")
    if held:  # pooled over the pairs held out so far
        text += f" · validation PSNR so far {held['psnr']:.2f} dB on {held['pairs']} of {held['of']} pairs"
    return (min(max(step / steps, 0.0), 1.0) if steps else 0.0), text or "fine-tuning"
