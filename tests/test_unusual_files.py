"""Issue 35, part A: unusual but honest photos are written whole, and hostile files cost what their
size allows.

As in test_dos_bounds.py, hostile.py builds each file at the size the issue measured and a child
process (capped_entry.py) runs it through an entry point under RLIMIT_AS = 2 GB and a CPU cap
(``hostile.run_capped``); a fresh process also means nothing read earlier can make a case pass.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from PIL import Image

import hostile

REPO = Path(__file__).resolve().parents[1]
ENTRY = [sys.executable, str(REPO / "tests" / "capped_entry.py")]
PER_FILE_S = 20.0  # the bound for one file on a 2-core machine


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def _run(folder: Path, out: Path, entry: str = "cli", ext: str = ".png", **caps) -> list[dict]:
    out.mkdir(exist_ok=True)
    capped = hostile.run_capped([*ENTRY, "photos", entry, str(folder), str(out), ext], cwd=REPO, **caps)
    results = hostile.check_child(capped, len(list(folder.iterdir())))
    for r in results:
        assert r["s"] < PER_FILE_S, f"{entry}: {r['name']} took {r['s']} s"
    return results


def _one_line(r: dict) -> str:
    message = r["message"].removeprefix("csr: error: ")
    assert "\n" not in message and r["name"] in message and "unexpected" not in message, message
    return message


def test_large_xmp_is_written_to_jpeg(tmp_path):
    """Item 1: 2,000 keywords in one ordinary XMP segment and a PNG's 130 KB of XMP are written to
    JPEG (split into extended XMP) by a process that read no extended XMP before: exiv2 then lacked
    the xmpNote namespace and nothing was written."""
    from csr_core.image_io import load_photo

    description = " ".join(f"word{i}" for i in range(20_000))  # ~130 KB
    files = {"keywords-2000.jpg": hostile.jpeg_with_xmp(hostile.xmp_keywords(2000)),
             "xmp-130kb.png": hostile.png_with_xmp(hostile.xmp_packet(
                 f'<dc:description><rdf:Alt><rdf:li xml:lang="x-default">{description}</rdf:li></rdf:Alt>'
                 "</dc:description>"))}
    assert 45_000 < len(files["keywords-2000.jpg"]) < 65_000
    for r in _run(_write(tmp_path / "in", files), tmp_path / "out", ext=".jpg"):
        assert r["outcome"] == "ok", r
    meta = {p.stem: load_photo(p).meta for p in (tmp_path / "out").iterdir()}
    assert meta["keywords-2000"].get("Xmp.dc.subject").count(",") == 1999
    assert meta["xmp-130kb"].get("Xmp.dc.description").endswith("word19999")


def test_extended_xmp_of_many_properties_is_split_quickly(tmp_path):
    """Item 2: 115 KB of extended XMP in 2,500 small properties is written back in well under the
    bound (it took 35 s here, and minutes at 5,000, when the split moved one property at a time)."""
    from csr_core.image_io import load_photo

    files = {"extended-2500.jpg": hostile.jpeg_with_xmp(hostile.xmp_packet(""),
                                                        extended=hostile.xmp_many_properties(2500))}
    assert len(files["extended-2500.jpg"]) > 100_000
    [r] = _run(_write(tmp_path / "in", files), tmp_path / "out", ext=".jpg")
    assert r["outcome"] == "ok" and r["s"] < 20, r
    meta = load_photo(tmp_path / "out" / "extended-2500.jpg").meta
    assert sum(d.key().startswith("Xmp.t.") for d in meta.xmp) == 2500


THIN = {"4096x1.png": (1, 4096), "10000x3.jpg": (3, 10000), "2x20000.tif": (20000, 2)}


def test_thin_strips_are_retouched(tmp_path):
    """Item 16: valid photos one to three pixels high or wide are retouched, not refused with
    "unexpected error (OpenCV ... resize)"."""
    import numpy as np

    from csr_core.image_io import load_photo

    folder = _write(tmp_path / "in", {name: hostile.encode(Image.fromarray(hostile.pixels(h, w)), fmt) for
                                      (name, (h, w)), fmt in zip(THIN.items(), ("PNG", "JPEG", "TIFF"))})
    for r in _run(folder, tmp_path / "out"):
        assert r["outcome"] == "ok", r
        out = load_photo(tmp_path / "out" / f"{Path(r['name']).stem}.png").rgb
        assert out.shape == (*THIN[r["name"]], 3) and np.ptp(out) > 0


def test_thin_strips_are_scored(tmp_path, toy_registry):
    """Item 16: ``csr eval`` on pairs of thin strips scores them instead of aborting."""
    from pairs_util import write_pairs

    from csr_core.evaluate import evaluate

    for h, w in THIN.values():
        res = evaluate(write_pairs(tmp_path / f"{h}x{w}", 2, size=(h, w)), "auto", registry=toy_registry)
        assert [r["size"] for r in res["pairs"]] == [[w, h]] * 2 and res["mean"]["auto"]["psnr"] > 0


def test_icc_profile_too_large_for_jpeg_is_dropped_with_a_warning(tmp_path):
    """Item 17: a 60 MB (sRGB) profile cannot go into JPEG (exiv2 writes at most 255 APP2 chunks):
    the photo is written without it and one warning says so, as for what other formats cannot hold."""
    from csr_core.image_io import load_photo

    folder = _write(tmp_path / "in", {"icc-60mb.tif": hostile.tiff(hostile.pixels(12, 16),
                                                                     iccprofile=hostile.icc_padded(60 << 20))})
    [r] = _run(folder, tmp_path / "out", ext=".jpg")
    assert r["outcome"] == "ok" and any("cannot hold an ICC profile of 63 MB" in w for w in r["warnings"]), r
    assert load_photo(tmp_path / "out" / "icc-60mb.jpg").icc_profile is None


def test_fifo_input_is_named_as_such(tmp_path):
    """Item 19: a FIFO given as the photo is refused as what it is (it was "no such file or folder"),
    without blocking on it."""
    import os

    os.mkfifo(tmp_path / "photo.jpg")
    run = lambda name: hostile.run_capped([sys.executable, "-m", "csr_cli.main", "retouch",  # noqa: E731
                                           str(tmp_path / name), "-o", str(tmp_path / "out.jpg")], cwd=REPO, wall_s=60)
    fifo, missing = run("photo.jpg"), run("missing.jpg")
    assert fifo.returncode == missing.returncode != 0 and not fifo.hit_cap
    assert fifo.stderr.splitlines()[0].endswith("photo.jpg: not a regular file (a pipe or device); to read a stream, "
                                                "pass '-' for stdin"), fifo.stderr


# ----------------------------------------------------------------------------- cost out of proportion

COSTLY = {  # name: (bytes, expected outcome, or one per entry) at the sizes the issue measured
    "text-990x8mb.png": (lambda: hostile.png_compressed_text(990), "ok"),  # item 7: 19-29 s in libpng
    # item 5: 3.4 GB to decode; now as its pixels cost (the web app's 50 MP limit refuses it)
    "flat-14000.webp": (lambda: hostile.webp_flat_lossless(14000, 14000), {"core": "ok", "cli": "ok", "web": "error"}),
    # item 3: developed by LibRaw as 196 MP (84 s, 3.1 GB), past the TIFF tile-overlap check
    "tiles-shared-14000.dng": (lambda: hostile.dng_shared_tiles(14000, 14000), "error"),
    # item 6: passed the decode budget, then took 62 s and 7.4 GB; refused: the run needs 7 GB
    "float32-14000.tif": (lambda: hostile.tiff_float32_tiles(14000, 14000), "error"),
}


@pytest.fixture(scope="module")
def costly(tmp_path_factory) -> Path:
    return _write(tmp_path_factory.mktemp("costly"), {name: make() for name, (make, _) in COSTLY.items()})


@pytest.mark.parametrize("entry", ["core", "cli", "web"])
def test_costly_files_stay_within_bounds(costly, tmp_path, entry):
    """Items 3-7: each file is refused with one line, or retouched, within the bound."""
    for r in _run(costly, tmp_path / "out", entry, ext=".jpg"):  # JPEG: the quickest encoder, for margin
        expected = COSTLY[r["name"]][1]
        assert r["outcome"] == (expected if isinstance(expected, str) else expected[entry]), r
        if r["outcome"] == "error":
            _one_line(r)


def test_run_budget_covers_the_whole_run(tmp_path):
    """Item 6: a float32 TIFF just within the budget (RUN_COPIES x its working pixels) is retouched
    to TIFF and PNG within that budget, measured for the whole child process."""
    from csr_core.image_io import BYTES_PER_PIXEL, RUN_COPIES

    side = 3000  # 9 MP: 108 MB of float32 pixels
    max_pixels = RUN_COPIES * side * side * 12 // BYTES_PER_PIXEL
    folder = _write(tmp_path / "in", {"float32.tif": hostile.tiff_float32_tiles(side, side)})
    env = {**__import__("os").environ, "CSR_MAX_PIXELS": str(max_pixels)}
    base = hostile.run_capped([sys.executable, "-c", "import csr_cli.main, csr_core.pipeline"], cwd=REPO, env=env)
    for ext in (".tif", ".png"):
        out = tmp_path / ext[1:]
        out.mkdir()
        capped = hostile.run_capped([*ENTRY, "photos", "cli", str(folder), str(out), ext], cwd=REPO, env=env)
        [r] = hostile.check_child(capped, 1)
        assert r["outcome"] == "ok", r
        assert capped.peak_mb - base.peak_mb < max_pixels * BYTES_PER_PIXEL / 2**20, (capped.peak_mb, base.peak_mb)


HEIF = {  # item 4: each cost 4-9 s and up to 2.2 GB, decoded at the size declared
    "ispe-14000.avif": lambda: hostile.heif_declaring("AVIF", 14000, 14000),  # libavif scales 8x8 up to it
    "ispe-14000.heic": lambda: hostile.heif_declaring("HEIC", 14000, 14000),
    "grid-shared-14000.avif": lambda: hostile.heif_shared_grid("AVIF", 14000, 14000),  # 3,025 tiles, ~140 kB
    # 784 tiles of 512: libheif itself refuses more than 1,000 items
    "grid-shared-14000.heic": lambda: hostile.heif_shared_grid("HEIC", 14000, 14000, tile=512),
}


@pytest.mark.parametrize("entry", ["core", "cli", "web"])
def test_heif_declaring_more_than_its_data_is_refused_at_once(tmp_path, entry):
    """Item 4: a size box claiming 14000x14000 on an 8x8 image, and grids whose tiles all point at
    one tile's data, are refused from their structure (heif_guard) in well under a second."""
    from PIL import features

    pytest.importorskip("pillow_heif", reason="the 'heif' extra (pillow-heif) is not installed")
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    folder = _write(tmp_path / "in", {name: make() for name, make in HEIF.items()})
    for r in _run(folder, tmp_path / "out", entry, ext=".jpg"):
        assert r["outcome"] == "error" and r["s"] < 1, r
        assert re.search(r": refusing (an AVIF|a HEIF) (image that declares 14000x14000|grid whose [\d,]+ tiles share)",
                         _one_line(r)), r


def test_damaged_raw_gives_one_error_line(tmp_path):
    """Item 19: LibRaw prints "unknown file: Unexpected end of file" on fd 2 itself; the csr command
    keeps it out (native_stderr), alone and in a batch beside a good RAW, and says it in one line."""
    pytest.importorskip("rawpy", reason="the 'raw' extra (rawpy) is not installed")
    from test_metadata import write_dng

    (tmp_path / "cut.dng").write_bytes(hostile.dng_cut_short())
    write_dng(tmp_path / "good.dng")
    csr = [sys.executable, "-m", "csr_cli.main", "retouch"]
    alone = hostile.run_capped([*csr, str(tmp_path / "cut.dng"), "-o", str(tmp_path / "cut.tif")], cwd=REPO, wall_s=120)
    assert alone.returncode == 1 and not alone.hit_cap
    assert alone.stderr.splitlines() == [f"csr: error: {tmp_path / 'cut.dng'}: damaged or truncated RAW file: its "
                                         "image data ends early"], alone.stderr
    batch = hostile.run_capped([*csr, str(tmp_path / "good.dng"), str(tmp_path / "cut.dng"), "-o", str(tmp_path / "out")],
                               cwd=REPO, wall_s=120)
    assert batch.returncode == 1 and (tmp_path / "out" / "good.tif").exists()
    assert [line for line in batch.stderr.splitlines() if "cut.dng" in line or "Unexpected" in line] == \
        alone.stderr.splitlines(), batch.stderr


def test_other_native_output_is_passed_on(tmp_path):
    """While LibRaw's fd 2 is captured, what other native code prints there is passed on afterwards,
    and Python's own stderr (messages, progress, warnings) is never held back."""
    script = (
        "import os, sys\n"
        "from csr_core import native_stderr\n"
        "native_stderr.divert_python_stderr()\n"
        "with native_stderr.libraw_quiet():\n"
        "    with native_stderr.libraw_quiet():  # a second thread's decode\n"
        "        os.write(2, b'unknown file: Unexpected end of file\\nnative line\\n')\n"
        "    print('python line', file=sys.stderr)\n"
        "    os.write(2, b'shot.nef: data corrupted at 4096\\n')\n"
        "os.write(2, b'after\\n')\n")
    capped = hostile.run_capped([sys.executable, "-c", script], cwd=REPO, wall_s=60)
    assert capped.returncode == 0 and capped.stderr.splitlines() == ["python line", "native line", "after"], capped.stderr
