"""All resource routers under ``/api/v1``."""

from __future__ import annotations

from fastapi import APIRouter

from backend.app.api.routes import catalogue, metrics, models, preferences, runs, users

API_PREFIX = "/api/v1"

api_router = APIRouter(prefix=API_PREFIX)
for module in (catalogue, runs, preferences, metrics, models, users):
    api_router.include_router(module.router)
