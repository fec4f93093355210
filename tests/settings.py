"""Test-suite settings read from the environment, validated once with a clear error.

``PMTL_TEST_DEVICE`` (default ``cpu``) is the device every tensor test runs on, so
``PMTL_TEST_DEVICE=cuda make test`` runs the same suite on a GPU. ``CI=true`` turns skips of
tests that CI must run (PostgreSQL, browser, data files) into failures.
"""

from __future__ import annotations

import os

import torch


def _device() -> torch.device:
    name = os.environ.get("PMTL_TEST_DEVICE", "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise RuntimeError(f"PMTL_TEST_DEVICE={name!r} is not a valid torch device") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"PMTL_TEST_DEVICE={name!r} but CUDA is not available here")
    return device


DEVICE = _device()
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
POSTGRES_URL = os.environ.get(
    "PMTL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
DATA_DIR = os.environ.get("PMTL_DATA_DIR", "")
