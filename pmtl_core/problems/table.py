"""Problem ``table``: a practitioner's own table, two or more target columns as tasks.

Each target is a task: ``classification`` (cross-entropy; metric ``accuracy``) or
``regression`` (MSE on the target standardised with the train split's statistics; metric
``rmse`` in the target's original units). A shared MLP encoder feeds one linear head per
target. Rows whose targets are missing are dropped; the rest are split by a permutation drawn
from ``split_seed`` (``test_fraction`` of them, at least one row, form the test split). The
features are encoded by :class:`~pmtl_core.problems.table_preprocess.TablePreprocessor`,
fitted on the train split and stored in the model config (``model.preprocessing``), which is
what :func:`pmtl_core.load_predictor` reads back.

``rmse`` is computed per batch and averaged over the batches weighted by their size: exact on
a split evaluated in one batch (the test split, up to ``eval_batch_size`` rows), the usual
running average during a training epoch.

Construction reads no data; :meth:`TableProblem.load` and :meth:`TableProblem.model_config`
read the file once (a missing column is a ``ValueError`` naming it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from pmtl_core.models import MLPConfig, ModelConfig
from pmtl_core.problems.dataset import DatasetProblem, DataSplits, TensorData

if TYPE_CHECKING:  # pandas is imported when a table is read, not with the registry
    import pandas as pd

    from pmtl_core.problems.table_preprocess import TablePreprocessor, TargetSpec

__all__ = ["TableProblem", "split_rows"]


def split_rows(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row positions of ``n`` rows: a permutation drawn from ``seed``, its first
    ``round(n * test_fraction)`` rows (at least one) the test split."""
    n_test = max(1, round(n * test_fraction))
    if n - n_test < 1:
        raise ValueError(
            f"the table has {n} usable rows: too few for a test split of {test_fraction:g} "
            "and a train split"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _targets(targets: Sequence[Any]) -> tuple[TargetSpec, ...]:
    from pmtl_core.problems.table_preprocess import TargetSpec

    out = []
    for t in targets:
        if isinstance(t, TargetSpec):
            out.append(t)
        elif isinstance(t, Mapping):
            out.append(TargetSpec(str(t["column"]), str(t["kind"])))
        else:
            out.append(TargetSpec(str(getattr(t, "column")), str(getattr(t, "kind"))))  # noqa: B009
    return tuple(out)


class TableProblem(DatasetProblem):
    """Targets of a table (CSV, Parquet or a DataFrame) through a shared MLP encoder."""

    name = "table"

    def __init__(
        self,
        *,
        targets: Sequence[Any],
        path: str | Path | None = None,
        frame: pd.DataFrame | None = None,
        features: Sequence[str] | None = None,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        hidden: Sequence[int] = (64,),
        representation: int = 32,
    ) -> None:
        if (path is None) == (frame is None):
            raise ValueError(
                "the table problem needs its data: a file path (dataset_path; the service fills "
                "it in from dataset_id) or a DataFrame"
            )
        self.targets = _targets(targets)
        if len(self.targets) < 2:
            raise ValueError(f"the table problem needs two or more targets, got {len(targets)}")
        columns = [t.column for t in self.targets]
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise ValueError(f"target column(s) {repeated} are listed more than once")
        if features is not None:
            clash = sorted(set(features) & set(columns))
            if clash:
                raise ValueError(f"column(s) {clash} cannot be both a target and a feature")
            if not features:
                raise ValueError("features must name at least one column (or be left out)")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        if split_seed < 0:
            raise ValueError(f"split_seed must be >= 0, got {split_seed}")
        self.path = None if path is None else Path(path)
        self._frame = frame
        self.features = None if features is None else tuple(features)
        self.test_fraction, self.split_seed = float(test_fraction), int(split_seed)
        self.hidden, self.representation = tuple(hidden), int(representation)
        self.n_tasks = len(self.targets)
        self.task_names = tuple(columns)
        kinds = {t.kind for t in self.targets}
        self.metric_names = tuple(
            m for m, k in (("accuracy", "classification"), ("rmse", "regression")) if k in kinds
        )
        self._prepared: tuple[TablePreprocessor, DataSplits] | None = None

    # ------------------------------------------------------------------ data

    def frame(self) -> pd.DataFrame:
        """The whole table as read (the file is read on each call; ``load`` caches)."""
        from pmtl_core.problems.table_preprocess import read_table

        if self._frame is not None:
            return self._frame
        assert self.path is not None
        return read_table(self.path)

    def _prepare(self) -> tuple[TablePreprocessor, DataSplits]:
        from pmtl_core.problems.table_preprocess import TablePreprocessor

        if self._prepared is not None:
            return self._prepared
        frame = self.frame()
        columns = [str(c) for c in frame.columns]
        frame = frame.set_axis(columns, axis=1)
        wanted = [t.column for t in self.targets] + list(self.features or ())
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise ValueError(
                f"column(s) {missing} are not in the table; its columns are: {', '.join(columns)}"
            )
        targets = [t.column for t in self.targets]
        features = list(self.features or [c for c in columns if c not in targets])
        if not features:
            raise ValueError("the table has no column left to use as a feature")
        usable = frame.dropna(subset=targets).reset_index(drop=True)
        if len(usable) < 2:
            raise ValueError(
                f"the table has {len(usable)} row(s) with every target present; "
                "at least two are needed"
            )
        train_rows, test_rows = split_rows(len(usable), self.test_fraction, self.split_seed)
        pre = TablePreprocessor.fit(usable, train_rows, features, self.targets)
        x = torch.from_numpy(pre.transform(usable))
        y = torch.from_numpy(pre.encode_targets(usable))
        train_t, test_t = torch.from_numpy(train_rows), torch.from_numpy(test_rows)
        splits = DataSplits(TensorData(x[train_t], y[train_t]), TensorData(x[test_t], y[test_t]))
        self._prepared = (pre, splits)
        return self._prepared

    @property
    def preprocessor(self) -> TablePreprocessor:
        """The fitted preprocessing (reads the table on first use)."""
        return self._prepare()[0]

    def load(self, device: torch.device | str = "cpu") -> DataSplits:
        """Read the table, split it, fit the preprocessing on the train split, encode both."""
        return self._prepare()[1].to(device)

    def model_config(self) -> dict[str, Any]:
        """MLP encoder (inputs → hidden… → representation), one head per target (its class
        count, or 1), and the fitted preprocessing under ``preprocessing``."""
        pre = self.preprocessor
        encoder = MLPConfig(
            in_features=max(1, pre.n_inputs), hidden=self.hidden, out=self.representation
        )
        config = ModelConfig(encoder=encoder, heads=pre.head_sizes).model_dump(mode="json")
        config["preprocessing"] = pre.to_json()
        return config

    def build_model(self) -> Any:
        """A freshly initialised network (the preprocessing is not part of it)."""
        from pmtl_core.models import build_model

        config = self.model_config()
        config.pop("preprocessing")
        return build_model(config)

    # ------------------------------------------------------------------ losses

    def task_losses(self, outputs: Sequence[Tensor], targets: Tensor) -> Tensor:
        """Cross-entropy (classification) or MSE on the standardised target (regression)."""
        losses = []
        for i, (spec, out) in enumerate(zip(self.targets, outputs, strict=True)):
            if spec.kind == "classification":
                losses.append(F.cross_entropy(out, targets[..., i].long()))
            else:
                losses.append(F.mse_loss(out[..., 0], targets[..., i]))
        return torch.stack(losses)

    def task_metrics(self, outputs: Sequence[Tensor], targets: Tensor) -> dict[str, Tensor]:
        """Per-task sums: ``accuracy`` (correct labels) and ``rmse`` (batch RMSE in original
        units × batch size); NaN where a metric does not apply to a task."""
        stds = [t.get("std", 1.0) for t in self.preprocessor.targets]
        n = float(targets.shape[0])
        nan = outputs[0].new_full((), math.nan)
        acc, rmse = [], []
        for i, (spec, out) in enumerate(zip(self.targets, outputs, strict=True)):
            if spec.kind == "classification":
                acc.append((out.argmax(-1) == targets[..., i].long()).sum().to(out.dtype))
                rmse.append(nan)
            else:
                mse = ((out[..., 0] - targets[..., i]) ** 2).mean()
                rmse.append(mse.sqrt() * stds[i] * n)
                acc.append(nan)
        metrics = {"accuracy": torch.stack(acc), "rmse": torch.stack(rmse)}
        return {name: metrics[name] for name in self.metric_names}
