"""heif_guard: real HEIC/AVIF photos and grids pass untouched; hostile structures are refused from the
boxes alone; damaged files raise only HeifDataError (the guard) and ImageError (the loader).

The hostile files at the issue's sizes run in a capped child in test_unusual_files.py.
"""
from __future__ import annotations

import io
import struct
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, features

import hostile
from csr_core import heif_guard
from csr_core.errors import ImageError
from csr_core.image_io import load_photo

pillow_heif = pytest.importorskip("pillow_heif", reason="the 'heif' extra (pillow-heif) is not installed")
if not features.check("avif"):
    pytest.skip("this Pillow has no AVIF support", allow_module_level=True)

FORMATS = ["AVIF", "HEIC"]


def library_decode(data: bytes, fmt: str) -> np.ndarray:
    """The pixels as the format's library decodes them on its own (uint8, or uint16 for deep HEIC)."""
    if fmt == "HEIC":
        return np.asarray(pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=False))
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("size, mode", [((33, 17), "RGB"), ((640, 427), "RGB"), ((301, 200), "RGBA"),
                                        ((1024, 768), "RGBA")])
def test_real_photos_decode_as_their_library_decodes_them(fmt, size, mode):
    im = Image.fromarray(hostile.pixels(size[1], size[0], len(mode), seed=size[0]))
    data = hostile.heif_encode(im, fmt, quality=80)
    info = heif_guard.inspect(data)
    assert info.tiles == 0 and info.width >= size[0] and info.height >= size[1]  # HEIC: padded, then cropped
    photo = load_photo(data, name=f"photo.{fmt.lower()}")
    expected = library_decode(data, fmt)
    assert np.array_equal(photo.rgb, expected[..., :3])
    assert (photo.alpha is None) == (mode == "RGB")
    if photo.alpha is not None:
        assert np.array_equal(photo.alpha, expected[..., 3])


def test_deep_heic_decodes_as_libheif_decodes_it():
    rgb = hostile.pixels(48, 64, 3, np.uint16)
    out = io.BytesIO()
    pillow_heif.from_bytes(mode="RGB;16", size=(64, 48), data=rgb.tobytes()).save(out, quality=90)
    photo = load_photo(out.getvalue(), name="deep.heic")
    assert photo.rgb.dtype == np.uint16 and np.array_equal(photo.rgb, library_decode(out.getvalue(), "HEIC"))


@pytest.mark.parametrize("fmt", FORMATS)
def test_real_grid_decodes_to_the_mosaic_of_its_tiles(fmt):
    """A grid of six distinct tiles (as phones write large photos) passes, and decodes to exactly
    its tiles decoded one by one, in place (4:4:4, as libavif upsamples 4:2:0 chroma across seams)."""
    kw = {"subsampling": "4:4:4"} if fmt == "AVIF" else {"chroma": 444}
    tiles = [hostile.heif_encode(Image.fromarray(hostile.pixels(64, 96, seed=s)), fmt, quality=80, **kw)
             for s in range(6)]
    data = hostile.heif_grid(tiles, 2, 3)
    info = heif_guard.inspect(data)
    assert (info.width, info.height, info.tiles) == (288, 128, 6)
    mosaic = np.concatenate([np.concatenate([library_decode(t, fmt)[:64, :96] for t in tiles[r * 3:r * 3 + 3]], 1)
                             for r in range(2)])
    assert np.array_equal(load_photo(data, name=f"grid.{fmt.lower()}").rgb, mosaic)


def test_flat_large_avif_is_not_refused():
    """The cheapest honest coding: one flat colour at 4096x4096 is ~800 bytes of AVIF (about 35,000
    pixels per coded byte), well within PIXELS_PER_BYTE."""
    data = hostile.encode(Image.new("RGB", (4096, 4096), (120, 130, 140)), "AVIF", quality=0, speed=10)
    info = heif_guard.inspect(data)
    assert (info.width, info.height) == (4096, 4096) and info.coded_bytes < 2000
    assert info.width * info.height < info.coded_bytes * heif_guard.PIXELS_PER_BYTE / 10


def test_empty_boxes_in_meta_are_skipped():
    """A box the guard does not read (here an empty 'free' box) is passed over, whatever its size."""
    data = hostile.heif_encode(Image.fromarray(hostile.pixels(20, 30)), "AVIF", quality=50)
    at = data.index(b"meta") - 4
    size = struct.unpack_from(">I", data, at)[0]
    padded = data[:at] + struct.pack(">I", size + 8) + data[at + 4:at + 12] + b"\0\0\0\x08free" + data[at + 12:]
    assert heif_guard.inspect(padded) == heif_guard.inspect(data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_declared_size_beyond_the_data_is_refused(fmt):
    data = hostile.heif_declaring(fmt, 14000, 14000)
    assert len(data) < 600
    why = "coded image of at most 8x8" if fmt == "AVIF" else "more than that data can fill"
    with pytest.raises(heif_guard.HeifDataError, match=why):
        heif_guard.inspect(data)
    with pytest.raises(ImageError, match=f"^hostile.{fmt.lower()}: refusing .*14000x14000"):
        load_photo(data, name=f"hostile.{fmt.lower()}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_grid_tiles_sharing_data_are_refused(fmt):
    """Tiles pointing at the same bytes, or naming the same tile twice, small or large."""
    ftyp, kind, props, coded = hostile.heif_single_parts(
        hostile.heif_encode(Image.fromarray(hostile.pixels(64, 64)), fmt, quality=50))
    shared = hostile.heif_file(ftyp, kind, [(props, coded)] * 4, (64, 64), (2, 2, 128, 128))
    with pytest.raises(heif_guard.HeifDataError, match="4 tiles share coded data"):
        heif_guard.inspect(shared)
    twice = bytearray(hostile.heif_file(ftyp, kind, [(props, coded), (props, coded[:-1] + b"x")], (64, 64),
                                        (1, 2, 128, 64)))
    at = twice.index(b"dimg") + 4
    assert struct.unpack_from(">HHHH", twice, at) == (1, 2, 2, 3)
    struct.pack_into(">H", twice, at + 6, 2)  # the second tile reference names the first tile again
    with pytest.raises(heif_guard.HeifDataError, match="2 tiles share coded data"):
        heif_guard.inspect(bytes(twice))
    with pytest.raises(heif_guard.HeifDataError, match="3,025 tiles share"):
        heif_guard.inspect(hostile.heif_shared_grid(fmt, 14000, 14000))


# ----------------------------------------------------------------------------- fuzz

def _seeds() -> list[bytes]:
    small = Image.fromarray(hostile.pixels(24, 32, 4, seed=2))
    tiles = [hostile.heif_encode(Image.fromarray(hostile.pixels(16, 16, seed=s)), "AVIF", quality=50) for s in range(4)]
    return [hostile.heif_encode(small, fmt, quality=50) for fmt in FORMATS] + [hostile.heif_grid(tiles, 2, 2)]


SEEDS = _seeds()


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        if len(data) < 2:
            break
        at = draw(st.integers(0, min(len(data) - 1, 600)) | st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["byte", "int32", "cut", "insert", "delete"]))
        if op == "byte":
            data[at] = draw(st.integers(0, 255))
        elif op == "int32" and at + 4 <= len(data):
            struct.pack_into(">I", data, at, draw(st.sampled_from([0, 1, 8, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])))
        elif op == "cut":
            del data[max(at, 1):]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 12))]
    return bytes(data)


@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None, max_examples=400)
@given(mutated())
def test_damaged_structure_raises_only_heif_data_error(data):
    try:
        info = heif_guard.inspect(data)
    except heif_guard.HeifDataError as exc:
        assert "\n" not in str(exc)
    else:
        assert info.width * info.height <= max(heif_guard.FREE_PIXELS, info.coded_bytes * heif_guard.PIXELS_PER_BYTE)


@settings(deadline=None, suppress_health_check=list(HealthCheck), database=None, max_examples=60)
@given(mutated())
def test_damaged_files_load_or_raise_image_error(data):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load_photo(data, max_pixels=1_000_000, name="fuzz.avif")
    except ImageError as exc:
        assert str(exc).startswith("fuzz.avif: ") and "\n" not in str(exc)
