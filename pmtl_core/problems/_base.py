"""The ``Problem`` protocol shared by synthetic functions and multi-task datasets.

A problem has ``m`` tasks (objectives to minimise), each with a name. Two kinds exist:
:class:`~pmtl_core.problems.function.FunctionProblem` (a differentiable ``fn: (d,) -> (m,)``,
solved by :func:`pmtl_core.solve`) and
:class:`~pmtl_core.problems.dataset.DatasetProblem` (data sets, a model and per-task losses,
trained by :func:`pmtl_core.train`). Both kinds can be trained by the engine and the workers.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["Problem"]


@runtime_checkable
class Problem(Protocol):
    """What every problem exposes: a registry name, the number of tasks and their names."""

    name: str
    n_tasks: int
    task_names: tuple[str, ...]
