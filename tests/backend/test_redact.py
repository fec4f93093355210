"""What users and terminals may see of server errors and settings: no paths, hosts, secrets."""

from __future__ import annotations

import socket

import pytest

from backend.app.redact import mask_url, public_error

HOST = socket.gethostname()

TRACEBACK = f"""ValueError: invalid options for problem 'concave': 1 validation error for X
dim
  Input should be a valid integer [type=int_parsing, input_value='x', input_type=str]
Traceback (most recent call last):
  File "/work/main/backend/app/worker_child.py", line 222, in main
    run_job(spec, events, stop.is_set)
  File "/opt/venv/lib/python3.11/site-packages/pmtl_core/problems/registry.py", line 107, in build
    validated = self.Options.model_validate(dict(options or {{}}))
                ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
ValueError: cannot read /srv/pmtl/artifacts/runs/1/jobs/1/checkpoints/ckpt-epoch0003.pt on {HOST}
"""


def test_tracebacks_lose_their_frames_and_keep_the_exceptions():
    text = public_error(TRACEBACK)
    assert "Traceback" not in text and 'File "' not in text and "^^^" not in text
    assert "run_job(spec" not in text
    assert text.startswith("ValueError: invalid options for problem 'concave'")
    assert "Input should be a valid integer" in text
    assert "ValueError: cannot read …/ckpt-epoch0003.pt on <host>" in text


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("No such file: '/srv/pmtl/data/MNIST/raw/train-images'", "No such file: '<path>'"),
        ("[Errno 2] No such file or directory: '/home/ann/x.csv'", "directory: '…/x.csv'"),
        ("checkpoint /data/artifacts/runs/3/ckpt-epoch0002.pt is corrupt", "…/ckpt-epoch0002.pt"),
        ("(path=/tmp/.hidden)", "(path=<path>)"),
    ],
)
def test_absolute_paths_are_stripped(raw: str, shown: str):
    text = public_error(raw)
    assert shown in text
    assert "/srv" not in text and "/home" not in text and "/data" not in text and "/tmp" not in text


@pytest.mark.parametrize(
    "kept",
    [
        "loss ratio 1/2 and and/or runs/3 are relative",
        "lr must be > 0, got -1",
        "KeyError: 'x'",
        "the training process was killed by signal 9 without finishing",
    ],
)
def test_ordinary_messages_are_unchanged(kept: str):
    assert public_error(kept) == kept


def test_host_names_addresses_and_urls_are_hidden():
    text = public_error(
        f"could not reach {HOST} ({socket.getfqdn()}) at 10.1.2.3 via "
        "postgresql+psycopg://pmtl:secret@db.internal:5432/pmtl?sslmode=require, "
        "see https://errors.pydantic.dev/2.14/v/int_parsing"
    )
    assert HOST not in text and "10.1.2.3" not in text
    assert "secret" not in text and "db.internal" not in text
    assert "could not reach <host>" in text and "<address>" in text
    assert "postgresql+psycopg://…" in text


def test_redaction_is_idempotent():
    once = public_error(TRACEBACK + " see postgresql://u:p@db/x and 10.0.0.1")
    assert public_error(once) == once


def test_long_errors_keep_their_end():
    text = public_error("x" * 50_000 + " the cause")
    assert len(text) == 20_000 and text.startswith("…") and text.endswith("the cause")
    assert public_error(text) == text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://pmtl:s3cret@db:5432/pmtl",
            "postgresql+psycopg://pmtl:***@db:5432/pmtl",
        ),
        ("postgresql+psycopg://pmtl@db/pmtl", "postgresql+psycopg://pmtl@db/pmtl"),
        ("sqlite:////srv/pmtl-data/pmtl.db", "sqlite:////srv/pmtl-data/pmtl.db"),
        ("weird://user:pa ss@host", "weird://user:***@host"),
    ],
)
def test_mask_url_hides_only_the_password(url: str, shown: str):
    assert mask_url(url) == shown
