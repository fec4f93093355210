"""Download of one trained model: safetensors weights and the JSON config to rebuild it.

Both routes serve the newest checkpointed model by default. A newer checkpoint can land
between the two downloads, so both answer ``X-Pmtl-Epoch`` (the weights also their SHA-256 as
``ETag``, the config the same value as ``X-Pmtl-Weights-Sha256``) and take ``?epoch=``, so the
second download can be pinned to the export of the first.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from fastapi.responses import FileResponse, JSONResponse

from backend.app import exports
from backend.app.api.common import errors, get_run_or_404
from backend.app.api.deps import CurrentUser, SessionDep, StoreDep, release
from backend.app.api.routes.runs import RunId
from backend.app.api.validation import json_safe

router = APIRouter(prefix="/runs", tags=["models"])

PrefId = Annotated[int, Path(ge=1, le=2**63 - 1, description="preference id")]
EpochQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=2**31 - 1,
        description="the model of this epoch (the X-Pmtl-Epoch of the other download) instead "
        "of the newest",
    ),
]


def _model(
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    run_id: int,
    pref_id: int,
    epoch: int | None,
) -> exports.Exported:
    run = get_run_or_404(session, user, run_id)
    pref = next((p for p in run.preferences if p.id == pref_id), None)
    if pref is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"preference {pref_id} not found in run {run_id}"
        )
    try:
        return exports.exported_model(session, store, run=run, preference=pref, epoch=epoch)
    except exports.NoCheckpoint as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.get(
    "/{run_id}/solutions/{pref_id}/model",
    response_class=FileResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
            "description": "the model's parameters as a safetensors file (header X-Pmtl-Epoch: "
            "its epoch, to pin the config download with ?epoch=)",
        },
        **errors(404),
    },
)
def model(
    run_id: RunId,
    pref_id: PrefId,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    epoch: EpochQuery = None,
    fmt: Annotated[
        Literal["safetensors", "onnx"],
        Query(
            alias="format",
            description="safetensors (the weights) or onnx (the network of a data-set problem: "
            "numeric input to one output per task)",
        ),
    ] = "safetensors",
) -> FileResponse:
    """The newest checkpointed model of one preference vector (or that of ``epoch``), as
    safetensors, or with ``format=onnx`` as an ONNX network."""
    exported = _model(session, store, user, run_id, pref_id, epoch)
    release(session)
    if fmt == "onnx":
        try:
            path = exports.onnx_model(store, exported)
        except ValueError as exc:  # a function problem's solution is not a network
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        return FileResponse(
            path,
            media_type="application/octet-stream",
            filename=f"run{run_id}-pref{pref_id}-epoch{exported.epoch}.onnx",
            headers={"X-Pmtl-Epoch": str(exported.epoch)},
        )
    return FileResponse(
        exported.weights,
        media_type="application/octet-stream",
        filename=f"run{run_id}-pref{pref_id}-epoch{exported.epoch}.safetensors",
        headers={"ETag": f'"{exported.sha256}"', "X-Pmtl-Epoch": str(exported.epoch)},
    )


@router.get(
    "/{run_id}/solutions/{pref_id}/config",
    response_model=dict[str, Any],
    responses=errors(404),
)
def model_config(
    run_id: RunId,
    pref_id: PrefId,
    session: SessionDep,
    store: StoreDep,
    user: CurrentUser,
    epoch: EpochQuery = None,
) -> JSONResponse:
    """The JSON that, with the weights, rebuilds the model (``pmtl_core.export.load_model``).

    Pass the weights' ``X-Pmtl-Epoch`` as ``epoch`` so that both belong to one checkpoint.
    """
    exported = _model(session, store, user, run_id, pref_id, epoch)
    release(session)
    config = json.loads(exported.config.read_text(encoding="utf-8"))
    headers = {"X-Pmtl-Epoch": str(exported.epoch), "X-Pmtl-Weights-Sha256": exported.sha256}
    # A diverged model's last losses may be NaN: strict JSON carries them as strings.
    return JSONResponse(json_safe(config), headers=headers)
