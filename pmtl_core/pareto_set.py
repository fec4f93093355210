"""Any trade-off of a learned Pareto set: evaluate preferences, or cut out one preference's model.

A checkpoint of a ``psl`` run holds one model for the whole front: on a function problem the
set model ``h(u)`` (:class:`~pmtl_core.engine.set_loop.SetModel`), on a data set the
preference-conditioned network (:class:`~pmtl_core.engine.conditioned.ConditionedModel`).
:class:`ParetoSet` answers, for preferences it never trained on, their losses and metrics on a
split, and the plain model of one preference as the same ``config.json`` + safetensors pair
that :func:`pmtl_core.export.export_model` writes, so :func:`pmtl_core.load_model` rebuilds it.

    pset = ParetoSet.from_checkpoint("runs/x/ckpt-epoch0010.pt", problem)
    points = pset.evaluate(torch.tensor([[0.3, 0.7], [0.9, 0.1]]), split="test")
    config, tensors = pset.model([0.3, 0.7])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from pmtl_core import checkpoints
from pmtl_core.engine.conditioned import ConditionedModel
from pmtl_core.engine.set_loop import SetModel
from pmtl_core.export import CONFIG_FORMAT
from pmtl_core.preferences import validate

__all__ = ["ParetoSet"]

#: Seed of the draw behind ``evaluate(..., samples=n)``: the same examples on every call.
_SAMPLE_SEED = 0


class ParetoSet:
    """The model of a ``psl`` checkpoint for any preference vector."""

    def __init__(self, state: dict[str, Any], problem: Any) -> None:
        trainer = state["trainer"]
        if "model" not in trainer:
            raise ValueError(
                f"a {state['method']} checkpoint holds one model per preference vector, not a "
                "Pareto set: only psl runs evaluate or export any preference"
            )
        if problem.name != state["problem"]:
            raise ValueError(f"checkpoint is for {state['problem']!r}, not {problem.name!r}")
        self.state = state
        self.problem = problem
        self.kind = state["kind"]
        self.n_tasks = int(state["preferences"].shape[1])
        if self.kind == "function":
            hidden = int(state["method_params"]["hidden"])
            self.net: torch.nn.Module = SetModel(problem, hidden)
        else:
            self.net = ConditionedModel(state["model_config"], self.n_tasks)
        self.net.load_state_dict(trainer["model"])
        self.net.eval()
        self._data: Any = None

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike[str], problem: Any) -> ParetoSet:
        """Load a checkpoint file (on the CPU)."""
        return cls(checkpoints.load(path, map_location="cpu"), problem)

    @property
    def epoch(self) -> int:
        """The epoch the checkpoint was written after."""
        return int(self.state["epoch"])

    def preferences(self, vectors: Tensor | Sequence[Sequence[float]]) -> Tensor:
        """Validated preferences ``(n, m)`` (``ValueError`` names a bad row, counting from 1)."""
        return validate(vectors, self.n_tasks)

    @torch.no_grad()
    def evaluate(
        self,
        vectors: Tensor | Sequence[Sequence[float]],
        split: str = "train",
        samples: int | None = None,
    ) -> list[dict[str, Any]]:
        """``[{vector, losses, metrics}]`` for each preference, on ``split`` (function problems
        have only ``train``: the objectives at the preference's solution).

        ``samples`` evaluates data-set problems on that many examples of the split instead of
        all of them, the same examples on every call (a seeded draw): an estimate that answers
        in proportion faster, for drawing a front interactively. Function problems ignore it.
        """
        prefs = self.preferences(vectors)
        unit = prefs / torch.linalg.vector_norm(prefs, dim=-1, keepdim=True)
        if self.kind == "function":
            if split != "train":
                raise ValueError(f"a function problem has only the train split, not {split!r}")
            losses = self.problem.evaluate(self.net(unit))
            return [
                {"vector": p.tolist(), "losses": row.tolist(), "metrics": {}}
                for p, row in zip(prefs, losses, strict=True)
            ]
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', not {split!r}")
        if self._data is None:
            self._data = self.problem.load("cpu")
        inputs, targets = self._examples(split, samples)
        batch = int(self.state.get("config", {}).get("eval_batch_size", 2048))
        res = self.net.evaluate(self.problem, inputs, targets, unit, batch=batch)
        names = [k for k in res if k != "losses"]
        return [
            {
                "vector": p.tolist(),
                "losses": res["losses"][i].tolist(),
                "metrics": {name.removeprefix("metric:"): res[name][i].tolist() for name in names},
            }
            for i, p in enumerate(prefs)
        ]

    def split_size(self, split: str) -> int | None:
        """The number of examples in a data-set problem's ``split`` (``None`` for functions)."""
        if self.kind == "function":
            return None
        if self._data is None:
            self._data = self.problem.load("cpu")
        return int(getattr(self._data, split).inputs.shape[0])

    def _examples(self, split: str, samples: int | None) -> tuple[Tensor, Tensor]:
        """The split's inputs and targets, or ``samples`` of them drawn with a fixed seed."""
        data = getattr(self._data, split)
        n = data.inputs.shape[0]
        if samples is None or samples >= n:
            return data.inputs, data.targets
        if samples < 1:
            raise ValueError(f"samples must be at least 1, not {samples}")
        gen = torch.Generator().manual_seed(_SAMPLE_SEED)
        keep = torch.randperm(n, generator=gen)[:samples].sort().values
        return data.inputs[keep], data.targets[keep]

    @torch.no_grad()
    def model(self, vector: Sequence[float] | Tensor) -> tuple[dict[str, Any], dict[str, Tensor]]:
        """The plain model of one preference: its JSON config and its tensors."""
        pref = self.preferences([list(map(float, vector))])[0]
        unit = pref / torch.linalg.vector_norm(pref)
        state = self.state
        if self.kind == "function":
            tensors = {"x": self.net(unit[None])[0].contiguous()}
            model_cfg: dict[str, Any] = {"architecture": "point", "dim": int(self.problem.dim)}
        else:
            tensors = {n: t.contiguous() for n, t in self.net.specialise(unit).items()}
            model_cfg = state["model_config"]
        config = {
            "format": CONFIG_FORMAT,
            "kind": self.kind,
            "problem": state["problem"],
            "problem_options": state.get("meta", {}).get("problem_options", {}),
            "model": model_cfg,
            "task_names": list(state["task_names"]),
            "preference": pref.tolist(),
            "index": None,
            "method": state["method"],
            "method_params": state["method_params"],
            "epoch": self.epoch,
            "losses": {},
            "diverged": False,
        }
        return config, tensors
