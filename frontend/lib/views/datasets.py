"""The Datasets page: upload a table, list the user's tables, preview one, delete one.

The upload goes browser → UI (Streamlit's file uploader shows that part) → API; a status box
covers the second leg, which is where a large file spends its time. The preview is the API's
``GET /datasets/{id}/preview`` (the first rows as stored), headed by each column's dtype.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from frontend.lib import session
from frontend.lib.formatting import file_size, when
from frontend.lib.models import Dataset

__all__ = ["PREVIEW_ROWS", "SELECTED_KEY", "preview_frame", "render"]

#: Rows shown in the preview.
PREVIEW_ROWS = 20
#: The data set shown below the list (the one just uploaded, or the user's choice).
SELECTED_KEY = "datasets.selected"
FLASH_KEY = "datasets.flash"


def preview_frame(columns: list[str], rows: list[list[Any]], dtypes: dict[str, str]) -> Any:
    """The preview as a DataFrame whose headers read ``name (dtype)``."""
    headers = [f"{c} ({dtypes[c]})" if c in dtypes else c for c in columns]
    return pd.DataFrame(rows, columns=headers)


def _upload_form() -> None:
    st.subheader("Upload a table")
    st.caption(
        "A CSV file with a header row, or a Parquet file. Each column becomes a possible "
        "target (one task each) or feature of the `table` problem."
    )
    with st.form("datasets.upload_form", clear_on_submit=True, border=False):
        file = st.file_uploader("Table", type=["csv", "txt", "parquet", "pq"], key="datasets.file")
        name = st.text_input(
            "Name (optional)", key="datasets.name", help="default: the file's name"
        )
        sent = st.form_submit_button(
            "Upload", icon=":material/upload:", type="primary", key="datasets.upload"
        )
    if not sent:
        return
    if file is None:
        st.warning("Choose a file first.")
        return
    _send(file.getvalue(), file.name, name.strip() or None)


def _send(content: bytes, filename: str, name: str | None) -> None:
    """Send the file to the API behind a status box; remember the new data set on success."""
    with st.status(f"Sending {filename} ({file_size(len(content))}) to the API…") as box:
        try:
            dataset = session.client().upload_dataset(content, filename, name)
        except session.API_ERRORS as exc:
            box.update(label=f"{filename} was not stored", state="error")
            session.report(exc, f"Could not upload {filename}")
            return
        box.update(
            label=f"Stored “{dataset.name}”: {dataset.n_rows} rows, {len(dataset.columns)} columns",
            state="complete",
        )
    st.session_state[SELECTED_KEY] = dataset.id
    st.session_state[FLASH_KEY] = f"Uploaded “{dataset.name}” (data set #{dataset.id})."
    st.rerun()


def _listing(datasets: list[Dataset]) -> None:
    st.subheader("Your data sets")
    if not datasets:
        st.info("No data sets yet: upload a CSV or Parquet file above.")
        return
    table = pd.DataFrame(
        [
            {
                "id": d.id,
                "name": d.name,
                "format": d.format,
                "rows": d.n_rows,
                "columns": len(d.columns),
                "size": file_size(d.size_bytes),
                "uploaded": when(d.created_at),
            }
            for d in datasets
        ]
    )
    st.dataframe(table, hide_index=True, width="stretch")


def _chosen(datasets: list[Dataset]) -> Dataset | None:
    ids = [d.id for d in datasets]
    if st.session_state.get(SELECTED_KEY) not in ids:
        st.session_state[SELECTED_KEY] = ids[0]
    by_id = {d.id: d for d in datasets}
    chosen = st.selectbox(
        "Data set",
        ids,
        key=SELECTED_KEY,
        format_func=lambda i: f"#{i} · {by_id[i].name}",
    )
    return by_id.get(chosen)


def _details(dataset: Dataset) -> None:
    st.subheader(f"“{dataset.name}”")
    st.caption(
        f"{dataset.format.upper()}, {dataset.n_rows} rows, {len(dataset.columns)} columns, "
        f"{file_size(dataset.size_bytes)}; sha256 {dataset.sha256[:12]}…"
    )
    dtypes = {c.name: c.dtype for c in dataset.columns}
    st.markdown("**Columns**: " + ", ".join(f"`{c.name}` ({c.dtype})" for c in dataset.columns))
    preview = session.try_api(
        lambda: session.client().dataset_preview(dataset.id, PREVIEW_ROWS),
        "Could not load the preview",
    )
    if preview is not None:
        shown = len(preview.rows)
        st.markdown(f"**First {shown} of {dataset.n_rows} rows**")
        frame = preview_frame(preview.columns, preview.rows, dtypes)
        st.dataframe(frame, hide_index=True, width="stretch")
    left, right = st.columns(2)
    if left.button("Use in a new run", icon=":material/add_circle:", key="datasets.use"):
        st.session_state["new_run.problem"] = "table"
        st.session_state["new_run.table.dataset"] = dataset.id
        session.go_to("new_run")
    if right.button("Delete this data set", icon=":material/delete:", key="datasets.delete"):
        try:
            session.client().delete_dataset(dataset.id)
        except session.API_ERRORS as exc:
            session.report(exc, f"Could not delete “{dataset.name}”")
            return
        st.session_state.pop(SELECTED_KEY, None)
        st.session_state[FLASH_KEY] = f"Deleted “{dataset.name}” (data set #{dataset.id})."
        st.rerun()


def render() -> None:
    """Draw the page."""
    st.title("Datasets")
    flash = st.session_state.pop(FLASH_KEY, None)
    if flash:
        st.success(flash, icon=":material/check_circle:")
    _upload_form()
    datasets = session.try_api(lambda: session.client().list_datasets(), "Could not list data sets")
    if datasets is None:
        return
    _listing(datasets)
    if datasets:
        chosen = _chosen(datasets)
        if chosen is not None:
            _details(chosen)
