"""Shared fixtures: seeded RNGs, deterministic CPU kernels, and CI's no-skip rule."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from tests.settings import DEVICE, IN_CI

# Tests whose skip is a failure under CI=true: CI is expected to run them.
_REQUIRED_IN_CI = ("postgres", "browser", "data", "compose")


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def device() -> torch.device:
    """The device tensor tests run on (``PMTL_TEST_DEVICE``)."""
    return DEVICE


def require(condition: bool, reason: str) -> None:
    """Skip with ``reason`` when ``condition`` is false; under CI=true fail instead."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI but unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and any(item.get_closest_marker(m) for m in _REQUIRED_IN_CI):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where it must run: {report.longrepr}"
