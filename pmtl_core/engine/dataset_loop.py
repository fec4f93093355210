"""The data-set loop: K stacked models trained on a multi-task data set held on the device."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from pmtl_core.config import EngineConfig
from pmtl_core.engine.base import LoopBase, Progress, accumulate, sanitise
from pmtl_core.engine.stacked import StackedModels
from pmtl_core.methods import Method

__all__ = ["DatasetLoop"]


class DatasetLoop(LoopBase):
    """K stacked models trained on a multi-task data set held on the device."""

    kind = "dataset"

    def __init__(
        self, problem: Any, method: Method, cfg: EngineConfig, device: torch.device
    ) -> None:
        self.problem = problem
        self.k, self.m = method.n_subproblems, method.n_tasks
        self.data = problem.load(device)
        if method.shared_init:  # one initialisation copied K times
            first = problem.build_model()
            models = [first, *(copy.deepcopy(first) for _ in range(self.k - 1))]
        else:
            models = [problem.build_model() for _ in range(self.k)]
        self.stack = StackedModels(models, device)
        super().__init__(method, cfg, list(self.stack.params.values()))
        self._bind_data_set(problem)

    def _forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
        z = self.stack.encode(self.problem.transform(x))
        outs = self.stack.heads(z)
        losses = torch.func.vmap(lambda o: self.problem.task_losses(o, y))(outs)
        return losses, z, outs

    def _metric_sums(self, outs: list[Tensor], y: Tensor) -> dict[str, Tensor]:
        with torch.no_grad():
            sums = torch.func.vmap(lambda o: self.problem.task_metrics(o, y))(outs)
        return {f"metric:{name}": value.float() for name, value in sums.items()}

    def train_epoch(
        self, epoch: int, gen: torch.Generator, alive: Tensor, progress: Progress
    ) -> dict[str, Tensor]:
        data, cfg, method = self.data.train, self.cfg, self.method
        n = data.inputs.shape[0]
        perm = torch.randperm(n, generator=gen).to(data.inputs.device)
        totals: dict[str, Tensor] = {}
        for b in range(self.batches_per_epoch):
            progress(b, self.batches_per_epoch)
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            x, y = data.inputs[idx], data.targets[idx]
            self.optimizer.zero_grad(set_to_none=True)
            losses, z, outs = self._forward(x, y)
            alive &= torch.isfinite(losses).all(-1)
            detached = losses.detach()
            if method.needs_gram:
                if method.grad_target == "representation":
                    gram = self.stack.task_grams_representation(losses, z)
                    safe_l, safe_g = sanitise(detached, gram.detach(), alive)
                    alpha = method(safe_l, safe_g) * alive.unsqueeze(-1)
                    (alpha.detach() * torch.nan_to_num(losses)).sum().backward()
                    self.stack.mask_grads(alive)
                else:
                    gram, grads = self.stack.task_grams_exact(losses, method.gram_params)
                    safe_l, safe_g = sanitise(detached, gram, alive)
                    alpha = method(safe_l, safe_g) * alive.unsqueeze(-1)
                    self.stack.set_combined_grads(grads, alpha, alive)
            else:
                safe_l, _ = sanitise(detached, None, alive)
                alpha = method(safe_l, None) * alive.unsqueeze(-1)
                (alpha.detach() * torch.nan_to_num(losses)).sum().backward()
                self.stack.mask_grads(alive)
            self._transfer(list(self.stack.params.values()))
            self.optimizer.step()
            self.global_step += 1
            batch = float(idx.shape[0])
            accumulate(totals, "losses", torch.nan_to_num(detached) * batch)
            for key, value in self._metric_sums(outs, y).items():
                accumulate(totals, key, value)
        return {key: value / n for key, value in totals.items()}

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, Tensor] | None:
        data = getattr(self.data, split, None)
        if data is None or data.inputs.shape[0] == 0:
            return None
        n = data.inputs.shape[0]
        step = self.cfg.eval_batch_size
        totals: dict[str, Tensor] = {}
        for start in range(0, n, step):
            x, y = data.inputs[start : start + step], data.targets[start : start + step]
            losses, _, outs = self._forward(x, y)
            accumulate(totals, "losses", losses * float(x.shape[0]))
            for key, value in self._metric_sums(outs, y).items():
                accumulate(totals, key, value)
        return {key: value / n for key, value in totals.items()}

    def state_dict(self) -> dict[str, Any]:
        return {**self.stack.state_dict(), **self._base_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stack.load_state_dict(state)
        self._load_base(state)

    def load_model(self, index: int, state: dict[str, Tensor]) -> None:
        self.stack.load_model(index, state)

    def model_config(self) -> dict[str, Any]:
        return dict(self.problem.model_config())

    def solutions(self) -> dict[str, Tensor]:
        return self.stack.state_dict()["params"]
