"""Preprocessing of a practitioner's table: fitted on the train split, carried as JSON.

:meth:`TablePreprocessor.fit` learns, from the train split only, what turns a
``pandas.DataFrame`` into the network's numeric input and its targets:

- numeric features: the train median fills missing values, a ``<col>__missing`` indicator is
  added when the train split had any, then standardisation with the train mean and standard
  deviation (a constant column is only centred),
- categorical features (strings, booleans): one-hot over the train split's most frequent
  categories (at most ``MAX_CATEGORIES``); a missing value is a category of its own, and a
  category never seen in training encodes as all zeros,
- classification targets: class indices over the sorted labels of the whole table (labels are
  not statistics, and a label seen only in the test split must still be encodable),
- regression targets: standardised with the train split's mean and standard deviation.

:meth:`TablePreprocessor.to_json` / :meth:`TablePreprocessor.from_json` round-trip it, so it
travels in the exported model's config and :func:`pmtl_core.load_predictor` can apply it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MAX_CATEGORIES",
    "TablePreprocessor",
    "TargetSpec",
    "read_table",
]

#: One-hot width cap per categorical feature (the most frequent train categories are kept).
MAX_CATEGORIES = 100
KINDS: tuple[str, ...] = ("classification", "regression")
FORMAT = 1


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV (header row) or Parquet file as a DataFrame, chosen by the file's suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix in (".csv", ".txt", ""):
        return pd.read_csv(path)
    raise ValueError(f"{path.name}: unknown table format {suffix!r} (use .csv or .parquet)")


@dataclass(frozen=True)
class TargetSpec:
    """One task: predict ``column`` as a ``classification`` or ``regression`` target."""

    column: str
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"target {self.column!r} has unknown kind {self.kind!r}; "
                f"use one of: {', '.join(KINDS)}"
            )


def _json_value(value: Any) -> Any:
    """A label as a plain JSON value: numpy scalars become Python numbers, and integral floats
    (an integer column that had missing values) integers again."""
    value = value.item() if isinstance(value, np.generic) else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _category(value: Any) -> str | None:
    """The category key of a raw value: its text, or None when it is missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 (an int column that had gaps) and 3 are one category
    return str(value)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _numeric(series: pd.Series) -> np.ndarray:
    return pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


class TablePreprocessor:
    """Features and targets of a table as numbers; see the module docstring for the rules."""

    def __init__(self, features: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
        self.features = features
        self.targets = targets

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        train_rows: np.ndarray,
        features: Sequence[str],
        targets: Sequence[TargetSpec],
    ) -> TablePreprocessor:
        """Learn the encoding from ``frame.iloc[train_rows]`` (labels: from the whole frame).

        ``ValueError`` names a constant target (one class, or no spread on the train split).
        """
        train = frame.iloc[train_rows]
        feats: list[dict[str, Any]] = []
        for name in features:
            column = train[name]
            if _is_numeric(frame[name]):
                values = _numeric(column)
                present = values[~np.isnan(values)]
                median = float(np.median(present)) if present.size else 0.0
                filled = np.where(np.isnan(values), median, values)
                mean = float(filled.mean()) if filled.size else 0.0
                std = float(filled.std()) if filled.size else 0.0
                feats.append(
                    {
                        "name": name,
                        "type": "numeric",
                        "median": median,
                        "mean": mean,
                        "std": std if std > 1e-12 else 1.0,
                        "indicator": bool(present.size < values.size),
                    }
                )
            else:
                keys = pd.Series([_category(v) for v in column], dtype=object)
                counts = keys.value_counts(dropna=False, sort=False)
                ranked = sorted(
                    counts.items(), key=lambda kv: (-kv[1], "" if kv[0] is None else kv[0])
                )
                cats = [k for k, _ in ranked[:MAX_CATEGORIES]]
                feats.append({"name": name, "type": "categorical", "categories": cats})
        tgts: list[dict[str, Any]] = []
        for spec in targets:
            if spec.kind == "classification":
                labels = frame[spec.column].dropna().unique().tolist()
                labels = sorted({_json_value(v) for v in labels}, key=lambda v: (str(type(v)), v))
                if len(labels) < 2:
                    raise ValueError(
                        f"target {spec.column!r} is constant (one class: {labels!r}); "
                        "a classification target needs at least two classes"
                    )
                tgts.append({"column": spec.column, "kind": spec.kind, "classes": labels})
            else:
                if not _is_numeric(frame[spec.column]):
                    raise ValueError(
                        f"regression target {spec.column!r} is not numeric "
                        f"(dtype {frame[spec.column].dtype}); use kind 'classification'"
                    )
                values = _numeric(train[spec.column])
                values = values[~np.isnan(values)]
                std = float(values.std()) if values.size else 0.0
                if std <= 1e-12:
                    raise ValueError(
                        f"target {spec.column!r} is constant on the train split; "
                        "a regression target needs some spread"
                    )
                tgts.append(
                    {
                        "column": spec.column,
                        "kind": spec.kind,
                        "mean": float(values.mean()),
                        "std": std,
                    }
                )
        return cls(feats, tgts)

    # ------------------------------------------------------------------ shapes

    @property
    def input_names(self) -> list[str]:
        """Name of each input column of the network, in order."""
        names: list[str] = []
        for f in self.features:
            if f["type"] == "numeric":
                names.append(f["name"])
                if f["indicator"]:
                    names.append(f"{f['name']}__missing")
            else:
                names += [f"{f['name']}={'<missing>' if c is None else c}" for c in f["categories"]]
        return names

    @property
    def n_inputs(self) -> int:
        """Width of the network's input."""
        return len(self.input_names)

    @property
    def head_sizes(self) -> tuple[int, ...]:
        """Output width per task: the class count, or 1 for a regression."""
        return tuple(
            len(t["classes"]) if t["kind"] == "classification" else 1 for t in self.targets
        )

    # ------------------------------------------------------------------ transforms

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        """The network input ``(N, n_inputs) float32`` of ``frame`` (``ValueError`` names a
        missing feature column)."""
        missing = [f["name"] for f in self.features if f["name"] not in frame.columns]
        if missing:
            raise ValueError(f"the table lacks the feature column(s) {missing}")
        blocks: list[np.ndarray] = []
        n = len(frame)
        for f in self.features:
            if f["type"] == "numeric":
                values = _numeric(frame[f["name"]])
                absent = np.isnan(values)
                filled = np.where(absent, f["median"], values)
                blocks.append(((filled - f["mean"]) / f["std"]).reshape(n, 1))
                if f["indicator"]:
                    blocks.append(absent.astype(np.float64).reshape(n, 1))
            else:
                index = {c: i for i, c in enumerate(f["categories"])}
                cols = np.fromiter(
                    (index.get(_category(v), -1) for v in frame[f["name"]]), dtype=np.int64, count=n
                )
                onehot = np.zeros((n, len(index)))
                seen = cols >= 0
                onehot[np.flatnonzero(seen), cols[seen]] = 1.0
                blocks.append(onehot)
        if not blocks:
            return np.zeros((n, 0), dtype=np.float32)
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def encode_targets(self, frame: pd.DataFrame) -> np.ndarray:
        """Targets ``(N, m) float32``: class indices, or standardised regression values."""
        cols = []
        for t in self.targets:
            if t["kind"] == "classification":
                index = {_category(c): i for i, c in enumerate(t["classes"])}
                codes = [index.get(_category(v), -1) for v in frame[t["column"]]]
                if min(codes, default=0) < 0:
                    raise ValueError(f"target {t['column']!r} holds a label outside its classes")
                cols.append(np.asarray(codes, dtype=np.float64))
            else:
                cols.append((_numeric(frame[t["column"]]) - t["mean"]) / t["std"])
        return np.stack(cols, axis=1).astype(np.float32)

    def decode(self, task: int, output: np.ndarray) -> np.ndarray:
        """Head ``task``'s raw output ``(N, C)`` as predictions in the target's own terms:
        the original class labels, or values in the original units."""
        t = self.targets[task]
        if t["kind"] == "classification":
            return np.asarray(t["classes"])[output.argmax(-1)]
        return output[:, 0].astype(np.float64) * t["std"] + t["mean"]

    # ------------------------------------------------------------------ JSON

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_json`)."""
        return {"format": FORMAT, "features": self.features, "targets": self.targets}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TablePreprocessor:
        """Rebuild from :meth:`to_json`'s output (``ValueError`` for another format)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"unsupported table preprocessing format {data!r:.80}")
        return cls(list(data["features"]), list(data["targets"]))
