"""The frame around every page: connection check, login box, unreachable banner, sidebar."""

from __future__ import annotations

import time
from typing import Literal

import streamlit as st

from frontend.lib import session
from frontend.lib.api_client import ApiClient, ApiError, ApiUnavailable
from frontend.lib.models import User

__all__ = ["BANNER", "check_connection", "login_box", "sidebar", "unreachable_banner"]

BANNER = "API unreachable"
Connection = Literal["ok", "unreachable", "signed_out"]


def check_connection() -> tuple[Connection, User | None, str]:
    """Ask the API who we are: (state, user, message)."""
    if not session.token():
        return "signed_out", None, session.env_token_refusal() or "no API token yet"
    try:
        return "ok", session.client().me(), ""
    except ApiUnavailable as exc:
        return "unreachable", None, str(exc)
    except ApiError as exc:
        if exc.unauthorized:
            return "signed_out", None, str(exc)
        return "unreachable", None, str(exc)


def unreachable_banner(message: str) -> None:
    """A banner that says the API cannot be reached and retries until it can."""
    url = session.settings().api_url
    st.error(
        f"**{BANNER}** at `{url}` — {message}. The page comes back by itself when it answers.",
        icon=":material/cloud_off:",
    )
    if st.button("Retry now", icon=":material/refresh:"):
        st.rerun()
    period = max(2.0, session.settings().poll_seconds * 2)

    @st.fragment(run_every=period)
    def retry() -> None:
        try:
            session.client().healthy()
        except (ApiUnavailable, ApiError):
            st.caption(f"Last attempt {time.strftime('%H:%M:%S')}; retrying every {period:g} s.")
            return
        st.rerun(scope="app")

    retry()


def login_box(reason: str) -> None:
    """Ask for an API token (``pmtl user create NAME`` prints one) and check it."""
    st.title("Pareto MTL Lab")
    st.info(
        "Sign in with your API token. An administrator creates one with "
        "`pmtl user create NAME` (it is printed once). On a single-user machine `pmtl up` "
        "signs you in with `PMTL_TOKEN` instead.",
        icon=":material/key:",
    )
    if reason and reason != "no API token yet":
        st.warning(reason)
    with st.form("login"):
        typed = st.text_input("API token", type="password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    if not typed.strip():
        st.error("Enter a token first.")
        return
    probe = ApiClient(session.settings().api_url, typed.strip(), timeout=5.0)
    try:
        user = probe.me()
    except ApiUnavailable as exc:
        st.error(f"{BANNER}: {exc}")
        return
    except ApiError as exc:
        st.error(f"That token was not accepted: {exc}")
        return
    finally:
        probe.close()
    session.set_token(typed.strip())
    st.toast(f"Signed in as {user.name}")
    st.rerun()


def sidebar(user: User | None) -> None:
    """Who is signed in, where the API is, and a sign-out button."""
    with st.sidebar:
        st.caption(f"API: `{session.settings().api_url}`")
        if user is not None:
            role = " (admin)" if user.is_admin else ""
            st.caption(f"Signed in as **{user.name}**{role}")
            if st.button("Sign out", icon=":material/logout:", key="pmtl.sign_out"):
                session.set_token(None)
                st.rerun()
