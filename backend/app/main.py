"""``create_app(settings)``: the FastAPI application; nothing is created at import time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Scope

from backend.app.api.router import UPLOADS, api_router
from backend.app.api.routes import health
from backend.app.api.validation import request_errors
from backend.app.core.config import Settings
from backend.app.db.session import (
    DatabaseError,
    SchemaError,
    check_schema,
    create_db_engine,
    make_session_factory,
)
from backend.app.observability import BodyLimitMiddleware, RequestMetricsMiddleware, build_registry
from backend.app.storage import ArtifactStore

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _operation_id(route: APIRoute) -> str:
    """``tag-route`` operation ids, e.g. ``runs-create_run``, for generated clients."""
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}"


def _warm_up(app: FastAPI) -> None:
    """Check the schema once before serving, so the first burst of requests (a hundred open
    run pages after a restart) does not run a hundred schema checks at once."""
    try:
        check_schema(app.state.engine)
        app.state.schema_ok = True
    except (DatabaseError, SchemaError) as exc:
        log.warning("schema not ready at start-up (requests will check again): %s", exc)


async def _sweep(store: ArtifactStore, settings: Settings) -> None:
    """Remove stale temporary and set-aside files of the artifact store at start-up, then
    every ``cleanup_interval_s`` (0: at start-up only)."""
    while True:
        try:
            removed = await run_in_threadpool(store.clean_stale, settings.stale_file_age_s)
            if removed:
                log.info("artifact store: removed %d stale temporary or set-aside paths", removed)
        except OSError as exc:
            log.warning("artifact store sweep failed: %s", exc)
        if settings.cleanup_interval_s <= 0:
            return
        await asyncio.sleep(settings.cleanup_interval_s)


def create_app(settings: Settings) -> FastAPI:
    """Build the API for ``settings``: engine, session factory, store and metrics on app.state."""
    # Sync routes run on a 40-thread pool: give every thread a connection.
    engine = create_db_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=max(settings.db_max_overflow, 40 - settings.db_pool_size),
        pool_timeout=15,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(_warm_up, app)
        sweeper = asyncio.create_task(_sweep(app.state.store, settings))
        yield
        sweeper.cancel()
        engine.dispose()

    app = FastAPI(
        title="Pareto MTL Lab",
        version="0.1.0",
        summary="Train one multi-task model per preference vector and explore the Pareto front.",
        generate_unique_id_function=_operation_id,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.store = ArtifactStore(settings.artifact_root, exports_keep=settings.exports_keep)
    app.state.schema_ok = False
    registry, latency = build_registry(app.state.session_factory)
    app.state.metrics_registry = registry

    app.include_router(health.router)
    app.include_router(api_router)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def request_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Non-finite inputs echoed back as strings: the body must stay strict JSON (never 500).
        return JSONResponse({"detail": request_errors(exc)}, status_code=422)

    @app.exception_handler(SchemaError)
    async def schema_error(_: Request, exc: SchemaError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(DatabaseError)
    async def database_error(_: Request, exc: DatabaseError) -> JSONResponse:
        log.warning("database error: %s", exc)
        return JSONResponse(
            {"detail": "the database is unavailable or busy; retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(SQLAlchemyError)
    async def sqlalchemy_error(_: Request, exc: SQLAlchemyError) -> JSONResponse:
        log.warning("database error: %s", exc)
        return JSONResponse(
            {"detail": "the database is unavailable or busy; retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes, exempt=UPLOADS)
    templates: dict[str, str] = {}

    def route_of(scope: Scope) -> str:
        """Full path template of the matched route (included routers keep relative paths)."""
        route = scope.get("route")
        if route is None:
            return "unmatched"
        if not templates:
            for path, operations in app.openapi()["paths"].items():
                for operation in operations.values():
                    templates[operation["operationId"]] = path
        if isinstance(route, APIRoute) and route.include_in_schema:
            return templates.get(_operation_id(route), route.path)
        return getattr(route, "path", "unmatched")

    app.add_middleware(RequestMetricsMiddleware, histogram=latency, route_of=route_of)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    return app
