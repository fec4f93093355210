"""Reproduction of the Pareto MTL paper's experiments, several seeds per method, resumable.

Every run (one suite, method configuration and seed) writes ``bench/results/reproduce/<run>.json``
after each epoch (its history so far, ``"done": true`` at the end) and keeps its checkpoints in
``bench/results/reproduce/checkpoints/<run>/``, so an interrupted run continues from its last
epoch. Sessions start from a fresh checkout: at the end of one, the newest checkpoint of each
unfinished run is committed (``git add -f``; the folder is otherwise ignored) and the next
session resumes from it. A finished run deletes its checkpoints. ``report`` turns the JSON
files into the tables and figures of ``docs/results.md``.

    python bench/reproduce.py run --suite synthetic                 # seconds per run
    nice python bench/reproduce.py run --suite priority --threads 1   # all data-set runs, in order
    python bench/reproduce.py run --suite all --dry-run              # what is left to do
    python bench/reproduce.py report                                 # tables + figures

Several ``run`` processes may work through the same plan at once (one per core): each run is
claimed with a lock (``flock``) in ``bench/results/reproduce/locks/`` while it trains, and a
process skips the runs that another process holds.

Suites (the paper's protocol where this CPU allows it; ``--epochs`` and sizes are recorded):

- ``synthetic``: the concave example (and its unbalanced version), 10 preference vectors,
  5 seeds; the reference's 100 iterations (at two step sizes, see ``PROTOCOLS``), and a
  1000-step run to converge.
- ``multi_mnist`` / ``multi_fashion`` / ``multi_fashion_mnist``: LeNet, 5 preference vectors,
  SGD momentum 0.9, batch 256, lr 1e-3 halved at the paper's milestones (epochs 15, 30, …, 90 of
  100) that fall within the epochs run (the paper's first epochs; a compressed schedule left
  LeNet at chance, see :func:`compressed_milestones`); 3 seeds of the initialisation and data
  order.
- ``init``: Pareto MTL with and without its init phase (the supplementary's study).
- ``mt2o``: MT2O against the same subproblems without transfer.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "reproduce"
CHECKPOINTS = RESULTS / "checkpoints"
LOCKS = RESULTS / "locks"  # one file per run being trained (not committed)
PAPER_MILESTONES = (15, 30, 45, 60, 75, 90)  # of 100 epochs, lr halved at each
DIGITS = ("multi_mnist", "multi_fashion", "multi_fashion_mnist")
# Every method on MultiMNIST; Pareto MTL, its variant and the linear grid on the other two.
ALL_METHODS = (
    "pareto_mtl",
    "pareto_mtl_restore",
    "linear",
    "mgda",
    "mgda_ub",
    "epo",
    "mt2o",
    "gradnorm",
    "uncertainty",
    "single_task",
)
CORE_METHODS = ("pareto_mtl", "pareto_mtl_restore", "linear")
# The reference's synthetic run: 100 iterations at step size 1 on weights it does not rescale
# (a min-norm point: |alpha| sums to about 1); ours sum to m = 2 in the main phase, so lr 0.5 is
# the reference's main-phase step and half its init step, lr 1 its init step and twice its main
# step. "long" runs to convergence.
PROTOCOLS = (("paper", 100, 0.5), ("paper-lr1", 100, 1.0), ("long", 1000, 0.1))
PSL_PROTOCOL = {"steps": 2000, "lr": 0.01}
SYNTHETIC_METHODS = (
    *((m, m, {}) for m in ("linear", "mgda", "pareto_mtl", "pareto_mtl_restore", "epo", "mt2o")),
    ("pareto_mtl", "pareto_mtl-no-init", {"init_steps": 0}),  # the supplementary's Fig. 6
)


@dataclass(frozen=True)
class RunSpec:
    """One training run: a method configuration on a problem with one seed."""

    suite: str
    problem: str
    method: str
    seed: int
    label: str  # the configuration's name in tables (a method, or a method with parameters)
    params: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    prefs: int = 5
    wall_of: str | None = None  # train until the wall time of this label's run (same seed)

    @property
    def run_id(self) -> str:
        return f"{self.suite}-{self.problem}-{self.label}-seed{self.seed}"


def compressed_milestones(epochs: int) -> list[int]:
    """The paper's lr milestones (15 %, 30 %, … of the run) scaled to ``epochs``, rounded up.

    Not used by the suites: with 10 epochs it halves the rate at epochs 2, 3, 5, 6, 8 and 9, and
    in a first MultiMNIST run (``aborted/``) LeNet stayed at chance for four epochs (test
    losses 2.27-2.31, accuracy 0.09-0.22). See :func:`paper_milestones`.
    """
    return sorted({max(1, math.ceil(m * epochs / 100)) for m in PAPER_MILESTONES if m < 100})


def paper_milestones(epochs: int) -> list[int]:
    """The paper's lr milestones that fall within the first ``epochs`` epochs: the paper's own
    schedule, cut short (none for runs of up to 15 epochs: lr 1e-3 throughout)."""
    return [m for m in PAPER_MILESTONES if m < epochs]


def digit_runs(suite: str, problem: str, methods, args) -> Iterator[RunSpec]:
    config = {
        "epochs": args.epochs,
        "batch_size": 256,
        "lr": 1e-3,
        "momentum": 0.9,
        "optimizer": "sgd",
        "lr_gamma": 0.5,
        "lr_milestones": paper_milestones(args.epochs),
        "device": args.device,
    }
    options = {"train_size": args.train_size, "test_size": args.test_size}
    for method, label, params in methods:  # all seeds of a method before the next method
        for seed in args.seeds:
            yield RunSpec(
                suite, problem, method, seed, label, params, {**config, "seed": seed}, options
            )


def psl_runs(args) -> Iterator[RunSpec]:
    """``psl`` on MultiMNIST for as long as Pareto MTL's run of the same seed took (its epochs
    are cheap: one network, one backward), with the data-set protocol's optimiser."""
    for spec in digit_runs("digits", "multi_mnist", [("psl", "psl@wall", {})], args):
        config = {**spec.config, "epochs": 20 * args.epochs}
        yield replace(spec, config=config, wall_of="pareto_mtl")


def _partner(spec: RunSpec) -> RunSpec:
    """The run whose wall time ``spec`` matches."""
    return replace(spec, method=spec.wall_of, label=spec.wall_of, wall_of=None)


def plan(suite: str, args) -> list[RunSpec]:
    """Every run of ``suite``, in the order they should be done (central comparisons first)."""
    plain = [(m, m, {}) for m in ALL_METHODS]
    if suite == "synthetic":
        return [
            RunSpec(
                "synthetic",
                problem,
                method,
                seed,
                f"{label}@{protocol}",
                params,
                {"steps": steps, "lr": lr},
                prefs=10,
            )
            for seed in range(5)
            for problem in ("concave", "concave_unbalanced")
            for protocol, steps, lr in PROTOCOLS
            for method, label, params in SYNTHETIC_METHODS
        ] + [
            # psl trains one network on sampled preferences: its own steps and learning rate
            RunSpec("synthetic", problem, "psl", seed, "psl@set", {}, PSL_PROTOCOL, prefs=10)
            for seed in range(5)
            for problem in ("concave", "concave_unbalanced")
        ]
    # the studies' baselines (pareto_mtl, mt2o) are the multi_mnist suite's runs
    if suite == "init":
        variants = [("pareto_mtl", "pareto_mtl-no-init", {"init_steps": 0})]
        return list(digit_runs("digits", "multi_mnist", variants, args))
    if suite == "mt2o":
        variants = [("mt2o", "mt2o-no-transfer", {"transfer": 0.0})]
        return list(digit_runs("digits", "multi_mnist", variants, args))
    if suite == "multi_mnist":
        return list(digit_runs("digits", "multi_mnist", plain, args))
    if suite == "psl":
        return list(psl_runs(args))
    if suite in DIGITS:
        core = [(m, m, {}) for m in CORE_METHODS]
        return list(digit_runs("digits", suite, core, args))
    raise SystemExit(f"unknown suite {suite!r}")


SUITES = (
    "synthetic",
    "multi_mnist",
    "psl",
    "mt2o",
    "init",
    "multi_fashion",
    "multi_fashion_mnist",
)


# ---------------------------------------------------------------------------- running


def _json_path(spec: RunSpec) -> Path:
    return RESULTS / f"{spec.run_id}.json"


def _load(spec: RunSpec) -> dict[str, Any] | None:
    path = _json_path(spec)
    return json.loads(path.read_text()) if path.is_file() else None


def _write(spec: RunSpec, doc: dict[str, Any]) -> None:
    from pmtl_core.atomic import atomic_write_bytes

    atomic_write_bytes(_json_path(spec), (json.dumps(doc, indent=1) + "\n").encode())


def _sector_of(losses: list[float], prefs: torch.Tensor) -> int:
    """The preference whose ray is nearest the loss vector's direction."""
    vec = torch.tensor(losses, dtype=torch.float64)
    return int(torch.argmax(prefs.double() @ (vec / vec.norm())))


def run_function(spec: RunSpec) -> dict[str, Any]:
    """A synthetic run: ``solve`` on the concave problem, scored against the analytic front."""
    from pmtl_core import solve
    from pmtl_core.indicators import hypervolume, igd
    from pmtl_core.problems import REGISTRY, get_problem

    problem = get_problem(spec.problem)
    started = time.perf_counter()
    front = solve(
        problem,
        spec.method,
        spec.prefs,
        steps=spec.config["steps"],
        lr=spec.config["lr"],
        seed=spec.seed,
        params=spec.params,
    )
    obj = front.objectives.double()
    prefs = front.preferences
    ref = list(REGISTRY[spec.problem].reference_point)
    sectors = [_sector_of(row.tolist(), prefs) for row in obj]
    dist = problem.distance_to_front(obj.float())
    unseen = {}
    if front.pareto_set is not None:  # 100 preferences the set model never trained on
        gen = torch.Generator().manual_seed(10_000 + spec.seed)
        angles = torch.rand(100, generator=gen, dtype=torch.float64) * (math.pi / 2)
        u = torch.stack([angles.cos(), angles.sin()], dim=-1)
        values = problem.evaluate(front.pareto_set(u.float())).double()
        error = (torch.atan2(values[:, 1], values[:, 0]) - angles).abs()
        unseen = {
            "unseen_preferences": u.tolist(),
            "unseen_distance_to_front": problem.distance_to_front(values.float()).tolist(),
            "unseen_angle_error_deg": torch.rad2deg(error).tolist(),
        }
    return {
        **unseen,
        "wall_time": time.perf_counter() - started,
        "objectives": obj.tolist(),
        "preferences": prefs.tolist(),
        "hypervolume": hypervolume(obj, ref),
        "reference_point": ref,
        "igd": igd(obj, problem.pareto_front(500).double()),
        "distance_to_front": dist.tolist(),
        "in_own_sector": [s == k for k, s in enumerate(sectors)],
        "sectors_covered": len(set(sectors)),
    }


class _Recorder:
    """Per-epoch test HV, losses, accuracies and sectors, written to the run's JSON each epoch."""

    def __init__(
        self,
        spec: RunSpec,
        doc: dict[str, Any],
        prefs: torch.Tensor,
        ref,
        wall_limit: float | None = None,
    ) -> None:
        self.spec, self.doc, self.prefs, self.ref = spec, doc, prefs, ref
        self.wall_limit = wall_limit

    def on_epoch(self, record) -> None:
        from pmtl_core.indicators import hypervolume

        row: dict[str, Any] = {
            "epoch": record.epoch,
            "wall_time": record.wall_time,
            "epoch_time": record.epoch_time,
        }
        for split in ("train", "test"):
            points = sorted((p for p in record.points if p.split == split), key=lambda p: p.index)
            losses = [p.losses for p in points]
            row[f"{split}_losses"] = losses
            row[f"{split}_accuracy"] = [p.metrics.get("accuracy") for p in points]
            row[f"{split}_hypervolume"] = hypervolume(losses, self.ref) if losses else 0.0
            row[f"{split}_in_own_sector"] = [
                _sector_of(p.losses, self.prefs) == p.index for p in points
            ]
        history = [r for r in self.doc["history"] if r["epoch"] < record.epoch]
        self.doc["history"] = [*history, row]
        _write(self.spec, self.doc)
        print(
            f"  {self.spec.run_id} epoch {record.epoch}/{record.epochs} "
            f"{record.wall_time:7.0f} s  test HV {row['test_hypervolume']:.4f}  "
            f"in sector {sum(row['test_in_own_sector'])}/{len(points)}",
            flush=True,
        )
        if self.wall_limit is not None and record.wall_time >= self.wall_limit:
            raise _WallLimitReached(record.epoch)


class _WallLimitReached(Exception):
    """The run has trained as long as the run it is compared with: it is done."""


def run_dataset(spec: RunSpec, deadline: float | None) -> dict[str, Any] | None:
    """A data-set run with the engine; returns None when the budget stopped it (resumable)."""
    from pmtl_core.engine import TrainingStopped, train
    from pmtl_core.preferences import uniform
    from pmtl_core.problems import REGISTRY, get_problem

    options = dict(spec.options)
    if os.environ.get("PMTL_DATA_DIR"):
        options["data_dir"] = os.environ["PMTL_DATA_DIR"]
    problem = get_problem(spec.problem, options)
    prefs = uniform(2, spec.prefs)
    ref = list(REGISTRY[spec.problem].reference_point)
    doc = _load(spec) or {
        "spec": _spec_doc(spec),
        "preferences": prefs.tolist(),
        "reference_point": ref,
        "history": [],
        "done": False,
    }
    ckpt = CHECKPOINTS / spec.run_id
    resume = ckpt.is_dir() and any(ckpt.glob("*.pt"))
    wall_limit = None
    if spec.wall_of:
        wall_limit = _load(_partner(spec))["history"][-1]["wall_time"]
        doc["wall_limit"] = wall_limit
    try:
        train(
            problem,
            spec.method,
            prefs,
            spec.config,
            params=spec.params,
            callbacks=[_Recorder(spec, doc, prefs, ref, wall_limit)],
            checkpoint_dir=ckpt,
            resume=resume,
            should_stop=(lambda: time.time() > deadline) if deadline else None,
        )
    except TrainingStopped as stop:
        print(f"  {spec.run_id}: budget spent in epoch {stop.epoch}; resumes next time")
        return None
    except _WallLimitReached as stop:
        print(f"  {spec.run_id}: reached {spec.wall_of}'s wall time in epoch {stop.args[0]}")
    return doc


def _spec_doc(spec: RunSpec) -> dict[str, Any]:
    return {
        "suite": spec.suite,
        "problem": spec.problem,
        "method": spec.method,
        "label": spec.label,
        "seed": spec.seed,
        "params": spec.params,
        "config": spec.config,
        "options": spec.options,
        "preferences": spec.prefs,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def priority_plan(args) -> list[RunSpec]:
    """Every data-set run, the central comparisons first: Pareto MTL on MultiMNIST, psl at its
    wall time, Pareto MTL's variant and the grid; MT2O with and without transfer; the init
    study; the other two data sets; then the remaining MultiMNIST methods."""
    core = set(CORE_METHODS)
    mnist = plan("multi_mnist", args)
    return [
        *(s for s in mnist if s.label == "pareto_mtl"),
        *plan("psl", args),
        *(s for s in mnist if s.label in core and s.label != "pareto_mtl"),
        *plan("mt2o", args),
        *(s for s in mnist if s.label == "mt2o"),
        *plan("init", args),
        *plan("multi_fashion", args),
        *plan("multi_fashion_mnist", args),
        *(s for s in mnist if s.label not in core and s.label != "mt2o"),
    ]


@contextmanager
def claim(run_id: str) -> Iterator[bool]:
    """Hold ``run_id``'s lock while the block runs, so that several ``run`` processes can work
    through one plan: yields False when another process holds it. The lock is an ``flock`` on
    ``locks/<run_id>.lock``: the kernel drops it when its process ends, SIGKILL included, so a
    run left by a killed process is free again at once."""
    LOCKS.mkdir(parents=True, exist_ok=True)
    with open(LOCKS / f"{run_id}.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        f.truncate(0)
        f.write(f"{os.getpid()}\n")  # who holds it, for people looking
        f.flush()
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cmd_run(args) -> None:
    deadline = time.time() + args.budget if args.budget else None
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.suite == "priority":
        todo = priority_plan(args)
    else:
        suites = SUITES if args.suite == "all" else tuple(args.suite.split(","))
        todo = [spec for suite in suites for spec in plan(suite, args)]
    todo = [s for s in todo if not (_load(s) or {}).get("done")]
    if args.only:
        todo = [s for s in todo if s.label in args.only.split(",")]
    print(f"{len(todo)} runs to do", flush=True)
    if args.dry_run:
        for spec in todo:
            print(" ", spec.run_id)
        return
    for spec in todo:
        if deadline and time.time() > deadline:
            print("budget spent; the remaining runs start next time")
            break
        if spec.wall_of and not (_load(_partner(spec)) or {}).get("done"):
            print(f"{spec.run_id}: waits for {_partner(spec).run_id}", flush=True)
            continue
        with claim(spec.run_id) as mine:
            if not mine:
                print(f"{spec.run_id}: another process is running it", flush=True)
                continue
            if (_load(spec) or {}).get("done"):  # finished by another process since the plan
                continue
            run_one(spec, deadline)


def run_one(spec: RunSpec, deadline: float | None) -> None:
    """Run (or continue) one run and write its JSON; checkpoints go once it is done."""
    print(f"{spec.run_id}:", flush=True)
    if spec.problem.startswith("concave"):
        _write(spec, {"spec": _spec_doc(spec), **run_function(spec), "done": True})
        return
    doc = run_dataset(spec, deadline)
    if doc is not None:
        doc["done"] = True
        _write(spec, doc)
        # the JSON holds the results; checkpoints are only for resuming
        shutil.rmtree(CHECKPOINTS / spec.run_id, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run (or continue) the suites' runs that are not done")
    run.add_argument(
        "--suite",
        default="synthetic",
        help=f"all, priority (data sets, central runs first), or from: {', '.join(SUITES)}",
    )
    run.add_argument("--seeds", default="0,1,2", help="seeds of the data-set suites")
    run.add_argument("--epochs", type=int, default=10)
    run.add_argument("--train-size", type=int, default=60_000)
    run.add_argument("--test-size", type=int, default=10_000)
    run.add_argument("--device", default="cpu")
    run.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    run.add_argument("--budget", type=float, default=0, help="seconds; 0: no limit")
    run.add_argument("--only", default="", help="comma-separated labels to run")
    run.add_argument("--dry-run", action="store_true")
    report = sub.add_parser("report", help="tables for docs/results.md and figures")
    report.add_argument("--docs", default=str(ROOT / "docs" / "results.md"))
    args = parser.parse_args()
    if args.command == "run":
        args.seeds = [int(s) for s in args.seeds.split(",")]
        cmd_run(args)
    else:
        from reproduce_report import write_report

        write_report(RESULTS, Path(args.docs))


if __name__ == "__main__":
    main()
