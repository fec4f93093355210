"""Data-set problems: whole splits as tensors, a model factory and per-task losses and metrics.

A :class:`DatasetProblem` is what the training engine (:func:`pmtl_core.train`) consumes. Its
splits live as whole tensors on the training device (images stay ``uint8``), a batch is an index
slice, and :meth:`DatasetProblem.transform` turns a stored batch into model input. The engine
trains K models at once by ``vmap`` over stacked parameters and calls :meth:`task_losses` and
:meth:`task_metrics` inside that ``vmap``: implementations must be pure tensor code (no
``.item()``, no Python branches on tensor values, no in-place changes of their inputs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from pmtl_core.models import MultiTaskModel, build_model

__all__ = ["ClassificationProblem", "DataSplits", "DatasetProblem", "TensorData"]


@dataclass(frozen=True)
class TensorData:
    """One split: ``inputs (N, ...)`` (may be ``uint8``) and ``targets (N, m)`` or ``(N, ...)``."""

    inputs: Tensor
    targets: Tensor

    def __post_init__(self) -> None:
        if self.inputs.shape[:1] != self.targets.shape[:1]:
            raise ValueError(
                f"inputs and targets must have the same length, got {tuple(self.inputs.shape)} "
                f"and {tuple(self.targets.shape)}"
            )

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def to(self, device: torch.device | str) -> TensorData:
        """The same split with both tensors on ``device``."""
        return TensorData(self.inputs.to(device), self.targets.to(device))


@dataclass(frozen=True)
class DataSplits:
    """The train and test splits of a problem."""

    train: TensorData
    test: TensorData

    def to(self, device: torch.device | str) -> DataSplits:
        """Both splits on ``device``."""
        return DataSplits(self.train.to(device), self.test.to(device))


class DatasetProblem(ABC):
    """A multi-task data set with its model, losses and metrics.

    Subclasses set ``name``, ``n_tasks``, ``task_names`` and ``metric_names`` and implement
    :meth:`load`, :meth:`model_config`, :meth:`task_losses` and :meth:`task_metrics`.
    Construction must stay cheap (no data is read before :meth:`load`): the registry builds
    problems to describe them.
    """

    name: str
    n_tasks: int
    task_names: tuple[str, ...]
    metric_names: tuple[str, ...] = ()

    @abstractmethod
    def load(self, device: torch.device | str = "cpu") -> DataSplits:
        """Build or read the data; the whole train and test splits on ``device``."""

    def transform(self, inputs: Tensor) -> Tensor:
        """A stored batch as float model input (default: a float copy)."""
        return inputs.to(torch.float32)

    @abstractmethod
    def model_config(self) -> dict[str, Any]:
        """JSON config of the model (see :func:`pmtl_core.models.build_model`)."""

    def build_model(self) -> MultiTaskModel:
        """A freshly initialised model, built from :meth:`model_config` so that a downloaded
        model is rebuilt exactly the same way."""
        return build_model(self.model_config())

    @abstractmethod
    def task_losses(self, outputs: Sequence[Tensor], targets: Tensor) -> Tensor:
        """Mean loss per task ``(m,)`` of a batch; ``outputs`` are the m heads' outputs."""

    @abstractmethod
    def task_metrics(self, outputs: Sequence[Tensor], targets: Tensor) -> dict[str, Tensor]:
        """Per-task metric *sums* over the batch, ``{metric: (m,)}`` for each of
        ``metric_names`` (the engine divides by the number of samples)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, m={self.n_tasks})"


class ClassificationProblem(DatasetProblem):
    """Every task is a classification: ``targets (N, m)`` hold class indices, head ``i`` outputs
    logits ``(N, C_i)``; the loss is cross-entropy and the metric the count of correct labels."""

    metric_names: ClassVar[tuple[str, ...]] = ("accuracy",)

    def task_losses(self, outputs: Sequence[Tensor], targets: Tensor) -> Tensor:
        """Mean cross-entropy per task ``(m,)``."""
        return torch.stack(
            [F.cross_entropy(logits, targets[..., i]) for i, logits in enumerate(outputs)]
        )

    def task_metrics(self, outputs: Sequence[Tensor], targets: Tensor) -> dict[str, Tensor]:
        """``{"accuracy": (m,)}``: the number of correctly classified samples per task."""
        correct = [(logits.argmax(-1) == targets[..., i]).sum() for i, logits in enumerate(outputs)]
        return {"accuracy": torch.stack(correct).to(outputs[0].dtype)}
