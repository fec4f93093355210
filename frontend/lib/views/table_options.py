"""New run, problem ``table``: the user's data set, target columns with their kind, features.

Replaces the raw options form for ``table``: a data set picker (a link to the Datasets page
when there is none), a multiselect of target columns (one task each) with a kind per target,
the feature columns (all others by default), the test fraction and the split seed. The API
checks the rest (a constant target, a non-numeric regression target) and its refusal is shown
in words under this form (:data:`ERROR_KEY`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import streamlit as st

from frontend.lib import session
from frontend.lib.models import Dataset

__all__ = [
    "DATASET_KEY",
    "ERROR_KEY",
    "FORM_OPTIONS",
    "KINDS",
    "TableChoice",
    "default_kind",
    "table_options",
]

KINDS = ("classification", "regression")
#: The chosen data set id (the Datasets page's "Use in a new run" sets it too).
DATASET_KEY = "new_run.table.dataset"
#: The API's last refusal of a table run, shown under this form.
ERROR_KEY = "new_run.table.api_error"
#: A float column with at most this many distinct values (in the rows sampled) looks like labels.
LOW_CARDINALITY = 10
#: The options this form sets; the others (network sizes) stay under "Advanced".
FORM_OPTIONS = frozenset({"dataset_id", "targets", "features", "test_fraction", "split_seed"})
SAMPLE_ROWS = 500


@dataclass
class TableChoice:
    """What the form chose: the options to send, the tasks (target columns), what is missing,
    and the slot under the form where the API's refusal is shown."""

    options: dict[str, Any] = field(default_factory=dict)
    task_names: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    slot: Any = None

    def refused(self, message: str) -> None:
        """Show the API's refusal of these options under the form (kept until they change)."""
        st.session_state[ERROR_KEY] = {"options": self.options, "message": message}
        if self.slot is not None:
            self.slot.error(f"The API refused these options: {message}", icon=":material/error:")


def default_kind(dtype: str, values: list[Any]) -> str:
    """``regression`` for a float column with more than :data:`LOW_CARDINALITY` distinct values
    among ``values`` (a sample of the column), else ``classification``."""
    if not dtype.startswith("float"):
        return "classification"
    distinct = {v for v in values if v is not None}
    return "regression" if len(distinct) > LOW_CARDINALITY else "classification"


def _sample(dataset: Dataset) -> dict[str, list[Any]]:
    """Values of each column in the first rows (for the default kinds); empty on failure."""
    key = f"new_run.table.sample.{dataset.id}"
    if key not in st.session_state:
        try:
            preview = session.client().dataset_preview(dataset.id, SAMPLE_ROWS)
        except session.API_ERRORS:
            return {}
        st.session_state[key] = {
            c: [row[i] for row in preview.rows] for i, c in enumerate(preview.columns)
        }
    return st.session_state[key]


def _pick_dataset(datasets: list[Dataset]) -> Dataset:
    by_id = {d.id: d for d in datasets}
    if st.session_state.get(DATASET_KEY) not in by_id:
        st.session_state[DATASET_KEY] = datasets[0].id
    chosen = st.selectbox(
        "Data set",
        list(by_id),
        key=DATASET_KEY,
        format_func=lambda i: f"#{i} · {by_id[i].name} ({by_id[i].n_rows} rows)",
    )
    return by_id[chosen]


def _kinds(dataset: Dataset, targets: list[str]) -> list[dict[str, str]]:
    dtypes = {c.name: c.dtype for c in dataset.columns}
    sample = _sample(dataset)
    out = []
    cols = st.columns(min(3, len(targets)))
    for i, column in enumerate(targets):
        guess = default_kind(dtypes.get(column, "object"), sample.get(column, []))
        with cols[i % len(cols)]:
            kind = st.selectbox(
                f"Kind of {column} ({dtypes.get(column, '?')})",
                KINDS,
                index=KINDS.index(guess),
                key=f"new_run.table.{dataset.id}.kind.{column}",
                help="classification: cross-entropy, accuracy; regression: MSE, RMSE",
            )
        out.append({"column": column, "kind": kind})
    return out


def table_options(problem_name: str) -> TableChoice:
    """Draw the table form; return the chosen options, the tasks and what is still missing."""
    choice = TableChoice()
    datasets = session.try_api(lambda: session.client().list_datasets(), "Could not list data sets")
    if datasets is None:
        choice.problems.append("the data sets could not be listed")
        return choice
    if not datasets:
        st.warning("The `table` problem trains on one of your data sets, and you have none yet.")
        st.page_link(
            session.page("datasets"),
            label="Upload a table on the Datasets page",
            icon=":material/upload:",
        )
        choice.problems.append("upload a data set on the Datasets page first")
        return choice
    dataset = _pick_dataset(datasets)
    names = [c.name for c in dataset.columns]
    targets = st.multiselect(
        "Target columns (one task each)",
        names,
        key=f"new_run.table.{dataset.id}.targets",
        help="two or more columns to predict",
    )
    kinds = _kinds(dataset, targets) if targets else []
    others = [n for n in names if n not in targets]
    features = st.multiselect(
        "Feature columns",
        others,
        default=others,
        key=f"new_run.table.{dataset.id}.features.{'|'.join(targets)}",
        help="the model's inputs; default: every column that is not a target",
    )
    left, right = st.columns(2)
    test_fraction = left.number_input(
        "Test fraction",
        min_value=0.01,
        max_value=0.99,
        value=0.2,
        step=0.05,
        key=f"new_run.table.{dataset.id}.test_fraction",
        help="share of the rows held out as the test split",
    )
    split_seed = right.number_input(
        "Split seed",
        min_value=0,
        value=0,
        step=1,
        key=f"new_run.table.{dataset.id}.split_seed",
        help="seed of the train/test split",
    )
    if len(targets) < 2:
        choice.problems.append("choose two or more target columns (one task each)")
    if not features:
        choice.problems.append("choose at least one feature column")
    options: dict[str, Any] = {
        "dataset_id": dataset.id,
        "targets": kinds,
        "test_fraction": float(test_fraction),
        "split_seed": int(split_seed),
    }
    if features != others:
        options["features"] = features
    choice.options, choice.task_names = options, list(targets)
    st.caption(f"Problem `{problem_name}` on “{dataset.name}”: {len(targets)} task(s).")
    choice.slot = st.empty()
    error = st.session_state.get(ERROR_KEY)
    if error and error.get("options") == options:
        choice.refused(error["message"])
    return choice
