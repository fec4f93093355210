"""Indicators checked against moocore, brute-force definitions and hand-derived values.

moocore (a separate C implementation) is the independent reference for hypervolume, the
non-dominated filter, IGD and IGD+; integer grids give a second, counting-based reference for
hypervolume. Point sets are drawn from a small integer grid mixed with real values so that
ties, duplicates and points on or beyond the reference point are frequent.
"""

from __future__ import annotations

import itertools
import math

import moocore
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pmtl_core.indicators import hypervolume, igd, igd_plus, non_dominated, spacing, spread

# `device` is a constant per session, so reusing it across hypothesis examples is safe.
PROPS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_VALUE = st.one_of(st.integers(0, 6).map(float), st.floats(0.0, 8.0, allow_subnormal=False))


@st.composite
def point_sets(draw, m: int, max_n: int = 16, min_n: int = 0) -> np.ndarray:
    """(N, m) points with frequent ties; some rows repeated to create exact duplicates."""
    n = draw(st.integers(min_n, max_n))
    base = draw(hnp.arrays(np.float64, (n, m), elements=_VALUE))
    if n and draw(st.booleans()):
        repeat = draw(st.lists(st.integers(0, n - 1), max_size=4))
        base = np.concatenate([base, base[repeat]])
    return base


@st.composite
def refs(draw, m: int) -> np.ndarray:
    """A reference point inside the range of the points, so some points lie beyond it."""
    return np.array(draw(st.lists(st.floats(2.0, 8.0), min_size=m, max_size=m)))


def dominates(q: list[float], p: list[float]) -> bool:
    """Definition: ``q`` is no worse than ``p`` anywhere and better somewhere."""
    pairs = list(zip(q, p, strict=True))
    return all(a <= b for a, b in pairs) and any(a < b for a, b in pairs)


def brute_dominated(points: np.ndarray) -> np.ndarray:
    rows = points.tolist()
    return np.array([any(dominates(q, p) for q in rows) for p in rows], dtype=bool)


def grid_hypervolume(points: np.ndarray, ref: np.ndarray) -> int:
    """Count the unit cells [c, c+1) below integer ``ref`` whose lower corner some point weakly
    dominates: for integer points that is exactly the dominated volume."""
    cells = itertools.product(*(range(int(r)) for r in ref))
    return sum(1 for c in cells if (points <= np.array(c)).all(axis=1).any())


def reference_hv(points: np.ndarray, ref: np.ndarray) -> float:
    return float(moocore.hypervolume(points, ref=ref)) if len(points) else 0.0


def close(a: float, b: float, rel: float = 1e-9) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=rel * 1e-3)


# --- hypervolume -------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3, 4])
@PROPS
@given(data=st.data())
def test_hypervolume_matches_moocore(m, data, device):
    points = data.draw(point_sets(m))
    ref = data.draw(refs(m))
    expected = reference_hv(points, ref)
    assert close(hypervolume(points, ref), expected)
    assert close(hypervolume(torch.as_tensor(points, device=device), ref), expected)


@pytest.mark.parametrize("m", [2, 3, 4])
@PROPS
@given(data=st.data())
def test_hypervolume_counts_grid_cells(m, data):
    n = data.draw(st.integers(1, 10))
    points = data.draw(hnp.arrays(np.float64, (n, m), elements=st.integers(0, 5).map(float)))
    ref = np.array(data.draw(st.lists(st.integers(1, 5), min_size=m, max_size=m)), float)
    assert hypervolume(points, ref) == pytest.approx(grid_hypervolume(points, ref), abs=1e-9)


@pytest.mark.parametrize("m", [2, 3, 4])
@PROPS
@given(data=st.data())
def test_hypervolume_single_point_is_a_box(m, data):
    point = data.draw(hnp.arrays(np.float64, (1, m), elements=_VALUE))
    ref = data.draw(refs(m))
    box = float(np.prod(ref - point[0])) if (point[0] < ref).all() else 0.0
    assert close(hypervolume(point, ref), box)


@pytest.mark.parametrize("m", [2, 3, 4])
@PROPS
@given(data=st.data())
def test_hypervolume_monotone_and_permutation_invariant(m, data):
    points = data.draw(point_sets(m, min_n=1))
    extra = data.draw(hnp.arrays(np.float64, (1, m), elements=_VALUE))
    ref = data.draw(refs(m))
    base = hypervolume(points, ref)
    assert hypervolume(np.concatenate([points, extra]), ref) >= base * (1 - 1e-12)
    perm = data.draw(st.permutations(range(len(points))))
    assert close(hypervolume(points[list(perm)], ref), base, rel=1e-12)


@pytest.mark.parametrize("m", [2, 3])
def test_hypervolume_large_fronts_match_moocore(m):
    # Hundreds of mutually non-dominated points (a sphere's positive orthant) exercise long
    # staircases, plus a copy of every tenth point.
    rng = np.random.default_rng(m)
    points = np.abs(rng.normal(size=(400, m)))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    points = np.concatenate([points, points[::10]])
    ref = np.full(m, 1.1)
    assert close(hypervolume(points, ref), reference_hv(points, ref), rel=1e-12)


@PROPS
@given(points=point_sets(3, max_n=12, min_n=1))
def test_hypervolume_ignores_dominated_points(points):
    ref = np.full(3, 7.0)
    kept = points[non_dominated(points).numpy()]
    assert close(hypervolume(kept, ref), hypervolume(points, ref), rel=1e-12)


def test_hypervolume_hand_derived_values():
    # Two objectives: (1, 3) and (3, 1) under ref (4, 4) are boxes of 3 x 1 and 1 x 3 that
    # overlap in the unit square [3, 4] x [3, 4]: 3 + 3 - 1 = 5.
    assert hypervolume([[1.0, 3.0], [3.0, 1.0]], [4.0, 4.0]) == pytest.approx(5.0)
    # Three objectives, ref (4, 4, 4): (1, 1, 3) is a 3 x 3 x 1 box (9), (2, 2, 1) a 2 x 2 x 3
    # box (12); they share [2, 4] x [2, 4] x [3, 4] (4): 9 + 12 - 4 = 17.
    assert hypervolume([[1.0, 1.0, 3.0], [2.0, 2.0, 1.0]], [4.0, 4.0, 4.0]) == pytest.approx(17.0)
    # One objective: the segment from the best value to the reference.
    assert hypervolume([[2.5], [1.5]], [4.0]) == pytest.approx(2.5)
    assert hypervolume([[5.0]], [4.0]) == 0.0


def test_hypervolume_edge_cases():
    assert hypervolume(np.zeros((0, 3)), [1.0, 1.0, 1.0]) == 0.0
    assert hypervolume(torch.empty(0), [1.0, 1.0]) == 0.0
    # On the reference point in one coordinate: not strictly better, contributes nothing.
    assert hypervolume([[1.0, 0.0], [0.0, 2.0]], [1.0, 2.0]) == 0.0
    assert hypervolume([[math.inf, 0.0], [0.0, 1.0]], [2.0, 2.0]) == pytest.approx(2.0)
    assert hypervolume([[-math.inf, 0.0]], [2.0, 2.0]) == math.inf


def test_hypervolume_rejects_bad_input():
    with pytest.raises(ValueError, match="ref has 3 coordinates but points have 2"):
        hypervolume([[1.0, 2.0]], [3.0, 3.0, 3.0])
    with pytest.raises(ValueError, match="points contains NaN"):
        hypervolume([[1.0, math.nan]], [3.0, 3.0])
    with pytest.raises(ValueError, match="ref contains NaN"):
        hypervolume([[1.0, 1.0]], [3.0, math.nan])
    with pytest.raises(ValueError, match="ref must be finite"):
        hypervolume([[1.0, 1.0]], [3.0, math.inf])
    with pytest.raises(ValueError, match=r"points must have shape \(N, m\)"):
        hypervolume(np.ones((2, 2, 2)), [3.0, 3.0])
    with pytest.raises(ValueError, match=r"ref must have shape \(m,\)"):
        hypervolume([[1.0, 1.0]], [[3.0, 3.0]])


# --- non-dominated filter ----------------------------------------------------------------------


@pytest.mark.parametrize("m", [1, 2, 3, 5])
@PROPS
@given(data=st.data())
def test_non_dominated_matches_definition_and_moocore(m, data, device):
    points = data.draw(point_sets(m))
    mask = non_dominated(torch.as_tensor(points, device=device))
    assert mask.dtype == torch.bool
    assert mask.device.type == device.type
    mask = mask.cpu().numpy()
    np.testing.assert_array_equal(mask, ~brute_dominated(points))
    np.testing.assert_array_equal(non_dominated(points).numpy(), mask)  # numpy input
    if len(points) == 0:
        return
    # moocore keeps every copy with keep_weakly=True; by default only the first copy.
    np.testing.assert_array_equal(moocore.is_nondominated(points, keep_weakly=True), mask)
    first_copies = moocore.is_nondominated(points)
    assert not (first_copies & ~mask).any()
    kept = {tuple(r) for r in points[first_copies]}
    assert kept == {tuple(r) for r in points[mask]}


def test_non_dominated_small_cases():
    assert non_dominated(torch.empty(0, 2)).shape == (0,)
    assert non_dominated(np.zeros((0, 3))).tolist() == []
    assert non_dominated([[1.0, 2.0]]).tolist() == [True]
    assert non_dominated([[1.0, 2.0], [1.0, 2.0], [1.0, 3.0]]).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="points contains NaN"):
        non_dominated([[math.nan, 1.0]])


# --- IGD, IGD+ ---------------------------------------------------------------------------------


@pytest.mark.parametrize("m", [2, 3])
@PROPS
@given(data=st.data())
def test_igd_and_igd_plus_match_moocore(m, data):
    points = data.draw(point_sets(m, min_n=1))
    front = data.draw(point_sets(m, min_n=1))
    assert close(igd(points, front), float(moocore.igd(points, ref=front)))
    assert close(igd_plus(points, front), float(moocore.igd_plus(points, ref=front)))
    assert 0.0 <= igd_plus(points, front) <= igd(points, front) + 1e-12


@PROPS
@given(front=point_sets(3, min_n=1), extra=point_sets(3), data=st.data())
def test_igd_zero_when_points_contain_front(front, extra, data, device):
    points = np.concatenate([front, extra])
    points = points[list(data.draw(st.permutations(range(len(points)))))]
    assert igd(torch.as_tensor(points, device=device), front) == 0.0
    assert igd_plus(points, front) == 0.0


def test_igd_hand_derived_and_edge_cases():
    # Front {(0, 1), (1, 0)}, one point (1, 1): each front point is at distance 1 -> IGD 1.
    # IGD+ only counts where the point is worse: (1, 1) vs (0, 1) is worse by (1, 0) -> 1 too.
    # Point (0.5, 0.5) is, against either front point, better by 0.5 in one objective and worse
    # by 0.5 in the other: IGD = sqrt(0.5 ** 2 + 0.5 ** 2) = sqrt(0.5), IGD+ = 0.5.
    front = [[0.0, 1.0], [1.0, 0.0]]
    assert igd([[1.0, 1.0]], front) == pytest.approx(1.0)
    assert igd_plus([[1.0, 1.0]], front) == pytest.approx(1.0)
    assert igd([[0.5, 0.5]], front) == pytest.approx(math.sqrt(0.5))
    assert igd_plus([[0.5, 0.5]], front) == pytest.approx(0.5)
    assert igd(np.zeros((0, 2)), front) == math.inf
    assert igd_plus(torch.empty(0), front) == math.inf
    with pytest.raises(ValueError, match="front is empty"):
        igd([[1.0, 1.0]], np.zeros((0, 2)))
    with pytest.raises(ValueError, match="points have 3 objectives but front has 2"):
        igd_plus([[1.0, 1.0, 1.0]], front)


# --- spacing and spread ------------------------------------------------------------------------


def brute_spacing(points: np.ndarray) -> float:
    """Schott's formula written out with loops."""
    n = len(points)
    d = [
        min(
            sum(abs(a - b) for a, b in zip(points[i], points[j], strict=True))
            for j in range(n)
            if j != i
        )
        for i in range(n)
    ]
    mean = sum(d) / n
    return math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))


@PROPS
@given(points=point_sets(3, min_n=2))
def test_spacing_matches_definition(points):
    assert close(spacing(points), brute_spacing(points))


def test_spacing_hand_derived_and_edge_cases():
    # (0, 3), (1, 2), (3, 0): nearest L1 distances 2, 2, 4, mean 8/3, squared deviations
    # 4/9 + 4/9 + 16/9 = 24/9, divided by N - 1 = 2 gives 4/3.
    assert spacing([[0.0, 3.0], [1.0, 2.0], [3.0, 0.0]]) == pytest.approx(math.sqrt(4 / 3))
    evenly = [[float(i), 10.0 - i] for i in range(6)]
    assert spacing(evenly) == pytest.approx(0.0, abs=1e-12)
    assert spacing([[1.0, 2.0]]) == 0.0
    assert spacing(np.zeros((0, 2))) == 0.0


def test_spread_hand_derived():
    # (0, 4), (1, 3), (4, 0): gaps sqrt(2) and 3 sqrt(2), mean 2 sqrt(2), absolute deviations
    # sum to 2 sqrt(2), so without a front Delta = 2 sqrt(2) / (2 * 2 sqrt(2)) = 1/2.
    pts = [[1.0, 3.0], [4.0, 0.0], [0.0, 4.0]]
    assert spread(pts) == pytest.approx(0.5)
    # Front extremes (0, 5) and (5, 0) are each at distance 1 from the end points:
    # Delta = (1 + 1 + 2 sqrt(2)) / (1 + 1 + 2 * 2 sqrt(2)).
    front = [[0.0, 5.0], [2.5, 2.5], [5.0, 0.0]]
    r2 = math.sqrt(2)
    assert spread(pts, front) == pytest.approx((2 + 2 * r2) / (2 + 4 * r2))


def test_spread_even_and_edge_cases():
    line = np.array([[i / 4, 1 - i / 4] for i in range(5)])
    assert spread(line, line) == pytest.approx(0.0, abs=1e-12)
    assert spread(line) == pytest.approx(0.0, abs=1e-12)
    # Simplex lattice of three objectives covering its own corners: every nearest-neighbour
    # distance is the same and the extremes are hit, so the generalised spread is 0.
    lattice = np.array([c for c in itertools.product(range(4), repeat=3) if sum(c) == 3]) / 3
    assert spread(lattice, lattice) == pytest.approx(0.0, abs=1e-12)
    assert spread([[0.3, 0.7]], line) == pytest.approx(1.0)
    assert spread([[0.3, 0.7]]) == 0.0
    assert spread(np.zeros((0, 2))) == 0.0
    assert spread(np.zeros((0, 2)), line) == 1.0
    with pytest.raises(ValueError, match="at least 2 objectives"):
        spread([[1.0], [2.0]])
    with pytest.raises(ValueError, match="front has 2 objectives but points have 3"):
        spread(lattice, line)


@pytest.mark.parametrize("m", [2, 3])
@PROPS
@given(data=st.data())
def test_spread_permutation_and_scale_invariant(m, data):
    points = data.draw(point_sets(m, min_n=1))
    front = data.draw(point_sets(m, min_n=1))
    scale = data.draw(st.floats(0.1, 10.0))
    value = spread(points, front)
    assert value >= 0.0
    perm = list(data.draw(st.permutations(range(len(points)))))
    assert close(spread(points[perm], front), value, rel=1e-9)
    assert close(spread(points * scale, front * scale), value, rel=1e-9)


def test_the_reference_point_rule_is_the_problems_then_two_then_past_the_worst_losses():
    from pmtl_core.indicators import reference_point

    rows = [[1.0, 4.0], [2.0, -1.0], [None, 9.0], [float("nan"), 0.0]]
    assert reference_point("function", 2, [9.0, 9.0], rows) == [9.0, 9.0]
    assert reference_point("dataset", 2, None, rows) == [2.0, 2.0]
    assert reference_point("dataset", 2, [1.0], rows) == [2.0, 2.0]  # wrong length: ignored
    # function problems: just past the worst finite losses (10 %, at least 1e-6)
    assert reference_point("function", 2, None, rows) == pytest.approx([2.2, 4.4])
    assert reference_point("function", 1, None, [[0.0], [-5.0]]) == [1e-6]
    assert reference_point("function", 2, None, [[None, 1.0]]) is None
    # every finite point is strictly inside the box, so each contributes to the hypervolume
    ref = reference_point("function", 2, None, rows)
    assert hypervolume([[2.0, 4.0]], ref) > 0
