"""Fixtures of the UI tests: one real lab (API + CPU worker) per session, AppTest on the entry.

AppTest starts from the entrypoint ``frontend/streamlit_app.py`` (the way Streamlit documents
testing ``st.navigation`` apps) and switches pages with ``AppTest.switch_page``; the UI reaches
the API over HTTP exactly as in production, configured through ``PMTL_*`` variables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import require
from tests.frontend._apptest import ENTRY, PAGES
from tests.frontend._system import System
from tests.settings import DATA_DIR

#: Runs the tests need ready-made, submitted as soon as the lab is up so that the worker
#: trains them while the first tests run (two CPU slots train two jobs at a time).
FIXTURE_RUNS: dict[str, dict[str, Any]] = {
    "finished": {"name": "finished fixture", "preferences": {"count": 4}},
    "linear": {"name": "linear grid", "method": "linear", "preferences": {"count": 4}},
    "extend": {"name": "to extend", "preferences": {"count": 2}, "training": {"epochs": 2}},
    "three_tasks": {
        "name": "three tasks",
        "problem": "sphere3",
        "preferences": {"count": 6},
        "training": {"epochs": 2},
    },
}


#: A reduced MultiMNIST run (real data, a test split, accuracy), when the raw files exist.
DATASET_RUN: dict[str, Any] = {
    "name": "multi-mnist (reduced)",
    "problem": "multi_mnist",
    "problem_options": {"train_size": 256, "test_size": 128},
    "preferences": {"count": 3},
    "training": {"epochs": 2, "batch_size": 64},
}
HAS_DATA = bool(DATA_DIR) and Path(DATA_DIR, "MNIST", "raw").is_dir()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """API and a two-slot CPU worker on a fresh SQLite database, shared by the UI tests."""
    with System.start(tmp_path_factory.mktemp("lab"), devices="cpu,cpu") as system:
        bodies = dict(FIXTURE_RUNS, **({"dataset": DATASET_RUN} if HAS_DATA else {}))
        system.runs = {key: system.create_run(**body)["id"] for key, body in bodies.items()}
        yield system


def _finished(lab: System, key: str) -> dict[str, Any]:
    return lab.wait_finished(lab.runs[key])


@pytest.fixture(scope="session")
def finished_run(lab: System) -> dict[str, Any]:
    """A small concave Pareto MTL run (4 preferences, 4 epochs), trained to the end."""
    return _finished(lab, "finished")


@pytest.fixture(scope="session")
def linear_run(lab: System) -> dict[str, Any]:
    """A finished linear-scalarisation run of the same problem as ``finished_run``."""
    return _finished(lab, "linear")


@pytest.fixture
def extendable_run(lab: System) -> dict[str, Any]:
    """A finished two-preference run that a test may add preference vectors to."""
    return _finished(lab, "extend")


@pytest.fixture
def dataset_run(lab: System) -> dict[str, Any]:
    """A finished reduced MultiMNIST run (skipped without ``PMTL_DATA_DIR``; CI must have it)."""
    require(HAS_DATA, "PMTL_DATA_DIR with MNIST/raw is needed for the MultiMNIST UI test")
    return _finished(lab, "dataset")


@pytest.fixture
def three_task_run(lab: System) -> dict[str, Any]:
    """A finished run of the three-objective ``sphere3`` problem."""
    return _finished(lab, "three_tasks")


@pytest.fixture(autouse=True)
def served_on_loopback() -> Iterator[None]:
    """AppTest runs no server: say the UI is served on 127.0.0.1, as ``pmtl up`` serves it
    (``PMTL_TOKEN`` is honoured only there); a test may set another address."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield
    config.set_option("server.address", before)


@pytest.fixture
def ui_env(lab: System, monkeypatch: pytest.MonkeyPatch) -> System:
    """Point the UI settings (read from ``PMTL_*``) at the lab, signed in by token."""
    monkeypatch.setenv("PMTL_API_URL", lab.api_url)
    monkeypatch.setenv("PMTL_TOKEN", lab.token)
    monkeypatch.setenv("PMTL_POLL_SECONDS", "1")
    monkeypatch.setenv("PMTL_REQUEST_TIMEOUT", "20")
    return lab


@pytest.fixture
def open_page(ui_env: System) -> Callable[..., AppTest]:
    """Run the entrypoint, switch to a page (with query parameters) and run it."""

    def _open(name: str, **query: Any) -> AppTest:
        at = AppTest.from_file(str(ENTRY), default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        for key, value in query.items():
            at.query_params[key] = str(value)
        at.switch_page(PAGES[name]).run()
        return at

    return _open
