"""The epoch loop: K subproblems of one run trained together on one device.

``train`` builds K models (one per preference vector) as one stacked model
(:class:`~pmtl_core.engine.stacked.StackedModels`), streams each batch once through all of them,
asks the method for task weights from the K loss vectors and Gram matrices, and takes one optimiser
step for all K. Data sets live on the device as whole tensors and a batch is an index slice of a
per-epoch permutation. Metrics are reduced on the device and read once per epoch, then handed
to callbacks. Checkpoints hold everything needed to resume bit-identically. Function problems
(:class:`~pmtl_core.problems.function.FunctionProblem`) go through the same loop
(:class:`~pmtl_core.engine.function_loop.FunctionLoop`), an "epoch" being ``steps_per_epoch``
steps.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from pmtl_core import checkpoints
from pmtl_core.config import EngineConfig, make_config
from pmtl_core.devices import resolve_device
from pmtl_core.engine.base import Loop
from pmtl_core.engine.conditioned_loop import ConditionedLoop
from pmtl_core.engine.dataset_loop import DatasetLoop
from pmtl_core.engine.function_loop import FunctionLoop
from pmtl_core.engine.records import (
    Divergence,
    EpochRecord,
    MetricPoint,
    RunInfo,
    TrainingStopped,
)
from pmtl_core.engine.set_loop import SetLoop
from pmtl_core.engine.state import check_compatible, model_from_checkpoint, resume_path
from pmtl_core.front import Front
from pmtl_core.methods import Method, MethodParams, get_method
from pmtl_core.preferences import resolve as resolve_preferences
from pmtl_core.preferences import validate
from pmtl_core.problems.function import FunctionProblem

__all__ = [
    "Divergence",
    "EpochRecord",
    "MetricPoint",
    "RunInfo",
    "TrainingStopped",
    "train",
]

log = logging.getLogger(__name__)


def train(
    problem: Any,
    method: str | type[Method] = "pareto_mtl",
    preferences: int | Tensor | Sequence[Sequence[float]] = 5,
    config: EngineConfig | dict[str, Any] | None = None,
    *,
    params: MethodParams | dict[str, Any] | None = None,
    all_preferences: Tensor | Sequence[Sequence[float]] | None = None,
    callbacks: Sequence[Any] = (),
    checkpoint_dir: str | Path | None = None,
    resume: bool | str | Path = False,
    init_from: Sequence[tuple[str | Path, int] | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    meta: dict[str, Any] | None = None,
    prune: bool = True,
) -> Front:
    """Train one model per preference vector, all together; returns the final :class:`Front`.

    ``problem``: a problem object or a registry name. ``config``: an :class:`EngineConfig` or
    overrides on top of the problem's defaults. ``resume``: True continues from the newest
    loadable checkpoint in ``checkpoint_dir``, a path from that file. ``init_from``: per
    preference, ``(checkpoint, index)`` to warm-start from another run's model. ``meta`` is
    stored in checkpoints (e.g. the problem options, needed to rebuild a downloaded model).
    ``prune``: delete all but the newest ``config.keep_checkpoints`` checkpoints after each
    one is written; False leaves every file for the caller to delete (a worker deletes old
    checkpoints only once it has recorded newer ones). The per-epoch loss history is kept in
    ``checkpoint_dir``'s history file, not in the checkpoints (see :mod:`pmtl_core.checkpoints`).
    """
    if isinstance(problem, str):
        from pmtl_core.problems import get_problem

        problem = get_problem(problem)
    cfg = make_config(_problem_defaults(problem), config)
    device = resolve_device(cfg.device)
    prefs = resolve_preferences(preferences, problem.n_tasks)
    k = prefs.shape[0]
    everyone = prefs if all_preferences is None else validate(all_preferences, problem.n_tasks)
    cls = get_method(method) if isinstance(method, str) else method
    algo = cls(prefs.to(device), params, all_preferences=everyone.to(device))
    if init_from is not None and len(init_from) != k:
        raise ValueError(f"init_from needs one entry per preference ({k}), got {len(init_from)}")
    if resume and checkpoint_dir is None and not isinstance(resume, str | Path):
        raise ValueError("resume=True needs checkpoint_dir")

    torch.manual_seed(cfg.seed)
    kind = "function" if isinstance(problem, FunctionProblem) else "dataset"
    if kind not in cls.problem_kinds:
        raise ValueError(
            f"method {cls.name!r} trains {' and '.join(cls.problem_kinds)} problems, "
            f"not the {kind} problem {problem.name!r}"
        )
    trainer: Loop
    if cls.learns_pareto_set and kind == "function":
        trainer = SetLoop(problem, algo, cfg, device)
    elif cls.learns_pareto_set:
        trainer = ConditionedLoop(problem, algo, cfg, device)
    elif kind == "function":
        trainer = FunctionLoop(problem, algo, cfg, device)
    else:
        trainer = DatasetLoop(problem, algo, cfg, device)
    data_gen = torch.Generator().manual_seed(cfg.seed)
    alive = torch.ones(k, dtype=torch.bool, device=device)
    history: dict[str, list[Tensor]] = {"train": [], "test": []}
    start_epoch, wall_offset = 0, 0.0

    if init_from is not None:
        for index, source in enumerate(init_from):
            if source is not None:
                state = checkpoints.load(source[0])
                trainer.load_model(index, model_from_checkpoint(state, int(source[1])))
    resume_from = resume_path(resume, checkpoint_dir)
    if resume_from is not None:
        state = checkpoints.load(resume_from, map_location="cpu")
        check_compatible(state, problem, cls, prefs)
        trainer.load_state_dict(state["trainer"])
        algo.load_state_dict({n: t.to(device) for n, t in state["method_state"].items()})
        data_gen.set_state(state["rng"]["data"])
        torch.set_rng_state(state["rng"]["torch"])
        if torch.cuda.is_available() and state["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        alive = state["alive"].to(device)
        start_epoch, wall_offset = int(state["epoch"]), float(state["wall_time"])
        history = _resumed_history(state, resume_from, start_epoch)
        log.info("resumed from %s at epoch %d", resume_from, start_epoch)

    if checkpoint_dir is not None:
        # The history file starts where this run starts: lines of epochs after the resumed
        # checkpoint (written before a crash) or of an earlier run in the directory go.
        checkpoints.write_history(checkpoint_dir, history)
    saved_through = start_epoch  # epochs whose history lines are on disk

    names = tuple(problem.task_names)
    metric_names = tuple(getattr(problem, "metric_names", ()))
    _emit(
        callbacks,
        "on_start",
        RunInfo(
            problem=problem.name,
            method=cls.name,
            n_subproblems=k,
            n_tasks=problem.n_tasks,
            task_names=names,
            metric_names=metric_names,
            preferences=prefs.tolist(),
            epochs=cfg.epochs,
            start_epoch=start_epoch,
            device=str(device),
            config=cfg.model_dump(),
        ),
    )
    reported_dead = ~alive.cpu()
    started = time.perf_counter() - wall_offset
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        t0 = time.perf_counter()

        def progress(batch: int, n_batches: int, epoch: int = epoch) -> None:
            if should_stop is not None and should_stop():
                raise TrainingStopped(epoch)
            _emit(callbacks, "on_progress", epoch, batch, n_batches)

        train_res = trainer.train_epoch(epoch, data_gen, alive, progress)
        test_res = trainer.evaluate("test")
        lr = trainer.lr
        trainer.end_epoch()
        # One host transfer per epoch for everything below.
        alive_host = alive.cpu()
        train_host = {key: v.cpu() for key, v in train_res.items()}
        test_host = None if test_res is None else {key: v.cpu() for key, v in test_res.items()}
        history["train"].append(train_host["losses"])
        if test_host is not None:
            history["test"].append(test_host["losses"])
        for index in torch.nonzero(~alive_host & ~reported_dead).flatten().tolist():
            event = Divergence(
                index=index,
                preference=prefs[index].tolist(),
                epoch=epoch,
                message=(
                    f"subproblem {index} "
                    f"(preference {[round(v, 4) for v in prefs[index].tolist()]}) "
                    f"diverged in epoch {epoch}: its loss became NaN or infinite; it is frozen "
                    "and the other subproblems go on (try a smaller learning rate)"
                ),
            )
            log.warning(event.message)
            _emit(callbacks, "on_divergence", event)
        reported_dead = ~alive_host
        epoch_time = time.perf_counter() - t0
        points = _points(train_host, "train", alive_host)
        if test_host is not None:
            points += _points(test_host, "test", alive_host)
        _emit(
            callbacks,
            "on_epoch",
            EpochRecord(
                epoch=epoch,
                epochs=cfg.epochs,
                wall_time=time.perf_counter() - started,
                epoch_time=epoch_time,
                lr=lr,
                samples_per_second=trainer.samples_per_epoch / max(epoch_time, 1e-9),
                points=points,
            ),
        )
        if checkpoint_dir is not None and (
            epoch % cfg.checkpoint_every == 0 or epoch == cfg.epochs
        ):
            state = {
                "kind": trainer.kind,
                "problem": problem.name,
                "method": cls.name,
                "method_params": algo.params.model_dump(),
                "config": cfg.model_dump(),
                "preferences": prefs.cpu(),
                "all_preferences": everyone.cpu(),
                "task_names": list(names),
                "model_config": trainer.model_config(),
                "trainer": trainer.state_dict(),
                "method_state": {n: t.cpu() for n, t in algo.state_dict().items()},
                "alive": alive_host,
                "rng": {
                    "data": data_gen.get_state(),
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                },
                # Only the last epoch's losses (for exported model configs); the whole
                # history is in the history file, so the size does not grow with the epochs.
                "history": {s: list(v[-1:]) for s, v in history.items()},
                "history_file": checkpoints.HISTORY_FILE,
                "wall_time": time.perf_counter() - started,
                "meta": dict(meta or {}),
            }
            # History first: a checkpoint never exists without its epochs' history lines.
            checkpoints.append_history(checkpoint_dir, history, saved_through + 1)
            saved_through = epoch
            path = checkpoints.save(state, checkpoint_dir, epoch)
            if prune:
                checkpoints.prune(checkpoint_dir, cfg.keep_checkpoints)
            _emit(callbacks, "on_checkpoint", path, epoch)
        if not bool(alive_host.any()):
            log.error("every subproblem diverged; stopping after epoch %d", epoch)
            break

    front = _front(problem, cls.name, prefs, history, ~alive.cpu(), trainer)
    _emit(callbacks, "on_end", front)
    return front


def _resumed_history(
    state: dict[str, Any], resume_from: Path, epochs: int
) -> dict[str, list[Tensor]]:
    """The loss history of epochs ``1..epochs`` of a resumed run: from the history file next
    to the checkpoint, or from the checkpoint itself if it predates the history file."""
    if "history_file" not in state:  # an older checkpoint holding the whole history
        return {s: list(v) for s, v in state["history"].items()}
    return checkpoints.read_history(Path(resume_from).parent, epochs)


def _problem_defaults(problem: Any) -> dict[str, Any]:
    """The registry's default engine settings for this problem, if it is registered."""
    try:
        from pmtl_core.problems import REGISTRY
    except ImportError:  # pragma: no cover - registry not importable
        return {}
    spec = REGISTRY.get(getattr(problem, "name", ""))
    return dict(spec.default_config) if spec is not None else {}


def _points(res: dict[str, Tensor], split: str, alive: Tensor) -> list[MetricPoint]:
    losses = res["losses"]
    out = []
    for index in range(losses.shape[0]):
        if not alive[index]:
            continue
        metrics = {
            name[len("metric:") :]: res[name][index].tolist()
            for name in res
            if name.startswith("metric:")
        }
        values = losses[index].tolist()
        if not all(math.isfinite(v) for v in values):
            continue
        out.append(MetricPoint(index=index, split=split, losses=values, metrics=metrics))
    return out


def _front(
    problem: Any,
    method: str,
    prefs: Tensor,
    history: dict[str, list[Tensor]],
    failed: Tensor,
    trainer: Loop,
) -> Front:
    k, m = prefs.shape
    train_hist = torch.stack(history["train"]) if history["train"] else torch.empty(0, k, m)
    test_hist = torch.stack(history["test"]) if history["test"] else None
    objectives = train_hist[-1] if len(train_hist) else torch.full((k, m), float("nan"))
    return Front(
        problem=problem.name,
        method=method,
        objectives=objectives,
        preferences=prefs.cpu(),
        params=trainer.solutions(),
        history=train_hist,
        test_objectives=None if test_hist is None else test_hist[-1],
        failed=failed,
        task_names=tuple(problem.task_names),
        pareto_set=getattr(trainer, "pareto_set", None),
        metrics={"test_history": test_hist} if test_hist is not None else {},
    )


def _emit(callbacks: Sequence[Any], hook: str, *args: Any) -> None:
    for cb in callbacks:
        fn = getattr(cb, hook, None)
        if fn is not None:
            fn(*args)
