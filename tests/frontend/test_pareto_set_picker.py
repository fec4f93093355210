"""The trade-off picker of a psl run: a slider or a simplex moves a point along its front."""

from __future__ import annotations

import json
import math

import pytest

from frontend.lib.models import Evaluation
from frontend.lib.views.pareto_set_picker import (
    examples_note,
    picker_fetchers,
    preference_grid,
    simplex_xy,
    two_task_preference,
)
from pmtl_core.export import load_model
from pmtl_core.problems.registry import get_problem
from tests.frontend._apptest import no_exception, texts


@pytest.fixture(scope="module")
def psl_runs(lab) -> dict[str, dict]:
    """Finished psl runs of a two-task and a three-task function problem."""
    two = lab.create_run(
        name="psl two", method="psl", preferences={"count": 3}, training={"epochs": 2}
    )
    three = lab.create_run(
        name="psl three",
        problem="sphere3",
        method="psl",
        preferences={"count": 3},
        training={"epochs": 2},
    )
    return {"two": lab.wait_finished(two["id"]), "three": lab.wait_finished(three["id"])}


@pytest.mark.parametrize("m", [2, 3, 4])
def test_the_front_grid_is_about_100_distinct_valid_preferences(m):
    grid = preference_grid(m)
    assert 100 <= len(grid) <= 130 and len({tuple(v) for v in grid}) == len(grid)
    assert all(len(v) == m and min(v) >= 0 and max(v) > 0 for v in grid)
    if m == 2:  # evenly spaced angles strictly inside the quarter circle
        angles = [math.degrees(math.atan2(v[1], v[0])) for v in grid]
        assert angles == sorted(angles) and 0 < angles[0] < 1 and 89 < angles[-1] < 90
    else:  # a lattice of the simplex: weights sum to 1
        assert all(sum(v) == pytest.approx(1) for v in grid)


def test_the_page_says_when_a_point_is_an_estimate_on_part_of_the_split():
    def note(samples, size):
        body = {"epoch": 3, "split": "test", "samples": samples, "split_size": size}
        return examples_note(Evaluation.model_validate({**body, "points": []}))

    assert note(500, 20000) == "an estimate on 500 of 20,000 test examples"
    assert note(20000, 20000) == "all 20,000 test examples"
    assert note(None, None) == ""  # a function problem has no examples


def test_simplex_corners_and_slider_ends_are_the_single_tasks():
    assert simplex_xy([1, 0, 0]) == pytest.approx((0, 0))
    assert simplex_xy([0, 1, 0]) == pytest.approx((1, 0))
    assert simplex_xy([0, 0, 1]) == pytest.approx((0.5, math.sqrt(3) / 2))
    assert two_task_preference(0) == pytest.approx([1, 0])
    assert two_task_preference(90) == pytest.approx([0, 1], abs=1e-12)


def test_a_two_task_psl_run_page_moves_a_point_with_the_slider(open_page, psl_runs, lab):
    run_id = psl_runs["two"]["id"]
    at = open_page("run_detail", run=run_id)
    no_exception(at)
    assert "Any trade-off of the learned front" in [s.value for s in at.subheader]
    slider = at.slider(key=f"psl.{run_id}.angle")
    assert slider.value == 45.0
    before = [d.value for d in at.dataframe if list(d.value.index) == ["f1", "f2"]][-1]
    slider.set_value(10.0).run()
    no_exception(at)
    after = [d.value for d in at.dataframe if list(d.value.index) == ["f1", "f2"]][-1]
    # the point moved along the front: more weight on f1 lets f1's loss grow
    assert after["loss"]["f1"] > before["loss"]["f1"]
    assert "f1 0.985, f2 0.174" in texts(at)
    # the downloads are that preference's network
    weights, config = picker_fetchers(
        lab.api_url, lab.token, 20.0, run_id, two_task_preference(10.0)
    )
    model = load_model(json.loads(config()), weights())
    losses = get_problem("concave").evaluate(model().detach()[None])[0]
    assert losses.tolist() == pytest.approx(list(after["loss"]), abs=1e-4)


def test_a_three_task_psl_run_offers_a_clickable_simplex(open_page, psl_runs):
    run_id = psl_runs["three"]["id"]
    at = open_page("run_detail", run=run_id)
    no_exception(at)
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    titles = [json.dumps(s.get("title", "")) + json.dumps(s.get("layer", "")) for s in specs]
    assert any("Click a preference" in t for t in titles)
    assert any("The learned front (100 preferences)" in t for t in titles)
    assert "f1 0.577, f2 0.577, f3 0.577" in texts(at)  # unit vectors, as everywhere


def test_runs_of_one_model_per_preference_have_no_picker(open_page, finished_run):
    at = open_page("run_detail", run=finished_run["id"])
    no_exception(at)
    assert "Any trade-off of the learned front" not in [s.value for s in at.subheader]
