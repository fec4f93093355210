"""Shared pieces of the routers: documented error responses, run lookup, hypervolumes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from backend.app import catalogue, crud, fronts
from backend.app.api.schemas import ErrorResponse
from backend.app.db.models import Run, User

__all__ = ["errors", "get_run_or_404", "reference_point", "run_hypervolumes"]

_DESCRIPTIONS = {
    400: "the body could not be read at all (for example bytes that are not text); "
    "malformed JSON is a 422",
    401: "missing, invalid or revoked bearer token",
    404: "no such resource visible to the caller",
    409: "the request conflicts with the resource's state",
    413: "request body larger than the configured limit",
    422: "invalid request, malformed JSON included (the detail names the problem)",
    503: "database unreachable or schema not at the current revision (`pmtl db upgrade`)",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting ``codes`` (plus 401/422/503 of every route)."""
    wanted = sorted({401, 422, 503, *codes})
    return {c: {"model": ErrorResponse, "description": _DESCRIPTIONS[c]} for c in wanted}


def get_run_or_404(session: Session, user: User, run_id: int, *, children: bool = True) -> Run:
    """The run if the caller may see it; another user's run is a 404, as is a missing one."""
    run = crud.get_visible_run(session, user=user, run_id=run_id, children=children)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    return run


def reference_point(
    run: Run, losses: Iterable[Sequence[float]], ref: str | None = None
) -> list[float] | None:
    """The hypervolume reference point of a run (``ref`` text, problem's, or derived)."""
    if ref is not None:
        try:
            return fronts.parse_reference(ref, run.n_tasks)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    info = catalogue.problem_or_none(run.problem) or {}
    return fronts.default_reference(
        info.get("kind", "function"), run.n_tasks, info.get("reference_point"), losses
    )


def run_hypervolumes(session: Session, runs: Sequence[Run]) -> dict[int, float | None]:
    """The latest test (else train) front hypervolume of each run."""
    ids = [r.id for r in runs]
    test = crud.latest_metric_points(session, run_ids=ids, split="test")
    train = crud.latest_metric_points(session, run_ids=ids, split="train")
    out: dict[int, float | None] = {}
    for run in runs:
        points = test.get(run.id) or train.get(run.id)
        if not points:
            out[run.id] = None
            continue
        losses = [list(p.losses) for p in points.values()]
        out[run.id] = fronts.front_hypervolume(losses, reference_point(run, losses))
    return out
