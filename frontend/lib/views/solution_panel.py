"""The solution panel: one chosen model's preference, metrics, epoch and its download."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from frontend.lib import session
from frontend.lib.front_data import current_points
from frontend.lib.live_store import MetricStore
from frontend.lib.models import Front, RunDetail
from frontend.lib.views.run_parts import favours, preference_label

__all__ = ["downloads_key", "metrics_table", "render_solution"]


def downloads_key(run_id: int) -> str:
    """Session-state key of the downloaded models of a run (what the buttons serve)."""
    return f"run.{run_id}.downloads"


def metrics_table(run: RunDetail, store: MetricStore, pref_id: int) -> pd.DataFrame:
    """Per-task losses and metrics of one preference on each split (newest epoch)."""
    frame = store.frame()
    columns: dict[str, list[Any]] = {}
    for split in store.splits() or ["train"]:
        current = current_points(frame, split)
        row = current[current["preference_id"] == pref_id]
        if row.empty:
            continue
        epoch = int(row["epoch"].iloc[0])
        for name in ["l", *store.metric_names()]:
            label = "loss" if name == "l" else name
            cells = [
                row[f"{name}{i}"].iloc[0] if f"{name}{i}" in row else None
                for i in range(run.n_tasks)
            ]
            columns[f"{split} {label} (epoch {epoch})"] = cells
    return pd.DataFrame(columns, index=run.task_names)


def _fetch(run: RunDetail, pref_id: int, stamp: tuple) -> dict[str, Any] | None:
    """The model and config of ``pref_id`` from the API, cached until ``stamp`` changes."""
    cache: dict[int, dict[str, Any]] = st.session_state.setdefault(downloads_key(run.id), {})
    entry = cache.get(pref_id)
    if entry and entry["stamp"] == stamp:
        return entry
    client = session.client()
    try:
        model = client.model_file(run.id, pref_id)
        # the config of the same checkpoint as the weights, even if a newer one just landed
        config = client.model_config(run.id, pref_id, epoch=model.epoch)
    except session.API_ERRORS as exc:
        session.report(exc, "Model download unavailable")
        return None
    entry = {
        "stamp": stamp,
        "model": model.content,
        "filename": model.filename,
        "epoch": model.epoch,
        "config": json.dumps(config, indent=2).encode(),
        "config_name": model.filename.rsplit(".", 1)[0] + ".config.json",
    }
    cache[pref_id] = entry
    return entry


def _downloads(run: RunDetail, pref_id: int, front: Front | None, status: str) -> None:
    point = next((p for p in (front.points if front else []) if p.preference_id == pref_id), None)
    if point is None or not point.downloadable:
        st.caption("No checkpoint of this model yet; the download appears after its first one.")
        return
    entry = _fetch(run, pref_id, (point.epoch, status))
    if entry is None:
        return
    left, right = st.columns(2)
    left.download_button(
        "Download model (safetensors)",
        entry["model"],
        file_name=entry["filename"],
        mime="application/octet-stream",
        icon=":material/download:",
        key=f"run.{run.id}.dl_model.{pref_id}",
        on_click="ignore",
        type="primary",
    )
    right.download_button(
        "Download config (JSON)",
        entry["config"],
        file_name=entry["config_name"],
        mime="application/json",
        icon=":material/data_object:",
        key=f"run.{run.id}.dl_config.{pref_id}",
        on_click="ignore",
    )
    st.caption(
        f"Checkpoint of epoch {entry['epoch']}. Rebuild it with "
        "`pmtl_core.export.load_model(config, weights)`."
    )


def render_solution(run: RunDetail, store: MetricStore, pref_id: int, front: Front | None) -> None:
    """Draw the panel of the chosen preference vector."""
    pref = next((p for p in run.preferences if p.id == pref_id), None)
    if pref is None:
        return
    with st.container(border=True):
        st.subheader(f"Solution {preference_label(pref)}")
        a, b, c = st.columns(3)
        a.markdown(
            "**Preference vector**  \n"
            + ", ".join(f"{t}: {v:.4f}" for t, v in zip(run.task_names, pref.vector, strict=False))
        )
        a.caption(favours(pref.vector, run.task_names))
        b.metric("epoch", f"{pref.epoch}")
        c.markdown(f"**Status**  \n{pref.status}" + (" — diverged" if pref.diverged else ""))
        if pref.warm_started_from is not None:
            c.caption(f"warm-started from preference {pref.warm_started_from}")
        table = metrics_table(run, store, pref_id)
        if table.empty:
            st.caption("No metrics yet.")
        else:
            st.dataframe(table.style.format("{:.4g}", na_rep="—"), width="stretch")
        _downloads(run, pref_id, front, pref.status)
