"""Preference designs, validation and the direction-to-weights conversion.

References are built independently here: the paper's quarter-circle angles with ``math``, and a
Das–Dennis lattice enumerated by recursion (not through ``preferences.das_dennis``).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmtl_core.preferences import MAX_PREFERENCES, das_dennis, to_weights, uniform, validate

PROPS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def lattice(m: int, divisions: int) -> torch.Tensor:
    """Every vector of ``m`` non-negative multiples of ``1/divisions`` summing to 1."""
    rows: list[list[int]] = []

    def extend(prefix: list[int], left: int) -> None:
        if len(prefix) == m - 1:
            rows.append([*prefix, left])
            return
        for a in range(left + 1):
            extend([*prefix, a], left - a)

    extend([], divisions)
    return torch.tensor(rows, dtype=torch.float64) / divisions


def rounded_rows(t: torch.Tensor) -> set[tuple[float, ...]]:
    return {tuple(r) for r in t.round(decimals=9).tolist()}


def min_angle(u: torch.Tensor) -> float:
    """Smallest angle between two distinct rows (radians)."""
    u = u.double() / u.double().norm(dim=1, keepdim=True)
    cos = (u @ u.T).clamp(-1, 1)
    cos.fill_diagonal_(-1)
    return math.acos(float(cos.max()))


# --- uniform -----------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5, 8, 17, MAX_PREFERENCES])
def test_two_tasks_follow_the_paper(k):
    """Pareto MTL's design: (cos t, sin t), t = j (pi/2) / (k - 1) for j = 0 .. k - 1."""
    u = uniform(2, k, dtype=torch.float64)
    expected = torch.tensor(
        [
            [math.cos(j * math.pi / 2 / (k - 1)), math.sin(j * math.pi / 2 / (k - 1))]
            for j in range(k)
        ],
        dtype=torch.float64,
    )
    assert u.shape == (k, 2)
    torch.testing.assert_close(u, expected.clamp_min(0), atol=1e-12, rtol=0)
    torch.testing.assert_close(u.norm(dim=1), torch.ones(k, dtype=torch.float64))
    assert (u >= 0).all()


def test_two_tasks_single_vector_is_balanced():
    torch.testing.assert_close(uniform(2, 1), torch.full((1, 2), math.sqrt(0.5)))


@settings(PROPS, max_examples=30)
@given(m=st.integers(3, 6), k=st.integers(1, 60))
def test_many_tasks_unit_nonnegative_distinct_spread(m, k):
    u = uniform(m, k, dtype=torch.float64)
    assert u.shape == (k, m)
    assert (u >= 0).all()
    torch.testing.assert_close(u.norm(dim=1), torch.ones(k, dtype=torch.float64))
    if k == 1:
        torch.testing.assert_close(u, torch.full((1, m), 1 / math.sqrt(m), dtype=torch.float64))
        return
    assert len(rounded_rows(u)) == k
    angle = min_angle(u)
    # Not worse than the smallest Das-Dennis lattice with at least k points (a k-subset of a
    # lattice can keep its spacing) ...
    h_up = next(h for h in range(1, 100) if math.comb(h + m - 1, m - 1) >= k)
    assert angle >= min_angle(lattice(m, h_up)) * (1 - 1e-9)
    # ... and not far below the largest lattice with at most k points, which has fewer points
    # to place and so a wider spacing (farthest-point selection is within a factor of 2).
    h_down = max(h for h in range(1, 100) if math.comb(h + m - 1, m - 1) <= k) if k >= m else 0
    if h_down:
        assert angle >= 0.45 * min_angle(lattice(m, h_down))


@settings(PROPS, max_examples=20)
@given(m=st.integers(3, 6), extra=st.integers(0, 30))
def test_corners_included_when_k_at_least_m(m, extra):
    u = uniform(m, m + extra, dtype=torch.float64)
    for i in range(m):
        corner = torch.zeros(m, dtype=torch.float64)
        corner[i] = 1.0
        assert torch.isclose(u, corner, atol=1e-12).all(dim=1).any(), f"corner {i} missing"


@pytest.mark.parametrize(("m", "divisions"), [(1, 0), (2, 4), (3, 1), (3, 5), (5, 3)])
def test_das_dennis_is_the_full_lattice(m, divisions):
    design = das_dennis(m, divisions)
    assert design.shape == (math.comb(divisions + m - 1, m - 1), m)
    if divisions:
        assert rounded_rows(design) == rounded_rows(lattice(m, divisions))


def test_uniform_rejects_bad_sizes():
    for m, k in [(0, 3), (3, 0), (2, MAX_PREFERENCES + 1), (1, 2)]:
        with pytest.raises(ValueError):
            uniform(m, k)


# --- validate ----------------------------------------------------------------------------------


@PROPS
@given(
    rows=st.lists(
        st.lists(st.floats(0.0, 1e6, allow_subnormal=False), min_size=3, max_size=3).filter(
            lambda r: max(r) > 1e-3
        ),
        min_size=1,
        max_size=8,
    )
)
def test_validate_returns_unit_rows_in_the_same_direction(rows):
    v = torch.tensor(rows, dtype=torch.float64)
    u = validate(v, 3)
    assert u.shape == v.shape
    torch.testing.assert_close(u.double().norm(dim=1), torch.ones(len(rows), dtype=torch.float64))
    # Same direction: u is a positive multiple of v, row by row.
    torch.testing.assert_close(
        u.double() * v.norm(dim=1, keepdim=True), v, rtol=1e-6, atol=1e-6 * float(v.max())
    )


def test_validate_accepts_one_vector_and_lists():
    torch.testing.assert_close(validate([3.0, 4.0]), torch.tensor([[0.6, 0.8]]))
    torch.testing.assert_close(validate([[0.0, 2.0]], m=2), torch.tensor([[0.0, 1.0]]))


@pytest.mark.parametrize(
    ("value", "m", "message"),
    [
        ([[1.0, math.nan]], None, "vector 1 contains NaN"),
        ([[1.0, 1.0], [math.inf, 1.0]], None, "vector 2 contains an infinite value"),
        ([[0.0, 0.0], [1.0, -0.5]], None, "vector 1 is all zeros.*vector 2 has a negative"),
        ([[1.0, -0.5]], None, "negative entry"),
        ([[0.0, 0.0]], None, "all zeros"),
        ([[1.0, 1.0, 1.0]], 2, "must have length 2"),
        (torch.empty(0, 3), None, "at least one preference vector"),
        (torch.ones(MAX_PREFERENCES + 1, 2), None, f"at most {MAX_PREFERENCES}"),
        (torch.ones(2, 2, 2), None, r"shape \(m,\) or \(k, m\)"),
    ],
)
def test_validate_errors_are_clear(value, m, message):
    with pytest.raises(ValueError, match=message):
        validate(value, m)


# --- to_weights --------------------------------------------------------------------------------


# Entries are 0 or at least 1e-3: products of a few of them stay far from underflow (see
# test_weights_survive_tiny_entries for what happens below that).
_ENTRY = st.one_of(st.just(0.0), st.floats(1e-3, 10.0))


@PROPS
@given(
    rows=st.lists(
        st.lists(_ENTRY, min_size=4, max_size=4).filter(lambda r: max(r) > 0),
        min_size=1,
        max_size=6,
    ),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_weights_are_on_the_simplex(rows, dtype, device):
    w = to_weights(torch.tensor(rows, dtype=dtype, device=device))
    assert w.dtype == dtype
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(len(rows), dtype=dtype, device=device))


def test_weights_survive_tiny_entries():
    # A valid preference (validate accepts it) whose weights must favour the five small tasks.
    u = validate([1.0] + [1e-12] * 5)
    w = to_weights(u)
    torch.testing.assert_close(w.sum(-1), torch.ones(1))
    torch.testing.assert_close(w[0, 1:], torch.full((5,), 0.2))
    assert float(w[0, 0]) < 1e-11


@PROPS
@given(u=st.lists(st.floats(0.05, 20.0), min_size=2, max_size=6))
def test_weights_balance_the_losses_on_the_ray(u):
    """For positive u, w_i u_i is the same for every i: w = (1/u) / sum(1/u)."""
    t = torch.tensor(u, dtype=torch.float64)
    inverse = 1 / t
    torch.testing.assert_close(to_weights(t), inverse / inverse.sum())


@PROPS
@given(theta=st.floats(0.0, math.pi / 2))
def test_two_task_weights_swap_the_coordinates(theta):
    u = torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64).clamp_min(0)
    expected = torch.stack([u[1], u[0]]) / (u[0] + u[1])
    torch.testing.assert_close(to_weights(u), expected)


def test_weights_of_special_vectors(device):
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]], device=device)
    torch.testing.assert_close(to_weights(x), torch.tensor([[0.0, 1.0], [1.0, 0.0]], device=device))
    for m in range(2, 7):
        torch.testing.assert_close(to_weights(torch.full((m,), 0.3)), torch.full((m,), 1 / m))
    # Several zero entries share the weight: u = (1, 0, 0) favours tasks 2 and 3 equally.
    torch.testing.assert_close(
        to_weights(torch.tensor([1.0, 0.0, 0.0])), torch.tensor([0, 0.5, 0.5])
    )
