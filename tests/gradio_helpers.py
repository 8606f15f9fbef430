"""Helpers for the web-app tests: a toy registry, a live server on a free port, a headless Chromium."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]


def write_tint_style(folder: Path, name: str, gain: tuple, shift: tuple, seed: int = 0,
                     base: str | None = None) -> None:
    """A built-in style that maps x -> x * (1 + gain) + shift (+ a small image-dependent term).

    With ``base`` (a built-in already written) it is a condition style on that base, so the two can be mixed.
    """
    import hashlib
    import json

    import torch
    from safetensors.numpy import save

    from csr_core.model import CSRNet, condition_state, numpy_state

    torch.manual_seed(seed)
    net = CSRNet()
    with torch.no_grad():
        for conv, eye in ((net.conv1, torch.eye(64, 3)), (net.conv2, torch.eye(64)), (net.conv3, torch.eye(3, 64))):
            conv.weight.copy_(eye[:, :, None, None])
            conv.bias.zero_()
        for lin in (net.cond_scale1, net.cond_scale2, net.cond_shift1, net.cond_shift2):
            lin.weight.zero_()
            lin.bias.zero_()
        net.cond_scale3.weight.mul_(0.05)
        net.cond_shift3.weight.mul_(0.02)
        net.cond_scale3.bias.copy_(torch.tensor(gain))
        net.cond_shift3.bias.copy_(torch.tensor(shift))
    state = numpy_state(net)
    manifest = folder / "manifest.json"
    data = json.loads(manifest.read_text()) if manifest.exists() else {"format": 1, "styles": {}}
    card = dict(kind="full")
    if base:
        state = condition_state(state)
        card = dict(kind="condition", base={"name": base, "sha256": data["styles"][base]["sha256"]})
    blob = save(state)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.safetensors").write_bytes(blob)
    data["styles"][name] = dict(card, file=f"{name}.safetensors", sha256=hashlib.sha256(blob).hexdigest(),
                                architecture="csrnet", cond_size=64, description=f"test style {name}: a tint",
                                scores={})
    manifest.write_text(json.dumps(data))


def toy_registry(folder: Path):
    """A registry with two built-in test styles: 'auto' (brighter) and 'warm' (warm tint)."""
    from csr_core.registry import Registry

    write_tint_style(folder / "builtin", "auto", (0.15, 0.15, 0.15), (0.02, 0.02, 0.02))
    write_tint_style(folder / "builtin", "warm", (0.12, 0.0, -0.15), (0.03, 0.0, -0.02), seed=1, base="auto")
    return Registry(folder / "builtin", folder / "user")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(registry, auth=None, **build_kwargs):
    """Yield (demo, url) of the app served on 127.0.0.1 (with ``auth``: behind a login); always shut down."""
    from csr_plugins.gradio_app.app import build_app, launch

    demo = build_app(registry, **build_kwargs)
    try:
        _, url, _ = launch(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True, auth=auth)
        yield demo, url.rstrip("/")
    finally:
        demo.close()
        demo.csr["service"].close()


def find_chromium() -> tuple[str, str] | None:
    """(browser, chromedriver) paths, or None."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def chromium_driver(download_dir: Path):
    """A headless Chromium (selenium) with a fresh profile; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = find_chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="csr-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_experimental_option("prefs", {"download.default_directory": str(download_dir),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(options=opts, service=Service(driver, log_output=subprocess.DEVNULL))
    drv.csr_profile = profile
    return drv


def quit_driver(drv) -> None:
    try:
        drv.quit()
    finally:
        shutil.rmtree(getattr(drv, "csr_profile", ""), ignore_errors=True)


def artifact(name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name


os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
