"""Adding preference vectors to an existing run."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from backend.app import catalogue, crud, queue
from backend.app.api import live, serializers, validation
from backend.app.api.common import errors, get_run_or_404, run_hypervolumes
from backend.app.api.deps import CurrentUser, SessionDep, SettingsDep, release
from backend.app.api.routes.runs import RunId
from backend.app.api.schemas import PreferencesAdd, RunDetail

router = APIRouter(prefix="/runs", tags=["preferences"])


@router.post(
    "/{run_id}/preferences",
    response_model=RunDetail,
    status_code=status.HTTP_201_CREATED,
    responses=errors(400, 404, 409, 413),
)
def add_preferences(
    run_id: RunId,
    body: PreferencesAdd,
    session: SessionDep,
    settings: SettingsDep,
    user: CurrentUser,
) -> RunDetail:
    """Add preference vectors to a run as one new job.

    Each new vector is warm-started from the nearest (by angle) preference of the run whose job
    already has a checkpoint, when the method allows it (``warm_startable``). Methods that
    couple their subproblems (``mt2o``) still train the new vectors as their own job: the new
    models exchange parameters among themselves, not with the earlier ones. A cancelled run
    takes no new vectors (409); adding and cancelling exclude each other (run lock).
    """
    # Lock the run before reading it: a cancel (or another add) committing meanwhile would
    # otherwise go unseen and leave a queued job on a cancelled run (or reuse an index).
    queue.lock_run(session, run_id)
    run = get_run_or_404(session, user, run_id)
    try:
        method = catalogue.method_class(run.method)
    except ValueError as exc:
        raise validation.invalid(f"the run's method is no longer available: {exc}") from None
    vectors = validation.preference_vectors(
        count=None,
        vectors=body.vectors,
        n_tasks=run.n_tasks,
        limit=settings.max_preferences,
        existing=len(run.preferences),
    )
    epochs = max((j.epochs for j in run.jobs), default=0) or int(run.training.get("epochs", 1))
    try:
        crud.add_preferences(
            session,
            run=run,
            vectors=vectors,
            epochs=epochs,
            max_attempts=settings.max_attempts,
            warm_startable=method.warm_startable,
        )
    except ValueError as exc:  # the run was cancelled
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    session.commit()
    session.expire_all()
    run = get_run_or_404(session, user, run_id)
    hv = run_hypervolumes(session, [run])[run.id]
    detail = serializers.run_detail(run, hv, live.QueueView.load(session, [run]))
    release(session)
    return detail
