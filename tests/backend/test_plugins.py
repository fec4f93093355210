"""Problem plugins: an installed package registers a problem through the entry-point group
``pmtl.problems``; the registry, ``GET /problems``, the CLI and a worker treat it as a built-in.

The fixture installs a tiny plugin the way an installer leaves one: a package directory plus
its ``.dist-info`` (METADATA, entry_points.txt) in a temporary site directory, put on
``sys.path`` for this process and on ``PYTHONPATH`` for the processes the tests start. It
also ships broken entries (an import error, a non-spec, a clash with a built-in), which must
be skipped. Everything is removed afterwards and the registry reloaded without the plugin.
"""

from __future__ import annotations

import importlib
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from backend.app import catalogue
from pmtl_core.problems import REGISTRY, describe_problems, get_problem
from pmtl_core.problems.registry import load_plugins
from tests.backend._api import Api
from tests.backend._worker_helpers import worker_settings

PLUGIN = textwrap.dedent(
    '''
    """A tiny problem plugin for the tests: two quadratic bowls."""

    import torch
    from pydantic import Field

    from pmtl_core.problems import FunctionProblem
    from pmtl_core.problems.registry import ProblemOptions, ProblemSpec


    class BowlOptions(ProblemOptions):
        """Options of the bowls."""

        dim: int = Field(3, ge=1, le=50, description="number of variables")


    def make(options):
        return FunctionProblem(
            lambda x: torch.stack([((x - 0.5) ** 2).sum(), ((x + 0.5) ** 2).sum()]), options.dim
        )


    SPEC = ProblemSpec(
        "toy_bowls",
        "function",
        "Two quadratic bowls from a plugin package.",
        BowlOptions,
        make,
        {"optimizer": "sgd", "lr": 0.1, "momentum": 0.0, "steps_per_epoch": 5, "epochs": 3,
         "lr_step": 0},
        (4.0, 4.0),
    )
    NOT_A_SPEC = "just a string"
    CLASH = ProblemSpec("concave", "function", "clash", BowlOptions, make)
    '''
)

ENTRY_POINTS = """\
[pmtl.problems]
toy_bowls = pmtl_toy_plugin:SPEC
toy_missing = pmtl_toy_plugin_absent:SPEC
toy_string = pmtl_toy_plugin:NOT_A_SPEC
concave = pmtl_toy_plugin:CLASH
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """A site directory holding the installed plugin; on sys.path while the tests run."""
    site = tmp_path_factory.mktemp("plugin-site")
    (site / "pmtl_toy_plugin").mkdir()
    (site / "pmtl_toy_plugin" / "__init__.py").write_text(PLUGIN)
    info = site / "pmtl_toy_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pmtl-toy-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    (info / "RECORD").write_text("")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    catalogue._problems.cache_clear()
    try:
        yield site
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("pmtl_toy_plugin", None)
        importlib.invalidate_caches()
        load_plugins()
        catalogue._problems.cache_clear()
        assert "toy_bowls" not in REGISTRY


@pytest.fixture
def plugins(plugin_site, caplog):
    """The registry with the plugin loaded (and the log of the skipped entries)."""
    with caplog.at_level(logging.ERROR, logger="pmtl_core.problems.registry"):
        loaded = load_plugins()
    catalogue._problems.cache_clear()
    return loaded, caplog.text


def test_the_plugin_is_registered_and_broken_entries_are_skipped(plugins):
    loaded, log = plugins
    assert loaded == ["toy_bowls"]
    assert get_problem("toy_bowls", {"dim": 4}).n_tasks == 2
    with pytest.raises(ValueError, match="dim"):
        get_problem("toy_bowls", {"dim": 0})
    assert REGISTRY["concave"].summary != "clash"  # a built-in is never replaced
    assert "toy_missing" in log and "toy_string" in log and "'concave'" in log
    described = {p["name"]: p for p in describe_problems()}
    assert described["toy_bowls"]["options"]["properties"]["dim"]["maximum"] == 50
    assert "toy_missing" not in described and "toy_string" not in described


@pytest.mark.slow  # a fresh interpreter imports torch: ~20 s on 2 busy cores
def test_the_cli_lists_the_plugin(plugin_site):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_site), *sys.path])}
    out = subprocess.run(
        [sys.executable, "-m", "pmtl_core.cli", "problems"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "toy_bowls" in out.stdout and "table" in out.stdout


@pytest.mark.slow  # a real training process: ~30 s on 2 busy cores
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_the_api_lists_and_a_worker_trains_the_plugin_problem(
    plugins, plugin_site, db_url, tmp_path, monkeypatch
):
    from backend.app.worker import run_worker

    # The training process imports the plugin like the API does: from its environment.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_site), *sys.path]))
    with Api.start(db_url, tmp_path) as api:
        listed = {p["name"]: p for p in api.get("/problems").json()}
        assert listed["toy_bowls"]["options"]["properties"]["dim"]["default"] == 3
        assert listed["toy_bowls"]["reference_point"] == [4.0, 4.0]
        run = api.create_run(problem="toy_bowls", problem_options={"dim": 2})
        settings = worker_settings(tmp_path, db_url)
        assert run_worker(settings, "cpu", once=True) == 1
        detail = api.get(f"/runs/{run['id']}").json()
        assert detail["status"] == "finished", detail["jobs"]
        front = api.get(f"/runs/{run['id']}/front", params={"split": "train"}).json()
        assert len(front["points"]) == 3
