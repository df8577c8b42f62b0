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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def jupyterlab(tmp_path, demo_runs):
    """A JupyterLab on 127.0.0.1 (random port, a token) over a folder holding notebook 05 made
    quicker (one layer, 60 corpus windows), its kernel seeing this checkout and the outputs root
    that holds ``demo_runs``; stopped afterwards. Yields ``(url, folder)``."""
    folder, token, port = tmp_path / "lab", os.urandom(16).hex(), free_port()
    folder.mkdir()
    text = (ROOT / "notebooks" / "05_embeddings.ipynb").read_text(encoding="utf-8")
    for old, new in (('layers: list = [\\"encoder\\", \\"finetuned\\", \\"head\\"]',
                      'layers: list = [\\"finetuned\\"]'),
                     ("n_corpus_windows: int = 300", "n_corpus_windows: int = 60")):
        assert old in text, old
        text = text.replace(old, new)
    (folder / "05_embeddings.ipynb").write_text(text, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
         f"--LabApp.user_settings_dir={tmp_path / 'settings'}"],
        env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "lab.log", "w"))
    try:
        end = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=5)
                break
            except OSError:
                if time.time() > end or server.poll() is not None:
                    raise AssertionError("JupyterLab did not start:\n"
                                         + (tmp_path / "lab.log").read_text()[-3000:])
                time.sleep(1)
        yield f"http://127.0.0.1:{port}/lab/tree/05_embeddings.ipynb?token={token}", folder
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


OVERFLOW_JS = """
const plots = [...document.querySelectorAll('.jp-OutputArea .widget-box .js-plotly-plot')];
const area = plots[0].closest('.jp-OutputArea-output'), box = area.getBoundingClientRect();
const scrollers = [area, document.querySelector('.jp-WindowedPanel-outer'),
                   ...[...area.querySelectorAll('.widget-box')]];
return {n_plots: plots.length,
        outside: plots.filter(p => { const r = p.getBoundingClientRect();
                                     return r.left < box.left - 1 || r.right > box.right + 1; }).length,
        scrolling: scrollers.filter(e => e && e.scrollWidth > e.clientWidth + 1).length,
        widths: plots.map(p => Math.round(p.getBoundingClientRect().width))};
"""


def test_notebook_05_renders_the_explorer_in_jupyterlab(browser, jupyterlab):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, folder = jupyterlab
    browser.get(url)
    wait_for(browser, "return document.querySelector('.jp-Notebook .jp-Cell')", 120,
             "the notebook in JupyterLab")
    wait_for(browser, "return document.querySelector('.jp-Notebook-ExecutionIndicator')"
             " || document.querySelector('.jp-KernelStatus')", 60, "the kernel indicator")
    time.sleep(2)
    browser.find_element(By.XPATH, "//div[contains(@class,'lm-MenuBar-itemLabel')"
                                   " and text()='Run']").click()
    browser.find_element(By.XPATH, "//div[contains(@class,'lm-Menu-itemLabel')"
                                   " and text()='Run All Cells']").click()
    wait_for(browser, "return document.querySelectorAll("
             "'.jp-OutputArea .widget-box .js-plotly-plot .main-svg').length >= 3", 900,
             "the explorer's three figures (widget DOM)")
    assert not browser.find_elements(By.XPATH, "//div[contains(@class,'jp-OutputArea-output')]"
                                               "//*[contains(text(),'widget model not found')]")
    for width in WIDTHS:
        browser.set_window_size(width, 1000)
        time.sleep(2)
        browser.execute_script("document.querySelector('.jp-OutputArea .widget-box')"
                               ".scrollIntoView({block: 'start'});")
        time.sleep(1)
        layout = browser.execute_script(OVERFLOW_JS)
        screenshot(browser, f"explorer_{width}")
        assert layout["n_plots"] == 3 and layout["outside"] == 0, layout
        assert layout["scrolling"] == 0, f"horizontal scrolling at {width} px: {layout}"
    browser.set_window_size(1600, 1000)
    time.sleep(1)
    point = browser.find_elements(By.CSS_SELECTOR, ".widget-box .js-plotly-plot .point")[0]
    ActionChains(browser).move_to_element(point).click().perform()
    time.sleep(3)  # the waveform comes back from the kernel (not asserted: a screenshot)
    screenshot(browser, "explorer_clicked")
