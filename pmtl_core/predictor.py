"""Predictions from a downloaded table model: raw rows in, labels and values out.

``load_predictor(config, weights)`` rebuilds the network (as :func:`pmtl_core.load_model`
does) and the preprocessing stored in the config by the ``table`` problem, so that

    predictor = load_predictor("model/config.json", "model/model.safetensors")
    predictor.predict(frame)  # {"species": array([...]), "body_mass_g": array([...])}

gives, per target, class labels in their original values or regression values in the target's
original units. Columns the model does not use are ignored; a missing feature column is a
``ValueError`` naming it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from pmtl_core.export import load_model
from pmtl_core.problems.table_preprocess import TablePreprocessor

__all__ = ["Predictor", "load_predictor"]


class Predictor:
    """A table model with its preprocessing: :meth:`predict` maps a DataFrame to predictions."""

    def __init__(
        self, model: nn.Module, preprocessing: TablePreprocessor, task_names: list[str]
    ) -> None:
        self.model = model.eval()
        self.preprocessing = preprocessing
        self.task_names = list(task_names)

    @property
    def feature_columns(self) -> list[str]:
        """The table columns the model reads."""
        return [f["name"] for f in self.preprocessing.features]

    def inputs(self, frame: pd.DataFrame) -> np.ndarray:
        """The network's numeric input ``(N, F) float32`` for ``frame`` (also the ONNX input)."""
        return self.preprocessing.transform(frame.set_axis([str(c) for c in frame.columns], axis=1))

    @torch.no_grad()
    def outputs(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """Each head's raw output for ``frame``: logits ``(N, C)`` or a standardised ``(N, 1)``."""
        x = torch.from_numpy(self.inputs(frame))
        _, outs = self.model(x)
        return [o.numpy() for o in outs]

    def predict(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """``{target: (N,) array}``: original class labels, or values in original units."""
        if not isinstance(frame, pd.DataFrame):
            raise ValueError(f"predict takes a pandas DataFrame, got {type(frame).__name__}")
        outs = self.outputs(frame)
        return {
            name: self.preprocessing.decode(i, out)
            for i, (name, out) in enumerate(zip(self.task_names, outs, strict=True))
        }

    def predict_proba(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """``{target: (N, C) probabilities}`` of the classification targets, columns in the
        order of ``preprocessing.targets[i]["classes"]``."""
        outs = self.outputs(frame)
        return {
            t["column"]: torch.softmax(torch.from_numpy(out), -1).numpy()
            for t, out in zip(self.preprocessing.targets, outs, strict=True)
            if t["kind"] == "classification"
        }


def load_predictor(
    config: dict[str, Any] | str | os.PathLike[str], weights: bytes | str | os.PathLike[str]
) -> Predictor:
    """The :class:`Predictor` of an exported table model (``config.json`` dict or path and its
    safetensors weights, bytes or path); ``ValueError`` for a model without preprocessing."""
    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text(encoding="utf-8"))
    preprocessing = (config.get("model") or {}).get("preprocessing")
    if preprocessing is None:
        raise ValueError(
            f"the model of problem {config.get('problem')!r} carries no table preprocessing; "
            "load_predictor serves models of the 'table' problem (use load_model for others)"
        )
    pre = TablePreprocessor.from_json(preprocessing)
    return Predictor(load_model(config, weights), pre, list(config["task_names"]))
