"""The frame: the API-unreachable banner (and its recovery) and the login box."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.frontend._apptest import ENTRY, no_exception, texts
from tests.frontend._proxy import forward
from tests.frontend._system import free_port


def test_unreachable_api_shows_a_banner_and_recovers(lab, monkeypatch: pytest.MonkeyPatch):
    port = free_port()
    monkeypatch.setenv("PMTL_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("PMTL_TOKEN", lab.token)
    at = AppTest.from_file(str(ENTRY), default_timeout=60).run()
    no_exception(at)
    assert "API unreachable" in at.error[0].value
    assert f"127.0.0.1:{port}" in at.error[0].value
    assert "retrying every" in texts(at)
    assert not at.title  # no page is drawn while the API is away

    # The API comes back on that address: the banner's retry finds it and the app appears.
    with forward(port, lab.api_url):
        at.button[0].click().run()  # "Retry now" (the banner also retries on a timer)
        no_exception(at)
        assert not [e for e in at.error if "API unreachable" in e.value]
        assert at.title[0].value == "Runs"


def test_login_box_rejects_a_bad_token_and_accepts_a_good_one(lab, monkeypatch):
    monkeypatch.setenv("PMTL_API_URL", lab.api_url)
    monkeypatch.delenv("PMTL_TOKEN", raising=False)
    at = AppTest.from_file(str(ENTRY), default_timeout=60).run()
    no_exception(at)
    assert "Sign in with your API token" in texts(at)

    at.text_input[0].input("not-a-token")
    at.button[0].click().run()
    no_exception(at)
    assert "That token was not accepted" in at.error[0].value
    assert "invalid or revoked token" in at.error[0].value

    at.text_input[0].input(lab.token)
    at.button[0].click().run()
    no_exception(at)
    assert at.title[0].value == "Runs"
    assert "ui-tester" in texts(at)


def test_pmtl_token_is_not_used_when_the_ui_is_served_beyond_loopback(lab, monkeypatch):
    from streamlit import config

    config.set_option("server.address", "0.0.0.0")  # a shared deployment (fixture restores)
    monkeypatch.setenv("PMTL_API_URL", lab.api_url)
    monkeypatch.setenv("PMTL_TOKEN", lab.token)
    at = AppTest.from_file(str(ENTRY), default_timeout=60).run()
    no_exception(at)
    text = texts(at)
    assert "PMTL_TOKEN is set but not used" in text and "0.0.0.0" in text
    assert "Sign in with your API token" in text
    at.text_input[0].input(lab.token)
    at.button[0].click().run()
    no_exception(at)
    assert at.title[0].value == "Runs" and "ui-tester" in texts(at)


def test_sign_out_leaves_the_embedded_token_too(ui_env):
    at = AppTest.from_file(str(ENTRY), default_timeout=60).run()
    no_exception(at)
    assert at.title[0].value == "Runs" and "Signed in as **ui-tester**" in texts(at)
    at.button(key="pmtl.sign_out").click().run()
    no_exception(at)
    assert "Sign in with your API token" in texts(at)
    assert "pmtl.sign_out" not in [b.key for b in at.button]
