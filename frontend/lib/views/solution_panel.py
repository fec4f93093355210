"""The solution panel: one chosen model's preference, metrics, epoch and its download."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import streamlit as st

from frontend.lib import session
from frontend.lib.front_data import current_points
from frontend.lib.live_store import MetricStore
from frontend.lib.models import Front, RunDetail
from frontend.lib.views.downloads import download_buttons, pinned_fetchers
from frontend.lib.views.run_parts import favours, preference_label

__all__ = ["download_names", "downloads_key", "fetchers", "metrics_table", "render_solution"]


def downloads_key(run_id: int) -> str:
    """Session-state key of the epochs the weight downloads of a run served (per preference)."""
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


def download_names(run_id: int, pref_id: int) -> tuple[str, str]:
    """File names of the two downloads: ``run3-pref20-model.safetensors`` and
    ``run3-pref20-config.json`` (the preference's one number, as everywhere)."""
    stem = f"run{run_id}-pref{pref_id}"
    return f"{stem}-model.safetensors", f"{stem}-config.json"


def fetchers(
    api_url: str, token: str | None, timeout: float, run_id: int, pref_id: int, pinned: dict
) -> tuple[Callable[[], bytes], Callable[[], bytes]]:
    """Callables that fetch a solution's weights and then the config of the weights' epoch
    (recorded in ``pinned[pref_id]``) when a download button is clicked."""
    return pinned_fetchers(
        api_url,
        token,
        timeout,
        lambda client: client.model_file(run_id, pref_id),
        lambda client, epoch: client.model_config(run_id, pref_id, epoch=epoch),
        pinned,
        pref_id,
    )


def _downloads(run: RunDetail, pref_id: int, front: Front | None) -> None:
    point = next((p for p in (front.points if front else []) if p.preference_id == pref_id), None)
    if point is None or not point.downloadable:
        st.caption("No checkpoint of this model yet; the download appears after its first one.")
        return
    cfg = session.settings()
    pinned = st.session_state.setdefault(downloads_key(run.id), {})
    weights, config = fetchers(
        cfg.api_url, session.token(), cfg.request_timeout, run.id, pref_id, pinned
    )
    model_name, config_name = download_names(run.id, pref_id)
    download_buttons(weights, config, (model_name, config_name), f"run.{run.id}.dl.{pref_id}")
    st.caption(
        f"`{model_name}` and `{config_name}`: the newest checkpoint when you click (the "
        "config follows the weights' epoch). Rebuild it with "
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
            c.caption(f"warm-started from preference #{pref.warm_started_from}")
        table = metrics_table(run, store, pref_id)
        if table.empty:
            st.caption("No metrics yet.")
        else:
            st.dataframe(table.style.format("{:.4g}", na_rep="—"), width="stretch")
        _downloads(run, pref_id, front)
