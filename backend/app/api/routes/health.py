"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from backend.app.api.schemas import HealthStatus, ReadyStatus
from backend.app.db.session import DatabaseError, SchemaError, check_schema, ping

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

#: What an unauthenticated caller learns about a failing check (the real error is logged).
UNREACHABLE = "the database is unreachable"
OUTDATED = "the database schema is not at the revision this version needs; run `pmtl db upgrade`"


@router.get("/healthz", response_model=HealthStatus)
def healthz() -> HealthStatus:
    """The process is up (does not touch the database)."""
    return HealthStatus(status="ok")


@router.get(
    "/readyz",
    response_model=ReadyStatus,
    responses={503: {"model": ReadyStatus, "description": "database down or schema not current"}},
)
def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers and its schema is at the migrations' head (else 503).

    The probe needs no token, so a failure is reported in generic words; the driver's error
    (with server addresses) goes to the log only.
    """
    engine = request.app.state.engine
    database = migrations = False
    detail = None
    try:
        ping(engine)
        database = True
        check_schema(engine)
        migrations = True
    except SchemaError as exc:
        log.warning("not ready: %s", exc)
        detail = OUTDATED
    except DatabaseError as exc:
        log.warning("not ready: %s", exc)
        detail = UNREACHABLE
    ready = database and migrations
    body = ReadyStatus(
        status="ready" if ready else "not ready",
        database=database,
        migrations=migrations,
        detail=detail,
    )
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body.model_dump(), status_code=code)
