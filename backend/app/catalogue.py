"""What the API may run: registered problems (with their option schemas) and methods.

Only problems of ``pmtl_core.problems.registry`` are offered over REST. The library also accepts
a dotted ``package.module:factory`` path, but importing code named by a client would let any
token holder run arbitrary code on the workers, so the API refuses such names.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel

from pmtl_core.methods import describe_methods, get_method
from pmtl_core.methods._base import Method

__all__ = [
    "SERVER_ONLY_OPTIONS",
    "describe_problem",
    "list_methods",
    "list_problems",
    "method_class",
    "problem_or_none",
    "validate_options",
]


#: Problem options a REST client may not set: server paths (``dataset_path`` is filled in from
#: ``dataset_id`` by the worker), and fetching files from the network.
SERVER_ONLY_OPTIONS = frozenset({"data_dir", "download", "dataset_path"})


@functools.cache
def _problems() -> dict[str, dict[str, Any]]:
    from pmtl_core.problems.registry import describe_problems

    return {info["name"]: info for info in describe_problems()}


def list_problems() -> list[dict[str, Any]]:
    """Every registered problem, as ``describe_problems`` reports it."""
    return list(_problems().values())


def list_methods() -> list[dict[str, Any]]:
    """Every registered method with its hyperparameter schema."""
    return describe_methods()


def describe_problem(name: str) -> dict[str, Any]:
    """The description of a registered problem; ``ValueError`` lists the valid names."""
    problems = _problems()
    if name not in problems:
        valid = ", ".join(sorted(problems))
        raise ValueError(f"unknown problem {name!r}; choose one of: {valid}")
    return problems[name]


def method_class(name: str) -> type[Method]:
    """The registered method class; ``ValueError`` lists the valid names."""
    return get_method(name)


def _options_model(name: str) -> type[BaseModel] | None:
    from pmtl_core.problems.registry import REGISTRY

    model = getattr(REGISTRY[name], "Options", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def validate_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Validate a problem's options against its ``Options`` model; JSON-ready normalised dict.

    Options naming server paths or fetching data (``SERVER_ONLY_OPTIONS``) belong to whoever
    runs the workers: they are refused, and left out of the result (their defaults are not
    stored with the run, so the worker's own configuration decides them). Raises
    ``ValueError`` (``pydantic.ValidationError`` is one) for invalid options.
    """
    refused = sorted(SERVER_ONLY_OPTIONS & set(options))
    if refused:
        raise ValueError(
            f"options {refused} are set by the workers' configuration (PMTL_DATA_DIR), "
            "not through the API"
        )
    model = _options_model(name)
    if model is None:
        if options:
            raise ValueError(f"problem {name!r} takes no options, got {sorted(options)}")
        return {}
    return model.model_validate(options).model_dump(mode="json", exclude=set(SERVER_ONLY_OPTIONS))


def problem_or_none(name: str) -> dict[str, Any] | None:
    """The description of a registered problem, or None (e.g. a problem removed since)."""
    try:
        return _problems().get(name)
    except ImportError:
        return None
