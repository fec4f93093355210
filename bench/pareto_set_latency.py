"""Latency of a learned Pareto set's answers: evaluate n preferences, cut out one model.

Loads the newest checkpoint of a ``psl`` run (by default the MultiMNIST reproduction run) and
times ``ParetoSet.evaluate`` for 1 and 20 preferences on the test split and ``ParetoSet.model``
for one, as ``POST /runs/{id}/evaluate`` and ``GET /runs/{id}/model?preference=`` do them
(without HTTP). Writes ``bench/results/pareto_set_latency.json``.

    PMTL_DATA_DIR=../shared/data python bench/pareto_set_latency.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = (
    ROOT / "bench" / "results" / "reproduce" / "checkpoints" / "digits-multi_mnist-psl@wall-seed0"
)


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    from pmtl_core import checkpoints
    from pmtl_core.pareto_set import ParetoSet
    from pmtl_core.problems import get_problem

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint-dir", default=str(DEFAULT))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", default=str(ROOT / "bench" / "results" / "pareto_set_latency.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    path = checkpoints.latest(args.checkpoint_dir)
    if path is None:
        raise SystemExit(f"no checkpoint in {args.checkpoint_dir}")
    state = checkpoints.load(path, map_location="cpu")
    options = dict(state.get("meta", {}).get("problem_options", {}))
    if os.environ.get("PMTL_DATA_DIR"):
        options["data_dir"] = os.environ["PMTL_DATA_DIR"]
    t0 = time.perf_counter()
    pset = ParetoSet(state, get_problem(state["problem"], options or None))
    pset.evaluate([[1.0, 1.0]], split="test")  # loads the data set once
    first = time.perf_counter() - t0
    angles = torch.linspace(0.05, 1.52, 20)
    twenty = torch.stack([angles.cos(), angles.sin()], -1)
    result = {
        "checkpoint": str(Path(path).relative_to(ROOT))
        if Path(path).is_relative_to(ROOT)
        else str(path),
        "problem": state["problem"],
        "epoch": int(state["epoch"]),
        "threads": args.threads,
        "torch": torch.__version__,
        "first_answer_s (load checkpoint + data, evaluate 1)": first,
        "evaluate_1_test_s": statistics.median(
            _timed(lambda: pset.evaluate([[0.3, 0.7]], "test"), args.repeats)
        ),
        "evaluate_20_test_s": statistics.median(
            _timed(lambda: pset.evaluate(twenty, "test"), args.repeats)
        ),
        "model_1_s": statistics.median(_timed(lambda: pset.model([0.3, 0.7]), args.repeats)),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
