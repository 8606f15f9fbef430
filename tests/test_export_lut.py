"""``csr export-lut`` and ``csr retouch --exact`` through click's CliRunner on the toy registry."""

import imagecodecs
import numpy as np
import pytest
from click.testing import CliRunner

from csr_cli import export_lut
from csr_cli.main import cli
from csr_core import inference, lut as L
from csr_core.lut import DEFAULT_SIZE
from csr_core.pipeline import retouch
from csr_core.image_io import load_photo
from csr_core.inference import apply_base, base_fn, look_modulation

from conftest import lively_model
from test_lut import numpy_trilinear, photo_like, read_cube


@pytest.fixture
def reg(toy_registry, monkeypatch):
    """The toy registry plus a user style 'lively' (the toy 'auto' turns everything black)."""
    import csr_core.pipeline as pipeline

    toy_registry.save_style("lively", lively_model().state_dict(), {"description": "test", "cond_size": 64})
    monkeypatch.setattr(pipeline, "_registry", toy_registry)
    return toy_registry


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "in.png"
    path.write_bytes(imagecodecs.png_encode(photo_like(90, 120, seed=5)))
    return path


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_export_cube_matches_retouch(reg, photo, tmp_path):
    out = tmp_path / "look.cube"
    r = invoke("export-lut", photo, "-o", out, "--strength", "0.8", "-s", "lively")
    assert r.exit_code == 0, r.output
    assert f"{DEFAULT_SIZE}^3" in r.output and export_lut.CUBE_SIZE == DEFAULT_SIZE  # the size retouching uses
    assert "# sRGB-encoded input and output\n" in out.read_text()
    lut = read_cube(out)
    assert lut.shape == (DEFAULT_SIZE,) * 3 + (3,)
    retouched = retouch(load_photo(photo).rgb, reg.look("lively"), 0.8)  # what `csr retouch` writes
    assert np.abs(np.rint(numpy_trilinear(load_photo(photo).rgb / 255.0, lut) * 255) - retouched).max() <= 1
    assert "sRGB-encoded input and output" in " ".join(invoke("export-lut", "--help").output.split())
    rgb = load_photo(photo).rgb
    look = reg.look("lively")
    exact = apply_base(look.base, rgb, look_modulation(look, rgb), 0.8)
    via_cube = np.rint(numpy_trilinear(rgb / 255.0, lut) * 255)
    assert np.abs(exact.astype(int) - rgb).mean() > 5 and np.abs(via_cube - exact).max() <= 3
    assert invoke("export-lut", photo, "-o", out, "--size", "9", "--overwrite").exit_code == 0
    assert read_cube(out).shape[0] == 9


def test_export_hald(reg, photo, tmp_path):
    r = invoke("export-lut", photo, "-o", tmp_path / "look.png", "--level", "4", "--style", "lively")
    assert r.exit_code == 0, r.output
    hald = imagecodecs.png_decode((tmp_path / "look.png").read_bytes())
    assert hald.shape == (64, 64, 3) and hald.dtype == np.uint16
    rgb = load_photo(photo).rgb
    look = reg.look("lively")
    lut = L.bake_lut(base_fn(look.base, look_modulation(look, rgb)), 16)
    assert np.abs(hald.reshape(16, 16, 16, 3).transpose(2, 1, 0, 3) / 65535 - lut).max() < 1e-4


@pytest.mark.parametrize("args, code, message", [
    (["-o", "{tmp}/x.txt"], 2, ".cube"),
    (["-o", "{tmp}/x.png", "--size", "33"], 2, "--level"),
    (["-o", "{tmp}/x.cube", "--level", "8"], 2, "--size"),
    (["-o", "{tmp}/x.cube", "--style", "nope"], 2, "unknown style"),
    (["-o", "{tmp}/exists.cube"], 1, "already exists"),
])
def test_export_errors(reg, photo, tmp_path, args, code, message):
    (tmp_path / "exists.cube").write_text("keep")
    r = invoke("export-lut", photo, *[a.format(tmp=tmp_path) for a in args])
    assert r.exit_code == code and message in r.output and "Traceback" not in r.output
    assert (tmp_path / "exists.cube").read_text() == "keep"


@pytest.mark.parametrize("link", [None, "symlink_to", "hardlink_to"])
def test_export_never_replaces_the_photo(reg, photo, tmp_path, link):
    """--overwrite replaces an earlier LUT, never PHOTO itself, however the output names it."""
    out = photo if link is None else tmp_path / "link.png"
    if link:
        getattr(out, link)(photo)
    before = photo.read_bytes()
    r = invoke("export-lut", photo, "-o", out, "--overwrite")
    assert r.exit_code == 1 and r.output.strip() == f"csr: error: {photo}: refusing to overwrite the input " \
        "(choose another output)"
    assert photo.read_bytes() == before


def test_export_missing_photo(reg, tmp_path):
    r = invoke("export-lut", tmp_path / "none.jpg", "-o", tmp_path / "x.cube")
    assert r.exit_code == 1 and "none.jpg" in r.output and not (tmp_path / "x.cube").exists()


def test_export_reads_the_photo_from_stdin(reg, photo, tmp_path):
    """'-' reads the photo from stdin, as csr retouch does: the same LUT as from the file."""
    r = CliRunner().invoke(cli, ["export-lut", "-", "-o", str(tmp_path / "in.cube"), "-s", "lively"],
                           input=photo.read_bytes())
    assert r.exit_code == 0 and r.output.endswith("for <stdin>\n"), r.output
    assert invoke("export-lut", photo, "-o", tmp_path / "file.cube", "-s", "lively").exit_code == 0
    from_file, from_stdin = ((tmp_path / n).read_text().splitlines() for n in ("file.cube", "in.cube"))
    assert from_stdin[0] == 'TITLE "csr lively x1 for <stdin>"' and from_stdin[1:] == from_file[1:]
    empty = CliRunner().invoke(cli, ["export-lut", "-", "-o", str(tmp_path / "e.cube")], input=b"")
    assert empty.exit_code == 1 and empty.output == "csr: error: <stdin>: empty file\n", empty.output


def test_retouch_exact_flag(reg, photo, tmp_path, monkeypatch):
    monkeypatch.setattr(inference, "LUT_SIZE", 17)  # 10800 pixels > 17^3: the default is the LUT path
    assert invoke("retouch", photo, "-o", tmp_path / "lut.png", "-s", "lively").exit_code == 0
    r = invoke("retouch", photo, "-o", tmp_path / "exact.png", "--exact", "-s", "lively")
    assert r.exit_code == 0, r.output
    rgb = load_photo(photo).rgb
    look = reg.look("lively")
    mod = look_modulation(look, rgb)
    fast = load_photo(tmp_path / "lut.png").rgb
    exact = load_photo(tmp_path / "exact.png").rgb
    assert np.array_equal(exact, apply_base(look.base, rgb, mod))
    assert np.array_equal(fast, L.apply_lut(rgb, L.bake_lut(base_fn(look.base, mod), 17)))
    assert not np.array_equal(fast, exact) and np.abs(fast.astype(int) - exact).max() <= 4


def test_retouch_folder_in_parallel(reg, photo, tmp_path):
    src = tmp_path / "shoot"
    src.mkdir()
    for i in range(5):
        (src / f"{i}.png").write_bytes(photo.read_bytes())
    (src / "bad.png").write_bytes(b"not a png")
    r = invoke("retouch", src, "-o", tmp_path / "out", "-s", "lively")
    assert r.exit_code == 1 and "bad.png" in r.output and "5 retouched, 0 skipped, 1 failed" in r.output
    outs = [load_photo(tmp_path / "out" / f"{i}.png").rgb for i in range(5)]
    assert all(np.array_equal(o, outs[0]) for o in outs) and not np.array_equal(outs[0], load_photo(photo).rgb)


def test_default_hald_is_64_cubed_and_reproduces_retouch(reg, photo, tmp_path):
    """A Hald CLUT's lattice is its level squared: the default level 8 is 64^3 (not the .cube's 65^3),
    and applying it still gives what `csr retouch` writes within one 8-bit level."""
    out = tmp_path / "look.png"
    r = invoke("export-lut", photo, "-o", out, "--style", "lively")
    assert r.exit_code == 0 and "Hald CLUT level 8 (64^3)" in r.output, r.output
    hald = imagecodecs.png_decode(out.read_bytes())
    assert hald.shape == (512, 512, 3)
    lut = hald.reshape(64, 64, 64, 3).transpose(2, 1, 0, 3) / 65535
    rgb = load_photo(photo).rgb
    retouched = retouch(rgb, reg.look("lively"), 1.0)
    assert np.abs(np.rint(numpy_trilinear(rgb / 255.0, lut) * 255) - retouched).max() <= 1
    assert "64^3" in " ".join(invoke("export-lut", "--help").output.split())
