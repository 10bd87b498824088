"""The browser app in a real browser: headless Chromium (Debian's chromium + chromium-driver) via Selenium.

One page session, as a person would use it: `stylepuppet ui` on a free port of 127.0.0.1, bad uploads
(not an image, no face) that get a message and not a stack trace, then the sample look and clip, 3
frames of keep-identity with the offline DCGAN + face mesh, a playable animation and the report on the
page. Screenshots are kept in the test's tmp folder (their paths are printed). Cancel and resume are
tested without a browser (test_jobs.py).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [pytest.mark.slow(minutes=2),
              pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                 reason="headless Chromium not installed: apt-get install -y chromium chromium-driver")]

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1280,1600")
#: Seconds a 3-frame run and its evaluation may take from the click (~1.5 min on a 2-core machine under load).
RUN_LIMIT = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path_factory, media_dir):
    """`stylepuppet ui` on a free port, with an empty weights cache (so it offers the offline networks)."""
    root = tmp_path_factory.mktemp("ui")
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "STYLEPUPPET_CACHE": str(root / "cache"),
           "GRADIO_ANALYTICS_ENABLED": "False"}
    log = (root / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "stylepuppet", "ui", "--port", str(port), "--runs",
                             str(root / "runs"), "--samples", str(media_dir.parent)], env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the app did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url, root
    proc.terminate()
    proc.wait(30)
    log.close()


@pytest.fixture
def browser(tmp_path):
    options = Options()
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def screenshot(driver, path: Path) -> Path:
    """The whole page (the window grown to the page's height)."""
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1280, max(900, height))
    time.sleep(1)
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def upload(driver, component: str, path: Path) -> None:
    driver.find_element(By.CSS_SELECTOR, f"#{component} input[type=file]").send_keys(str(path))


def clear(driver, component: str) -> None:
    """Empty an upload field (its Clear button), waiting until it takes a file again."""
    driver.find_element(By.CSS_SELECTOR, f"#{component} button[aria-label='Clear']").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, f"#{component} input[type=file]"))


def text_of(driver, element_id: str) -> str:
    """The element's visible text, read in one script call (the page re-renders while a run reports)."""
    return driver.execute_script("const e = document.getElementById(arguments[0]); return e ? e.innerText : ''",
                                 element_id)


def fill(driver, element_id: str, value: object) -> None:
    field = driver.find_element(By.CSS_SELECTOR, f"#{element_id} input, #{element_id} textarea")
    field.clear()
    field.send_keys(str(value))


def open_page(driver, url: str) -> WebDriverWait:
    driver.get(url)
    wait = WebDriverWait(driver, 120)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#look input[type=file]"))
    return wait


def test_a_page_session_from_bad_uploads_to_a_playable_animation_and_its_report(server, browser, media_dir,
                                                                               tmp_path):
    url, _ = server
    wait = open_page(browser, url)
    assert "Offline networks" in text_of(browser, "networks-note")

    fake = tmp_path / "holiday.jpg"
    fake.write_text("these are notes, not a picture\n")
    upload(browser, "look", fake)
    wait.until(lambda d: "Error" in text_of(d, "input-status"))
    message = text_of(browser, "input-status")
    assert "look image holiday.jpg: cannot read image holiday.jpg" in message and "use an intact PNG or JPEG" in message
    clear(browser, "look")
    blank = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 200, 3), 127, np.uint8)).save(blank)
    upload(browser, "look", blank)
    upload(browser, "driving", media_dir / "d3.mp4")
    wait.until(lambda d: "no face found in the look image wall.png" in text_of(d, "input-status")
               and "driving clip: 354 frames" in text_of(d, "input-status"))
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: "Error" in text_of(d, "status"))
    assert text_of(browser, "status").startswith("Error: look image wall.png: no face found in the look image wall.png")
    page = browser.find_element(By.TAG_NAME, "body").text
    assert "Traceback" not in page and 'File "' not in page
    screenshot(browser, tmp_path / "bad_upload.png")

    clear(browser, "look")
    upload(browser, "look", media_dir / "s1.jpg")
    wait.until(lambda d: "look image: 1145×1145, face found" in text_of(d, "input-status"))
    browser.find_element(By.XPATH, "//button[contains(., 'Advanced')]").click()
    WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "frames").is_displayed())
    fill(browser, "frames", 3)
    fill(browser, "steps-first", 6)
    fill(browser, "steps", 3)
    browser.find_element(By.ID, "run").click()
    wait.until(lambda d: "Running" in text_of(d, "status") and "Error" not in text_of(d, "status"))

    progress: set[str] = set()

    def finished(driver) -> bool:
        progress.update(driver.execute_script(
            "return [...document.querySelectorAll('.progress-text, .meta-text, .progress-level-inner')]"
            ".map(e => e.textContent)"))
        return "Done." in text_of(driver, "status") or "Error" in text_of(driver, "status")

    WebDriverWait(browser, RUN_LIMIT, poll_frequency=0.5).until(finished)
    status = text_of(browser, "status")
    assert status.startswith("Done. animated 3 frames"), status
    assert "mouth-opening correlation, driver vs output" in status and "identity to the look image, dlib" in status
    assert any("animate" in p for p in progress), progress  # the live bar named the stage
    video = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#animation video"))
    wait.until(lambda d: d.execute_script("return arguments[0].readyState", video) >= 1)
    ready, duration, width, error = browser.execute_script(
        "const v = arguments[0]; return [v.readyState, v.duration, v.videoWidth, v.error && v.error.code]", video)
    assert error is None and duration > 0 and width == 64, (ready, duration, width, error)

    folder = Path(re.search(r"Run folder: (\S+)", status).group(1))
    subframes = json.loads((folder / "config.json").read_text())["subframes"]
    payload = tmp_path / "animation.mp4"
    with urllib.request.urlopen(video.get_attribute("src"), timeout=30) as response:
        payload.write_bytes(response.read())
    with av.open(str(payload)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 3 * subframes and frames[0].shape == (64, 64, 3)
    assert browser.find_elements(By.CSS_SELECTOR, "#side-by-side video")

    report = browser.find_element(By.CSS_SELECTOR, "#report iframe").get_attribute("srcdoc")
    assert "Mouth opening" in report and report.count("data:image/png;base64,") == 6
    links = {a.get_attribute("download"): a.get_attribute("href")
             for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a[download]")}
    assert {"animation.mp4", "side_by_side.mp4", "evaluation.mp4", "report.html", "report.json"} <= set(links), links
    with urllib.request.urlopen(links["report.html"], timeout=30) as response:
        assert response.read() == (folder / "report.html").read_bytes()
    shot = screenshot(browser, tmp_path / "finished_page.png")
    with Image.open(shot) as picture:
        assert picture.height > 2000
