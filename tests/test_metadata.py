"""Metadata kept through csr, as an independent reader (exiftool) sees it; RAW and HEIF inputs;
metadata budgets against amplification (in a subprocess under a memory and time limit).

Inputs get their tags from exiftool too, so neither end of a comparison is exiv2's own word.
"""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from csr_core import batch
from csr_core.errors import install_command
from csr_core.image_io import load_photo, save_photo

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool is not installed "
                                    "(Debian: apt-get install libimage-exiftool-perl; CI installs it)")
EXT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}
# tags a photographer's file carries, as exiftool names and writes them (with -n values)
TAGS = {"IFD0:Make": "CsrCam", "IFD0:Model": "Model X", "ExifIFD:LensModel": "CSR 35mm F1.4",
        "ExifIFD:ExposureTime": 0.005, "ExifIFD:DateTimeOriginal": "2024:05:06 07:08:09",
        "ExifIFD:ISO": 400, "GPS:GPSLatitude": 48.8583, "GPS:GPSLatitudeRef": "N",
        "IPTC:By-line": "Jane Roe", "IPTC:Keywords": "harbour", "IPTC:CopyrightNotice": "(c) Jane Roe",
        "XMP-dc:Creator": "Jane Roe", "XMP-dc:Rights": "All rights reserved",
        "XMP-photoshop:Headline": "Boats at dawn"}


def exiftool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([EXIFTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=True)


def read_tags(path) -> dict:
    """Every tag exiftool finds, as {'Group1:Name': value} (numeric values, -n)."""
    out = json.loads(exiftool("-j", "-G1", "-a", "-n", "-struct", path).stdout)[0]
    return {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in out.items() if ":" in k}


def write_tags(path, tags: dict, *extra) -> None:
    exiftool("-q", "-overwrite_original", "-n", *[f"-{k}={v}" for k, v in tags.items()], *extra, path)


def scene(h=48, w=64) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x / (w - 1), y / (h - 1), (x + y) / (h + w)], -1)


def tagged_jpeg(path: Path, orientation: int = 6, thumbnail: bool = True) -> Path:
    Image.fromarray(np.rint(scene() * 255).astype(np.uint8)).save(path, "JPEG", quality=95)
    thumb = path.with_name("thumb_src.jpg")
    Image.new("RGB", (16, 12), "red").save(thumb, "JPEG")
    write_tags(path, {**TAGS, "IFD0:Orientation": orientation},
               *([f"-ThumbnailImage<={thumb}"] if thumbnail else []))
    return path


def save_quietly(photo, rgb, dest, **kw) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        save_photo(photo, rgb, dest, **kw)
    return [str(w.message) for w in caught]


# ----------------------------------------------------------------------------- against exiftool

@needs_exiftool
@pytest.mark.parametrize("fmt", list(EXT))
def test_tags_reach_every_output_format(tmp_path, fmt):
    src = tagged_jpeg(tmp_path / "in.jpg")
    before = read_tags(src)
    assert all(before.get(k) == v for k, v in TAGS.items()), "exiftool did not write the input's tags"
    photo = load_photo(src)
    out = tmp_path / f"out{EXT[fmt]}"
    messages = save_quietly(photo, photo.rgb, out, made={"style": "C", "strength": "0.7"})
    after = read_tags(out)
    lost = {k: v for k, v in TAGS.items() if after.get(k) != v}
    if fmt == "WEBP":  # WebP has no place for IPTC: named in the one warning, nothing else lost
        assert set(lost) == {k for k in TAGS if k.startswith("IPTC:")}
        assert messages == [f"{out}: WEBP cannot hold IPTC; not written"]
    else:
        assert lost == {} and messages == []
    h, w = photo.rgb.shape[:2]
    assert (h, w) == (64, 48)  # orientation 6 applied to the pixels ...
    assert after["IFD0:Orientation"] == 1  # ... and reset
    assert (after["ExifIFD:ExifImageWidth"], after["ExifIFD:ExifImageHeight"]) == (w, h)
    assert after["XMP-xmp:CreatorTool"].startswith("csr ")
    assert (after["XMP-csr:Style"], after["XMP-csr:Strength"]) == ("C", 0.7)
    # the thumbnail is regenerated from the result: upright, the result's shape, not the red stand-in
    thumb = Image.open(io.BytesIO(subprocess.run([EXIFTOOL, "-b", "-ThumbnailImage", str(out)],
                                                 capture_output=True, timeout=60).stdout))
    assert thumb.height > thumb.width and np.asarray(thumb.convert("RGB"))[..., 0].std() > 10


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_maker_note_preview_of_the_old_picture_is_dropped(tmp_path, fmt):
    """Cameras keep a preview of the picture inside their maker note (here Olympus's ThumbnailImage):
    carried to the result, viewers that show it would show the photo before retouching."""
    from csr_core import metadata
    exiv2 = metadata.library()
    src = tmp_path / "olympus.jpg"
    Image.fromarray(np.full((120, 160, 3), (40, 160, 60), np.uint8)).save(src, quality=95)
    red = io.BytesIO()
    Image.new("RGB", (160, 120), "red").save(red, "JPEG")
    image = exiv2.ImageFactory.open(str(src))
    image.readMetadata()
    exif = image.exifData()
    exif["Exif.Image.Make"], exif["Exif.Image.Model"] = "OLYMPUS IMAGING CORP.", "E-M1"
    exif["Exif.Olympus.Quality"] = exiv2.UShortValue(2)
    exif["Exif.Olympus.ThumbnailImage"] = exiv2.DataValue(red.getvalue())
    image.writeMetadata()

    def previews(path) -> list[int]:
        image = exiv2.ImageFactory.open(str(path))
        image.readMetadata()
        return [p.width_ for p in exiv2.PreviewManager(image).getPreviewProperties()]

    assert previews(src) == [160]
    photo = load_photo(src)
    out = tmp_path / f"out{EXT[fmt]}"
    save_photo(photo, photo.rgb, out)
    assert previews(out) == []
    after = load_photo(out).meta
    assert after.get("Exif.Olympus.Quality") == "2" and after.get("Exif.Image.Model") == "E-M1"


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
def test_thumbnail_of_a_16_bit_or_float_result_shows_it(tmp_path, dtype):
    """A 16-bit or float result (a RAW developed to TIFF: a CR2 carries an EXIF thumbnail) gets a
    thumbnail of its own picture, not a white one."""
    from csr_core import metadata
    exiv2 = metadata.library()
    src = tmp_path / "in.jpg"
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(src, quality=95)
    image = exiv2.ImageFactory.open(str(src))
    image.readMetadata()
    exif = image.exifData()
    exif["Exif.Image.Make"] = "CsrCam"
    red = io.BytesIO()
    Image.new("RGB", (16, 12), "red").save(red, "JPEG")
    exiv2.ExifThumb(exif).setJpegThumbnail(red.getvalue())
    image.writeMetadata()
    photo = load_photo(src)
    assert photo.meta.thumbnail
    top = 1.0 if dtype == np.float32 else 65535
    result = np.empty((48, 64, 3), dtype)
    result[...] = np.array([0.25, 0.5, 0.75]) * top
    out = tmp_path / "out.tif"
    save_photo(photo, result, out)
    image = exiv2.ImageFactory.open(str(out))
    image.readMetadata()
    thumb = Image.open(io.BytesIO(bytes(exiv2.ExifThumbC(image.exifData()).copy().data())))
    assert thumb.size == (64, 48)
    assert np.abs(np.asarray(thumb.convert("RGB")).mean((0, 1)) - (64, 128, 191)).max() < 4


@needs_exiftool
def test_tags_not_in_the_source_are_not_invented(tmp_path):
    src = tagged_jpeg(tmp_path / "in.jpg", orientation=1, thumbnail=False)
    photo = load_photo(src)
    save_photo(photo, photo.rgb, tmp_path / "out.jpg")
    after = read_tags(tmp_path / "out.jpg")
    assert "IFD1:ThumbnailImage" not in after and "IFD1:ThumbnailOffset" not in after
    assert "XMP-csr:Style" not in after  # save_photo without 'made' records only the creator tool


@needs_exiftool
def test_converted_to_srgb_says_so_and_bytes_are_deterministic(tmp_path):
    import imagecodecs
    src = tmp_path / "adobe.jpg"
    Image.fromarray(np.rint(scene() * 255).astype(np.uint8)).save(
        src, "JPEG", icc_profile=imagecodecs.cms_profile("adobergb"))
    write_tags(src, {"ExifIFD:ColorSpace": 65535, "InteropIFD:InteropIndex": "R03", "IFD0:Make": "CsrCam"})
    code = textwrap.dedent(f"""
        import sys, time
        from csr_core.image_io import load_photo, save_photo
        photo = load_photo({str(src)!r})
        save_photo(photo, photo.rgb, sys.argv[1])
    """)
    outs = []
    for n in range(2):  # two processes, a second apart: the embedded profile must not carry the time
        outs.append(tmp_path / f"out{n}.jpg")
        subprocess.run([sys.executable, "-c", code, outs[-1]], check=True, timeout=120)
        if n == 0:
            import time
            time.sleep(1.1)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    after = read_tags(outs[0])
    assert after["ExifIFD:ColorSpace"] == 1 and after["InteropIFD:InteropIndex"] == "R98"
    assert "sRGB" in after["ICC_Profile:ProfileDescription"] and after["IFD0:Make"] == "CsrCam"


@needs_exiftool
def test_extended_xmp_kept_in_jpeg(tmp_path):
    src = tagged_jpeg(tmp_path / "in.jpg", orientation=1, thumbnail=False)
    long_text = " ".join(f"word{i}" for i in range(20000))  # ~130 KB: exiftool writes extended XMP
    (tmp_path / "long.txt").write_text(long_text)
    exiftool("-q", "-overwrite_original", f"-XMP-dc:Description<={tmp_path / 'long.txt'}", src)
    assert read_tags(src).get("XMP-dc:Description") == long_text
    photo = load_photo(src)
    for out in (tmp_path / "out.jpg", tmp_path / "out.png"):
        assert save_quietly(photo, photo.rgb, out) == []
        after = read_tags(out)
        assert after.get("XMP-dc:Description") == long_text and after.get("XMP-dc:Creator") == "Jane Roe"
        assert "XMP-xmp:CreatorTool" in after and "Warning" not in str(after.get("ExifTool:Warning", ""))
    # a PNG's large XMP written as JPEG: split into extended XMP, not dropped
    back = load_photo(tmp_path / "out.png")
    save_photo(back, back.rgb, tmp_path / "again.jpg")
    assert read_tags(tmp_path / "again.jpg").get("XMP-dc:Description") == long_text


@needs_exiftool
def test_png_text_kept(tmp_path):
    info = PngInfo()
    info.add_text("Author", "Jane Roe")
    info.add_text("Copyright", "(c) Jane Roe")
    info.add_itxt("Comment", "caf\u00e9 at dawn")
    src = tmp_path / "in.png"
    Image.fromarray(np.rint(scene() * 255).astype(np.uint8)).save(src, pnginfo=info)
    photo = load_photo(src)
    assert save_quietly(photo, photo.rgb, tmp_path / "out.png") == []
    after = read_tags(tmp_path / "out.png")
    assert (after["PNG:Author"], after["PNG:Copyright"], after["PNG:Comment"]) == \
        ("Jane Roe", "(c) Jane Roe", "caf\u00e9 at dawn")
    messages = save_quietly(photo, photo.rgb, tmp_path / "out.jpg")
    after = read_tags(tmp_path / "out.jpg")  # what XMP can say goes there, the rest is named
    assert after["XMP-dc:Creator"] == "Jane Roe" and after["XMP-dc:Rights"] == "(c) Jane Roe"
    assert messages == [f"{tmp_path / 'out.jpg'}: JPEG cannot hold PNG text 'Comment'; not written"]


# ----------------------------------------------------------------------------- HEIF and RAW

_XYZ_TO_SRGB = tuple(v for x in (32404542, -15371385, -4985314, -9692660, 18760108, 415560, 556434, -2040259,
                                  10572252) for v in (x // 100, 100000))


def write_dng(path: Path, h: int = 64, w: int = 96, rgb: np.ndarray | None = None, extratags=()) -> np.ndarray:
    """A CFA DNG (RGGB, 12-bit) of ``rgb`` (linear sRGB in [0, 1]; default ``scene()``) with the tags LibRaw
    needs (and ``extratags``, as tifffile takes them); returns the scene."""
    rgb = scene(h, w) if rgb is None else rgb
    h, w = rgb.shape[:2]
    y, x = np.mgrid[0:h, 0:w]
    channel = np.array([[0, 1], [1, 2]])[y % 2, x % 2]
    cfa = np.take_along_axis(rgb, channel[..., None], 2)[..., 0]
    tags = [(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True), (50706, "B", 4, (1, 4, 0, 0), True),
            (50708, "s", 0, "CSR test camera", True), (50714, "H", 1, 256, True), (50717, "H", 1, 4095, True),
            (50721, "2i", 9, _XYZ_TO_SRGB, True),  # camera = linear sRGB (XYZ D65 -> sRGB, Lindbloom)
            (50778, "H", 1, 21, True), (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),
            (271, "s", 0, "CsrCam", True), (272, "s", 0, "Model X", True), *extratags]
    tifffile.imwrite(path, np.rint(cfa * (4095 - 256) + 256).astype(np.uint16), photometric=32803,
                     subfiletype=0, extratags=tags, metadata=None)
    return rgb


@pytest.fixture
def dng(tmp_path):
    pytest.importorskip("rawpy", reason="the 'raw' extra (rawpy) is not installed")
    path = tmp_path / "shot.dng"
    return path, write_dng(path)


def test_tiff_based_raw_read_by_content(tmp_path):
    """A NEF (ARW, PEF...) is a TIFF whose first image is a small preview and whose raw image is in a SubIFD:
    piped in, or under another name, it is developed like the named file, not taken for its preview."""
    pytest.importorskip("rawpy", reason="the 'raw' extra (rawpy) is not installed")
    h, w = 64, 96
    y, x = np.mgrid[0:h, 0:w]
    cfa = np.take_along_axis(scene(h, w), np.array([[0, 1], [1, 2]])[y % 2, x % 2][..., None], 2)[..., 0]
    path = tmp_path / "DSC_0001.NEF"
    with tifffile.TiffWriter(path) as tif:
        tif.write(np.full((12, 16, 3), 200, np.uint8), photometric="rgb", subfiletype=1, subifds=1, metadata=None,
                  extratags=[(271, "s", 0, "NIKON CORPORATION", True), (272, "s", 0, "NIKON D850", True)])
        tif.write(np.rint(cfa * (4095 - 256) + 256).astype(np.uint16), photometric=32803, subfiletype=0,
                  extratags=[(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)], metadata=None)
    named = load_photo(path)
    assert named.format == "RAW" and named.rgb.shape == (h, w, 3)
    for src in (path.read_bytes(), io.BytesIO(path.read_bytes())):  # stdin
        piped = load_photo(src)
        assert piped.format == "RAW" and np.array_equal(piped.rgb, named.rgb)


def test_raw_is_developed_to_16bit_srgb(dng):
    path, rgb = dng
    photo = load_photo(path)
    assert photo.format == "RAW" and photo.rgb.dtype == np.uint16 and photo.rgb.shape == (64, 96, 3)
    got = photo.rgb[4:-4, 4:-4].astype(float) / 65535
    # a linear-sRGB camera and neutral as-shot white: the scene's values through the sRGB curve
    want = rgb[4:-4, 4:-4]
    srgb = np.where(want <= 0.0031308, 12.92 * want, 1.055 * want ** (1 / 2.4) - 0.055)
    assert np.abs(got - srgb).mean() < 0.005  # measured: 6e-5 (a linear or BT.709 curve: > 0.02)


def test_dng_default_crop_and_orientation(tmp_path):
    """A DNG's DefaultCrop is the picture (other converters show only it; the rest is sensor margin),
    turned as its Orientation says, LibRaw's way for each of the eight."""
    rawpy = pytest.importorskip("rawpy", reason="the 'raw' extra (rawpy) is not installed")
    crop = [(50719, "I", 2, (6, 4), True), (50720, "I", 2, (80, 48), True)]  # origin (x, y), size (w, h)
    write_dng(tmp_path / "whole.dng")
    whole = load_photo(tmp_path / "whole.dng").rgb
    # the crop counts from the active area (top, left, bottom, right), where LibRaw's image starts
    write_dng(tmp_path / "active.dng", extratags=[*crop, (50829, "I", 4, (2, 4, 62, 92), True)])
    active = load_photo(tmp_path / "active.dng").rgb
    write_dng(tmp_path / "active_whole.dng", extratags=[(50829, "I", 4, (2, 4, 62, 92), True)])
    assert np.array_equal(active, load_photo(tmp_path / "active_whole.dng").rgb[4:52, 6:86])
    for orientation in range(1, 9):
        path = tmp_path / f"o{orientation}.dng"
        write_dng(path, extratags=[*crop, (274, "H", 1, orientation, True)])
        with rawpy.imread(str(path)) as raw:  # LibRaw turning it, uncropped
            turned = raw.postprocess(use_camera_wb=True, no_auto_bright=True, bright=1.0, output_bps=16,
                                     gamma=(2.4, 12.92), highlight_mode=rawpy.HighlightMode.Clip,
                                     demosaic_algorithm=rawpy.DemosaicAlgorithm.AHD)
        got = load_photo(path).rgb
        assert got.shape == ((48, 80, 3) if orientation < 5 else (80, 48, 3))
        assert np.array_equal(got, iio_orient(whole[4:52, 6:86], orientation))
        assert np.array_equal(iio_orient(whole, orientation), turned)


def iio_orient(rgb: np.ndarray, orientation: int) -> np.ndarray:
    from csr_core.image_io import _orient
    return _orient(rgb, orientation)


@needs_exiftool
def test_raw_exif_carried_to_16bit_tiff(dng, tmp_path):
    path, _ = dng
    write_tags(path, {k: v for k, v in TAGS.items() if k.startswith(("ExifIFD", "GPS", "IFD0"))})
    jobs, problems, _ = batch.plan([str(tmp_path)], None)  # folder discovery picks the DNG up
    assert problems == [] and [(j.src.name, j.dest.name) for j in jobs] == [("shot.dng", "shot_retouched.tif")]
    photo = load_photo(path)
    save_photo(photo, photo.rgb, jobs[0].dest)
    after = read_tags(jobs[0].dest)
    assert after["IFD0:BitsPerSample"] == "16 16 16" and after["File:FileType"] == "TIFF"
    lost = {k: v for k, v in TAGS.items() if k.startswith(("ExifIFD", "GPS", "IFD0")) and after.get(k) != v}
    assert lost == {}
    assert "IFD0:DNGVersion" not in after and "IFD0:CFAPattern2" not in after  # the output is no DNG


@needs_exiftool
def test_raw_developed_to_srgb_says_so(dng, tmp_path):
    """A camera set to Adobe RGB marks its RAW's EXIF Uncalibrated (and DCF's R03); csr develops it to sRGB,
    so the result says sRGB, with an sRGB profile, and a profile in the RAW (its preview's) changes nothing."""
    import imagecodecs
    path, _ = dng
    plain = load_photo(path).rgb
    (tmp_path / "adobe.icc").write_bytes(imagecodecs.cms_profile("adobergb"))
    write_tags(path, {"ExifIFD:ColorSpace": 65535, "InteropIFD:InteropIndex": "R03"},
               f"-ICC_Profile<={tmp_path / 'adobe.icc'}")
    assert read_tags(path)["ICC_Profile:ProfileDescription"] == "Adobe RGB (compatible)"
    photo = load_photo(path)
    assert np.array_equal(photo.rgb, plain)
    for ext in (".tif", ".jpg"):
        save_photo(photo, photo.rgb, tmp_path / f"out{ext}")
        after = read_tags(tmp_path / f"out{ext}")
        assert (after["ExifIFD:ColorSpace"], after["InteropIFD:InteropIndex"]) == (1, "R98")
        assert "sRGB" in after["ICC_Profile:ProfileDescription"]


@pytest.mark.parametrize("ext", [".heic", ".avif"])
def test_heif_and_avif_input(tmp_path, ext):
    rgb = np.rint(scene() * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[271], exif[274] = "PhoneCam", 1
    path = tmp_path / f"in{ext}"
    if ext == ".heic":
        pillow_heif = pytest.importorskip("pillow_heif", reason="the 'heif' extra (pillow-heif) is not installed")
        pillow_heif.from_bytes(mode="RGB", size=(64, 48), data=rgb.tobytes()).save(
            path, format="HEIF", quality=95, exif=exif.tobytes())
    else:
        from PIL import features
        if not features.check("avif"):
            pytest.skip("this Pillow has no AVIF support")
        Image.fromarray(rgb).save(path, "AVIF", quality=95, exif=exif.tobytes())
    photo = load_photo(path)
    assert photo.rgb.shape == (48, 64, 3) and np.abs(photo.rgb.astype(int) - rgb).mean() < 6
    assert photo.meta.get("Exif.Image.Make") == "PhoneCam"
    jobs, _, _ = batch.plan([str(tmp_path)], None)
    assert [j.dest.name for j in jobs] == ["in_retouched.jpg"]
    save_photo(photo, photo.rgb, jobs[0].dest)
    assert Image.open(jobs[0].dest).getexif()[271] == "PhoneCam"


@pytest.mark.parametrize("ext", [".heic", ".avif"])
def test_display_p3_declared_without_icc_profile_is_converted(tmp_path, ext):
    """Phones and AVIF encoders often declare the colour space in an nclx box and embed no ICC profile:
    a Display P3 red must come out as the more saturated sRGB red it is, not as its P3 numbers."""
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[...] = (230, 40, 40)
    path = tmp_path / f"p3{ext}"
    if ext == ".heic":
        pillow_heif = pytest.importorskip("pillow_heif", reason="the 'heif' extra (pillow-heif) is not installed")
        pillow_heif.from_bytes(mode="RGB", size=(64, 48), data=rgb.tobytes()).save(
            path, quality=100, color_primaries=12, transfer_characteristic=13, matrix_coefficients=6,
            full_range_flag=1)
    else:
        from PIL import features
        if not features.check("avif"):
            pytest.skip("this Pillow has no AVIF support")
        Image.fromarray(rgb).save(path, "AVIF", quality=100)
        data = bytearray(path.read_bytes())
        at = data.find(b"colrnclx") + 8
        assert data[at:at + 4] in (b"\0\1\0\x0d", b"\0\2\0\2")  # BT.709/unspecified primaries, sRGB curve
        srgb = load_photo(bytes(data), name="srgb")  # declared sRGB: the numbers as they are
        assert srgb.source_space == "sRGB" and np.abs(srgb.rgb[24, 32].astype(int) - (230, 40, 40)).max() <= 3
        data[at:at + 2] = (12).to_bytes(2, "big")  # Display P3
        path.write_bytes(bytes(data))
    photo = load_photo(path)
    assert photo.source_space != "sRGB"
    red = photo.rgb[24, 32].astype(int)
    assert red[0] >= 245 and red[1] <= 8 and 10 <= red[2] <= 26, red  # P3 (230, 40, 40) is sRGB (251, 0, 18)
    save_photo(photo, photo.rgb, tmp_path / "out.jpg")
    if ext == ".heic":  # a gray photo declaring P3 primaries is gray as it is, without a warning
        pillow_heif.from_bytes(mode="L", size=(64, 48), data=bytes([120]) * 64 * 48).save(
            tmp_path / "gray.heic", quality=100, color_primaries=12, transfer_characteristic=13,
            matrix_coefficients=6, full_range_flag=1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            gray = load_photo(tmp_path / "gray.heic")
        assert gray.source_space == "sRGB" and np.abs(gray.rgb.astype(int) - 120).max() <= 2
    from PIL import ImageCms
    with Image.open(tmp_path / "out.jpg") as out:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(out.info["icc_profile"]))
    assert "sRGB" in ImageCms.getProfileDescription(profile)


def test_raw_and_deep_heif_count_as_16_bit_in_the_memory_budget(dng, tmp_path):
    """The budget takes 16-bit photos up to 2/3 of CSR_MAX_PIXELS (133 MP of 200): a RAW develops to 16 bits
    and a 10-bit HEIC decodes to 16, so either is refused where an 8-bit photo of its size is not."""
    from csr_core.errors import ImageError
    path, _ = dng
    pixels = 64 * 96
    limit = pixels * 5 // 4  # room for 8-bit samples (3 copies x 3 bytes a pixel), not for 16-bit
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(tmp_path / "same.png")
    assert load_photo(tmp_path / "same.png", max_pixels=limit).rgb.shape == (64, 96, 3)
    with pytest.raises(ImageError, match=r"shot\.dng: image too large: retouching this RAW needs"):
        load_photo(path, max_pixels=limit)
    assert load_photo(path, max_pixels=2 * pixels).rgb.dtype == np.uint16
    pillow_heif = pytest.importorskip("pillow_heif", reason="the 'heif' extra (pillow-heif) is not installed")
    for mode, bits, refused in (("RGB", 8, False), ("RGB;16", 10, True)):
        heic = tmp_path / f"deep{bits}.heic"
        pillow_heif.from_bytes(mode=mode, size=(96, 64), data=bytes(64 * 96 * 3 * (bits > 8 and 2 or 1))).save(
            heic, quality=90)
        if refused:
            with pytest.raises(ImageError, match=r"image too large: retouching this HEIF needs"):
                load_photo(heic, max_pixels=limit)
        else:
            assert load_photo(heic, max_pixels=limit).rgb.dtype == np.uint8


def test_missing_extra_is_one_clear_line(tmp_path, monkeypatch):
    from csr_core.errors import ImageError
    path = tmp_path / "shot.dng"
    write_dng(path)
    monkeypatch.setitem(sys.modules, "rawpy", None)  # as if the extra were not installed
    with pytest.raises(ImageError, match=re.escape(f"shot.dng: RAW files need the 'raw' extra ({install_command('raw')})")):
        load_photo(path)


# ----------------------------------------------------------------------------- budgets

def amplified_tiff(blob: int = 1 << 20, entries: int = 256) -> bytes:
    """A valid 8x8 TIFF (~1 MB) whose SubIFDs, Exif and GPS IFDs hold ``entries`` tags each, all pointing
    at one ``blob``-byte value: read naively, 11 x 256 x 1 MB (exiv2 alone: ~5.7 GB, ~30 s)."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((8, 8, 3), np.uint8), photometric="rgb", metadata=None, software=False)
    data = bytearray(buf.getvalue())
    blob_at = len(data)
    data += b"A" * blob

    def ifd(first_tag: int) -> int:
        at = len(data)
        data.extend(struct.pack("<H", entries) + b"".join(
            struct.pack("<HHII", first_tag + k, 7, blob, blob_at) for k in range(entries)) + bytes(4))
        return at

    subs, exif, gps = [ifd(0x9C40) for _ in range(9)], ifd(0x9C40), ifd(0x100)
    array_at = len(data)
    data += struct.pack("<9I", *subs)
    ifd0 = struct.unpack_from("<I", data, 4)[0]
    count = struct.unpack_from("<H", data, ifd0)[0]
    items = [bytes(data[ifd0 + 2 + 12 * i:ifd0 + 14 + 12 * i]) for i in range(count)]
    items += [struct.pack("<HHII", 330, 4, 9, array_at), struct.pack("<HHII", 34665, 4, 1, exif),
              struct.pack("<HHII", 34853, 4, 1, gps)]
    items.sort(key=lambda e: struct.unpack_from("<H", e)[0])
    struct.pack_into("<I", data, 4, len(data))
    data += struct.pack("<H", len(items)) + b"".join(items) + bytes(4)
    return bytes(data)


def png_with_chunks(chunk: bytes, n: int) -> bytes:
    base = io.BytesIO()
    Image.new("RGB", (8, 8)).save(base, "PNG")
    data = base.getvalue()
    body = struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return data[:33] + body * n + data[33:]


_BOMB = zlib.compress(bytes(20 << 20), 9)  # 20 KB inflating to 20 MB
BOMBS = {
    "amplified.tif": amplified_tiff,
    "iccp-x50.png": lambda: png_with_chunks(b"iCCP" + b"icc\0\0" + _BOMB, 50),       # exiv2: ~18 s
    "ztxt-x300.png": lambda: png_with_chunks(b"zTXt" + b"Comment\0\0" + _BOMB, 300),
    "itxt-x300.png": lambda: png_with_chunks(b"iTXt" + b"Comment\0\1\0\0\0" + _BOMB, 300),
    "exif-amplified.png": lambda: png_with_chunks(b"eXIf" + amplified_tiff(1 << 19, 256), 1),
}
_LIMITED = textwrap.dedent("""
    import resource, sys, time, warnings
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    from csr_core.image_io import load_photo
    data = open(sys.argv[1], "rb").read()
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        photo = load_photo(data, name=sys.argv[1])
    print(photo.rgb.shape, f"{time.perf_counter() - start:.2f}s", [str(w.message) for w in caught])
""")


@pytest.mark.parametrize("name", list(BOMBS))
def test_metadata_amplification_is_bounded(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BOMBS[name]())
    assert path.stat().st_size < 6 << 20
    run = subprocess.run([sys.executable, "-c", _LIMITED, path], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "(8, 8, 3)" in run.stdout and "metadata dropped" in run.stdout, run.stdout


def test_web_app_renders_raw_as_tiff_with_how_it_was_made(dng, toy_registry):
    service = pytest.importorskip("csr_plugins.gradio_app.service")
    path, _ = dng
    svc = service.Service(toy_registry, service.Limits())
    assert svc.load(str(path)).size == (96, 64)
    out = svc.render(str(path), "auto", 0.5)
    assert out.suffix == ".tif"
    result = load_photo(out)
    assert result.rgb.dtype == np.uint16 and result.rgb.shape == (64, 96, 3)
    assert (result.meta.get("Xmp.csr.Style"), result.meta.get("Xmp.csr.Strength")) == ("auto", "0.5")
    assert result.meta.get("Exif.Image.Make") == "CsrCam"


@pytest.mark.parametrize("fmt", list(EXT))
def test_made_by_csr_reads_the_record_not_the_pixels(tmp_path, fmt, monkeypatch):
    """Each batch input is checked for csr's record without decoding its pixels (here beside a ~190 kB
    description; in a JPEG, where that moves to extended XMP, csr's record stays in the main packet)."""
    from csr_core.metadata import made_by_csr

    rng = np.random.default_rng(0)
    src = tmp_path / "in.png"
    info = PngInfo()
    packet = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
              '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:description><rdf:Alt>'
              f'<rdf:li xml:lang="x-default">{" ".join(f"word{i}" for i in range(20000))}</rdf:li></rdf:Alt>'
              '</dc:description></rdf:Description></rdf:RDF></x:xmpmeta>')
    info.add_itxt("XML:com.adobe.xmp", packet)
    Image.fromarray(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)).save(src, pnginfo=info)
    photo = load_photo(src)
    out = tmp_path / f"out{EXT[fmt]}"
    save_quietly(photo, photo.rgb, out, made={"style": "auto", "strength": "1"})
    assert made_by_csr(out) and not made_by_csr(src)
    from PIL import ImageFile

    def no_pixels(self):
        raise AssertionError("pixels decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_pixels)
    assert made_by_csr(out) and made_by_csr(io.BytesIO(out.read_bytes())) and not made_by_csr(src)
    assert not made_by_csr(tmp_path / "missing.jpg") and not made_by_csr(io.BytesIO(out.read_bytes()[:100]))


def test_made_by_csr_knows_its_float_tiff_results(tmp_path):
    """A float TIFF (which Pillow cannot open) that csr wrote is recognised as csr's; the photo it came from is not."""
    from csr_core.metadata import made_by_csr

    src = tmp_path / "hdr.tif"
    tifffile.imwrite(src, np.random.default_rng(0).random((48, 64, 3), dtype=np.float32), photometric="rgb")
    photo = load_photo(src)
    out = tmp_path / "hdr_retouched.tif"
    save_quietly(photo, photo.rgb, out, made={"style": "auto", "strength": "1"})
    assert tifffile.imread(out).dtype == np.float32
    assert made_by_csr(out) and made_by_csr(io.BytesIO(out.read_bytes())) and not made_by_csr(src)


@pytest.mark.parametrize("transfer, curve", [(16, "PQ"), (18, "HLG")])
def test_hdr_heif_is_tone_mapped_with_a_notice(tmp_path, transfer, curve):
    """An HDR HEIC (a PQ or HLG curve, as phones record them) is tone-mapped to a standard photo, and csr says
    so in one line; a standard one reads without a word (the mapping itself: test_image_io)."""
    import warnings

    pillow_heif = pytest.importorskip("pillow_heif", reason="the 'heif' extra (pillow-heif) is not installed")
    pillow_heif.from_bytes(mode="RGB", size=(64, 48), data=np.full((48, 64, 3), 120, np.uint8).tobytes()).save(
        tmp_path / "sdr.heic", quality=90, color_primaries=9, transfer_characteristic=13, matrix_coefficients=9)
    data = (tmp_path / "sdr.heic").read_bytes()  # the encoder writes an 8-bit photo's curve as sRGB's: set it
    assert data.count(b"colrnclx\0\x09\0\x0d") == 1
    (tmp_path / "hdr.heic").write_bytes(data.replace(b"colrnclx\0\x09\0\x0d",
                                                     b"colrnclx\0\x09" + transfer.to_bytes(2, "big")))
    with pytest.warns(UserWarning) as caught:
        load_photo(tmp_path / "hdr.heic")
    assert [str(w.message) for w in caught] == [
        f"{tmp_path / 'hdr.heic'}: an HDR photo ({curve} curve), tone-mapped to a standard (SDR) one"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_photo(tmp_path / "sdr.heic")
