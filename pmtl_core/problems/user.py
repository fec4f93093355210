"""User-defined problems named by a dotted path ``package.module:factory``.

The module is imported, ``factory`` (a function or class; ``a.b`` reaches a nested attribute)
is called with the options as keyword arguments, and what it returns must be a
:class:`~pmtl_core.problems.function.FunctionProblem` or a
:class:`~pmtl_core.problems.dataset.DatasetProblem`. Every failure is a ``ValueError`` that says
which step failed. This imports and runs code found on ``sys.path``: a service must only
accept such names from trusted users (see ``allow_user_defined`` in :func:`get_problem`).

>>> load_user_problem("pmtl_core.problems.synthetic:ConcaveProblem", {"dim": 4}).n_tasks
2
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

from pmtl_core.problems.dataset import DatasetProblem
from pmtl_core.problems.function import FunctionProblem

__all__ = ["load_user_problem"]

_NAME = r"[A-Za-z_]\w*"
_PATH = re.compile(rf"^{_NAME}(\.{_NAME})*:{_NAME}(\.{_NAME})*$")


def load_user_problem(
    path: str, options: Mapping[str, Any] | None = None
) -> FunctionProblem | DatasetProblem:
    """Import ``package.module:factory`` and return ``factory(**options)``, checked to be a
    problem."""
    if not isinstance(path, str) or not _PATH.match(path):
        raise ValueError(
            f"malformed problem path {path!r}: expected 'package.module:factory', "
            "e.g. 'mypkg.problems:make_problem'"
        )
    module_name, attr_path = path.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ValueError(
                f"cannot import module {module_name!r} for problem {path!r}: no such module "
                "(is it installed or on PYTHONPATH?)"
            ) from exc
        raise ValueError(f"importing {module_name!r} for problem {path!r} failed: {exc}") from exc
    except Exception as exc:
        raise ValueError(f"importing {module_name!r} for problem {path!r} failed: {exc!r}") from exc
    factory: Any = module
    for part in attr_path.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr_path!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(f"{path!r} is a {type(factory).__name__}, not a callable factory")
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(f"options for {path!r} must be a mapping, got {type(options).__name__}")
    try:
        problem = factory(**dict(options or {}))
    except TypeError as exc:
        raise ValueError(
            f"factory {path!r} rejected the options {dict(options or {})}: {exc}"
        ) from exc
    if not isinstance(problem, FunctionProblem | DatasetProblem):
        raise ValueError(
            f"factory {path!r} returned a {type(problem).__name__}, not a problem "
            "(a FunctionProblem or a DatasetProblem)"
        )
    return problem
