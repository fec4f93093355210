"""Training progress: incremental metric points, the current front and its hypervolume history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.app import crud, fronts
from backend.app.api import serializers
from backend.app.api.common import errors, get_run_or_404, reference_point
from backend.app.api.deps import CurrentUser, SessionDep, release
from backend.app.api.routes.runs import RunId
from backend.app.api.schemas import (
    FrontPublic,
    HypervolumeHistory,
    HypervolumePoint,
    MetricPage,
    Split,
)

router = APIRouter(prefix="/runs", tags=["metrics"])

RefQuery = Annotated[
    str | None,
    Query(
        max_length=2000,
        description="hypervolume reference point, comma-separated, one value per task",
    ),
]


@router.get("/{run_id}/metrics", response_model=MetricPage, responses=errors(404))
def metrics(
    run_id: RunId,
    session: SessionDep,
    user: CurrentUser,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="return points with seq > after")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="points per page")] = 1000,
) -> MetricPage:
    """Metric points newer than ``after`` in seq order; poll again with ``after=last_seq``."""
    run = get_run_or_404(session, user, run_id, children=False)
    points, has_more = crud.metric_page(session, run_id=run.id, after=after, limit=limit)
    page = MetricPage(
        run_id=run.id,
        run_status=run.status,
        points=[serializers.metric_point_public(p) for p in points],
        last_seq=points[-1].seq if points else after,
        has_more=has_more,
    )
    release(session)
    return page


@router.get("/{run_id}/front", response_model=FrontPublic, responses=errors(404))
def front(
    run_id: RunId,
    session: SessionDep,
    user: CurrentUser,
    split: Split = "test",
    ref: RefQuery = None,
) -> FrontPublic:
    """The newest point of every preference on ``split``, non-dominated flags, hypervolume."""
    run = get_run_or_404(session, user, run_id)
    latest = crud.latest_metric_points(session, run_ids=[run.id], split=split).get(run.id, {})
    ready = crud.checkpointed_job_ids(session, run_id=run.id)
    prefs = [p for p in run.preferences if p.id in latest]
    losses = [list(latest[p.id].losses) for p in prefs]
    flags = fronts.non_dominated_flags(losses)
    ref_point = reference_point(run, losses, ref)
    result = FrontPublic(
        run_id=run.id,
        split=split,
        task_names=list(run.task_names),
        reference_point=ref_point,
        hypervolume=fronts.front_hypervolume(losses, ref_point) if losses else None,
        points=[
            serializers.front_point(
                p, latest[p.id], non_dominated=flag, downloadable=p.job_id in ready
            )
            for p, flag in zip(prefs, flags, strict=True)
        ],
    )
    release(session)
    return result


@router.get("/{run_id}/hypervolume", response_model=HypervolumeHistory, responses=errors(404))
def hypervolume(
    run_id: RunId,
    session: SessionDep,
    user: CurrentUser,
    split: Split = "test",
    ref: RefQuery = None,
) -> HypervolumeHistory:
    """Hypervolume after every epoch, each preference contributing its latest point so far."""
    run = get_run_or_404(session, user, run_id)
    points = crud.run_metric_points(session, run_id=run.id, split=split)
    ref_point = reference_point(run, [p.losses for p in points], ref)
    history = fronts.hypervolume_history(points, ref_point)
    release(session)
    return HypervolumeHistory(
        run_id=run.id,
        split=split,
        reference_point=ref_point,
        points=[
            HypervolumePoint(epoch=h.epoch, wall_time=h.wall_time, hypervolume=h.hypervolume)
            for h in history
        ],
    )
