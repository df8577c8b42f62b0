"""What a user sees, in headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by
selenium, no driver download): the offline ``maps.html`` answers a click with the waveform, and
notebook 05 in a JupyterLab started here renders the explorer without horizontal scrolling.

``ECGNB_SCREENSHOTS=<folder>`` keeps the screenshots taken along the way.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ecgnb import map_explorer as X

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
WIDTHS = (1600, 1000)

pytestmark = pytest.mark.slow


@pytest.fixture()
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).is_file()]
    if missing:
        pytest.skip(f"no headless browser: {missing} missing (apt-get install chromium "
                    "chromium-driver; .ci/run does it)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + (f"--user-data-dir={tmp_path / 'chromium'}",):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_window_size(1600, 1000)
    yield driver
    driver.quit()


def screenshot(driver, name: str) -> None:
    folder = os.environ.get("ECGNB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def wait_for(driver, script: str, timeout_s: float, what: str):
    """Poll ``script`` (JavaScript returning a value) until it is truthy."""
    end = time.time() + timeout_s
    while time.time() < end:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_offline_maps_page_shows_the_waveform_of_a_clicked_point(browser, tmp_path, monkeypatch):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from tests.test_map_explorer import fake_map

    monkeypatch.setenv("ECGNB_OUTPUTS", str(tmp_path / "outputs"))
    maps = [fake_map("A", "encoder", "target", 0), fake_map("B", "encoder", "target", 1)]
    page = X.write_static(maps, tmp_path / "outputs" / "g" / "embeddings" / "r" / "maps.html")
    browser.get(page.as_uri())
    wait_for(browser, "return document.querySelectorAll('.ecgnb-map .point').length", 30,
             "the map's points (plotly.js from the shared copy)")
    point = browser.find_elements(By.CSS_SELECTOR, ".ecgnb-map .scatterlayer .point")[0]
    ActionChains(browser).move_to_element(point).click().perform()
    title = wait_for(browser, "const w = document.getElementById('waveform');"
                     "return w.layout && w.data && w.data[0].y.length && w.layout.title.text", 15,
                     "the waveform after a click")
    assert title.startswith("#")
    n_samples, x_last = browser.execute_script(
        "const w = document.getElementById('waveform'); return [w.data[0].y.length,"
        " w.data[0].x[w.data[0].x.length - 1]];")
    assert n_samples == maps[0].windows.n_timesteps
    assert x_last == pytest.approx((n_samples - 1) / maps[0].windows.fs)
    screenshot(browser, "maps_html")
