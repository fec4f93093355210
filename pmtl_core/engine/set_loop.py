"""The set loop: one preference-conditioned model ``h(u)`` for a function problem's whole front.

Used by methods with ``learns_pareto_set`` (``psl``). Each step samples ``samples`` preferences
from the simplex (uniform, Dirichlet(1), scaled to unit length), evaluates the problem at
``x = h(u)``, asks the method for the weights of each preference's scalarisation and
back-propagates ``sum_i α_i ∇f_i(x)`` through ``h``. The K preference vectors of the run are
only where the front is reported (``train_epoch`` returns their objectives, checkpoints and
exports hold their solutions); :meth:`SetLoop.pareto_set` gives the solution of any preference.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from pmtl_core.config import EngineConfig
from pmtl_core.engine.function_loop import PointsLoop
from pmtl_core.methods import Method

__all__ = ["SetLoop", "SetModel", "sample_preferences"]


def sample_preferences(n: int, m: int, gen: torch.Generator) -> Tensor:
    """``n`` preferences uniform on the simplex (Dirichlet(1)), scaled to unit length (CPU)."""
    w = -torch.log(torch.rand(n, m, generator=gen).clamp_min(1e-12))
    w = w / w.sum(-1, keepdim=True)
    return w / torch.linalg.vector_norm(w, dim=-1, keepdim=True)


class SetModel(nn.Module):
    """``h(u)``: preferences ``(n, m)`` to solutions ``(n, d)``, an MLP with two hidden layers.

    Bounded variables go through a sigmoid into ``[lower, upper]`` (a clamp would stop their
    gradients); unbounded ones are ``centre + out``.
    """

    def __init__(self, problem: Any, hidden: int) -> None:
        super().__init__()
        m, d = problem.n_tasks, problem.dim
        self.net = nn.Sequential(
            nn.Linear(m, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.out = nn.Linear(hidden, d)
        low, high = problem.lower, problem.upper
        start, stop = problem.init_range
        centre = torch.full((d,), (start + stop) / 2)
        if low is not None and high is not None:
            self.register_buffer("low", low.float().clone())
            self.register_buffer("span", (high - low).float().clone())
        else:
            self.low, self.span = None, None
        self.register_buffer("centre", centre.float())

    def forward(self, u: Tensor) -> Tensor:
        out = self.out(self.net(u))
        if self.low is not None:
            return self.low + self.span * torch.sigmoid(out)
        return self.centre + out


class SetLoop(PointsLoop):
    """Trains :class:`SetModel` on sampled preferences; reports the run's K preferences."""

    kind = "function"

    def __init__(
        self,
        problem: Any,
        method: Method,
        cfg: EngineConfig,
        device: torch.device,
        x0: Tensor | None = None,
    ) -> None:
        if x0 is not None:
            raise ValueError(f"{method.name} learns one model for all preferences; x0 is unused")
        self.problem = problem
        self.device = torch.device(device)
        self.model = SetModel(problem, method.params.hidden).to(self.device)
        self.samples = int(method.params.samples)
        self.pref_gen = torch.Generator().manual_seed(cfg.seed + 1)
        super().__init__(method, cfg, list(self.model.parameters()))
        k = method.n_subproblems
        self.samples_per_epoch = cfg.steps_per_epoch * self.samples
        self.total_steps = cfg.epochs * cfg.steps_per_epoch
        method.bind(
            steps_per_epoch=cfg.steps_per_epoch, total_steps=self.total_steps, dataset=False
        )
        self.k = k

    def sample_preferences(self, n: int) -> Tensor:
        """``n`` preferences uniform on the simplex (Dirichlet(1)), scaled to unit length."""
        return sample_preferences(n, self.problem.n_tasks, self.pref_gen).to(self.device)

    def pareto_set(self, preferences: Tensor) -> Tensor:
        """Solutions ``(n, d)`` for any preferences ``(n, m)`` (rows scaled to unit length)."""
        u = preferences.to(self.device, torch.float32)
        u = u / torch.linalg.vector_norm(u, dim=-1, keepdim=True)
        with torch.no_grad():
            return self.model(u)

    def step(self, alive: Tensor) -> Tensor:
        """One step on freshly sampled preferences; returns the K reported objectives before it."""
        reported = self.objectives()
        alive &= torch.isfinite(reported).all(-1)
        u = self.sample_preferences(self.samples)
        x = self.model(u)
        values, jac = self.problem.value_and_jacobian(x.detach())
        finite = torch.isfinite(values).all(-1) & torch.isfinite(jac).flatten(1).all(-1)
        alpha = self.method.scalarisation_weights(torch.nan_to_num(values), u)
        alpha = alpha * finite.unsqueeze(-1)
        direction = torch.einsum("nm,nmd->nd", alpha.to(jac.dtype), torch.nan_to_num(jac))
        self.optimizer.zero_grad(set_to_none=True)
        x.backward(direction / self.samples)
        self.optimizer.step()
        self.global_step += 1
        return reported

    def objectives(self) -> Tensor:
        """The objectives ``(K, m)`` at the run's K preference vectors."""
        with torch.no_grad():
            return self.problem.evaluate(self.pareto_set(self.method.preferences))

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": {n: t.detach().cpu() for n, t in self.model.state_dict().items()},
            "x": self.solutions(),
            "pref_gen": self.pref_gen.get_state(),
            **self._base_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "model" not in state:
            raise ValueError("checkpoint holds no set model: it was not written by a psl run")
        self.model.load_state_dict(state["model"])
        self.pref_gen.set_state(state["pref_gen"])
        self._load_base(state)

    def load_model(self, index: int, state: dict[str, Tensor]) -> None:
        raise ValueError(f"{self.method.name} models cannot be warm-started from another model")

    def solutions(self) -> Tensor:
        """The solutions ``(K, d)`` of the run's K preference vectors."""
        return self.pareto_set(self.method.preferences).cpu()
