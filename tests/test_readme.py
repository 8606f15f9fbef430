"""The README's commands work as written: every ``sh`` block runs, line by line and in order, in one
folder, as a reader pasting them would run them; it teaches honest habits.

A line is a command; ``a && b`` pastes as one. The installing parts of a line (``git clone``, ``cd``,
``python3 -m venv``, activating it, ``pip install``) and the test command are checked, not run: what
they install must exist (test_packaging checks the distribution name) and the test command is the CI's.
Everything else runs in a folder holding the checkout's ``samples/``, ``shoot/`` (stand-ins for a
reader's photos: JPEGs, a 16-bit TIFF in a sub-folder, a RAW and a HEIC where those extras are
installed), small before/after pairs in ``my_edits/`` and ``new_edits/`` and finished photos in
``portfolio/``. Training commands get
``--steps 20`` so that they take seconds; a command whose extra is not installed here is skipped.
Each must exit 0: an example that trips over an earlier one's output fails. Inline ``csr ...`` spans must
name real commands and options.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import click
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from conftest import REPO
from csr_core import SAMPLE_PHOTOS
from test_packaging import install_hints

README = (REPO / "README.md").read_text("utf-8")
SETUP = ("git clone ", "cd ", "python3 -m venv ", ". .venv/bin/activate", "pip install ")
TEST_COMMAND = "python -m pytest -q"
CI_TORCH = "pip install torch==2.13.0"  # the CPU build of torch the CI installs first
#: commands that need an extra, by a piece of their text -> the module the extra brings
NEEDS = {"--cluster": "distributed", "export-onnx": "onnx", "csr finetune": "torch", "csr train": "torch"}


def sh_blocks(text: str = README) -> list[list[str]]:
    """The lines of every ```sh block, in order."""
    return [block.strip("\n").splitlines() for block in re.findall(r"(?ms)^```sh\n(.*?)^```", text)]


def _code(line: str) -> str:
    """A line without its trailing comment (comments follow two spaces and a #)."""
    return line.split("  #", 1)[0].rstrip()


def _photo(path: Path, source: Path, size=(160, 120)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.open(source).convert("RGB").resize(size)
    im.save(path, quality=92)
    return np.asarray(im)


def _pairs(folder: Path, n: int, seed: int) -> None:
    """n small before/after pairs: the 'after' is a brighter, punchier edit of a darker 'before'."""
    rng = np.random.default_rng(seed)
    sources = sorted((REPO / "samples").glob("*.jpg"))
    for i in range(n):
        im = Image.open(sources[i % len(sources)]).convert("RGB")
        x, y = int(rng.integers(0, im.width - 240)), int(rng.integers(0, im.height - 180))
        crop = im.crop((x, y, x + 240, y + 180)).resize((96, 72))
        for side, edit in (("before", ImageEnhance.Brightness(crop).enhance(0.6 + 0.05 * i)),
                           ("after", ImageEnhance.Contrast(crop).enhance(1.2))):
            (folder / side).mkdir(parents=True, exist_ok=True)
            edit.save(folder / side / f"p{i}.jpg", quality=92)


@pytest.fixture
def reader_folder(tmp_path) -> Path:
    """A folder as a reader's would be after the quick start's clone, plus their photos and pairs."""
    home = tmp_path / "csr"
    (home / "samples").mkdir(parents=True)
    for name in SAMPLE_PHOTOS:  # the bundled photos only: not a result the quick start already wrote beside them
        shutil.copy(REPO / "samples" / name, home / "samples" / name)
    shoot, samples = home / "shoot", REPO / "samples"
    _photo(shoot / "IMG_0001.jpg", samples / "coffee_dark.jpg")
    _photo(shoot / "IMG_0002.jpg", samples / "cat_cast_flat.jpg")
    rgb16 = (_photo(home / "tmp.jpg", samples / "astronaut.jpg").astype(np.uint16) * 257)
    (shoot / "sub").mkdir()
    import tifffile
    tifffile.imwrite(shoot / "sub" / "IMG_0003.tif", rgb16, photometric="rgb")
    (home / "tmp.jpg").unlink()
    if find_spec("rawpy"):
        from test_metadata import write_dng
        write_dng(shoot / "IMG_0004.dng")
    if find_spec("pillow_heif"):
        import pillow_heif
        rgb = np.asarray(Image.open(samples / "cat_cast_flat.jpg").convert("RGB").resize((96, 64)))
        pillow_heif.from_bytes(mode="RGB", size=(96, 64), data=rgb.tobytes()).save(shoot / "IMG_0005.HEIC",
                                                                                    format="HEIF", quality=90)
    _pairs(home / "my_edits", 6, seed=1)
    _pairs(home / "new_edits", 3, seed=2)
    _pairs(home / "finished", 8, seed=3)  # finished photos: the 'after' side of more edits
    shutil.move(home / "finished" / "after", home / "portfolio")
    shutil.rmtree(home / "finished")
    return home


def _check_setup(part: str) -> None:
    if part.startswith("pip install "):
        hints = install_hints(part)
        assert hints, part
        for name, _ in hints:
            assert name in (".", "torch"), part  # the checkout itself, or PyTorch first
        if "torch" in dict(hints):  # PyTorch's CPU-only build, or the CI's pin of it (the test command)
            assert "--index-url https://download.pytorch.org/whl/cpu" in part or part == CI_TORCH, part
    elif part.startswith("git clone "):
        assert part.split()[2].startswith("https://"), part


def _run(line: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    code = _code(line)
    if code.startswith(("csr finetune", "csr train")):
        code += " --steps 20"
    return subprocess.run(["bash", "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_every_readme_command_runs_in_order(reader_folder, tmp_path):
    env = dict(os.environ, HOME=str(tmp_path / "home"), CSR_HOME=str(tmp_path / "csr_home"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}", CSR_DEBUG="0")
    env.pop("GIMP3_DIRECTORY", None)
    env.pop("XDG_CONFIG_HOME", None)
    for profile in (".config/GIMP/3.0", ".var/app/org.gimp.GIMP/config/GIMP/3.0"):  # GIMP was started once
        (tmp_path / "home" / profile).mkdir(parents=True)
    ran, skipped = [], []
    for block in sh_blocks():
        for line in block:
            parts = [p.strip() for p in _code(line).split("&&")]
            assert all(parts), f"an empty command in: {line}"
            runnable = [p for p in parts if not p.startswith(SETUP) and p != TEST_COMMAND]
            for part in parts:
                if part not in runnable:
                    _check_setup(part)
            if TEST_COMMAND in parts:  # the CI runs the same tests with the same extras
                ci = (REPO / ".ci" / "run").read_text()
                assert ci.rstrip().splitlines()[-1] == TEST_COMMAND
                assert CI_TORCH in parts and f"python -m {CI_TORCH}" in ci  # the same torch, installed first
                extras = [set(e.split(",")) for n, e in install_hints(" ".join(parts) + "\n" + ci) if n == "." and e]
                assert len(extras) == 2 and extras[0] == extras[1], extras
            for part in runnable:
                missing = [m for key, m in NEEDS.items() if key in part and not find_spec(m)]
                if missing:
                    skipped.append(part)
                    continue
                res = _run(part, reader_folder, env)
                assert res.returncode == 0, f"{part}\n{res.stdout[-1500:]}\n{res.stderr[-1500:]}"
                assert "Traceback" not in res.stderr, res.stderr
                ran.append((part, res))
    assert len(ran) >= 15, [p for p, _ in ran]
    quick = dict(ran)["csr retouch samples/coffee_dark.jpg"]
    assert quick.stdout == quick.stderr == ""  # "a run that succeeds prints nothing"
    assert (reader_folder / "samples" / "coffee_dark_retouched.jpg").is_file()  # "beside the input"
    again = _run("csr retouch samples/coffee_dark.jpg", reader_folder, env)  # "Run it again and csr keeps ..."
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and "already exists" in again.stderr, again
    names = {p.relative_to(reader_folder).as_posix() for p in reader_folder.rglob("*") if p.is_file()}
    assert not [n for n in names if "_retouched_retouched" in n]  # a re-run took no result as input
    assert not [n for n in names if "edited" in n and "_retouched" in n]
    assert skipped == [] or not all(find_spec(m) for m in NEEDS.values())


def test_sh_blocks_hold_only_commands():
    """Pasted into a shell, a block runs its commands and nothing else: no prompt signs, placeholders,
    optional [brackets] or continuation lines, and a pipe only where a command reads its output."""
    lines = [line for block in sh_blocks() for line in block]
    assert lines
    for line in lines:
        code = _code(line)
        assert code and not code.startswith(("$", ">", "#")), line
        assert not code.endswith("\\"), line
        assert not re.search(r"\[-|(?:^|\s)[A-Z]{3,}(?:\s|$)|<[a-z]+>", code), line  # [-y], NAME, <file>
        assert "|" not in code.replace("'local[2]'", ""), line  # csr reads a pipe with '-' ('<' here)
    assert all(not line.startswith(" ") for line in lines)


def _inline_commands(text: str = README) -> list[str]:
    return [span for span in re.findall(r"`([^`\n]+)`", text) if span.startswith("csr ")]


def test_inline_commands_name_real_commands_and_options():
    from csr_cli.main import cli

    ctx = click.Context(cli)
    spans = _inline_commands()
    assert len(spans) >= 8, spans
    for span in spans + [_code(line) for block in sh_blocks() for line in block if line.startswith("csr ")]:
        words = shlex.split(span.split(" > ")[0].split(" < ")[0])[1:]
        cmd = cli
        while isinstance(cmd, click.Group) and words and not words[0].startswith("-"):
            word = words.pop(0)
            cmd = None if word.isupper() else cmd.get_command(ctx, word)  # COMMAND: any command
            assert cmd is not None or word.isupper(), span
        params = cmd.params if cmd is not None else []
        known = {o for p in params for o in getattr(p, "opts", [])} | {"--help", "-h", "--version", "-V"}
        options = [w.split("=")[0] for w in words if w.startswith("-") and w != "-"]
        assert set(options) <= known, (span, set(options) - known)
    for script in re.findall(r"`python ((?:benchmarks|docs|tools)/\S+\.py)", README):
        assert (REPO / script).is_file(), script
    for link in re.findall(r"\]\(((?:docs|plugins)/[^)#]+)", README):
        assert (REPO / link).is_file(), link


def test_readme_speaks_of_the_product_as_it_is():
    """No development history or machine loads in the README (they belong in docs/)."""
    lowered = README.lower()
    for phrase in ("since stop", "load average", "(was ", "the old ", "used to", "it was first"):
        assert phrase not in lowered, phrase
    quality = README.split("## Quality", 1)[1].split("\n## ", 1)[0]
    assert quality.count("\n| --- ") == 1  # one table


def test_teaching_example_does_not_score_a_style_on_its_training_pairs():
    text = README
    block = text.split("## Teaching it your look", 1)[1].split("```", 2)[1]
    trained = set(re.findall(r"csr finetune --pairs (\S+)", block))
    scored = set(re.findall(r"csr eval --pairs (\S+)", block))
    assert trained and scored and not trained & scored
    assert "csr styles show" in block  # the card's cross-validated score
