"""`csr retouch` / `csr styles` end to end through click: outputs, exit codes, safety rules."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from csr_cli.main import cli
from csr_core.image_io import load_photo


def _photo(path, size=(48, 32), seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 200, (size[1], size[0], 3), dtype=np.uint8)).save(path, quality=95)
    return path


def test_single_file(run, tmp_path):
    src = _photo(tmp_path / "in.jpg")
    before = src.read_bytes()
    res = run("retouch", src, "-o", tmp_path / "out.png")
    assert res.exit_code == 0, res.output
    out = load_photo(tmp_path / "out.png")
    assert out.rgb.shape == (32, 48, 3) and out.format == "PNG"
    assert src.read_bytes() == before


@pytest.mark.parametrize("style", [None, "auto", "auto:0.7,auto:0.3"])
def test_output_records_the_style_as_given(run, tmp_path, style):
    """The XMP names the style or mix the user gave (the default when none), and the strength."""
    src = _photo(tmp_path / "in.jpg")
    res = run("retouch", src, "-o", tmp_path / "out.jpg", "--strength", "0.7", *(["--style", style] if style else []))
    assert res.exit_code == 0, res.output
    meta = load_photo(tmp_path / "out.jpg").meta
    assert (meta.get("Xmp.csr.Style"), meta.get("Xmp.csr.Strength")) == (style or "auto", "0.7")


def test_default_output_beside_input_and_strength_zero(run, tmp_path):
    src = _photo(tmp_path / "a.png")
    assert run("retouch", src, "--strength", "0").exit_code == 0
    assert np.array_equal(load_photo(tmp_path / "a_retouched.png").rgb, load_photo(src).rgb)


def test_retouch_leaves_the_garbage_collector_as_it_found_it(run, tmp_path):
    """The command pauses collection while it loads; run in-process (as here) it restores the state, and
    an early-decoded photo that fails leaves no frames behind."""
    import gc

    src = _photo(tmp_path / "a.jpg")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(src.read_bytes()[:300])
    frozen = gc.get_freeze_count()
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            assert run("retouch", src, "--overwrite").exit_code == 0
            assert run("retouch", broken, "-o", tmp_path / "b.jpg").exit_code == 1
            assert run("retouch", src, "--style", "no-such-style").exit_code == 2
            assert gc.isenabled() == enabled and gc.get_freeze_count() == frozen
        finally:
            gc.enable()


def test_refuses_overwrite_then_overwrites_then_skips(run, tmp_path):
    src = _photo(tmp_path / "in.jpg")
    out = tmp_path / "out.jpg"
    out.write_bytes(b"keep me")
    res = run("retouch", src, "-o", out)
    assert res.exit_code == 1 and "already exists" in res.output and out.read_bytes() == b"keep me"
    assert run("retouch", src, "-o", out, "--skip-existing").exit_code == 0 and out.read_bytes() == b"keep me"
    assert run("retouch", src, "-o", out, "--overwrite").exit_code == 0 and out.read_bytes() != b"keep me"


def test_never_overwrites_input_even_with_overwrite(run, tmp_path):
    src = _photo(tmp_path / "in.jpg")
    before = src.read_bytes()
    res = run("retouch", src, "-o", src, "--overwrite")
    assert res.exit_code == 1 and "refusing to overwrite the input" in res.output
    assert src.read_bytes() == before


def test_folder_recursive_keeps_structure_and_reports_failures(run, tmp_path):
    (tmp_path / "in" / "sub" / "deeper").mkdir(parents=True)
    _photo(tmp_path / "in" / "a.jpg")
    _photo(tmp_path / "in" / "sub" / "b.png")
    _photo(tmp_path / "in" / "sub" / "deeper" / "c.tif")
    (tmp_path / "in" / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    res = run("retouch", tmp_path / "in", "-o", tmp_path / "out", "--format", "png")
    assert res.exit_code == 1
    assert "broken.jpg" in res.output and "Traceback" not in res.output
    for rel in ("a.png", "sub/b.png", "sub/deeper/c.png"):
        assert (tmp_path / "out" / rel).is_file()
    assert not list((tmp_path / "out").rglob("*.part")) and not (tmp_path / "out" / "sub" / "broken.png").exists()


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_two_photos_of_one_name_never_share_an_output(run, tmp_path, monkeypatch, platform):
    """IMG_1.png and IMG_1.jpg both make IMG_1_retouched.jpg with --format jpg: the second is refused with a way
    out, the first is written; on a Mac (names without case) IMG_2_retouched.JPG and .jpg are one file too."""
    import csr_core.batch

    monkeypatch.setattr(csr_core.batch.sys, "platform", platform)
    for name in ("IMG_1.png", "IMG_1.jpg", "IMG_2.jpg", "IMG_2.JPG"):
        _photo(tmp_path / name)
    res = run("retouch", tmp_path / "IMG_1.png", tmp_path / "IMG_1.jpg", "--format", "jpg")
    assert res.exit_code == 1 and res.output.count("csr: error: ") == 1, res.output
    assert f"output {tmp_path / 'IMG_1_retouched.jpg'} is also the output of {tmp_path / 'IMG_1.png'} (two photos " \
        "of one name: retouch this one on its own with -o)" in res.output, res.output
    res = run("retouch", tmp_path / "IMG_2.jpg", tmp_path / "IMG_2.JPG")
    assert (res.exit_code, res.output.count("is also the output of")) == ((1, 1) if platform == "darwin" else (0, 0))


def test_glob_pattern(run, tmp_path):
    for i in range(3):
        _photo(tmp_path / f"p{i}.jpg", seed=i)
    res = run("retouch", str(tmp_path / "p*.jpg"), "-o", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p0.jpg", "p1.jpg", "p2.jpg"]


def test_stdin_to_stdout(run, tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(buf, "PNG")
    res = CliRunner().invoke(cli, ["retouch", "-", "-o", "-", "--format", "png"], input=buf.getvalue())
    assert res.exit_code == 0
    assert Image.open(io.BytesIO(res.stdout_bytes)).size == (8, 8)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP"])
def test_stdin_to_stdout_keeps_the_input_format_without_format_option(run, fmt):
    """'--format' defaults to the input's, read from the bytes (stdin has no file name)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(buf, fmt)
    res = CliRunner().invoke(cli, ["retouch", "-", "-o", "-"], input=buf.getvalue())
    assert res.exit_code == 0, res.output
    assert Image.open(io.BytesIO(res.stdout_bytes)).format == fmt


def test_usage_errors_exit_2(run, tmp_path):
    src = _photo(tmp_path / "in.jpg")
    assert run("retouch", src, "--style", "nope").exit_code == 2
    assert run("retouch", src, "--strength", "3").exit_code == 2
    assert run("retouch", src, "--overwrite", "--skip-existing").exit_code == 2
    res = run("retouch", src, "--style", "B")
    assert res.exit_code == 2 and "csr finetune" in res.output


def test_click_usage_errors_are_one_csr_line(run, tmp_path):
    """click's own usage errors (a value out of range, nan or inf, an unknown option, a missing argument,
    in a command or a sub-command) are one `csr: error:` line and exit 2, not click's usage block; an
    unknown option that is a file name says how to name it. A group called bare still shows its help."""
    src = _photo(tmp_path / "in.jpg")
    cases = [(("retouch", src, "--strength", "3"), "invalid value for '--strength': 3.0 is not in the range"),
             (("retouch", src, "--strength", "nan"), "invalid value for '--strength': 'nan' is not a finite number"),
             (("retouch", src, "-q", "0"), "invalid value for '-q' / '--quality': 0 is not in the range"),
             (("retouch", src, "--strength", "abc"), "invalid value for '--strength': 'abc' is not a valid number"),
             (("retouch", src, "-q", "high"),
              "invalid value for '-q' / '--quality': 'high' is not a valid whole number"),
             (("retouch", src, "-q", "9.55e1"), "invalid value for '-q' / '--quality': '9.55e1' is not a valid whole"),
             (("retouch", "-dash.jpg"), "no such option '-d'; for the file '-dash.jpg', write ./-dash.jpg, or put --"),
             (("retouch",), "missing argument 'INPUTS...'"),
             (("train", "--name", "x", "--photos", tmp_path, "--lr", "inf"),
              "invalid value for '--lr': 'inf' is not a finite number"),
             (("styles", "show"), "missing argument 'NAME'"),
             (("nope",), "no such command 'nope'")]
    for args, message in cases:
        res = run(*args)
        assert res.exit_code == 2 and res.output.startswith(f"csr: error: {message}"), (args, res.output)
        assert len(res.output.splitlines()) == 1, (args, res.output)
    assert run("retouch", src, "-q", "9e1", "-o", tmp_path / "q.jpg").exit_code == 0  # 90, as a number written 9e1
    bare = run("styles").output
    assert bare.startswith("Usage: ") and "styles [OPTIONS] COMMAND" in bare and "Commands:" in bare


def test_stdin_to_a_folder_asks_for_an_output_file_name(run, tmp_path):
    """A photo read from stdin has no name to put in a folder: -o must name a file (or '-')."""
    (tmp_path / "od").mkdir()
    photo = _photo(tmp_path / "in.jpg").read_bytes()
    for out in (tmp_path / "od", f"{tmp_path / 'od'}/", f"{tmp_path / 'new'}/"):
        for extra in ((), ("--overwrite",)):
            res = run("retouch", "-", "-o", out, *extra, stdin=photo)
            assert res.exit_code == 2 and "stdin needs an output file name (-o NAME.jpg) or '-'" in res.output
    assert not any((tmp_path / "od").iterdir()) and not (tmp_path / "new").exists()


def test_unwritable_output_is_one_line(run, tmp_path):
    src = _photo(tmp_path / "in.jpg")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = run("retouch", src, "-o", blocker / "out.jpg")
    assert res.exit_code == 1 and res.output.count("csr: error:") == 1 and "Traceback" not in res.output


def test_styles_list_show_remove(run, toy_registry):
    from csr_core.model import CSRNet

    toy_registry.save_style("mine", CSRNet().state_dict(), {"description": "my look"})
    res = run("styles", "list")
    assert "auto" in res.output and "mine" in res.output and "my look" in res.output
    assert '"sha256"' in run("styles", "show", "auto", "--json").output
    assert run("styles", "remove", "mine", "--yes").exit_code == 0
    assert "mine" not in run("styles", "list").output
    assert run("styles", "remove", "auto", "--yes").exit_code == 1


def test_styles_list_and_show_give_the_licence(run, toy_registry):
    """The licence is a column of the listing; 'show' is a readable summary, '--json' the raw card."""
    import json

    from csr_core.model import CSRNet

    toy_registry.save_style("fivek", CSRNet().state_dict(), {"description": "an expert's look",
                            "licence": "MIT-Adobe FiveK images are licensed for research use only; so is this"})
    toy_registry.save_style("mine", CSRNet().state_dict(), {"description": "my look", "scores": {"validation": {
        "psnr": 23.456, "ssim": 0.9, "delta_e": 7.0, "baseline_psnr": 20.0, "baseline_ssim": 0.8,
        "baseline_delta_e": 9.5, "images": 6, "method": "5-fold"}},
        "licence": "the licence of your training pairs applies to this style"})
    lines = run("styles", "list").output.splitlines()
    assert lines[0].split() == ["style", "origin", "licence", "description"]
    row = {ln.split()[0]: ln for ln in lines[1:]}
    assert "research use only" in row["fivek"] and "as your training data" in row["mine"]
    assert "unknown" in row["auto"]  # the toy built-in card states no licence
    shown = run("styles", "show", "mine").output
    assert not shown.lstrip().startswith("{") and "licence: the licence of your training pairs" in shown
    assert "  its own 6 pairs, 5-fold validation:" in shown
    assert any(ln.split()[:3] == ["mine", "PSNR", "23.46"] for ln in shown.splitlines())
    assert any(ln.split()[:4] == ["do", "nothing", "PSNR", "20.00"] for ln in shown.splitlines())
    raw = json.loads(run("styles", "show", "mine", "--json").output)
    assert raw["licence"].startswith("the licence of") and raw["name"] == "mine"


def test_builtin_cards_state_their_terms_without_pointing_outside_the_package():
    """C says research-only in the listing; no built-in licence points at files users do not have."""
    from csr_core.registry import Registry, licence_label

    styles = {s.name: s for s in Registry().styles()}
    assert licence_label(styles["C"].card) == "research use only"
    for s in styles.values():
        assert "../" not in s.card.get("licence", ""), s.name
        assert licence_label(s.card) != "unknown", s.name


def test_unknown_style_is_a_usage_error_everywhere(run):
    for args in (("styles", "show", "nope"), ("styles", "remove", "nope", "-y")):
        res = run(*args)
        assert res.exit_code == 2 and res.output.startswith("csr: error: unknown style 'nope'"), args


@pytest.mark.filterwarnings(r"ignore:.*broken\.json. skipped. invalid style card")
def test_every_styles_command_gives_bad_input_one_line_and_the_exit_code_of_its_kind(run, toy_registry, tmp_path):
    """`csr styles list/show/import/remove` with bad input: one `csr: error:` line each, no traceback, and the
    exit codes of every csr command (cli/common.py): 2 for a command line that is wrong as typed (an unknown
    option, a missing argument, a value out of range, a style name that is invalid or no style's, no terminal
    to confirm on), 1 for files and styles csr finds it cannot use (a checkpoint missing, a folder or damaged;
    a name taken; a damaged, built-in or used style). Nothing in the registry changes."""
    import torch

    from csr_core.model import CSRNet

    toy_registry.save_style("mine", CSRNet().state_dict(), {})
    toy_registry.save_style("tuned", CSRNet().state_dict(), {}, base=toy_registry.get("mine"))
    (toy_registry.user_path / "broken.json").write_text('{"sha')
    torch.save(CSRNet().state_dict(), tmp_path / "ok.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    (tmp_path / "folder.pth").mkdir()
    ok, missing, junk, folder = (str(tmp_path / n) for n in ("ok.pth", "none.pth", "junk.pth", "folder.pth"))
    before = sorted(p.name for p in toy_registry.user_path.iterdir())
    cases = [(("list", "--bogus"), 2, "no such option '--bogus'"),
             (("list", "extra"), 2, "got unexpected extra argument (extra)"),
             (("show",), 2, "missing argument 'NAME'"),
             (("show", "nope"), 2, "unknown style 'nope'"),
             (("show", "a b"), 2, "unknown style 'a b'"),
             (("show", "broken"), 1, "user style 'broken' cannot be used: invalid style card"),
             (("import", ok, "--name", "a b"), 2, "invalid style name 'a b'"),
             (("import", ok, "--name", "x" * 65), 2, f"invalid style name '{'x' * 65}'"),
             (("import", ok, "--name", "CON"), 2, "invalid style name 'CON': it is a reserved device name"),
             (("import", ok), 2, "missing option '--name'"),
             (("import", "--name", "x"), 2, "missing argument 'FILE'"),
             (("import", ok, "--name", "x", "--cond-size", "5"), 2, "invalid value for '--cond-size'"),
             (("import", missing, "--name", "x"), 1, f"{missing}: no such file"),
             (("import", folder, "--name", "x"), 1, f"{folder}: a folder, not a checkpoint file; name the .pth"),
             (("import", junk, "--name", "x"), 1, f"{junk}: not a plain PyTorch state_dict"),
             (("import", ok, "--name", "auto"), 1, "style name 'auto' is taken by a built-in style"),
             (("import", ok, "--name", "Mine"), 1, "user style 'mine' already exists"),
             (("remove",), 2, "missing argument 'NAME'"),
             (("remove", "nope", "-y"), 2, "unknown style 'nope'"),
             (("remove", "a/b", "-y"), 2, "unknown style 'a/b'"),
             (("remove", "tuned"), 2, "not removing 'tuned' without confirmation: add -y (--yes)"),
             (("remove", "auto", "-y"), 1, "style 'auto' is built in and cannot be removed"),
             (("remove", "mine", "-y"), 1, "cannot remove style 'mine': 'tuned' runs on it")]
    for args, code, message in cases:
        res = run("styles", *args)
        assert (res.exit_code, res.output.count("\n")) == (code, 1), (args, res.exit_code, res.output)
        assert res.output.startswith(f"csr: error: {message}") and "Traceback" not in res.output, (args, res.output)
    assert sorted(p.name for p in toy_registry.user_path.iterdir()) == before
    assert sorted(toy_registry.names()) == ["auto", "mine", "tuned"]


def test_remove_without_a_terminal_says_that_yes_confirms(run, toy_registry):
    from csr_core.model import CSRNet

    toy_registry.save_style("mine", CSRNet().state_dict(), {})
    res = run("styles", "remove", "mine")  # stdin is not a terminal: no prompt, no "Aborted!"
    assert res.exit_code == 2 and "Aborted" not in res.output and "-y (--yes)" in res.output
    assert "mine" in toy_registry.names()


def test_every_command_that_makes_a_style_takes_the_overwrite_its_refusal_offers(run, toy_registry, tmp_path):
    """'already exists ... replace it with --overwrite': finetune, train and styles import all take it."""
    import torch

    from csr_core.model import CSRNet

    makers = {path for path, o in _options() if o.opts == ["--overwrite"] and "user style" in o.help}
    assert makers == {"finetune", "train", "styles import"}
    torch.save(CSRNet().state_dict(), tmp_path / "net.pth")
    args = ["styles", "import", tmp_path / "net.pth", "--name", "mine"]
    assert run(*args).exit_code == 0
    refused = run(*args, "--description", "again")
    assert refused.exit_code == 1 and "replace it with --overwrite" in refused.output
    replaced = run(*args, "--description", "again", "--overwrite")
    assert replaced.exit_code == 0 and toy_registry.get("mine").description == "again"


def test_removing_a_style_another_runs_on_is_refused_and_keeps_both(run, toy_registry, tmp_path):
    import torch

    from csr_core.model import CSRNet

    torch.save(CSRNet().state_dict(), tmp_path / "net.pth")
    assert run("styles", "import", tmp_path / "net.pth", "--name", "mynet").exit_code == 0
    toy_registry.save_style("mine", CSRNet().state_dict(), {}, base=toy_registry.get("mynet"))
    for yes in (["-y"], []):  # refused before any question
        res = run("styles", "remove", "mynet", *yes)
        assert res.exit_code == 1 and res.output == (
            "csr: error: cannot remove style 'mynet': 'mine' runs on it (fine-tuned from it); remove that style "
            "first: csr styles remove mine\n")
    assert {"mynet", "mine"} <= set(toy_registry.names())


def test_messages_name_options_as_typed(run, toy_registry, tmp_path):
    from csr_core.errors import PairsError, StyleExistsError
    from csr_core.model import CSRNet
    from csr_core.pairs import discover_pairs

    toy_registry.save_style("mine", CSRNet().state_dict(), {})
    with pytest.raises(StyleExistsError, match="--overwrite"):
        toy_registry.check_new_name("mine")
    (tmp_path / "fivek" / "input").mkdir(parents=True)
    for e in "BC":
        (tmp_path / "fivek" / f"expert{e}").mkdir()
    with pytest.raises(PairsError, match="choose one with --expert"):
        discover_pairs(tmp_path / "fivek")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PairsError, match=r"input/ \+ expertB/") as err:
        discover_pairs(tmp_path / "empty", expert="B")
    assert "expertC" not in str(err.value)
    assert "2/255" in run("retouch", "--help").output


def test_real_entry_point_version_and_clean_errors(tmp_path):
    exe = [sys.executable, "-m", "csr_cli.main"]
    out = subprocess.run([*exe, "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "csr" in out.stdout
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"")
    res = subprocess.run([*exe, "retouch", str(bad), "-o", str(tmp_path / "o.jpg"), "--style", "auto"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode in (1, 2) and "Traceback" not in res.stderr and res.stderr.startswith("csr: error:")
    res = subprocess.run([*exe, "retouch", str(bad), "-q", "0"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.startswith("csr: error: invalid value for '-q'")
    assert len(res.stderr.splitlines()) == 1, res.stderr


def _help_texts() -> dict:
    """``csr [COMMAND [SUB-COMMAND]] --help`` of every command, by command path ('' for csr itself)."""
    import click

    ctx, out = click.Context(cli), {}

    def walk(cmd, path):
        res = CliRunner().invoke(cli, [*path.split(), "--help"], prog_name="csr")
        assert res.exit_code == 0 and res.output.startswith("Usage: csr"), (path, res.output)
        out[path] = res.output
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), f"{path} {name}".strip())

    walk(cli, "")
    return out


def test_help_texts_speak_to_the_user():
    """Every --help renders; commands in it can be copied (not split at a hyphen); no lab paths or jargon;
    the examples stand apart."""
    import re

    helps = _help_texts()
    assert len(helps) >= 15
    for path, text in helps.items():
        assert "../" not in text and "condition copy" not in text and "see the README" not in text, path
    for path, text in helps.items():  # a word with a hyphen is never split at the end of a help line
        assert not re.search(r"\w-\n", text), (path, re.findall(r".*\w-\n.*", text))
    assert 'Needs: pip install "csr-retouch[cluster]"' in helps["retouch"]  # one line, however it wraps
    assert "csr train --photos ~/Pictures/good" in helps["train"]
    assert "docs/onnx.md" in helps["export-onnx"]
    assert "only read.\n\n  Examples:" in helps["finetune"]


def _options():
    """(command path, click.Option) for every option of every csr command and sub-command."""
    import click

    ctx = click.Context(cli)

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                yield from walk(cmd.get_command(ctx, name), f"{path} {name}".strip())
        else:
            yield from ((path, p) for p in cmd.params if isinstance(p, click.Option))

    return list(walk(cli, ""))


def test_every_option_has_help_and_one_meaning():
    """Each option says what it does, and an option that several commands take is the same option in
    each: the same type (choices, range) everywhere; --device, --style, --strength and --cond-size
    also the same help and default."""
    options = _options()
    assert len({path for path, _ in options}) >= 14  # every command and sub-command was reached
    assert [f"{path} {o.opts[-1]}" for path, o in options if not (o.help or "").strip()] == []
    by_name: dict[str, list] = {}
    for path, o in options:
        by_name.setdefault(o.opts[-1], []).append((path, o))
    for name, uses in by_name.items():
        types = {repr(sorted(o.type.to_info_dict().items())) for _, o in uses}
        assert len(types) == 1, (name, [(path, o.type) for path, o in uses])
    for name in ("--device", "--style", "--strength", "--cond-size"):
        uses = by_name[name]
        assert len({(o.help, repr(o.default), tuple(o.opts)) for _, o in uses}) == 1, name
    assert {path for path, _ in by_name["--device"]} >= {"retouch", "app", "eval", "export-lut", "gimp install"}


def test_files_are_read_by_their_content_not_their_name(run, tmp_path):
    """A JPEG renamed .HEIC or a PNG named .jpg is read as what it is (the output follows the name's
    usual format); what no decoder reads is one error line, whatever its name."""
    Image.open(_photo(tmp_path / "a.jpg")).save(tmp_path / "b.png")
    (tmp_path / "a.jpg").rename(tmp_path / "phone.HEIC")
    (tmp_path / "b.png").rename(tmp_path / "flat.jpg")
    (tmp_path / "notes.jpg").write_text("not a photo\n")
    assert load_photo(tmp_path / "phone.HEIC").format == "JPEG" and load_photo(tmp_path / "flat.jpg").format == "PNG"
    res = run("retouch", tmp_path / "phone.HEIC", tmp_path / "flat.jpg", tmp_path / "notes.jpg")
    assert res.exit_code == 1 and "2 retouched, 0 skipped, 1 failed" in res.output, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("csr: error:")]
    assert len(errors) == 1 and "notes.jpg" in errors[0], res.output
    assert load_photo(tmp_path / "phone_retouched.jpg").format == "JPEG"
    assert load_photo(tmp_path / "flat_retouched.jpg").format == "JPEG"


def test_recipe_text_names_the_step_count_once():
    """A fixed step count (finished photos) is not also called 'chosen by validation'; a chosen one is."""
    from csr_cli.styles import _recipe_text

    fixed = _recipe_text({"method": "pseudo-pairs, 40 steps", "steps": 600},
                         {"chosen_steps": 40, "fixed_steps": True, "method": "3-fold"})
    chosen = _recipe_text({"method": "pairs", "steps": 600}, {"chosen_steps": 120, "method": "5-fold"})
    older = _recipe_text({"method": "pseudo-pairs, 40 steps"},
                         {"chosen_steps": 40, "pairs_only": {}, "method": "3-fold"})
    assert fixed == older == "pseudo-pairs, 40 steps"  # cards without the flag: "pairs_only" marks the fixed runs
    assert chosen == "pairs; 120 steps, chosen by 5-fold validation"
    # a card of an earlier csr, whose method ends in the words the count now says
    earlier = _recipe_text({"method": "pairs, step count chosen by validation"},
                           {"chosen_steps": 5, "method": "5-fold"})
    assert earlier == "pairs; 5 steps, chosen by 5-fold validation"
    for fixed in (True, False):  # validation kept the start weights: no '0 steps, chosen by validation'
        none = _recipe_text({"method": "pairs"}, {"chosen_steps": 0, "method": "5-fold", "fixed_steps": fixed})
        assert none == "pairs; no steps kept: 5-fold validation found none better than the start"


def test_builtin_cards_give_a_photographers_summary_first():
    """`csr styles show` of each built-in style: its kind in plain words, what it does, its licence and one
    table of its scores on each set; the details after. The summary has no training jargon; nothing names a
    file a pip install lacks unless it says it is for a source checkout; no name is split at its hyphen; the
    14 pairs have one name in the listing and the cards; C's comparison rows name the style they are."""
    import re

    shown = {n: CliRunner().invoke(cli, ["styles", "show", n]).output for n in ("C", "auto", "auto-v1")}
    listing = CliRunner().invoke(cli, ["styles", "list"]).output
    assert shown["C"].splitlines()[0] == "C (built-in style, fine-tuned from 'auto')"
    assert shown["auto"].splitlines()[0] == "auto (built-in style, fine-tuned from 'auto-v1')"
    assert shown["auto-v1"].splitlines()[0] == "auto-v1 (built-in style)"
    for name, text in shown.items():
        summary, details = text.split("\ndetails (how the style was made and measured):\n")
        assert summary.endswith("\n") and "licence: " in summary, name  # a blank line before the details
        table = summary.split("scores (PSNR dB against each pair's 'after' photo; higher is closer):\n")[1]
        assert "14 FiveK train-range pairs" in table and "11 FiveK test-split pairs" in table, name
        assert all(len(x.split(".")[1]) == 2 for x in re.findall(r"\d+\.\d+(?![\d%])", table)), table  # PSNR: 2 dec.
        for jargon in ("GFM", "EMA", "L1", "Adam", "condition", "base", "pseudo"):
            assert jargon not in summary, (name, jargon)
        for lab in ("../", "MANIFEST", "csr_core", "Disclosure", "dev pairs", "(no FiveK set; above)"):
            assert lab not in text, (name, lab)
        assert text.count("tools/") == text.count("(source checkout"), name
        assert not re.search(r"\w-\n", text), name  # textwrap never breaks 'Sun-Hays80' at its hyphen
    for other in ("14 real", "FiveK-C", "(learned from)", "base style", "expert's edit", "base:", "started from"):
        assert other not in listing + "".join(shown.values()), other
    assert "[22.53 dB on 14 FiveK train-range pairs" in listing
    lines = [ln.split() for ln in shown["C"].splitlines()]
    assert ["auto", "PSNR", "22.53"] in [ln[:3] for ln in lines]  # the style C started from, by its name
    # beside C: the style it started from and Pillow's autocontrast, where its card has their scores
    assert ["set", "C", "auto", "autocontrast", "do", "nothing"] in lines
    assert ["14", "FiveK", "train-range", "pairs,", "5-fold", "validation", "23.23", "22.53", "21.04*",
            "20.52"] in lines
    assert ["11", "FiveK", "test-split", "pairs", "25.10", "22.71", "21.64", "17.90"] in lines  # auto on every set
    assert "  autocontrast: Pillow's (cutoff 0.5%), keeping the tones; * per channel" in shown["C"].splitlines()
    assert ["11", "FiveK", "test-split", "pairs", "22.71", "21.64", "17.90"] in [ln.split() for ln in
                                                                              shown["auto"].splitlines()]


def test_user_cards_read_like_the_builtin_ones(run, toy_registry):
    """A user style's card: its kind in plain words, its own pairs in the table (not an expert's edits), the
    step count said once (also on cards of an earlier csr); a style of csr train shows its held-out photos."""
    from csr_core.finetune import FinetuneConfig, recipe_method
    from csr_core.model import CSRNet

    m = dict(psnr=25.341, ssim=0.955, delta_e=6.26)
    validation = dict(m, baseline_psnr=20.77, baseline_ssim=0.938, baseline_delta_e=9.73, images=5,
                      base_style=dict(psnr=20.12, ssim=0.916, delta_e=10.76), autocontrast=m)
    for method in (recipe_method(FinetuneConfig(), False), "condition-only fine-tune, step count chosen by validation"):
        card = dict(description="your look", training=dict(data=dict(pairs=5), initialised_from="auto",
                                                            recipe=dict(steps=600, method=method)),
                    validation=dict(method="5-fold", chosen_steps=20), scores=dict(validation=validation))
        toy_registry.save_style("mine", CSRNet().state_dict(), card, base=toy_registry.get("auto"), overwrite=True)
        text = run("styles", "show", "mine").output
        assert text.splitlines()[0] == "mine (user style, fine-tuned from 'auto')"
        assert "scores (PSNR dB against each pair's 'after' photo; higher is closer):" in text
        assert [ln.split() for ln in text.splitlines() if ln.startswith("  its own 5 pairs")][0][-4:] == \
            ["25.34", "20.12", "25.34", "20.77"]  # the style, the style it started from, autocontrast, nothing
        assert ["set", "mine", "auto", "autocontrast", "do", "nothing"] in [ln.split() for ln in text.splitlines()]
        assert "  autocontrast: Pillow's (cutoff 0.5%), per channel" in text.splitlines()
        assert text.count("steps") == 1 and "; 20 steps, chosen by 5-fold validation" in " ".join(text.split())
    card["training"]["initialised_from"] = "mine"  # tuned again from its own earlier version: not 'mine' twice
    toy_registry.save_style("mine", CSRNet().state_dict(), card, base=toy_registry.get("auto"), overwrite=True)
    lines = [ln.split() for ln in run("styles", "show", "mine").output.splitlines()]
    assert ["set", "mine", "start", "style", "autocontrast", "do", "nothing"] in lines
    assert ["start", "style", "PSNR", "20.12"] in [ln[:4] for ln in lines]
    toy_registry.save_style("trained", CSRNet().state_dict(), dict(
        training=dict(data="707 photos", recipe=dict(method="synthetic faults")),
        scores=dict(synthetic_holdout=dict(psnr=20.5, baseline_psnr=17.4, images=30))))
    text = run("styles", "show", "trained").output
    assert text.splitlines()[0] == "trained (user style)"
    assert ["30", "held-out", "photos", "with", "synthetic", "faults", "20.50", "17.40"] in \
        [ln.split() for ln in text.splitlines()]
    toy_registry.save_style("small", CSRNet().state_dict(), dict(
        scores=dict(synthetic_holdout=dict(psnr=20.5, baseline_psnr=17.4, images=1))))
    assert "1 held-out photo with synthetic faults" in run("styles", "show", "small").output
    toy_registry.save_style("one", CSRNet().state_dict(), dict(scores=dict(
        validation=dict(psnr=21.0, baseline_psnr=20.0, images=1, method="held-out"),
        sets=dict(renderings=dict(pairs=1, by_strength={"1": dict(psnr=19.0)}, **{"do-nothing": 18.0})))))
    text = run("styles", "show", "one").output  # one pair is 'pair' in every title
    assert "  its own 1 pair, held-out validation " in text and "  1 FiveK pair in other renderings " in text
    assert "autocontrast" not in text  # no column for scores the card does not have


def test_finetune_summary_says_whether_the_step_count_was_chosen():
    from csr_cli.finetune import summary_lines

    m = dict(psnr=20.0, ssim=0.9, delta_e=5.0)
    s = dict(m, images=3, baseline_psnr=18.0, baseline_ssim=0.8, baseline_delta_e=6.0, base_style=m, autocontrast=m)
    head = [summary_lines(dict(scores=dict(validation=s),
                               validation=dict(method="3-fold", chosen_steps=n, fixed_steps=f)))[0]
            for n, f in ((1200, True), (120, False), (0, True))]
    assert head == ["3-fold validation on 3 pairs (1200 steps, fixed):",
                    "3-fold validation on 3 pairs (steps chosen: 120):",
                    "3-fold validation on 3 pairs (no gain: the style equals its start):"]
    card = dict(scores=dict(validation=s), validation=dict(method="3-fold", chosen_steps=120),
                training=dict(initialised_from="auto"))  # the style it started from is named, not 'base style'
    assert [ln.split()[0] for ln in summary_lines(card)[1:]] == ["new", "do-nothing", "auto", "autocontrast"]


def test_double_star_patterns_search_every_depth(run, tmp_path):
    """``**`` stands for any depth of sub-folders (none included), whatever the folder names hold."""
    raw = tmp_path / "raw"
    for rel in ("a.tif", "x/y/b.tif", "[2024]/c.tif", "x/d.jpg"):
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        _photo(raw / rel)
    tifs = ["a.tif", "b.tif", "c.tif"]
    cases = {f"{raw}/**/*.tif": tifs, f"{tmp_path}/r?w/**/*.tif": tifs, f"{raw}/**": [*tifs, "d.jpg"],
             f"{raw}/**/y/*": ["b.tif"]}
    for i, (pattern, names) in enumerate(cases.items()):
        res = run("retouch", pattern, "-o", tmp_path / f"out{i}")
        assert res.exit_code == 0, (pattern, res.output)
        assert sorted(p.name for p in (tmp_path / f"out{i}").iterdir()) == names, pattern


def test_hidden_folders_are_not_searched(run, tmp_path):
    """A card's trash and thumbnail caches (hidden folders) are neither retouched nor take a photo's output name."""
    card = tmp_path / "card"
    for rel in ("DCIM/IMG_0001.jpg", ".Trash-1000/files/IMG_0001.jpg", "DCIM/.thumbnails/IMG_0002.jpg"):
        (card / rel).parent.mkdir(parents=True, exist_ok=True)
        _photo(card / rel)
    for i, item in enumerate((card, f"{card}/**/*.jpg")):
        res = run("retouch", item, "-o", tmp_path / f"out{i}")
        assert res.exit_code == 0 and "csr: error" not in res.output, res.output
        found = sorted(str(p.relative_to(tmp_path / f"out{i}")) for p in (tmp_path / f"out{i}").rglob("*.jpg"))
        assert found == (["DCIM/IMG_0001.jpg"] if i == 0 else ["IMG_0001.jpg"]), found


def test_a_photo_reached_twice_is_retouched_once(run, tmp_path):
    """Named twice, through its folder and a pattern, or through a link: one input, one output."""
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    a = _photo(shoot / "a.jpg")
    (shoot / "also-a.jpg").symlink_to(a)
    res = run("retouch", a, f"{shoot}/./a.jpg", shoot, str(shoot / "*.jpg"), "-o", tmp_path / "out")
    assert res.exit_code == 0 and "csr: error" not in res.output, res.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg"]


def _errors(res) -> list[str]:
    return [line for line in res.output.splitlines() if line.startswith("csr: error:")]


def test_unreadable_folders_are_errors_and_the_rest_runs(run, tmp_path, monkeypatch):
    """A sub-folder (or the folder itself) that cannot be listed is one error line each, exit 1."""
    shoot, locked = tmp_path / "shoot", tmp_path / "locked"
    for path in (shoot / "a.jpg", shoot / "sub" / "b.jpg", locked / "c.jpg"):
        path.parent.mkdir(parents=True, exist_ok=True)
        _photo(path)
    real = os.scandir

    def scandir(path="."):
        if os.fspath(path) in (str(shoot / "sub"), str(locked)):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)  # as for a folder without read permission (root ignores chmod)
    for i, sources in enumerate(([shoot], [f"{shoot}/**/*.jpg"], [f"{shoot}/*.jpg", f"{shoot}/*/*.jpg"])):
        res = run("retouch", *sources, locked, "-o", tmp_path / f"out{i}")
        assert res.exit_code == 1 and _errors(res) == [f"csr: error: {shoot / 'sub'}: cannot read folder "
                                                       "(Permission denied)", f"csr: error: {locked}: cannot read "
                                                       "folder (Permission denied)"], res.output
        assert [p.name for p in (tmp_path / f"out{i}").iterdir()] == ["a.jpg"]


def test_the_summary_counts_inputs_that_could_not_be_read(run, tmp_path):
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    for name in ("a.jpg", "b.jpg"):
        _photo(shoot / name)
    res = run("retouch", shoot, tmp_path / "missing.jpg", "-o", tmp_path / "out")
    assert res.exit_code == 1 and res.output.strip().splitlines()[-1] == "2 retouched, 0 skipped, 1 failed", res.output


def test_an_input_or_output_that_cannot_be_examined_fails_alone(run, tmp_path, monkeypatch):
    ok = _photo(tmp_path / "ok.jpg")
    locked, too_long = tmp_path / "locked" / "x.jpg", tmp_path / ("a" * 300 + ".jpg")
    real = os.stat

    def stat(path, *args, **kwargs):
        if os.fspath(path) == str(locked):  # as for a file in a folder without search permission
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    res = run("retouch", ok, locked, too_long, "-o", tmp_path / "out")
    assert res.exit_code == 1 and _errors(res) == [f"csr: error: {locked}: cannot read (Permission denied)",
                                                   f"csr: error: {too_long}: cannot read (File name too long)"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["ok.jpg"]
    res = run("retouch", ok, "-o", tmp_path / ("b" * 300 + ".jpg"))
    assert res.exit_code == 1 and len(_errors(res)) == 1 and "File name too long" in res.output, res.output
    assert "unexpected" not in res.output


def test_an_output_name_ending_in_a_slash_is_a_folder(run, tmp_path):
    """Also a new folder with a dot in its name; without the slash, a name with an extension is a file."""
    src = _photo(tmp_path / "in.jpg")
    (tmp_path / "shoot").mkdir()
    _photo(tmp_path / "shoot" / "a.jpg"), _photo(tmp_path / "shoot" / "b.jpg")
    for name in ("edited.v2/", "2024.05 wedding/", "export.jpg/"):
        res = run("retouch", src, "-o", f"{tmp_path}/{name}")
        assert res.exit_code == 0 and (tmp_path / name / "in.jpg").is_file(), (name, res.output)
    res = run("retouch", tmp_path / "shoot", "-o", f"{tmp_path}/shoot.v2/")
    assert res.exit_code == 0 and sorted(p.name for p in (tmp_path / "shoot.v2").iterdir()) == ["a.jpg", "b.jpg"]
    res = run("retouch", tmp_path / "shoot", "-o", f"{tmp_path}/shoot.v3")  # no slash: a file name, a usage error
    assert res.exit_code == 2 and _errors(res) == [f"csr: error: {tmp_path}/shoot.v3: several inputs need an output "
                                                   "folder, not a file name (a folder: end it with /)"], res.output
    assert run("retouch", src, "-o", tmp_path / "plain.jpg").exit_code == 0 and (tmp_path / "plain.jpg").is_file()
    res = run("retouch", src, "-o", f"{tmp_path / 'plain.jpg'}/")  # an existing file, named as a folder
    assert res.exit_code == 2 and _errors(res) == [f"csr: error: {tmp_path / 'plain.jpg'}/: a file, not a folder "
                                                   "(choose another output folder)"], res.output


def test_a_format_that_contradicts_the_output_name_is_refused(run, tmp_path):
    src = _photo(tmp_path / "in.jpg")
    for source, stdin in ((src, None), ("-", src.read_bytes())):
        res = run("retouch", source, "-o", tmp_path / "x.png", "--format", "jpg", stdin=stdin)
        assert res.exit_code == 2 and _errors(res) == [
            f"csr: error: {tmp_path / 'x.png'}: its extension means PNG but --format asks for jpg; drop --format "
            "or end the name in .jpg"], res.output
        assert not (tmp_path / "x.png").exists()
    assert run("retouch", src, "-o", tmp_path / "x.jpeg", "--format", "jpg").exit_code == 0
    assert load_photo(tmp_path / "x.jpeg").format == "JPEG"


def test_a_missing_photo_is_one_error_line(run, tmp_path):
    res = run("retouch", tmp_path / "nope.jpg", "-o", tmp_path / "out.jpg")
    assert res.exit_code == 1 and _errors(res) == [f"csr: error: {tmp_path / 'nope.jpg'}: no such file or folder"], \
        res.output
