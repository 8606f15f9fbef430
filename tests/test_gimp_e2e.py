"""End to end in a real headless GIMP 3 (Debian 13 chroot built by .ci/gimp-chroot.sh).

Set CSR_GIMP_ROOT to the chroot; needs root (bind mounts). The repo, this Python and pytest's temp
folder are bind-mounted into the chroot at the same paths (gimp_chroot.py), so the plug-in calls this
very environment.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import lively_model
from gimp_chroot import Checkout, ChrootError, bind_mounts, gimp_batch, is_chroot, mount_paths

REPO = Path(__file__).resolve().parents[1]
ROOT = os.environ.get("CSR_GIMP_ROOT", "")
RECT = (60, 40, 300, 200)  # x, y, w, h of the selection (8-bit case)
RECT16 = (30, 20, 50, 36)

pytestmark = pytest.mark.skipif(
    not is_chroot(ROOT),
    reason="no GIMP 3 chroot: build it with .ci/gimp-chroot.sh and set CSR_GIMP_ROOT")


BATCH = r'''
import json, os, sys, time, traceback
import gi
gi.require_version("Gimp", "3.0"); gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, Gio, Gegl
import numpy as np
D = %(work)r
res = {}
pdb = Gimp.get_pdb()
proc = pdb.lookup_procedure("python-fu-csr-retouch")
assert proc is not None, "python-fu-csr-retouch is not registered"

def load(name):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(D, name)))

def call(key, img, drawables, style="tstyle", strength=1.0, **more):
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", drawables)
    cfg.set_property("style", style)
    cfg.set_property("strength", strength)
    for name, value in more.items():
        cfg.set_property(name.replace("_", "-"), value)
    t = time.time()
    r = proc.run(cfg)
    status = r.index(0)
    msg = r.index(1) if r.length() > 1 and isinstance(r.index(1), str) else pdb.get_last_error()
    res[key] = dict(status=status.value_nick, message=msg, seconds=round(time.time() - t, 2))

def pixels(layer, fmt, dtype, key):
    w, h = layer.get_width(), layer.get_height()
    data = layer.get_buffer().get(Gegl.Rectangle.new(0, 0, w, h), 1.0, fmt, Gegl.AbyssPolicy.CLAMP)
    np.save(os.path.join(D, key + ".npy"), np.frombuffer(data, dtype).reshape(h, w, -1))

img = load("in8.png")
img.select_rectangle(Gimp.ChannelOps.REPLACE, *%(rect)r)
call("u8", img, img.get_layers())
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(os.path.join(D, "out8.png")), None)

mix = load("in8.png")
call("mix", mix, mix.get_layers(), style="C", mix_with="auto", mix_amount=0.3)
Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, mix, Gio.File.new_for_path(os.path.join(D, "out_mix.png")), None)
call("mix_unknown", mix, mix.get_layers(), style="C", mix_with="nope", mix_amount=0.3)
huge = Gimp.Image.new(15000, 14000, Gimp.ImageBaseType.RGB)  # GIMP makes such a layer in no time
huge.insert_layer(Gimp.Layer.new(huge, "huge", 15000, 14000, Gimp.ImageType.RGBA_IMAGE, 100.0,
                                 Gimp.LayerMode.NORMAL), None, 0)
call("huge", huge, huge.get_layers())

img16 = load("in16.png")
res["precision16"] = img16.get_precision().value_nick
img16.select_rectangle(Gimp.ChannelOps.REPLACE, *%(rect16)r)
call("u16", img16, img16.get_layers(), strength=0.6)
pixels(img16.get_layers()[0], "R'G'B' u16", np.uint16, "out16")

for key, precision, select in (("float", Gimp.Precision.FLOAT_NON_LINEAR, False),
                               ("linear", Gimp.Precision.FLOAT_LINEAR, True)):
    im = load("in16.png")
    im.convert_precision(precision)
    if select:
        im.select_rectangle(Gimp.ChannelOps.REPLACE, *%(rect16)r)
    call(key, im, im.get_layers())
    pixels(im.get_layers()[0], "R'G'B' float", np.float32, "out_" + key)

gray = load("in8.png")
gray.convert_grayscale()
call("gray", gray, gray.get_layers())
group = Gimp.GroupLayer.new(img, "group")
img.insert_layer(group, None, 0)
call("group", img, [group])
call("unknown_style", img16, img16.get_layers(), style="nope")
teach = pdb.lookup_procedure("python-fu-csr-teach-style")
timg = load("in8.png")
before = timg.get_layers()[0]
after = before.copy()
timg.insert_layer(after, None, 0)
after.brightness_contrast(0.15, 0.2)

def teach_call(key, name, finished=None):
    cfg = teach.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", timg)
    cfg.set_core_object_array("drawables", [after])
    cfg.set_property("before", before)
    cfg.set_property("after", after)
    cfg.set_property("name", name)
    if finished is not None:  # the optional folder; left out, it is empty
        cfg.set_property("finished", finished)
    r = teach.run(cfg)
    msg = r.index(1) if r.length() > 1 and isinstance(r.index(1), str) else pdb.get_last_error()
    res[key] = dict(status=r.index(0).value_nick, message=msg)

teach_call("teach", "taught")
teach_call("teach_finished", "taught_finished", os.path.join(D, "finished"))
teach_call("teach_no_folder", "taught_nowhere", os.path.join(D, "no_such_folder"))

cfg_path = os.path.join(%(plugin_dir)r, "csr_retouch.json")
with open(cfg_path) as fh:
    saved = fh.read()
with open(cfg_path, "w") as fh:  # as if the venv that ran `csr gimp install` were deleted
    json.dump(dict(json.loads(saved), python="/nonexistent/python3"), fh)
try:
    call("not_installed", img16, img16.get_layers())
finally:
    with open(cfg_path, "w") as fh:
        fh.write(saved)
with open(os.path.join(D, "results.json"), "w") as fh:
    json.dump(res, fh)
'''

LATER = r'''
import json, os
import gi
gi.require_version("Gimp", "3.0")
from gi.repository import Gimp, Gio
D = %(work)r
out = os.path.join(D, "later.json")
pdb = Gimp.get_pdb()
proc = pdb.lookup_procedure("python-fu-csr-retouch")
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(D, "in16.png")))
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", img.get_layers())
cfg.set_property("style", "later")
r = proc.run(cfg)
msg = r.index(1) if r.length() > 1 and isinstance(r.index(1), str) else pdb.get_last_error()
with open(out, "w") as fh:
    json.dump(dict(status=r.index(0).value_nick, message=msg), fh)
'''


def _write_inputs(work: Path) -> tuple[np.ndarray, np.ndarray]:
    import imagecodecs
    from PIL import Image

    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:480, 0:640] / 8  # 8-bit: over LUT_SIZE^3 pixels, so the baked-LUT path runs
    rgb = np.clip(np.stack([x * 2.5, y * 3 + 20, (x + y) * 1.5], -1) + rng.integers(0, 40, (480, 640, 3)),
                  0, 255).astype(np.uint8)
    alpha = np.linspace(128, 255, 640).astype(np.uint8)[None, :].repeat(480, 0)[..., None]
    rgba = np.concatenate([rgb, alpha], axis=2)
    Image.fromarray(rgba, "RGBA").save(work / "in8.png")
    y, x = np.mgrid[0:64, 0:96]  # 16-bit / float: small, the exact path
    noise = rng.integers(0, 40, (64, 96, 3))
    u16 = (np.stack([x * 600 + y * 40, y * 900, 60000 - x * 500], -1) + noise * 97).clip(0, 65535).astype(np.uint16)
    (work / "in16.png").write_bytes(imagecodecs.png_encode(u16))
    return rgba, u16


def _csr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "csr_cli.main", *args], check=True, cwd=REPO, timeout=300)


@pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts into the GIMP chroot need root")
def test_gimp_filter_matches_csr_retouch(tmp_path, tmp_path_factory, csr_home):
    from csr_core.image_io import load_photo
    from csr_core.pixels import to_float
    from csr_core.pipeline import retouch
    from csr_core.registry import Registry

    Registry().save_style("tstyle", lively_model().state_dict(), {"description": "random test style", "cond_size": 64})
    work = tmp_path / "work"
    work.mkdir()
    rgba, u16 = _write_inputs(work)
    (work / "finished").mkdir()  # finished photos for the teach procedure's optional folder
    from PIL import Image

    for i in range(4):
        Image.fromarray(np.clip(rgba[i * 40:i * 40 + 200, i * 60:i * 60 + 300, :3] * 1.1 + 12, 0, 255)
                        .astype(np.uint8)).save(work / "finished" / f"f{i}.png")
    try:
        mounts = mount_paths(REPO, tmp_path_factory.getbasetemp())
    except ChrootError as exc:
        pytest.skip(str(exc))
    profile = tmp_path / "profile"
    profile.mkdir()
    plugin_dir = Checkout(REPO).install(profile, tmp_path, device="cpu")
    (tmp_path / "home").mkdir()
    batch = BATCH % dict(work=str(work), rect=RECT, rect16=RECT16, plugin_dir=str(plugin_dir))
    env = dict(HOME=tmp_path / "home", GIMP3_DIRECTORY=profile, CSR_HOME=csr_home,
               CSR_GIMP_TEACH_CONFIG='{"steps": 2, "pixels": 256, "views": 1, "folds": 2, "val_pixels": 256}')
    t0 = time.time()
    with bind_mounts(ROOT, mounts):
        run = gimp_batch(ROOT, batch, env, timeout=600)
    log = run.stdout.decode(errors="replace")[-3000:] + run.stderr.decode(errors="replace")[-3000:]
    assert run.returncode == 0 and (work / "results.json").is_file(), log
    res = json.loads((work / "results.json").read_text())
    print(f"GIMP session {time.time() - t0:.1f} s; results {res}")

    # 8-bit RGBA, rectangular selection: equals `csr retouch` there, untouched elsewhere, alpha kept
    assert res["u8"]["status"] == "success", res["u8"]
    _csr("retouch", str(work / "in8.png"), "-o", str(work / "exp8.png"), "--style", "tstyle")
    out, exp = (np.asarray(load_photo(work / n).rgb, np.int32) for n in ("out8.png", "exp8.png"))
    alpha = load_photo(work / "out8.png").alpha
    x, y, w, h = RECT
    inside = np.zeros(out.shape[:2], bool)
    inside[y:y + h, x:x + w] = True
    print("8-bit max difference to csr retouch:", np.abs(out[inside] - exp[inside]).max())
    assert np.abs(out[inside] - exp[inside]).max() <= 1  # in fact 0: u8 travels as is
    assert np.abs(out[inside] - rgba[..., :3][inside]).max() > 10  # it did change something
    np.testing.assert_array_equal(out[~inside], rgba[..., :3][~inside])
    np.testing.assert_array_equal(np.squeeze(alpha), rgba[..., 3])

    # a mix of two styles (Mix with, Mix amount): csr retouch's --style 'C:0.7,auto:0.3'
    assert res["mix"]["status"] == "success", res["mix"]
    _csr("retouch", str(work / "in8.png"), "-o", str(work / "exp_mix.png"), "--style", "C:0.7,auto:0.3")
    out, exp = (np.asarray(load_photo(work / n).rgb, np.int32) for n in ("out_mix.png", "exp_mix.png"))
    assert np.abs(out - exp).max() <= 1

    # 16-bit: not squeezed through 8 bits (strength passed through)
    assert res["precision16"] == "u16-non-linear" and res["u16"]["status"] == "success", res
    _csr("retouch", str(work / "in16.png"), "-o", str(work / "exp16.png"), "--style", "tstyle", "--strength", "0.6")
    exp16 = load_photo(work / "exp16.png").rgb
    assert exp16.dtype == np.uint16
    exp16 = exp16.astype(np.int64)
    got16 = np.load(work / "out16.npy").astype(np.int64)
    x, y, w, h = RECT16
    inside = np.zeros(u16.shape[:2], bool)
    inside[y:y + h, x:x + w] = True
    assert np.abs(got16[inside] - exp16[inside]).max() <= 4  # << 257 = 1/255
    np.testing.assert_array_equal(got16[~inside], u16[~inside])

    # float (perceptual and linear precision): float32 all the way
    want = retouch(to_float(u16), "tstyle", 1.0)
    assert res["float"]["status"] == "success" and res["linear"]["status"] == "success", res
    np.testing.assert_allclose(np.load(work / "out_float.npy"), want, atol=1e-5)
    lin = np.load(work / "out_linear.npy")
    np.testing.assert_allclose(lin[inside], want[inside], atol=2e-4)
    np.testing.assert_allclose(lin[~inside], to_float(u16)[~inside], atol=2e-4)

    # "Teach style from layers": a before/after layer pair -> a user style every front end sees
    assert res["teach"]["status"] == "success", res["teach"]
    assert Registry().get("taught").kind == "condition"
    # ... and with the optional folder of finished photos, which the card counts
    assert res["teach_finished"]["status"] == "success", res["teach_finished"]
    assert Registry().get("taught_finished").card["training"]["data"]["finished"] == 4
    assert res["teach_no_folder"]["status"] == "execution-error", res["teach_no_folder"]
    assert "not a folder of finished photos" in (res["teach_no_folder"]["message"] or ""), res["teach_no_folder"]
    assert "taught_nowhere" not in Registry().names()
    # the plug-in recorded the new styles, so GIMP offers them in its style list after its next start
    recorded = json.loads((Path(plugin_dir) / "csr_retouch.json").read_text())["styles"]
    assert {"taught", "taught_finished"} <= set(recorded), recorded

    # a style made while GIMP is closed: GIMP's next session still lists the styles it registered, so a PDB
    # call is refused, with advice (restart) that then works
    def later_session():
        with bind_mounts(ROOT, mounts):
            run = gimp_batch(ROOT, LATER % dict(work=str(work)), env, timeout=300)
        assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
        return json.loads((work / "later.json").read_text())

    later_session()  # GIMP registers the plug-in with the styles of now
    Registry().save_style("later", lively_model().state_dict(), {"description": "made later", "cond_size": 64})
    first, second = later_session(), later_session()
    assert first["status"] == "execution-error" and "restart it to use one made since" in first["message"], first
    assert second["status"] == "success", second

    # refusals and failures come back as GIMP errors with one clear line
    for key, words in (("gray", "RGB images only"), ("group", "layer group"), ("not_installed", "csr gimp install"),
                       ("unknown_style", "unknown or missing style: pass one of"),
                       ("mix_unknown", "unknown or missing style to mix in: pass one of"),
                       ("huge", "CSRNet: the layer is too large: 15000x14000 (210 MP) exceeds csr's limit of 200 MP")):
        assert res[key]["status"] == "execution-error" and words in (res[key]["message"] or ""), (key, res[key])
