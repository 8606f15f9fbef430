"""End to end in a real headless Chromium: upload, pick a style, compare what the page serves with the core."""
from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the app extra (gradio) is not installed")
pytest.importorskip("selenium", reason="selenium is not installed (run .ci/browser-deps.sh)")
from gradio_helpers import (REPO, artifact, chromium_driver, find_chromium, quit_driver,  # noqa: E402
                            running_app, toy_registry)

if find_chromium() is None:
    pytest.skip("no chromium + chromedriver found (run .ci/browser-deps.sh)", allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from csr_core.image_io import load_photo  # noqa: E402
from csr_core.pipeline import retouch_file  # noqa: E402
from csr_plugins.gradio_app.service import Limits  # noqa: E402


pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword)")


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=20) as reply:
        return reply.read()


def slider_srcs(drv) -> list[str]:
    return [img.get_attribute("src") for img in drv.find_elements(By.CSS_SELECTOR, "#slider img")]


def choose_file(drv, path) -> None:
    """Put ``path`` into the photo upload (clearing the one shown, if any)."""
    for button in drv.find_elements(By.CSS_SELECTOR, "#photo button[aria-label=Clear]"):
        button.click()
    inputs = WebDriverWait(drv, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"))
    inputs[0].send_keys(str(path))


def toasts(drv) -> list[str]:
    return [t.text for t in drv.find_elements(By.CSS_SELECTOR, ".toast-body")]


def test_retouch_in_chromium(tmp_path):
    t0 = time.monotonic()
    src = REPO / "samples" / "coffee_dark.jpg"
    reg = toy_registry(tmp_path / "reg")
    retouch_file(src, tmp_path / "core.jpg", style="warm", registry=reg)
    with running_app(reg, limits=Limits(max_mb=1)) as (_, url):
        drv = chromium_driver(tmp_path / "downloads")
        wait = lambda cond, t=20: WebDriverWait(drv, t).until(cond)  # noqa: E731
        try:
            drv.set_page_load_timeout(30)
            drv.get(url)
            thumbs = wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#samples button.thumbnail-item img"))
            assert [t.get_attribute("alt") for t in thumbs] == ["astronaut", "cat_cast_flat", "coffee_dark"]
            wait(lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", t)
                               for t in thumbs))  # real pictures, loaded (not text buttons)
            drv.save_screenshot(str(artifact("gradio_samples.png")))
            thumbs[1].click()  # a bundled sample photo
            wait(lambda d: len(slider_srcs(d)) == 2 and "cat_cast_flat" in d.find_element(By.ID, "note").text)
            choose_file(drv, src)  # an upload
            wait(lambda d: len(slider_srcs(d)) == 2 and "coffee_dark" in d.find_element(By.ID, "note").text)
            first = slider_srcs(drv)

            reg.save_style("late", reg.net("warm").state, {"cond_size": 64}, base=reg.get("auto"))  # after page load
            drv.find_element(By.CSS_SELECTOR, "#style input").click()  # focusing refreshes the list
            wait(lambda d: d.find_elements(By.CSS_SELECTOR, "[role=option][aria-label=late]"))
            wait(lambda d: d.find_elements(By.CSS_SELECTOR, "[role=option][aria-label=warm]"))[0].click()
            wait(lambda d: slider_srcs(d) != first and len(slider_srcs(d)) == 2)
            before, after = (load_photo(fetch(u)).rgb.astype(int) for u in slider_srcs(drv))

            drv.find_element(By.CSS_SELECTOR, "#render").click()
            link = wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#result a[download]"), 30)[0]
            assert link.get_attribute("download") == "coffee_dark_retouched.jpg"
            time.sleep(0.5)  # let the page settle for the screenshot
            drv.save_screenshot(str(artifact("gradio_retouch.png")))
            served = fetch(link.get_attribute("href"))
            assert served == (tmp_path / "core.jpg").read_bytes()  # the file the CLI writes, byte for byte

            core = load_photo(tmp_path / "core.jpg").rgb.astype(int)
            assert np.array_equal(before, load_photo(src).rgb)
            assert np.abs(after - before).mean() > 5                # the page shows a visible change...
            assert np.abs(after - core).mean() < 2                  # ... the one the core computes

            bad = tmp_path / "broken.jpg"
            bad.write_bytes(src.read_bytes()[:len(src.read_bytes()) // 2])  # starts as a JPEG: uploaded, not decoded
            choose_file(drv, bad)
            wait(lambda d: any("broken.jpg" in t for t in toasts(d)))
            assert not any("Traceback" in t for t in toasts(drv))

            big = tmp_path / "big.png"  # > 1 MB: refused before it is even sent
            from PIL import Image

            Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 800, 3), dtype=np.uint8)).save(big)
            choose_file(drv, big)
            wait(lambda d: any("size" in t.lower() for t in toasts(d)))
            drv.save_screenshot(str(artifact("gradio_errors.png")))
            print("toasts:", toasts(drv))
        finally:
            quit_driver(drv)
    assert time.monotonic() - t0 < 60


def test_login_in_chromium(tmp_path):
    """With a login, the page asks for it; a wrong password is refused, the right one opens the app."""
    from selenium.webdriver.common.keys import Keys

    reg = toy_registry(tmp_path / "reg")
    with running_app(reg, auth=[("ann", "s3cret")]) as (_, url):
        drv = chromium_driver(tmp_path / "downloads")
        wait = lambda cond, t=20: WebDriverWait(drv, t).until(cond)  # noqa: E731
        try:
            drv.set_page_load_timeout(30)
            drv.get(url)

            def log_in(password: str) -> None:
                password_box = wait(lambda d: d.find_elements(By.CSS_SELECTOR, "input[type=password]"))[0]
                user_box = next(i for i in drv.find_elements(By.CSS_SELECTOR, "input")
                                if i.get_attribute("type") in ("text", None, ""))
                user_box.clear()
                user_box.send_keys("ann")
                password_box.clear()
                password_box.send_keys(password, Keys.RETURN)

            log_in("wrong")
            wait(lambda d: "incorrect" in d.page_source.lower())
            assert not drv.find_elements(By.ID, "photo")
            log_in("s3cret")
            wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo input[type=file]"), 30)
            drv.save_screenshot(str(artifact("gradio_login.png")))
        finally:
            quit_driver(drv)
