"""The function loop: K points of a differentiable function, one per preference vector."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pmtl_core.config import EngineConfig
from pmtl_core.engine.base import LoopBase, Progress, sanitise
from pmtl_core.methods import Method

__all__ = ["FunctionLoop", "PointsLoop"]


class PointsLoop(LoopBase):
    """What both loops of a function problem share: an epoch is ``steps_per_epoch`` calls of
    ``step``, reported at ``objectives()``; no test split; each model exports as a point."""

    problem: Any

    def step(self, alive: Tensor) -> Tensor:
        raise NotImplementedError

    def objectives(self) -> Tensor:
        raise NotImplementedError

    def train_epoch(
        self, epoch: int, gen: torch.Generator, alive: Tensor, progress: Progress
    ) -> dict[str, Tensor]:
        for s in range(self.cfg.steps_per_epoch):
            progress(s, self.cfg.steps_per_epoch)
            self.step(alive)
        values = self.objectives()
        alive &= torch.isfinite(values).all(-1)
        return {"losses": values}

    def evaluate(self, split: str) -> None:
        return None

    def model_config(self) -> dict[str, Any]:
        return {"architecture": "point", "dim": self.problem.dim}


class FunctionLoop(PointsLoop):
    """K points of a differentiable function, one per preference vector (``x (K, d)``)."""

    kind = "function"

    def __init__(
        self,
        problem: Any,
        method: Method,
        cfg: EngineConfig,
        device: torch.device,
        x0: Tensor | None = None,
    ) -> None:
        """``x0 (K, d)`` fixes the starting points (default: ``problem.sample`` with the seed;
        one shared point for methods with ``shared_init``)."""
        self.problem = problem
        gen = torch.Generator().manual_seed(cfg.seed)
        k = method.n_subproblems
        if x0 is not None:
            if x0.shape != (k, problem.dim):
                raise ValueError(f"x0 must have shape {(k, problem.dim)}, got {tuple(x0.shape)}")
            x0 = x0.detach().clone().float().to(device)
        elif method.shared_init:  # one starting point for all K
            x0 = problem.sample(1, gen, device).expand(k, -1).clone()
        else:
            x0 = problem.sample(k, gen, device)
        self.x = problem.project(x0)
        self.x.requires_grad_(True)
        super().__init__(method, cfg, [self.x])
        self.samples_per_epoch = cfg.steps_per_epoch * k
        self.total_steps = cfg.epochs * cfg.steps_per_epoch
        method.bind(
            steps_per_epoch=cfg.steps_per_epoch, total_steps=self.total_steps, dataset=False
        )

    def step(self, alive: Tensor) -> Tensor:
        """One iteration for all K points; returns their objectives ``(K, m)`` before it.

        Subproblems whose objectives or Jacobians are not finite leave ``alive`` and stay where
        they are; the others move along their method's weighted gradient.
        """
        method = self.method
        values, jac = self.problem.value_and_jacobian(self.x.detach())
        alive &= torch.isfinite(values).all(-1) & torch.isfinite(jac).flatten(1).all(-1)
        gram = jac @ jac.transpose(-1, -2) if method.needs_gram else None
        safe_l, safe_g = sanitise(values, gram, alive)
        alpha = method(safe_l, safe_g) * alive.unsqueeze(-1)
        direction = torch.einsum("km,kmd->kd", alpha.to(jac.dtype), torch.nan_to_num(jac))
        self.optimizer.zero_grad(set_to_none=True)
        self.x.grad = torch.where(alive.unsqueeze(-1), direction, torch.zeros_like(direction))
        self._transfer([self.x])
        self.optimizer.step()
        with torch.no_grad():
            self.x.copy_(self.problem.project(self.x))
        self.global_step += 1
        return values.detach()

    def objectives(self) -> Tensor:
        """The objectives ``(K, m)`` at the current points."""
        with torch.no_grad():
            return self.problem.evaluate(self.x.detach())

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x.detach().cpu(), **self._base_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["x"].shape != self.x.shape:
            raise ValueError(
                f"checkpoint holds points of shape {tuple(state['x'].shape)}, "
                f"expected {tuple(self.x.shape)}"
            )
        with torch.no_grad():
            self.x.copy_(state["x"])
        self._load_base(state)

    def load_model(self, index: int, state: dict[str, Tensor]) -> None:
        with torch.no_grad():
            self.x[index].copy_(state["x"])

    def solutions(self) -> Tensor:
        return self.x.detach().cpu()
