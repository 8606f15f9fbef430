"""The style registry: names, provenance, sha256 checks, condition styles, mixing, import."""
import json
import os
import pickle
import re

import numpy as np
import pytest
import torch

from csr_core.errors import StyleError
from csr_core.inference import retouch_array
from csr_core.engine import Net
from csr_core.model import CSRNet, from_state
from csr_core.registry import Registry, parse_spec, validate_name


def _perturbed(net: Net, seed: int) -> CSRNet:
    """A torch copy of ``net`` whose condition net + GFM differ (a fake fine-tune)."""
    out = from_state(net.state)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in out.named_parameters():
            if name.startswith("cond_"):
                p.add_(0.2 * torch.randn(p.shape, generator=g))
    return out


@pytest.mark.parametrize("bad", ["", "ok\n", "../../x", "a/b", "a\\b", ".hidden", "CON", "nul", "lpt1", "x" * 65, "a b", "é"])
def test_bad_names_refused(bad):
    with pytest.raises(StyleError, match="invalid style name"):
        validate_name(bad)


def test_builtin_listed_and_loaded(toy_registry):
    assert toy_registry.names() == ["auto"]
    assert isinstance(toy_registry.net("auto"), Net)


def test_unknown_name_suggests(toy_registry):
    with pytest.raises(StyleError, match=r"unknown style 'autp'; did you mean 'auto'"):
        toy_registry.get("autp")


def test_expert_names_explain_how_to_create(toy_registry):
    with pytest.raises(StyleError, match=r"FiveK expert B.*csr finetune --pairs .* --expert B --name B"):
        toy_registry.get("B")


def test_tampered_weights_refused(toy_registry):
    path = toy_registry.get("auto").path
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StyleError, match="sha256"):
        Registry(toy_registry.builtin_path, toy_registry.user_path).net("auto")


def test_damaged_manifest_is_one_clear_error(toy_registry):
    (toy_registry.builtin_path / "manifest.json").write_text('{"styles": {"auto": ')
    with pytest.raises(StyleError, match="manifest is damaged"):
        toy_registry.names()


def test_user_style_cannot_shadow_builtin(toy_registry):
    for name in ("auto", "AUTO"):
        with pytest.raises(StyleError, match="built-in"):
            toy_registry.save_style(name, CSRNet().state_dict(), {})


def test_a_user_card_named_like_a_builtin_is_reported_and_removable(toy_registry):
    """A user card that a built-in style's name hides (copied from elsewhere, or older than that built-in) is
    not silently missing: a warning and 'show' say why, and 'remove' deletes it and its weights, never the
    built-in one."""
    toy_registry.save_style("mine", CSRNet().state_dict(), {})
    user = toy_registry.user_path
    weights = toy_registry.get("mine").path
    (user / "AUTO.json").write_text((user / "mine.json").read_text())
    copy = weights.with_name(f"AUTO.{weights.name.split('.')[1]}.safetensors")
    copy.write_bytes(weights.read_bytes())
    why = r"its name is taken by the built-in style 'auto' \(to keep it, give AUTO.json another name\)"
    with pytest.warns(UserWarning, match=rf"AUTO.json: skipped, {why}; csr styles remove AUTO"):
        assert toy_registry.names() == ["auto", "mine"]
    with pytest.raises(StyleError, match=rf"^user style 'AUTO' cannot be used: {why}; csr styles remove AUTO$"):
        toy_registry.get("AUTO")
    toy_registry.remove("AUTO")
    assert sorted(p.name for p in user.iterdir()) == [".lock", weights.name, "mine.json"]
    assert toy_registry.names() == ["auto", "mine"] and toy_registry.get("auto").builtin


def test_condition_style_stores_only_condition_part_and_base_ref(toy_registry):
    base = toy_registry.get("auto")
    tuned = _perturbed(toy_registry.net("auto"), 1)
    style = toy_registry.save_style("mine", tuned.state_dict(), {"description": "t"}, base=base)
    from safetensors.numpy import load_file

    keys = load_file(str(style.path)).keys()
    assert keys and all(k.startswith("cond_") for k in keys)
    card = json.loads((toy_registry.user_path / "mine.json").read_text())
    assert card["base"] == {"name": "auto", "sha256": base.sha256} and card["kind"] == "condition"
    fresh = Registry(toy_registry.builtin_path, toy_registry.user_path)
    loaded = fresh.net("mine")
    for k, v in tuned.state_dict().items():
        assert np.array_equal(loaded.state[k], v.numpy())
    with pytest.raises(StyleError, match="already exists"):
        fresh.save_style("mine", tuned.state_dict(), {}, base=base)


def test_condition_style_stores_only_what_changed_and_old_files_still_load(toy_registry):
    """Only tensors that differ from the base are stored; a file holding every condition tensor (the
    format before) still loads to the same network; a stranger's tensor or shape is refused."""
    import hashlib

    from safetensors.torch import load_file, save

    from csr_core.model import condition_state

    base = toy_registry.get("auto")
    tuned = from_state(toy_registry.net("auto").state)
    with torch.no_grad():
        tuned.cond_shift3.bias += 0.05  # what a 'bias' fine-tune of one layer changes
        tuned.cond_scale1.weight *= 1.1
    style = toy_registry.save_style("mine", tuned.state_dict(), {}, base=base)
    assert sorted(load_file(str(style.path))) == ["cond_scale1.weight", "cond_shift3.bias"]
    assert style.path.stat().st_size < 32 * 64 * 4 + 1024
    fresh = Registry(toy_registry.builtin_path, toy_registry.user_path)
    assert all(np.array_equal(fresh.net("mine").state[k], v.numpy()) for k, v in tuned.state_dict().items())

    def write_condition_file(name, state):
        blob = save(state)
        (toy_registry.user_path / f"{name}.x.safetensors").write_bytes(blob)
        card = dict(file=f"{name}.x.safetensors", sha256=hashlib.sha256(blob).hexdigest(), kind="condition",
                    cond_size=64, base={"name": "auto", "sha256": base.sha256})
        (toy_registry.user_path / f"{name}.json").write_text(json.dumps(card))

    write_condition_file("old", {k: v.contiguous() for k, v in condition_state(tuned.state_dict()).items()})
    write_condition_file("alien", {"conv1.weight": tuned.conv1.weight.contiguous()})
    write_condition_file("misshapen", {"cond_shift3.bias": torch.zeros(5)})
    fresh = Registry(toy_registry.builtin_path, toy_registry.user_path)
    assert all(np.array_equal(fresh.net("old").state[k], v.numpy()) for k, v in tuned.state_dict().items())
    for name in ("alien", "misshapen"):
        with pytest.raises(StyleError, match="do not match a CSRNet condition net|not a CSRNet"):
            fresh.net(name)


def test_missing_base_is_reported(toy_registry, tmp_path):
    toy_registry.save_style("mine", _perturbed(toy_registry.net("auto"), 1).state_dict(), {}, base=toy_registry.get("auto"))
    other = tmp_path / "other"
    from conftest import write_builtin

    write_builtin(other, "auto", seed=5)
    with pytest.raises(StyleError, match="fine-tuned from base 'auto'.*not installed"):
        Registry(other, toy_registry.user_path).net("mine")


def test_base_is_found_by_sha256_when_renamed(toy_registry, tmp_path):
    """A base renamed in a later release (auto -> auto-v1, same bytes) still carries the styles tuned on it."""
    toy_registry.save_style("mine", _perturbed(toy_registry.net("auto"), 1).state_dict(), {}, base=toy_registry.get("auto"))
    before = toy_registry.net("mine").state
    manifest = toy_registry.builtin_path / "manifest.json"
    data = json.loads(manifest.read_text())
    data["styles"] = {"auto-v1": data["styles"]["auto"]}
    manifest.write_text(json.dumps(data))
    fresh = Registry(toy_registry.builtin_path, toy_registry.user_path)
    assert fresh.base_name(fresh.get("mine")) == "auto-v1"
    assert all(np.array_equal(v, fresh.net("mine").state[k]) for k, v in before.items())
    other = tmp_path / "other"
    from conftest import write_builtin

    write_builtin(other, "auto", seed=5)
    assert Registry(other, toy_registry.user_path).base_name(fresh.get("mine")) == "auto (not installed)"

def test_mix_spec_composes_what_parse_spec_reads():
    """The one mix composition the web app and the GIMP plug-in use: amount 0-1 of a second style."""
    from csr_core.registry import mix_spec, parse_spec

    assert mix_spec("C", "auto", 0.3) == "C:0.7,auto:0.3"
    assert parse_spec(mix_spec("C", "auto", 0.3)) == [("C", 0.7), ("auto", 0.3)]
    assert mix_spec("C", "auto", 0.25) == "C:0.75,auto:0.25"
    assert mix_spec("C", None, 0.3) == mix_spec("C", "", 0.3) == mix_spec("C", "auto", 0) == "C"
    assert mix_spec("C", "auto", 1) == mix_spec("C", "auto", 1.5) == "auto"
    assert mix_spec("C", "C", 0.3) == "C:0.7,C:0.3" and parse_spec("C:0.7,C:0.3") == [("C", 1.0)]


@pytest.mark.parametrize("style, second, amount", [("C", "auto,C", 0.3), ("C", "auto,C", 1), ("C", "auto:5", 0.3),
                                                   ("C:0.5,auto:0.5", "auto", 0.3)])
def test_mix_spec_mixes_two_names_only(style, second, amount):
    """A second style (or a first, when mixing) that is itself a mix is refused in one line: 'auto,C' at 30% made
    a 50/50 mix of C and auto, 'auto:5' an error about a weight '5:0.3' nobody wrote."""
    from csr_core.registry import mix_spec

    with pytest.raises(StyleError, match=r"^cannot mix .*: a mix is made of two styles, each named on its own "):
        mix_spec(style, second, amount)
    assert mix_spec("C:0.5,auto:0.5", "", 0.3) == "C:0.5,auto:0.5"  # no mix asked: the spec as it is (protocol 2)


def test_mix_weights_one_zero_equal_pure_style(toy_registry, rng):
    toy_registry.save_style("mine", _perturbed(toy_registry.net("auto"), 2).state_dict(), {}, base=toy_registry.get("auto"))
    img = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    pure = retouch_array(img, toy_registry.look("mine"))
    assert np.array_equal(retouch_array(img, toy_registry.look("mine:1,auto:0")), pure)
    half = retouch_array(img, toy_registry.look("mine:0.5,auto:0.5")).astype(int)
    other = retouch_array(img, toy_registry.look("auto")).astype(int)
    assert not np.array_equal(half, pure) and not np.array_equal(half, other)

def test_mix_needs_shared_base(toy_registry):
    toy_registry.save_style("full2", CSRNet().state_dict(), {})
    with pytest.raises(StyleError, match="do not share a base"):
        toy_registry.look("auto:0.5,full2:0.5")

@pytest.mark.parametrize("spec, reason", [("auto:x", "is not a number"), ("auto:-1", "finite and >= 0"),
                                          ("auto:0", "more than 0"), ("auto:inf", "finite and >= 0"),
                                          ("C:1e308,auto:1e308", "too large"), ("C:1e308,C:1e308", "too large"),
                                          ("C:0.5,", "empty entry"), (",C", "empty entry"), ("C, ,auto", "empty entry"),
                                          (":0.5", "empty entry")])
def test_bad_mix_specs(spec, reason):
    with pytest.raises(StyleError, match=f"^bad style mix {re.escape(repr(spec))}: .*{reason}"):
        parse_spec(spec)

def test_parse_spec_normalises():
    assert parse_spec("C:3,auto:1") == [("C", 0.75), ("auto", 0.25)]
    assert parse_spec("C:1e307,auto:1e307") == [("C", 0.5), ("auto", 0.5)]  # large, but their sum is finite

def test_remove_user_style_only(toy_registry):
    toy_registry.save_style("mine", CSRNet().state_dict(), {})
    toy_registry.remove("mine")
    assert toy_registry.names() == ["auto"]
    with pytest.raises(StyleError, match="built in"):
        toy_registry.remove("auto")

def test_a_style_others_run_on_is_neither_removed_nor_replaced(toy_registry):
    """A full user style that a fine-tuned style runs on stays until that style is gone: removing or
    replacing it would leave the other unusable."""
    toy_registry.save_style("mynet", CSRNet().state_dict(), {})
    toy_registry.save_style("mine", _perturbed(toy_registry.net("mynet"), 1).state_dict(), {},
                            base=toy_registry.get("mynet"))
    for action in (lambda: toy_registry.remove("mynet"),
                   lambda: toy_registry.save_style("mynet", CSRNet().state_dict(), {}, overwrite=True)):
        with pytest.raises(StyleError, match="cannot (remove|replace) style 'mynet': 'mine' runs on it.*"
                                             "csr styles remove mine"):
            action()
    fresh = Registry(toy_registry.builtin_path, toy_registry.user_path)
    assert isinstance(fresh.net("mine"), Net)
    fresh.remove("mine")
    fresh.remove("mynet")
    assert fresh.names() == ["auto"]

def test_the_same_weights_make_the_same_style_file(toy_registry):
    """Saved twice, or under another name, the same weights are the same bytes (the same sha256): a run that
    gives the same style, or a network imported again, is recognised as the same."""
    state = CSRNet().state_dict()
    shas = {toy_registry.save_style("mine", state, {}, overwrite=True).sha256 for _ in range(12)}
    assert len(shas) == 1 and toy_registry.save_style("other", state, {}).sha256 in shas

def test_half_written_user_files_are_ignored(toy_registry):
    toy_registry.user_path.mkdir(parents=True)
    (toy_registry.user_path / "broken.json").write_text('{"sha')
    (toy_registry.user_path / ".x.safetensors.part").write_bytes(b"junk")
    with pytest.warns(UserWarning, match=r"broken.json: skipped, invalid style card .*; csr styles remove broken"):
        assert toy_registry.names() == ["auto"]

def test_a_card_removed_while_listing_is_no_warning(toy_registry, monkeypatch):
    """Another csr process removes a style between the listing of the folder and the reading of its card: the
    style is gone, not 'invalid'."""
    import warnings

    import csr_core.registry as registry

    toy_registry.save_style("mine", CSRNet().state_dict(), {})
    read = registry.read_regular

    def raced(path, *args):
        path.unlink(missing_ok=True)
        return read(path, *args)

    monkeypatch.setattr(registry, "read_regular", raced)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert toy_registry.names() == ["auto"] and toy_registry.damaged() == {}
    monkeypatch.setattr(registry, "read_regular", read)
    (toy_registry.user_path / "link.json").symlink_to(toy_registry.user_path / "nothing.json")
    with pytest.warns(UserWarning, match="link.json: skipped, invalid style card"):  # a link to nothing stays
        assert "link" in toy_registry.damaged()


def test_import_checkpoint_roundtrip(toy_registry, tmp_path):
    model = CSRNet()
    torch.save(model.state_dict(), tmp_path / "ok.pth")
    style = toy_registry.import_checkpoint(tmp_path / "ok.pth", "imported")
    assert style.card["source"]["file"] == "ok.pth"
    assert np.array_equal(toy_registry.net("imported").state["conv1.weight"], model.conv1.weight.detach().numpy())

class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))

def test_import_refuses_pickle_payload(toy_registry, tmp_path, recwarn, capsys):
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"x": _Evil()}, fh, protocol=4)  # Python's default, not torch.load's
    with pytest.raises(StyleError, match="not a plain PyTorch state_dict"):
        toy_registry.import_checkpoint(tmp_path / "evil.pth", "evil")
    assert "evil" not in toy_registry.names()
    assert [str(w.message) for w in recwarn] == []  # the refusal is the one message: no torch warning
    assert "pwned" not in capsys.readouterr().out  # the payload never ran

def test_import_refuses_wrong_architecture(toy_registry, tmp_path):
    torch.save({"w": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(StyleError, match="not a CSRNet"):
        toy_registry.import_checkpoint(tmp_path / "other.pth", "other")

def test_a_damaged_card_is_named_as_such_and_can_be_replaced(toy_registry, recwarn):
    """A name whose card is damaged is neither 'unknown' nor 'just saved by another csr process': using it
    says what is wrong, a new style of that name needs --overwrite, which replaces the card and its weights."""
    from csr_core.errors import StyleExistsError, UnknownStyleError

    state = CSRNet().state_dict()
    toy_registry.save_style("mine", state, {})
    user = toy_registry.user_path
    for name in ("broken", "Other"):
        (user / f"{name}.json").write_text('{"sha')
        (user / f"{name}.0123456789ab.safetensors").write_bytes(b"junk")
    with pytest.raises(StyleError, match=r"^user style 'broken' cannot be used: invalid style card .*; "
                                         r"csr styles remove broken$") as err:
        toy_registry.get("broken")
    assert not isinstance(err.value, UnknownStyleError)
    # the error says it once: no warning repeats it, while the other damaged card is still warned of
    assert [str(w.message).split(":")[0] for w in recwarn.list] == [str(user / "Other.json")]
    with pytest.raises(StyleExistsError, match=r"^user style 'broken' already exists but cannot be used \(invalid "
                                               r"style card .*\); replace it with --overwrite, or remove it"):
        toy_registry.save_style("broken", state, {})
    for name in ("broken", "other"):  # the same name, and one that differs only in case
        style = toy_registry.save_style(name, state, {}, overwrite=True)
        assert isinstance(toy_registry.net(name), Net) and toy_registry.get(name) == style
    assert toy_registry.damaged() == {} and toy_registry.names() == ["auto", "broken", "mine", "other"]
    assert sorted(p.name for p in user.glob("*.safetensors")) == [
        f"{n}.{style.sha256[:12]}.safetensors" for n in ("broken", "mine", "other")]


def test_remove_in_a_read_only_folder_or_raced_is_one_line(run, toy_registry, monkeypatch):
    """A style folder that refuses the removal is one clear line, not an unexpected error; a style that
    another csr process removed meanwhile is removed."""
    import pathlib

    toy_registry.save_style("mine", CSRNet().state_dict(), {})
    unlink = pathlib.Path.unlink

    def refused(self, missing_ok=False):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(pathlib.Path, "unlink", refused)
    res = run("styles", "remove", "mine", "-y")
    assert res.exit_code == 1 and res.output == (
        f"csr: error: cannot remove style 'mine' from {toy_registry.user_path} (Permission denied)\n")
    monkeypatch.setattr(pathlib.Path, "unlink", unlink)
    assert toy_registry.names() == ["auto", "mine"]
    check_unused, calls = Registry.check_unused, []

    def raced(self, style, action):  # another process removes the style between the listing and the removal
        check_unused(self, style, action)
        calls.append(action)
        if len(calls) == 2:  # the check of Registry.remove (the command checks first, before asking)
            for path in toy_registry.user_path.iterdir():
                unlink(path)

    monkeypatch.setattr(Registry, "check_unused", raced)
    res = run("styles", "remove", "mine", "-y")
    assert res.exit_code == 0 and res.output == "removed style 'mine'\n"


# ----------------------------------------------------------------------------- several csr processes at once

#: ``csr`` itself, started and loaded, then waiting for its go: it creates the file named by its first argument
#: + '.ready', and waits for the file of that name.
_WAITING_CSR = """
import os, sys, time
import torch
from csr_cli import main, styles
go = sys.argv[1]
open(go + "." + str(os.getpid()) + ".ready", "w").close()
while not os.path.exists(go):
    time.sleep(0.002)
sys.argv = ["csr", *sys.argv[2:]]
main.main()
"""


def _race(tmp_path, home, commands: list[list[str]], kill: list[float] = ()) -> list:
    """Run ``csr`` with each of ``commands`` at once, as separate processes started together; with ``kill``,
    process i gets SIGKILL ``kill[i]`` seconds after the start (a negative delay: never). Their return codes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    go = tmp_path / f"go-{time.monotonic_ns()}"
    env = dict(os.environ, CSR_HOME=str(home), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _WAITING_CSR, str(go), *args], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args in commands]
    while len(list(tmp_path.glob(f"{go.name}.*.ready"))) < len(procs):  # all loaded: they start together
        assert all(proc.poll() is None for proc in procs), [proc.communicate() for proc in procs]
        time.sleep(0.01)
    go.touch()
    start = time.monotonic()
    for proc, delay in sorted(zip(procs, kill), key=lambda pd: pd[1]):
        if delay >= 0:
            time.sleep(max(0.0, start + delay - time.monotonic()))
            proc.send_signal(signal.SIGKILL)
    outs = [proc.communicate(timeout=300) for proc in procs]
    return [(proc.returncode, err) for proc, (_, err) in zip(procs, outs)]


def _only_style(folder, name: str, sources: dict) -> dict | None:
    """The one card of ``name`` in ``folder`` and its weights, which match the card's sha256 and come from
    one of ``sources`` (a checkpoint's sha256 -> its path); nothing else is there but the lock file (no other
    weights, no temporary file). None if the folder holds nothing."""
    import hashlib

    files = sorted(p.name for p in folder.iterdir() if p.name != ".lock") if folder.exists() else []
    if not files:
        return None
    card = json.loads((folder / f"{name}.json").read_text())
    assert files == sorted([f"{name}.json", card["file"]]), files
    assert hashlib.sha256((folder / card["file"]).read_bytes()).hexdigest() == card["sha256"]
    assert card["source"]["sha256"] in sources, card["source"]
    reg = Registry(None, folder)
    assert reg.names().count(name) == 1 and isinstance(reg.net(name), Net)  # sha256-checked load
    return card


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict:
    """Six different CSRNet checkpoints: their sha256 -> path."""
    import hashlib

    folder, out = tmp_path_factory.mktemp("race-ckpt"), {}
    for seed in range(6):
        torch.manual_seed(seed)
        path = folder / f"net{seed}.pth"
        torch.save(CSRNet().state_dict(), path)
        out[hashlib.sha256(path.read_bytes()).hexdigest()] = path
    return out


def test_racing_overwrites_of_one_name_leave_one_card_and_its_weights(tmp_path, checkpoints):
    """Six `csr styles import --overwrite` of one name at once, each with another checkpoint, over an existing
    style: all succeed, and the folder holds one card and the weights it names, nothing else (no weights file
    of an overwrite that lost the race)."""
    home, paths = tmp_path / "home", list(checkpoints.values())
    import_ = lambda path: ["styles", "import", str(path), "--name", "race", "--overwrite"]  # noqa: E731
    assert _race(tmp_path, home, [import_(paths[0])], kill=[-1])[0][0] == 0
    done = _race(tmp_path, home, [import_(p) for p in paths], kill=[-1] * len(paths))
    assert [code for code, _ in done] == [0] * len(paths), done
    assert _only_style(home / "styles", "race", checkpoints) is not None


def test_racing_imports_and_removes_of_one_name_leave_one_style_or_none(tmp_path, checkpoints):
    """Imports (a new name, then over each other) and removes of one name at once: every import succeeds or is
    told the name was taken meanwhile, every removal removes or finds the style gone; after them the folder
    holds one style, card and weights, or nothing."""
    home, paths = tmp_path / "home", list(checkpoints.values())
    commands = [["styles", "import", str(paths[0]), "--name", "race"],
                ["styles", "import", str(paths[1]), "--name", "race"],
                *(["styles", "import", str(p), "--name", "race", "--overwrite"] for p in paths[2:4]),
                ["styles", "remove", "race", "-y"], ["styles", "remove", "race", "-y"]]
    done = _race(tmp_path, home, commands, kill=[-1] * len(commands))
    for (code, err), args in zip(done, commands):
        allowed = {0: ("",), 1: ("was just saved by another csr process", "already exists"),
                   2: ("unknown style 'race'",)} if "--overwrite" not in args else {0: ("",)}
        assert code in allowed and any(m in err for m in allowed[code]), (args, code, err)
    _only_style(home / "styles", "race", checkpoints)


def test_imports_killed_at_random_moments_leave_a_usable_registry_that_the_next_import_cleans(tmp_path, checkpoints):
    """SIGKILL at random moments of racing overwrites: the style is the old one or a new one and loads; the next
    import of that name leaves its card and weights alone (the killed ones' files and the lock gone)."""
    import random

    home, paths = tmp_path / "home", list(checkpoints.values())
    import_ = lambda path: ["styles", "import", str(path), "--name", "race", "--overwrite"]  # noqa: E731
    rnd = random.Random(7)
    kill = [rnd.uniform(0, 1) if i % 2 else -1 for i in range(len(paths))]
    done = _race(tmp_path, home, [import_(p) for p in paths], kill=kill)
    assert all(code == 0 for (code, _), k in zip(done, kill) if k < 0), done
    folder = home / "styles"
    reg = Registry(None, folder)
    assert "race" in reg.names() and isinstance(reg.net("race"), Net)
    # and what a kill between the weights and the card, or in the middle of a write or the lock, leaves
    (folder / "race.0123456789ab.safetensors").write_bytes(b"weights no card names")
    (folder / ".race.json.0123abcd.part").write_text("{")
    (folder / ".race.0123456789ab.safetensors.89abcdef.part").write_bytes(b"half")
    (folder / ".lock").touch()
    assert _race(tmp_path, home, [import_(paths[0])], kill=[-1])[0][0] == 0
    assert _only_style(home / "styles", "race", checkpoints)["source"]["file"] == paths[0].name


@pytest.mark.skipif(os.name == "nt", reason="symlinks need privileges on Windows")
@pytest.mark.parametrize("kind", ["folder", "link"])
def test_a_lock_file_that_is_a_folder_or_a_link_is_named_and_never_followed(toy_registry, tmp_path, kind):
    """A '.lock' that is a folder or a link (to a file elsewhere) refuses the change in one line that names it
    and says what to do; the file a link points at is neither truncated nor locked."""
    import csr_core.registry as registry

    lock = toy_registry.user_path / registry.LOCK
    toy_registry.user_path.mkdir(parents=True)
    elsewhere = tmp_path / "notes.txt"
    elsewhere.write_text("my notes")
    if kind == "folder":
        lock.mkdir()
    else:
        lock.symlink_to(elsewhere)
    with pytest.raises(StyleError, match=rf"^{re.escape(str(lock))}: csr's lock file for your styles is a {kind}, "
                                         r"not a file; delete it, then try again$"):
        toy_registry.save_style("mine", CSRNet().state_dict(), {})
    assert elsewhere.read_text() == "my notes" and "mine" not in toy_registry.names()
    assert sorted(p.name for p in toy_registry.user_path.iterdir()) == [registry.LOCK]


def test_a_change_waits_for_the_lock_and_says_so_when_it_waits_too_long(toy_registry, monkeypatch):
    """While another program holds the style folder's lock, a save waits for it; past LOCK_TIMEOUT it is one
    error and nothing is written."""
    import threading
    import time

    import filelock

    import csr_core.registry as registry

    monkeypatch.setattr(registry, "LOCK_TIMEOUT", 0.3)
    lock = toy_registry.user_path / registry.LOCK
    toy_registry.user_path.mkdir(parents=True)
    with filelock.FileLock(lock):
        with pytest.raises(StyleError, match=r"another csr program has been saving or removing a style there for "
                                             r"0 s; try again when it is done"):
            toy_registry.save_style("mine", CSRNet().state_dict(), {})
        assert sorted(p.name for p in toy_registry.user_path.iterdir()) == [registry.LOCK]
    monkeypatch.setattr(registry, "LOCK_TIMEOUT", 60.0)
    held, saved = threading.Event(), []

    def hold():
        with filelock.FileLock(lock):
            held.set()
            time.sleep(0.5)
            saved.append(toy_registry.user_path.joinpath("mine.json").exists())

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    toy_registry.save_style("mine", CSRNet().state_dict(), {})  # waits for the holder
    holder.join()
    assert saved == [False] and "mine" in toy_registry.names()
