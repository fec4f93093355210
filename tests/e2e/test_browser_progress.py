"""Progress inside an epoch in a real browser: API, one CPU worker and the UI as subprocesses,
headless Chromium through Selenium.

A run with long epochs (a reduced MultiMNIST when ``PMTL_DATA_DIR`` has the MNIST files, else
the concave problem with many steps per epoch) is watched on its Run page: once the chart has
points, the header goes on with the batch (step) count, the speed and the time left of the next
epoch, redrawn in place as the training reports; after a cancel the promise disappears. With
``PMTL_UI_SCREENSHOTS=<dir>`` the page is saved as ``ui_run_progress.png`` in that directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._ui_browser import browser_lab, chromium, screenshot, wait_until
from tests.e2e.test_browser import _app_ready, _front_points, _no_exception
from tests.frontend._system import System
from tests.settings import DATA_DIR

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = os.environ.get("PMTL_UI_SCREENSHOTS", "")
HAS_DATA = bool(DATA_DIR) and Path(DATA_DIR, "MNIST", "raw").is_dir()
#: "epoch 4: batch 12/32 (38%) · 850 samples/s · ~5 s left in this epoch"
IN_EPOCH = re.compile(r"epoch (\d+)/\d+ · epoch (\d+): (batch|step) (\d+)/(\d+) \((\d+)%\) · ")


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[System, str]]:
    """Chromium present (installed with apt-get if missing), then API + one worker + UI."""
    with browser_lab(tmp_path_factory.mktemp("lab"), devices="cpu") as lab_and_url:
        yield lab_and_url


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "profile", width=1400) as chrome:
        yield chrome


def _long_epochs_run(lab: System) -> dict[str, Any]:
    if HAS_DATA:
        return lab.create_run(
            name="MultiMNIST on a CPU, 3 rays",
            problem="multi_mnist",
            problem_options={"train_size": 1024, "test_size": 256},
            preferences={"count": 3},
            training={"epochs": 30, "batch_size": 64},
        )
    return lab.create_run(
        name="concave, long epochs",
        preferences={"count": 3},
        training={"epochs": 30, "steps_per_epoch": 400},
    )


def test_the_run_page_header_follows_the_batches_of_the_current_epoch(system, driver, tmp_path):
    lab, url = system
    run = _long_epochs_run(lab)
    driver.get(f"{url}/run_detail?run={run['id']}")
    _app_ready(driver, f"Run #{run['id']}")
    driver.execute_script("window.__pmtlNoReload = true;")
    from selenium.webdriver.common.by import By as by

    seen: list[tuple[int, ...]] = []
    ahead: list[str] = []  # headers whose epoch in progress is not the one after the chart's

    def header() -> re.Match[str] | None:
        _no_exception(driver)
        return IN_EPOCH.search(driver.find_element(by.TAG_NAME, "body").text)

    def charted_and_moving() -> bool:
        match = header()
        if match is None:
            return False
        done, current, _, batch, batches, _ = match.groups()
        seen.append((int(done), int(current), int(batch), int(batches)))
        if int(current) != int(done) + 1:
            ahead.append(match.group(0))
        return int(done) >= charted and int(batch) > 0 and bool(_front_points(driver))

    charted = 2 if SCREENSHOTS else 1  # the documentation's picture shows a few epochs
    wait_until(charted_and_moving, 600, "the header's in-epoch progress after epoch 1", 1.0)
    first = seen[-1]
    wait_until(
        lambda: charted_and_moving() and seen[-1] != first, 60, "the batch count to move", 1.0
    )
    assert driver.execute_script("return window.__pmtlNoReload === true;"), "the page reloaded"
    assert not ahead, ahead  # the epoch in progress is always the one after the chart's
    text = header().group(0)  # type: ignore[union-attr]
    unit = "batch" if HAS_DATA else "step"
    assert f": {unit} " in text, text
    body = driver.find_element(by.TAG_NAME, "body").text
    assert "left in this epoch" in body, body[:800]
    if HAS_DATA:
        assert "samples/s" in body, body[:800]
    shot = screenshot(driver, tmp_path / "run_progress.png")
    assert shot.stat().st_size > 10_000
    if SCREENSHOTS:
        screenshot(driver, Path(SCREENSHOTS) / "ui_run_progress.png")

    assert lab.api("POST", f"/runs/{run['id']}/cancel").status_code == 200
    wait_until(lambda: header() is None, 90, "the in-epoch promise to go after the cancel", 1.0)
    wait_until(
        lambda: "cancelled" in driver.find_element(by.TAG_NAME, "body").text,
        60,
        "the run to read cancelled",
    )
    _no_exception(driver)
