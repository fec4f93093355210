"""The training process of one job: ``python -m backend.app.worker_child``, started by a supervisor.

Protocol (the supervisor is :mod:`backend.app.worker`):

- stdin: the first line is the job spec as JSON (built by the supervisor from the database; the
  child never touches the database), then one line per successful lease renewal. stdin is a
  lifeline: at end of file (the supervisor died), or when no renewal arrived for
  ``lease_seconds`` (the supervisor is frozen or cut off from the database, so the lease may
  be someone else's by now), the child exits at once without writing anything more.
- stdout: one JSON event per line (``start``, ``epoch``, ``checkpoint``, ``divergence``,
  ``finished``, ``stopped``, ``error``); anything else the process prints goes to stderr.
- SIGTERM: stop between two batches (:class:`pmtl_core.engine.TrainingStopped`); the last
  epoch's checkpoint stays on disk and ``stopped`` is reported.

Checkpoints are trusted only through their artifact rows: the child resumes from the newest
checkpoint whose SHA-256 matches its row; newer files in the directory (corrupt, or written
after the last row was recorded) are renamed ``*.discarded`` so the engine does not load
them, and training replays from the resume point (or from scratch). The child never deletes
checkpoints (the engine runs with ``prune=False``): the supervisor deletes old ones once newer
ones are recorded, keeping the newest ``keep_checkpoints`` recorded ones (sent in ``start``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, TextIO

__all__ = ["choose_checkpoint", "discard_newer", "main", "run_job"]

log = logging.getLogger("backend.app.worker_child")

#: Exit status when the lifeline (stdin) closed or fell silent for a whole lease.
ORPHANED = 70


class _Events:
    """JSON lines to the supervisor, flushed one by one."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, event: dict[str, Any]) -> None:
        line = json.dumps(event)  # NaN/inf are allowed here; the queue stores them as null
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


class _Relay:
    """Engine callbacks that forward what the supervisor records (points by stack position)."""

    def __init__(self, events: _Events) -> None:
        self.events = events

    def on_epoch(self, record: Any) -> None:
        self.events.send(
            {
                "type": "epoch",
                "epoch": record.epoch,
                "wall_time": record.wall_time,
                "epoch_time": record.epoch_time,
                "points": [
                    {"index": p.index, "split": p.split, "losses": p.losses, "metrics": p.metrics}
                    for p in record.points
                ],
            }
        )

    def on_checkpoint(self, path: Path, epoch: int) -> None:
        from pmtl_core.checkpoints import sha256

        path = Path(path)
        self.events.send(
            {
                "type": "checkpoint",
                "epoch": epoch,
                "path": str(path),
                "sha256": sha256(path),
                "size": path.stat().st_size,
            }
        )

    def on_divergence(self, event: Any) -> None:
        self.events.send(
            {
                "type": "divergence",
                "index": event.index,
                "epoch": event.epoch,
                "message": event.message,
            }
        )


def choose_checkpoint(candidates: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The newest candidate (``path``, ``sha256``, ``epoch``) whose file matches its checksum."""
    from pmtl_core.checkpoints import sha256

    for item in sorted(candidates, key=lambda c: c["epoch"], reverse=True):
        path = Path(item["path"])
        try:
            if path.is_file() and sha256(path) == item["sha256"]:
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


#: Options that belong to the worker's configuration, whatever the run's row says.
WORKER_OPTIONS = ("download", "data_dir")


def problem_options(spec: dict[str, Any]) -> dict[str, Any]:
    """The run's problem options with the worker's own say on data: ``download`` is the
    worker's ``PMTL_DOWNLOAD_DATA`` for problems that have the option, and the data root is
    the worker's (``PMTL_DATA_DIR``); values of these stored with the run are ignored."""
    from pmtl_core.problems import REGISTRY

    options = {k: v for k, v in spec["problem_options"].items() if k not in WORKER_OPTIONS}
    entry = REGISTRY.get(spec["problem"])
    if entry is not None and "download" in entry.Options.model_fields:
        options["download"] = bool(spec.get("download_data"))
    return options


def run_job(spec: dict[str, Any], events: _Events, should_stop: Any) -> None:
    """Rebuild the job from ``spec`` and train it, reporting through ``events``."""
    from pmtl_core.config import make_config
    from pmtl_core.engine import train
    from pmtl_core.problems import REGISTRY, get_problem

    # A dotted path is imported only when the operator allowed it (the supervisor refuses
    # such jobs before they get here; this is the second line of defence).
    problem = get_problem(
        spec["problem"],
        problem_options(spec),
        allow_user_defined=bool(spec.get("allow_dotted_problems")),
    )
    defaults = REGISTRY[spec["problem"]].default_config if spec["problem"] in REGISTRY else {}
    config = make_config(
        defaults,
        spec["training"],
        {"seed": spec["seed"], "device": spec["device"], "epochs": spec["epochs"]},
    )
    checkpoint_dir = Path(spec["checkpoint_dir"])
    resume = choose_checkpoint(spec["checkpoints"])
    resume_epoch = resume["epoch"] if resume is not None else 0
    discarded = discard_newer(checkpoint_dir, resume_epoch)
    init_from = None
    if resume is None and any(spec["init_from"]):
        init_from = []
        for source in spec["init_from"]:
            found = None if source is None else choose_checkpoint(source["checkpoints"])
            init_from.append(None if found is None else (found["path"], source["position"]))
    events.send(
        {
            "type": "start",
            "resume_epoch": resume_epoch,
            "discarded": discarded,
            "keep_checkpoints": config.keep_checkpoints,
        }
    )
    train(
        problem,
        spec["method"],
        spec["preferences"],
        config,
        params=spec["hyperparameters"],
        all_preferences=spec["all_preferences"],
        callbacks=[_Relay(events)],
        checkpoint_dir=checkpoint_dir,
        resume=Path(resume["path"]) if resume is not None else False,
        init_from=init_from,
        should_stop=should_stop,
        meta=spec.get("meta", {}),
        # Old checkpoints are deleted by the supervisor once it has recorded newer ones: the
        # engine pruning them itself could delete every checkpoint the database knows of.
        prune=False,
    )


class _Lifeline:
    """Exit the process when the supervisor dies or stops renewing the lease for a lease."""

    def __init__(self, stream: TextIO, lease_seconds: float) -> None:
        self.stream = stream
        self.lease_seconds = lease_seconds
        self.last = time.monotonic()

    def start(self) -> None:
        threading.Thread(target=self._listen, name="lifeline", daemon=True).start()
        threading.Thread(target=self._watch, name="lease-watch", daemon=True).start()

    def _listen(self) -> None:
        while self.stream.readline():
            self.last = time.monotonic()
        log.error("the supervisor went away; exiting")
        os._exit(ORPHANED)

    def _watch(self) -> None:
        while True:
            time.sleep(min(0.5, self.lease_seconds / 10))
            if time.monotonic() - self.last > self.lease_seconds:
                log.error("no lease renewal for %.1f s; exiting", self.lease_seconds)
                os._exit(ORPHANED)


def main() -> int:
    """Entry point: read the spec, train, report the outcome; the exit status says it too."""
    events = _Events(os.fdopen(os.dup(1), "w", encoding="utf-8"))
    os.dup2(2, 1)  # stray prints must not corrupt the event stream
    logging.basicConfig(level=logging.INFO, format="%(asctime)s child %(levelname)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides, not the terminal
    line = sys.stdin.readline()
    if not line:
        return ORPHANED
    spec = json.loads(line)
    _Lifeline(sys.stdin, float(spec["lease_seconds"])).start()
    try:
        from pmtl_core.engine import TrainingStopped

        run_job(spec, events, stop.is_set)
    except TrainingStopped as stopped:
        events.send({"type": "stopped", "epoch": stopped.epoch})
        return 0
    except BaseException as error:  # reported, then the supervisor decides about a retry
        events.send(
            {
                "type": "error",
                "message": f"{type(error).__name__}: {error}",
                "traceback": traceback.format_exc(),
            }
        )
        return 1
    events.send({"type": "finished"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
