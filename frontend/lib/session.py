"""Session-state helpers: settings, the API client, the pages, readable error messages.

Everything a browser session keeps lives under ``st.session_state`` keys defined here, so
pages share one client and one token and never read the environment themselves.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any, TypeVar

import streamlit as st

from frontend.lib.api_client import ApiClient, ApiError, ApiUnavailable
from frontend.lib.settings import UISettings

__all__ = [
    "API_ERRORS",
    "client",
    "env_token_refusal",
    "go_to",
    "is_loopback",
    "page",
    "register_pages",
    "report",
    "run_id_from_query",
    "set_token",
    "settings",
    "token",
    "try_api",
]

SETTINGS_KEY = "pmtl.settings"
CLIENT_KEY = "pmtl.client"
TOKEN_KEY = "pmtl.token"
PAGES_KEY = "pmtl.pages"
SIGNED_OUT_KEY = "pmtl.signed_out"
API_ERRORS = (ApiError, ApiUnavailable)
T = TypeVar("T")


def settings() -> UISettings:
    """The UI settings, read from the environment once per browser session."""
    if SETTINGS_KEY not in st.session_state:
        st.session_state[SETTINGS_KEY] = UISettings()
    return st.session_state[SETTINGS_KEY]


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` (a host the UI listens on) is reachable from this machine only."""
    if not address:
        return False  # Streamlit without an address listens on every interface
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def env_token_refusal() -> str | None:
    """Why ``PMTL_TOKEN`` may not be used here, or ``None`` when it may.

    ``PMTL_TOKEN`` is the embedded single-user default (``pmtl up`` serves the UI on
    127.0.0.1). A UI served on another address is shared: whoever reaches it would act as that
    token's user, so everyone signs in with their own token instead.
    """
    if not settings().token:
        return None
    address = st.get_option("server.address")
    if is_loopback(address):
        return None
    where = f"on {address}" if address else "on every network interface"
    return (
        f"PMTL_TOKEN is set but not used: this UI is served {where}, where everyone who "
        "reaches it would act as that token's user. Sign in with your own token."
    )


def token() -> str | None:
    """The session's API token: typed in the login box, else ``PMTL_TOKEN`` when the UI is
    served on a loopback address and the session has not signed out."""
    typed = st.session_state.get(TOKEN_KEY)
    if typed:
        return typed
    if st.session_state.get(SIGNED_OUT_KEY) or env_token_refusal():
        return None
    return settings().token


def set_token(value: str | None) -> None:
    """Use ``value`` as this session's token (``None`` signs out, ``PMTL_TOKEN`` included)."""
    st.session_state[TOKEN_KEY] = value
    st.session_state[SIGNED_OUT_KEY] = value is None
    st.session_state.pop(CLIENT_KEY, None)


def client() -> ApiClient:
    """The session's API client (rebuilt when the token or the API address changes)."""
    cfg = settings()
    current = st.session_state.get(CLIENT_KEY)
    if (
        not isinstance(current, ApiClient)
        or current.token != token()
        or current.base_url != cfg.api_url
    ):
        if isinstance(current, ApiClient):
            current.close()
        current = ApiClient(cfg.api_url, token(), timeout=cfg.request_timeout)
        st.session_state[CLIENT_KEY] = current
    return current


def register_pages(pages: dict[str, Any]) -> None:
    """Remember the app's ``st.Page`` objects by name (``runs``, ``new_run``, …)."""
    st.session_state[PAGES_KEY] = pages


def page(name: str) -> Any:
    """The registered ``st.Page`` called ``name``."""
    return st.session_state[PAGES_KEY][name]


def go_to(name: str, **query: Any) -> None:
    """Switch to page ``name`` with query parameters (does not return)."""
    st.switch_page(page(name), query_params={k: str(v) for k, v in query.items()})


def run_id_from_query() -> int | None:
    """The ``?run=ID`` query parameter as an int, if present and valid."""
    raw = st.query_params.get("run")
    try:
        value = int(str(raw))
    except (TypeError, ValueError):
        return None
    return value if value > 0 else None


def report(exc: Exception, action: str = "") -> None:
    """Show an API failure as a readable message (never a traceback)."""
    prefix = f"{action}: " if action else ""
    if isinstance(exc, ApiUnavailable):
        st.error(f"{prefix}API unreachable — {exc}", icon=":material/cloud_off:")
    else:
        st.error(f"{prefix}{exc}", icon=":material/error:")


def try_api(call: Callable[[], T], action: str = "") -> T | None:
    """Run an API call; on failure show the readable message and return ``None``."""
    try:
        return call()
    except API_ERRORS as exc:
        report(exc, action)
        return None
