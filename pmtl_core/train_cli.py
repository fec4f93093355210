"""``pmtl train``: a local training run with a progress display and its output directory.

The run directory holds ``run.json`` (the request, so ``pmtl train --resume DIR`` can continue),
``checkpoints/``, ``metrics.jsonl`` (one line per epoch), ``front.json`` (train and test fronts)
and ``front.png``.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from pmtl_core.front import Front, write_json_atomic
from pmtl_core.indicators import hypervolume

__all__ = ["TrainRequest", "reference_point", "run_local_training"]


class TrainRequest(BaseModel):
    """Everything that defines a local run; saved as ``run.json`` in the run directory."""

    model_config = ConfigDict(extra="forbid")

    problem: str
    problem_options: dict[str, Any] = Field(default_factory=dict)
    method: str
    preferences: int | list[list[float]]
    params: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    out: str

    @classmethod
    def load(cls, directory: Path) -> TrainRequest:
        path = Path(directory) / "run.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: is {directory} a `pmtl train` run directory?"
            )
        # The directory is where the run lives now (it may have been moved, or named relative
        # to another working directory when it was created): write there, not to ``out``.
        request = cls.model_validate_json(path.read_text())
        return request.model_copy(update={"out": str(Path(directory))})


def reference_point(problem: Any, front_losses: list[list[float]] | None = None) -> list[float]:
    """The hypervolume reference point for ``problem``'s losses: the registry's, else 2 per task
    for data sets, else 1.1 x the analytic front's worst values, else 1.1 x the worst loss seen."""
    from pmtl_core.problems import REGISTRY

    spec = REGISTRY.get(getattr(problem, "name", ""))
    ref = getattr(spec, "reference_point", None) if spec is not None else None
    if ref:
        return list(ref)
    if hasattr(problem, "pareto_front"):
        try:
            return (problem.pareto_front(100).amax(0) * 1.1).tolist()
        except NotImplementedError:
            pass
    else:
        return [2.0] * problem.n_tasks
    worst = [max(col) for col in zip(*front_losses, strict=True)] if front_losses else None
    return [1.1 * w for w in worst] if worst else [1.0] * problem.n_tasks


class _Display:
    """Callbacks: a rich progress bar, one summary line and one metrics.jsonl line per epoch."""

    def __init__(self, console: Console, out: Path, ref: list[float]) -> None:
        self.console = console
        self.out = out
        self.ref = ref
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.epochs_task = None
        self.batch_task = None

    def on_start(self, info) -> None:
        self.console.print(
            f"run directory {self.out}; after an interruption continue it with\n"
            f"  pmtl train --resume {shlex.quote(str(self.out))}",
            markup=False,
            soft_wrap=True,
        )
        self.progress.start()
        self.epochs_task = self.progress.add_task(
            f"{info.method} on {info.problem} (K={info.n_subproblems}, {info.device})",
            total=info.epochs,
            completed=info.start_epoch,
        )
        self.batch_task = self.progress.add_task("epoch", total=1)

    def on_progress(self, epoch: int, batch: int, n_batches: int) -> None:
        self.progress.update(
            self.batch_task, description=f"epoch {epoch}", completed=batch + 1, total=n_batches
        )

    def on_epoch(self, record) -> None:
        self.progress.update(self.epochs_task, completed=record.epoch)
        summary = []
        for split in ("train", "test"):
            pts = [p.losses for p in record.points if p.split == split]
            if pts:
                summary.append(f"{split} HV {hypervolume(pts, self.ref):.4f}")
        self.progress.console.print(
            f"epoch {record.epoch}/{record.epochs}  {record.epoch_time:6.1f} s  "
            f"{record.samples_per_second:8.0f} samples/s  lr {record.lr:.2e}  " + "  ".join(summary)
        )
        with open(self.out / "metrics.jsonl", "a") as fh:
            line = {
                "epoch": record.epoch,
                "wall_time": record.wall_time,
                "epoch_time": record.epoch_time,
                "lr": record.lr,
                "points": [p.__dict__ for p in record.points],
            }
            fh.write(json.dumps(line) + "\n")

    def on_divergence(self, event) -> None:
        self.progress.console.print(f"[yellow]warning:[/] {event.message}")

    def on_end(self, front: Front) -> None:
        self.progress.stop()


def _clear_results(out: Path) -> None:
    """Remove an earlier run's results from ``out`` (the caller checked that this is wanted):
    a new run must not mix with, or later resume from, an old run's checkpoints."""
    from pmtl_core import checkpoints

    for name in ("run.json", "metrics.jsonl", "front.json", "front.png"):
        (out / name).unlink(missing_ok=True)
    for path in checkpoints.list_checkpoints(out / "checkpoints"):
        path.unlink()


def run_local_training(request: TrainRequest, console: Console, *, resume: bool = False) -> Front:
    """Train as the request says, writing the run directory; returns the front."""
    from pmtl_core.engine import train
    from pmtl_core.plots import plot_front
    from pmtl_core.problems import get_problem

    out = Path(request.out)
    problem = get_problem(request.problem, request.problem_options)
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        _clear_results(out)
        write_json_atomic(out / "run.json", request.model_dump())
    display = _Display(console, out, reference_point(problem))
    try:
        front = train(
            problem,
            request.method,
            request.preferences,
            request.config,
            params=request.params,
            callbacks=[display],
            checkpoint_dir=out / "checkpoints",
            resume=resume,
            meta={"problem_options": request.problem_options},
        )
    finally:
        display.progress.stop()
    path = front.save(out)
    png = plot_front(front, out / "front.png", problem=problem)
    console.print(
        f"wrote {path}, {png} and checkpoints in {out / 'checkpoints'}",
        markup=False,
        soft_wrap=True,
    )
    return front
