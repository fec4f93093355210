"""What can be run: problems, methods and the training settings a run may override."""

from __future__ import annotations

from fastapi import APIRouter

from backend.app import catalogue
from backend.app.api.common import errors
from backend.app.api.deps import CurrentUser
from backend.app.api.schemas import MethodPublic, ProblemPublic, TrainingSchema
from pmtl_core.config import API_FIELDS, EngineConfig

router = APIRouter(tags=["catalogue"])


@router.get("/problems", response_model=list[ProblemPublic], responses=errors())
def problems(user: CurrentUser) -> list[ProblemPublic]:  # noqa: ARG001
    """Registered problems with their option schemas and suggested training settings."""
    return [ProblemPublic.model_validate(info) for info in catalogue.list_problems()]


@router.get("/methods", response_model=list[MethodPublic], responses=errors())
def methods(user: CurrentUser) -> list[MethodPublic]:  # noqa: ARG001
    """Registered methods with their capabilities and hyperparameter JSON schemas."""
    return [MethodPublic.model_validate(info) for info in catalogue.list_methods()]


@router.get("/training", response_model=TrainingSchema, responses=errors())
def training(user: CurrentUser) -> TrainingSchema:  # noqa: ARG001
    """JSON schema of the training settings a run may override (``RunCreate.training``)."""
    schema = EngineConfig.model_json_schema()
    properties = {k: v for k, v in schema["properties"].items() if k in API_FIELDS}
    return TrainingSchema(
        schema={
            "title": "Training settings",
            "type": "object",
            "properties": properties,
            "additionalProperties": False,
        }
    )
