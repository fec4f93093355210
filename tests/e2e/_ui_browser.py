"""Headless Chromium for UI tests: install check, driver, waits, chart inspection, screenshots."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)

#: JavaScript: the points (SVG symbol marks) drawn in every vega-embed chart of the page.
COUNT_POINTS_JS = """
return Array.from(document.querySelectorAll('.vega-embed')).map(function (el) {
  return {
    symbols: el.querySelectorAll('svg .mark-symbol path').length,
    rules: el.querySelectorAll('svg .mark-rule line, svg .mark-rule path').length,
    canvas: el.querySelectorAll('canvas').length,
    labels: Array.from(el.querySelectorAll('svg .mark-symbol path'))
      .slice(0, 50).map(function (p) { return p.getAttribute('aria-label') || ''; })
  };
});
"""

#: JavaScript: start timing a click; ``window.__pmtlAnswer`` gets the milliseconds from the next
#: pointer press anywhere on the page to the moment the page's text contains ``arguments[0]``.
TIME_ANSWER_JS = """
var wanted = arguments[0];
window.__pmtlAnswer = null;
window.__pmtlPressed = null;
document.addEventListener('pointerdown', function () {
  if (window.__pmtlPressed === null) { window.__pmtlPressed = performance.now(); }
}, {capture: true, once: true});
var observer = new MutationObserver(function () {
  if (window.__pmtlPressed !== null && document.body.innerText.indexOf(wanted) >= 0) {
    window.__pmtlAnswer = performance.now() - window.__pmtlPressed;
    observer.disconnect();
  }
});
observer.observe(document.body, {childList: true, subtree: true, characterData: true});
"""

#: JavaScript: width and height (px) of the SVG of every vega-embed chart on the page.
CHART_SIZES_JS = """
return Array.from(document.querySelectorAll('.vega-embed svg')).map(function (svg) {
  var box = svg.getBoundingClientRect();
  return {width: box.width, height: box.height,
          label: svg.getAttribute('aria-label') || ''};
});
"""

#: JavaScript: by how many pixels each data frame needs a horizontal scroll bar, or ``null``
#: while a frame is still mounting (narrower than the block that holds it: a first layout at
#: 52 px overflowed by 9 px for a moment and failed a CI run).
DATAFRAME_OVERFLOW_JS = """
var frames = Array.from(document.querySelectorAll('[data-testid="stDataFrame"]'));
var mounting = frames.some(function (el) {
  var holder = el.closest('[data-testid="stElementContainer"]') || el.parentElement;
  return el.getBoundingClientRect().width < 0.9 * holder.getBoundingClientRect().width;
});
if (!frames.length || mounting) { return null; }
return frames.map(function (el) {
  var scroller = el.querySelector('.dvn-scroller') || el;
  return scroller.scrollWidth - scroller.clientWidth;
});
"""

#: JavaScript: the text of every data frame on the page (glide-data-grid keeps an accessible
#: copy of its visible cells in the DOM next to the canvas).
DATAFRAME_TEXT_JS = """
return Array.from(document.querySelectorAll('[data-testid="stDataFrame"]')).map(function (el) {
  return el.textContent || '';
});
"""

__all__ = [
    "CHART_SIZES_JS",
    "COUNT_POINTS_JS",
    "DATAFRAME_OVERFLOW_JS",
    "DATAFRAME_TEXT_JS",
    "TIME_ANSWER_JS",
    "choose_file",
    "chromium_missing_reason",
    "ensure_chromium",
    "exceptions_on_page",
    "make_driver",
    "screenshot",
    "wait_until",
]


def chromium_missing_reason() -> str | None:
    """Why Chromium + chromedriver cannot be used here, or ``None`` when they are installed."""
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return None
    return f"Debian chromium/chromium-driver not installed ({CHROMIUM}, {CHROMEDRIVER})"


def ensure_chromium() -> str | None:
    """Install ``chromium chromium-driver`` with apt-get when missing (as root); the reason
    they are still unavailable, or ``None``."""
    if chromium_missing_reason() is None:
        return None
    apt = shutil.which("apt-get")
    if apt is None:
        return "chromium is missing and apt-get is not available to install it"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "chromium is missing and installing it with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = [apt, "install", "-y", "--no-install-recommends", "chromium", "chromium-driver"]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        subprocess.run([apt, "update"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return f"apt-get install chromium chromium-driver failed: {done.stderr[-500:]}"
    return chromium_missing_reason()


def make_driver(profile: Path, downloads: Path | None = None, width: int = 1500) -> Any:
    """A headless Chromium WebDriver with its own profile directory."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},1100")
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(downloads),
                "download.prompt_for_download": False,
                "safebrowsing.enabled": False,
            },
        )
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    if downloads is not None:
        driver.execute_cdp_cmd(
            "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
    return driver


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``check()`` until truthy (exceptions count as not yet); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # the page may be re-rendering
            last = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what} (last error: {last})")


def exceptions_on_page(driver: Any) -> list[str]:
    """Text of every Streamlit exception box on the page."""
    from selenium.webdriver.common.by import By

    boxes = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    return [box.text for box in boxes]


def screenshot(driver: Any, path: Path, height: int | None = None) -> Path:
    """Save a PNG of the page (the window resized to the page's full height first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.execute_script(
        'window.scrollTo(0, 0); document.querySelectorAll(\'[data-testid="stMain"], '
        '[data-testid="stAppViewContainer"]\').forEach(function (e) { e.scrollTop = 0; });'
    )
    full = height or driver.execute_script(
        "var m = document.querySelector('[data-testid=\"stMain\"]') || document.body;"
        "return Math.max(m.scrollHeight, document.body.scrollHeight);"
    )
    width = driver.get_window_size()["width"]
    driver.set_window_size(width, min(max(int(full) + 40, 800), 4000))
    time.sleep(1.0)
    driver.save_screenshot(str(path))
    return path


def choose_file(driver: Any, path: Path, index: int = 0) -> None:
    """Hand ``path`` to the ``index``-th ``st.file_uploader`` of the page, as a user picking
    it in the file dialog would (the browser then uploads it to Streamlit)."""
    from selenium.webdriver.common.by import By

    def field() -> Any:
        inputs = driver.find_elements(
            By.CSS_SELECTOR, '[data-testid="stFileUploader"] input[type="file"]'
        )
        return inputs[index] if len(inputs) > index else None

    wait_until(field, 30, "the file uploader").send_keys(str(path.resolve()))
    wait_until(
        lambda: path.name in driver.find_element(By.TAG_NAME, "body").text,
        30,
        f"{path.name} to be uploaded to the UI",
    )


@contextmanager
def browser_lab(home: Path, devices: str) -> Iterator[tuple[Any, str]]:
    """Chromium present (installed with apt-get if missing), then the API, a worker on
    ``devices`` and the UI as subprocesses under ``home``: ``(lab, ui_url)``."""
    from tests.conftest import require
    from tests.frontend._system import System, free_port

    reason = ensure_chromium()
    require(reason is None, reason or "")
    with System.start(home, devices=devices) as lab:
        yield lab, lab.start_ui(free_port())


@contextmanager
def chromium(profile: Path, downloads: Path | None = None, width: int = 1500) -> Iterator[Any]:
    """A headless Chromium driver (:func:`make_driver`), quit on exit."""
    driver = make_driver(profile, downloads=downloads, width=width)
    try:
        yield driver
    finally:
        driver.quit()
