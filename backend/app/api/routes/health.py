"""Liveness and readiness probes (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse

from backend.app.api.schemas import HealthStatus, ReadyStatus
from backend.app.db.session import DatabaseError, SchemaError, check_schema, ping

router = APIRouter(tags=["health"])


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
    """Ready when the database answers and its schema is at the migrations' head (else 503)."""
    engine = request.app.state.engine
    database = migrations = False
    detail = None
    try:
        ping(engine)
        database = True
        check_schema(engine)
        migrations = True
    except SchemaError as exc:
        detail = str(exc)
    except DatabaseError as exc:
        detail = str(exc)
    ready = database and migrations
    body = ReadyStatus(
        status="ready" if ready else "not ready",
        database=database,
        migrations=migrations,
        detail=detail,
    )
    code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return JSONResponse(body.model_dump(), status_code=code)
