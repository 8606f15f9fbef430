"""Baked-LUT fast path: fidelity to the exact net, dtypes, .cube / Hald export, default path, batch overlap."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import imagecodecs
import numpy as np
import pytest

from csr_core import inference, lut as L
from csr_core.batch import Job, run
from csr_core.errors import CsrError
from csr_core.inference import Look, apply_base, base_fn, look_modulation, retouch_array
from conftest import lively_net

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def look():
    return Look.of(lively_net(), 64)


def photo_like(h=96, w=128, seed=0):
    """Smooth gradients + blobs + a little noise: the colour statistics of a photo, not of noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.6 * x, 0.3 + 0.4 * y, 0.5 + 0.3 * np.sin(6 * x * y)], -1)
    for _ in range(6):
        cy, cx, r = rng.random(3)
        img += (rng.random(3) - 0.5) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (0.02 + 0.05 * r))[..., None]
    img += rng.normal(0, 0.01, img.shape)
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def psnr(a, b):
    return 10 * np.log10(255 ** 2 / max(np.mean((a.astype(float) - b) ** 2), 1e-12))


def read_cube(path):
    """An independent .cube reader: keywords, then rows with red varying fastest -> lut[r, g, b]."""
    size, rows = None, []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == "LUT_3D_SIZE":
            size = int(parts[1])
        elif parts[0] in ("DOMAIN_MIN", "DOMAIN_MAX"):
            assert [float(v) for v in parts[1:]] == ([0.0] * 3 if parts[0] == "DOMAIN_MIN" else [1.0] * 3)
        elif parts[0][0].isdigit() or parts[0][0] in "-.":
            rows.append([float(v) for v in parts])
    assert size and len(rows) == size ** 3
    return np.array(rows, np.float64).reshape(size, size, size, 3).transpose(2, 1, 0, 3)


def numpy_trilinear(img01, lut):
    """Textbook trilinear interpolation, independent of csr_core."""
    n = lut.shape[0]
    p = img01.reshape(-1, 3) * (n - 1)
    i = np.minimum(np.floor(p).astype(int), n - 2)
    f = p - i
    out = 0
    for dr in (0, 1):
        for dg in (0, 1):
            for db in (0, 1):
                w = ((f[:, 0] if dr else 1 - f[:, 0]) * (f[:, 1] if dg else 1 - f[:, 1])
                     * (f[:, 2] if db else 1 - f[:, 2]))
                out = out + w[:, None] * lut[i[:, 0] + dr, i[:, 1] + dg, i[:, 2] + db]
    return out.reshape(img01.shape)


# -- baking and applying ----------------------------------------------------------------------------
@pytest.mark.parametrize("strength", [1.0, 0.5, 2.0])
def test_bake_equals_net_on_lattice(look, strength):
    mod = look_modulation(look, np.zeros((8, 8, 3), np.uint8))
    lut = L.bake_lut(base_fn(look.base, mod, strength), 9)
    assert lut.shape == (9, 9, 9, 3) and lut.dtype == np.float32
    ident = L.lattice(9)
    assert np.allclose(ident[2, 5, 7], [2 / 8, 5 / 8, 7 / 8])  # indexed [r, g, b]
    exact = apply_base(look.base, ident.reshape(81, 9, 3), mod, strength).reshape(lut.shape)
    assert np.abs(lut - exact).max() < 1e-5


@pytest.mark.parametrize("size", [65, 17, 10])  # 10: cells that are not OpenCV's uniform bins
def test_used_cells_are_the_cells_the_8bit_path_reads(rng, size):
    img = np.concatenate([photo_like(60, 80), rng.integers(0, 256, (3, 80, 3), dtype=np.uint8)])
    img[0, :4] = [[0, 0, 0], [255, 255, 255], [254, 1, 128], [3, 252, 255]]  # both ends of every axis
    v = np.arange(256) * ((size - 1) / 255)
    cell = np.minimum(np.floor(v).astype(int), size - 2)  # textbook: the lower lattice point of a level
    expected = np.zeros((size - 1,) * 3, bool)
    expected[cell[img[..., 0]], cell[img[..., 1]], cell[img[..., 2]]] = True
    assert np.array_equal(L.used_cells(img, size), expected)
    assert np.array_equal(L.used_cells(img[:, ::-1][5:], size), L.used_cells(np.ascontiguousarray(img[5:]), size))
    assert not L.used_cells(img[:0], size).any()
    corners = L.cell_corners(expected)
    r, g, b = np.nonzero(expected)
    assert corners.shape == (size,) * 3 and corners[r + 1, g, b + 1].all() and corners[r, g + 1, b].all()
    assert corners.sum() <= 8 * expected.sum()


@pytest.mark.parametrize("kind", ["photo", "random"])
def test_lazy_lut_bakes_only_what_pixels_reach_and_matches_a_full_bake(look, rng, kind):
    img = photo_like(90, 120) if kind == "photo" else rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    fn = base_fn(look.base, look_modulation(look, img))
    full = L.bake_lut(fn, 33)
    lazy = L.LazyLut(fn, 33)
    out = lazy(img)
    if kind == "photo":
        assert lazy.baked.mean() < 0.5  # a photo's colours reach a fraction of the lattice
    assert np.array_equal(lazy.baked, L.cell_corners(L.used_cells(img, 33)))
    assert np.abs(lazy.lut[lazy.baked] - full[lazy.baked]).max() < 1e-6
    assert np.abs(lazy.lut[~lazy.baked]).max(initial=0) == 0
    ref = L.apply_lut(img, full)
    assert np.abs(out.astype(int) - ref).max() <= 1 and (out != ref).mean() < 1e-3  # BLAS rounding at most
    other = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)  # other pixels: the rest is baked on demand
    assert np.abs(lazy(other).astype(int) - L.apply_lut(other, full)).max() <= 1
    in_place = img.copy()
    assert lazy(in_place, out=in_place) is in_place and np.array_equal(in_place, out)
    img16 = img.astype(np.uint16) * 257  # 16-bit: the whole lattice, and the float path's precision
    out16 = lazy(img16)
    assert lazy.baked.all() and out16.dtype == np.uint16
    assert np.abs(out16.astype(int) - L.apply_lut(img16, full)).max() <= 1


def test_cells_found_meanwhile_serve_those_pixels_only(look):
    img = photo_like(90, 120)
    fn = base_fn(look.base, look_modulation(look, img))
    plain = L.LazyLut(fn, 33)(img)
    asked = []
    found = L.cells_meanwhile(img, 33)
    lazy = L.LazyLut(fn, 33, known=(img, lambda: asked.append(1) or found()))
    assert np.array_equal(lazy(img), plain) and asked == [1]
    img[:8] = 255 - img[:8]  # the same array, changed: later calls find its cells themselves
    assert np.array_equal(lazy(img), L.LazyLut(fn, 33)(img)) and asked == [1]
    crop = np.ascontiguousarray(img[10:50, 20:80])  # other pixels (a selection in GIMP): their own cells
    assert np.array_equal(lazy(crop), L.LazyLut(fn, 33)(crop)) and asked == [1]


def test_cells_meanwhile_reraises_where_they_are_needed(monkeypatch):
    def broken(rgb, size):
        raise ValueError("no histogram")

    monkeypatch.setattr(L, "used_cells", broken)
    wait = L.cells_meanwhile(photo_like(8, 8), 33)  # no error yet: it is raised by the wait
    with pytest.raises(ValueError, match="no histogram"):
        wait()


def test_bake_rejects_bad_arguments(look):
    mod = look_modulation(look, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(CsrError, match="strength"):
        L.bake_lut(base_fn(look.base, mod, 2.5), 9)
    with pytest.raises(CsrError, match="size"):
        L.bake_lut(base_fn(look.base, mod), 1)


@pytest.mark.parametrize("kind", ["random", "photo"])
def test_lut_close_to_exact(look, rng, kind):
    img = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8) if kind == "random" else photo_like(60, 80)
    mod = look_modulation(look, img)
    exact = apply_base(look.base, img, mod)
    assert np.abs(exact.astype(int) - img).mean() > 10  # the look changes the image
    errs = []
    for size in (9, 33):
        out = L.apply_lut(img, L.bake_lut(base_fn(look.base, mod), size))
        assert out.dtype == np.uint8 and out.shape == img.shape
        errs.append((psnr(out, exact), np.abs(out.astype(int) - exact).max()))
    assert errs[1][0] > 50 and errs[1][1] <= 3
    assert errs[0][0] < errs[1][0]  # a finer lattice is closer


def test_uint8_path_matches_float_path_and_strips(look, rng):
    img = rng.integers(0, 256, (70, 50, 3), dtype=np.uint8)
    lut = L.bake_lut(base_fn(look.base, look_modulation(look, img)), 17)
    fast = L.apply_lut(img, lut)  # OpenCV remap (1/32-pixel fixed-point positions)
    ref = np.rint(L.trilinear(img / 255.0, lut) * 255)
    assert np.abs(fast - ref).max() <= 1
    assert np.array_equal(L.apply_lut(img, lut, strip_pixels=7 * 50), fast)
    assert np.array_equal(L.apply_lut(img, lut, strip_pixels=1), fast)


def test_uint16_and_float_keep_dtype_and_precision(look, rng):
    img16 = rng.integers(0, 65536, (40, 30, 3), dtype=np.uint16)
    mod = look_modulation(look, img16)
    lut = L.bake_lut(base_fn(look.base, mod), 33)
    out16 = L.apply_lut(img16, lut, strip_pixels=100)
    assert out16.dtype == np.uint16 and len(np.unique(out16)) > 256
    f = img16.astype(np.float32) / 65535
    outf = L.apply_lut(f, lut)
    assert outf.dtype == np.float32
    assert np.abs(out16 / 65535 - outf).max() < 1.5 / 65535
    assert np.abs(outf - numpy_trilinear(f.astype(np.float64), lut.astype(np.float64))).max() < 1e-5
    assert np.abs(outf - apply_base(look.base, f, mod)).max() < 0.02


def test_strip_helper_serialises_libraries_and_reraises():
    import cv2
    from threadpoolctl import threadpool_info

    from csr_core.threads import for_each

    blas = lambda: [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]  # noqa: E731
    before, seen = (cv2.getNumThreads(), blas()), []
    for_each(lambda s: seen.append((s, cv2.getNumThreads(), blas())), range(4), workers=2)
    assert sorted(s for s, _, _ in seen) == [0, 1, 2, 3]
    assert all(n == 1 and all(b == 1 for b in bl) for _, n, bl in seen)
    assert (cv2.getNumThreads(), blas()) == before

    def boom(_):
        raise CsrError("boom")

    with pytest.raises(CsrError, match="boom"):
        for_each(boom, range(3))
    assert (cv2.getNumThreads(), blas()) == before


def test_odd_shapes_and_opencv_threads_restored(look, rng):
    import cv2

    lut = L.bake_lut(base_fn(look.base, look_modulation(look, photo_like())), 17)
    assert L.apply_lut(np.zeros((0, 4, 3), np.uint8), lut).shape == (0, 4, 3)
    img = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
    ref = np.rint(L.trilinear(img / 255.0, lut) * 255)
    for part in (img[:1], img[:, :1], img[:, ::3], img[::-1]):  # one row, one column, strided views
        assert np.abs(L.apply_lut(part, lut) - L.trilinear(part / 255.0, lut) * 255).max() <= 1
    assert np.array_equal(L.apply_lut(img, L.lattice(129)), img)  # too big for the remap path: float path
    before = cv2.getNumThreads()
    with ThreadPoolExecutor(3) as pool:  # concurrent callers share the single-thread setting
        outs = list(pool.map(lambda _: L.apply_lut(img, lut, strip_pixels=41 * 4), range(6)))
    assert cv2.getNumThreads() == before
    assert all(np.abs(o - ref).max() <= 1 for o in outs)


# -- export ------------------------------------------------------------------------------------------
def test_cube_file_read_independently_matches_core(look, tmp_path):
    img = photo_like(48, 64, seed=3)
    lut = L.bake_lut(base_fn(look.base, look_modulation(look, img), 0.8), 17)
    L.write_cube(lut, tmp_path / "look.cube", title='my "look"\nx')
    text = (tmp_path / "look.cube").read_text()
    assert text.startswith('TITLE "my \'look\'') and "LUT_3D_SIZE 17\n" in text
    parsed = read_cube(tmp_path / "look.cube")
    assert np.abs(parsed - lut).max() < 1e-6
    ext = np.rint(numpy_trilinear(img / 255.0, parsed) * 255)
    assert np.abs(ext - L.apply_lut(img, lut)).max() <= 1
    assert not list(tmp_path.glob(".*.part"))  # written atomically, nothing left behind


def test_a_cube_is_ascii_whatever_the_photo_is_called(tmp_path):
    """A photo named in another script: the .cube stays ASCII, as the format is (before: UTF-8 bytes,
    and where the system's encoding is not UTF-8, such as Windows, 'unexpected error (UnicodeEncodeError)')."""
    L.write_cube(L.lattice(3), tmp_path / "look.cube", title="csr C x1 for 東京 été.jpg")
    assert (tmp_path / "look.cube").read_bytes().decode("ascii").startswith('TITLE "csr C x1 for ?? ?t?.jpg"\n')


def test_cube_red_fastest(tmp_path):
    L.write_cube(L.lattice(3), tmp_path / "id.cube")
    rows = [r for r in (tmp_path / "id.cube").read_text().splitlines() if r[:1].isdigit()]
    assert rows[1] == "0.500000 0.000000 0.000000" and rows[3] == "0.000000 0.500000 0.000000"
    assert rows[9] == "0.000000 0.000000 0.500000"


def test_hald_png_readback(look, tmp_path):
    L.write_hald(L.lattice(17), tmp_path / "id.png", level=4)  # identity -> the standard Hald image
    hald = imagecodecs.png_decode((tmp_path / "id.png").read_bytes())
    assert hald.shape == (64, 64, 3) and hald.dtype == np.uint16
    i = np.arange(64 * 64)
    expect = np.stack([i % 16, i // 16 % 16, i // 256], -1) / 15
    assert np.abs(hald.reshape(-1, 3) / 65535 - expect).max() < 1e-4
    lut = L.bake_lut(base_fn(look.base, look_modulation(look, photo_like())), 16)
    L.write_hald(lut, tmp_path / "look.png", level=4)
    back = imagecodecs.png_decode((tmp_path / "look.png").read_bytes()).reshape(16, 16, 16, 3)
    assert np.abs(back.transpose(2, 1, 0, 3) / 65535 - lut).max() < 1e-4
    L.write_hald(lut, tmp_path / "8.png")  # level 8: the usual 512x512, a 64^3 cube
    assert imagecodecs.png_decode((tmp_path / "8.png").read_bytes()).shape == (512, 512, 3)


# -- the default path -----------------------------------------------------------------------------------
def test_retouch_array_default_is_lut_exact_flag_is_net(look, monkeypatch):
    monkeypatch.setattr(inference, "LUT_SIZE", 17)
    img = photo_like(80, 100)  # 8000 pixels > 17^3: the LUT path
    mod = look_modulation(look, img)
    lut_out = L.apply_lut(img, L.bake_lut(base_fn(look.base, mod, 0.7), 17))
    assert np.array_equal(retouch_array(img, look, 0.7), lut_out)
    buf = img.copy()
    assert retouch_array(buf, look, 0.7, out=buf) is buf and np.array_equal(buf, lut_out)  # in place
    assert np.array_equal(retouch_array(img, look, 0.7, exact=True), apply_base(look.base, img, mod, 0.7))
    small = img[:40, :40]  # fewer pixels than lattice points: exact is cheaper and is used
    assert np.array_equal(retouch_array(small, look), retouch_array(small, look, exact=True))


def test_sample_run_identical_between_paths(look):
    from csr_core.image_io import load_photo

    img = load_photo(REPO / "samples" / "coffee_dark.jpg").rgb
    mod = look_modulation(look, img)
    exact = apply_base(look.base, img, mod)
    fast = L.apply_lut(img, L.bake_lut(base_fn(look.base, mod), L.DEFAULT_SIZE))  # forced: coffee is small
    assert np.abs(exact.astype(int) - img).mean() > 5
    assert np.abs(fast.astype(int) - exact).max() <= 1


def test_condition_input_on_read_only_arrays(look):
    img = np.ascontiguousarray(np.kron(photo_like(40, 60), np.ones((30, 30, 1), np.uint8)))  # 2.16 MP
    ref = look_modulation(look, img)
    img.flags.writeable = False  # read-only arrays (np.asarray of a PIL image) work too
    assert np.array_equal(look_modulation(look, img).scales[0], ref.scales[0])


# -- batch overlap ------------------------------------------------------------------------------------
def test_batch_runs_two_at_a_time_and_keeps_semantics(tmp_path):
    jobs = [Job(tmp_path / f"{i}.jpg", tmp_path / "out" / f"{i}.jpg") for i in range(7)]
    jobs[2].error = "planned failure"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "4.jpg").write_bytes(b"x")
    lock, active, peak, seen = threading.Lock(), [0], [0], []

    def process(job):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        if job.src.name == "5.jpg":
            raise CsrError("5.jpg: boom")
        job.dest.write_bytes(b"ok")

    outcomes = run(jobs, process, on_outcome=seen.append)
    assert peak[0] == 2
    assert [o.job for o in outcomes] == jobs and sorted(map(id, seen)) == sorted(map(id, outcomes))
    assert [o.status for o in outcomes] == ["ok", "ok", "failed", "ok", "failed", "failed", "ok"]
    assert outcomes[5].message == "5.jpg: boom" and "already exists" in outcomes[4].message
    assert [o.status for o in run(jobs[:2], process, skip_existing=True)] == ["skipped", "skipped"]


def test_apply_in_place_on_views(rng):
    """``out`` may be any view: a selection's crop (the GIMP worker retouches one in place) or a mirrored
    image (whose layout OpenCV cannot write into)."""
    from csr_core.lut import apply_lut, lattice

    lut = lattice(65) ** 0.5
    for dtype in (np.uint8, np.uint16):
        img = rng.integers(0, np.iinfo(dtype).max + 1, (300, 400, 3), dtype=dtype)
        for view in (img[50:250, 60:350], img[:, ::-1]):
            expected = apply_lut(view.copy(), lut)
            apply_lut(view, lut, out=view)
            assert np.array_equal(view, expected), (dtype, view.strides)
