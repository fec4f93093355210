"""Training progress: incremental metric points, the current front and its hypervolume history.

These are the routes every open run page polls. Each API process keeps a
:class:`~backend.app.fronts.SeriesCache`: per run, every metric point in seq order (encoded as
JSON once), the latest point of each preference and the hypervolume histories, brought up to
date by one indexed query for the points above the last ``seq`` it saw (metric points are
append-only and per run ``seq`` order is commit order). Pages, fronts and histories are then
built from memory and serialised by orjson, skipping the ORM and a second pydantic pass.
``/front`` and ``/hypervolume`` answer an ``ETag``; ``If-None-Match`` with it gives 304.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from sqlalchemy import bindparam, exists, select
from sqlalchemy.engine import Connection, Row

from backend.app import fronts
from backend.app.api.common import errors, reference_point
from backend.app.api.deps import CurrentUser, SessionDep, release
from backend.app.api.routes.runs import RunId
from backend.app.api.schemas import FrontPublic, HypervolumeHistory, MetricPage, Split
from backend.app.db.models import Artifact, Job, MetricPoint, Preference, Run, User

router = APIRouter(prefix="/runs", tags=["metrics"])

RefQuery = Annotated[
    str | None,
    Query(
        max_length=2000,
        description="hypervolume reference point, comma-separated, one value per task",
    ),
]
IfNoneMatch = Annotated[
    str | None,
    Header(max_length=2000, description="an ETag of an earlier answer: 304 if unchanged"),
]

_NOT_MODIFIED: dict[int | str, dict[str, Any]] = {
    304: {"description": "unchanged since the ETag given in If-None-Match (no body)"}
}
_cache_lock = threading.Lock()

# Statements built once (bound parameters): building them per request costs more than
# running them on this path.
_t = MetricPoint.__table__
_RUN = select(
    Run.id, Run.owner_id, Run.status, Run.created_at, Run.problem, Run.n_tasks, Run.task_names
).where(Run.id == bindparam("run_id"))
_NEW_POINTS = (
    select(
        _t.c.seq,
        _t.c.preference_id,
        _t.c.epoch,
        _t.c.split,
        _t.c.losses,
        _t.c.metrics,
        _t.c.wall_time,
    )
    .where(_t.c.run_id == bindparam("run_id"), _t.c.seq > bindparam("after"))
    .order_by(_t.c.seq)
)
_PREFERENCES = (
    select(
        Preference.id,
        Preference.vector,
        Job.state,
        exists().where(Artifact.job_id == Job.id, Artifact.kind == "checkpoint"),
    )
    .join(Job, Preference.job_id == Job.id)
    .where(Preference.run_id == bindparam("run_id"))
    .order_by(Preference.index)
)


def _json(content: Any, etag: str | None = None) -> Response:
    headers = {"ETag": etag, "Cache-Control": "no-cache"} if etag else None
    return Response(orjson.dumps(content), media_type="application/json", headers=headers)


def _encode_point(point: fronts.SeriesPoint) -> bytes:
    """One point as the JSON object of ``MetricPointPublic`` (made once per point)."""
    return orjson.dumps(
        {
            "seq": point.seq,
            "preference_id": point.preference_id,
            "epoch": point.epoch,
            "split": point.split,
            "losses": list(point.losses),
            "metrics": point.metrics,
            "wall_time": point.wall_time,
        }
    )


def _matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag`` (weak comparison, ``*`` included)."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def _etag(*parts: Any) -> str:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()
    return f'"{digest}"'


def _visible_run(connection: Connection, user: User, run_id: int) -> Row[Any]:
    """The run's row (id, owner, status, created_at, problem, n_tasks, task_names) if the
    caller may see it; a missing run and another user's run are both 404."""
    run = connection.execute(_RUN, {"run_id": run_id}).first()
    if run is None or not (user.is_admin or run.owner_id == user.id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"run {run_id} not found")
    return run


def _series(request: Request, connection: Connection, run: Row[Any]) -> fronts.RunSeries:
    """The run's series, with every point committed so far folded in (one indexed query)."""
    state = request.app.state
    cache = getattr(state, "series_cache", None)
    if cache is None:
        with _cache_lock:
            cache = getattr(state, "series_cache", None)
            if cache is None:
                cache = state.series_cache = fronts.SeriesCache(encode=_encode_point)
    series = cache.get(run.id, run.created_at)
    with series.refresh_lock:
        rows = connection.execute(_NEW_POINTS, {"run_id": run.id, "after": series.last_seq})
        points = [
            fronts.SeriesPoint(
                seq, pref, epoch, split, tuple(losses), metrics or {}, float(wall or 0.0)
            )
            for seq, pref, epoch, split, losses, metrics, wall in rows
        ]
        if points:
            with series.lock:
                series.add(points)
    return series


@router.get("/{run_id}/metrics", response_model=MetricPage, responses=errors(404))
def metrics(
    run_id: RunId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="return points with seq > after")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="points per page")] = 1000,
) -> Response:
    """Metric points newer than ``after`` in seq order; poll again with ``after=last_seq``."""
    connection = session.connection()
    run = _visible_run(connection, user, run_id)
    series = _series(request, connection, run)
    release(session)
    with series.lock:
        encoded, last_seq, has_more = series.page(after, limit)
    return _json(
        {
            "run_id": run.id,
            "run_status": run.status,
            "points": orjson.Fragment(b"[" + b",".join(encoded) + b"]"),
            "last_seq": last_seq,
            "has_more": has_more,
        }
    )


def _front_body(
    run: Row[Any], split: str, prefs: Sequence[Any], latest: dict[int, fronts.SeriesPoint], ref: Any
) -> dict[str, Any]:
    shown = [p for p in prefs if p[0] in latest]
    losses = [list(latest[p[0]].losses) for p in shown]
    flags = fronts.non_dominated_flags(losses)
    return {
        "run_id": run.id,
        "split": split,
        "task_names": list(run.task_names),
        "reference_point": ref,
        "hypervolume": fronts.front_hypervolume(losses, ref) if losses else None,
        "spread": fronts.front_spread(losses, flags),
        "points": [
            {
                "preference_id": pref_id,
                "vector": list(vector),
                "epoch": latest[pref_id].epoch,
                "status": state,
                "losses": list(latest[pref_id].losses),
                "metrics": latest[pref_id].metrics,
                "non_dominated": flag,
                "downloadable": bool(ready),
            }
            for (pref_id, vector, state, ready), flag in zip(shown, flags, strict=True)
        ],
    }


@router.get("/{run_id}/front", response_model=FrontPublic, responses=errors(404) | _NOT_MODIFIED)
def front(
    run_id: RunId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    split: Split = "test",
    ref: RefQuery = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """The newest point of every preference on ``split``, non-dominated flags, hypervolume."""
    connection = session.connection()
    run = _visible_run(connection, user, run_id)
    series = _series(request, connection, run)
    prefs = connection.execute(_PREFERENCES, {"run_id": run.id}).all()
    release(session)
    with series.lock:
        latest = series.latest(split)
        version = series.split_seq(split)
    states = tuple((p[0], p[2], bool(p[3])) for p in prefs if p[0] in latest)
    etag = _etag("front", run.id, str(run.created_at), split, ref, version, states)
    if _matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    losses = [list(p.losses) for p in latest.values()]
    ref_point = reference_point(run, losses, ref)
    return _json(_front_body(run, split, prefs, latest, ref_point), etag)


@router.get(
    "/{run_id}/hypervolume",
    response_model=HypervolumeHistory,
    responses=errors(404) | _NOT_MODIFIED,
)
def hypervolume(
    run_id: RunId,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    split: Split = "test",
    ref: RefQuery = None,
    if_none_match: IfNoneMatch = None,
) -> Response:
    """Hypervolume after every epoch, each preference contributing its latest point so far."""
    connection = session.connection()
    run = _visible_run(connection, user, run_id)
    series = _series(request, connection, run)
    release(session)
    with series.lock:
        worst = series.worst(split)
        version = series.split_seq(split)
    ref_point = reference_point(run, [worst] if worst is not None else [], ref)
    etag = _etag("hv", run.id, str(run.created_at), split, ref_point, version)
    if _matches(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag, "Cache-Control": "no-cache"})
    with series.lock:
        history = series.history(split, ref_point)
    return _json(
        {
            "run_id": run.id,
            "split": split,
            "reference_point": ref_point,
            "points": [
                {"epoch": h.epoch, "wall_time": h.wall_time, "hypervolume": h.hypervolume}
                for h in history
            ],
        },
        etag,
    )
