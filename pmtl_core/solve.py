"""``solve``: K preference vectors of a differentiable function problem, optimised together.

All K solutions live in one ``(K, d)`` tensor and move through the engine's function loop
(:class:`~pmtl_core.engine.function_loop.FunctionLoop`, the loop ``train`` uses for function
problems): each step evaluates the objectives and their Jacobians for all of them with ``vmap``,
forms the ``(K, m, m)`` Gram matrices, asks the method for task weights and takes a plain
gradient step (SGD without momentum) along every weighted gradient. Nothing is synchronised
with the host inside the loop except a finiteness check every ``report_every`` steps; a NaN or
infinite objective stops the run with a :class:`DivergenceError` naming the step, the objective
and the preference vector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from pmtl_core.config import make_config
from pmtl_core.engine.function_loop import FunctionLoop
from pmtl_core.engine.set_loop import SetLoop
from pmtl_core.front import Front
from pmtl_core.methods import Method, MethodParams, get_method
from pmtl_core.preferences import resolve as resolve_preferences
from pmtl_core.problems.function import FunctionProblem

__all__ = ["DivergenceError", "SolveProgress", "solve"]


class DivergenceError(ValueError):
    """An objective became NaN or infinite; names where and when."""

    def __init__(self, step: int, objective: int, preference: int, vector: list[float]) -> None:
        self.step, self.objective, self.preference, self.vector = (
            step,
            objective,
            preference,
            vector,
        )
        super().__init__(
            f"objective {objective + 1} became non-finite at step {step} for preference "
            f"vector {preference} {[round(v, 4) for v in vector]}; "
            "try a smaller learning rate or check the objective function"
        )


@dataclass
class SolveProgress:
    """What a ``solve`` callback receives every ``report_every`` steps."""

    step: int
    total_steps: int
    objectives: Tensor  # (K, m) at this step


def solve(
    problem: FunctionProblem,
    method: str | type[Method] = "pareto_mtl",
    preferences: int | Tensor | Sequence[Sequence[float]] = 10,
    *,
    steps: int = 1000,
    lr: float = 0.1,
    seed: int = 0,
    params: MethodParams | dict | None = None,
    x0: Tensor | None = None,
    device: torch.device | str = "cpu",
    callback: Callable[[SolveProgress], None] | None = None,
    report_every: int = 50,
) -> Front:
    """Optimise one solution per preference vector; returns a :class:`Front`.

    ``preferences``: a count (``uniform(m, count)``) or ``(K, m)`` vectors. ``x0 (K, d)`` fixes
    the starting points (default: ``problem.sample`` with ``seed``). Inputs are not modified.
    """
    if not isinstance(problem, FunctionProblem):
        raise TypeError(
            f"solve() takes a FunctionProblem; use pmtl_core.train() for {type(problem).__name__}"
        )
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if report_every < 1:
        raise ValueError(f"report_every must be >= 1, got {report_every}")
    device = torch.device(device)
    prefs = resolve_preferences(preferences, problem.n_tasks).to(device)
    cls = get_method(method) if isinstance(method, str) else method
    algo = cls(prefs, params)
    k = prefs.shape[0]
    # plain gradient steps (SGD without momentum) on the K points; a set model (psl) is a
    # network trained on sampled preferences, with Adam as its papers do
    cfg = make_config(
        {
            "optimizer": "adam" if cls.learns_pareto_set else "sgd",
            "lr": lr,
            "momentum": 0.0,
            "lr_step": 0,
            "epochs": 1,
            "steps_per_epoch": max(steps, 1),
            "seed": seed,
            "device": str(device),
        }
    )
    if "function" not in cls.problem_kinds:
        raise ValueError(f"method {cls.name!r} does not solve function problems")
    loop_class = SetLoop if cls.learns_pareto_set else FunctionLoop
    loop = loop_class(problem, algo, cfg, device, x0=x0)
    alive = torch.ones(k, dtype=torch.bool, device=device)
    history = torch.empty(steps + 1, k, problem.n_tasks, device=device)
    checked = 0
    for step in range(steps + 1):
        history[step] = loop.step(alive) if step < steps else loop.objectives()
        if step % report_every == 0 or step == steps:
            checked = _check_finite(history, checked, step + 1, prefs)
            if callback is not None:
                callback(SolveProgress(step, steps, history[step]))
    return Front(
        problem=problem.name,
        method=cls.name,
        objectives=history[-1].cpu(),
        preferences=prefs.cpu(),
        params=loop.solutions(),
        history=history.cpu(),
        task_names=problem.task_names,
        pareto_set=getattr(loop, "pareto_set", None),
    )


def _check_finite(history: Tensor, start: int, stop: int, prefs: Tensor) -> int:
    """Raise DivergenceError at the first non-finite value in ``history[start:stop]``."""
    chunk = history[start:stop]
    if bool(torch.isfinite(chunk).all()):
        return stop
    bad = (~torch.isfinite(chunk)).nonzero()[0].tolist()
    step, pref, obj = start + bad[0], bad[1], bad[2]
    raise DivergenceError(step, obj, pref, prefs[pref].tolist())
