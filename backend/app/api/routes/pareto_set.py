"""A ``psl`` run's whole front on demand: evaluate any preference, download its model.

A run of a method that learns the Pareto set (``psl``) holds one model for every trade-off.
``POST /runs/{id}/evaluate`` gives the losses and metrics of any preference vectors;
``GET /runs/{id}/model?preference=a,b`` and ``/config?preference=a,b`` give that preference's
network as the same safetensors + JSON pair as a solution's download (``pmtl_core.load_model``
rebuilds it). Both answer ``X-Pmtl-Epoch`` and take ``?epoch=`` to pin the checkpoint.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from backend.app import pareto_sets
from backend.app.api.common import errors, get_run_or_404
from backend.app.api.deps import CurrentUser, SessionDep, StoreDep, release
from backend.app.api.routes.runs import RunId
from backend.app.api.validation import json_safe

router = APIRouter(prefix="/runs", tags=["pareto set"])

#: Preferences one evaluate call may ask for.
MAX_VECTORS = 256

EpochQuery = Annotated[
    int | None,
    Query(ge=0, le=2**31 - 1, description="the checkpoint of this epoch instead of the newest"),
]
PreferenceQuery = Annotated[
    str,
    Query(
        min_length=1,
        max_length=4000,
        description="the preference vector, comma-separated (e.g. 0.3,0.7)",
        examples=["0.3,0.7"],
    ),
]


class EvaluateRequest(BaseModel):
    """Preference vectors to evaluate on one split."""

    vectors: list[list[float]] = Field(min_length=1, max_length=MAX_VECTORS)
    split: Literal["train", "test"] = Field(
        "train", description="function problems have only train"
    )
    samples: int | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description=(
            "data-set problems: evaluate on this many examples of the split, the same ones on "
            "every call (a seeded draw), instead of all of them; an estimate that answers "
            "faster, for drawing a front. Function problems ignore it"
        ),
    )


class EvaluatedPoint(BaseModel):
    """One preference's losses and metrics (per task)."""

    vector: list[float]
    losses: list[float | str]
    metrics: dict[str, list[float | str]]


class EvaluateResponse(BaseModel):
    """The evaluated preferences, in the order asked, and the checkpoint's epoch."""

    epoch: int
    split: str
    samples: int | None = Field(None, description="examples evaluated (null for function problems)")
    split_size: int | None = Field(
        None, description="examples in the split (null for function problems)"
    )
    points: list[EvaluatedPoint]


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


def _pareto_set(
    session: SessionDep, store: StoreDep, user: CurrentUser, run_id: int, epoch: int | None
) -> Any:
    run = get_run_or_404(session, user, run_id)
    try:
        return pareto_sets.pareto_set(session, store, run, epoch)
    except pareto_sets.NotAParetoSetRun as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except pareto_sets.NoParetoSet as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    finally:
        release(session)


def _parse_preference(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise _unprocessable(
            f"preference {text!r} is not a comma-separated list of numbers (e.g. 0.3,0.7)"
        ) from None
    if not all(math.isfinite(v) for v in values):
        raise _unprocessable(f"preference {text!r} has a non-finite entry")
    return values


@router.post(
    "/{run_id}/evaluate", response_model=EvaluateResponse, responses=errors(400, 404, 409, 413)
)
def evaluate(
    run_id: RunId,
    body: EvaluateRequest,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    epoch: EpochQuery = None,
) -> JSONResponse:
    """Losses and metrics of any preference vectors under a ``psl`` run's learned set.

    A vector that is negative, all zeros, not finite or of the wrong length is a 422 naming it
    (counting from 1); a run of another method is a 409.
    """
    pset = _pareto_set(session, store, user, run_id, epoch)
    try:
        points = pset.evaluate(body.vectors, split=body.split, samples=body.samples)
    except ValueError as exc:
        raise _unprocessable(str(exc)) from None
    size = pset.split_size(body.split)
    used = None if size is None else min(size, body.samples or size)
    payload = {
        "epoch": pset.epoch,
        "split": body.split,
        "samples": used,
        "split_size": size,
        "points": points,
    }
    return JSONResponse(json_safe(payload), headers={"X-Pmtl-Epoch": str(pset.epoch)})


def _model(
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    run_id: int,
    preference: str,
    epoch: int | None,
) -> tuple[int, dict[str, Any], dict[str, Any]]:
    vector = _parse_preference(preference)
    pset = _pareto_set(session, store, user, run_id, epoch)
    try:
        config, tensors = pset.model(vector)
    except ValueError as exc:
        raise _unprocessable(str(exc)) from None
    return pset.epoch, config, tensors


@router.get(
    "/{run_id}/model",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "description": "the preference's network as a safetensors file (header "
            "X-Pmtl-Epoch: the checkpoint's epoch, to pin the config download with ?epoch=)",
        },
        **errors(404, 409),
    },
)
def model(
    run_id: RunId,
    preference: PreferenceQuery,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    epoch: EpochQuery = None,
) -> Response:
    """The network of any preference of a ``psl`` run, as safetensors (``model.safetensors``)."""
    from safetensors.torch import save

    at, config, tensors = _model(session, store, user, run_id, preference, epoch)
    content = save(tensors, metadata={"format": "pmtl", "problem": config["problem"]})
    return Response(
        content,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": 'attachment; filename="model.safetensors"',
            "X-Pmtl-Epoch": str(at),
        },
    )


@router.get("/{run_id}/config", response_model=dict[str, Any], responses=errors(404, 409))
def config(
    run_id: RunId,
    preference: PreferenceQuery,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    epoch: EpochQuery = None,
) -> JSONResponse:
    """The JSON that, with ``/model?preference=`` of the same epoch, rebuilds that network."""
    at, cfg, _ = _model(session, store, user, run_id, preference, epoch)
    return JSONResponse(json_safe(cfg), headers={"X-Pmtl-Epoch": str(at)})
