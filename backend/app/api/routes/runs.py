"""Runs: submit, list, inspect, cancel and delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response, status
from sqlalchemy import delete

from backend.app import catalogue, crud, datasets, queue
from backend.app.api import live, serializers, validation
from backend.app.api.common import errors, get_run_or_404, run_hypervolumes
from backend.app.api.deps import CurrentUser, SessionDep, SettingsDep, StoreDep, release
from backend.app.api.schemas import (
    ErrorResponse,
    PreferenceCount,
    RunCreate,
    RunDetail,
    RunList,
)
from backend.app.db.models import Run
from pmtl_core.config import API_FIELDS

router = APIRouter(prefix="/runs", tags=["runs"])

RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="run id")]


def _detail(session: SessionDep, run_id: int, user: CurrentUser) -> RunDetail:
    run = get_run_or_404(session, user, run_id)
    hv = run_hypervolumes(session, [run])[run.id]
    detail = serializers.run_detail(run, hv, live.QueueView.load(session, [run]))
    release(session)
    return detail


_TOO_MANY: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorResponse,
        "description": "the caller already has PMTL_MAX_ACTIVE_RUNS_PER_USER queued or running "
        "runs (Retry-After says when to try again)",
    }
}


def _check_active_runs(session: SessionDep, settings: SettingsDep, user: CurrentUser) -> None:
    """429 with ``Retry-After`` when the caller is at the limit of queued or running runs.

    The count is taken under the user's lock, held until the new run is committed, so two
    simultaneous submissions cannot both pass the last free place.
    """
    limit = settings.max_active_runs_per_user
    if not limit:
        return
    session.commit()  # nothing written yet: end the read transaction before taking the lock
    queue.lock_user(session, user.id)
    active = crud.active_run_count(session, user=user)
    if active >= limit:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"you have {active} queued or running runs and the limit is {limit} per user; "
            "wait for one to finish (or cancel one), then submit again",
            headers={"Retry-After": "60"},
        )


@router.post(
    "",
    response_model=RunDetail,
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 413) | _TOO_MANY,
)
def create_run(
    body: RunCreate, session: SessionDep, settings: SettingsDep, user: CurrentUser
) -> RunDetail:
    """Validate a submission, create the run with its preference vectors and enqueue its job."""
    try:
        method = catalogue.method_class(body.method)
        info = catalogue.describe_problem(body.problem)
    except ValueError as exc:
        raise validation.invalid(str(exc)) from None
    if info["kind"] not in method.problem_kinds:
        kinds = " and ".join(method.problem_kinds)
        raise validation.invalid(
            f"method {method.name!r} trains {kinds} problems; {body.problem!r} is a "
            f"{info['kind']} problem"
        )
    validation.check_finite(body.problem_options, "problem_options")
    try:
        options = catalogue.validate_options(body.problem, body.problem_options)
        info = datasets.run_problem_info(session, settings, user, body.problem, options, info)
    except ValueError as exc:  # pydantic.ValidationError is a ValueError
        raise validation.invalid(f"invalid problem_options for {body.problem!r}: {exc}") from None
    params = validation.validated(method.Params, body.hyperparameters, "hyperparameters")
    config = validation.engine_config(info.get("default_config") or {}, body.training)
    n_tasks = int(info["n_tasks"])
    prefs = body.preferences
    vectors = validation.preference_vectors(
        count=prefs.count if isinstance(prefs, PreferenceCount) else None,
        vectors=None if isinstance(prefs, PreferenceCount) else prefs.vectors,
        n_tasks=n_tasks,
        limit=settings.max_preferences,
    )
    _check_active_runs(session, settings, user)
    run = crud.create_run(
        session,
        owner=user,
        name=body.name,
        problem=body.problem,
        problem_options=options,
        method=method.name,
        hyperparameters=params.model_dump(mode="json"),
        training={k: getattr(config, k) for k in API_FIELDS},
        seed=body.seed,
        n_tasks=n_tasks,
        task_names=list(info["task_names"]),
        vectors=vectors,
        epochs=config.epochs,
        max_attempts=settings.max_attempts,
    )
    queue.refresh_run_status(session, run.id)
    session.commit()
    return _detail(session, run.id, user)


@router.get("", response_model=RunList, responses=errors())
def list_runs(
    session: SessionDep,
    user: CurrentUser,
    offset: Annotated[int, Query(ge=0, le=10**9, description="runs to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=200, description="runs per page")] = 50,
) -> RunList:
    """The caller's runs (all runs for an admin), newest first, one page at a time."""
    runs, count = crud.list_runs(session, user=user, offset=offset, limit=limit)
    hv = run_hypervolumes(session, runs)
    waits = live.QueueView.load(session, runs)
    page = RunList(data=[serializers.run_public(r, hv[r.id], waits) for r in runs], count=count)
    release(session)
    return page


@router.get("/{run_id}", response_model=RunDetail, responses=errors(404))
def get_run(run_id: RunId, session: SessionDep, user: CurrentUser) -> RunDetail:
    """One run with its preference vectors and jobs."""
    return _detail(session, run_id, user)


@router.post("/{run_id}/cancel", response_model=RunDetail, responses=errors(404))
def cancel_run(run_id: RunId, session: SessionDep, user: CurrentUser) -> RunDetail:
    """Cancel the run's queued jobs and ask running ones to stop (idempotent)."""
    run = get_run_or_404(session, user, run_id)
    queue.request_cancel(session, run.id)
    queue.refresh_run_status(session, run.id)
    session.commit()
    session.expire_all()
    return _detail(session, run_id, user)


@router.delete(
    "/{run_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=errors(404),
)
def delete_run(run_id: RunId, session: SessionDep, store: StoreDep, user: CurrentUser) -> Response:
    """Stop the run's jobs, delete its rows and its artifact tree."""
    run = get_run_or_404(session, user, run_id)
    queue.request_cancel(session, run.id)
    # Preferences, jobs, metric points and artifact rows go with the run (ON DELETE CASCADE).
    session.execute(delete(Run).where(Run.id == run.id))
    session.commit()
    store.delete_run(run_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
