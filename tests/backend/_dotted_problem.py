"""A user-defined problem named by a dotted path, for the worker tests.

Importing this module leaves a mark: the file named by ``PMTL_TEST_DOTTED_MARKER`` (if set) is
written, so a test can tell whether a worker imported it.
"""

from __future__ import annotations

import os
from pathlib import Path

from pmtl_core.problems.synthetic import ConcaveProblem

_MARKER = os.environ.get("PMTL_TEST_DOTTED_MARKER")
if _MARKER:
    Path(_MARKER).write_text(f"imported by process {os.getpid()}\n")


def make(dim: int = 4) -> ConcaveProblem:
    """The concave problem, reached through a dotted path instead of the registry."""
    return ConcaveProblem(dim)
