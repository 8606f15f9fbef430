"""A JPEG or PNG retouch imports only what it needs: Pillow, tifffile and threadpoolctl made unimportable,
``csr retouch`` still retouches JPEG to JPEG and PNG to PNG, and gives the same pixels as in-process."""
import os
import subprocess
import sys
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
CSR = Path(sys.executable).with_name("csr")
BLOCKED = ("PIL", "tifffile", "threadpoolctl")


@pytest.fixture
def lean_env(tmp_path_factory, csr_home):
    shadow = tmp_path_factory.mktemp("lean")
    for module in BLOCKED:
        (shadow / module).mkdir()
        (shadow / module / "__init__.py").write_text(f"raise ImportError('{module} is blocked by {__name__}')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow), str(REPO)]), CSR_DEBUG="1")
    env.pop("OPENBLAS_NUM_THREADS", None)  # the csr command sets it: BLAS needs no limiting then
    return env


def test_blocker_works(lean_env):
    p = subprocess.run([sys.executable, "-c", "import PIL"], env=lean_env, capture_output=True, text=True)
    assert p.returncode != 0 and "blocked" in p.stderr


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_jpeg_and_png_runs_need_neither_pillow_nor_tifffile(lean_env, tmp_path, fmt):
    from csr_core.image_io import load_photo
    from csr_core.pipeline import retouch

    y, x = np.mgrid[0:300, 0:400] / 400
    img = np.rint(np.stack([0.2 + 0.7 * x, 0.3 + 0.5 * y, 0.5 + 0.4 * np.sin(9 * x * y)], -1) * 255).astype(np.uint8)
    src = tmp_path / f"in.{fmt}"
    src.write_bytes(imagecodecs.jpeg8_encode(img, level=90) if fmt == "jpg" else imagecodecs.png_encode(img))
    out = tmp_path / f"out.{fmt}"
    p = subprocess.run([str(CSR), "retouch", str(src), "-o", str(out)], env=lean_env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    got = load_photo(out).rgb
    expected = retouch(load_photo(src).rgb)
    if fmt == "png":
        assert np.array_equal(got, expected)
    else:  # JPEG: the same pixels, compressed
        assert np.abs(got.astype(int) - expected).mean() < 2


def test_exiv2_loads_when_metadata_is_first_read(tmp_path):
    """Importing the image code does not load exiv2 (csr retouch loads it while the photo decodes);
    reading a photo does, and its metadata then reads as before."""
    code = ("import sys; import csr_core.image_io as io, csr_core.metadata as m\n"
            "assert 'exiv2' not in sys.modules and m.exiv2 is None\n"
            "photo = io.load_photo(sys.argv[1])\n"
            "assert m.exiv2 is sys.modules['exiv2']\n"
            "print(photo.meta.get('Exif.Image.Make'))")
    src = tmp_path / "tagged.jpg"
    src.write_bytes(_jpeg_with_make(b"Acme"))
    p = subprocess.run([sys.executable, "-c", code, str(src)], capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "Acme"


def _jpeg_with_make(make: bytes) -> bytes:
    """A small JPEG whose EXIF (an APP1 segment, built by hand here) names its camera maker."""
    import struct

    value = make + b"\0"
    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x010F, 2, len(value), 26) + struct.pack("<I", 0)
    tiff = b"II*\0" + struct.pack("<I", 8) + ifd + value
    app1 = b"Exif\0\0" + tiff
    jpeg = imagecodecs.jpeg8_encode(np.full((16, 16, 3), 128, np.uint8), level=90)
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:]
