"""The batched min-norm solver against quadprog, KKT conditions and invariances.

Convention for every tolerance here: objective values ``w^T G w`` and KKT slacks are compared
*relative to the problem's scale* ``s = max_i ||g_i||^2`` (the largest diagonal entry of the Gram
matrix ``G``), because the optimum of ``min_{w in simplex} ||sum_i w_i g_i||^2`` scales with it.
quadprog (``min_norm_exact``, Goldfarb–Idnani in a separate C library) is the reference.

float64: a relative gap of at most 1e-6. float32: the solver stops once the Frank–Wolfe gap
``2 (w^T G w - min_i (G w)_i)`` is below ``2 * 10 n eps32`` (its documented tolerance, scaled by
``s``), which bounds the objective gap by the same amount; rounding the returned weights to float32
adds a few ``eps32``. So float32 uses ``25 n eps32`` (about 6e-5 at n = 20).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmtl_core.solvers import min_norm, min_norm_exact, min_norm_gram

PROPS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

KINDS = (
    "gaussian",  # independent directions
    "half_space",  # a shared offset: the gradients mostly agree, optimum on a face
    "conflicting",  # one direction with random signs and scales, plus small noise
    "wide_scale",  # norms spread over six orders of magnitude
    "identical",  # n copies of one gradient
    "opposite",  # contains g and -c g: the optimum is 0
    "zero",  # one zero gradient: the optimum is 0
    "rank_deficient",  # rank 1 to 3 whatever n and d
)
GENERIC = ("gaussian", "half_space")  # unique optimum when n < d


def make_grads(kind: str, n: int, d: int, seed: int, batch: tuple[int, ...] = ()) -> torch.Tensor:
    """Gradients ``(*batch, n, d)`` of one family, float64 on the CPU, from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*batch, *shape, generator=gen, dtype=torch.float64)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*batch, *shape, generator=gen, dtype=torch.float64)

    if kind == "gaussian":
        return randn(n, d)
    if kind == "half_space":
        return randn(n, d) + 2.0 * randn(1, d)
    if kind == "conflicting":
        signs = torch.where(rand(n, 1) < 0.5, -1.0, 1.0)
        return signs * (0.1 + 3 * rand(n, 1)) * randn(1, d) + 0.05 * randn(n, d)
    if kind == "wide_scale":
        return randn(n, d) * 10 ** (6 * rand(n, 1) - 3)
    if kind == "identical":
        return randn(1, d).expand(*batch, n, d).clone()
    if kind == "opposite":
        v = randn(1, d)
        return torch.cat([v, -(0.5 + rand(1, 1)) * v, randn(n, d)], dim=-2)[..., :n, :]
    if kind == "zero":
        g = randn(n, d)
        g[..., torch.randint(n, (1,), generator=gen).item(), :] = 0.0
        return g
    if kind == "rank_deficient":
        r = 1 + int(torch.randint(3, (1,), generator=gen))
        return randn(n, r) @ randn(r, d)
    raise AssertionError(kind)


def scale_of(grads: torch.Tensor) -> float:
    """``max_i ||g_i||^2`` (at least the smallest normal double, for all-zero sets)."""
    return max(float(grads.double().pow(2).sum(-1).max()), np.finfo(np.float64).tiny)


def objective(grads: torch.Tensor, w: torch.Tensor) -> float:
    """``||sum_i w_i g_i||^2`` in float64 on the CPU."""
    return float((w.double().cpu() @ grads.double().cpu()).pow(2).sum())


def rel_gap(grads: torch.Tensor, w: torch.Tensor) -> float:
    """Objective of ``w`` minus quadprog's optimum, relative to ``max_i ||g_i||^2``."""
    exact = min_norm_exact(grads.double().cpu())
    return (objective(grads, w) - objective(grads, exact)) / scale_of(grads)


def kkt_violation(grads: torch.Tensor, w: torch.Tensor) -> float:
    """``max_i (w^T G w - (G w)_i)``, relative: at the optimum every ``(G w)_i >= w^T G w``."""
    g = grads.double().cpu()
    gram = g @ g.T
    gw = gram @ w.double().cpu()
    return float((w.double().cpu() @ gw - gw).max()) / scale_of(grads)


def tolerance(dtype: torch.dtype, n: int) -> float:
    return 1e-6 if dtype == torch.float64 else 25 * n * torch.finfo(torch.float32).eps


def assert_on_simplex(w: torch.Tensor, dtype: torch.dtype) -> None:
    assert torch.isfinite(w).all()
    assert (w >= 0).all()
    sums = w.double().sum(-1)
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(sums, torch.ones_like(sums), atol=atol, rtol=0)


cases = st.tuples(
    st.sampled_from(KINDS), st.integers(1, 20), st.integers(1, 50), st.integers(0, 2**31 - 1)
)
dtypes = st.sampled_from([torch.float64, torch.float32])


@PROPS
@given(case=cases, dtype=dtypes)
def test_matches_quadprog_and_satisfies_kkt(case, dtype, device):
    """On the simplex, objective within tolerance of quadprog's, and the KKT conditions hold."""
    kind, n, d, seed = case
    grads = make_grads(kind, n, d, seed).to(device=device, dtype=dtype)
    w = min_norm(grads)
    assert w.shape == (n,)
    assert w.dtype == dtype
    assert w.device.type == device.type
    assert_on_simplex(w, dtype)
    tol = tolerance(dtype, n)
    assert abs(rel_gap(grads, w)) <= tol
    assert kkt_violation(grads, w) <= tol


@PROPS
@given(case=cases, batch=st.sampled_from([(3,), (1,), (2, 3), (3, 1)]), masked=st.booleans())
def test_batched_equals_separate(case, batch, masked, device):
    """Leading dims (B, n, d) and (B1, B2, n, d): each problem solved as if alone."""
    kind, n, d, seed = case
    grads = make_grads(kind, n, d, seed, batch).to(device)
    mask = None
    if masked:
        mask = torch.rand(*batch, n, generator=torch.Generator().manual_seed(seed)) < 0.7
        mask[..., 0] = True
        mask = mask.to(device)
    w = min_norm(grads, mask)
    assert w.shape == (*batch, n)
    for index in np.ndindex(*batch):
        alone = min_norm(grads[index], None if mask is None else mask[index])
        assert objective(grads[index], w[index]) == pytest.approx(
            objective(grads[index], alone), abs=1e-9 * scale_of(grads[index])
        )
        if kind in GENERIC and n < d:
            torch.testing.assert_close(w[index], alone, atol=1e-8, rtol=0)


@PROPS
@given(case=cases, data=st.data())
def test_mask_solves_the_subproblem(case, data, device):
    """Masked-out gradients get weight exactly 0; the rest solves the sub-problem exactly."""
    kind, n, d, seed = case
    grads = make_grads(kind, n, d, seed).to(device)
    keep = data.draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(any))
    mask = torch.tensor(keep, device=device)
    w = min_norm(grads, mask)
    assert_on_simplex(w, torch.float64)
    assert (w[~mask] == 0).all()
    sub = grads[mask]
    assert abs(rel_gap(sub, w[mask])) <= 1e-6
    assert kkt_violation(sub, w[mask]) <= 1e-6
    if kind in GENERIC and sub.shape[0] < d:
        torch.testing.assert_close(w[mask], min_norm(sub), atol=1e-8, rtol=0)


def test_all_false_mask_means_no_restriction(device):
    grads = make_grads("gaussian", 5, 8, 3).to(device)
    none_allowed = torch.zeros(5, dtype=torch.bool, device=device)
    torch.testing.assert_close(min_norm(grads, none_allowed), min_norm(grads))


@PROPS
@given(case=cases, data=st.data())
def test_permuting_gradients_permutes_weights(case, data, device):
    kind, n, d, seed = case
    grads = make_grads(kind, n, d, seed).to(device)
    perm = torch.tensor(data.draw(st.permutations(range(n))), device=device)
    w = min_norm(grads)
    w_perm = min_norm(grads[perm])
    assert abs(rel_gap(grads[perm], w_perm)) <= 1e-6
    if kind in GENERIC and n < d:
        torch.testing.assert_close(w_perm, w[perm], atol=1e-7, rtol=0)


@PROPS
@given(case=cases, exponent=st.floats(-6.0, 6.0))
def test_scaling_all_gradients_keeps_w_optimal(case, exponent, device):
    """The optimal set is invariant under ``g -> c g`` (the objective scales by ``c^2``)."""
    kind, n, d, seed = case
    grads = make_grads(kind, n, d, seed).to(device)
    w_scaled = min_norm(grads * 10.0**exponent)
    assert abs(rel_gap(grads, w_scaled)) <= 1e-6
    if kind in GENERIC and n < d:
        torch.testing.assert_close(w_scaled, min_norm(grads), atol=1e-7, rtol=0)


@PROPS
@given(seed=st.integers(0, 2**31 - 1), d=st.integers(1, 50), dtype=dtypes)
def test_two_gradients_closed_form(seed, d, dtype, device):
    # Minimising ||w g1 + (1 - w) g2||^2 over w: the derivative 2 (g1 - g2).(w g1 + (1 - w) g2)
    # vanishes at w = (g2.g2 - g1.g2) / ||g1 - g2||^2, clipped to [0, 1] by convexity.
    g = make_grads("gaussian", 2, d, seed).numpy()
    if seed % 3 == 0:  # also nearly parallel pairs, where clipping is active
        g[1] = (0.2 + seed % 7) * g[0] + 1e-3 * g[1]
    g = torch.from_numpy(g).to(dtype).numpy().astype(np.float64)  # the values the solver sees
    diff = g[0] - g[1]
    w1 = float(np.clip((g[1] @ g[1] - g[0] @ g[1]) / (diff @ diff), 0.0, 1.0))
    w = min_norm(torch.from_numpy(g).to(device=device, dtype=dtype))
    atol = 1e-9 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(
        w.double().cpu(), torch.tensor([w1, 1 - w1], dtype=torch.float64), atol=atol, rtol=0
    )


def test_degenerate_sets_have_known_optima(device):
    v = torch.tensor([3.0, -1.0, 2.0], dtype=torch.float64, device=device)
    # One gradient: weight 1.
    assert min_norm(v[None]).tolist() == [1.0]
    # Copies of one gradient: every simplex point gives ||v||^2.
    w = min_norm(v.repeat(4, 1))
    assert objective(v.repeat(4, 1), w) == pytest.approx(float(v @ v))
    # v and -v: the midpoint cancels them exactly.
    torch.testing.assert_close(
        min_norm(torch.stack([v, -v])).cpu(), torch.tensor([0.5, 0.5]).double()
    )
    # v and -2v: weights (2/3, 1/3) cancel them.
    w = min_norm(torch.stack([v, -2 * v]))
    torch.testing.assert_close(w.cpu(), torch.tensor([2 / 3, 1 / 3]).double())
    # A zero gradient among others: all weight on it (the only point with objective 0 when
    # the others are independent).
    grads = torch.cat([torch.eye(3, dtype=torch.float64), torch.zeros(1, 3)]).to(device)
    torch.testing.assert_close(min_norm(grads).cpu(), torch.tensor([0.0, 0, 0, 1]).double())
    # Orthonormal gradients: ||w||^2 on the simplex is smallest at the centre.
    torch.testing.assert_close(min_norm(torch.eye(7, device=device)).cpu(), torch.full((7,), 1 / 7))
    # All zero: every point is optimal; the result is still on the simplex.
    assert_on_simplex(min_norm(torch.zeros(5, 4, device=device)), torch.float32)


def test_gram_entry_point_agrees(device):
    grads = make_grads("half_space", 6, 9, 11).to(device)
    gram = grads @ grads.T
    torch.testing.assert_close(min_norm_gram(gram), min_norm(grads))


def test_dtypes_and_devices_follow_the_input(device):
    # Integer gradients still give floating simplex weights (not truncated to 0).
    w = min_norm(torch.tensor([[2, 0], [0, 2]], device=device))
    assert w.is_floating_point()
    torch.testing.assert_close(w.cpu(), torch.tensor([0.5, 0.5]))
    assert min_norm(torch.eye(3, dtype=torch.float64, device=device)).dtype == torch.float64


def test_bad_inputs_raise_clear_errors(device):
    with pytest.raises(ValueError, match=r"grads must have shape \(\.\.\., n, d\)"):
        min_norm(torch.ones(3, device=device))
    with pytest.raises(ValueError, match="NaN or infinite"):
        min_norm(torch.tensor([[1.0, math.nan], [0.0, 1.0]], device=device))
    with pytest.raises(ValueError, match="NaN or infinite"):
        min_norm(torch.tensor([[1.0, math.inf], [0.0, 1.0]], device=device))
    with pytest.raises(ValueError, match="at least one gradient"):
        min_norm(torch.ones(0, 4, device=device))
    with pytest.raises(ValueError, match="mask must have shape"):
        min_norm(torch.ones(3, 4, device=device), torch.ones(2, dtype=torch.bool, device=device))
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        min_norm([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(ValueError, match="square"):
        min_norm_gram(torch.ones(3, 4, device=device))
    with pytest.raises(ValueError, match="one problem"):
        min_norm_exact(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="NaN or infinite"):
        min_norm_exact(torch.tensor([[math.nan, 1.0]]))


@pytest.mark.parametrize("n", [3, 5])
def test_a_zero_gradient_allowed_alone_gets_all_the_weight(n):
    """The only allowed gradient is zero: the masked-out ones (scaled by a tiny max diagonal)
    once overflowed to inf and made the weights NaN, or leaked a denormal weight."""
    grads = torch.randn(n, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads[-1] = 0.0
    mask = torch.zeros(n, dtype=torch.bool)
    mask[-1] = True
    w = min_norm(grads, mask)
    assert torch.equal(w, torch.eye(n, dtype=torch.float64)[-1])
