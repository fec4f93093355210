"""The training side of one job, shared by a local child process and a Ray task.

:func:`train_job` rebuilds the job from its :class:`JobSpec`, trains it with
:func:`pmtl_core.engine.train` and reports typed events through ``emit``; it ends with one
outcome event (finished, stopped or error). It never touches the database.

Checkpoints are trusted only through their artifact rows: training resumes from the newest
checkpoint whose SHA-256 matches its row; newer files in the directory (corrupt, or written
after the last row was recorded) are renamed ``*.discarded`` so the engine does not load them,
and training replays from the resume point (or from scratch). The training side never deletes
checkpoints (the engine runs with ``prune=False``): the supervisor deletes old ones once newer
ones are recorded, keeping the newest ``keep_checkpoints`` recorded ones (sent in ``start``).
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from backend.app.worker.protocol import (
    CheckpointEvent,
    CheckpointRef,
    DivergenceEvent,
    EpochEvent,
    ErrorEvent,
    Event,
    FinishedEvent,
    JobSpec,
    PointOut,
    ProgressEvent,
    StartEvent,
    StoppedEvent,
)

__all__ = ["choose_checkpoint", "discard_newer", "problem_options", "run_job", "train_job"]

log = logging.getLogger("backend.app.worker.training")

Emit = Callable[[Event], None]

#: Options that belong to the worker's configuration, whatever the run's row says.
WORKER_OPTIONS = ("download", "data_dir")
#: Seconds between two progress events: each one is a database write by the supervisor.
PROGRESS_EVERY = 2.0


class _Relay:
    """Engine callbacks that forward what the supervisor records (points by stack position).

    In-epoch progress is throttled to one event per ``every`` seconds of ``clock``; the engine
    reports before each batch, so no event says "n of n" (the epoch event follows anyway).
    ``batch_size`` turns batches/s into samples/s (None: a function problem, no samples).
    """

    def __init__(
        self,
        emit: Emit,
        *,
        batch_size: int | None = None,
        every: float = PROGRESS_EVERY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit = emit
        self.batch_size = batch_size
        self.every = every
        self.clock = clock
        self._epoch: int | None = None
        self._epoch_started = 0.0
        self._sent = -math.inf
        self._epoch_seconds: float | None = None

    def on_progress(self, epoch: int, batch: int, batches: int) -> None:
        """Emit a :class:`ProgressEvent` unless one went out less than ``every`` s ago."""
        now = self.clock()
        if epoch != self._epoch:
            self._epoch, self._epoch_started = epoch, now
        if now - self._sent < self.every:
            return
        self._sent = now
        elapsed = now - self._epoch_started
        rate = batch / elapsed if batch > 0 and elapsed > 0 else None
        self.emit(
            ProgressEvent(
                epoch=epoch,
                batch=batch,
                batches=batches,
                unit="step" if self.batch_size is None else "batch",
                batches_per_s=rate,
                samples_per_s=(
                    None if rate is None or self.batch_size is None else rate * self.batch_size
                ),
                epoch_seconds=self._epoch_seconds,
            )
        )

    def on_epoch(self, record: Any) -> None:
        self._epoch_seconds = float(record.epoch_time)
        self.emit(
            EpochEvent(
                epoch=record.epoch,
                wall_time=record.wall_time,
                epoch_time=record.epoch_time,
                points=[
                    PointOut(index=p.index, split=p.split, losses=p.losses, metrics=p.metrics)
                    for p in record.points
                ],
            )
        )

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        from pmtl_core.checkpoints import sha256

        path = Path(path)
        self.emit(
            CheckpointEvent(
                epoch=epoch, path=str(path), sha256=sha256(path), size=path.stat().st_size
            )
        )

    def on_divergence(self, event: Any) -> None:
        self.emit(DivergenceEvent(index=event.index, epoch=event.epoch, message=event.message))


def choose_checkpoint(candidates: list[CheckpointRef]) -> CheckpointRef | None:
    """The newest candidate whose file matches its checksum."""
    from pmtl_core.checkpoints import sha256

    for item in sorted(candidates, key=lambda c: c.epoch, reverse=True):
        path = Path(item.path)
        try:
            if path.is_file() and sha256(path) == item.sha256:
                return item
        except OSError:
            continue
        log.warning("checkpoint %s is missing or corrupt; trying an older one", path)
    return None


def discard_newer(checkpoint_dir: Path, epoch: int) -> list[str]:
    """Rename checkpoint files of epochs after ``epoch`` to ``*.discarded``; their paths."""
    from pmtl_core.checkpoints import list_checkpoints

    discarded = []
    for path in list_checkpoints(checkpoint_dir):
        if int(path.stem.removeprefix("ckpt-epoch")) > epoch:
            path.replace(path.with_name(path.name + ".discarded"))
            discarded.append(str(path))
    return discarded


def problem_options(spec: JobSpec | Mapping[str, Any]) -> dict[str, Any]:
    """The run's problem options with the worker's own say on data.

    ``download`` is the worker's ``PMTL_DOWNLOAD_DATA`` for problems that have the option,
    and the data root is the worker's (``PMTL_DATA_DIR``); values of these stored with the
    run are ignored. ``spec`` is a :class:`JobSpec` or a mapping with its ``problem``,
    ``problem_options`` and ``download_data``.
    """
    from pmtl_core.problems import REGISTRY

    fields = spec.model_dump() if isinstance(spec, JobSpec) else spec
    stored = fields.get("problem_options") or {}
    options = {k: v for k, v in stored.items() if k not in WORKER_OPTIONS}
    entry = REGISTRY.get(fields["problem"])
    if entry is not None and "download" in entry.Options.model_fields:
        options["download"] = bool(fields.get("download_data"))
    return options


def run_job(spec: JobSpec, emit: Emit, should_stop: Callable[[], bool]) -> None:
    """Rebuild the job from ``spec`` and train it, reporting through ``emit`` (raises on error,
    :class:`pmtl_core.engine.TrainingStopped` when ``should_stop`` said so)."""
    from pmtl_core.config import make_config
    from pmtl_core.engine import train
    from pmtl_core.problems import REGISTRY, get_problem
    from pmtl_core.problems.function import FunctionProblem

    # A dotted path is imported only when the operator allowed it (the supervisor refuses
    # such jobs before they get here; this is the second line of defence).
    problem = get_problem(
        spec.problem, problem_options(spec), allow_user_defined=spec.allow_dotted_problems
    )
    defaults = REGISTRY[spec.problem].default_config if spec.problem in REGISTRY else {}
    config = make_config(
        defaults, spec.training, {"seed": spec.seed, "device": spec.device, "epochs": spec.epochs}
    )
    checkpoint_dir = Path(spec.checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    resume = choose_checkpoint(spec.checkpoints)
    resume_epoch = resume.epoch if resume is not None else 0
    discarded = discard_newer(checkpoint_dir, resume_epoch)
    init_from = None
    if resume is None and any(spec.init_from):
        init_from = []
        for source in spec.init_from:
            found = None if source is None else choose_checkpoint(source.checkpoints)
            init_from.append(None if found is None else (found.path, source.position))
    emit(
        StartEvent(
            resume_epoch=resume_epoch,
            discarded=discarded,
            keep_checkpoints=config.keep_checkpoints,
        )
    )
    train(
        problem,
        spec.method,
        spec.preferences,
        config,
        params=spec.hyperparameters,
        all_preferences=spec.all_preferences,
        callbacks=[
            _Relay(
                emit,
                batch_size=None if isinstance(problem, FunctionProblem) else config.batch_size,
                every=spec.progress_seconds,
            )
        ],
        checkpoint_dir=checkpoint_dir,
        resume=Path(resume.path) if resume is not None else False,
        init_from=init_from,
        should_stop=should_stop,
        meta=spec.meta,
        # Old checkpoints are deleted by the supervisor once it has recorded newer ones: the
        # engine pruning them itself could delete every checkpoint the database knows of.
        prune=False,
    )


def train_job(spec: JobSpec, emit: Emit, should_stop: Callable[[], bool]) -> bool:
    """Train the job and emit its outcome event; True unless the training raised."""
    try:
        from pmtl_core.engine import TrainingStopped

        run_job(spec, emit, should_stop)
    except TrainingStopped as stopped:
        emit(StoppedEvent(epoch=stopped.epoch))
        return True
    except BaseException as error:  # reported, then the supervisor decides about a retry
        emit(
            ErrorEvent(message=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
        )
        return False
    emit(FinishedEvent())
    return True
