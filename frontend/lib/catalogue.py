"""What the API offers, fetched once per browser session: problems, methods, training schema.

Also the two UI rules that follow from the catalogue: which splits a problem reports (function
problems have no test split) and which problem options the API refuses from a client
(server paths and downloads; ``tests/frontend/test_contract.py`` checks this copy against the
API's own list).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from frontend.lib import session
from frontend.lib.models import Method, Problem

__all__ = [
    "SERVER_ONLY_OPTIONS",
    "catalogue",
    "client_options",
    "learns_pareto_set",
    "problem",
    "splits_of",
]

CATALOGUE_KEY = "pmtl.catalogue"

#: Problem options the API refuses from a client: they belong to whoever runs the workers.
SERVER_ONLY_OPTIONS = frozenset({"data_dir", "dataset_path", "download"})


def catalogue() -> tuple[list[Problem], list[Method], dict[str, Any]]:
    """Problems, methods and the training schema (one fetch per session; raises API errors)."""
    cached = st.session_state.get(CATALOGUE_KEY)
    if cached is not None:
        return cached
    client = session.client()
    loaded = (client.problems(), client.methods(), client.training_schema())
    st.session_state[CATALOGUE_KEY] = loaded
    return loaded


def problem(name: str) -> Problem | None:
    """The registered problem ``name`` (``None`` if unknown or the API cannot list problems)."""
    try:
        problems = catalogue()[0]
    except session.API_ERRORS:
        return None
    return next((p for p in problems if p.name == name), None)


def splits_of(problem_name: str) -> list[str]:
    """The splits a problem reports: train only for function problems, else test and train."""
    info = problem(problem_name)
    if info is not None and info.kind == "function":
        return ["train"]
    return ["test", "train"]


def learns_pareto_set(method_name: str) -> bool:
    """Whether the method trains one model for the whole front (``psl``): its runs answer any
    preference, so the run page offers the trade-off picker instead of adding vectors."""
    try:
        methods = catalogue()[1]
    except session.API_ERRORS:
        return False
    return any(m.name == method_name and m.learns_pareto_set for m in methods)


def client_options(schema: dict[str, Any]) -> dict[str, Any]:
    """The problem's option schema without the options the API refuses from a client."""
    properties = {
        k: v for k, v in (schema.get("properties") or {}).items() if k not in SERVER_ONLY_OPTIONS
    }
    required = [r for r in schema.get("required") or [] if r not in SERVER_ONLY_OPTIONS]
    out = {**schema, "properties": properties}
    if "required" in schema:
        out["required"] = required
    return out
