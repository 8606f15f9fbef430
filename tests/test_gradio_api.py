"""The web app through its HTTP API (gradio_client) against a live server on 127.0.0.1."""
from __future__ import annotations

import io
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app extra (gradio) is not installed")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from csr_core.finetune import FinetuneConfig  # noqa: E402
from csr_core.image_io import load_photo  # noqa: E402
from csr_core.pipeline import retouch, retouch_file  # noqa: E402
from gradio_helpers import REPO, running_app, toy_registry  # noqa: E402
from csr_plugins.gradio_app.service import Limits  # noqa: E402
from csr_plugins.gradio_app.teach import Stager  # noqa: E402

SAMPLES = REPO / "samples"
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")
FAST_FINETUNE = FinetuneConfig(steps=12, eval_every=6, patience=1, views=2, max_side=64, pixels=256,
                               val_pixels=512, folds=2)


def rgb(path) -> np.ndarray:
    return load_photo(path).rgb


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a toy registry; yields (client, registry)."""
    reg = toy_registry(tmp_path_factory.mktemp("reg"))
    with running_app(reg, finetune_kwargs=dict(config=FAST_FINETUNE), allow_edits=True) as (_, url):
        yield Client(url, verbose=False, download_files=str(tmp_path_factory.mktemp("dl"))), reg


def test_style_spec_is_csrs_one_mix():
    """The app's style + Second style + weight make their spec with csr's one mix function, as the GIMP
    plug-in's worker does."""
    from csr_core.errors import StyleError
    from csr_core.registry import mix_spec
    from csr_plugins.gradio_app.service import NO_MIX, style_spec

    assert style_spec("C", "auto", 0.3) == mix_spec("C", "auto", 0.3) == "C:0.7,auto:0.3"
    assert style_spec("C", NO_MIX, 0.5) == "C" and style_spec("C", "auto", 1.0) == "auto"
    with pytest.raises(StyleError, match="choose a style"):
        style_spec("", "auto", 0.3)


def test_preview_and_download_match_the_core(server, tmp_path):
    client, reg = server
    src = SAMPLES / "coffee_dark.jpg"
    (before, after), note = client.predict(handle_file(src), "warm", 0.8, "(none)", 0.5, api_name="/preview")
    assert "600×400" in note
    out = client.predict(handle_file(src), "warm", 0.8, "(none)", 0.5, api_name="/render")
    assert Path(out).name == "coffee_dark_retouched.jpg"
    retouch_file(src, tmp_path / "core.jpg", style="warm", strength=0.8, registry=reg)
    assert Path(out).read_bytes() == (tmp_path / "core.jpg").read_bytes()  # the very file the CLI writes
    full, shown = rgb(tmp_path / "core.jpg").astype(int), rgb(after).astype(int)
    assert np.abs(shown - rgb(src).astype(int)).mean() > 5          # the style does something
    assert np.abs(shown - full).mean() < 2                          # ... and the preview shows it
    assert np.array_equal(rgb(before), rgb(src))


def test_a_shown_preview_is_never_rewritten_while_a_browser_fetches_it(server, monkeypatch):
    """Two tabs preview the same photo on a slow disk: the 'before' image the first tab fetches stays whole
    (before: each preview rewrote that shared file in place, and a fetch meanwhile got a truncated image)."""
    import httpx

    client, _ = server
    url, write_bytes, emptied = client.src.rstrip("/"), Path.write_bytes, threading.Event()

    def slow_rewrite(self, data):  # an in-place rewrite leaves the file empty for a moment
        if self.exists():
            self.open("wb").close()
            emptied.set()
            time.sleep(1)
        return write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", slow_rewrite)
    tab = Client(url, verbose=False, download_files=False)
    args = (handle_file(SAMPLES / "coffee_dark.jpg"), "warm", 0.8, "(none)", 0.5)
    before = tab.predict(*args, api_name="/preview")[0][0]
    whole = httpx.get(before["url"]).content
    emptied.clear()
    other = Client(url, verbose=False, download_files=False).submit(*args, api_name="/preview")
    while not (emptied.wait(0.05) or other.done()):  # fetch while a rewrite empties the file, if one does
        pass
    fetched = httpx.get(before["url"]).content
    other.result(timeout=60)
    assert len(whole) > 1000 and fetched == whole


def test_shown_previews_leave_the_disk_after_a_while(tmp_path):
    import os

    from csr_plugins.gradio_app.service import Service

    svc = Service(toy_registry(tmp_path / "reg"), Limits())
    try:
        old = Path(svc.shown(np.zeros((4, 4, 3), np.uint8)))
        os.utime(old, (0, 0))  # last shown long ago
        new = Path(svc.shown(np.ones((4, 4, 3), np.uint8)))
        assert new.exists() and not old.exists()
        assert rgb(new).tolist() == np.ones((4, 4, 3), np.uint8).tolist()
    finally:
        svc.close()


def test_large_photo_previews_downscaled_download_full(server, tmp_path):
    client, reg = server
    y, x = np.mgrid[0:1000, 0:1500]
    img = np.stack([x / 1500, y / 1000, 0.5 + 0.3 * np.sin(x / 50)], -1)
    src = tmp_path / "big.tif"
    import tifffile

    tifffile.imwrite(src, (img * 65535).astype(np.uint16), photometric="rgb")  # 16-bit TIFF
    (_, after), note = client.predict(handle_file(src), "auto", 1.0, "warm", 0.3, api_name="/preview")
    assert rgb(after).shape == (683, 1024, 3) and "1500×1000" in note
    out = client.predict(handle_file(src), "auto", 1.0, "warm", 0.3, api_name="/render")
    got = rgb(out)
    assert got.dtype == np.uint16 and got.shape == (1000, 1500, 3)
    expected = retouch(rgb(src), "auto:0.7,warm:0.3", 1.0, registry=reg)
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1


def test_errors_are_one_line_messages(server, tmp_path):
    client, _ = server
    bad = tmp_path / "bad.png"
    bad.write_bytes(_png_head())  # a PNG header, no image: uploaded, then refused with one line
    with pytest.raises(AppError, match="bad.png: "):
        client.predict(handle_file(bad), "auto", 1.0, "(none)", 0.5, api_name="/preview")
    with pytest.raises(AppError, match="unknown style 'nope'"):
        client.predict(handle_file(SAMPLES / "coffee_dark.jpg"), "nope", 1.0, "(none)", 0.5, api_name="/render")


def _png_head() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8)).save(out, "PNG")
    return out.getvalue()[:60]


def test_styles_table_and_delete(server):
    client, reg = server
    assert [r[:2] for r in client.predict(api_name="/styles")] == [["auto", "built-in"], ["warm", "built-in"]]
    with pytest.raises(AppError, match="built in and cannot be removed"):
        client.predict("auto", "auto", "(none)", "auto", api_name="/delete_style")
    reg.save_style("mine", reg.net("warm").state, {"description": "copy", "cond_size": 64})
    assert "mine" in [r[0] for r in client.predict(api_name="/styles")]  # no restart needed
    msg, *_ = client.predict("mine", "auto", "(none)", "auto", api_name="/delete_style")
    assert "mine" in msg and "mine" not in reg.names()


def _pairs_zip(path: Path, n: int = 5) -> Path:
    """n before/after pairs (after = a warm tint of before) in a zip with a top-level folder."""
    rng = np.random.default_rng(0)
    from PIL import Image

    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            before = (rng.random((1, 1, 3)) * 0.5 + np.linspace(0.1, 0.5, 48)[:, None, None]) * np.ones((48, 64, 3))
            after = np.clip(before * [1.15, 1.0, 0.85] + 0.03, 0, 1)
            for role, img in (("input", before), ("target", after)):
                buf = io.BytesIO()
                Image.fromarray((img * 255).astype(np.uint8)).save(buf, "PNG")
                zf.writestr(f"pairs/p{i}_{role}.png", buf.getvalue())
        zf.writestr("pairs/README.txt", "ignored")
    return path


def test_teach_validates_then_creates_a_style(server, tmp_path):
    client, reg = server
    pairs = _pairs_zip(tmp_path / "pairs.zip")
    for name, why in (("../evil", "invalid style name"), ("Warm", "taken by a built-in style")):
        with pytest.raises(AppError, match=why):
            client.predict([handle_file(pairs)], name, "auto", "auto", "(none)", None, api_name="/teach")
    t = time.monotonic()
    summary, style_dd, *_ = client.predict([handle_file(pairs)], "my_look", "auto", "auto", "(none)", None,
                                           api_name="/teach")
    print(f"teach took {time.monotonic() - t:.1f} s")
    assert "my_look" in summary and "PSNR" in summary
    assert "my_look" in reg.names() and reg.get("my_look").kind == "condition"
    assert "my_look" in [r[0] for r in client.predict(api_name="/styles")]
    client.predict(handle_file(SAMPLES / "astronaut.jpg"), "my_look", 1.0, "(none)", 0.5, api_name="/preview")


def test_limits_refuse_oversize_and_too_many_pixels(tmp_path):
    reg = toy_registry(tmp_path / "reg")
    limits = Limits(max_mb=0.02, max_pixels=100 * 100)
    from PIL import Image

    small_file_big_image = tmp_path / "flat.png"
    Image.new("RGB", (200, 200), (90, 120, 150)).save(small_file_big_image)
    big_file = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 90, 3), dtype=np.uint8)).save(big_file)
    assert big_file.stat().st_size > 0.02 * 2**20
    with running_app(reg, limits=limits) as (_, url):
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        for api in ("/preview", "/render"):
            with pytest.raises(AppError, match=r"200x200 \(0.04 MP\) exceeds the limit of 0.01 MP"):
                client.predict(handle_file(small_file_big_image), "auto", 1.0, "(none)", 0.5, api_name=api)
        with pytest.raises(ValueError, match="exceeds the maximum file size"):  # the client reads the cap
            client.predict(handle_file(big_file), "auto", 1.0, "(none)", 0.5, api_name="/preview")
        import httpx

        files = {"files": ("noise.png", big_file.read_bytes(), "image/png")}
        reply = httpx.post(f"{url}/gradio_api/upload", files=files)  # and the server enforces it
        assert reply.status_code == 413 and "maximum allowed size" in reply.text


def test_teaching_runs_one_at_a_time_and_never_blocks_retouching(tmp_path):
    reg = toy_registry(tmp_path / "reg")
    started, release = threading.Event(), threading.Event()

    def slow_finetune(folder, name, base, registry, on_progress, **_):
        started.set()
        on_progress({"step": 1, "steps": 2, "phase": "fold 1/2"})
        assert release.wait(30)
        return registry.save_style(name, registry.net(base).state, {"cond_size": 64}, base=registry.get(base))

    pairs = _pairs_zip(tmp_path / "pairs.zip")
    with running_app(reg, finetune_kwargs=dict(finetune=slow_finetune), allow_edits=True) as (_, url):
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        first = client.submit([handle_file(pairs)], "one", "auto", "auto", "(none)", None, api_name="/teach")
        assert started.wait(30)
        second = client.submit([handle_file(pairs)], "two", "auto", "auto", "(none)", None, api_name="/teach")
        t = time.monotonic()
        client.predict(handle_file(SAMPLES / "coffee_dark.jpg"), "auto", 1.0, "(none)", 0.5, api_name="/render")
        assert time.monotonic() - t < 20  # retouching went past the running job
        deadline = time.monotonic() + 10
        while second.status().code.name != "IN_QUEUE" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert second.status().code.name == "IN_QUEUE" and second.status().rank == 0  # waits its turn
        release.set()
        assert "one" in first.result(timeout=30)[0] and "two" in second.result(timeout=30)[0]


def test_zip_extraction_is_safe(tmp_path):
    limits = Limits(max_mb=1)
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape_input.png", b"x")
    with pytest.raises(Exception, match="unsafe path"):
        Stager(tmp_path / "a", limits).add(evil)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x_input.png", b"\0" * (3 * 2**20))  # 3 MB of zeros: a few KB zipped
    (tmp_path / "b").mkdir()
    with pytest.raises(Exception, match="the limit is 1 MB"):
        Stager(tmp_path / "b", limits).add(bomb)
    assert not (tmp_path / "escape_input.png").exists()


def test_zips_that_cannot_be_opened_are_one_error(tmp_path):
    """An archive with a password or an unusual compression (Deflate64) is refused with a line that says
    so (before: 'unexpected error (RuntimeError)')."""
    from csr_core.errors import PairsError

    data = _pairs_zip(tmp_path / "plain.zip", n=1).read_bytes()
    locked, odd = bytearray(data), bytearray(data)
    for signature, flags in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        i = data.find(signature)
        while i >= 0:
            locked[i + flags] |= 1  # encrypted
            odd[i + flags + 2:i + flags + 4] = (9).to_bytes(2, "little")  # compression method 9, Deflate64
            i = data.find(signature, i + 4)
    for name, blob, why in (("locked.zip", locked, "protected by a password"), ("odd.zip", odd, "Deflate")):
        (tmp_path / name).write_bytes(blob)
        (tmp_path / name.replace(".", "_")).mkdir()
        with pytest.raises(PairsError, match=f"^{name}: pairs/p0_input.png is .*{why}"):
            Stager(tmp_path / name.replace(".", "_"), Limits()).add(tmp_path / name)


def test_loose_files_are_staged_by_name(tmp_path):
    from csr_core.pairs import discover_pairs

    for name in ("a_before.jpg", "a_after.jpg"):
        (tmp_path / name).write_bytes((SAMPLES / "coffee_dark.jpg").read_bytes())
    stager = Stager(tmp_path / "staged", Limits())
    (tmp_path / "staged").mkdir()
    for name in ("a_before.jpg", "a_after.jpg"):
        stager.add(tmp_path / name)
    stager.check_pixels()
    assert [p.name for p in discover_pairs(stager.folder())[0]] == ["a"]
    with pytest.raises(Exception, match="uploaded twice"):
        stager.add(tmp_path / "a_before.jpg")


def test_cli_without_gradio_prints_a_hint(monkeypatch):
    import sys

    from click.testing import CliRunner

    from csr_cli.main import cli

    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    result = CliRunner().invoke(cli, ["app"])
    assert result.exit_code == 1
    from csr_core.errors import install_command

    assert install_command("app") in result.output and "Traceback" not in result.output


def test_bounded_load_of_concurrent_requests(server, tmp_path):
    """A bounded load test on 127.0.0.1: N concurrent full-resolution renders from separate clients all
    return the core's exact file, and the server's memory stays bounded (requests are queued with a
    concurrency limit, not all decoded at once)."""
    import resource

    _, reg = server
    url = server[0].src
    y, x = np.mgrid[0:1200, 0:1800]
    img = (np.stack([x / 1800, y / 1200, 0.5 + 0.3 * np.sin(x / 40)], -1) * 255).astype(np.uint8)
    src = tmp_path / "load.png"
    from PIL import Image

    Image.fromarray(img).save(src)
    retouch_file(src, tmp_path / "core.png", style="warm", strength=0.9, registry=reg)
    expected = (tmp_path / "core.png").read_bytes()
    n, results, errors = 8, [], []
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; the server runs in this process

    def one(i: int) -> None:
        try:
            client = Client(url, verbose=False, download_files=str(tmp_path / f"dl{i}"))
            results.append(Path(client.predict(handle_file(src), "warm", 0.9, "(none)", 0.5, api_name="/render")))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not errors and len(results) == n, errors
    assert all(p.read_bytes() == expected for p in results)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    # 8 renders of a 2.2 MP photo would need ~8x their working set at once; the queue keeps it to a few.
    print(f"{n} concurrent renders: peak RSS +{grown_mb:.0f} MB, {time.monotonic() - t0:.1f} s")
    assert grown_mb < 400, f"peak RSS grew by {grown_mb:.0f} MB under {n} concurrent requests"
    assert time.monotonic() - t0 < 240


def test_registry_is_read_only_unless_allow_edits(tmp_path):
    """Issue 10 item 14: by default nobody reaching the app can delete or add styles (no endpoint, and
    the service refuses); ``allow_edits=True`` (``csr app --allow-edits``) turns both on."""
    from csr_core.errors import StyleError
    from csr_plugins.gradio_app.teach import Teacher

    reg = toy_registry(tmp_path / "reg")
    reg.save_style("mine", reg.net("warm").state, {"description": "copy", "cond_size": 64})
    with running_app(reg) as (demo, url):
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        endpoints = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
        assert "/styles" in endpoints and "/render" in endpoints
        assert not endpoints & {"/delete_style", "/teach"}, endpoints
        for api, args in (("/delete_style", ("mine", "auto", "(none)", "auto")),
                          ("/teach", ([], "x", "auto", "auto", "(none)", None))):
            with pytest.raises(Exception):
                client.predict(*args, api_name=api)
        with pytest.raises(StyleError, match="--allow-edits"):
            demo.csr["service"].delete("mine")
        with pytest.raises(StyleError, match="--allow-edits"):
            demo.csr["teacher"].run(["x.zip"], "new")
    assert "mine" in reg.names()
    assert Teacher(reg, Limits(), allow_edits=True).allow_edits


def test_csr_app_banner_names_its_own_options(tmp_path):
    """The real 'csr app' prints its URL and '--share', never Gradio's 'set share=True in launch()'."""
    import os
    import signal
    import subprocess
    import sys

    from gradio_helpers import free_port

    port = free_port()
    env = dict(os.environ, CSR_HOME=str(tmp_path), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "-c", "from csr_cli.main import main; main()", "app", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    lines = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any("--share" in ln for ln in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rest, _ = proc.communicate()
    text = "".join(lines) + rest
    assert f"csr app: serving on http://127.0.0.1:{port}" in text, text
    assert "--share adds a public link" in text and "share=True" not in text and "launch()" not in text


def test_stopping_the_app_removes_the_results_it_kept(tmp_path):
    """'csr app' stopped by SIGTERM (kill, a service manager; SIGHUP, a closed terminal, alike) removes the
    full-size results in its temporary folder, as Ctrl-C does (before: the photos stayed in /tmp)."""
    import os
    import signal
    import subprocess
    import sys

    from gradio_helpers import free_port

    port, tmp = free_port(), tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, CSR_HOME=str(tmp_path), TMPDIR=str(tmp), GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen([sys.executable, "-c", "from csr_cli.main import main; main()", "app", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    try:
        assert "serving on" in proc.stdout.readline()
        client = Client(f"http://127.0.0.1:{port}", verbose=False, download_files=str(tmp_path / "dl"))
        client.predict(handle_file(SAMPLES / "coffee_dark.jpg"), "auto", 1.0, "(none)", 0.5, api_name="/render")
        assert list(tmp.glob("csr-app-*/*/coffee_dark_retouched.jpg"))
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert list(tmp.glob("csr-app-*")) == []


def test_sample_photos_are_thumbnails_that_fill_the_upload(tmp_path):
    """The bundled samples are a gallery of pictures (not text buttons); clicking one loads it as the photo."""
    import gradio as gr

    from csr_plugins.gradio_app.app import build_app
    from csr_plugins.gradio_app.service import sample_photos

    samples = sample_photos()
    assert len(samples) >= 3
    demo = build_app(toy_registry(tmp_path / "reg"))
    try:
        comps = {c["props"].get("elem_id"): c for c in demo.config["components"] if c.get("props")}
        gallery, photo = comps["samples"], comps["photo"]
        assert gallery["type"] == "gallery" and gallery["props"]["visible"] is True
        shown = gallery["props"]["value"]
        assert [v["caption"] for v in shown] == [p.stem for p in samples]
        assert all(v["image"]["mime_type"] == "image/jpeg" for v in shown)
        assert not any(c["type"] == "dataset" for c in demo.config["components"])  # no text-button examples
        (dep,) = [d for d in demo.config["dependencies"] if [gallery["id"], "select"] in map(list, d["targets"])]
        assert dep["outputs"] == [photo["id"]]
        fn = demo.fns[dep["id"]].fn
        assert fn(gr.SelectData(None, {"index": 1, "value": None})) == str(samples[1])
    finally:
        demo.csr["service"].close()


# -- finished photos (issue 30): a second upload, three pairs enough ----------------------------
def _finished_zip(path: Path, n: int, broken: int = 0) -> Path:
    """n finished photos in the pairs' look (``_pairs_zip``'s warm tint), ``broken`` unreadable .jpg files
    and a README, in a zip."""
    rng = np.random.default_rng(1)
    from PIL import Image

    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            y, x = np.mgrid[0:40, 0:56] / 56
            before = np.clip(rng.random(3) * 0.5 + 0.1 + 0.3 * np.stack([x, y, x * y], -1), 0, 1)
            buf = io.BytesIO()
            Image.fromarray((np.clip(before * [1.15, 1.0, 0.85] + 0.03, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
            zf.writestr(f"portfolio/f{i}.png", buf.getvalue())
        for i in range(broken):
            zf.writestr(f"portfolio/broken{i}.jpg", b"\xff\xd8\xff\xe0 not really a JPEG")
        zf.writestr("portfolio/README.txt", "ignored")
    return path


def test_finished_photos_of_the_same_name_are_all_kept(tmp_path):
    """Two albums with their own IMG_0001.jpg (loose or zipped) are different finished photos: all are
    learnt from (before: 'uploaded twice' / 'is there twice' refused the upload)."""
    from csr_plugins.gradio_app.teach import Teacher

    reg = toy_registry(tmp_path / "reg")
    for album in ("one", "two"):
        _finished_zip(tmp_path / f"{album}.zip", 1)
        (tmp_path / album).mkdir()
        (tmp_path / album / "f0.png").write_bytes(zipfile.ZipFile(tmp_path / f"{album}.zip").read("portfolio/f0.png"))
    seen = []

    def finetune(folder, name, base, registry, on_progress, finished, **_):
        seen.extend(sorted(p.relative_to(finished).as_posix() for p in finished.rglob("*.png")))
        return registry.save_style(name, registry.net(base).state, {"cond_size": 64}, base=registry.get(base))

    teacher = Teacher(reg, Limits(), finetune=finetune, allow_edits=True)
    teacher.run([str(_pairs_zip(tmp_path / "pairs.zip", 3))], "albums", finished=[
        str(tmp_path / "one" / "f0.png"), str(tmp_path / "two" / "f0.png"), str(tmp_path / "one.zip"),
        str(tmp_path / "two.zip")])
    assert seen == ["f0 (2).png", "f0.png", "portfolio/f0 (2).png", "portfolio/f0.png"]
    with pytest.raises(Exception, match="uploaded twice"):  # pairs: which of the two would be the pair?
        teacher.run([str(tmp_path / "one" / "f0.png"), str(tmp_path / "two" / "f0.png")], "twice")


def test_teach_with_finished_photos_from_three_pairs(server, tmp_path):
    """3 pairs + a zip of finished photos: the style is made, its card counts the readable finished photos,
    and the summary compares it with the same pairs alone (an unreadable photo is skipped and named)."""
    client, reg = server
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/teach"]["parameters"]
    assert [p["parameter_name"] for p in params][-1] == "finished"
    pairs, finished = _pairs_zip(tmp_path / "pairs.zip", 3), _finished_zip(tmp_path / "finished.zip", 6, broken=1)
    with pytest.raises(AppError, match="at least 5 before/after pairs"):  # 3 pairs alone are not enough
        client.predict([handle_file(pairs)], "three", "auto", "auto", "(none)", None, api_name="/teach")
    summary, *_ = client.predict([handle_file(pairs)], "with_finished", "auto", "auto", "(none)", None,
                                 [handle_file(finished)], api_name="/teach")
    card = reg.get("with_finished").card
    assert card["training"]["data"]["pairs"] == 3 and card["training"]["data"]["finished"] == 6
    only = card["scores"]["validation"]["pairs_only"]["psnr"]
    assert f"without the 6 finished photos: {only:.2f} dB" in summary, summary
    assert "Skipped 1 finished photo(s) that could not be read (the first: broken0.jpg: " in summary, summary
    assert "/tmp" not in summary and "csr-teach" not in summary


@pytest.mark.parametrize("content, message", [
    (dict(broken=2), r"finished photos: no readable photo in the upload \(2 skipped; the first: broken0.jpg: "),
    (dict(), "finished photos: the upload holds no photo; upload finished photos in your look"),
])
def test_finished_upload_with_nothing_readable_is_one_error(server, tmp_path, content, message):
    client, reg = server
    pairs, finished = _pairs_zip(tmp_path / "pairs.zip", 3), _finished_zip(tmp_path / "finished.zip", 0, **content)
    with pytest.raises(AppError, match=message) as err:
        client.predict([handle_file(pairs)], "unread", "auto", "auto", "(none)", None, [handle_file(finished)],
                       api_name="/teach")
    assert "\n" not in str(err.value) and "/tmp" not in str(err.value)
    assert "unread" not in reg.names()


def test_upload_caps_apply_to_the_finished_photos(tmp_path):
    """The teaching upload's caps (files, bytes per file, pixels, bytes unzipped per job: shared with the
    pairs) bind the finished-photo upload too; the live app says so in one line before any fine-tuning."""
    from PIL import Image

    from csr_core.errors import CsrError
    from csr_plugins.gradio_app.teach import Teacher

    reg = toy_registry(tmp_path / "reg")
    limits = Limits(max_files=4, max_mb=1, max_pixels=64 * 64)
    pairs = _pairs_zip(tmp_path / "pairs.zip", 2)  # 4 files of 64 x 48: within every cap
    with running_app(reg, limits=limits, finetune_kwargs=dict(config=FAST_FINETUNE), allow_edits=True) as (_, url):
        client = Client(url, verbose=False, download_files=str(tmp_path / "dl"))
        with pytest.raises(AppError, match="finished photos: many.zip: more than 4 files in one upload"):
            client.predict([handle_file(pairs)], "x", "auto", "auto", "(none)", None,
                           [handle_file(_finished_zip(tmp_path / "many.zip", 5))], api_name="/teach")

    def never(*_, **__):
        raise AssertionError("fine-tuning must not start")

    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("f.png", b"\0" * (3 * 2**20))
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    big = tmp_path / "big.png"
    Image.new("RGB", (70, 70), (90, 120, 150)).save(big)
    one = _finished_zip(tmp_path / "one.zip", 1)
    used, extra = (sum(i.file_size for i in zipfile.ZipFile(z).infolist() if i.filename.endswith(".png"))
                   for z in (pairs, one))
    shared = Limits(max_files=4, max_mb=1, max_pixels=64 * 64, max_unzipped_mb=(used + extra // 2) / 2**20)
    assert extra < used + extra // 2 < used + extra  # the finished zip fits alone, not after the pairs
    for lim, finished, message in (
            (limits, bomb, r"finished photos: bomb.zip: f.png unpacks to 3 MB; the limit is 1 MB per file"),
            (limits, notes, "finished photos: notes.txt: not an image or a .zip; expected finished photos"),
            (limits, big, r"no readable photo .*big.png: image too large: 70x70 \(0.0049 MP\) exceeds the limit"
                          r" of 0.004096 MP\)$"),
            (shared, one, r"finished photos: one.zip: archive unpacks to more than the allowed size")):
        with pytest.raises(CsrError, match=message):
            Teacher(reg, lim, finetune=never, allow_edits=True).run([str(pairs)], "x", finished=[str(finished)])
    assert "x" not in reg.names()


def test_sample_photos_are_the_bundled_ones_only(tmp_path, monkeypatch):
    """The quick start writes coffee_dark_retouched.jpg beside the samples: the gallery still shows the
    bundled photos only, and those are every photo the repository ships in samples/."""
    import shutil

    from csr_core import SAMPLE_PHOTOS, data_dir
    from csr_plugins.gradio_app import service

    bundled = data_dir("samples")
    assert sorted(p.name for p in bundled.iterdir() if p.suffix.lower() in (".jpg", ".png")
                  and not p.stem.endswith("_retouched")) == sorted(SAMPLE_PHOTOS)
    for name in SAMPLE_PHOTOS:
        shutil.copy(bundled / name, tmp_path / name)
    shutil.copy(bundled / "coffee_dark.jpg", tmp_path / "coffee_dark_retouched.jpg")
    monkeypatch.setattr(service, "data_dir", lambda name: tmp_path)
    assert [p.name for p in service.sample_photos()] == list(SAMPLE_PHOTOS)


def test_teach_summary_names_what_the_fine_tune_left_out():
    """A pair that cannot be aligned, or a second copy, is left out by the fine-tune and listed on the card:
    the web app's summary says so, naming files by their names alone (no folder of the server)."""
    import tempfile
    from types import SimpleNamespace

    from csr_plugins.gradio_app.teach import summary

    where = Path(tempfile.gettempdir(), "csr-teach-x", "pairs")
    card = dict(problems=[f"pair p2: {where}/p2_target.png is turned a quarter turn from its before; left out",
                          "pair p4: the same photos as pair p3; counted once"])
    text = summary(SimpleNamespace(name="mine", card=card))
    assert text.startswith("Style **mine** saved.") and "Left out or counted once: 2 (the first: pair p2: " \
        "p2_target.png is turned a quarter turn from its before; left out)." in text, text
    assert "Left out" not in summary(SimpleNamespace(name="mine", card={}))
