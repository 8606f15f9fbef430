"""The GIMP plug-in's hand-over (bridge + worker + `csr gimp`), without GIMP."""
from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from csr_core.errors import CsrError
from csr_plugins.gimp import bridge, worker
from csr_plugins.gimp.bridge import BridgeError
from conftest import lively_model


def _req(op="retouch", **kw):
    base = dict(width=8, height=6, channels=4, style="auto", strength=1.0, region=[1, 2, 3, 4])
    return bridge.request(op, **dict(base, **kw)) if op != "styles" else bridge.request(op)


def _session(*messages) -> io.BytesIO:
    buf = io.BytesIO()
    for header, payload in messages:
        bridge.write_message(buf, header, payload)
    buf.seek(0)
    return buf


def _replies(out: io.BytesIO) -> list[tuple[dict, bytes]]:
    out.seek(0)
    replies = []
    while (h := bridge.read_header(out)) is not None:
        replies.append((h, bytes(bridge.read_exact(out, h["nbytes"]))))
    return replies


# -- protocol -----------------------------------------------------------------------------------
def test_request_round_trip_and_sizes():
    buf = _session((_req(), b"x" * 10))
    req = bridge.check_request(bridge.read_header(buf))
    assert req["region"] == [1, 2, 3, 4] and req["strength"] == 1.0 and req["style"] == "auto"
    assert bridge.read_exact(buf, 10) == b"x" * 10 and bridge.read_header(buf) is None
    assert bridge.payload_size(req) == 8 * 6 * 4 * 4
    assert bridge.payload_size(bridge.check_request(_req("teach", channels=3, name="x"))) == 2 * 8 * 6 * 3 * 4
    assert bridge.payload_size(bridge.check_request(_req("styles"))) == 0


@pytest.mark.parametrize("change, message", [
    (dict(op="explode"), "unknown request"),
    (dict(protocol=99), "csr gimp install"),
    (dict(protocol=4, check=True), "speaks protocol 4, this csr speaks 3"),  # not read as a request with pixels
    (dict(width=0), "width"),
    (dict(height="6"), "height"),
    (dict(channels=2), "channels"),
    (dict(region=[6, 0, 3, 1]), "outside"),
    (dict(region=[0, 0, 0, 1]), "outside"),
    (dict(region="all"), "region"),
    (dict(strength="lots"), "strength"),
    (dict(style=3), "style"),
    (dict(mix_with=["auto"]), "mix_with must be a style name"),
    (dict(mix_amount="lots"), "mix_amount must be a number from 0 to 1, got 'lots'"),
    (dict(mix_amount=1.5), "mix_amount must be a number from 0 to 1, got 1.5"),
    (dict(mix_amount=float("nan")), "mix_amount must be a number from 0 to 1"),
    (dict(dtype="f64"), "dtype"),
    (dict(op="teach", finished=3), "finished must be a folder path"),
])
def test_bad_requests_are_one_line_errors(change, message):
    with pytest.raises(BridgeError, match=message) as err:
        bridge.check_request(dict(_req(), **change))
    assert "\n" not in str(err.value)


def test_framing_errors():
    with pytest.raises(BridgeError, match="ended after 3 of 5"):
        bridge.read_exact(io.BytesIO(b"abc"), 5)
    with pytest.raises(BridgeError, match="not JSON"):
        bridge.read_header(io.BytesIO(b"hello\n"))
    with pytest.raises(BridgeError, match="not an object"):
        bridge.read_header(io.BytesIO(b"[1]\n"))


def test_error_line_picks_the_workers_message():
    err = b"Traceback...\nboom\ncsr: error: unknown style 'x'; available: auto\nwarning\n"
    assert bridge.error_line(err, 1) == "unknown style 'x'; available: auto"
    assert "signal 9" in bridge.error_line(b"", -9)
    assert "exit 3" in bridge.error_line(b"ModuleNotFoundError: No module named 'plugins'\n", 3)


# -- worker, in process --------------------------------------------------------------------------
@pytest.fixture
def toy_worker(toy_registry, monkeypatch):
    monkeypatch.setattr(worker, "_REGISTRY", toy_registry)
    monkeypatch.setenv("CSR_GIMP_DEVICE", "cpu")
    return toy_registry


def _layer(rng, h=24, w=32, c=4):
    layer = rng.random((h, w, c), dtype=np.float32)
    if c == 4:
        layer[..., 3] = np.linspace(0.2, 1, w, dtype=np.float32)
    return layer


def test_worker_serves_a_session(toy_worker, rng):
    from csr_core.pipeline import retouch

    layer = _layer(rng)
    req = _req(width=32, height=24, region=[5, 3, 20, 10], strength=0.7)
    out = io.BytesIO()
    assert worker.serve(_session((_req("styles"), b""), (req, layer.tobytes()),
                                 (dict(req, style="nope"), layer.tobytes())), out) == 0
    (styles, _), (ok, data), (bad, nothing) = _replies(out)
    assert styles["ok"] and styles["styles"] == ["auto"] and styles["default"] == "auto"
    assert ok["ok"] and ok["shape"] == [10, 20, 4] and ok["nbytes"] == len(data) == 10 * 20 * 4 * 4
    region = np.frombuffer(data, np.float32).reshape(10, 20, 4)
    whole = retouch(layer[..., :3].copy(), "auto", 0.7, registry=toy_worker)  # condition on the whole layer
    np.testing.assert_allclose(region[..., :3], whole[3:13, 5:25], atol=1e-6)
    np.testing.assert_array_equal(region[..., 3], layer[3:13, 5:25, 3])  # alpha passes through
    assert not bad["ok"] and "unknown style 'nope'" in bad["error"] and nothing == b""


def test_worker_region_differs_from_conditioning_on_the_crop(toy_worker, rng):
    """Conditioning is on the whole layer, not the crop (documented semantics)."""
    from csr_core.pipeline import retouch

    layer = _layer(rng, c=3)
    layer[:, :8] *= 0.2  # a dark strip outside the region changes the whole-layer condition
    req = bridge.check_request(_req(width=32, height=24, channels=3, region=[10, 0, 22, 24], strength=0.5))
    got = worker.retouch(req, layer)
    crop_only = retouch(layer[:, 10:].copy(), "auto", 0.5, registry=toy_worker)
    np.testing.assert_allclose(got, retouch(layer.copy(), "auto", 0.5, registry=toy_worker)[:, 10:], atol=1e-6)
    assert np.abs(got - crop_only).max() > 1e-4


def test_worker_large_layer_takes_the_lut_path_like_csr_retouch(toy_worker, rng):
    from csr_core.inference import LUT_SIZE
    from csr_core.pipeline import retouch

    layer = _layer(rng, 500, 600, 3)
    assert 500 * 600 > LUT_SIZE ** 3
    req = bridge.check_request(_req(width=600, height=500, channels=3, region=[100, 50, 300, 200], strength=0.5))
    got = worker.retouch(req, layer)
    want = retouch(layer.copy(), "auto", 0.5, registry=toy_worker)[50:250, 100:400]
    np.testing.assert_allclose(got, want, atol=1e-5)
    exact = worker.retouch(dict(req, exact=True), layer)
    want = retouch(layer.copy(), "auto", 0.5, registry=toy_worker, exact=True)[50:250, 100:400]
    np.testing.assert_allclose(exact, want, atol=1e-5)


@pytest.mark.parametrize("dtype, scale", [("u8", 255), ("u16", 65535)])
def test_worker_integer_layers_match_csr_retouch_exactly(toy_worker, rng, dtype, scale):
    """u8 / u16 layers (sRGB, stored so) travel as they are and take csr retouch's own code path."""
    from csr_core.pipeline import retouch

    for h, w in ((24, 32), (500, 600)):  # the exact path and the baked-LUT path
        rgb = np.rint(_layer(rng, h, w, 3) * scale).astype(np.dtype(worker.NUMPY_DTYPES[dtype]))
        layer = np.concatenate([rgb, rgb[..., :1]], axis=2)  # some alpha
        req = bridge.check_request(_req(width=w, height=h, dtype=dtype, region=[3, 2, w // 2, h // 3], strength=0.5))
        assert bridge.payload_size(req) == layer.nbytes
        got = worker.retouch(req, worker.layer_array(req, layer.tobytes()))
        want = retouch(rgb, "auto", 0.5, registry=toy_worker)[2:2 + h // 3, 3:3 + w // 2]
        assert got.dtype == rgb.dtype
        np.testing.assert_array_equal(got[..., :3], want)
        np.testing.assert_array_equal(got[..., 3], layer[2:2 + h // 3, 3:3 + w // 2, 3])


def test_babl_formats():
    assert bridge.babl_format(4, "u8") == "R'G'B'A u8" and bridge.babl_format(3, "f32") == "R'G'B' float"


def test_worker_strength_zero_and_range(toy_worker, rng):
    layer = _layer(rng)
    req = bridge.check_request(_req(width=32, height=24, region=[0, 0, 4, 4], strength=0.0))
    np.testing.assert_array_equal(worker.retouch(req, layer), layer[:4, :4])
    with pytest.raises(CsrError, match="strength must be between 0 and 2"):
        worker.retouch(dict(req, strength=2.5), layer)


def test_worker_bad_header_ends_session():
    with pytest.raises(BridgeError, match="unknown request"):
        worker.serve(_session((bridge.request("explode"), b"")), io.BytesIO())


# -- worker, as GIMP starts it -------------------------------------------------------------------
@pytest.fixture
def installed(tmp_path, csr_home):
    """A profile with the plug-in installed for this interpreter and one random user style 'tstyle'."""
    from csr_cli.gimp import install
    from csr_core.registry import Registry

    Registry().save_style("tstyle", lively_model().state_dict(), {"description": "random test style", "cond_size": 64})
    (tmp_path / "profile").mkdir()
    return install(tmp_path / "profile", device="cpu")


def test_worker_subprocess_matches_csr_retouch(installed, rng):
    from csr_core.pipeline import retouch

    u8 = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
    layer = np.concatenate([u8.astype(np.float32) / 255, np.ones((30, 40, 1), np.float32)], axis=2)
    with bridge.Worker(str(installed)) as w:
        names, default, why = bridge.list_styles(w)
        assert why is None and "tstyle" in names
        reply, data = w.ask("retouch", layer.tobytes(), width=40, height=30, channels=4, style="tstyle",
                            strength=1.0, region=[4, 5, 20, 10])
        with pytest.raises(BridgeError, match="unknown style 'nope'"):
            w.ask("retouch", layer.tobytes(), width=40, height=30, channels=4, style="nope", strength=1.0)
        _, again = w.ask("retouch", layer.tobytes(), width=40, height=30, channels=4, style="tstyle",
                         strength=1.0, region=[4, 5, 20, 10])  # the session survives a failed request
    got = np.rint(np.frombuffer(data, np.float32).reshape(10, 20, 4)[..., :3] * 255)
    want = retouch(u8, "tstyle", 1.0)[5:15, 4:24]
    assert np.abs(got - want).max() <= 1 and again == data


def test_style_mix_from_the_plugin_is_csr_retouchs_mix(installed, rng):
    """Mix with + Mix amount travel as they are; the worker makes the spec --style takes with csr's one mix
    function, and says which spec it used."""
    from csr_core.pipeline import retouch

    u8 = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
    layer = dict(width=40, height=30, channels=3, dtype="u8", strength=1.0)
    with bridge.Worker(str(installed)) as w:
        reply, _ = w.ask("retouch", check=True, style="C", mix_with="auto", mix_amount=0.3, **layer)
        assert reply["style"] == "C:0.7,auto:0.3"
        reply, data = w.ask("retouch", u8.tobytes(), style="C", mix_with="auto", mix_amount=0.3, **layer)
        assert reply["style"] == "C:0.7,auto:0.3"
        assert w.ask("retouch", check=True, style="C", mix_with="auto", mix_amount=0, **layer)[0]["style"] == "C"
        assert w.ask("retouch", check=True, style="C", mix_with="", mix_amount=0.5, **layer)[0]["style"] == "C"
        assert w.ask("retouch", check=True, style="C", mix_with="auto", mix_amount=1, **layer)[0]["style"] == "auto"
        with pytest.raises(BridgeError, match="^unknown style 'nope'"):
            w.ask("retouch", check=True, style="C", mix_with="nope", mix_amount=0.3, **layer)
    got = np.frombuffer(data, np.uint8).reshape(30, 40, 3)
    np.testing.assert_array_equal(got, retouch(u8, "C:0.7,auto:0.3"))
    assert np.abs(got.astype(int) - retouch(u8, "C")).max() > 2


def test_worker_serves_a_protocol_2_plugin_its_mix(installed, rng):
    """A plug-in installed before mixes travelled as fields sends the mix in ``style``: still served."""
    from csr_core.pipeline import retouch

    u8 = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
    header = dict(op="retouch", protocol=2, width=40, height=30, channels=3, dtype="u8", style="C:0.7,auto:0.3",
                  strength=1.0)
    with bridge.Worker(str(installed)) as w:
        bridge.write_message(w.proc.stdin, header, u8.tobytes())
        reply = bridge.read_header(w.proc.stdout)
        data = bridge.read_exact(w.proc.stdout, reply["nbytes"])
    assert reply["ok"] and reply["style"] == "C:0.7,auto:0.3"
    np.testing.assert_array_equal(np.frombuffer(data, np.uint8).reshape(30, 40, 3), retouch(u8, "C:0.7,auto:0.3"))


def test_plugin_offers_a_style_mix():
    """The retouch procedure declares Mix with (the style list) and Mix amount, and sends them as they are:
    neither the plug-in nor the bridge composes a mix."""
    import ast
    from pathlib import Path

    here = Path(bridge.__file__).parent
    tree = ast.parse((here / "csr_retouch" / "csr_retouch.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    methods = [c for c in calls if isinstance(c.func, ast.Attribute)]
    declared = {c.args[0].value: c for c in methods if c.func.attr.startswith("add_") and c.args
                and isinstance(c.args[0], ast.Constant)}
    assert declared["mix-with"].func.attr == "add_choice_argument"
    amount = declared["mix-amount"]
    assert amount.func.attr == "add_double_argument" and [a.value for a in amount.args[3:6]] == [0.0, 1.0, 0.0]
    sent = [{k.arg for k in c.keywords} for c in calls if isinstance(c.func, ast.Name) and c.func.id == "dict"]
    assert [keys for keys in sent if {"style", "mix_with", "mix_amount"} <= keys]
    assert not hasattr(bridge, "mix_spec") and "mix_spec" not in {c.func.attr for c in methods}


def test_worker_setup_errors(installed, tmp_path):
    empty = tmp_path / "nowhere"
    empty.mkdir()
    with pytest.raises(BridgeError, match="csr gimp install"):
        bridge.Worker(str(empty))
    with pytest.raises(BridgeError, match="is missing") as err:
        bridge.Worker(str(installed), environ=dict(os.environ, **{bridge.ENV_PYTHON: str(tmp_path / "py")}))
    # GIMP shows this: its advice installs into this GIMP's profile, a Flatpak one say, not the default one
    assert str(err.value).endswith(f"""run 'csr gimp install --profile "{installed.parents[1]}"' again""")
    assert bridge.list_styles(str(empty)) [0] == ["auto"]  # the dialog's fallback
    fake = tmp_path / "fakepy"
    fake.write_text("#!/bin/sh\necho 'csr: error: cannot import csr_core here' >&2\nexit 1\n")
    fake.chmod(0o755)
    with bridge.Worker(str(installed), environ=dict(os.environ, **{bridge.ENV_PYTHON: str(fake)})) as w:
        with pytest.raises(BridgeError, match="^cannot import csr_core here$"):
            w.ask("styles")


def test_worker_killed_is_reported(installed):
    with bridge.Worker(str(installed)) as w:
        w.proc.kill()
        w.proc.wait()
        with pytest.raises(BridgeError, match="signal 9"):
            w.ask("styles")


def _gone(pid: int) -> bool:
    """The process has ended (a zombie no one has reaped yet counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_stops_when_gimp_kills_the_plugin(installed, tmp_path):
    """GIMP's Cancel (and quitting GIMP) kills the plug-in outright: its worker stops with it, so a style
    being taught is not saved after the user cancelled, and no orphan keeps computing."""
    import signal
    import subprocess
    import textwrap
    import time

    from csr_core.registry import Registry

    plugin = tmp_path / "plugin.py"  # the plug-in's side, as GIMP runs it: bridge.py on its own
    plugin.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.dirname(bridge.__file__)!r})
        import bridge
        w = bridge.Worker({str(installed)!r})
        layers = bytes(2 * 40 * 48 * 3 * 4)
        slow = dict(steps=10**6, patience=10**6, pixels=256, views=1, folds=2, val_pixels=256)
        bridge.write_message(w.proc.stdin, bridge.request("teach", width=48, height=40, channels=3, dtype="f32",
                                                         name="cancelled", config=slow), layers)
        print(w.proc.pid, flush=True)
        w.proc.stdout.read()
    """))
    proc = subprocess.Popen([sys.executable, str(plugin)], stdout=subprocess.PIPE, cwd=tmp_path)
    pid = int(proc.stdout.readline())
    time.sleep(3)  # the worker is teaching now
    assert not _gone(pid)
    proc.send_signal(signal.SIGKILL)  # GIMP's Cancel: gimp_plug_in_close(plug_in, kill_it=TRUE)
    proc.wait()
    try:
        for _ in range(300):
            if _gone(pid):
                break
            time.sleep(0.1)
        assert _gone(pid), "the worker kept teaching after the plug-in was killed"
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
    assert "cancelled" not in Registry().names()


def test_worker_refuses_a_huge_layer_before_reading_it(installed, tmp_path):
    """GIMP makes 30000x30000 layers: the worker refuses one over CSR_MAX_PIXELS as csr retouch refuses such a
    photo, with one line, before allocating its pixels (14 GB as float RGBA; the worker runs under 2 GB here)."""
    import hostile

    cmd, env = bridge.worker_command(str(installed))
    request = tmp_path / "request"
    with open(request, "wb") as fh:  # the header, and the first MB of the pixels the plug-in would send
        bridge.write_message(fh, bridge.request("retouch", width=30000, height=30000, channels=4, dtype="f32",
                                                style="auto", strength=1.0), bytes(1 << 20))
    capped = hostile.run_capped(cmd, mem_mb=2048, cpu_s=60, wall_s=120, cwd=installed, env=env, stdin=request)
    assert not capped.hit_cap and capped.returncode == 1, capped.stderr[-1500:]
    reply = json.loads(capped.stdout.splitlines()[0])
    message = ("the layer is too large: 30000x30000 (900 MP) exceeds csr's limit of 200 MP; scale or crop it first, "
               "or start GIMP with CSR_MAX_PIXELS set higher")
    assert reply == {"ok": False, "error": message}
    assert bridge.error_line(capped.stderr.encode(), 1) == message


def test_worker_checks_size_and_style_before_the_pixels(toy_worker, monkeypatch, rng):
    """A check request (no pixels) says what the real one would refuse: the plug-in reads no layer it cannot
    send. The memory budget is csr retouch's: BYTES_PER_PIXEL per allowed pixel."""
    from csr_core import image_io

    monkeypatch.setattr(image_io, "DEFAULT_MAX_PIXELS", 1000)
    small = _req(width=20, height=10, channels=3, dtype="u8", region=None, check=True)
    out = io.BytesIO()
    worker.serve(_session((_req(width=40, height=30, check=True), b""),           # 1200 pixels
                          (_req(width=20, height=25, region=None, check=True), b""),  # 500 float RGBA: 22 kB
                          (dict(small, style="auto:0.7,nope:0.3"), b""), (dict(small, strength=3), b""),
                          (small, b""), (dict(small, check=False, protocol=1), bytes(600)),  # 1: no checks
                          (_req("teach", width=20, height=12, channels=3, name="x", check=True), b"")), out)
    (big, _), (heavy, _), (mix, _), (strong, _), (ok, _), (done, data), (teach, _) = _replies(out)
    assert big == {"ok": False, "nbytes": 0, "error": "the layer is too large: 40x30 (0.0012 MP) exceeds csr's "
                   "limit of 0.001 MP; scale or crop it first, or start GIMP with CSR_MAX_PIXELS set higher"}
    assert heavy["error"] == ("the layer is too large: 20x25 needs 0.022 MB, more than csr's limit of 0.012 MB; "
                              "scale or crop it first, or start GIMP with CSR_MAX_PIXELS set higher")
    assert not mix["ok"] and "unknown style 'nope'" in mix["error"]
    assert not strong["ok"] and "strength must be between 0 and 2" in strong["error"]
    assert ok == {"ok": True, "nbytes": 0, "style": "auto"} and done["ok"] and len(data) == 600
    assert teach["error"] == ("the layers are too large: 20x12 needs 0.013 MB, more than csr's limit of 0.012 MB; "
                              "scale or crop them first, or start GIMP with CSR_MAX_PIXELS set higher"), teach
    with pytest.raises(BridgeError, match="^the layer is too large: 40x30 "):  # sent anyway: the session ends unread
        worker.serve(_session((_req(width=40, height=30), bytes(40 * 30 * 16))), io.BytesIO())


def test_worker_memory_estimate(toy_worker, rng):
    """What check_size charges a retouch: the layer as sent plus the region's colours and result."""
    req = bridge.check_request(_req(width=40, height=30, channels=4, region=[0, 0, 10, 5]))
    assert worker.working_bytes(req) == 40 * 30 * 16 + 10 * 5 * 7 * 4
    req3 = bridge.check_request(_req(width=40, height=30, channels=3, dtype="u16", region=None))
    assert worker.working_bytes(req3) == 40 * 30 * 6 * 2


def test_worker_env_is_cleaned(installed):
    cmd, env = bridge.worker_command(str(installed), dict(PYTHONHOME="/gimp", LD_LIBRARY_PATH="/x", KEEP="1"))
    assert cmd == [sys.executable, "-m", "csr_plugins.gimp.worker"]
    assert "PYTHONHOME" not in env and "LD_LIBRARY_PATH" not in env and env["KEEP"] == "1"
    assert env["CSR_GIMP_DEVICE"] == "cpu"


# -- csr gimp ----------------------------------------------------------------------------------
def test_cli_install_doctor_uninstall(tmp_path, monkeypatch):
    from csr_cli.main import cli

    monkeypatch.setenv("GIMP3_DIRECTORY", str(tmp_path / "gimp3"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no gimp binary: doctor only warns
    runner = CliRunner()

    def missing(profile):
        return f"profile folder {profile} does not exist (start GIMP 3 once, or pass the right --profile)"

    res = runner.invoke(cli, ["gimp", "doctor"])
    assert res.exit_code == 1 and f"FAIL  {missing(tmp_path / 'gimp3')}" in res.output
    assert "csr gimp install" in res.output
    for args, profile in (([], tmp_path / "gimp3"), (["--profile", str(tmp_path / "typo")], tmp_path / "typo")):
        res = runner.invoke(cli, ["gimp", "install", "--device", "cpu", *args])  # never a folder GIMP did not make
        assert res.exit_code == 1 and res.output == f"csr: error: {missing(profile)}\n" and not profile.exists()
    (tmp_path / "gimp3").mkdir()  # GIMP 3 has run once
    res = runner.invoke(cli, ["gimp", "install", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    dest = tmp_path / "gimp3" / "plug-ins" / "csr_retouch"
    script = dest / "csr_retouch.py"
    assert os.access(script, os.X_OK) and script.read_text().startswith("#!/usr/bin/env python3")
    cfg = json.loads((dest / "csr_retouch.json").read_text())
    assert cfg["python"] == sys.executable and cfg["device"] == "cpu" and (dest / "bridge.py").is_file()
    res = runner.invoke(cli, ["gimp", "doctor"])
    assert res.exit_code == 0, res.output
    assert "imports csr_core" in res.output and "no GIMP 3 found" in res.output
    script.chmod(0o644)
    res = runner.invoke(cli, ["gimp", "doctor"])
    assert res.exit_code == 1 and "not executable" in res.output
    assert runner.invoke(cli, ["gimp", "uninstall"]).exit_code == 0 and not dest.exists()
    assert "not installed" in runner.invoke(cli, ["gimp", "uninstall"]).output


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs a venv to stand for a user-site install")
def test_install_from_a_user_site_install(tmp_path):
    """csr installed with `pip install --user`: the worker, started by GIMP as the same user, imports it too."""
    import site
    import subprocess

    base = getattr(sys, "_base_executable", "") or os.path.join(sys.base_prefix, "bin", "python3")
    env = dict(os.environ, PYTHONUSERBASE=str(tmp_path / "userbase"), HOME=str(tmp_path))
    user_site = subprocess.run([base, "-c", "import site; print(site.getusersitepackages())"], env=env,
                               capture_output=True, text=True, check=True).stdout.strip()
    os.makedirs(user_site)
    with open(os.path.join(user_site, "csr.pth"), "w") as fh:  # csr and its dependencies, from the user site
        fh.write(f"import site; site.addsitedir({site.getsitepackages()[0]!r})\n")
    (tmp_path / "profile").mkdir()
    res = subprocess.run([base, "-m", "csr_cli.main", "gimp", "install", "--profile", str(tmp_path / "profile")],
                         env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0 and res.stdout.startswith("installed "), res.stderr


def test_doctor_advice_names_the_profile_it_checked(tmp_path, monkeypatch):
    """`csr gimp doctor --profile DIR` advises installing into DIR, not into the default profile."""
    from csr_cli.main import cli

    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no gimp binary
    profile = tmp_path / "Flatpak GIMP"
    profile.mkdir()
    res = CliRunner().invoke(cli, ["gimp", "doctor", "--profile", str(profile)])
    assert res.exit_code == 1 and f"""run 'csr gimp install --profile "{profile}"'""" in res.output, res.output
    monkeypatch.setenv("GIMP3_DIRECTORY", str(profile))
    res = CliRunner().invoke(cli, ["gimp", "doctor"])
    assert "run 'csr gimp install'" in res.output, res.output


def test_install_and_doctor_check_the_device(installed, tmp_path, monkeypatch):
    """A device the worker cannot use fails at `csr gimp install` (nothing written) and in `csr gimp doctor`,
    not at every retouch in GIMP after an install that said all is well."""
    from csr_cli.gimp import diagnose, install
    from csr_core.inference import resolve_device

    unavailable = next((d for d in ("cuda", "mps") if _unavailable(resolve_device, d)), None)
    if unavailable is None:
        pytest.skip("this machine has both CUDA and MPS")
    (tmp_path / "fresh").mkdir()
    with pytest.raises(CsrError, match=f"device '{unavailable}'"):
        install(tmp_path / "fresh", device=unavailable)
    assert list((tmp_path / "fresh").iterdir()) == []
    monkeypatch.setenv("PATH", str(tmp_path))  # no gimp binary: doctor only warns about it
    assert not [line for level, line in diagnose(installed.parents[1]) if level == "FAIL"]
    cfg = installed / "csr_retouch.json"
    cfg.write_text(json.dumps(dict(json.loads(cfg.read_text()), device=unavailable)))  # the device went away
    failed = [line for level, line in diagnose(installed.parents[1]) if level == "FAIL"]
    assert len(failed) == 1 and failed[0].startswith(f"the GIMP plug-in cannot retouch: device '{unavailable}'")


def _unavailable(resolve_device, device: str) -> bool:
    try:
        resolve_device(device)
    except CsrError:
        return True
    return False


def test_doctor_knows_the_flatpak_profile_however_it_is_written(tmp_path, monkeypatch):
    """--profile naming the Flatpak profile by a relative path or a link is that profile: no warning about it."""
    from csr_cli.gimp import diagnose

    monkeypatch.setenv("HOME", str(tmp_path))
    flatpak = tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0"
    flatpak.mkdir(parents=True)
    (tmp_path / "gimp-profile").symlink_to(flatpak)
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    for written in (Path(".var/app/org.gimp.GIMP/config/GIMP/3.0"), tmp_path / "gimp-profile"):
        assert not [line for _, line in diagnose(written) if "Flatpak" in line], written
    assert [line for _, line in diagnose(tmp_path / "other") if "a Flatpak GIMP profile exists" in line]


def _files(root: Path, *names: str, script: str = "") -> list[Path]:
    """Make each file ``root/NAME`` (executable, running ``script``); their paths."""
    paths = [root / name for name in names]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\n{script}\n")
        path.chmod(0o755)
    return paths


def test_gimp_lookup_on_macos(tmp_path):
    """macOS: the GIMP 3 app bundle in /Applications, then ~/Applications (GIMP.app first), not on the PATH."""
    from csr_cli.gimp import gimp_candidates

    root, home = tmp_path / "root", tmp_path / "home"
    want = _files(root, "Applications/GIMP.app/Contents/MacOS/gimp")
    want += _files(root, "Applications/GIMP-3.0.app/Contents/MacOS/gimp-3.0")
    want += _files(home, "Applications/GIMP.app/Contents/MacOS/gimp-3.2")
    _files(root, "Applications/GIMP.app/Contents/MacOS/gimp-console-3.0", "Applications/Other.app/Contents/MacOS/gimp")
    env = {"HOME": str(home), "PATH": str(tmp_path / "bin")}
    assert gimp_candidates("darwin", env, root) == want
    assert gimp_candidates("linux", env, root) == [] and gimp_candidates("win32", env, root) == []


def test_gimp_lookup_on_windows(tmp_path):
    """Windows: bin of the 'GIMP 3' folder of an install for all users (%ProgramFiles%) or for one
    (%LOCALAPPDATA%\\Programs), the console program first (it prints --version where a window program does not)."""
    from csr_cli.gimp import gimp_candidates

    pf, local = tmp_path / "Program Files", tmp_path / "AppData" / "Local"
    want = _files(pf, "GIMP 3/bin/gimp-console-3.exe")
    _files(pf, "GIMP 3/bin/gimp-3.exe", "GIMP 3/bin/gimp-3.0.exe", "GIMP 2/bin/gimp-2.10.exe")
    want += _files(local, "Programs/GIMP 3/bin/gimp-3.2.exe")
    env = {"ProgramFiles": str(pf), "LocalAppData": str(local), "PATH": str(tmp_path / "bin")}  # any case
    assert gimp_candidates("win32", env, tmp_path) == want
    assert gimp_candidates("win32", {"PATH": str(tmp_path / "bin"), "USERPROFILE": str(tmp_path)}, tmp_path) == []


def test_gimp_lookup_on_linux(tmp_path):
    """Linux: the PATH first, then the Flatpak's launcher (a per-user, then the system installation) and the Snap."""
    from csr_cli.gimp import gimp_candidates

    root, home, bin_dir = tmp_path / "root", tmp_path / "home", tmp_path / "bin"
    want = _files(bin_dir, "gimp-3")
    for installation in (home / ".local/share/flatpak", root / "var/lib/flatpak"):
        (installation / "app/org.gimp.GIMP").mkdir(parents=True)
        want += _files(installation, "exports/bin/org.gimp.GIMP")
    want += _files(root, "snap/bin/gimp")
    (root / "var/lib/flatpak/app/org.gimp.GIMP").rename(root / "var/lib/flatpak/app/org.gimp.GIMP.gone")
    env = {"HOME": str(home), "PATH": str(bin_dir)}
    assert gimp_candidates("linux", env, root) == [want[0], want[1], want[3]]  # an uninstalled app's launcher: not
    env["XDG_DATA_HOME"] = str(tmp_path / "elsewhere")
    assert gimp_candidates("linux", env, root) == [want[0], want[3]]
    assert gimp_candidates("darwin", env, root) == [want[0]]


def test_gimp_version_takes_the_first_gimp_3(tmp_path):
    """The first candidate that says it is GIMP 3 is the GIMP found (the Flatpak here); GIMP 2.10 is named in the
    warning when there is no GIMP 3."""
    from csr_cli.gimp import gimp_version, is_flatpak

    root, home, bin_dir = tmp_path / "root", tmp_path / "home", tmp_path / "bin"
    _files(bin_dir, "gimp", script="echo 'GNU Image Manipulation Program version 2.10.38'")
    env = {"HOME": str(home), "PATH": str(bin_dir)}
    path, version = gimp_version("linux", env, root)
    assert path is None and version == f"{bin_dir / 'gimp'}: GNU Image Manipulation Program version 2.10.38"
    (home / ".local/share/flatpak/app/org.gimp.GIMP").mkdir(parents=True)
    launcher, = _files(home / ".local/share/flatpak", "exports/bin/org.gimp.GIMP",
                       script="echo 'GNU Image Manipulation Program version 3.0.4'")
    path, version = gimp_version("linux", env, root)
    assert (path, version) == (str(launcher), "GNU Image Manipulation Program version 3.0.4") and is_flatpak(path)
    assert not is_flatpak(str(bin_dir / "gimp")) and not is_flatpak(None)


def test_gimp_lookup_survives_odd_programs_and_environments(tmp_path, monkeypatch):
    """A 'gimp' that prints binary garbage is named in one printable line (it stopped csr gimp doctor with a
    UnicodeDecodeError); names that link to one program ask it once (a hung one costs a minute each); a relative
    XDG_DATA_HOME is ignored, as the XDG spec says, not looked up from the current folder."""
    from csr_cli import gimp

    root, home, bin_dir = tmp_path / "root", tmp_path / "home", tmp_path / "bin"
    garbage, = _files(bin_dir, "gimp", script="printf 'GIMP\\377\\376\\033[2J version 2.10\\nsecond line\\n'")
    (bin_dir / "gimp-3").symlink_to(garbage)
    env = {"HOME": str(home), "PATH": str(bin_dir)}
    assert gimp.gimp_candidates("linux", env, root) == [bin_dir / "gimp-3"]
    path, version = gimp.gimp_version("linux", env, root)
    assert path is None and version == f"{bin_dir / 'gimp-3'}: GIMP\ufffd\ufffd?[2J version 2.10"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel/flatpak/app/org.gimp.GIMP").mkdir(parents=True)
    _files(tmp_path / "rel/flatpak", "exports/bin/org.gimp.GIMP")
    assert gimp.gimp_candidates("linux", dict(env, XDG_DATA_HOME="rel"), root) == [bin_dir / "gimp-3"]


def test_install_and_doctor_advise_the_flatpak_profile(installed, tmp_path, monkeypatch):
    """When the GIMP found is the Flatpak, install and doctor name its profile folder and what its sandbox means;
    installing into that folder needs no --profile advice."""
    from csr_cli import gimp
    from csr_cli.main import cli

    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    launcher = str(home / ".local/share/flatpak/exports/bin/org.gimp.GIMP")
    monkeypatch.setattr(gimp, "gimp_version", lambda: (launcher, "GNU Image Manipulation Program version 3.0.4"))
    flatpak = home / ".var/app/org.gimp.GIMP/config/GIMP/3.0"
    advice = f"""the GIMP 3 found is a Flatpak, whose profile folder is {flatpak}: install there with 'csr gimp """ \
             f"""install --profile "{flatpak}"'"""
    runner = CliRunner()
    res = runner.invoke(cli, ["gimp", "install", "--device", "cpu"])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and advice in res.output, res.output
    res = runner.invoke(cli, ["gimp", "doctor"])
    assert f"warn  {advice}\n" in res.output and f"warn  {gimp.FLATPAK_SANDBOX}\n" in res.output, res.output
    flatpak.mkdir(parents=True)
    res = runner.invoke(cli, ["gimp", "install", "--device", "cpu", "--profile", str(flatpak)])
    assert res.exit_code == 0 and "profile folder is" not in res.output, res.output
    assert f"csr: warning: {gimp.FLATPAK_SANDBOX}\n" in res.output
    lines = [line for _, line in gimp.diagnose(flatpak)]
    assert gimp.FLATPAK_SANDBOX in lines and not [line for line in lines if "Flatpak, whose" in line]


def test_default_profile(monkeypatch, tmp_path):
    from csr_cli.gimp import default_profile

    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    if sys.platform.startswith("linux"):
        assert default_profile() == tmp_path / "GIMP" / "3.0"
    monkeypatch.setenv("GIMP3_DIRECTORY", "/x/y")
    assert str(default_profile()) == "/x/y"


@pytest.mark.parametrize("platform, folder", [("linux", "home/.config/GIMP/3.0"),
                                              ("darwin", "home/Library/Application Support/GIMP/3.0"),
                                              ("win32", "roaming/GIMP/3.0")])
def test_profile_help_names_this_systems_default(monkeypatch, tmp_path, platform, folder):
    """`csr gimp install/doctor/uninstall --help` name the profile folder GIMP uses where csr runs."""
    from csr_cli.main import cli

    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "roaming"))
    for name in ("XDG_CONFIG_HOME", "GIMP3_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    for command in ("install", "doctor", "uninstall"):
        res = CliRunner().invoke(cli, ["gimp", command, "--help"])
        want = f"[default: GIMP3_DIRECTORY if set, else {tmp_path / folder}]"
        assert res.exit_code == 0 and "".join(want.split()) in "".join(res.output.split()), res.output  # wrapped


def test_worker_teach_makes_a_user_style(toy_worker, rng):
    """'Teach style from layers': one before/after layer pair -> a condition-only user style."""
    before = _layer(rng, 40, 48, 3)
    after = np.clip(before * 0.8 + 0.15, 0, 1).astype(np.float32)
    req = bridge.check_request(bridge.request("teach", width=48, height=40, channels=3, name="warm",
                                             config=dict(steps=2, pixels=256, views=1, folds=2, val_pixels=256)))
    out = io.BytesIO()
    payload = [before.tobytes(), after.tobytes()]  # as the plug-in sends them: the layers never joined
    worker.serve(_session((dict(req, name=" warm "), payload), (dict(req, name="bad name"), payload),
                          (dict(req, name="Warm"), payload)), out)
    (ok, _), (bad, _), (taken, _) = _replies(out)
    assert ok["ok"] and ok["style"] == "warm" and ok["base"] == "auto", ok  # the name as typed, spaces dropped
    style = toy_worker.get("warm")
    assert style.kind == "condition" and not style.builtin
    assert not bad["ok"] and "invalid style name" in bad["error"]
    # a taken name: what a GIMP user can do about it (GIMP's dialog has no --overwrite)
    assert not taken["ok"] and taken["error"] == ("a style named 'warm' already exists; choose another name, or "
                                                  "remove that style first: csr styles remove warm"), taken


def test_worker_teach_without_pytorch_names_the_python_to_install_into(toy_worker, rng, monkeypatch):
    """GIMP does not run in the shell's environment: the hint names the very Python the plug-in uses."""
    from csr_core import errors

    monkeypatch.setitem(errors.EXTRAS, "train", ("no_such_torch_module", "PyTorch"))
    layer = _layer(rng, 8, 8, 3)
    req = bridge.check_request(bridge.request("teach", width=8, height=8, channels=3, name="warm"))
    out = io.BytesIO()
    worker.serve(_session((req, layer.tobytes() * 2)), out)
    ((reply, _),) = _replies(out)
    assert not reply["ok"] and reply["error"].endswith(f'{sys.executable} -m pip install "csr-retouch[train]"'), reply


def _finished_folder(folder, rng, n: int):
    """``n`` finished photos in the look the teach tests use (x * 0.8 + 0.15) and one unreadable file."""
    from PIL import Image

    folder.mkdir()
    for i in range(n):
        y, x = np.mgrid[0:30, 0:40] / 40
        photo = np.clip(rng.random(3) * 0.5 + 0.3 * np.stack([x, y, x * y], -1), 0, 1) * 0.8 + 0.15
        Image.fromarray((photo * 255).astype(np.uint8)).save(folder / f"f{i}.png")
    (folder / "broken.jpg").write_bytes(b"not a photo")
    return folder


def test_worker_teach_learns_from_finished_photos(toy_worker, rng, tmp_path):
    """The teach request's ``finished`` folder reaches finetune_style: the card counts its readable photos
    and compares with the pair alone; a relative path, a missing folder, one without photos: one line each."""
    before = _layer(rng, 40, 48, 3)
    after = np.clip(before * 0.8 + 0.15, 0, 1).astype(np.float32)
    folder = _finished_folder(tmp_path / "portfolio", rng, 5)
    (tmp_path / "empty").mkdir()
    listing = sorted(p.name for p in folder.iterdir())
    tiny = dict(steps=2, pixels=256, views=1, folds=2, val_pixels=256)
    req = bridge.check_request(bridge.request("teach", width=48, height=40, channels=3, name="mine", config=tiny,
                                             finished=str(folder)))
    payload = before.tobytes() + after.tobytes()
    out = io.BytesIO()
    worker.serve(_session((req, payload), (dict(req, name="rel", finished="portfolio"), payload),
                          (dict(req, name="gone", finished=str(tmp_path / "nope")), payload),
                          (dict(req, name="none", finished=str(tmp_path / "empty")), payload)), out)
    (ok, _), (rel, _), (gone, _), (empty, _) = _replies(out)
    assert ok["ok"] and ok["style"] == "mine" and ok["finished"] == 5 and "5 finished photos" in ok["note"], ok
    card = toy_worker.get("mine").card
    assert card["training"]["data"]["finished"] == 5 and "psnr" in card["scores"]["validation"]["pairs_only"]
    assert not rel["ok"] and "'portfolio': give its full path" in rel["error"]
    assert not gone["ok"] and gone["error"].endswith("nope: not a folder of finished photos")
    assert not empty["ok"] and "no photos found" in empty["error"]
    assert set(toy_worker.names()) & {"rel", "gone", "none"} == set()
    assert sorted(p.name for p in folder.iterdir()) == listing  # the user's folder is only read


def test_plugin_passes_the_finished_folder_to_the_worker():
    """The GIMP-side teach procedure declares the optional folder argument and sends it with the request."""
    import ast
    from pathlib import Path

    tree = ast.parse((Path(bridge.__file__).parent / "csr_retouch" / "csr_retouch.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    declared = {c.args[0].value: c.func.attr for c in calls if c.func.attr.startswith("add_") and c.args
                and isinstance(c.args[0], ast.Constant)}
    assert declared["finished"] == "add_string_argument"
    (run,) = [f for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "teach_run"]
    (args,) = [n.targets[0].id for n in ast.walk(run) if isinstance(n, ast.Assign) and isinstance(n.value, ast.Call)
               and "finished" in {k.arg for k in n.value.keywords}]
    asks = [c for c in ast.walk(run) if isinstance(c, ast.Call) and getattr(c.func, "attr", "") == "ask"]
    assert asks and all(c.args[0].value == "teach" and any(k.arg is None and k.value.id == args for k in c.keywords)
                        for c in asks)  # the check and the request itself: **args


def test_plugin_exact_help_states_the_clis_bound():
    """The dialog's Exact says how far the LUT may be off, as `csr retouch --help` does."""
    import ast
    import re
    from pathlib import Path

    from csr_cli.retouch import command

    tree = ast.parse((Path(bridge.__file__).parent / "csr_retouch" / "csr_retouch.py").read_text())
    (exact,) = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "attr", "").startswith("add_")
                and c.args and getattr(c.args[0], "value", None) == "exact"]
    (cli_help,) = [o.help for o in command.params if o.name == "exact"]
    bound = re.search(r"at most \d+/255", cli_help).group()
    assert bound in exact.args[2].value, exact.args[2].value


def test_install_records_styles_for_the_fallback(installed):
    from csr_cli.gimp import check_worker

    names = check_worker(installed)
    assert bridge.record_styles(str(installed), names) and not bridge.record_styles(str(installed), names)
    assert bridge.load_config(str(installed))["styles"] == names and "tstyle" in names


def test_plugin_side_needs_only_gimps_python():
    """The plug-in and bridge run under GIMP's Python: stdlib + gi, nothing from the project."""
    import ast
    from pathlib import Path

    here = Path(bridge.__file__).parent
    allowed = {"os", "sys", "time", "json", "subprocess", "tempfile", "__future__", "gi", "gi.repository", "bridge"}
    for path in (here / "csr_retouch" / "csr_retouch.py", here / "bridge.py"):
        tree = ast.parse(path.read_text(), str(path))
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert names <= allowed, (path.name, names - allowed)
    assert (here / "csr_retouch" / "csr_retouch.py").read_text().startswith("#!/usr/bin/env python3\n")
