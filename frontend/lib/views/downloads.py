"""A model's two downloads, weights then config, pinned to one checkpoint.

The solution panel (one trained preference) and the learned-front picker (any preference of a
``psl`` run) offer the same pair: ``st.download_button`` s whose data are fetched when clicked.
The weights record the epoch they were served from; the config asks for that epoch, so both
files belong to one checkpoint even while training goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, MutableMapping
from typing import Any

import streamlit as st

from frontend.lib.api_client import ApiClient
from frontend.lib.models import Download

__all__ = ["download_buttons", "pinned_fetchers"]

Fetch = Callable[[], bytes]


def pinned_fetchers(
    api_url: str,
    token: str | None,
    timeout: float,
    weights_of: Callable[[ApiClient], Download],
    config_of: Callable[[ApiClient, int | None], dict[str, Any]],
    pinned: MutableMapping[Any, int | None],
    key: Any,
) -> tuple[Fetch, Fetch]:
    """Callables fetching the weights (recording their epoch under ``pinned[key]``) and then
    the config of that epoch. They run outside the script (no session access), so each builds
    its own client."""

    def call(fn: Callable[[ApiClient], Any]) -> Any:
        client = ApiClient(api_url, token, timeout=timeout)
        try:
            return fn(client)
        finally:
            client.close()

    def weights() -> bytes:
        download = call(weights_of)
        pinned[key] = download.epoch
        return download.content

    def config() -> bytes:
        data = call(lambda client: config_of(client, pinned.get(key)))
        return json.dumps(data, indent=2).encode()

    return weights, config


def download_buttons(
    weights: Fetch,
    config: Fetch,
    names: tuple[str, str],
    key: str,
    labels: tuple[str, str] = ("Download model (safetensors)", "Download config (JSON)"),
    side_by_side: bool = True,
) -> None:
    """The weights button (primary) and the config button, side by side or stacked."""
    left, right = st.columns(2) if side_by_side else (st.container(), st.container())
    left.download_button(
        labels[0],
        weights,
        file_name=names[0],
        mime="application/octet-stream",
        icon=":material/download:",
        key=f"{key}.weights",
        on_click="ignore",
        type="primary",
    )
    right.download_button(
        labels[1],
        config,
        file_name=names[1],
        mime="application/json",
        icon=":material/data_object:",
        key=f"{key}.config",
        on_click="ignore",
    )
