"""The conditioned loop: Pareto-set learning on a data set, one network for every preference.

Used by methods with ``learns_pareto_set`` (``psl``) on data-set problems. Each batch (a slice
of the epoch's permutation) is cut into ``g = min(samples, batch)`` contiguous groups; group
``j`` gets a preference ``u_j`` drawn uniformly from the simplex (scaled to unit length) and
goes through :class:`~pmtl_core.engine.conditioned.ConditionedModel` under it. The method turns
each group's task losses into weights (``psl``: the weighted-Chebyshev subgradient, ``r ∝ 1/u``)
and one backward pass takes ``mean_j sum_i α_ji L_ji``: the cost of a step is about one
forward and one backward of one network, whatever the number of preferences.

The run's K preference vectors are where the front is reported. Their test metrics are taken on
the whole test split; their train metrics on the first ``TRAIN_EVAL_SAMPLES`` training samples
(the model never trains on the K vectors as such, so there is no running training loss to
report, and evaluating K networks on the whole training set would cost more than the epoch).
Checkpoints hold the conditioned network and, as ``params``, the K plain networks folded out of
it, so exports and downloads of the K solutions work as for any other method.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from pmtl_core.config import EngineConfig
from pmtl_core.engine.base import LoopBase, Progress
from pmtl_core.engine.conditioned import ConditionedModel
from pmtl_core.engine.set_loop import sample_preferences
from pmtl_core.methods import Method

__all__ = ["TRAIN_EVAL_SAMPLES", "ConditionedLoop"]

#: Training samples on which the K reported preferences are evaluated after every epoch.
TRAIN_EVAL_SAMPLES = 10_000


class ConditionedLoop(LoopBase):
    """Trains one :class:`ConditionedModel` on sampled preferences; reports the K given ones."""

    kind = "dataset"

    def __init__(
        self, problem: Any, method: Method, cfg: EngineConfig, device: torch.device
    ) -> None:
        self.problem = problem
        self.device = torch.device(device)
        self.k, self.m = method.n_subproblems, method.n_tasks
        self.data = problem.load(self.device)
        self.net = ConditionedModel(problem.model_config(), self.m).to(self.device)
        self.samples = int(method.params.samples)
        self.pref_gen = torch.Generator().manual_seed(cfg.seed + 1)
        super().__init__(method, cfg, list(self.net.parameters()))
        self._bind_data_set(problem)

    def _group_losses(self, x: Tensor, y: Tensor, u: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Task losses ``(g, m)`` of the batch's ``g`` contiguous groups, group j under ``u[j]``."""
        g = u.shape[0]
        sizes = [len(c) for c in torch.arange(x.shape[0]).tensor_split(g)]
        per_sample_u = torch.repeat_interleave(u, torch.tensor(sizes, device=u.device), dim=0)
        _, outs = self.net(self.problem.transform(x), per_sample_u)
        chunks = [o.split(sizes) for o in outs]
        targets = y.split(sizes)
        losses = [self.problem.task_losses([c[j] for c in chunks], targets[j]) for j in range(g)]
        return torch.stack(losses), outs

    def train_epoch(
        self, epoch: int, gen: torch.Generator, alive: Tensor, progress: Progress
    ) -> dict[str, Tensor]:
        data, cfg = self.data.train, self.cfg
        n = data.inputs.shape[0]
        perm = torch.randperm(n, generator=gen).to(data.inputs.device)
        self.net.train()
        for b in range(self.batches_per_epoch):
            progress(b, self.batches_per_epoch)
            idx = perm[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            self.step(data.inputs[idx], data.targets[idx])
        head = min(n, TRAIN_EVAL_SAMPLES)
        res = self._evaluate_on(data.inputs[:head], data.targets[:head])
        alive &= torch.isfinite(res["losses"]).all(-1)
        return res

    def step(self, inputs: Tensor, targets: Tensor) -> None:
        """One optimiser step on a stored batch, its groups under freshly sampled preferences."""
        u = sample_preferences(min(self.samples, inputs.shape[0]), self.m, self.pref_gen)
        u = u.to(self.device)
        losses, _ = self._group_losses(inputs, targets, u)
        alpha = self.method.scalarisation_weights(losses.detach(), u)
        self.optimizer.zero_grad(set_to_none=True)
        (alpha * losses).sum(-1).mean().backward()
        self.optimizer.step()
        self.global_step += 1

    @torch.no_grad()
    def evaluate_preferences(self, preferences: Tensor, split: str) -> dict[str, Tensor] | None:
        """Mean losses and metrics ``(n, m)`` of any preferences ``(n, m)`` on a split."""
        data = getattr(self.data, split, None)
        if data is None or data.inputs.shape[0] == 0:
            return None
        return self._evaluate_on(data.inputs, data.targets, preferences)

    def _evaluate_on(
        self, inputs: Tensor, targets: Tensor, preferences: Tensor | None = None
    ) -> dict[str, Tensor]:
        prefs = self.method.preferences if preferences is None else preferences
        prefs = prefs.to(self.device, torch.float32)
        prefs = prefs / torch.linalg.vector_norm(prefs, dim=-1, keepdim=True)
        self.net.eval()
        return self.net.evaluate(
            self.problem, inputs, targets, prefs, batch=self.cfg.eval_batch_size
        )

    def evaluate(self, split: str) -> dict[str, Tensor] | None:
        return self.evaluate_preferences(self.method.preferences, split)

    def pareto_set(self, preferences: Tensor) -> list[dict[str, Tensor]]:
        """The plain networks' weights for any preferences ``(n, m)``."""
        return [self.net.specialise(u) for u in preferences.to(self.device, torch.float32)]

    def solutions(self) -> dict[str, Tensor]:
        """The K plain networks folded out of the conditioned one, stacked along dim 0."""
        states = self.pareto_set(self.method.preferences)
        return {name: torch.stack([s[name] for s in states]).cpu() for name in states[0]}

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": {n: t.detach().cpu() for n, t in self.net.state_dict().items()},
            "conditioned": True,
            "params": self.solutions(),
            "pref_gen": self.pref_gen.get_state(),
            **self._base_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state.get("conditioned"):
            raise ValueError("checkpoint holds no conditioned model: it was not written by psl")
        self.net.load_state_dict(state["model"])
        self.pref_gen.set_state(state["pref_gen"])
        self._load_base(state)

    def load_model(self, index: int, state: dict[str, Tensor]) -> None:
        raise ValueError(f"{self.method.name} models cannot be warm-started from another model")

    def model_config(self) -> dict[str, Any]:
        return dict(self.problem.model_config())
