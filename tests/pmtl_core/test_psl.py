"""Pareto-set learning: one model for the whole front, checked against the analytic front."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pmtl_core import solve, train
from pmtl_core.methods import get_method
from pmtl_core.methods.psl import chebyshev_weights
from pmtl_core.problems.synthetic import ConcaveProblem, SphereProblem
from tests.pmtl_core._problems import TwoTaskBlobs


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 100_000), m=st.integers(2, 4), n=st.integers(1, 6))
def test_chebyshev_weights_are_the_gradient_of_the_weighted_max(seed, m, n):
    g = torch.Generator().manual_seed(seed)
    losses = torch.rand(n, m, generator=g, dtype=torch.float64) + 0.1
    prefs = torch.rand(n, m, generator=g, dtype=torch.float64) + 0.05
    alpha = chebyshev_weights(losses, prefs)
    r = 1 / prefs
    r = r / r.sum(-1, keepdim=True)
    leaf = losses.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((r * leaf).amax(-1).sum(), leaf)
    torch.testing.assert_close(alpha, grad)


def test_unseen_preferences_land_on_the_analytic_front_on_their_rays(device):
    problem = ConcaveProblem()
    front = solve(problem, "psl", 5, steps=1500, lr=0.01, seed=0, device=device)
    assert front.pareto_set is not None and front.objectives.shape == (5, 2)
    # 100 preferences between 5 and 85 degrees that training never sampled exactly
    angles = torch.linspace(math.radians(5), math.radians(85), 100, dtype=torch.float64)
    u = torch.stack([angles.cos(), angles.sin()], dim=-1)
    x = front.pareto_set(u.float().to(device))
    assert x.shape == (100, problem.dim)
    values = problem.evaluate(x.cpu()).double()
    assert float(problem.distance_to_front(values.float()).max()) < 0.01
    error = (torch.atan2(values[:, 1], values[:, 0]) - angles).abs()
    assert math.degrees(float(error.max())) < 5.0
    # the reported front is the set model at the run's preference vectors
    torch.testing.assert_close(
        front.objectives, problem.evaluate(front.pareto_set(front.preferences.to(device)).cpu())
    )


def test_set_model_keeps_bounded_variables_inside_their_box():
    problem = SphereProblem()
    front = solve(problem, "psl", 4, steps=50, lr=0.01, seed=1)
    x = front.pareto_set(torch.rand(30, 3) + 0.01)
    assert bool((x >= 0).all()) and bool((x <= 1).all())


def test_psl_trains_function_problems_through_the_engine_and_resumes(tmp_path, device):
    problem = ConcaveProblem()
    cfg = {"epochs": 4, "steps_per_epoch": 10, "lr": 0.01, "device": str(device)}
    full = train(problem, "psl", 3, cfg, checkpoint_dir=tmp_path / "full")
    assert full.pareto_set is not None
    again = train(problem, "psl", 3, {**cfg, "epochs": 2}, checkpoint_dir=tmp_path / "cut")
    assert again.history.shape[0] == 2
    resumed = train(problem, "psl", 3, cfg, checkpoint_dir=tmp_path / "cut", resume=True)
    if device.type == "cpu":
        torch.testing.assert_close(resumed.objectives, full.objectives)


def test_psl_refuses_data_set_problems_with_a_clear_error():
    with pytest.raises(ValueError, match=r"psl.*function"):
        train(TwoTaskBlobs(), "psl", 3, {"epochs": 1})
    assert get_method("psl").problem_kinds == ("function",)
