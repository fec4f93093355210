"""Checks of run submissions that go beyond the request schemas (400-class messages)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from fastapi import HTTPException, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from pmtl_core.config import API_FIELDS, EngineConfig, make_config
from pmtl_core.preferences import uniform, validate

__all__ = [
    "check_finite",
    "engine_config",
    "invalid",
    "json_safe",
    "preference_vectors",
    "request_errors",
    "validated",
]


def invalid(detail: str | list[dict[str, Any]]) -> HTTPException:
    """A 422 with ``detail``."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def _errors(exc: ValidationError, *loc: str | int) -> list[dict[str, Any]]:
    """Pydantic errors in FastAPI's 422 format, located under ``body.<loc>``."""
    return [
        {"loc": ["body", *loc, *e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float written as a string (``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``), so strict JSON can carry it."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def request_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """FastAPI's 422 ``detail`` for ``exc``, always serialisable as strict JSON.

    The errors echo the offending ``input``; a body with ``NaN`` or ``1e400`` (Python's JSON
    parser reads them as floats) would otherwise make the response itself fail to render.
    """
    try:
        return json_safe(jsonable_encoder(exc.errors()))
    except Exception:  # an input or context that does not encode: keep where and why only
        return [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]


def check_finite(value: Any, where: str) -> None:
    """422 if ``value`` holds NaN or ±Infinity anywhere (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise invalid(f"{where} contains {value!r}; JSON numbers must be finite")
    if isinstance(value, dict):
        for key, item in value.items():
            check_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_finite(item, f"{where}[{i}]")


def validated(model: type[BaseModel], data: dict[str, Any], *loc: str) -> BaseModel:
    """``model.model_validate(data)``; a ValidationError becomes a located 422."""
    check_finite(data, ".".join(loc))
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(_errors(exc, *loc)) from None


def engine_config(defaults: dict[str, Any], overrides: dict[str, Any]) -> EngineConfig:
    """The problem's defaults with the client's overrides (only ``API_FIELDS``), validated."""
    check_finite(overrides, "training")
    refused = sorted(set(overrides) - set(API_FIELDS))
    if refused:
        raise invalid(
            f"training settings {refused} cannot be set through the API; "
            f"allowed: {', '.join(API_FIELDS)}"
        )
    try:
        return make_config(defaults, overrides)
    except ValidationError as exc:
        raise invalid(_errors(exc, "training")) from None


def preference_vectors(
    *,
    count: int | None,
    vectors: Sequence[Sequence[float]] | None,
    n_tasks: int,
    limit: int,
    existing: int = 0,
) -> list[list[float]]:
    """Unit preference vectors from a count or explicit vectors; 422 with a clear reason."""
    if count is not None:
        if existing + count > limit:
            raise invalid(f"at most {limit} preference vectors per run, asked for {count}")
        try:
            return uniform(n_tasks, count).double().tolist()
        except ValueError as exc:
            raise invalid(str(exc)) from None
    assert vectors is not None
    if existing + len(vectors) > limit:
        total = existing + len(vectors)
        raise invalid(
            f"at most {limit} preference vectors per run; this would make {total}"
            if existing
            else f"at most {limit} preference vectors per run, got {len(vectors)}"
        )
    # Every bad vector is reported, numbered from 1 as the user counts them.
    shape_errors: list[str] = []
    for i, row in enumerate(vectors, start=1):
        if len(row) != n_tasks:
            shape_errors.append(
                f"preference vector {i} has length {len(row)}; the problem has {n_tasks} tasks "
                "(one entry per task)"
            )
        elif not all(math.isfinite(x) for x in row):
            kind = "NaN" if any(math.isnan(x) for x in row) else "an infinite value"
            shape_errors.append(f"preference vector {i} contains {kind}: {list(row)}")
    if shape_errors:
        raise invalid("; ".join(shape_errors))
    # Scale by the largest entry first: huge (1e308) or tiny entries stay representable.
    rows = []
    for row in vectors:
        top = max((abs(x) for x in row), default=0.0)
        rows.append([x / top for x in row] if top > 0 else list(row))
    try:
        unit = validate(torch.tensor(rows, dtype=torch.float64), n_tasks)
    except ValueError as exc:
        raise invalid(str(exc)) from None
    return unit.double().tolist()
