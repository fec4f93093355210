"""Pure building blocks of the UI: preference designs, schema forms, chart tables, charts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from frontend.lib import charts, preference_charts, preferences
from frontend.lib.colours import preference_colours, ramp
from frontend.lib.front_data import (
    current_points,
    metric_frame,
    neighbour_gaps,
    ray_segments,
    trajectory_segments,
)
from frontend.lib.models import MetricPoint
from frontend.lib.schema_form import fields, parse_text, validate_value
from frontend.lib.views.preference_input import add_picked
from frontend.lib.views.run_parts import favours

# ---------------------------------------------------------------- preferences


@pytest.mark.parametrize(("m", "k"), [(2, 1), (2, 5), (3, 1), (3, 10), (4, 7), (5, 30)])
def test_even_designs_are_unit_non_negative_and_distinct(m, k):
    vectors = np.array(preferences.spread_evenly(m, k))
    assert vectors.shape == (k, m)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1)
    assert (vectors >= 0).all()
    assert len({tuple(np.round(v, 9)) for v in vectors}) == k


def test_two_task_design_is_the_papers_quarter_circle():
    angles = [math.degrees(math.atan2(v[1], v[0])) for v in preferences.spread_evenly(2, 4)]
    assert angles == pytest.approx([0, 30, 60, 90])


def test_validate_rows_normalises_and_explains_bad_rows():
    vectors, errors = preferences.validate_rows(
        [[2, 0], [1, -1], [0, 0], [None, None], [float("nan"), 1], [float("inf"), 1], [3, 4]], 2
    )
    assert vectors == [[1.0, 0.0], [0.6, 0.8]]
    assert errors == [
        "row 2: has a negative entry (directions lie in the positive orthant)",
        "row 3: is all zeros; at least one entry must be positive",
        "row 5: has an empty entry",
        "row 6: has an infinite entry",
    ]


def test_between_and_near_interpolate_by_angle():
    mid = preferences.between([1, 0], [0, 1], 2)
    assert [round(math.degrees(math.atan2(v[1], v[0]))) for v in mid] == [30, 60]
    near = preferences.near([1, 1], [[1, 0], [0, 1], [0.2, 1]])
    angles = sorted(round(math.degrees(math.atan2(v[1], v[0])), 1) for v in near)
    assert angles == pytest.approx([22.5, 61.7], abs=0.1)  # half-way to each side's neighbour
    three = preferences.between([1, 0, 0], [0, 0, 1], 1)[0]
    assert three == pytest.approx([math.sqrt(0.5), 0, math.sqrt(0.5)])


def test_picker_clicks_add_each_direction_once():
    picked: list[list[float]] = []
    assert add_picked(picked, {"pick_angle": [{"angle": 30}]}) == 1
    assert add_picked(picked, {"pick_angle": [{"angle": 30}]}) == 0
    assert add_picked(picked, {"other": [{"angle": 10}]}) == 0
    assert picked == [pytest.approx([math.sqrt(3) / 2, 0.5])]


def test_favours_names_the_task_whose_loss_is_kept_low():
    assert favours([1.0, 0.0], ["a", "b"]).startswith("favours b")
    assert favours([0.0, 1.0], ["a", "b"]).startswith("favours a")
    assert favours([0.7071, 0.7071], ["a", "b"]) == "balanced between all tasks"


# ---------------------------------------------------------------- schema forms

SCHEMA = {
    "properties": {
        "eps": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.0},
        "r_min": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.1},
        "steps": {"type": "integer", "minimum": 0, "default": 200},
        "mode": {"type": "string", "enum": ["a", "b"], "default": "a"},
        "data_dir": {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None},
        "flag": {"type": "boolean", "default": False},
    }
}


def test_fields_unwrap_optional_values_and_keep_defaults():
    by_name = {f.name: f for f in fields(SCHEMA)}
    assert [f.kind for f in by_name.values()] == [
        "number",
        "number",
        "integer",
        "enum",
        "string",
        "boolean",
    ]
    assert by_name["data_dir"].optional and by_name["data_dir"].default is None
    assert by_name["steps"].default == 200


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("eps", "-0.1", "must be ≥ 0"),
        ("eps", "2", "must be ≤ 1"),
        ("r_min", "0", "must be > 0"),
        ("r_min", "1", "must be < 1"),
        ("steps", "2.5", "'2.5' is not a whole number"),
        ("eps", "abc", "'abc' is not a number"),
        ("eps", "nan", "must be a finite number"),
        ("steps", "", "a value is required"),
    ],
)
def test_invalid_values_are_explained(name, text, message):
    field = {f.name: f for f in fields(SCHEMA)}[name]
    value, error = parse_text(text, field)
    assert (error or validate_value(value, field)) == message


def test_valid_values_parse():
    by_name = {f.name: f for f in fields(SCHEMA)}
    assert parse_text("1e-3", by_name["eps"]) == (0.001, None)
    assert parse_text("300", by_name["steps"]) == (300, None)
    assert parse_text("", by_name["data_dir"]) == (None, None)
    assert validate_value("c", by_name["mode"]) == "must be one of a, b"


# ---------------------------------------------------------------- chart tables


def _points() -> list[MetricPoint]:
    out, seq = [], 0
    for epoch in (1, 2, 3):
        for pref, (a, b) in {1: (1.0, 0.2), 2: (0.5, 0.5), 3: (0.2, 1.0)}.items():
            seq += 1
            out.append(
                MetricPoint(
                    seq=seq,
                    preference_id=pref,
                    epoch=epoch,
                    split="train",
                    losses=[a / epoch, b / epoch if pref != 3 or epoch < 3 else None],
                    metrics={"accuracy": [0.5, 0.6]},
                    wall_time=float(epoch),
                )
            )
    return out


def test_current_points_take_the_newest_epoch_per_preference():
    frame = metric_frame(_points(), 2)
    current = current_points(frame, "train")
    assert list(current["preference_id"]) == [1, 2, 3]
    assert list(current["epoch"]) == [3, 3, 3]
    assert math.isnan(current.loc[2, "l1"])  # a diverged (null) loss stays missing
    assert current_points(frame, "test").empty
    assert list(metric_frame([], 2).columns[-2:]) == ["l0", "l1"]


def test_trajectories_fade_in_towards_the_newest_epoch():
    segments = trajectory_segments(metric_frame(_points(), 2), "train", "l0", "l1")
    one = segments[segments["preference_id"] == 1]
    assert len(one) == 2 and one["opacity"].is_monotonic_increasing
    assert (segments["preference_id"] == 3).sum() == 1  # the segment to a missing value is dropped


def test_rays_end_on_the_plot_border_and_gaps_are_widest_first():
    rays = ray_segments({1: [1, 0], 2: [0.6, 0.8]}, x_max=2.0, y_max=1.0)
    assert rays[["x2", "y2"]].to_numpy().tolist() == [[2.0, 0.0], pytest.approx([0.75, 1.0])]
    points = pd.DataFrame(
        {"preference_id": [1, 2, 3], "angle": [0, 45, 90], "l0": [1, 0.9, 0], "l1": [0, 0.1, 1]}
    )
    gaps = neighbour_gaps(points, "l0", "l1")
    assert (gaps.loc[0, "left"], gaps.loc[0, "right"]) == (2, 3)


def test_colours_follow_the_direction_of_preferences():
    colours = preference_colours({7: [0, 1], 3: [1, 0], 5: [0.7, 0.7]})
    assert colours[3] == ramp(0) and colours[7] == ramp(1)


# ---------------------------------------------------------------- charts (valid Vega-Lite)


def test_front_chart_is_valid_and_selectable():
    frame = metric_frame(_points(), 2)
    current = current_points(frame, "train").assign(
        x=lambda d: d["l0"], y=lambda d: d["l1"], non_dominated=True, status="finished"
    )
    spec = charts.front_chart(
        current,
        labels={1: "#1", 2: "#2", 3: "#3"},
        colours=preference_colours({1: [1, 0], 2: [0.7, 0.7], 3: [0, 1]}),
        x_title="loss of a",
        y_title="loss of b",
        x_domain=(0, 1.1),
        y_domain=(0, 1.1),
        segments=trajectory_segments(frame, "train", "l0", "l1"),
        rays=ray_segments({1: [1, 0], 2: [0.7, 0.7], 3: [0, 1]}, 1.1, 1.1),
        selected=2,
    ).to_dict()
    assert charts.PICK in json_names(spec)
    assert len(spec["layer"]) == 5  # rays, trajectories, front line, points, selected ring


def json_names(spec) -> list[str]:
    params = spec.get("params", []) + [
        p for lay in spec.get("layer", []) for p in lay.get("params", [])
    ]
    return [p["name"] for p in params]


def test_preference_and_many_task_charts_are_valid():
    assert preference_charts.PICK_ANGLE in json_names(
        preference_charts.picker_chart([[1, 0]], ["a", "b"], existing=[[0, 1]]).to_dict()
    )
    preference_charts.ray_preview([[1, 0, 0], [0.5, 0.5, 0.7]], ["a", "b", "c"]).to_dict()
    data = pd.DataFrame({"p": ["x", "y"], "l0": [1, 2], "l1": [2, 1], "l2": [1, 1]})
    colours = {"x": "#000000", "y": "#ff0000"}
    charts.scatter_matrix(data, ["l0", "l1", "l2"], colour_field="p", colours=colours).to_dict()
    charts.parallel_coordinates(
        data, ["l0", "l1", "l2"], colour_field="p", colours=colours
    ).to_dict()
    history = pd.DataFrame({"epoch": [1, 2], "hypervolume": [0.1, 0.2], "wall_time": [1.0, 2.0]})
    charts.hypervolume_chart(history).to_dict()
