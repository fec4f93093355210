"""Fronts from stored points: reference points, non-dominated flags, hypervolume history."""

from __future__ import annotations

import pytest

from backend.app.fronts import (
    LatestPoint,
    default_reference,
    front_hypervolume,
    hypervolume_history,
    latest_points,
    non_dominated_flags,
    parse_reference,
)


def test_reference_precedence_declared_then_dataset_then_derived():
    rows = [[1.0, 4.0], [2.0, -1.0]]
    assert default_reference("function", 2, [9.0, 9.0], rows) == [9.0, 9.0]
    assert default_reference("dataset", 2, None, rows) == [2.0, 2.0]
    assert default_reference("function", 2, None, rows) == pytest.approx([2.2, 4.4])
    # A worst loss of 0 or below still gets a reference strictly above it.
    assert default_reference("function", 1, None, [[0.0], [-5.0]]) == [1e-6]
    assert default_reference("function", 2, None, [[None, 1.0]]) is None


def test_parse_reference_checks_count_and_finiteness():
    assert parse_reference("1, 2.5", 2) == [1.0, 2.5]
    for bad in ("1", "1,2,3", "x,1", "inf,1", "nan,1", ""):
        with pytest.raises(ValueError, match="ref"):
            parse_reference(bad, 2)


def test_non_finite_rows_are_never_non_dominated_and_do_not_count():
    rows = [[1.0, 2.0], [None, 0.0], [2.0, 1.0], [3.0, 3.0]]
    assert non_dominated_flags(rows) == [True, False, True, False]
    assert front_hypervolume(rows, [3.0, 3.0]) == pytest.approx(3.0)
    assert front_hypervolume([], [1.0, 1.0]) == 0.0
    assert front_hypervolume(rows, None) is None


def test_latest_points_keep_the_highest_epoch_per_preference():
    points = [LatestPoint(1, 2, (1.0,)), LatestPoint(1, 1, (5.0,)), LatestPoint(2, 1, (3.0,))]
    latest = latest_points(points)
    assert latest[1].epoch == 2 and latest[2].losses == (3.0,)


def test_history_carries_each_preference_forward_between_its_points():
    points = [
        LatestPoint(1, 1, (2.0, 2.0), 1.0),
        LatestPoint(2, 2, (1.0, 3.0), 2.0),
        LatestPoint(1, 3, (3.5, 3.5), 3.0),  # preference 1 got worse
    ]
    history = hypervolume_history(points, [4.0, 4.0])
    assert [h.epoch for h in history] == [1, 2, 3]
    # At epoch 3 preference 1 is dominated by preference 2, so only (1, 3) counts.
    assert [h.hypervolume for h in history] == pytest.approx([4.0, 5.0, 3.0])
    assert hypervolume_history(points, None) == []
