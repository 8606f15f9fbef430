import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from csr_core.errors import PairsError
from csr_core.metrics import psnr
from csr_core.image_io import to_float
from csr_core.pairs import SUPPORTED_EXTS, Pair, discover_pairs, is_fivek_test_id, load_pair, load_pairs


def _img(path: Path, w=8, h=6, value=128, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    arr = np.clip(value + rng.integers(-20, 21, (h, w, 3)), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr)
    (im.convert("RGBA") if mode == "RGBA" else im).save(path)
    return path


def _edit(before: Path, after: Path, size=None, curve=lambda x: x ** 0.7 * [1.05, 1.0, 0.9]):
    """Save ``after`` as a colour edit of ``before`` (the same photo: a real pair), resized to ``size``."""
    x = np.asarray(Image.open(before).convert("RGB")) / 255
    im = Image.fromarray(np.round(np.clip(curve(x), 0, 1) * 255).astype(np.uint8))
    after.parent.mkdir(parents=True, exist_ok=True)
    (im.resize(size, Image.Resampling.LANCZOS) if size else im).save(after)
    return after


def _touch(root: Path, *names):
    for n in names:
        p = root / n
        if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"):
            _img(p)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("x")


def _names(pairs):
    return [p.name for p in pairs]


def test_before_after_layout(tmp_path):
    _touch(tmp_path, "before/b.JPG", "after/b.png", "before/a.png", "after/a.tif",
           "before/lonely.png", "after/orphan.webp", "before/raw.CR2", "before/notes.txt",
           "before/.DS_Store", "before/IMG_1.AAE", "before/b.JPG.dop", "before/raw.THM")  # sidecars: quiet
    pairs, problems = discover_pairs(tmp_path)
    assert _names(pairs) == ["a", "b"]
    assert pairs[1].before.name == "b.JPG" and pairs[1].after.name == "b.png"
    text = "\n".join(problems)
    assert "before/lonely.png: no matching file in after/" in text
    assert "after/orphan.webp: no matching file in before/" in text
    assert "before/raw.CR2: no matching file in after/" in text  # a RAW is a photo
    assert ".DS_Store" not in text and "notes.txt" not in text and len(problems) == 3


def test_discovery_finds_the_photos_lying_beside_before_and_after(tmp_path):
    """Finished photos kept beside before/ and after/ are found as such (not as problems, since no layout reads
    them) by the test that decides what a photo is everywhere else: hidden files and other files are none."""
    _touch(tmp_path, "before/a.png", "after/a.png", "IMG_1.JPG", "final.CR2", "notes.txt", "page.xyz",
           ".hidden.jpg", "album/b.png")
    loose = []
    pairs, problems = discover_pairs(tmp_path, loose=loose)
    assert _names(pairs) == ["a"] and problems == []
    assert sorted(p.name for p in loose) == ["IMG_1.JPG", "final.CR2"]
    _touch(tmp_path / "flat", "a_input.png", "a_target.png", "IMG_2.jpg")  # a layout that reads this folder
    loose = []
    discover_pairs(tmp_path / "flat", loose=loose)
    assert loose == []


def test_raw_and_heic_befores_pair_with_exported_jpegs(tmp_path):
    """A photographer's natural pair: a RAW (or HEIC) and the JPEG exported from its edit. A RAW shot beside
    its camera JPEG is two 'befores' for one 'after': that pair is skipped with a line saying why."""
    _touch(tmp_path, "before/d.NEF", "after/d.jpg", "before/h.heic", "after/h.jpg", "before/c.CR2",
           "before/c.JPG", "after/c.jpg", "before/clip.mov")
    pairs, problems = discover_pairs(tmp_path)
    assert [(p.before.name, p.after.name) for p in pairs] == [("d.NEF", "d.jpg"), ("h.heic", "h.jpg")]
    assert sorted(problems) == ["before/c.CR2, before/c.JPG, after/c.jpg: several files for 'c' on one side; keep "
                                "only one", f"before/clip.mov: unsupported file type; expected a photo "
                                f"({', '.join(SUPPORTED_EXTS)})"]


def test_a_raw_before_is_developed_as_csr_retouch_develops_it(tmp_path):
    """Training sees a RAW 'before' as retouching it will: csr's own neutral development."""
    pytest.importorskip("rawpy", reason="the 'raw' extra (rawpy) is not installed")
    from csr_core.image_io import load_photo
    from test_metadata import write_dng

    (tmp_path / "before").mkdir()
    write_dng(tmp_path / "before" / "shot.dng")
    developed = to_float(load_photo(tmp_path / "before" / "shot.dng").rgb)
    _img(tmp_path / "after" / "shot.jpg", w=developed.shape[1], h=developed.shape[0])
    pairs, problems = discover_pairs(tmp_path)
    before, after, warnings = load_pair(pairs[0])
    assert problems == [] and warnings == [] and before.shape == developed.shape
    assert np.array_equal(before, developed)


def test_ambiguous_duplicates(tmp_path):
    _touch(tmp_path, "before/x.png", "before/x.jpg", "after/x.png", "before/y.png", "after/y.png")
    pairs, problems = discover_pairs(tmp_path)
    assert _names(pairs) == ["y"]
    assert len(problems) == 1 and "before/x.jpg" in problems[0] and "before/x.png" in problems[0]


def test_flat_layout(tmp_path):
    _touch(tmp_path, "p1_input.png", "p1_target.png", "p2_before.jpg", "p2_AFTER.jpg",
           "p3_input.png", "random.png")
    pairs, problems = discover_pairs(tmp_path)
    assert _names(pairs) == ["p1", "p2"]
    assert pairs[0].before.name == "p1_input.png" and pairs[0].after.name == "p1_target.png"
    assert "p3_input.png: no matching X_target/X_after file" in problems
    assert any(p.startswith("random.png: not named") for p in problems)


def test_fivek_layout_and_id_matching(tmp_path):
    _touch(tmp_path, "input/a0001-IMG_1234.tif", "input/a0002.png", "expertC/a0001.tif",
           "expertC/a0002-DSC_9.jpg", "input/a0003.png")
    pairs, problems = discover_pairs(tmp_path)
    assert _names(pairs) == ["a0001", "a0002"]
    assert pairs[0].before.name == "a0001-IMG_1234.tif"
    assert problems == ["input/a0003.png: no matching file in expertC/"]


@pytest.mark.parametrize("folder", ["expertC", "expert_c", "ExpertC", "C", "c"])
def test_fivek_expert_folder_names(tmp_path, folder):
    _touch(tmp_path, "Input/a0001.png", f"{folder}/a0001.png")
    pairs, _ = discover_pairs(tmp_path)
    assert pairs[0].after.parent.name == folder


def test_fivek_several_experts(tmp_path):
    _touch(tmp_path, "original/a0001.png", "expertA/a0001.png", "expertC/a0001-x.png")
    with pytest.raises(PairsError, match="expertA, expertC"):
        discover_pairs(tmp_path)
    for choice in ("C", "c", "expertC", "expert_c"):
        pairs, _ = discover_pairs(tmp_path, expert=choice)
        assert pairs[0].after.name == "a0001-x.png"
    with pytest.raises(PairsError, match="expert 'E'.*expertA, expertC"):
        discover_pairs(tmp_path, expert="E")


def test_fivek_test_split_excluded(tmp_path):
    assert is_fivek_test_id("a4501") and is_fivek_test_id("a5000-IMG_1") and is_fivek_test_id("A4700")
    assert not is_fivek_test_id("a4500") and not is_fivek_test_id("a5001") and not is_fivek_test_id("a45010")
    _touch(tmp_path, "input/a4501.png", "expertC/a4501.png", "input/a0100.png", "expertC/a0100.png",
           "a4999_input.png")
    pairs, problems = discover_pairs(tmp_path)
    assert _names(pairs) == ["a0100"]
    assert len(problems) == 1 and "input/a4501.png" in problems[0] and "test split" in problems[0]
    flat = tmp_path / "flat"
    _touch(flat, "a4999_input.png", "a4999_target.png")
    with pytest.raises(PairsError, match="no image pairs found.*test split"):
        discover_pairs(flat)


def test_no_pairs_and_not_a_folder(tmp_path):
    with pytest.raises(PairsError, match="no image pairs found.*before/ \\+ after/.*X_input.*FiveK"):
        discover_pairs(tmp_path)
    with pytest.raises(PairsError, match="not a folder"):
        discover_pairs(tmp_path / "nope")
    f = _img(tmp_path / "f.png")
    with pytest.raises(PairsError, match="not a folder"):
        discover_pairs(f)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(
    st.sampled_from(["", "before/", "after/", "input/", "expertA/", "C/", "expert_c/", "Input/"]),
    st.sampled_from(["a0001", "a4600", "x", "X", "a0001-IMG", "img 2", "_", "a", "A0001"]),
    st.sampled_from(["", "_input", "_target", "_before", "_AFTER", "-x"]),
    st.sampled_from([".png", ".JPG", ".jpeg", ".tif", ".txt", "", ".webp"]),
), max_size=12), st.sampled_from([None, "C", "a", "zz"]))
def test_discover_only_raises_pairs_error(entries, expert):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for folder, stem, role, ext in entries:
            p = root / f"{folder}{stem}{role}{ext}"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"")
        try:
            pairs, problems = discover_pairs(root, expert=expert)
        except PairsError as e:
            assert str(e) and "\n" not in str(e)
            return
        assert pairs == sorted(pairs, key=lambda p: p.name)
        assert all(isinstance(s, str) and "\n" not in s for s in problems)
        assert not any(is_fivek_test_id(p.name) for p in pairs)


def test_load_pair_basic_rgba_and_max_side(tmp_path):
    b = _img(tmp_path / "b.png", w=40, h=30, value=60, mode="RGBA")
    a = _img(tmp_path / "a.png", w=40, h=30, value=200)
    before, after, warnings = load_pair(Pair("p", b, a))
    assert before.shape == after.shape == (30, 40, 3) and before.dtype == np.float32
    assert warnings == [] and 0 <= before.min() and after.max() <= 1
    assert np.array_equal(np.round(before * 255).astype(np.uint8), np.asarray(Image.open(b).convert("RGB")))
    before, after, _ = load_pair(Pair("p", b, a), max_side=20)
    assert before.shape == after.shape == (15, 20, 3)
    assert abs(before.mean() - 60 / 255) < 0.02
    before, _, _ = load_pair(Pair("p", b, a), max_side=100)
    assert before.shape == (30, 40, 3)


@pytest.mark.parametrize("after_size", [(200, 100), (196, 99), (204, 102)])
def test_load_pair_resizes_close_sizes(tmp_path, after_size):
    b = _img(tmp_path / "b.png", w=200, h=100)
    a = _img(tmp_path / "a.png", w=after_size[0], h=after_size[1])
    before, after, warnings = load_pair(Pair("pic", b, a))
    assert after.shape == before.shape == (100, 200, 3) and after.dtype == np.float32
    if after_size == (200, 100):
        assert warnings == []
    else:
        assert len(warnings) == 1 and "pic" in warnings[0] and f"{after_size[0]}x{after_size[1]}" in warnings[0]


def test_load_pair_16bit_precision(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    ramp = np.tile(np.arange(0, 65536, 256, dtype=np.uint16)[None, :, None] + 3, (4, 1, 3))
    tifffile.imwrite(tmp_path / "b.tif", ramp)
    tifffile.imwrite(tmp_path / "a.tif", ramp[:, :250])  # a 2% crop: resized on the float data
    before, after, warnings = load_pair(Pair("deep", tmp_path / "b.tif", tmp_path / "a.tif"))
    np.testing.assert_allclose(before, ramp / 65535.0, atol=1e-7)
    assert after.shape == before.shape and len(warnings) == 1
    assert np.unique(np.round(after * 65535)).size > 200  # not squeezed through 8 bit


def test_load_pair_rejects_different_sizes(tmp_path):
    b = _img(tmp_path / "b.png", w=200, h=100)
    a = _img(tmp_path / "a.png", w=100, h=100)
    with pytest.raises(PairsError, match="pic.*200x100.*100x100.*align$"):
        load_pair(Pair("pic", b, a))
    turned = _img(tmp_path / "t.png", w=50, h=100)  # exported portrait from a landscape 'before'
    with pytest.raises(PairsError, match="200x100 .* is 50x100; sizes too different to align; the after is turned a "
                                         "quarter turn: export it the same way up$"):
        load_pair(Pair("pic", b, turned))


def test_load_pair_unreadable(tmp_path):
    b = _img(tmp_path / "b.png")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(PairsError, match="broken.png"):
        load_pair(Pair("p", b, bad))
    with pytest.raises(PairsError, match="missing.png"):
        load_pair(Pair("p", tmp_path / "missing.png", b))


@pytest.fixture
def fivek_dev(shared_dir):
    d = Path(shared_dir) / "data" / "fivek-c-dev"
    if not d.is_dir():
        pytest.skip("shared FiveK dev pairs not available")
    return d


def test_shared_fivek_dev_pairs(fivek_dev):
    pairs, problems = discover_pairs(fivek_dev)
    assert len(pairs) == 13 and problems == []
    pair = next(p for p in pairs if p.name == "a0212")
    before, after, warnings = load_pair(pair)
    assert warnings == []
    assert psnr(before, after) == pytest.approx(22.53, abs=0.05)


def test_expert_is_refused_where_there_is_no_fivek_expert_folder(tmp_path):
    """--expert names a FiveK expert folder: on other layouts it would be ignored, so it is an error."""
    _touch(tmp_path / "ba", "before/a.png", "after/a.png")
    _touch(tmp_path / "files", "a_input.png", "a_target.png")
    _touch(tmp_path / "fivek", "input/a0001.png", "expertC/a0001.png")
    for layout in ("ba", "files"):
        assert discover_pairs(tmp_path / layout)[0]
        with pytest.raises(PairsError, match="--expert picks a FiveK expert folder .* leave it out$"):
            discover_pairs(tmp_path / layout, expert="C")
    assert [p.after.parent.name for p in discover_pairs(tmp_path / "fivek", expert="C")[0]] == ["expertC"]


def test_load_pairs_leaves_out_a_pair_it_cannot_read_or_align_naming_it(tmp_path):
    """One bad pair among good ones: the others load (8 bit, each pair's own warnings kept), and one line
    names the pair left out and why."""
    _touch(tmp_path, "before/a.png", "after/a.png", "before/c.png")
    _img(tmp_path / "before/b.png", w=200, h=100)
    _img(tmp_path / "after/b.png", w=100, h=100)  # cannot be aligned
    (tmp_path / "after/c.png").write_bytes(b"\x89PNG damaged")  # cannot be read
    _img(tmp_path / "before/d.png", w=200, h=100)
    _edit(tmp_path / "before/d.png", tmp_path / "after/d.png", (196, 99))  # a small crop: resized, with a warning
    skipped = []
    loaded = list(load_pairs(discover_pairs(tmp_path)[0], 64, skipped))
    assert [p.name for p in loaded] == ["a", "d"] and loaded[0].before.dtype == np.uint8
    assert loaded[1].before.shape == loaded[1].after.shape == (32, 64, 3) and "196x99" in loaded[1].warnings[0]
    assert len(skipped) == 2
    assert skipped[0].startswith("pair b: before b.png is 200x100 but after b.png is 100x100") and \
        skipped[0].endswith("left out")
    assert skipped[1].startswith("pair c: ") and "c.png" in skipped[1] and "not a supported image" in skipped[1]


def test_load_pair_shrinks_a_large_before_without_enlarging_its_after(tmp_path, monkeypatch):
    """A large 'before' (a RAW's sensor size) and a small exported 'after': the after is never enlarged to the
    before's size on the way to max_side, so memory stays that of the files themselves."""
    import csr_core.pairs as pairs

    made = []
    real = pairs._resize
    monkeypatch.setattr(pairs, "_resize", lambda x, w, h, method: made.append((w, h)) or real(x, w, h, method))
    b = _img(tmp_path / "b.png", w=3000, h=2000)
    a = _img(tmp_path / "a.png", w=600, h=400)
    before, after, warnings = load_pair(Pair("big", b, a), max_side=256)
    assert before.shape == after.shape == (171, 256, 3) and "600x400" in warnings[0]
    assert made and max(max(s) for s in made) <= 256, made
    assert abs(float(after.mean()) - float(np.asarray(Image.open(a)).mean()) / 255) < 0.01


def test_camera_names_that_start_like_a_fivek_id_pair_by_their_whole_name(tmp_path):
    """A camera's or a photographer's names such as 'a6400_0001' (Sony a6400) or 'a5000_0001' start like a FiveK
    id: several different ones on one side are no FiveK id, so they pair by their whole name, keep it, and are
    not taken for FiveK's test split."""
    _touch(tmp_path / "ba", "before/a6400_0001.jpg", "before/a6400_0002.jpg", "after/a6400_0001.jpg",
           "after/A6400_0002.png", "before/a5000-0007.png", "before/a5000-0008.png", "after/a5000-0007.png",
           "after/a5000-0008.png")
    pairs, problems = discover_pairs(tmp_path / "ba")
    assert _names(pairs) == ["a5000-0007", "a5000-0008", "a6400_0001", "a6400_0002"] and problems == []
    assert pairs[3].after.name == "A6400_0002.png"
    _touch(tmp_path / "flat", "a6400_0001_before.jpg", "a6400_0002_before.jpg", "a6400_0001_after.jpg",
           "a6400_0002_after.jpg")
    assert _names(discover_pairs(tmp_path / "flat")[0]) == ["a6400_0001", "a6400_0002"]


def test_a_copy_of_a_pair_counts_once(tmp_path):
    """The same before and after under other names (an export made twice) would count twice and, in validation,
    score a pair that training saw: it is left out with one line. Two edits of one photo are two pairs."""
    import shutil

    _touch(tmp_path, "before/a.png", "after/a.png")
    _edit(tmp_path / "before/a.png", tmp_path / "after/b.png")
    shutil.copy(tmp_path / "before/a.png", tmp_path / "before/a copy.png")
    shutil.copy(tmp_path / "after/a.png", tmp_path / "after/a copy.png")
    shutil.copy(tmp_path / "before/a.png", tmp_path / "before/b.png")  # the same photo, edited another way
    skipped = []
    loaded = list(load_pairs(discover_pairs(tmp_path)[0], None, skipped))
    assert [p.name for p in loaded] == ["a", "b"]
    assert skipped == ["pair a copy: the same photos as pair a; counted once"]


def test_a_folder_inside_before_or_after_is_named_not_silently_passed_over(tmp_path):
    """before/2023/IMG_1.jpg: only the photos directly in before/ and after/ are read; a sub-folder is named,
    so 'no image pairs found' does not leave the photographer guessing."""
    _touch(tmp_path, "before/2023/x.png", "after/2023/x.png", "before/.thumbs/y.png")
    with pytest.raises(PairsError, match="first problem: before/2023/: a folder inside before/; only the photos "
                                         "directly in before/ are read$"):
        discover_pairs(tmp_path)
    _touch(tmp_path, "before/a.png", "after/a.png")
    pairs, problems = discover_pairs(tmp_path)
    assert _names(pairs) == ["a"] and problems == ["before/2023/: a folder inside before/; only the photos directly "
                                                   "in before/ are read", "after/2023/: a folder inside after/; only "
                                                   "the photos directly in after/ are read"]
    _touch(tmp_path / "flat", "sub/z.png", "p_input.png", "p_target.png")  # beside X_input files: not a pairs folder
    assert discover_pairs(tmp_path / "flat")[1] == []


def test_a_before_folder_holding_a_whole_shoot_is_summed_up_not_listed(tmp_path):
    """before/ holds the whole shoot, after/ the few photos edited: the files without a match are named up to
    five, then counted in one line (and so are FiveK's test-split files), instead of a line each."""
    _touch(tmp_path, *(f"before/IMG_{i:04d}.png" for i in range(12)), "after/IMG_0003.png", "after/IMG_0007.png",
           *(f"after/a{4501 + i}.png" for i in range(7)), *(f"before/a{4501 + i}.png" for i in range(7)))
    pairs, problems = discover_pairs(tmp_path)
    assert _names(pairs) == ["IMG_0003", "IMG_0007"]
    assert problems == [*(f"before/a{4501 + i}.png, after/a{4501 + i}.png: FiveK test split (a4501-a5000); excluded, "
                          "never used for training" for i in range(5)),
                        "and 2 more: FiveK test split (a4501-a5000); excluded, never used for training",
                        *(f"before/IMG_{i:04d}.png: no matching file in after/" for i in (0, 1, 2, 4, 5)),
                        "and 5 more: no matching file in after/"]


@pytest.mark.parametrize("side", ["before", "After", "input", "expertC"])
def test_a_folder_of_one_side_of_the_pairs_says_to_give_the_one_above(tmp_path, side):
    """--pairs my_edits/before: the photographer gave one side; the error says which folder to give."""
    _touch(tmp_path / "my_edits", f"{side}/x.png", "after/x.png" if side != "after" else "before/x.png")
    with pytest.raises(PairsError, match=f"no image pairs found .*; {side}/ holds one side of the pairs: give the "
                                         f"folder that holds it, {tmp_path / 'my_edits'}$"):
        discover_pairs(tmp_path / "my_edits" / side)


def test_names_with_accents_written_two_ways_still_pair(tmp_path):
    """'Café' from a Mac's older disk (e + a combining accent) and 'Café' exported elsewhere (one é) are one
    name: they pair."""
    import unicodedata

    _touch(tmp_path, "before/" + unicodedata.normalize("NFD", "Café.png"),
           "after/" + unicodedata.normalize("NFC", "Café.jpg"))
    pairs, problems = discover_pairs(tmp_path)
    assert len(pairs) == 1 and problems == []


SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _sample(name: str, size=(300, 200)) -> np.ndarray:
    """A bundled sample photo, cropped to ``size`` (w, h) from its top left, as float [0, 1]."""
    return np.asarray(Image.open(SAMPLES / f"{name}.jpg").convert("RGB"))[:size[1], :size[0]] / 255


def _save(x: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def _load_folder(root: Path) -> tuple[list[str], list[str]]:
    skipped = []
    return [p.name for p in load_pairs(discover_pairs(root)[0], 512, skipped)], skipped


def test_two_different_photos_that_share_a_name_are_left_out_naming_the_pair(tmp_path):
    """A camera's counter restarts between shoots: before/IMG_0001 and after/IMG_0001 are then two photos of one
    size. Each such pair is left out with one line naming it, whatever the edit; the real pair stays."""
    names = ["astronaut", "coffee_dark", "cat_cast_flat"]
    _save(_sample("astronaut"), tmp_path / "before/real.png")
    _save(_sample("astronaut") ** 0.6, tmp_path / "after/real.png")
    for i, (b, a) in enumerate((b, a) for b in names for a in names if a != b):
        _save(_sample(b), tmp_path / f"before/IMG_{i}.png")
        _save(_sample(a) ** 0.6 * [1.05, 1.0, 0.9], tmp_path / f"after/IMG_{i}.png")
    loaded, skipped = _load_folder(tmp_path)
    assert loaded == ["real"]
    assert skipped == [f"pair IMG_{i}: its before and after look like different photos (check the names); left out"
                       for i in range(6)]


def _s_curve(x):
    return 0.5 + 0.5 * np.tanh(5 * (x - 0.5)) / np.tanh(2.5)


@pytest.mark.parametrize("name, before, after", [
    ("strong curves", lambda x: x, _s_curve),
    ("black and white", lambda x: x, lambda x: np.repeat((x @ [0.8, 0.2, 0.0])[..., None], 3, -1) ** 0.8),
    ("5 stops under", lambda x: (x ** 2.2 / 32) ** (1 / 2.2), lambda x: x ** 0.8),
    ("over, clipped", lambda x: x, lambda x: (x ** 2.2 * 4) ** (1 / 2.2)),
    ("inverted", lambda x: x, lambda x: 1 - x),
    ("cross-processed", lambda x: x, lambda x: np.stack([_s_curve(x[..., 0]), x[..., 1] ** 0.7, 1 - x[..., 2]], -1)),
])
def test_real_pairs_are_kept_whatever_the_colour_edit(tmp_path, name, before, after):
    """Any global colour or tone edit of a photo keeps its edges where they were: never taken for another photo."""
    for s in ("astronaut", "coffee_dark", "cat_cast_flat"):
        _save(before(_sample(s)), tmp_path / f"before/{s}.png")
        _save(after(_sample(s)), tmp_path / f"after/{s}.png")
    assert _load_folder(tmp_path) == (["astronaut", "cat_cast_flat", "coffee_dark"], [])


def test_a_small_crop_is_no_other_photo(tmp_path):
    """An after cropped by up to 3% a side, which is resized back to its before's size, is kept: its edges
    moved a little, not away."""
    for s, size in (("coffee_dark", (600, 400)), ("cat_cast_flat", (451, 300))):
        x = _sample(s, size)
        _save(x, tmp_path / f"before/{s}.png")
        _save(_s_curve(x)[int(size[1] * 0.03):, int(size[0] * 0.03):], tmp_path / f"after/{s}.png")
    assert _load_folder(tmp_path) == (["cat_cast_flat", "coffee_dark"], [])


@pytest.mark.parametrize("sample", ["astronaut", "coffee_dark", "cat_cast_flat"])
def test_a_cropped_after_is_found_in_its_before_and_a_smaller_export_is_resized(tmp_path, sample):
    """An after cropped from its before (a strong curve, 3% or 10% off two sides) has the before cropped to the
    same part of the photo, to a fraction of a pixel, not the after stretched over the whole before (13 px
    off at 448 px); an after exported smaller, whole, is resized."""
    x = _sample(sample, (448, 296))
    _save(x, tmp_path / "b.png")
    for (left, top, right, bottom), expect in [((7, 5, 441, 292), 35), ((27, 20, 430, 286), 35)]:
        _save(_s_curve(x[top:bottom, left:right]), tmp_path / "a.png")
        before, after, warnings = load_pair(Pair("p", tmp_path / "b.png", tmp_path / "a.png"))
        assert before.shape == after.shape == (bottom - top, right - left, 3)
        assert len(warnings) == 1 and "the after is a crop of the before, which is cropped to match" in warnings[0]
        truth = x[top:bottom, left:right]
        assert 10 * np.log10(1 / np.mean((before - truth) ** 2)) > expect
    for w, h in ((224, 148), (437, 289)):
        small = np.asarray(Image.fromarray(np.round(_s_curve(x) * 255).astype(np.uint8)).resize((w, h), Image.LANCZOS))
        Image.fromarray(small).save(tmp_path / "a.png")
        before, after, warnings = load_pair(Pair("p", tmp_path / "b.png", tmp_path / "a.png"))
        assert before.shape == after.shape == (296, 448, 3) and np.array_equal(np.round(before * 255), x * 255)
        assert len(warnings) == 1 and "resized after to match" in warnings[0]


@pytest.mark.parametrize("sample", ["cat_cast_flat", "coffee_dark"])
def test_a_crop_of_1_percent_is_told_from_an_export_1_pixel_smaller(tmp_path, sample):
    """A crop of 1% near the middle (a pixel or two at the search size, where stretching the after over the
    whole before lines up about as well) is found; an export a pixel or 1% smaller is still resized."""
    x = _sample(sample, (448, 296))
    _save(x, tmp_path / "b.png")
    for left, top in ((2, 1), (3, 1)):
        truth = x[top:top + 294, left:left + 444]
        _save(_s_curve(truth), tmp_path / "a.png")
        before, after, warnings = load_pair(Pair("p", tmp_path / "b.png", tmp_path / "a.png"))
        assert "the after is a crop of the before" in warnings[0] and before.shape == truth.shape
        assert 10 * np.log10(1 / np.mean((before - truth) ** 2)) > 35
    for w, h in ((447, 295), (444, 294)):
        small = Image.fromarray(np.round(_s_curve(x) * 255).astype(np.uint8)).resize((w, h), Image.LANCZOS)
        small.save(tmp_path / "a.png")
        before, after, warnings = load_pair(Pair("p", tmp_path / "b.png", tmp_path / "a.png"))
        assert before.shape == (296, 448, 3) and "resized after to match" in warnings[0]


def test_flat_photos_are_kept(tmp_path):
    """A grey card or a clear sky has no edges to compare: kept, even when the after's noise is not the before's
    (denoised, or grain added) or the two are different flat photos."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0.35, 0.8, 400)[:, None, None] * [0.55, 0.75, 1.0] * np.ones((400, 600, 3))
    grey = np.full((400, 600, 3), 0.45)
    for name, before, after in [("card", grey, grey * [1.1, 1.0, 0.9]), ("sky", ramp, ramp ** 0.7),
                                ("black", grey * 0, grey * 0 + 0.02), ("card-sky", grey, ramp)]:
        _save(before + rng.normal(0, 0.02, before.shape), tmp_path / f"before/{name}.png")
        _save(after + rng.normal(0, 0.02, after.shape), tmp_path / f"after/{name}.png")
    _save(np.full((4, 6, 3), 0.5), tmp_path / "before/tiny.png")
    _save(np.full((4, 6, 3), 0.6), tmp_path / "after/tiny.png")
    assert _load_folder(tmp_path) == (["black", "card", "card-sky", "sky", "tiny"], [])
