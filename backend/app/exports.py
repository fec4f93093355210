"""Models for download: exported once from a verified checkpoint, then served from the store.

For one preference the newest checkpoint of its job whose file matches the SHA-256 of its
artifact row is exported with :func:`pmtl_core.export.export_model` (model ``position`` of the
job's stack) into ``runs/{run}/jobs/{job}/models/{pref}/{epoch}/``; the weights and the config
are recorded as ``model`` and ``model_config`` artifacts so later downloads skip the export.

Weights and config are two downloads; a newer checkpoint can land between them. Passing the
``epoch`` of the first answer to the second pins it to the same export (served from the cache
even after the engine pruned that checkpoint).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import exc, select
from sqlalchemy.orm import Session

from backend.app.db.models import Artifact, Preference, Run
from backend.app.storage import ArtifactStore

__all__ = ["Exported", "NoCheckpoint", "exported_model", "onnx_model"]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
ONNX = "model.onnx"


class NoCheckpoint(LookupError):
    """No usable checkpoint of the preference's job exists (yet)."""


@dataclass(frozen=True)
class Exported:
    """Paths and identity of an exported model."""

    weights: Path
    config: Path
    epoch: int
    sha256: str


def _artifact(
    session: Session, job_id: int, pref_id: int, kind: str, epoch: int
) -> Artifact | None:
    stmt = select(Artifact).where(
        Artifact.job_id == job_id,
        Artifact.preference_id == pref_id,
        Artifact.kind == kind,
        Artifact.epoch == epoch,
    )
    return session.scalar(stmt)


def _cached(
    session: Session, store: ArtifactStore, pref: Preference, epoch: int
) -> Exported | None:
    weights = _artifact(session, pref.job_id, pref.id, "model", epoch)
    config = _artifact(session, pref.job_id, pref.id, "model_config", epoch)
    if weights is None or config is None:
        return None
    if not (
        store.is_valid(weights.path, weights.sha256) and store.is_valid(config.path, config.sha256)
    ):
        return None
    return Exported(store.resolve(weights.path), store.resolve(config.path), epoch, weights.sha256)


def _record(
    session: Session,
    run: Run,
    pref: Preference,
    kind: str,
    epoch: int,
    rel: str,
    sha: str,
    size: int,
) -> None:
    existing = _artifact(session, pref.job_id, pref.id, kind, epoch)
    if existing is not None:
        existing.path, existing.sha256, existing.size = rel, sha, size
        return
    try:
        with session.begin_nested():
            session.add(
                Artifact(
                    run_id=run.id,
                    job_id=pref.job_id,
                    preference_id=pref.id,
                    kind=kind,
                    epoch=epoch,
                    path=rel,
                    sha256=sha,
                    size=size,
                )
            )
    except exc.IntegrityError:
        # A concurrent download recorded the same export; its files are identical.
        pass


def _export(
    session: Session, store: ArtifactStore, run: Run, pref: Preference, ckpt: Path, epoch: int
) -> Exported:
    from pmtl_core.export import export_model

    target = store.model_dir(run.id, pref.job_id, pref.id, epoch)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=".export-"))
    try:
        config_path, weights_path = export_model(ckpt, pref.position, scratch)
        rel_weights = store.relative(target / WEIGHTS)
        rel_config = store.relative(target / CONFIG)
        w_sha, w_size = store.import_file(Path(weights_path), rel_weights)
        c_sha, c_size = store.import_file(Path(config_path), rel_config)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _record(session, run, pref, "model", epoch, rel_weights, w_sha, w_size)
    _record(session, run, pref, "model_config", epoch, rel_config, c_sha, c_size)
    _prune(session, store, pref, keep=store.exports_keep)
    return Exported(target / WEIGHTS, target / CONFIG, epoch, w_sha)


def _prune(session: Session, store: ArtifactStore, pref: Preference, *, keep: int) -> None:
    """Keep the exports of the newest ``keep`` epochs of a preference; drop the older ones'
    rows and directories (weights, config, ONNX). A pinned download of a dropped epoch is
    exported again while its checkpoint exists."""
    rows = session.scalars(
        select(Artifact).where(
            Artifact.job_id == pref.job_id,
            Artifact.preference_id == pref.id,
            Artifact.kind.in_(("model", "model_config")),
        )
    ).all()
    epochs = sorted({row.epoch for row in rows}, reverse=True)
    old = set(epochs[keep:])
    if not old:
        return
    for row in rows:
        if row.epoch in old:
            session.delete(row)
    session.flush()
    for epoch in old:
        shutil.rmtree(store.model_dir(pref.run_id, pref.job_id, pref.id, epoch), ignore_errors=True)


def _pinned(
    session: Session, store: ArtifactStore, run: Run, pref: Preference, epoch: int
) -> Exported:
    cached = _cached(session, store, pref, epoch)
    if cached is not None:
        return cached
    ckpt = session.scalar(
        select(Artifact)
        .where(
            Artifact.job_id == pref.job_id,
            Artifact.kind == "checkpoint",
            Artifact.epoch == epoch,
        )
        .order_by(Artifact.id.desc())
    )
    if ckpt is not None and store.is_valid(ckpt.path, ckpt.sha256):
        return _export(session, store, run, pref, store.resolve(ckpt.path), epoch)
    raise NoCheckpoint(
        f"preference {pref.id}: no model of epoch {epoch} (no such checkpoint, or it was "
        "replaced or failed its SHA-256 check); download the weights again without an epoch"
    )


def exported_model(
    session: Session,
    store: ArtifactStore,
    *,
    run: Run,
    preference: Preference,
    epoch: int | None = None,
) -> Exported:
    """The exported model of ``preference`` at its job's newest valid checkpoint, or at
    ``epoch`` exactly (``NoCheckpoint`` if that epoch's model is not available)."""
    if epoch is not None:
        return _pinned(session, store, run, preference, epoch)
    checkpoints = session.scalars(
        select(Artifact)
        .where(Artifact.job_id == preference.job_id, Artifact.kind == "checkpoint")
        .order_by(Artifact.epoch.desc(), Artifact.id.desc())
    ).all()
    for ckpt in checkpoints:
        cached = _cached(session, store, preference, ckpt.epoch)
        if cached is not None:
            return cached
        if store.is_valid(ckpt.path, ckpt.sha256):
            return _export(session, store, run, preference, store.resolve(ckpt.path), ckpt.epoch)
    state = preference.job.state
    if checkpoints:
        reason = "every checkpoint of this model failed its SHA-256 check"
    elif state in ("queued", "running"):
        reason = f"no checkpoint of this model yet (its job is {state}); try after an epoch"
    else:
        reason = f"this model has no checkpoint (its job is {state})"
    raise NoCheckpoint(f"preference {preference.id}: {reason}")


def onnx_model(store: ArtifactStore, exported: Exported) -> Path:
    """The ONNX file of an exported model (numeric input to one output per task), converted
    once and kept next to its weights; ``ValueError`` for a function problem's solution."""
    target = exported.weights.parent / ONNX
    if target.is_file():
        return target
    from pmtl_core.onnx_export import export_onnx

    data = export_onnx(exported.config, exported.weights)
    store.write_bytes(store.relative(target), data)
    return target
