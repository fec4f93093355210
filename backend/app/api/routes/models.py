"""Download of one trained model: safetensors weights and the JSON config to rebuild it."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, status
from fastapi.responses import FileResponse

from backend.app import exports
from backend.app.api.common import errors, get_run_or_404
from backend.app.api.deps import CurrentUser, SessionDep, StoreDep, release
from backend.app.api.routes.runs import RunId

router = APIRouter(prefix="/runs", tags=["models"])

PrefId = Annotated[int, Path(ge=1, le=2**63 - 1, description="preference id")]


def _model(session: SessionDep, store: StoreDep, user: CurrentUser, run_id: int, pref_id: int):
    run = get_run_or_404(session, user, run_id)
    pref = next((p for p in run.preferences if p.id == pref_id), None)
    if pref is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"preference {pref_id} not found in run {run_id}"
        )
    try:
        return exports.exported_model(session, store, run=run, preference=pref)
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
            "description": "the model's parameters as a safetensors file",
        },
        **errors(404),
    },
)
def model(
    run_id: RunId, pref_id: PrefId, session: SessionDep, store: StoreDep, user: CurrentUser
) -> FileResponse:
    """The newest checkpointed model of one preference vector, as safetensors."""
    exported = _model(session, store, user, run_id, pref_id)
    release(session)
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
    run_id: RunId, pref_id: PrefId, session: SessionDep, store: StoreDep, user: CurrentUser
) -> dict[str, Any]:
    """The JSON that, with the weights, rebuilds the model (``pmtl_core.export.load_model``)."""
    exported = _model(session, store, user, run_id, pref_id)
    release(session)
    return json.loads(exported.config.read_text(encoding="utf-8"))
