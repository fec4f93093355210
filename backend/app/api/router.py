"""All resource routers under ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from backend.app.api.routes import (
    catalogue,
    datasets,
    metrics,
    models,
    pareto_set,
    preferences,
    runs,
    users,
)

API_PREFIX = "/api/v1"
#: routes that stream and bound their own request bodies (PMTL_MAX_UPLOAD_MB)
UPLOADS = (f"{API_PREFIX}/datasets",)

api_router = APIRouter(prefix=API_PREFIX)
for module in (catalogue, runs, preferences, metrics, models, pareto_set, users, datasets):
    api_router.include_router(module.router)
