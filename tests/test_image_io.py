"""csr_core.image_io: formats, bit depths, metadata, colour, orientation and failure modes."""
from __future__ import annotations

import io
import os
import re
import struct
import zlib

import cv2
import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, ImageFile, ImageOps
from PIL.PngImagePlugin import PngInfo

from csr_core import fsutil
from csr_core import image_io as iio
from csr_core.errors import CsrError, ImageError
from csr_core.image_io import Photo, format_for_path, from_float, load_photo, save_photo, to_float

EXT = {"JPEG": ".jpg", "PNG": ".png", "TIFF": ".tif", "WEBP": ".webp"}
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
ADOBE_ICC = imagecodecs.cms_profile("adobergb")
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/">'
       b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/"'
       b' xmlns:dc="http://purl.org/dc/elements/1.1/" tiff:Orientation="6" dc:format="csr-marker"/>'
       b'</rdf:RDF></x:xmpmeta>')


def smooth(h=24, w=32, dtype=np.uint8):
    y, x = np.mgrid[0:h, 0:w]
    f = np.stack([x / max(w - 1, 1), y / max(h - 1, 1), (x + y) / (h + w)], -1)
    return from_float(f, dtype)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def exif_blob(orientation=None) -> bytes:
    ex = Image.Exif()
    ex[271] = "CsrCam"
    if orientation is not None:
        ex[274] = orientation
    ex[0x8769] = {0x9003: "2024:05:06 07:08:09"}
    return ex.tobytes()


def parse_exif(blob: bytes) -> Image.Exif:
    ex = Image.Exif()
    ex.load(blob)
    return ex


def describe(icc: bytes) -> str:
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))


def adobe_to_srgb(v):
    """Independent Adobe RGB (1998) -> sRGB reference: matrices from Lindbloom, D65, clipped."""
    to_xyz = np.array([[0.5767309, 0.1855540, 0.1881852], [0.2973769, 0.6273491, 0.0752741],
                       [0.0270343, 0.0706872, 0.9911085]])
    to_srgb = np.array([[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
    lin = np.clip((v ** (563 / 256)) @ (to_srgb @ to_xyz).T, 0, 1)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def png_with_ihdr(width, height) -> bytes:
    data = bytearray(encode(Image.new("RGB", (4, 4)), "PNG"))
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# ----------------------------------------------------------------------------- formats and depths

@pytest.mark.parametrize("fmt", list(EXT))
def test_8bit_round_trip(tmp_path, fmt):
    rgb = smooth()
    path = tmp_path / f"a{EXT[fmt]}"
    save_photo(Photo(rgb), rgb, path)
    got = load_photo(path)
    assert (got.format, got.rgb.shape, got.rgb.dtype, got.bit_depth) == (fmt, rgb.shape, np.uint8, 8)
    assert got.rgb.flags.c_contiguous and got.alpha is None
    assert got.icc_profile is None and got.source_space == "sRGB"  # untagged stays untagged
    err = np.abs(got.rgb.astype(int) - rgb)
    assert err.max() == 0 if fmt in ("PNG", "TIFF") else err.mean() < 2.5
    independent = np.asarray(Image.open(path).convert("RGB")).astype(int)
    assert np.abs(independent - got.rgb).max() <= 1  # the fast decoders agree with Pillow's


def test_16bit_png_exact_with_alpha(tmp_path, rng):
    rgb = rng.integers(0, 65536, (9, 13, 3), dtype=np.uint16)
    alpha = rng.integers(0, 65536, (9, 13), dtype=np.uint16)
    src = tmp_path / "in.png"
    assert cv2.imwrite(str(src), np.dstack([rgb[..., ::-1], alpha]))  # written by OpenCV, BGRA
    ph = load_photo(src)
    assert ph.rgb.dtype == np.uint16 and ph.bit_depth == 16 and ph.rgb.max() > 255
    assert np.array_equal(ph.rgb, rgb) and np.array_equal(ph.alpha, alpha)
    save_photo(ph, ph.rgb, tmp_path / "out.png")
    back = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
    assert back.dtype == np.uint16 and np.array_equal(back[..., 3], alpha)
    assert np.array_equal(back[..., 2::-1], rgb)
    with pytest.warns(UserWarning, match="alpha channel dropped"):  # 8-bit format: quantised
        save_photo(ph, ph.rgb, tmp_path / "out.jpg")
    assert np.abs(load_photo(tmp_path / "out.jpg").rgb.astype(int) - rgb / 257).mean() < 12


def test_16bit_tiff_exact(tmp_path, rng):
    rgb = rng.integers(0, 65536, (10, 7, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "in.tif", rgb, photometric="rgb", compression="zlib")
    ph = load_photo(tmp_path / "in.tif")
    assert ph.rgb.dtype == np.uint16 and np.array_equal(ph.rgb, rgb)
    save_photo(ph, ph.rgb, tmp_path / "out.tiff")
    back = tifffile.imread(tmp_path / "out.tiff")
    assert back.dtype == np.uint16 and np.array_equal(back, rgb)
    gray = rng.integers(0, 65536, (5, 6), dtype=np.uint16)
    ph = load_photo(encode(Image.fromarray(gray), "PNG"))  # 16-bit gray (I;16) -> RGB
    assert ph.rgb.dtype == np.uint16 and np.array_equal(ph.rgb, np.repeat(gray[..., None], 3, 2))


def test_float_tiff(tmp_path, rng):
    rgb = rng.random((6, 8, 3), dtype=np.float32)
    rgb[0, 0] = (-0.5, 1.5, np.nan)
    tifffile.imwrite(tmp_path / "in.tif", rgb, photometric="rgb")
    ph = load_photo(tmp_path / "in.tif")
    assert ph.rgb.dtype == np.float32 and ph.bit_depth == 32
    assert tuple(ph.rgb[0, 0]) == (0.0, 1.0, 0.0) and np.array_equal(ph.rgb[1:], rgb[1:])
    save_photo(ph, ph.rgb, tmp_path / "out.tif")
    back = tifffile.imread(tmp_path / "out.tif")
    assert back.dtype == np.float32 and np.array_equal(back, ph.rgb)
    save_photo(ph, ph.rgb, tmp_path / "out.png")  # float -> 16-bit PNG
    assert np.array_equal(load_photo(tmp_path / "out.png").rgb, from_float(ph.rgb, np.uint16))


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1)])
@pytest.mark.parametrize("fmt", list(EXT))
def test_tiny_images(tmp_path, fmt, shape):
    rgb = np.full(shape + (3,), 200, np.uint8)
    save_photo(Photo(rgb), rgb, tmp_path / f"t{EXT[fmt]}")
    assert load_photo(tmp_path / f"t{EXT[fmt]}").rgb.shape == shape + (3,)


def test_sample_conversions():
    v8 = np.arange(256, dtype=np.uint8)
    v16 = np.arange(65536, dtype=np.uint16)
    assert to_float(v8).dtype == np.float32 and to_float(v8)[-1] == 1.0
    assert np.array_equal(from_float(to_float(v8), np.uint8), v8)
    assert np.array_equal(from_float(to_float(v16), "uint16"), v16)
    x = np.array([np.nan, -1, 0.5, 2], np.float32)
    assert from_float(x, np.uint8).tolist() == [0, 0, 128, 255]
    assert from_float(x, np.float32).tolist() == [0, 0, 0.5, 1]
    with pytest.raises(ValueError):
        to_float(np.zeros(3, np.int32))


def test_format_for_path():
    assert [format_for_path(p) for p in ("a.JPG", "b.jpeg", "c.png", "d.tiff", "e.tif", "f.webp")] == [
        "JPEG", "JPEG", "PNG", "TIFF", "TIFF", "WEBP"]
    with pytest.raises(ImageError, match="x.bmp"):
        format_for_path("x.bmp")
    assert all(e.startswith(".") and e == e.lower() for e in iio.SUPPORTED_EXTENSIONS)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_tiff_associated_alpha_read_as_straight_colours(tmp_path, rng, dtype):
    """A TIFF with associated (premultiplied) alpha, as ImageMagick and others write it: its half-transparent
    pixels keep their colour rather than darkening, and the result (straight alpha) shows the same picture."""
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    rgb = (rng.random((6, 9, 3)) * top).astype(dtype)
    alpha = np.linspace(0, top, 54).reshape(6, 9).astype(dtype)
    premultiplied = (rgb.astype(np.float64) * alpha[..., None] / top)
    if dtype != np.float32:
        premultiplied = np.rint(premultiplied)
    src = tmp_path / "assoc.tif"
    tifffile.imwrite(src, np.dstack([premultiplied.astype(dtype), alpha]), photometric="rgb", extrasamples=(1,))
    ph = load_photo(src)
    assert ph.rgb.dtype == dtype and np.array_equal(ph.alpha, alpha)
    seen = alpha > top / 4  # where the premultiplied samples still hold the colour to a few levels
    error = np.abs(ph.rgb.astype(np.float64) - rgb)[seen] / top
    assert error.max() <= 4 / 255 and (ph.rgb[alpha == 0] == 0).all()
    save_photo(ph, ph.rgb, tmp_path / "out.tif")
    with tifffile.TiffFile(tmp_path / "out.tif") as tif:
        assert tif.pages.first.extrasamples == (tifffile.EXTRASAMPLE.UNASSALPHA,)
        assert np.array_equal(tif.pages.first.asarray()[..., :3], ph.rgb)


# ----------------------------------------------------------------------------- orientation and metadata

@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied_and_reset(rng, orientation, tmp_path):
    rgba = rng.integers(0, 256, (4, 6, 4), dtype=np.uint8)
    src = encode(Image.fromarray(rgba), "PNG", exif=exif_blob(orientation))
    ph = load_photo(src)
    want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(src))))
    assert np.array_equal(ph.rgb, want[..., :3]) and np.array_equal(ph.alpha, want[..., 3])
    save_photo(ph, ph.rgb, tmp_path / "out.png")
    ex = Image.open(tmp_path / "out.png").getexif()
    assert ex[274] == 1 and ex[271] == "CsrCam"


@pytest.mark.parametrize("orientation", [0, 9, 65535])
def test_bogus_orientation_ignored(orientation):
    rgb = smooth(4, 6)
    ph = load_photo(encode(Image.fromarray(rgb), "PNG", exif=exif_blob(orientation)))
    assert np.array_equal(ph.rgb, rgb)


def test_xmp_orientation_without_exif(tmp_path):
    rgb = smooth(4, 6)
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", XMP.decode())
    ph = load_photo(encode(Image.fromarray(rgb), "PNG", pnginfo=info))
    assert np.array_equal(ph.rgb, np.rot90(rgb, -1))
    save_photo(ph, ph.rgb, tmp_path / "out.png")
    back = load_photo(tmp_path / "out.png")
    assert back.meta.get("Xmp.tiff.Orientation") == "1" and np.array_equal(back.rgb, ph.rgb)


@pytest.mark.parametrize("fmt", list(EXT))
def test_metadata_carried(tmp_path, fmt):
    src = encode(Image.fromarray(smooth(16, 24)), "JPEG", icc_profile=SRGB_ICC, exif=exif_blob(6), xmp=XMP)
    ph = load_photo(src, name="cam.jpg")
    assert ph.name == "cam.jpg" and ph.rgb.shape == (24, 16, 3)  # orientation 6 applied
    assert ph.icc_profile == SRGB_ICC and ph.source_space == "sRGB"  # sRGB-tagged: bytes kept
    out = tmp_path / f"out{EXT[fmt]}"
    save_photo(ph, ph.rgb, out)
    back = load_photo(out)
    assert back.rgb.shape == (24, 16, 3) and back.icc_profile == SRGB_ICC
    assert back.meta.get("Exif.Image.Make") == "CsrCam" and back.meta.get("Exif.Image.Orientation") == "1"
    assert back.meta.get("Exif.Photo.DateTimeOriginal") == "2024:05:06 07:08:09"
    assert back.meta.get("Xmp.dc.format") == "csr-marker" and back.meta.get("Xmp.tiff.Orientation") == "1"
    if fmt == "TIFF":  # independent readers
        with tifffile.TiffFile(out) as tif:
            tags = tif.pages.first.tags
            assert tags["ExifTag"].value["DateTimeOriginal"] == "2024:05:06 07:08:09"
            assert tags["Make"].value == "CsrCam" and tags["InterColorProfile"].value == SRGB_ICC
    else:
        im = Image.open(out)
        assert im.info["icc_profile"] == SRGB_ICC and im.getexif()[271] == "CsrCam"


# ----------------------------------------------------------------------------- colour

@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_adobe_rgb_converted_to_srgb(tmp_path, rng, dtype):
    top = 1.0 if dtype == np.float32 else np.iinfo(dtype).max
    vals = rng.random((40, 1, 3))
    vals[:3, 0] = [(0, 1, 0), (1, 1, 1), (0, 0, 0)]  # pure green (out of sRGB gamut), white, black
    pixels = from_float(vals, dtype)
    src = tmp_path / ("in.png" if dtype == np.uint8 else "in.tif")
    if dtype == np.uint8:
        Image.fromarray(pixels).save(src, icc_profile=ADOBE_ICC)
    else:
        tifffile.imwrite(src, pixels, photometric="rgb", iccprofile=ADOBE_ICC)
    ph = load_photo(src)
    assert ph.source_space == "Adobe RGB (compatible)" and ph.icc_profile == ADOBE_ICC
    assert ph.rgb.dtype == dtype
    ref = adobe_to_srgb(pixels / top) * top
    tol = 1.01 if dtype == np.uint8 else 0.002 * top  # 8-bit: rounding; else well under 1/255
    assert np.abs(ph.rgb - ref).max() <= tol
    assert np.allclose(ph.rgb[:3, 0], [(0, top, 0), (top, top, top), (0, 0, 0)], rtol=0, atol=1e-5)
    out = tmp_path / ("out.png" if dtype == np.uint8 else "out.tif")
    save_photo(ph, ph.rgb, out)
    back = load_photo(out)  # written as sRGB with an sRGB profile: no second conversion
    assert back.source_space == "sRGB" and "sRGB" in describe(back.icc_profile)
    assert np.array_equal(back.rgb, ph.rgb)


def test_gray_profile_converted():
    gray = np.arange(0, 256, 17, dtype=np.uint8)[None]
    linear_gray = imagecodecs.cms_profile("gray", gamma=1.0)
    ph = load_photo(encode(Image.fromarray(gray), "PNG", icc_profile=linear_gray))
    assert ph.rgb.shape == (1, 16, 3) and ph.source_space != "sRGB"
    assert ph.rgb[0, 8, 0] > gray[0, 8] + 40  # linear gray 136 is much lighter in sRGB


def test_broken_icc_warns_and_is_dropped(tmp_path):
    rgb = smooth(5, 5)
    src = encode(Image.fromarray(rgb), "PNG", icc_profile=b"not a profile" * 20)
    with pytest.warns(UserWarning, match="ICC profile"):
        ph = load_photo(src)
    assert ph.icc_profile is None and ph.source_space == "sRGB" and np.array_equal(ph.rgb, rgb)
    save_photo(ph, ph.rgb, tmp_path / "o.png")
    assert "icc_profile" not in Image.open(tmp_path / "o.png").info


# ----------------------------------------------------------------------------- channels and modes

@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P", "PT", "1"])
def test_alpha_gray_palette(tmp_path, rng, mode):
    base = Image.fromarray(rng.integers(0, 256, (6, 5, 4), dtype=np.uint8))
    im = base.convert("RGB").quantize(8) if mode in ("P", "PT") else base.convert(mode)
    data = encode(im, "PNG", **({"transparency": 2} if mode == "PT" else {}))
    decoded = Image.open(io.BytesIO(data))  # reference: Pillow's decode of the same file
    want = np.asarray(decoded.convert("RGBA" if mode in ("RGBA", "LA", "PT") else "RGB"))
    ph = load_photo(data)
    assert ph.rgb.dtype == np.uint8 and np.array_equal(ph.rgb, want[..., :3])
    if want.shape[2] == 4:
        assert np.array_equal(ph.alpha, want[..., 3])
        save_photo(ph, ph.rgb, tmp_path / "a.webp", quality=100)
        save_photo(ph, ph.rgb, tmp_path / "a.tif")
        assert np.array_equal(load_photo(tmp_path / "a.tif").alpha, want[..., 3])
        assert np.abs(load_photo(tmp_path / "a.webp").alpha.astype(int) - want[..., 3]).max() <= 2
    else:
        assert ph.alpha is None


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_refused(tmp_path, fmt):
    path = tmp_path / f"c{EXT[fmt]}"
    Image.fromarray(smooth()).convert("CMYK").save(path, fmt)
    with pytest.raises(ImageError, match=r"c\.\w+: CMYK images are not supported; convert to RGB first"):
        load_photo(path)


def test_animated_refused(tmp_path):
    frames = [Image.new("RGB", (4, 4), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="a.gif: animated"):
        load_photo(tmp_path / "a.gif")


# ----------------------------------------------------------------------------- bad input

def _bad_inputs():
    jpeg = encode(Image.fromarray(smooth(64, 64)), "JPEG")
    png = encode(Image.fromarray(smooth(64, 64)), "PNG")
    corrupt = bytearray(png)
    corrupt[70:90] = bytes(20)
    return {"empty.jpg": b"", "text.jpg": b"hello, not a picture\n" * 3, "half.jpg": jpeg[: len(jpeg) // 2],
            "half.png": png[: len(png) // 2], "corrupt.png": bytes(corrupt), "junk.tif": b"II*\0" + bytes(40),
            "zero.png": png_with_ihdr(0, 5), "bomb.png": png_with_ihdr(100_000, 100_000),
            "junk.webp": b"RIFF\x10\0\0\0WEBPVP8 " + bytes(8)}


@pytest.mark.parametrize("fname", list(_bad_inputs()))
def test_bad_input_is_one_line_image_error(tmp_path, fname):
    path = tmp_path / fname
    path.write_bytes(_bad_inputs()[fname])
    with pytest.raises(ImageError) as err:
        load_photo(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and "\n" not in msg and "<_io" not in msg
    if fname == "bomb.png":
        assert "too large" in msg


@pytest.mark.parametrize("fmt", ["JPEG", "PNG16", "TIFF", "WEBP"])
def test_pixel_limit_checked_before_decoding(monkeypatch, fmt):
    rgb = smooth(20, 30, np.uint16 if fmt == "PNG16" else np.uint8)
    out = io.BytesIO()
    save_photo(Photo(rgb), rgb, out, fmt=fmt.replace("16", ""))

    def decoded(*a, **k):
        raise AssertionError("decoder ran")
    for mod, attr in ((imagecodecs, "png_decode"), (imagecodecs, "jpeg8_decode"),
                      (tifffile.TiffPage, "asarray"), (ImageFile.ImageFile, "load")):
        monkeypatch.setattr(mod, attr, decoded)
    with pytest.raises(ImageError, match=r"^<stdin>: image too large: 30x20 .*CSR_MAX_PIXELS"):
        load_photo(out.getvalue(), max_pixels=599)


@pytest.mark.parametrize("w, h, limit, size", [(100_000, 100_000, None, "10000"), (65_000, 65_000, None, "4225"),
                                              (14_177, 14_177, None, "201"), (2100, 2000, 10**6, "4.2"),
                                              (300, 200, 10**4, "0.06")])
def test_size_limit_message_gives_readable_megapixels(w, h, limit, size):
    header = _png_from(struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0), b"")
    with pytest.raises(ImageError, match=rf"^<stdin>: image too large: {w}x{h} \({re.escape(size)} MP\) exceeds"):
        load_photo(header, **({"max_pixels": limit} if limit else {}))


@pytest.mark.parametrize("value, expected", [("", 200_000_000), ("3e8", 300_000_000), ("12345", 12345),
                                             ("inf", None), ("nan", None), ("abc", None), ("0", None), ("-5", None)])
def test_csr_max_pixels_takes_a_number_of_pixels_or_says_what_it_needs(monkeypatch, value, expected):
    monkeypatch.setenv("CSR_MAX_PIXELS", value)
    if expected is not None:
        assert iio._env_max_pixels() == expected
        return
    with pytest.raises(CsrError, match=rf"^environment variable CSR_MAX_PIXELS={re.escape(repr(value))}: expected "
                                       "the largest photo in pixels, a number such as 300000000 or 300e6$"):
        iio._env_max_pixels()


def test_a_bad_csr_max_pixels_is_one_line_for_any_command():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "csr_cli.main", "styles", "list"], capture_output=True, text=True,
                         timeout=120, env={**os.environ, "CSR_MAX_PIXELS": "inf"})
    assert res.returncode == 1 and res.stderr.startswith("csr: error: environment variable CSR_MAX_PIXELS='inf'")
    assert res.stderr.count("\n") == 1, res.stderr


def test_missing_file_and_streams(tmp_path):
    with pytest.raises(ImageError, match="nope.png: no such file"):
        load_photo(tmp_path / "nope.png")
    rgb = smooth(4, 4)
    buf = io.BytesIO()
    save_photo(Photo(rgb, format="PNG"), rgb, buf)  # stream: format from the photo
    ph = load_photo(io.BytesIO(buf.getvalue()))
    assert ph.name == "<stdin>" and np.array_equal(ph.rgb, rgb)
    with pytest.raises(ImageError, match="cannot write BMP"):
        save_photo(Photo(rgb), rgb, io.BytesIO(), fmt="bmp")
    for source, written in (("BMP", b"\x89PNG"), ("RAW", b"II*\0"), ("HEIF", b"\xff\xd8")):
        buf = io.BytesIO()  # a source format csr cannot write: its default output format
        save_photo(Photo(rgb, format=source), rgb, buf)
        assert buf.getvalue().startswith(written)


# ----------------------------------------------------------------------------- atomic saving

def test_failed_save_leaves_nothing(tmp_path, monkeypatch):
    rgb = smooth(8, 8)
    dest = tmp_path / "out.png"

    def broken_encoder(*a):
        raise RuntimeError("encoder exploded")
    monkeypatch.setitem(iio._ENCODERS, "PNG", broken_encoder)
    with pytest.raises(ImageError, match="out.png: cannot encode PNG"):
        save_photo(Photo(rgb), rgb, dest)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    dest.write_bytes(b"old")

    def disk_full(fd):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fsutil.os, "fsync", disk_full)  # fails after the data was written
    with pytest.raises(ImageError, match="out.png: cannot write .No space left"):
        save_photo(Photo(rgb), rgb, dest)
    assert list(tmp_path.iterdir()) == [dest] and dest.read_bytes() == b"old"
    monkeypatch.undo()
    save_photo(Photo(rgb), rgb, tmp_path / "missing" / "o.png")  # folders are made at write time
    assert (tmp_path / "missing" / "o.png").is_file()
    (tmp_path / "a_file").write_bytes(b"")
    with pytest.raises(ImageError, match="cannot write"):
        save_photo(Photo(rgb), rgb, tmp_path / "a_file" / "o.png")


@pytest.mark.parametrize("umask", [0o077, 0o022, 0o002])
def test_new_output_follows_the_umask_and_a_replaced_one_keeps_its_mode(tmp_path, umask):
    rgb = smooth(8, 8)
    kept = tmp_path / "kept.png"
    kept.write_bytes(b"old")
    kept.chmod(0o640)
    old = os.umask(umask)
    try:
        save_photo(Photo(rgb), rgb, tmp_path / "new.png")
        save_photo(Photo(rgb), rgb, kept)
    finally:
        os.umask(old)
    assert (tmp_path / "new.png").stat().st_mode & 0o777 == 0o666 & ~umask
    assert kept.stat().st_mode & 0o777 == 0o640 and load_photo(kept).rgb.shape == (8, 8, 3)


def _png_from(ihdr: bytes, stream: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", stream) + chunk(b"IEND", b"")


def _damaged_pngs() -> dict[str, bytes]:
    """Each fails inside libpng's image-data reading, the path where imagecodecs leaks a None ref."""
    w, h = 16, 8
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)  # 16-bit RGB: the case only libpng decodes
    raw = b"".join(b"\x01" + bytes(range(w * 6)) for _ in range(h))
    good = _png_from(ihdr, zlib.compress(raw))
    idat_crc = bytearray(good)
    idat_crc[good.index(b"IDAT") + 6] ^= 0x40
    return {"short data": _png_from(ihdr, zlib.compress(raw[:-20])),
            "bad checksum": _png_from(ihdr, zlib.compress(raw)[:-4] + bytes(4)),
            "bad row filter": _png_from(ihdr, zlib.compress(raw[:w * 6 + 1] + b"\x09" + raw[w * 6 + 2:])),
            "broken deflate": _png_from(ihdr, b"\x78\x9c\xff\xff\xff" + zlib.compress(raw)[5:]),
            "unfinished deflate": _png_from(ihdr, zlib.compress(raw)[:-12]),
            "IDAT CRC": bytes(idat_crc), "cut in IDAT": good[:good.index(b"IDAT") + 30],
            "interlaced, short": _png_from(ihdr[:12] + b"\x01", zlib.compress(raw))}


@pytest.mark.parametrize("name", list(_damaged_pngs()))
def test_damaged_png_data_is_refused_before_libpng(name):
    """One clear error, and None's refcount intact: unvetted, ~8000 such files abort Python."""
    import gc
    import sys

    blob = _damaged_pngs()[name]
    with pytest.raises(ImageError, match="PNG"):
        load_photo(blob)
    gc.collect()
    before = sys.getrefcount(None)
    for _ in range(300):
        with pytest.raises(ImageError):
            load_photo(blob)
    gc.collect()
    assert before - sys.getrefcount(None) < 100


def test_png_guard_accepts_what_encoders_write(rng):
    """Valid PNGs of every layout pass the vetting and decode exactly (Adam7-interlaced included)."""
    as_rgb = lambda a: np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a[..., :3]  # noqa: E731
    for arr in (rng.integers(0, 65536, (7, 13, 3), dtype=np.uint16), rng.integers(0, 256, (9, 5, 4), dtype=np.uint8),
                rng.integers(0, 65536, (3, 17), dtype=np.uint16), rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)):
        assert np.array_equal(load_photo(imagecodecs.png_encode(arr)).rgb, as_rgb(arr)), arr.shape
    for mode in ("1", "L", "P", "RGB"):
        im = Image.fromarray(rng.integers(0, 256, (11, 19, 3), dtype=np.uint8)).convert(mode)
        assert np.array_equal(load_photo(encode(im, "PNG")).rgb, np.asarray(im.convert("RGB"))), mode
    for h, w in ((11, 19), (1, 1), (2, 9), (9, 2)):
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        assert np.array_equal(load_photo(_adam7(rgb)).rgb, rgb), (h, w)


def _adam7(rgb: np.ndarray) -> bytes:
    """An interlaced 8-bit RGB PNG (Pillow and imagecodecs write none): the seven Adam7 passes, unfiltered."""
    from csr_core.png_guard import ADAM7

    h, w = rgb.shape[:2]  # libpng, not the guard, then decodes it: a wrong pass table would not agree
    raw = b"".join(b"\x00" + row.tobytes() for x0, y0, dx, dy in ADAM7 for row in rgb[y0::dy, x0::dx] if row.size)
    return _png_from(struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1), zlib.compress(raw))


def _deep_avif(pixels: np.ndarray, bits: int, **nclx) -> bytes:
    """A lossless AVIF of ``bits``-bit samples (libavif through imagecodecs; Pillow writes 8 bits only)."""
    if not imagecodecs.AVIF.available:
        pytest.skip("this imagecodecs has no AVIF codec (libavif), needed to write a deep AVIF")
    try:
        return imagecodecs.avif_encode(pixels, level=100, speed=8, bitspersample=bits, **nclx)
    except imagecodecs.AvifError as exc:
        pytest.skip(f"this imagecodecs' libavif has no AV1 encoder for a {bits}-bit AVIF ({exc})")


@pytest.mark.parametrize("bits", [10, 12])
def test_deep_avif_keeps_its_depth(tmp_path, bits):
    """A 10- or 12-bit AVIF is read at its depth, to 16 bits (as a deep HEIC): a smooth gradient keeps its
    1024 levels instead of 256, reaches full white, is written as a 16-bit PNG, and counts as 16-bit photo
    in the memory budget."""
    top = (1 << bits) - 1
    ramp = np.rint(np.linspace(0, top, 1024)).astype(np.uint16)
    gradient = np.repeat(np.repeat(ramp[None, :, None], 8, axis=0), 3, axis=2)
    photo = load_photo(_deep_avif(gradient, bits), name="deep.avif")
    assert (photo.format, photo.rgb.dtype, photo.bit_depth) == ("AVIF", np.uint16, 16)
    assert len(np.unique(photo.rgb[..., 1])) > 1000
    assert photo.rgb.min() == 0 and photo.rgb.max() == 65535
    assert np.abs(photo.rgb.astype(float) - gradient * (65535 / top)).max() <= 65535 / top  # lossless, one level
    save_photo(photo, photo.rgb, tmp_path / "out.png")
    assert imagecodecs.png_decode((tmp_path / "out.png").read_bytes()).dtype == np.uint16
    pixels = 8 * 1024
    limit = pixels * 5 // 4  # room for 8-bit samples (3 copies x 3 bytes a pixel), not for 16-bit
    assert load_photo(encode(Image.fromarray((gradient >> (bits - 8)).astype(np.uint8)), "AVIF", quality=90),
                      max_pixels=limit).rgb.dtype == np.uint8
    with pytest.raises(ImageError, match=rf"deep\.avif: image too large: retouching this {bits}-bit AVIF needs"):
        load_photo(_deep_avif(gradient, bits), max_pixels=limit, name="deep.avif")


def test_deep_samples_are_widened_without_a_copy_of_the_photo():
    """A deep AVIF's samples are scaled to 16 bits in place, a band at a time: the memory budget counts
    libavif's planes and its result, not a 32-bit copy of the photo beside them (which took a 6 MP photo
    to 1.7x its budget)."""
    import tracemalloc

    samples = np.arange(3 << 22, dtype=np.uint64) % 1024
    pixels = samples.astype(np.uint16).reshape(-1, 4096, 3)
    tracemalloc.start()
    try:
        out = iio._full_range(pixels, 10)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < pixels.nbytes // 2, f"{peak / 1e6:.0f} MB beside a {pixels.nbytes / 1e6:.0f} MB photo"
    assert out.dtype == np.uint16 and out.shape == pixels.shape
    assert np.array_equal(out.reshape(-1), ((samples * 65535 + 511) // 1023).astype(np.uint16))


def _pq(nits):
    """SMPTE ST 2084's inverse EOTF: cd/m2 -> PQ signal in [0, 1] (written out here, apart from csr's)."""
    y = (np.asarray(nits, float) / 10000) ** (2610 / 16384)
    return ((3424 / 4096 + 2413 / 128 * y) / (1 + 2392 / 128 * y)) ** (2523 / 32)


def _hdr_heic(pixels16: np.ndarray, transfer: int) -> bytes:
    """A 10-bit BT.2020 HEIC of ``pixels16`` whose nclx declares ``transfer`` (pillow-heif writes 13, sRGB's)."""
    pillow_heif = pytest.importorskip("pillow_heif", reason="the 'heif' extra (pillow-heif) is not installed")
    out = io.BytesIO()
    h, w = pixels16.shape[:2]
    pillow_heif.from_bytes(mode="RGB;16", size=(w, h), data=pixels16.tobytes()).save(
        out, format="HEIF", quality=-1, chroma=444, color_primaries=9, transfer_characteristic=13,
        matrix_coefficients=9, full_range_flag=1)
    data = out.getvalue()
    assert data.count(b"colrnclx\0\x09\0\x0d") == 1
    return data.replace(b"colrnclx\0\x09\0\x0d", b"colrnclx\0\x09" + transfer.to_bytes(2, "big"))


NITS = [0, 1, 10, 50, 100, 203, 300, 1000, 4000, 10000]


@pytest.mark.parametrize("fmt", ["AVIF", "HEIC"])
def test_pq_photo_is_tone_mapped_to_srgb(fmt):
    """A 10-bit PQ photo with BT.2020 primaries, of known luminances: black stays black, BT.2408's reference
    white (203 cd/m2) comes out near white, the ramp rises, 1000 cd/m2 and up are white, and mid tones land
    where BT.2446 method C puts them (50 cd/m2: 0.838 x 50% of SDR white). A BT.2020 colour that is sRGB's pure
    red comes out pure red: the primaries are converted."""
    gray = np.repeat(_pq(NITS)[:, None], 3, axis=1)
    red = np.array([0.6274, 0.0691, 0.0164]) * 50  # linear sRGB (1, 0, 0) at 50 cd/m2, in BT.2020 primaries
    signal = np.concatenate([gray, _pq(red)[None]])
    row = np.rint(signal * 1023).astype(np.uint16)
    tile = np.repeat(np.repeat(row[None], 8, axis=0), 8, axis=1)  # 8x8 blocks: no chroma bleeding between them
    if fmt == "AVIF":
        data = _deep_avif(tile, 10, primaries=9, transfer=16, matrix=9)
    else:
        data = _hdr_heic(tile << 6, 16)
    with pytest.warns(UserWarning) as caught:
        photo = load_photo(data, name=f"hdr.{fmt.lower()}")
    assert [str(w.message) for w in caught] == [f"hdr.{fmt.lower()}: an HDR photo (PQ curve), tone-mapped to a "
                                                "standard (SDR) one"]
    assert photo.rgb.dtype == np.uint16 and photo.source_space == "HDR (PQ)"
    got = photo.rgb[4, 4::8].astype(float) / 65535
    levels = got[:len(NITS), 1]
    assert np.abs(got[:len(NITS)] - levels[:, None]).max() < 0.01  # gray stays gray
    assert levels[0] < 0.002 and 0.94 <= levels[NITS.index(203)] <= 0.97 and levels[NITS.index(1000):].min() > 0.998
    assert np.all(np.diff(levels[:NITS.index(1000)]) > 0.02)
    linear50 = 0.83802 * 0.5
    assert abs(levels[NITS.index(50)] - (1.055 * linear50 ** (1 / 2.4) - 0.055)) < 0.01
    r, g, b = got[-1]
    assert abs(r - (1.055 * linear50 ** (1 / 2.4) - 0.055)) < 0.02 and g < 0.03 and b < 0.03, got[-1]


def test_hlg_photo_is_tone_mapped_to_srgb():
    """HLG (BT.2100): 75% signal is BT.2408's reference white of 203 cd/m2 on a 1000 cd/m2 display, so it
    comes out near white as PQ's 203 cd/m2 does; 0 stays black, 50% (51 cd/m2) lands where method C puts it."""
    signal = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    tile = np.repeat(np.repeat(np.rint(signal * 1023).astype(np.uint16)[None, :, None], 8, axis=0), 8, axis=1)
    tile = np.repeat(tile, 3, axis=2)
    with pytest.warns(UserWarning, match=r"hlg\.heic: an HDR photo \(HLG curve\), tone-mapped"):
        photo = load_photo(_hdr_heic(tile << 6, 18), name="hlg.heic")
    levels = photo.rgb[4, 4::8, 1].astype(float) / 65535
    assert levels[0] < 0.002 and 0.94 <= levels[3] <= 0.97 and levels[4] > 0.998
    assert np.all(np.diff(levels[:4]) > 0.05)
    hlg50 = 1000 * (0.5 ** 2 / 3) ** 1.2  # 50%: scene light 1/12, on a 1000 cd/m2 display (51 cd/m2)
    assert abs(levels[2] - (1.055 * (0.83802 * hlg50 / 100) ** (1 / 2.4) - 0.055)) < 0.01
