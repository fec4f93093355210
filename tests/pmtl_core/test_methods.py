"""Properties of every method: shapes, finiteness, descent, state round trips, registry."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmtl_core.methods import REGISTRY, describe_methods, get_method
from pmtl_core.methods._lp import simplex_lp
from pmtl_core.preferences import to_weights, uniform
from pmtl_core.solvers import min_norm_exact_gram


def _inputs(k: int, m: int, d: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    grads = torch.randn(k, m, d, generator=g, dtype=torch.float64)
    losses = torch.rand(k, m, generator=g, dtype=torch.float64) + 0.1
    return losses.to(device), (grads @ grads.transpose(1, 2)).to(device)


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("m", [2, 3, 5])
def test_every_method_returns_finite_weights_of_the_right_shape(name, m, device):
    k = 4
    prefs = uniform(m, k).to(device)
    method = get_method(name)(prefs)
    losses, gram = _inputs(k, m, 7, seed=m, device=device)
    for _ in range(3):
        alpha = method(losses, gram)
        assert alpha.shape == (k, m)
        assert alpha.device.type == device.type
        assert torch.isfinite(alpha).all()


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_shape_errors_name_the_expected_shape(name, device):
    method = get_method(name)(uniform(2, 3).to(device))
    with pytest.raises(ValueError, match=r"\(3, 2\)"):
        method(torch.ones(2, 2, device=device), torch.eye(2, device=device).expand(2, 2, 2))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_state_round_trip_restores_identical_behaviour(name, device):
    prefs = uniform(2, 3).to(device)
    losses, gram = _inputs(3, 2, 5, seed=1, device=device)
    a = get_method(name)(prefs)
    for _ in range(4):
        a(losses, gram)
    b = get_method(name)(prefs)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(a(losses * 1.3, gram), b(losses * 1.3, gram))


def test_registry_lists_valid_names_on_error():
    with pytest.raises(ValueError, match="pareto_mtl"):
        get_method("nope")


def test_describe_methods_is_json_and_covers_the_registry():
    described = describe_methods()
    json.dumps(described)
    assert {d["name"] for d in described} == set(REGISTRY)
    for d in described:
        assert d["hyperparameters"]["type"] == "object"


def test_unknown_hyperparameter_is_rejected():
    with pytest.raises(ValueError, match="extra"):
        get_method("pareto_mtl")(uniform(2, 2), {"epsilon": 0.1})


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 6), m=st.integers(2, 4))
def test_mgda_is_the_min_norm_point_and_a_common_descent_direction(seed, k, m):
    losses, gram = _inputs(k, m, 3, seed, "cpu")  # d < m: conflicting gradients
    alpha = get_method("mgda")(uniform(m, k))(losses, gram)
    assert torch.allclose(alpha.abs().sum(-1), torch.full((k,), float(m), dtype=alpha.dtype))
    for i in range(k):
        w = alpha[i] / alpha[i].sum()
        exact = min_norm_exact_gram(gram[i])
        scale = gram[i].diagonal().max()
        assert (w @ gram[i] @ w - exact @ gram[i] @ exact) <= 1e-6 * scale
        # every task decreases (to first order) along -d
        assert (gram[i] @ alpha[i] >= -1e-6 * scale).all()


@pytest.mark.parametrize("mode", ["l2", "loss"])
def test_mgda_normalisation_is_invariant_to_rescaling_a_task(mode):
    losses, gram = _inputs(3, 2, 4, seed=5, device="cpu")
    method = get_method("mgda")(uniform(2, 3), {"normalization": mode})
    base = method(losses, gram)
    s = torch.tensor([1.0, 7.0], dtype=gram.dtype)
    scaled_gram = gram * (s[:, None] * s[None, :])
    scaled_losses = losses * s if mode != "l2" else losses
    # scaling task 2's gradient (and loss) by 7 leaves the normalised problem unchanged (not so
    # for loss+, which divides by both and is not scale-invariant), so the
    # direction in raw gradients is the same up to the per-task factor: alpha_2 -> alpha_2 / 7
    other = method(scaled_losses, scaled_gram)
    expected = base / s
    expected = expected * (2 / expected.abs().sum(-1, keepdim=True))
    torch.testing.assert_close(other, expected)


def test_linear_and_single_task_weights_follow_the_preference_convention():
    prefs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    losses = torch.ones(3, 2)
    lin = get_method("linear")(prefs)(losses, None)
    torch.testing.assert_close(lin, 2 * to_weights(prefs / prefs.norm(dim=1, keepdim=True)))
    single = get_method("single_task")(prefs)(losses, None)
    torch.testing.assert_close(single, torch.tensor([[0.0, 2.0], [2.0, 0.0], [2.0, 0.0]]))


def test_mt2o_mixing_is_row_stochastic_and_decays_to_zero():
    method = get_method("mt2o")(uniform(2, 6), {"transfer": 0.4, "neighbours": 2})
    assert method.shared_init and method.couples_subproblems
    total = 100
    first = method.mixing(0, total)
    assert first is not None
    torch.testing.assert_close(first.sum(-1), torch.ones(6))
    assert (first >= 0).all()
    assert math.isclose(float(first[0, 0]), 0.6, rel_tol=1e-5)
    # neighbours are the nearest weight vectors: ends have one side only
    assert set(torch.nonzero(first[0] > 0).flatten().tolist()) == {0, 1, 2}
    assert set(torch.nonzero(first[3] > 0).flatten().tolist()) == {2, 3, 4}
    assert method.mixing(int(0.5 * total), total) is None
    later = method.mixing(25, total)
    assert float(later[0, 0]) > float(first[0, 0])
    zero = get_method("mt2o")(uniform(2, 6), {"transfer": 0.0})
    assert zero.mixing(0, total) is None


def test_gradnorm_downweights_the_task_with_larger_gradients():
    method = get_method("gradnorm")(uniform(2, 1), {"lr": 0.1})
    losses = torch.tensor([[1.0, 1.0]])
    gram = torch.tensor([[[100.0, 0.0], [0.0, 1.0]]])
    for _ in range(20):
        method(losses, gram)
    w = method.task_weights[0]
    assert w[0] < w[1]
    torch.testing.assert_close(w.sum(), torch.tensor(2.0))


def test_uncertainty_log_variance_converges_to_log_loss():
    method = get_method("uncertainty")(uniform(2, 1), {"lr": 0.2})
    losses = torch.tensor([[4.0, 0.5]])
    for _ in range(400):
        alpha = method(losses, None)
    torch.testing.assert_close(method.log_vars[0], torch.log(losses[0]), atol=1e-3, rtol=0)
    torch.testing.assert_close(alpha[0], 1 / losses[0], atol=1e-3, rtol=0)


def test_epo_balances_toward_its_ray():
    # Two tasks with conflicting gradients, losses off the ray (1, 1): EPO's step lowers the
    # larger relative loss first (balance mode).
    method = get_method("epo")(torch.tensor([[1.0, 1.0]]))
    losses = torch.tensor([[2.0, 0.5]])
    gram = torch.tensor([[[1.0, -0.8], [-0.8, 1.0]]])
    alpha = method(losses, gram)
    change = -(gram[0] @ alpha[0])  # first-order change of the losses along -d
    assert change[0] < 0 < change[1] or (change[0] < 0 and change[1] <= 0)
    assert change[0] < change[1]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 100_000), m=st.integers(2, 3), rows=st.integers(1, 4))
def test_simplex_lp_beats_every_feasible_grid_point(seed, m, rows):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(m, generator=g, dtype=torch.float64)
    a = torch.randn(rows, m, generator=g, dtype=torch.float64)
    b = torch.randn(rows, generator=g, dtype=torch.float64) * 0.3 - 0.5
    x, ok = simplex_lp(c, a, b)
    steps = 60
    grid = (
        [torch.tensor([i / steps, 1 - i / steps], dtype=torch.float64) for i in range(steps + 1)]
        if m == 2
        else [
            torch.tensor([i / steps, j / steps, 1 - (i + j) / steps], dtype=torch.float64)
            for i in range(steps + 1)
            for j in range(steps + 1 - i)
        ]
    )
    pts = torch.stack(grid)
    feasible = ((pts @ a.T) >= b - 1e-12).all(-1)
    if not bool(ok):
        assert not feasible.any()
        return
    assert torch.isclose(x.sum(), torch.tensor(1.0, dtype=x.dtype)) and (x >= 0).all()
    assert ((a @ x) >= b - 1e-7).all()
    if feasible.any():
        assert float(c @ x) >= float((pts[feasible] @ c).max()) - 1e-9
