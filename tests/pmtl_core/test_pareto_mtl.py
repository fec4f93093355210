"""Pareto MTL against an independent re-derivation of the reference code, and its named variant.

The reference (Xi-L/ParetoMTL, ``multiMNIST/train.py``) works on explicit gradient vectors, one
subproblem at a time, with a min-norm solver: ``_reference_init`` and ``_reference_main`` below
redo that computation on explicit vectors with quadprog (``min_norm_exact``), independently of
the method's batched Gram-matrix formulation.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmtl_core import solve
from pmtl_core.methods import get_method
from pmtl_core.methods.pareto_mtl import reference_init_budget
from pmtl_core.preferences import uniform
from pmtl_core.problems.synthetic import ConcaveProblem
from pmtl_core.solvers import min_norm_exact


def _case(seed: int, k: int, m: int, d: int = 9, spread: bool = False):
    """Random preferences, losses and explicit task gradients ``(K, m, d)`` (float64)."""
    g = torch.Generator().manual_seed(seed)
    prefs = uniform(m, k).double() if spread else torch.rand(k, m, generator=g).double() + 0.05
    prefs = prefs / prefs.norm(dim=-1, keepdim=True)
    losses = torch.rand(k, m, generator=g, dtype=torch.float64) * 2 + 0.05
    grads = torch.randn(k, m, d, generator=g, dtype=torch.float64)
    return prefs, losses, grads


def _constraint_values(prefs: torch.Tensor, k: int, loss: torch.Tensor):
    """``w = u_j - u_k`` over the other preferences and ``G_j = w^T L/||L||``."""
    others = torch.cat([prefs[:k], prefs[k + 1 :]])
    w = others - prefs[k]
    return w, w @ (loss / loss.norm())


def _reference_init(prefs, k, loss, g):
    """The reference's init weights for subproblem ``k``, or None when nothing is violated."""
    w, gx = _constraint_values(prefs, k, loss)
    idx = gx > 0
    if not idx.any():
        return None
    vecs = w[idx] @ g  # gradients of the violated constraints, explicit vectors
    sol = torch.ones(1, dtype=torch.float64) if len(vecs) == 1 else min_norm_exact(vecs)
    return sol @ w[idx]  # sum_j beta_j (u_j - u_k), not rescaled


def _reference_main(prefs, k, loss, g, eps: float = 0.0):
    """The reference's main-phase weights before its rescaling to sum |alpha| = m; ``eps`` widens
    the active set of a subproblem inside its sector (the paper's I_eps, bounded as documented)."""
    m = g.shape[0]
    w, gx = _constraint_values(prefs, k, loss)
    idx = gx > (0.0 if (gx > 0).any() else -eps)
    vecs = torch.cat([g, w[idx] @ g])
    sol = min_norm_exact(vecs)
    return sol[:m] + sol[m:] @ w[idx]


def _assert_main_matches(alpha: torch.Tensor, raw: torch.Tensor) -> None:
    """``alpha`` (rescaled to sum |alpha| = m) equals the reference's ``raw * m / sum |raw|``.

    Compared on the reference's own scale before its rescaling: near a stationary point of the
    combined problem ``raw`` is tiny, and the rescaling would blow its last digits (those of any
    QP solver, quadprog's included) up to the size of the weights.
    """
    m = raw.shape[-1]
    assert math.isclose(float(alpha.abs().sum()), m, rel_tol=1e-9)
    torch.testing.assert_close(alpha * (raw.abs().sum() / m), raw, atol=1e-6, rtol=0)


def _gram(grads: torch.Tensor) -> torch.Tensor:
    return grads @ grads.transpose(-1, -2)


def _random_cases(test):
    """Random subproblems: seed, K preferences (random or evenly spread), m tasks."""
    cases = given(
        seed=st.integers(0, 100_000),
        k=st.integers(2, 8),
        m=st.integers(2, 3),
        spread=st.booleans(),
    )
    return settings(max_examples=60, deadline=None)(cases(test))


@_random_cases
def test_first_step_matches_the_reference_init_and_main_phase(seed, k, m, spread):
    prefs, losses, grads = _case(seed, k, m, spread=spread)
    method = get_method("pareto_mtl")(prefs, all_preferences=prefs)
    alpha = method(losses, _gram(grads))
    for kk in range(k):
        expected = _reference_init(prefs, kk, losses[kk], grads[kk])
        if expected is None:  # feasible at the start: the main phase, no active constraint
            assert bool(method.feasible[kk])
            _assert_main_matches(alpha[kk], _reference_main(prefs, kk, losses[kk], grads[kk]))
        else:
            assert not bool(method.feasible[kk])
            torch.testing.assert_close(alpha[kk], expected, atol=1e-6, rtol=0)


@_random_cases
def test_main_phase_matches_the_reference_with_active_constraints(seed, k, m, spread):
    prefs, losses, grads = _case(seed, k, m, spread=spread)
    method = get_method("pareto_mtl")(prefs, {"init_steps": 0}, all_preferences=prefs)
    alpha = method(losses, _gram(grads))
    assert method.feasible.all()
    for kk in range(k):
        _assert_main_matches(alpha[kk], _reference_main(prefs, kk, losses[kk], grads[kk]))


def test_init_weights_are_not_rescaled():
    # K = 5 on the quarter circle, loss vector on the (1, 0) axis: subproblem 2 (45 degrees) has
    # two violated constraints; the reference's step is sum_j beta_j (u_j - u_k), about a
    # quarter of what rescaling to sum |alpha| = 2 would give
    prefs = uniform(2, 5).double()
    losses = torch.tensor([[1.0, 1e-3]] * 5, dtype=torch.float64)
    grads = torch.eye(2, dtype=torch.float64).expand(5, 2, 2)
    alpha = get_method("pareto_mtl")(prefs)(losses, _gram(grads))
    assert float(alpha[2].abs().sum()) < 1.0
    torch.testing.assert_close(
        alpha[2], _reference_init(prefs, 2, losses[2], grads[2]), atol=1e-9, rtol=0
    )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    k=st.integers(2, 6),
    m=st.integers(2, 3),
    eps=st.floats(0.0, 1.0),
)
def test_main_phase_with_eps_matches_the_reference_with_the_capped_eps(seed, k, m, eps):
    prefs, losses, grads = _case(seed, k, m)
    method = get_method("pareto_mtl")(prefs, {"init_steps": 0, "eps": eps})
    alpha = method(losses, _gram(grads))
    for kk in range(k):
        others = torch.cat([prefs[:kk], prefs[kk + 1 :]])
        cap = float((1 - others @ prefs[kk]).min()) / 2  # half of G_j at u_k's own ray
        raw = _reference_main(prefs, kk, losses[kk], grads[kk], eps=min(eps, cap))
        _assert_main_matches(alpha[kk], raw)


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    k=st.integers(2, 12),
    m=st.integers(2, 3),
    eps=st.floats(0.0, 1.0),
    spread=st.booleans(),
    near_ray=st.booleans(),
)
def test_eps_never_stalls_an_infeasible_subproblem(seed, k, m, eps, spread, near_ray):
    prefs, losses, grads = _case(seed, k, m, spread=spread)
    if near_ray:  # loss vectors near other subproblems' rays: the cases where eps bites
        g = torch.Generator().manual_seed(seed + 1)
        shift = torch.randint(0, k, (k,), generator=g)
        losses = prefs[shift] * (1 + 0.02 * torch.rand(k, m, generator=g, dtype=torch.float64))
    method = get_method("pareto_mtl")(prefs, {"init_steps": 0, "eps": eps})
    alpha = method(losses, _gram(grads))
    infeasible = (method.constraints(losses) > 0).any(-1)
    # independent task gradients: the step sum_i alpha_i g_i is zero only if alpha is
    assert (alpha.abs().sum(-1)[infeasible] > 1e-6).all(), alpha[infeasible]


def test_eps_no_longer_stalls_the_concave_front():
    # the case: K = 10, eps = 0.1 left models at 33.8 and 45.4 degrees, 0.44 off the front
    problem = ConcaveProblem()
    front = solve(problem, "pareto_mtl", 10, steps=1000, lr=0.1, seed=0, params={"eps": 0.1})
    assert float(problem.distance_to_front(front.objectives).max()) < 0.02
    g = get_method("pareto_mtl")(front.preferences).constraints(front.objectives)
    assert float(g.max()) <= 1e-3  # every solution in its own sector


def test_init_budget_is_the_references_unless_set():
    prefs = uniform(2, 5)
    losses = torch.tensor([[1.0, 0.05]] * 5)
    gram = torch.eye(2).expand(5, 2, 2)
    assert reference_init_budget(100, 3000, dataset=True) == 200
    assert reference_init_budget(20, 1000, dataset=False) == 200
    method = get_method("pareto_mtl")(prefs)
    method.bind(steps_per_epoch=2, total_steps=100, dataset=True)  # two epochs: 4 steps
    for _ in range(4):
        method(losses, gram)
    assert not bool(method.feasible[4])
    method(losses, gram)
    assert bool(method.feasible[4])
    fixed = get_method("pareto_mtl")(prefs, {"init_steps": 1})
    fixed.bind(steps_per_epoch=2, total_steps=100, dataset=True)
    fixed(losses, gram)
    fixed(losses, gram)
    assert bool(fixed.feasible[4])


def test_init_phase_ends_for_good_once_feasible():
    prefs = uniform(2, 3)
    gram = torch.eye(2).expand(3, 2, 2)
    method = get_method("pareto_mtl")(prefs)
    method(torch.tensor([[1.0, 0.05]] * 3), gram)
    assert bool(method.feasible[0]) and not bool(method.feasible[2])
    # subproblem 0 leaves its sector again: it gets a main-phase step (rescaled), no init step
    back = torch.tensor([[0.05, 1.0]] * 3)
    alpha = method(back, gram)
    assert math.isclose(float(alpha[0].abs().sum()), 2.0, rel_tol=1e-6)


def test_variant_is_listed_as_a_variant_and_the_method_as_the_paper():
    assert get_method("pareto_mtl").variant_of is None
    variant = get_method("pareto_mtl_restore")
    assert variant.variant_of == "pareto_mtl"
    assert "not the paper" in variant.summary


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), m=st.integers(2, 4))
def test_variant_angle_gradient_is_the_gradient_of_the_normalised_constraint(seed, m):
    g = torch.Generator().manual_seed(seed)
    k = 3
    losses = torch.rand(k, m, generator=g, dtype=torch.float64) + 0.05
    method = get_method("pareto_mtl_restore")(uniform(m, k))
    g_val = method.constraints(losses)
    dirs = method._angle_combos(losses, g_val)[:, m:].double()
    leaf = losses.clone().requires_grad_(True)
    for kk in range(k):
        for j in range(k):
            if not method.constraint_valid[kk, j]:
                continue
            c = method.constraint_dirs[kk, j].double()
            (grad,) = torch.autograd.grad(c @ leaf[kk] / leaf[kk].norm(), leaf)
            torch.testing.assert_close(grad[kk], dirs[kk, j] / losses[kk].norm())
            assert abs(float(dirs[kk, j] @ losses[kk])) < 1e-9


def test_variant_restores_without_ascent_where_the_paper_raises_a_loss():
    prefs = uniform(2, 5)
    # every subproblem at 45 degrees: 0, 1, 3 and 4 are outside their sectors
    losses = torch.ones(5, 2, dtype=torch.float64)
    gram = torch.eye(2, dtype=torch.float64).expand(5, 2, 2)
    alpha = get_method("pareto_mtl_restore")(prefs, {"init_steps": 0})(losses, gram)
    assert float(alpha[0, 0]) == 0.0 and float(alpha[0, 1]) > 0
    assert float(alpha[4, 1]) == 0.0 and float(alpha[4, 0]) > 0
    paper = get_method("pareto_mtl")(prefs)(losses, gram)  # init phase: ascent allowed
    assert (paper[[0, 4]] < 0).any()


@pytest.mark.parametrize("k", [5, 40])
def test_variant_margin_is_at_most_half_the_rays_distance_from_its_border(k):
    prefs = uniform(2, k)
    method = get_method("pareto_mtl_restore")(prefs, {"init_steps": 0, "margin": 0.05})
    half = math.pi / 4 / (k - 1)  # half the angle between neighbouring rays
    # u_k is sin(half) from the border (in distance of L/||L||); the margin is at most half that
    margin = min(0.05, math.sin(half) / 2)
    gram = torch.eye(2, dtype=torch.float64).expand(k, 2, 2)

    def at(offset: float) -> torch.Tensor:
        angles = torch.atan2(prefs[:, 1], prefs[:, 0]).double() + half - offset
        return torch.stack([angles.cos(), angles.sin()], dim=-1)

    assert (method(at(2 * margin), gram)[:-1] > 0).all()
    restoring = method(at(margin / 2), gram)[:-1]
    assert (restoring[:, 0] == 0).all() and (restoring[:, 1] > 0).all()
    paper = get_method("pareto_mtl")(prefs, {"init_steps": 0})
    assert (paper(at(margin / 2), gram)[:-1] > 0).all()
