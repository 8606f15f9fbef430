"""The style registry shared by every front end: built-in styles plus the user's own.

Built-in styles live in the package's ``weights/`` folder, described by ``manifest.json``. User styles
live in ``$CSR_HOME/styles`` (default: the platform's user data dir), one ``NAME.json`` card beside one
``NAME.safetensors`` file; the card is written last, so a style exists only once it is complete.
A *full* style holds the whole network; a *condition* style holds only the condition net + GFM and names
its base by sha256. Every weights file is checked against the sha256 in its card before loading.

Saving and removing hold the folder's lock file ``.lock`` (``filelock``: the operating system's lock, which
a killed holder releases), so that of any csr processes or threads changing styles at once, one works at a
time: each change leaves every card with its weights and no weights file that no card names (``_sweep``). A
process killed at any point leaves the old style or the new one; a weights or temporary file it leaves behind is
deleted by the next change of that name.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
from safetensors import SafetensorError, deserialize
from safetensors.numpy import save

from . import COND_SIZES, data_dir
from .architecture import ARCHITECTURE, CONDITION_KEYS, PARAMETER_COUNT, condition_state
from .engine import Net
from .errors import InvalidNameError, StyleError, StyleExistsError, UnknownStyleError, require
from .fsutil import atomic_write, write_bytes_atomic
from .inference import Look

DEFAULT_STYLE = "auto"
MANIFEST = "manifest.json"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
#: Size caps for files read from a style folder (a CSRNet is ~150 kB; a card a few kB).
MAX_CARD_BYTES = 1 << 20
#: Deepest nesting of a card's JSON (cards written by csr nest 4 levels).
MAX_CARD_DEPTH = 16
MAX_WEIGHTS_BYTES = 64 << 20
#: The tensor types a weights file may hold (safetensors names -> numpy types).
_FLOATS = {"F16": np.float16, "F32": np.float32, "F64": np.float64}
#: Largest magnitude a weight may have: trained CSRNets stay below ~10; 1e30 or NaN means damage.
MAX_WEIGHT = 1e3
#: Most parts of a style mix ('C:0.7,auto:0.3' has 2) and the longest mix spec.
MAX_MIX_PARTS, MAX_SPEC_CHARS = 8, 1000
#: The lock file in the user style folder while a style is saved or removed, and the longest wait for it.
LOCK, LOCK_TIMEOUT = ".lock", 60.0
#: The refusal of a new style whose name another csr process saved while it was being made.
_JUST_SAVED = "user style '{name}' was just saved by another csr process; choose another name"
#: The MIT-Adobe FiveK experts: style names A-E are reserved for their looks.
EXPERTS = {e: f"MIT-Adobe FiveK expert {e}'s retouching" for e in "ABCDE"}


def user_dir() -> Path:
    """Where user styles live: ``$CSR_HOME/styles`` or the platform's user data dir."""
    home = os.environ.get("CSR_HOME")
    if home:
        return Path(home).expanduser() / "styles"
    import platformdirs

    return Path(platformdirs.user_data_dir("csr", appauthor=False)) / "styles"


def builtin_dir() -> Path:
    return data_dir("weights")


def validate_name(name: str) -> str:
    """A style name is 1-64 letters, digits, '-' or '_' (no path tricks, no reserved device names)."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidNameError(f"invalid style name {name!r}: use 1-64 letters, digits, '-' or '_', starting with a "
                               "letter or digit")
    if name.lower() in _RESERVED:
        raise InvalidNameError(f"invalid style name {name!r}: it is a reserved device name on Windows")
    return name


def load_card(data: bytes) -> object:
    """A card's JSON, nested at most MAX_CARD_DEPTH deep: ValueError otherwise (200 kB of '[[[[' would
    raise RecursionError in the parser, or in whatever walks the card later)."""
    try:
        card = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise ValueError(f"nested more than {MAX_CARD_DEPTH} levels deep") from None
    level, depth = [card], 0
    while level:
        depth += 1
        if depth > MAX_CARD_DEPTH:
            raise ValueError(f"nested more than {MAX_CARD_DEPTH} levels deep")
        level = [v for c in level if isinstance(c, (dict, list)) for v in (c.values() if isinstance(c, dict) else c)]
    return card


def check_card(card: object, where: str) -> dict:
    """A style card's required fields and types; StyleError naming ``where`` otherwise."""
    def bad(why: str):
        raise StyleError(f"{where}: invalid style card ({why})")

    if not isinstance(card, dict):
        bad("not a JSON object")
    file = card.get("file")
    if not isinstance(file, str) or Path(file).name != file or not file.endswith(".safetensors"):
        bad("'file' must be a plain .safetensors file name")
    if not isinstance(card.get("sha256"), str) or not re.fullmatch(r"[0-9a-f]{64}", card["sha256"]):
        bad("'sha256' must be 64 hex digits")
    if card.get("kind", "full") not in ("full", "condition"):
        bad("'kind' must be 'full' or 'condition'")
    size = card.get("cond_size")
    if not isinstance(size, int) or isinstance(size, bool) or not COND_SIZES[0] <= size <= COND_SIZES[1]:
        bad(f"'cond_size' must be an integer from {COND_SIZES[0]} to {COND_SIZES[1]}")
    base = card.get("base")
    if card.get("kind") == "condition" and not (
            isinstance(base, dict) and isinstance(base.get("name"), str) and isinstance(base.get("sha256"), str)):
        bad("a condition style needs 'base' with 'name' and 'sha256'")
    for key in ("scores", "training"):
        if key in card and not isinstance(card[key], dict):
            bad(f"'{key}' must be an object")
    return card


def read_regular(path: str | os.PathLike, limit: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (links are followed).

    A FIFO, device (a link to /dev/zero), folder or oversized file raises StyleError at once: the open
    never blocks and the read never runs past ``limit``. A missing file raises FileNotFoundError.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise StyleError(f"{path}: {what} is not a regular file")
        if st.st_size > limit:
            raise StyleError(f"{path}: {what} is {st.st_size:,} bytes; at most {limit:,} are accepted")
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise StyleError(f"{path}: {what} grew past {limit:,} bytes while being read")
    return data


def sha256_file(path: Path, limit: int = MAX_WEIGHTS_BYTES) -> str:
    return hashlib.sha256(read_regular(path, limit)).hexdigest()


@dataclass(frozen=True)
class Style:
    """A named style: its card (provenance, scores) and its weights file."""

    name: str
    card: dict
    path: Path
    builtin: bool

    @property
    def kind(self) -> str:
        return self.card.get("kind", "full")

    @property
    def cond_size(self) -> int:
        return int(self.card["cond_size"])

    @property
    def sha256(self) -> str:
        return self.card["sha256"]

    @property
    def base_sha256(self) -> str:
        """The sha256 of the full network this style runs on (itself, for a full style)."""
        return self.card["base"]["sha256"] if self.kind == "condition" else self.sha256

    @property
    def description(self) -> str:
        return self.card.get("description", "")


def validation_method(card: dict) -> str:
    """How a card's style was validated on its own pairs ('5-fold', 'held-out'), or ''."""
    return next((v["method"] for v in (card.get("validation"), card.get("scores", {}).get("validation"))
                 if isinstance(v, dict) and isinstance(v.get("method"), str)), "")


def score_summary(card: dict) -> str:
    """'22.53 dB on 14 FiveK train-range pairs (do-nothing 20.52)' from a card's scores, or '' if it has none."""
    how = validation_method(card)
    for key, label in (("validation", " ".join(filter(None, ("its own pairs,", how, "validation")))),
                       ("fivek_c_real", "14 FiveK train-range pairs"),
                       ("fivek_c_dev", "13 of the 14 FiveK train-range pairs")):
        s = card.get("scores", {}).get(key)
        if not isinstance(s, dict):
            continue
        try:
            if "psnr" in s:  # flat: {psnr, baseline_psnr, ...}
                mine, nothing = s["psnr"], s["baseline_psnr"]
            else:  # per method: {<style>: {psnr}, "do-nothing": {psnr}, ...}
                mine = next(v for k, v in s.items() if isinstance(v, dict) and k not in ("do-nothing", "autocontrast", "autocontrast-tone"))
                mine, nothing = mine["psnr"], s["do-nothing"]["psnr"]
            return f"{float(mine):.2f} dB on {label} (do-nothing {float(nothing):.2f})"
        except (TypeError, KeyError, ValueError, StopIteration):
            continue
    return ""


_RESEARCH_ONLY = re.compile(r"research[ -]use only|research use or non-commercial|non-commercial (?:research )?use only|"
                            r"for research(?:/non-commercial)? (?:use|purposes) only|research only", re.IGNORECASE)
_LICENCE_ID = re.compile(r"(MIT|CC0(?:-1\.0)?|CC-BY(?:-[A-Z]{2})*(?:-\d\.\d)?|Apache-2\.0|BSD-\d-Clause|public domain)\b",
                         re.IGNORECASE)


def licence_label(card: dict) -> str:
    """A short label of a card's licence for listings: 'research use only', 'MIT', ..., or 'unknown'.

    Research-only terms anywhere in the text win over a leading licence name (the code's licence may be
    named first); the full text is in the card (``csr styles show NAME``).
    """
    text = card.get("licence")
    if not isinstance(text, str) or not text.strip():
        return "unknown"
    if _RESEARCH_ONLY.search(text):
        return "research use only"
    m = _LICENCE_ID.match(text.strip())
    if m:
        return m.group(1)
    if text.lower().startswith("unknown"):
        return "unknown"
    if "your training" in text.lower():
        return "as your training data"
    return "see card" if len(text) > 24 else text.strip()


def mix_spec(style: str, second: str | None = None, amount: float = 0.0) -> str:
    """The style spec (as ``--style`` takes it) of ``style`` with ``amount`` (0-1) of ``second`` mixed in:
    ('C', 'auto', 0.3) -> 'C:0.7,auto:0.3'; no second style or 0 -> 'C'; 1 -> 'auto'. The one place the web
    app and the GIMP plug-in (through its worker) compose a mix."""
    if not second or amount <= 0:
        return style
    for name in (style, second):  # 'auto,C' would slip a third style in, 'auto:5' a weight of its own
        if "," in name or ":" in name:
            raise StyleError(f"cannot mix {second!r} into {style!r}: a mix is made of two styles, each named on its "
                             "own (no ',' or ':')")
    if amount >= 1:
        return second
    return f"{style}:{1 - amount:g},{second}:{amount:g}"


def parse_spec(spec: str) -> list[tuple[str, float]]:
    """'C' -> [('C', 1.0)]; 'C:0.7,auto:0.3' -> weights normalised to sum 1; a style named twice is
    merged into one part. At most MAX_MIX_PARTS parts and MAX_SPEC_CHARS characters."""
    if not isinstance(spec, str) or len(spec) > MAX_SPEC_CHARS:
        raise StyleError(f"bad style mix: at most {MAX_SPEC_CHARS} characters")
    if spec.count(",") >= MAX_MIX_PARTS:
        raise StyleError(f"bad style mix {spec[:60]!r}...: at most {MAX_MIX_PARTS} styles in one mix")
    parts: list[tuple[str, float]] = []
    for item in spec.split(","):
        name, colon, weight = item.strip().partition(":")
        if not name.strip() and ("," in spec or colon):
            raise StyleError(f"bad style mix {spec!r}: empty entry (write STYLE or STYLE:WEIGHT between commas)")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise StyleError(f"bad style mix {spec!r}: weight {weight!r} of {name!r} is not a number") from None
        if not w >= 0 or w == float("inf"):
            raise StyleError(f"bad style mix {spec!r}: weights must be finite and >= 0")
        parts.append((name.strip(), w))
    merged: dict[str, float] = {}
    for name, w in parts:
        merged[name] = merged.get(name, 0.0) + w
    total = sum(merged.values())
    if not merged or total <= 0:
        raise StyleError(f"bad style mix {spec!r}: weights must add up to more than 0")
    if total == float("inf"):
        raise StyleError(f"bad style mix {spec!r}: weights too large (use weights such as 0.7 and 0.3)")
    return [(n, w / total) for n, w in merged.items()]


def _named(damaged: dict[str, str], name: str) -> str | None:
    """The damaged card in ``damaged`` whose name is ``name`` but for case, if any."""
    return next((n for n in damaged if n.lower() == name.lower()), None)


class Registry:
    """Built-in + user styles; the one registry every front end uses."""

    def __init__(self, builtin: Path | None = None, user: Path | None = None):
        self.builtin_path = Path(builtin) if builtin else builtin_dir()
        self.user_path = Path(user) if user else user_dir()
        self._nets: dict[str, Net] = {}
        self._warned: set[str] = set()

    # -- listing ------------------------------------------------------------------------------
    def _builtin_styles(self) -> dict[str, Style]:
        manifest = self.builtin_path / MANIFEST
        if not manifest.exists():
            return {}
        try:
            styles = json.loads(manifest.read_text("utf-8"))["styles"]
            items = list(styles.items())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StyleError(f"{manifest}: built-in style manifest is damaged ({exc})") from None
        out = {}
        for name, card in items:
            where = f"{manifest} style {name!r}"
            card = check_card(card, where)
            try:
                validate_name(name)
            except StyleError as exc:
                raise StyleError(f"{where}: {exc}") from None
            out[name] = Style(name, card, self.builtin_path / card["file"], True)
        return out

    def _user_styles(self, asked: str | None = None, damaged: dict[str, str] | None = None) -> dict[str, Style]:
        """The user styles whose cards read; a damaged or foreign card (or a FIFO, a device), or one named like
        a built-in style, is skipped, never blocking, with one warning per card (``remove`` deletes them),
        except the card of ``asked``, whose error in ``get`` says why; each is put in ``damaged`` (name -> why).
        Nothing of a listing is kept on the registry, which the web app's threads share."""
        out: dict[str, Style] = {}
        damaged = {} if damaged is None else damaged
        if not self.user_path.is_dir():
            return out
        builtins = {n.lower(): n for n in self._builtin_styles()}
        for card_path in sorted(self.user_path.glob("*.json")):
            name = card_path.stem
            try:
                validate_name(name)
                card = check_card(load_card(read_regular(card_path, MAX_CARD_BYTES, "style card")), str(card_path))
                if name.lower() in builtins:  # (a card from elsewhere, or a built-in style newer than it)
                    raise StyleError(f"its name is taken by the built-in style '{builtins[name.lower()]}' (to keep "
                                     f"it, give {card_path.name} another name)")
                out[name] = Style(name, card, self.user_path / card["file"], False)
            except FileNotFoundError as exc:  # gone: removed by another csr process since the listing, unless
                if os.path.lexists(card_path):  # it is a link to nothing
                    self._skip(card_path, f"invalid style card ({exc})", asked, damaged)
            except StyleError as exc:
                self._skip(card_path, str(exc).removeprefix(f"{card_path}: "), asked, damaged)
            except (ValueError, OSError) as exc:
                self._skip(card_path, f"invalid style card ({exc})", asked, damaged)
        return out

    def _skip(self, card_path: Path, why: str, asked: str | None, damaged: dict[str, str]) -> None:
        """Note a card that cannot be used in ``damaged``, and warn about it once (not when it is the style
        ``asked`` for)."""
        name = card_path.stem
        damaged[name] = why
        if card_path.name not in self._warned and name != asked:
            self._warned.add(card_path.name)
            warnings.warn(f"{card_path}: skipped, {why}; {_repair_hint(name)}", stacklevel=3)

    def damaged(self) -> dict[str, str]:
        """Cards in the user folder that were skipped: name -> why."""
        damaged: dict[str, str] = {}
        self._user_styles(damaged=damaged)
        return damaged

    def styles(self) -> list[Style]:
        """All styles: built-ins first, then user styles (a user style never shadows a built-in)."""
        return list(self._builtin_styles().values()) + list(self._user_styles().values())

    def names(self) -> list[str]:
        return [s.name for s in self.styles()]

    def get(self, name: str) -> Style:
        """The style called ``name``; an unknown name raises StyleError with suggestions."""
        damaged: dict[str, str] = {}
        for style in [*self._builtin_styles().values(), *self._user_styles(name, damaged).values()]:
            if style.name == name:
                return style
        if name in damaged:
            raise StyleError(f"user style '{name}' cannot be used: {damaged[name]}; {_repair_hint(name)}")
        if name in EXPERTS:
            raise UnknownStyleError(
                f"style '{name}' is {EXPERTS[name]}; it is not bundled because its training pairs are not "
                f"distributed with csr. Create it from your own FiveK copy: "
                f"csr finetune --pairs /path/to/fivek --expert {name} --name {name}")
        names = self.names()
        import difflib

        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        close += [n for n in names if n.lower() == str(name).lower() and n not in close]
        hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
        raise UnknownStyleError(f"unknown style {name!r}; {hint}available: {', '.join(names) or 'none'} (see: csr styles list)")

    # -- loading ------------------------------------------------------------------------------
    def _verified_state(self, style: Style) -> dict[str, np.ndarray]:
        """The weights, read once (a regular file within MAX_WEIGHTS_BYTES), sha256-checked, then parsed
        from those very bytes and checked for sane values."""
        try:
            blob = read_regular(style.path, MAX_WEIGHTS_BYTES, "weights file")
        except FileNotFoundError:
            raise StyleError(f"style '{style.name}': weights file {style.path} is missing") from None
        except StyleError as exc:
            raise StyleError(f"style '{style.name}': {exc}") from None
        except OSError as exc:
            raise StyleError(f"style '{style.name}': cannot read {style.path.name} ({exc.strerror or exc})") from None
        digest = hashlib.sha256(blob).hexdigest()
        if digest != style.sha256:
            raise StyleError(f"style '{style.name}': {style.path.name} fails its sha256 check "
                             f"(expected {style.sha256[:12]}..., got {digest[:12]}...); the file was modified or corrupted")
        try:
            tensors = deserialize(blob)
        except (SafetensorError, OSError, ValueError) as exc:
            raise StyleError(f"style '{style.name}': cannot read {style.path.name} ({exc})") from None
        odd = sorted({t["dtype"] for _, t in tensors} - set(_FLOATS))
        if odd:
            raise StyleError(f"style '{style.name}': {style.path.name} holds {', '.join(odd)} tensors; "
                             f"weights must be {', '.join(_FLOATS)}")
        state = {k: np.frombuffer(t["data"], _FLOATS[t["dtype"]]).reshape(t["shape"]) for k, t in tensors}
        return checked_arrays(state, f"style '{style.name}'")

    def _base_style(self, style: Style) -> Style:
        """The full style a style runs on: itself, or for a condition style the installed full style
        with its base's sha256."""
        if style.kind == "full":
            return style
        for cand in self.styles():
            if cand.kind == "full" and cand.sha256 == style.base_sha256:
                return cand
        base = style.card.get("base", {}).get("name", "?")
        raise StyleError(f"style '{style.name}' was fine-tuned from base '{base}' "
                         f"(sha256 {style.base_sha256[:12]}...), which is not installed")

    def base_name(self, style: Style) -> str:
        """The name of the installed full style a condition style runs on (found by sha256: the name its
        card recorded may since have changed), or the recorded name marked as not installed."""
        try:
            return self._base_style(style).name
        except StyleError:
            return f"{style.card.get('base', {}).get('name', '?')} (not installed)"

    def net(self, name: str | Style) -> Net:
        """The full network of a style (a condition style is composed onto its base), cached.
        (Training takes it to torch with ``csr_core.model.from_state(net.state)``.)"""
        style = name if isinstance(name, Style) else self.get(name)
        if style.sha256 in self._nets:
            return self._nets[style.sha256]
        state = self._verified_state(style)
        if style.kind == "condition":  # the tensors fine-tuning changed (older styles: all of them)
            if not set(state) <= CONDITION_KEYS:
                raise StyleError(f"style '{style.name}': weights do not match a CSRNet condition net + GFM")
            state = {**self.net(self._base_style(style)).state, **state}
        net = _net_from_state(state, f"style '{style.name}'")
        self._nets[style.sha256] = net
        return net

    def look(self, spec: str = DEFAULT_STYLE) -> Look:
        """A Look for a style name or a mix such as 'C:0.7,auto:0.3' (styles must share a base)."""
        parts = [(self.get(n), w) for n, w in parse_spec(spec)]
        bases = {s.base_sha256 for s, _ in parts}
        if len(bases) > 1:
            raise StyleError(f"cannot mix {' and '.join(s.name for s, _ in parts)}: they do not share a base network")
        used = [(self.net(s), s.cond_size, w) for s, w in parts if w > 0]
        return Look(self.net(self._base_style(parts[0][0])), used, spec)

    # -- writing ------------------------------------------------------------------------------
    def check_new_name(self, name: str, overwrite: bool = False) -> None:
        """Refuse an invalid name, a built-in's name, (unless ``overwrite``) an existing user style, or
        an unwritable style folder: every command that creates a style calls this before its work."""
        validate_name(name)
        if name.lower() in {n.lower() for n in self._builtin_styles()}:
            raise StyleError(f"style name '{name}' is taken by a built-in style; choose another name")
        damaged: dict[str, str] = {}
        existing = {n.lower(): s for n, s in self._user_styles(damaged=damaged).items()}
        old = existing.get(name.lower())
        if old is not None and not overwrite:
            raise StyleExistsError(f"user style '{old.name}' already exists; choose another name, replace it with "
                                   f"--overwrite, or remove it: csr styles remove {old.name}")
        if old is not None:
            self.check_unused(old, "replace")
        broken = _named(damaged, name)
        if broken is not None and not overwrite:
            raise StyleExistsError(f"user style '{broken}' already exists but cannot be used "
                                   f"({damaged[broken]}); replace it with --overwrite, or remove it: "
                                   f"csr styles remove {broken}")
        self.check_writable()

    def save_style(self, name: str, weights: Mapping[str, object], card: dict, base: Style | None = None,
                   overwrite: bool = False) -> Style:
        """Save a user style atomically: the weights, then the card (the commit point).

        ``weights``: a full CSRNet state dict (numpy arrays, or a torch model's ``state_dict()``).
        With ``base`` only the condition-net + GFM tensors that differ from the base network are stored
        (what fine-tuning changed), with a reference to the base by sha256.
        """
        self.check_new_name(name, overwrite)
        state = _net_from_state(weights, f"style '{name}'").state
        if base is not None:
            base = self._base_style(base)  # the full network it is stored against
            full = self.net(base).state
            state = {k: v for k, v in condition_state(state).items() if not np.array_equal(v, full[k])}
        # one metadata key: safetensors writes several in any order, and the same weights would differ in sha256
        blob = save(state, metadata={"architecture": ARCHITECTURE})
        digest = hashlib.sha256(blob).hexdigest()
        card = dict(card, architecture=ARCHITECTURE, kind="condition" if base else "full",
                    file=f"{name}.{digest[:12]}.safetensors", sha256=digest)
        from datetime import datetime, timezone

        card.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        card.setdefault("cond_size", 256)
        if base is not None:
            card["base"] = {"name": base.name, "sha256": base.base_sha256}
        check_card(card, f"style '{name}'")  # a card it could not read back is never written
        with self._changing():
            try:  # again: another process may have saved or removed it meanwhile
                self.check_new_name(name, overwrite)
            except StyleExistsError:
                raise StyleExistsError(_JUST_SAVED.format(name=name)) from None
            if base is not None and not any(s.kind == "full" and s.sha256 == base.sha256 for s in self.styles()):
                raise StyleError(f"cannot save style '{name}': its base style '{base.name}' was removed or replaced "
                                 "meanwhile")
            return self._write_style(name, card, blob, overwrite)

    def _write_style(self, name: str, card: dict, blob: bytes, overwrite: bool) -> Style:
        """Write the weights, then the card (the commit point), then delete what the card replaced; with the
        folder's lock held."""
        damaged: dict[str, str] = {}
        old = next((st for n, st in self._user_styles(damaged=damaged).items() if n.lower() == name.lower()), None) \
            if overwrite else None
        broken = _named(damaged, name) if overwrite else None  # a damaged card it replaces
        weights = self.user_path / card["file"]
        try:
            write_bytes_atomic(weights, blob)  # a new name: the old style stays intact
            # the commit point; a new name is claimed only if no other process saved it meanwhile
            with atomic_write(self.user_path / f"{name}.json", "w", replace=(old or broken) is not None) as fh:
                json.dump(card, fh, indent=2)
        except FileExistsError:  # (a csr without the lock saved it meanwhile)
            self._unlink_unused(weights)
            raise StyleExistsError(_JUST_SAVED.format(name=name)) from None
        except OSError as exc:  # a full disk, a quota, a file-size limit: nothing of the new style stays
            self._unlink_unused(weights)
            raise StyleError(f"cannot save style '{name}' in {self.user_path} ({exc.strerror or exc})") from None

        def stale(other: str) -> bool:  # another name's card, not the new one (one file on a case-insensitive disk)
            path = self.user_path / f"{other}.json"
            return other != name and not (path.exists() and os.path.samefile(path, self.user_path / f"{name}.json"))

        if old is not None:
            if stale(old.name):
                (self.user_path / f"{old.name}.json").unlink(missing_ok=True)
            if old.path.name != card["file"]:
                self._unlink_unused(old.path)
            self._nets.pop(old.sha256, None)
        if broken is not None:
            self._remove_damaged(broken, card=stale(broken))
        with contextlib.suppress(OSError):  # left by a process killed while it changed this name: not needed
            self._sweep(name)
        return Style(name, card, self.user_path / card["file"], False)

    def remove(self, name: str) -> None:
        """Delete a user style (built-ins cannot be removed), or a damaged card with the weights file
        that was saved with it (``NAME.<sha256 prefix>.safetensors``) unless another card uses it."""
        if name not in self.damaged():
            self._check_removable(self.get(name))  # an unknown or built-in style: refused before any change
        with self._changing():
            if name in self.damaged() and validate_name(name):
                return self._remove_damaged(name)
            try:
                style = self.get(name)
            except UnknownStyleError:
                return  # another csr process removed it meanwhile
            self._check_removable(style)
            try:
                (self.user_path / f"{name}.json").unlink(missing_ok=True)  # the card first: the style is gone at once
                self._unlink_unused(style.path)
                self._sweep(name)
            except OSError as exc:
                raise StyleError(f"cannot remove style '{name}' from {self.user_path} "
                                 f"({exc.strerror or exc})") from None
            self._nets.pop(style.sha256, None)

    def _check_removable(self, style: Style) -> None:
        if style.builtin:
            raise StyleError(f"style '{style.name}' is built in and cannot be removed")
        self.check_unused(style, "remove")

    def _remove_damaged(self, name: str, card: bool = True) -> None:
        """Delete a damaged card (unless not ``card``) and the weights file saved with it
        (``NAME.<sha256 prefix>.safetensors``) unless another card uses it."""
        try:
            if card:
                (self.user_path / f"{name}.json").unlink(missing_ok=True)
            self._sweep(name)
        except OSError as exc:
            raise StyleError(f"cannot remove style '{name}' from {self.user_path} ({exc.strerror or exc})") from None

    def _sweep(self, name: str) -> None:
        """Delete the files of the style ``name`` (in any case) that no card uses: its weights files
        (``NAME.<sha256 prefix>.safetensors``) and the temporary files of writes that were cut short. Only with
        the folder's lock held: then no other csr process is writing there."""
        used = {s.path.name for s in self._user_styles().values()}
        n = re.escape(name)
        weights = rf"{n}\.[0-9a-f]{{12}}\.safetensors"
        own = re.compile(rf"{weights}|\.(?:{weights}|{n}\.json)\.[0-9a-f]{{8}}\.part", re.IGNORECASE)
        for path in self.user_path.iterdir():
            if own.fullmatch(path.name) and path.name not in used:
                path.unlink(missing_ok=True)

    def _changing(self) -> contextlib.AbstractContextManager:
        """Hold the user style folder's lock (creating the folder), for a change to its styles. A folder csr
        may not create files in is changed without it: the change itself then fails with its own error."""
        import filelock  # only a change needs it (30 ms to import)

        stack, lock = contextlib.ExitStack(), self.user_path / LOCK
        try:
            self.user_path.mkdir(parents=True, exist_ok=True)
            stack.enter_context(filelock.FileLock(lock, timeout=LOCK_TIMEOUT))
        except filelock.Timeout:
            raise StyleError(f"{self.user_path}: another csr program has been saving or removing a style there for "
                             f"{LOCK_TIMEOUT:.0f} s; try again when it is done") from None
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                return stack
            if lock.is_symlink() or lock.is_dir():  # never followed: a link could point at any file
                what = "link" if lock.is_symlink() else "folder"
                raise StyleError(f"{lock}: csr's lock file for your styles is a {what}, not a file; delete it, "
                                 "then try again") from None
            raise StyleError(f"cannot change the styles in {self.user_path} ({exc.strerror or exc})") from None
        return stack

    def dependents(self, style: Style) -> list[str]:
        """The user styles that run on the full style ``style`` (fine-tuned from it, or from a style
        tuned from it) and would stop working without it: none if another installed copy carries them."""
        full = [s for s in self.styles() if s.kind == "full" and s.sha256 == style.sha256]
        if style.kind != "full" or len(full) > 1:
            return []
        return [s.name for s in self.styles() if s.kind == "condition" and s.base_sha256 == style.sha256]

    def check_unused(self, style: Style, action: str) -> None:
        """StyleError if other styles run on ``style``: removing or replacing it would break them."""
        users = self.dependents(style)
        if users:
            names = ", ".join(f"'{n}'" for n in users)
            raise StyleError(f"cannot {action} style '{style.name}': {names} {'runs' if len(users) == 1 else 'run'} "
                             f"on it (fine-tuned from it); remove {'that style' if len(users) == 1 else 'those'} "
                             f"first: csr styles remove {users[0]}")

    def _unlink_unused(self, weights: Path) -> None:
        """Delete a user weights file unless another card still names it (cards may share one)."""
        if not any(s.path.name == weights.name for s in self._user_styles().values()):
            weights.unlink(missing_ok=True)

    def check_writable(self) -> None:
        """StyleError now, not after minutes of training, if new styles cannot be saved."""
        folder = self.user_path
        while not folder.exists() and folder.parent != folder:
            folder = folder.parent
        if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
            raise StyleError(f"{self.user_path}: cannot save styles there ({folder} is not a writable folder); "
                             "set CSR_HOME to a writable folder")

    def import_checkpoint(self, path: Path, name: str, cond_size: int = 256, description: str = "",
                          overwrite: bool = False) -> Style:
        """Import a CSRNet ``.pth`` state_dict (loaded with weights_only=True) as a full user style."""
        self.check_new_name(name, overwrite)
        torch = require("train", "importing a .pth checkpoint")
        if Path(path).is_dir():
            raise StyleError(f"{path}: a folder, not a checkpoint file; name the .pth file to import")
        try:
            blob = read_regular(path, MAX_WEIGHTS_BYTES, "checkpoint")
        except FileNotFoundError:
            raise StyleError(f"{path}: no such file") from None
        except OSError as exc:
            raise StyleError(f"{path}: cannot read ({exc.strerror or exc})") from None
        _check_unpacked_size(blob, path)
        try:
            with warnings.catch_warnings():  # torch's note on the pickle protocol: the outcome says it all
                warnings.filterwarnings("ignore", message="Detected pickle protocol")
                state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle payloads and garbage both land here
            raise StyleError(f"{path}: not a plain PyTorch state_dict that loads safely ({type(exc).__name__})") from None
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise StyleError(f"{path}: expected a state_dict of tensors, found {type(state).__name__}")
        # a view (stride 0) may declare 2^30 values over one stored value: sizes are checked before any copy
        values = sum(v.numel() for v in state.values() if isinstance(v, torch.Tensor))
        if values > MAX_WEIGHTS_BYTES // 4:
            raise StyleError(f"{path}: checkpoint declares {values:,} values; a CSRNet has {PARAMETER_COUNT:,}")
        arrays = {k: (v.float() if v.is_floating_point() else v).numpy() if isinstance(v, torch.Tensor) else v
                  for k, v in state.items()}
        net = _net_from_state(checked_arrays(arrays, str(path)), str(path))
        card = dict(description=description or f"imported from {Path(path).name}", cond_size=cond_size,
                    training={"data": "unknown (imported checkpoint)", "recipe": "unknown (imported checkpoint)"},
                    source={"file": Path(path).name, "sha256": hashlib.sha256(blob).hexdigest()},
                    licence="unknown (the imported checkpoint's own terms apply)")
        return self.save_style(name, net.state, card, overwrite=overwrite)


def _repair_hint(name: str) -> str:
    """What to do about the damaged card ``name``."""
    return f"csr styles remove {name}" if _NAME_RE.fullmatch(name) else "move it out of that folder"


def _check_unpacked_size(blob: bytes, path) -> None:
    """A zip-format .pth must not unpack (its members' declared sizes) past MAX_WEIGHTS_BYTES: a 1 MB
    deflated archive can hold a 1 GiB tensor. Checked before torch reads it."""
    import zipfile

    if not zipfile.is_zipfile(io.BytesIO(blob)):
        return  # legacy format: tensors are stored raw, so the file size bounds them
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            total = sum(i.file_size for i in zf.infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise StyleError(f"{path}: not a plain PyTorch state_dict that loads safely (damaged archive)") from None
    if total > MAX_WEIGHTS_BYTES:
        raise StyleError(f"{path}: checkpoint unpacks to {total:,} bytes; at most {MAX_WEIGHTS_BYTES:,} are accepted")


def checked_arrays(state: dict, what: str) -> dict[str, np.ndarray]:
    """``state`` with every value a finite floating-point array of magnitude <= MAX_WEIGHT, as float32;
    StyleError naming the first damaged array otherwise (NaN, 1e30 and integer weights give black or
    white pictures, never an error, if they reach the network)."""
    out = {}
    for key, value in state.items():
        if not isinstance(value, np.ndarray):
            raise StyleError(f"{what}: {key!s:.80} is not a tensor ({type(value).__name__})")
        if value.dtype.kind != "f":
            raise StyleError(f"{what}: damaged weights ({key!s:.80} has integer type {value.dtype})")
        value = value.astype(np.float32)
        if value.size and not bool(np.isfinite(value).all()):
            raise StyleError(f"{what}: damaged weights ({key!s:.80} holds NaN or infinite values)")
        if value.size and float(np.abs(value).max()) > MAX_WEIGHT:
            raise StyleError(f"{what}: damaged weights ({key!s:.80} holds values beyond +-{MAX_WEIGHT:g})")
        out[key] = value
    return out


def _net_from_state(state: Mapping[str, object], what: str) -> Net:
    try:
        return Net(state)
    except (ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise StyleError(f"{what}: not a CSRNet ({PARAMETER_COUNT:,} parameters) state_dict: {first}") from None
