"""Property / fuzz tests (hypothesis; atheris when installed) of the parsers that read untrusted data.

- the image loader: mutated valid PNG/JPEG/TIFF/WebP/GIF/BMP bytes -> a Photo or an ImageError, quickly;
- the style registry: random / mutated / half-written manifest.json and user cards -> a clean listing
  or a StyleError, through Registry, ``csr styles`` and the web app's style table;
- pair discovery + load_pair: random trees of damaged files -> pairs or a PairsError.

``test_bad_user_cards_are_skipped_cleanly`` pins the card faults found here first (bad cond_size, missing base...).
Atheris: a 2-second run by default, a long one (CSR_FUZZ_SECONDS, default 300) with CSR_FUZZ=1.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import csr_core.pipeline as pipeline
from csr_cli.main import cli
from conftest import write_builtin
from csr_core.errors import ImageError, PairsError, StyleError
from csr_core.image_io import load_photo
from csr_core.pairs import discover_pairs, load_pair
from csr_core.registry import Registry
from hostile import corpus, seeds

REPO = Path(__file__).resolve().parents[1]
SEEDS = seeds()
MAX_PIXELS = 1_000_000  # mutated headers may declare anything up to this: keep each decode small
FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ----------------------------------------------------------------------------- image loader

def fix_png_crcs(data: bytes) -> bytes:
    """Recompute every chunk CRC, so that mutations reach the decoder instead of the CRC check."""
    out, pos = bytearray(data[:8]), 8
    while pos + 12 <= len(data):
        length = struct.unpack_from(">I", data, pos)[0]
        if pos + 12 + length > len(data):
            break
        body = data[pos + 4:pos + 8 + length]
        out += data[pos:pos + 8 + length] + struct.pack(">I", zlib.crc32(body))
        pos += 12 + length
    return bytes(out + data[pos:])


_INTS = st.sampled_from([0, 1, 2, 3, 4, 7, 8, 16, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF])


@st.composite
def mutated_image(draw):
    kind = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[kind])
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        if n < 2:
            break
        # half the positions in the headers, where the structure lives
        at = draw(st.integers(0, min(n - 1, 96)) | st.integers(0, n - 1))
        op = draw(st.sampled_from(["flip", "byte", "int16", "int32", "cut", "insert", "delete", "repeat"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[at] = draw(st.integers(0, 255))
        elif op in ("int16", "int32") and at + 4 <= n:
            fmt = draw(st.sampled_from("<>")) + ("H" if op == "int16" else "I")
            struct.pack_into(fmt, data, at, draw(_INTS) & (0xFFFF if op == "int16" else 0xFFFFFFFF))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "repeat":
            data[at:at] = data[at:at + draw(st.integers(1, 64))] * draw(st.integers(1, 8))
    if kind.startswith("png") and draw(st.booleans()):
        data = bytearray(fix_png_crcs(bytes(data)))
    return kind, bytes(data)


def check_load(data: bytes) -> None:
    t0 = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ph = load_photo(data, max_pixels=MAX_PIXELS, name="fuzz.bin")
    except ImageError as exc:
        msg = str(exc)
        assert msg.startswith("fuzz.bin: ") and "\n" not in msg, msg
    else:
        h, w, c = ph.rgb.shape
        assert c == 3 and h * w <= MAX_PIXELS and ph.rgb.dtype.name in ("uint8", "uint16", "float32")
        assert ph.rgb.flags.c_contiguous
        if ph.rgb.dtype == np.float32:
            assert np.isfinite(ph.rgb).all() and ph.rgb.min() >= 0 and ph.rgb.max() <= 1
        assert ph.alpha is None or ph.alpha.shape == (h, w)
    assert time.monotonic() - t0 < 10, "decoding took too long"


@settings(FUZZ, max_examples=200)
@given(mutated_image())
def test_mutated_images_decode_or_raise_image_error(sample):
    check_load(sample[1])


@settings(FUZZ, max_examples=40)
@given(st.binary(max_size=64), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\0", b"MM\0*",
                                                  b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBPVP8 "]))
def test_random_bytes_after_magic(tail, magic):
    check_load(magic + tail)


# ----------------------------------------------------------------------------- style registry

_SEED_DIR = Path(tempfile.mkdtemp(prefix="csr-fuzz-seed-"))
_CARD = write_builtin(_SEED_DIR)
_BLOB = (_SEED_DIR / "auto.safetensors").read_bytes()
_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                  st.text(max_size=6), st.sampled_from(["full", "condition", "auto.safetensors", _CARD["sha256"],
                                                         "../../etc/passwd", "CON", "\x1b[2J"]))
_json = st.recursive(_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                     max_leaves=8)
_FIELDS = ["file", "sha256", "kind", "cond_size", "base", "description", "name", "scores", "architecture"]
_card = st.one_of(
    _json,
    st.fixed_dictionaries({}, optional={k: _json for k in _FIELDS}),
    st.builds(lambda drop, extra: {**{k: v for k, v in _CARD.items() if k not in drop}, **extra},
              st.sets(st.sampled_from(sorted(_CARD))), st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=2)),
    st.builds(lambda base: {**_CARD, "kind": "condition", "base": base},
              st.fixed_dictionaries({"name": _json, "sha256": st.sampled_from([_CARD["sha256"], "0" * 64])})),
)
_names = st.sampled_from(["auto", "mine", "x", "../../x", "CON", "con", "a b", "Auto", "", "é"])


def _manifest_cards(manifest) -> list:
    if isinstance(manifest, dict) and isinstance(manifest.get("styles"), dict):
        return list(manifest["styles"].values())
    return []


@st.composite
def registry_tree(draw):
    manifest = draw(st.one_of(_json, st.fixed_dictionaries({"format": _leaf, "styles": st.dictionaries(
        _names, _card, max_size=2)})))
    text = json.dumps(manifest)
    if draw(st.integers(0, 4)) == 0:  # a half-written manifest
        text = text[:draw(st.integers(0, len(text)))]
        manifest = None
    users = draw(st.dictionaries(_names, st.tuples(_card, st.sampled_from(["ok", "half", "binary"]),
                                                   st.sampled_from(["ok", "tampered", "empty", "missing"])),
                                 max_size=3))
    return manifest, text, users


def _write_tree(root: Path, text: str, users: dict) -> Registry:
    b, u = root / "builtin", root / "user"
    b.mkdir()
    u.mkdir()
    (b / "manifest.json").write_text(text, "utf-8")
    (b / "auto.safetensors").write_bytes(_BLOB)
    for name, (card, how, weights) in users.items():
        if not name or "/" in name:
            continue  # not a file name (names like '../../x' are covered by the listing of others)
        raw = json.dumps(card)
        data = {"ok": raw.encode(), "half": raw[: len(raw) // 2].encode(), "binary": b"\xff\xfe{"}[how]
        (u / f"{name}.json").write_bytes(data)
        blob = {"ok": _BLOB, "tampered": _BLOB[:-1] + b"!", "empty": b"", "missing": None}[weights]
        if blob is not None:
            (u / f"{name}.safetensors").write_bytes(blob)
    return Registry(b, u)


def _cli_ok(args) -> None:
    res = CliRunner().invoke(cli, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, repr(res.exception))
    assert "Traceback" not in res.output and res.exit_code in (0, 1, 2), (args, res.output)
    if res.exit_code:
        assert "csr: error:" in res.output, (args, res.output)


@settings(FUZZ, max_examples=60)
@given(registry_tree())
def test_registry_listing_never_crashes(tree):
    manifest, text, users = tree
    with tempfile.TemporaryDirectory() as d:
        reg = _write_tree(Path(d), text, users)
        old = pipeline._registry
        pipeline._registry = reg
        try:
            try:
                styles = reg.styles()
            except StyleError as exc:
                assert "\n" not in str(exc) and "manifest" in str(exc)
                styles = []
            for s in styles:
                assert reg.get(s.name) is not None
                try:
                    reg.look(s.name)
                except StyleError as exc:
                    assert "\n" not in str(exc)
            _cli_ok(["styles", "list"])
            _cli_ok(["styles", "list", "--json"])
            for s in styles[:2]:
                _cli_ok(["styles", "show", s.name])
            try:
                from csr_plugins.gradio_app.service import Limits, Service
            except ImportError:
                return
            svc = Service(reg, Limits())
            try:
                svc.table()
            except StyleError:
                pass
            finally:
                svc.close()
        finally:
            pipeline._registry = old


CARD_BUGS = {
    "no cond_size": {k: v for k, v in _CARD.items() if k != "cond_size"},
    "cond_size text": {**_CARD, "cond_size": "big"},
    "cond_size 10**9": {**_CARD, "cond_size": 10**9},
    "cond_size 0": {**_CARD, "cond_size": 0},
    "condition without base": {**_CARD, "kind": "condition"},
    "card has 'name'": {**_CARD, "name": "other"},
    "scores a list": {**_CARD, "scores": [1, 2]},
}


@pytest.mark.parametrize("bug", sorted(CARD_BUGS))
def test_bad_user_cards_are_skipped_cleanly(bug, tmp_path, monkeypatch):
    """A user card with a bad field is refused or ignored with a clear message, never a crash."""
    reg = _write_tree(tmp_path, json.dumps({"format": 1, "styles": {"auto": _CARD}}),
                      {"mine": (CARD_BUGS[bug], "ok", "ok")})
    monkeypatch.setattr(pipeline, "_registry", reg)
    for args in (["styles", "list"], ["styles", "list", "--json"], ["styles", "show", "mine"]):
        _cli_ok(args)
    try:
        pipeline.retouch(np.zeros((8, 8, 3), np.uint8), "mine", registry=reg)
    except StyleError:
        pass
    from csr_plugins.gradio_app.service import Limits, Service

    svc = Service(reg, Limits())
    try:
        svc.table()
    finally:
        svc.close()


# ----------------------------------------------------------------------------- pairs

_CONTENT = {c.name: c.data for c in corpus() if c.name in (
    "plain-png.png", "plain-jpg.jpg", "rgb16-tif.tif", "half-png.png", "text.jpg", "empty-png.png", "bomb-ihdr.png",
    "1x1-png.png", "cmyk-jpg.jpg", "animated-gif.gif", "float32.tif", "gray-alpha-png.png", "orient-6-t3.jpg")}


@settings(FUZZ, max_examples=25)
@given(st.lists(st.tuples(
    st.sampled_from(["", "before/", "after/", "input/", "expertC/", "After/"]),
    st.sampled_from(["a0001", "a0002", "x", "img 2", "ü"]),
    st.sampled_from(["", "_input", "_target", "_before", "_after"]),
    st.sampled_from([".png", ".jpg", ".tif", ".webp"]),
    st.one_of(st.sampled_from(sorted(_CONTENT)).map(_CONTENT.get), mutated_image().map(lambda s: s[1])),
), min_size=1, max_size=8))
def test_pairs_with_damaged_files(entries):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for folder, stem, role, ext, data in entries:
            p = root / f"{folder}{stem}{role}{ext}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
        try:
            pairs, problems = discover_pairs(root, expert="C")
        except PairsError as exc:
            assert "\n" not in str(exc)
            return
        assert all("\n" not in line for line in problems)
        for pair in pairs:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    before, after, notes = load_pair(pair, max_side=16)
            except PairsError as exc:
                assert "\n" not in str(exc)
            else:
                assert before.shape == after.shape and before.dtype == after.dtype == np.float32
                assert max(before.shape[:2]) <= 16 and np.isfinite(before).all() and np.isfinite(after).all()


# ----------------------------------------------------------------------------- atheris

ATHERIS_DRIVER = textwrap.dedent("""
    import sys, warnings
    import atheris
    with atheris.instrument_imports(include=["csr_core"]):
        from csr_core.image_io import load_photo
        from csr_core.errors import ImageError
    sys.path.insert(0, "tests")
    from hostile import seeds
    SEEDS = list(seeds().values())
    warnings.simplefilter("ignore")

    def one(data):
        fdp = atheris.FuzzedDataProvider(data)
        base = bytearray(SEEDS[fdp.ConsumeIntInRange(0, len(SEEDS) - 1)])
        for _ in range(fdp.ConsumeIntInRange(0, 4)):  # overwrite a few bytes of a valid file
            if base:
                base[fdp.ConsumeIntInRange(0, len(base) - 1)] = fdp.ConsumeInt(1) & 255
        tail = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
        blob = bytes(base[:fdp.ConsumeIntInRange(0, len(base))]) + tail if fdp.ConsumeBool() else bytes(base)
        try:
            load_photo(blob, max_pixels=1_000_000)
        except ImageError:
            pass

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
""")


def _atheris(seconds: int, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    (tmp_path / "corpus").mkdir()
    driver = tmp_path / "fuzz_load_photo.py"
    driver.write_text(ATHERIS_DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run([sys.executable, str(driver), f"-max_total_time={seconds}", "-timeout=20",
                          "-rss_limit_mb=3072", f"-artifact_prefix={tmp_path}/", str(tmp_path / "corpus")],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=seconds + 120)
    crashes = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
    assert res.returncode == 0 and not crashes, f"atheris found {crashes}:\n{res.stderr[-3000:]}"
    assert "Done" in res.stderr or "DONE" in res.stderr, res.stderr[-2000:]


def test_atheris_load_photo_quick(tmp_path):
    """A 2-second coverage-guided run of load_photo on mutated valid files (skipped without atheris)."""
    _atheris(2, tmp_path)


@pytest.mark.skipif(os.environ.get("CSR_FUZZ") != "1", reason="long fuzz run: set CSR_FUZZ=1 (CSR_FUZZ_SECONDS)")
def test_atheris_load_photo_long(tmp_path):
    _atheris(int(os.environ.get("CSR_FUZZ_SECONDS", "300")), tmp_path)
