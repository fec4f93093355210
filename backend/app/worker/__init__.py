"""The worker: a supervisor that claims jobs from the queue and runs their training somewhere.

Modules: :mod:`.supervisor` (``run_worker``: slots, reaping, signals), :mod:`.devices` (local
slots and a training process's environment), :mod:`.lease` (heartbeat and outage rules),
:mod:`.plan` (a job's spec from the database), :mod:`.protocol` (the typed job spec and
events), :mod:`.runner` (one job from claim to outcome), :mod:`.training` (the training side,
shared by local processes and Ray tasks), :mod:`.child` (the local training process) and
:mod:`.executors` (``local``, ``ray``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["EXECUTORS", "WorkerSettings", "child_environment", "parse_devices", "run_worker"]

#: Where each public name lives; imported on first use, so that a training process (which
#: imports only ``child``, ``training`` and ``protocol``) does not load the supervisor's stack.
_HOMES = {
    "EXECUTORS": "supervisor",
    "WorkerSettings": "supervisor",
    "run_worker": "supervisor",
    "child_environment": "devices",
    "parse_devices": "devices",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
