"""The learned Pareto set of a ``psl`` run, loaded from its newest verified checkpoint.

``POST /runs/{id}/evaluate`` and ``GET /runs/{id}/model?preference=`` answer any preference,
not only the run's own vectors, from the one model a ``psl`` run trains
(:class:`pmtl_core.pareto_set.ParetoSet`). Loading a checkpoint (and, on a data set, the
problem's data) costs far more than answering, so the few most recently used sets stay in
memory, keyed by checkpoint file and SHA-256: a newer checkpoint is a new key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.app import catalogue
from backend.app.datasets import resolve_dataset_options
from backend.app.db.models import Artifact, Run
from backend.app.storage import ArtifactStore

__all__ = ["NoParetoSet", "NotAParetoSetRun", "build_problem", "pareto_set"]

#: Learned sets kept in memory per API process.
CACHE_SIZE = 4
#: Options that belong to the server's configuration, whatever the run's row says.
SERVER_OPTIONS = ("download", "data_dir")

_cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
_lock = threading.Lock()


class NotAParetoSetRun(ValueError):
    """The run trained one model per preference vector: it has no set to ask."""


class NoParetoSet(LookupError):
    """The run has no verified checkpoint (yet)."""


def build_problem(run: Run, store: ArtifactStore) -> Any:
    """The run's problem as the server builds it: stored options (an uploaded table's file
    resolved in the store), never a download."""
    from pmtl_core.problems import REGISTRY, get_problem

    options = {k: v for k, v in run.problem_options.items() if k not in SERVER_OPTIONS}
    options = resolve_dataset_options(run.problem, options, store)
    entry = REGISTRY.get(run.problem)
    if entry is not None and "download" in entry.Options.model_fields:
        options["download"] = False
    return get_problem(run.problem, options)


def _checkpoint(session: Session, store: ArtifactStore, run: Run, epoch: int | None) -> Artifact:
    stmt = select(Artifact).where(Artifact.run_id == run.id, Artifact.kind == "checkpoint")
    if epoch is not None:
        stmt = stmt.where(Artifact.epoch == epoch)
    for ckpt in session.scalars(stmt.order_by(Artifact.epoch.desc(), Artifact.id.desc())):
        if store.is_valid(ckpt.path, ckpt.sha256):
            return ckpt
    if epoch is not None:
        raise NoParetoSet(
            f"run {run.id}: no checkpoint of epoch {epoch} (replaced since, or never written); "
            "ask again without an epoch"
        )
    raise NoParetoSet(
        f"run {run.id} has no checkpoint yet (it is {run.status}); try after its first epoch"
    )


def pareto_set(session: Session, store: ArtifactStore, run: Run, epoch: int | None = None) -> Any:
    """The :class:`~pmtl_core.pareto_set.ParetoSet` of a ``psl`` run at its newest verified
    checkpoint (or at ``epoch``); raises :class:`NotAParetoSetRun` or :class:`NoParetoSet`."""
    if not catalogue.method_class(run.method).learns_pareto_set:
        raise NotAParetoSetRun(
            f"run {run.id} trained one model per preference vector ({run.method}); only runs of "
            "a method that learns the whole Pareto set (psl) answer any preference — download "
            "one of its solutions instead"
        )
    ckpt = _checkpoint(session, store, run, epoch)
    key = (ckpt.path, ckpt.sha256)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    from pmtl_core.pareto_set import ParetoSet

    loaded = ParetoSet.from_checkpoint(store.resolve(ckpt.path), build_problem(run, store))
    with _lock:
        _cache[key] = loaded
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return loaded
