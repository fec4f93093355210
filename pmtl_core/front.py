"""``Front``: the result of solving or training K subproblems, and its JSON form."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pmtl_core.atomic import atomic_write_bytes

__all__ = ["Front", "write_json_atomic"]


@dataclass
class Front:
    """K solutions of an ``m``-task problem, one per preference vector.

    ``objectives (K, m)``: final losses (train split for datasets); ``preferences (K, m)``;
    ``params``: the K solutions (``(K, d)`` for function problems, a stacked state dict for
    models); ``history (T, K, m)``: objectives over steps or epochs; ``test_objectives`` and
    ``metrics`` are filled by the training engine; ``failed (K,)`` marks diverged subproblems.
    ``pareto_set``: for methods that learn the whole front (``psl``), a function from any
    preferences ``(n, m)`` to their solutions ``(n, d)``; ``None`` otherwise.
    """

    problem: str
    method: str
    objectives: Tensor
    preferences: Tensor
    params: Any = None
    history: Tensor | None = None
    test_objectives: Tensor | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    failed: Tensor | None = None
    task_names: tuple[str, ...] = ()
    pareto_set: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        if self.objectives.dim() != 2 or self.preferences.shape != self.objectives.shape:
            raise ValueError(
                f"objectives and preferences must both be (K, m), got "
                f"{tuple(self.objectives.shape)} and {tuple(self.preferences.shape)}"
            )

    @property
    def n_solutions(self) -> int:
        return self.objectives.shape[0]

    @property
    def n_tasks(self) -> int:
        return self.objectives.shape[1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tensors as nested lists; ``params`` left out)."""
        out: dict[str, Any] = {
            "problem": self.problem,
            "method": self.method,
            "task_names": list(self.task_names),
            "preferences": self.preferences.tolist(),
            "objectives": self.objectives.tolist(),
        }
        if self.test_objectives is not None:
            out["test_objectives"] = self.test_objectives.tolist()
        if self.history is not None:
            out["history"] = self.history.tolist()
        if self.failed is not None:
            out["failed"] = self.failed.tolist()
        if self.metrics:
            out["metrics"] = _jsonable(self.metrics)
        return out

    def save(self, directory: str | os.PathLike[str], name: str = "front.json") -> Path:
        """Write ``front.json`` atomically into ``directory`` and return its path."""
        path = Path(directory) / name
        write_json_atomic(path, self.to_dict())
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Front:
        """Rebuild a front from :meth:`to_dict` output (without ``params``)."""

        def opt(key: str, dtype: torch.dtype = torch.float32) -> Tensor | None:
            return torch.tensor(data[key], dtype=dtype) if key in data else None

        return cls(
            problem=data["problem"],
            method=data["method"],
            objectives=torch.tensor(data["objectives"], dtype=torch.float32),
            preferences=torch.tensor(data["preferences"], dtype=torch.float32),
            history=opt("history"),
            test_objectives=opt("test_objectives"),
            failed=opt("failed", torch.bool),
            metrics=data.get("metrics", {}),
            task_names=tuple(data.get("task_names", ())),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Front:
        return cls.from_dict(json.loads(Path(path).read_text()))


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` via a temp file in the same directory, fsync and rename."""
    text = json.dumps(data, indent=1, allow_nan=True)
    atomic_write_bytes(path, text.encode())


def _jsonable(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
