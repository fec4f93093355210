"""The whole lab in a real browser: API, CPU worker and Streamlit UI as subprocesses, driven by
headless Chromium through Selenium.

A run is created on the New-run page, its front is drawn live on the Run page (SVG points of the
vega-embed chart, refreshed in place without reloading the page), a click on a point opens the
solution panel and both downloads arrive and load with ``pmtl_core.export.load_model``. Any
Streamlit exception box fails the test. A screenshot of the run page is saved in the test's tmp
directory; with ``PMTL_UI_SCREENSHOTS=<dir>`` the documentation screenshots of every page
(``ui_runs.png``, ``ui_new_run.png``, ``ui_run_detail.png``, ``ui_compare.png``) are written to
that directory as well (``PMTL_UI_SCREENSHOTS=docs/images`` refreshes ``docs/ui.md``'s images).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e._ui_browser import (
    CHART_SIZES_JS,
    COUNT_POINTS_JS,
    DATAFRAME_OVERFLOW_JS,
    DATAFRAME_TEXT_JS,
    TIME_ANSWER_JS,
    browser_lab,
    choose_file,
    chromium,
    exceptions_on_page,
    screenshot,
    wait_until,
)
from tests.frontend._system import System

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = os.environ.get("PMTL_UI_SCREENSHOTS", "")
#: A click on a point must show its solution panel within 0.5 s. That is asserted when the
#: machine has a core to spare (load average below its CPU count); on a busy shared machine
#: (2 cores, the API, a worker, Streamlit and Chromium beside other jobs) 1.5 s is allowed.
#: The measured values are printed either way.
CLICK_GOAL_MS, CLICK_BUSY_MS = 500.0, 1500.0


def click_budget_ms() -> float:
    """The click budget for this machine right now (see ``CLICK_GOAL_MS``)."""
    busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
    return CLICK_BUSY_MS if busy else CLICK_GOAL_MS


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[System, str]]:
    """Chromium present (installed with apt-get if missing), then API + worker + UI."""
    with browser_lab(tmp_path_factory.mktemp("lab"), devices="cpu,cpu") as lab_and_url:
        yield lab_and_url


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    """A headless Chromium with its own profile and download directory."""
    with chromium(tmp_path / "profile", downloads=tmp_path / "downloads") as chrome:
        yield chrome


def _by():
    from selenium.webdriver.common.by import By

    return By


def _no_exception(driver: Any) -> None:
    boxes = exceptions_on_page(driver)
    assert not boxes, "Streamlit exception on the page:\n" + "\n---\n".join(boxes)


def _app_ready(driver: Any, title: str) -> None:
    """Wait for a page whose title is ``title`` and no script running."""
    by = _by()

    def ready() -> bool:
        _no_exception(driver)
        heads = [h.text for h in driver.find_elements(by.CSS_SELECTOR, "h1")]
        running = driver.find_elements(by.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        return any(title in h for h in heads) and not any(r.is_displayed() for r in running)

    wait_until(ready, 90, f"the page titled {title!r}")


def _settled(driver: Any, script: str, pause: float = 0.5) -> Any:
    """The value of ``script`` once it reads the same twice ``pause`` s apart (``None`` while
    the page still lays out), so a measure is not taken mid-render."""
    first = driver.execute_script(script)
    time.sleep(pause)
    second = driver.execute_script(script)
    return second if first is not None and first == second else None


def _type(driver: Any, label: str, value: str) -> None:
    """Replace the text of the input labelled ``label`` and commit it (Enter)."""
    from selenium.webdriver.common.keys import Keys

    field = wait_until(
        lambda: driver.find_element(_by().CSS_SELECTOR, f'input[aria-label="{label}"]'),
        30,
        f"the input {label!r}",
    )
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(value, Keys.ENTER)
    wait_until(lambda: field.get_attribute("value") == value, 10, f"{label!r} to read {value!r}")
    time.sleep(0.8)  # let the rerun triggered by the change finish


def _click_button(driver: Any, text: str) -> None:
    by = _by()

    def find() -> Any:
        for button in driver.find_elements(by.CSS_SELECTOR, "button"):
            if button.text.strip().endswith(text) and button.is_enabled():
                return button
        return None

    button = wait_until(find, 30, f"the button {text!r}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()


def _front_points(driver: Any) -> list[str]:
    """aria-labels of the front's points (the first chart whose points name a preference)."""
    for chart in driver.execute_script(COUNT_POINTS_JS):
        labels = [label for label in chart["labels"] if "preference:" in label]
        if labels:
            return labels
    return []


def _create_run(driver: Any, url: str, name: str, epochs: int, count: int) -> int:
    driver.get(f"{url}/new_run")
    _app_ready(driver, "New run")
    _type(driver, "Run name", name)
    _type(driver, "epochs", str(epochs))
    _type(driver, "steps_per_epoch", "20")
    _type(driver, "Number of preference vectors", str(count))
    _no_exception(driver)
    _click_button(driver, "Start run")
    wait_until(lambda: "run=" in driver.current_url, 60, "the Run page after submitting")
    return int(re.search(r"run=(\d+)", driver.current_url).group(1))


def test_run_created_in_the_browser_forms_its_front_live(system, driver, tmp_path: Path):
    lab, url = system
    run_id = _create_run(driver, url, "browser run", epochs=6, count=5)
    _app_ready(driver, f"Run #{run_id}")
    driver.execute_script("window.__pmtlNoReload = true;")

    # Points appear as the worker trains, redrawn in place by the fragment (no page reload).
    counts: list[int] = []

    def all_points() -> bool:
        _no_exception(driver)
        counts.append(len(_front_points(driver)))
        return counts[-1] == 5

    wait_until(all_points, 150, "the five points of the front", interval=1.0)
    assert driver.execute_script("return window.__pmtlNoReload === true;"), "the page reloaded"
    labels = _front_points(driver)
    assert all("loss of f1:" in label and "loss of f2:" in label for label in labels)
    lab.wait_finished(run_id)
    wait_until(
        lambda: "not polling" in driver.find_element(_by().TAG_NAME, "body").text,
        30,
        "polling to stop once the run finished",
    )
    assert driver.execute_script("return window.__pmtlNoReload === true;")
    shot = screenshot(driver, tmp_path / "run_detail.png")
    assert shot.stat().st_size > 10_000
    _no_exception(driver)
    # The header reads what the chart reads; a function problem offers only its train split.
    body = driver.find_element(_by().TAG_NAME, "body").text
    assert "epoch 6/6" in body and "jobs 1/1 done" in body, body[:600]
    assert "Hypervolume (train)" in body and "Hypervolume (test)" not in body

    # A click on a point opens the solution panel at once (measured in the page: from the
    # pointer press to the panel's title); both downloads arrive, named by the one number.
    budget = click_budget_ms()
    answers = [_timed_click(driver, 0), _timed_click(driver, -1)]
    print(
        f"click -> solution panel: {', '.join(f'{ms:.0f} ms' for ms, _ in answers)} "
        f"(budget {budget:.0f} ms, load average {os.getloadavg()[0]:.1f})"
    )
    assert max(ms for ms, _ in answers) <= budget, answers
    pref_id = answers[-1][1]
    _click_button(driver, "Download model (safetensors)")
    _click_button(driver, "Download config (JSON)")
    downloads = tmp_path / "downloads"
    weights = wait_until(lambda: _downloaded(downloads, ".safetensors"), 30, "the model file")
    config = wait_until(lambda: _downloaded(downloads, ".json"), 30, "the config file")
    assert weights.name == f"run{run_id}-pref{pref_id}-model.safetensors"
    assert config.name == f"run{run_id}-pref{pref_id}-config.json"

    from pmtl_core.export import load_model

    model = load_model(json.loads(config.read_text()), weights.read_bytes())
    assert tuple(model().shape) == (20,)
    _no_exception(driver)

    if SCREENSHOTS:
        _documentation_screenshots(lab, url, driver, run_id, Path(SCREENSHOTS))


def _timed_click(driver: Any, which: int) -> tuple[float, int]:
    """Click the ``which``-th point of the front; (ms until its panel showed, preference id)."""
    from selenium.webdriver.common.action_chains import ActionChains

    _idle(driver)  # the page is not busy with an earlier rerun (which redraws the chart)
    target = _points(driver)[which]
    label = target.get_attribute("aria-label") or ""
    match = re.search(r"preference: (#(\d+) \([^)]*\))", label)
    assert match, label
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", target)
    _idle(driver)
    # The point as drawn now (a rerun in between would have replaced the element).
    target = next(p for p in _points(driver) if p.get_attribute("aria-label") == label)
    driver.execute_script(TIME_ANSWER_JS, f"Solution {match.group(1)}")
    ActionChains(driver).move_to_element(target).click().perform()
    answer = wait_until(
        lambda: driver.execute_script("return window.__pmtlAnswer;"), 30, "the solution panel"
    )
    _idle(driver)
    return float(answer), int(match.group(2))


def _idle(driver: Any) -> None:
    """Wait until no script run is in progress (Streamlit's status widget is hidden)."""
    by = _by()

    def idle() -> bool:
        running = driver.find_elements(by.CSS_SELECTOR, '[data-testid="stStatusWidget"]')
        return not any(r.is_displayed() for r in running)

    time.sleep(0.5)
    wait_until(idle, 30, "the page to be idle", interval=0.2)
    time.sleep(0.5)


def _points(driver: Any) -> list[Any]:
    return [
        p
        for p in driver.find_elements(_by().CSS_SELECTOR, ".vega-embed svg .mark-symbol path")
        if "preference:" in (p.get_attribute("aria-label") or "")
    ]


def _click_point(driver: Any) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    by = _by()
    points = [
        p
        for p in driver.find_elements(by.CSS_SELECTOR, ".vega-embed svg .mark-symbol path")
        if "preference:" in (p.get_attribute("aria-label") or "")
    ]
    target = points[len(points) // 2]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", target)
    time.sleep(0.5)
    ActionChains(driver).move_to_element(target).click().perform()


def _downloaded(directory: Path, suffix: str) -> Path | None:
    done = [p for p in directory.glob(f"*{suffix}") if not p.name.endswith(".crdownload")]
    return done[0] if done and done[0].stat().st_size > 0 else None


def _documentation_screenshots(lab: System, url: str, driver: Any, run_id: int, out: Path) -> None:
    """The four pages with finished runs, for docs/ui.md."""
    other = lab.create_run(
        name="linear grid, 8 rays",
        method="linear",
        preferences={"count": 8},
        training={"epochs": 12, "steps_per_epoch": 20},
    )
    main = lab.create_run(
        name="Pareto MTL, 8 rays",
        preferences={"count": 8},
        training={"epochs": 12, "steps_per_epoch": 20},
    )
    lab.wait_finished(other["id"], timeout=240)
    lab.wait_finished(main["id"], timeout=240)
    driver.set_window_size(1400, 1000)
    driver.get(url)
    _app_ready(driver, "Runs")
    screenshot(driver, out / "ui_runs.png")
    driver.set_window_size(1400, 1000)
    driver.get(f"{url}/new_run")
    _app_ready(driver, "New run")
    screenshot(driver, out / "ui_new_run.png")
    driver.set_window_size(1400, 1000)
    driver.get(f"{url}/run_detail?run={main['id']}")
    _app_ready(driver, f"Run #{main['id']}")
    wait_until(lambda: len(_front_points(driver)) == 8, 60, "the front of the docs run")
    _click_point(driver)
    wait_until(
        lambda: "Solution #" in driver.find_element(_by().TAG_NAME, "body").text, 30, "the panel"
    )
    time.sleep(1.5)
    screenshot(driver, out / "ui_run_detail.png")
    driver.set_window_size(1400, 1000)
    driver.get(f"{url}/compare")
    _app_ready(driver, "Compare runs")
    time.sleep(2)
    screenshot(driver, out / "ui_compare.png")
    _no_exception(driver)
    del run_id


def test_forms_tables_and_sign_out_in_the_browser(system, driver):
    """The New-run picker is drawn to scale and its table follows the count; the Runs table
    fits 1400 px; Compare says which reference point and time it uses; sign-out works."""
    lab, url = system
    if not lab.runs:
        lab.runs["small"] = lab.create_run(name="small", training={"epochs": 2})["id"]
    lab.wait_finished(next(iter(lab.runs.values())), timeout=240)
    driver.set_window_size(1400, 1000)
    driver.get(f"{url}/new_run")
    _app_ready(driver, "New run")

    def page_text() -> str:
        return driver.find_element(_by().TAG_NAME, "body").text

    assert "data_dir" not in page_text() and "Advanced" in page_text()
    _choose_radio(driver, "Click on the quarter circle")
    sizes = wait_until(lambda: driver.execute_script(CHART_SIZES_JS), 30, "the picker")
    picker = sizes[0]
    assert picker["width"] < 600 and abs(picker["width"] / picker["height"] - 1) < 0.2, sizes
    _choose_radio(driver, "Table")
    _type(driver, "Rows", "7")
    wait_until(lambda: "7 model(s)" in page_text(), 20, "the table to have 7 rows")
    _no_exception(driver)

    driver.get(url)
    _app_ready(driver, "Runs")
    overflow = wait_until(lambda: _settled(driver, DATAFRAME_OVERFLOW_JS), 30, "the table")
    assert max(overflow) <= 1, f"the Runs table scrolls sideways at 1400 px by {overflow} px"

    driver.get(f"{url}/compare")
    _app_ready(driver, "Compare runs")
    wait_until(lambda: "common reference point" in page_text(), 30, "the comparison")
    assert "only a train split" in page_text() and "training time" in page_text().lower()

    _click_button(driver, "Sign out")
    wait_until(lambda: "Sign in with your API token" in page_text(), 30, "the sign-in form")
    _no_exception(driver)


def _choose_radio(driver: Any, label: str) -> None:
    """Click the radio option whose text is ``label``."""

    def find() -> Any:
        for option in driver.find_elements(_by().CSS_SELECTOR, '[role="radiogroup"] label'):
            if option.text.strip() == label:
                return option
        return None

    option = wait_until(find, 30, f"the option {label!r}")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", option)
    option.click()
    time.sleep(1.0)


def test_a_csv_uploaded_in_the_browser_is_stored_and_previewed(system, driver, tmp_path: Path):
    """Datasets page: pick a CSV in the file uploader, upload it, see its columns with their
    types and its first rows; the API holds the same table."""
    lab, url = system
    table = tmp_path / "browser_houses.csv"
    rows = [f"{i},{i * 1.5 + 0.25},{'red' if i % 2 else 'blue'}" for i in range(30)]
    table.write_text("rooms,price,colour\n" + "\n".join(rows) + "\n")
    driver.get(f"{url}/datasets")
    _app_ready(driver, "Datasets")
    choose_file(driver, table)
    # Inside the upload form Enter would submit: type the name without it, then click Upload.
    name = driver.find_element(_by().CSS_SELECTOR, 'input[aria-label="Name (optional)"]')
    name.send_keys("browser houses")
    _click_button(driver, "Upload")

    def page_text() -> str:
        return driver.find_element(_by().TAG_NAME, "body").text

    wait_until(lambda: "Uploaded “browser houses”" in page_text(), 60, "the upload to finish")
    wait_until(lambda: "First 20 of 30 rows" in page_text(), 30, "the preview")
    assert "rooms (int64)" in page_text() and "price (float64)" in page_text()
    cells = wait_until(lambda: "".join(driver.execute_script(DATAFRAME_TEXT_JS)), 30, "cells")
    assert "15.25" in cells, cells[:500]  # row 10's price, drawn in the preview grid
    _no_exception(driver)
    stored = [
        d for d in lab.api("GET", "/datasets").json()["data"] if d["name"] == "browser houses"
    ]
    assert len(stored) == 1 and stored[0]["n_rows"] == 30
