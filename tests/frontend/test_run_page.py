"""Run page: the solution panel and its download, adding preferences, cancel, delete, errors."""

from __future__ import annotations

import json

import pytest

from frontend.lib.views.solution_panel import fetchers
from pmtl_core.export import load_model
from tests.frontend._apptest import no_exception, texts


def _served(lab, run_id: int, pref_id: int) -> tuple[bytes, dict]:
    """What the two download buttons serve when clicked (their deferred callables)."""
    pinned: dict = {}
    weights, config = fetchers(lab.api_url, lab.token, 20.0, run_id, pref_id, pinned)
    return weights(), json.loads(config())


def test_finished_run_shows_front_hypervolume_and_jobs(open_page, finished_run):
    run_id = finished_run["id"]
    at = open_page("run_detail", run=run_id)
    no_exception(at)
    assert at.title[0].value == f"Run #{run_id} · finished fixture"
    text = texts(at)
    assert "16 metric points" in text and "not polling" in text
    assert "current hypervolume" in [m.label for m in at.metric]
    jobs = [p.proto.text for p in at.get("progress")]
    assert len(jobs) == 1 and ":green-badge[finished] on **cpu**" in jobs[0], jobs
    # The front is an altair chart with the point selection the page listens to.
    charts = list(at.get("vega_lite_chart"))
    spec = json.loads(charts[0].proto.spec)
    params = spec.get("params", []) + [p for lay in spec["layer"] for p in lay.get("params", [])]
    assert "pick" in [p.get("name") for p in params]
    assert spec["usermeta"]["embedOptions"]["renderer"] == "svg"
    assert at.radio(key=f"run.{run_id}.split").options == ["train"]  # a function problem
    assert "Hypervolume (train)" in text and "Hypervolume (test)" not in text
    # The header reads the points the chart draws: 4 epochs reached, and the run's state.
    assert "epoch 4/4" in text and ":green-badge[finished]" in text
    # One number per preference vector: the API's id, everywhere on the page.
    ids = [p["id"] for p in finished_run["preferences"]]
    assert f"preferences {', '.join(f'#{i}' for i in ids)}" in jobs[0]
    labels = at.selectbox(key=f"run.{run_id}.selected").options
    assert [label.split()[0] for label in labels[1:]] == [f"#{i}" for i in ids]


def test_selecting_a_point_opens_the_solution_panel_and_the_model_downloads(
    open_page, finished_run, lab
):
    run_id = finished_run["id"]
    pref = finished_run["preferences"][1]
    at = open_page("run_detail", run=run_id)
    at.selectbox(key=f"run.{run_id}.selected").set_value(pref["id"]).run()
    no_exception(at)
    assert f"Solution #{pref['id']} (0.87, 0.50)" in [s.value for s in at.subheader]
    text = texts(at)
    assert "favours f2" in text
    assert f"run{run_id}-pref{pref['id']}-model.safetensors" in text
    tables = [d.value for d in at.dataframe if list(d.value.index) == ["f1", "f2"]]
    assert len(tables) == 1 and list(tables[0].columns) == ["train loss (epoch 4)"]
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Download model (safetensors)", "Download config (JSON)"]

    # What the buttons serve when clicked: fetched from the API then, one checkpoint.
    weights, config = _served(lab, run_id, pref["id"])
    model = load_model(config, weights)
    assert tuple(model().shape) == (20,)  # a concave solution: 20 decision variables
    assert config["preference"] == pytest_approx(pref["vector"]) and config["epoch"] == 4


def pytest_approx(values):
    import pytest

    return pytest.approx(values, abs=1e-6)


def test_add_preference_vectors_between_neighbours(open_page, lab, extendable_run):
    run = extendable_run
    at = open_page("run_detail", run=run["id"])
    at.radio(key=f"run.{run['id']}.add_mode.0").set_value("Between two neighbouring solutions")
    at.run()
    no_exception(at)
    ids = sorted(p["id"] for p in run["preferences"])
    gap = at.selectbox(key=f"run.{run['id']}.add_gap.0")
    assert f"#{ids[0]} (1.00, 0.00) ↔ #{ids[1]} (0.00, 1.00)" in gap.options[0]
    at.number_input(key=f"run.{run['id']}.add_between_n.0").set_value(2).run()
    at.button(key=f"run.{run['id']}.add_submit").click().run()
    no_exception(at)
    # The form starts afresh: nothing left to submit twice, the button is off.
    assert at.radio(key=f"run.{run['id']}.add_mode.1").value == "Around the chosen solution"
    assert at.button(key=f"run.{run['id']}.add_submit").disabled
    detail = lab.api("GET", f"/runs/{run['id']}").json()
    assert detail["n_preferences"] == 4 and len(detail["jobs"]) == 2
    angles = sorted(round(_angle(p["vector"])) for p in detail["preferences"])
    assert angles == [0, 30, 60, 90]
    assert "Job " in " ".join(p.proto.text for p in at.get("progress"))
    assert len(at.get("progress")) == 2


def _angle(v):
    import math

    return math.degrees(math.atan2(v[1], v[0]))


def test_cancel_then_delete_with_confirmation(open_page, lab):
    run = lab.create_run(name="to cancel", training={"epochs": 5000, "steps_per_epoch": 50})
    at = open_page("run_detail", run=run["id"])
    at.button(key=f"run.{run['id']}.cancel").click().run()
    no_exception(at)
    lab_run = lab.api("GET", f"/runs/{run['id']}").json()
    assert lab_run["status"] in ("cancelled", "running")  # a running job stops between batches

    at.button(key=f"run.{run['id']}.delete").click().run()
    assert "This cannot be undone" in texts(at)
    assert lab.api("GET", f"/runs/{run['id']}").status_code == 200  # nothing deleted yet
    at.button(key=f"run.{run['id']}.delete_yes").click().run()
    no_exception(at)
    assert at.title[0].value == "Runs"
    assert f"Run #{run['id']} deleted." in texts(at)
    assert lab.api("GET", f"/runs/{run['id']}").status_code == 404


def test_unknown_run_is_a_readable_error(open_page):
    at = open_page("run_detail", run=987654)
    no_exception(at)
    assert at.error[0].value == "Could not load run #987654: run 987654 not found"


@pytest.mark.data
def test_dataset_run_has_test_split_and_accuracy_view(open_page, dataset_run, lab):
    run_id = dataset_run["id"]
    at = open_page("run_detail", run=run_id)
    no_exception(at)
    assert at.radio(key=f"run.{run_id}.split").options == ["test", "train"]
    assert at.radio(key=f"run.{run_id}.view").options == ["loss", "accuracy"]
    assert "Hypervolume (test)" in texts(at)
    at.radio(key=f"run.{run_id}.view").set_value("accuracy").run()
    no_exception(at)
    spec = at.get("vega_lite_chart")[0].proto.spec
    assert "accuracy of top_left" in spec and "accuracy of bottom_right" in spec
    assert "Rays are directions in loss space" in texts(at)
    at.selectbox(key=f"run.{run_id}.selected").set_value(dataset_run["preferences"][0]["id"]).run()
    no_exception(at)
    tables = [d.value for d in at.dataframe if list(d.value.index) == ["top_left", "bottom_right"]]
    assert list(tables[0].columns) == [
        "test loss (epoch 2)",
        "test accuracy (epoch 2)",
        "train loss (epoch 2)",
        "train accuracy (epoch 2)",
    ]
    weights, config = _served(lab, run_id, dataset_run["preferences"][0]["id"])
    model = load_model(config, weights)
    assert sum(p.numel() for p in model.parameters()) > 1000  # a LeNet-style network
