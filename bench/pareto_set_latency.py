"""Latency of a learned Pareto set's answers: evaluate n preferences, cut out one model.

Loads the newest checkpoint of a ``psl`` run (by default the MultiMNIST reproduction run) and
times ``ParetoSet.evaluate`` for 1 and 20 preferences on the test split, the UI picker's two
calls (its 100-preference front and one chosen point, each on a fixed draw of examples) and
``ParetoSet.model`` for one, as ``POST /runs/{id}/evaluate`` and
``GET /runs/{id}/model?preference=`` do them (without HTTP). The earlier one-preference-at-a-time
evaluation is timed in the same run for the ratio. Writes ``bench/results/pareto_set_latency.json``.

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
    ROOT / "bench" / "results" / "reproduce" / "checkpoints" / "digits-multi_mnist-psl@wall-seed2"
)


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    from frontend.lib.views.pareto_set_picker import (
        FRONT_SAMPLES,
        POINT_SAMPLES,
        preference_grid,
    )
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
    hundred = preference_grid(pset.n_tasks)
    test = pset._data.test

    def one_by_one() -> None:
        """The earlier evaluation, as a same-run reference: the conditioned network per
        preference over batches of 2048 (preference channels concatenated to every image)."""
        u = torch.tensor([0.3, 0.7]) / torch.tensor([0.3, 0.7]).norm()
        with torch.no_grad():
            for start in range(0, test.inputs.shape[0], 2048):
                x = pset.problem.transform(test.inputs[start : start + 2048])
                pset.net(x, u.expand(x.shape[0], -1))

    def median(fn, repeats: int = args.repeats) -> float:
        return statistics.median(_timed(fn, repeats))

    before = median(one_by_one)
    now = median(lambda: pset.evaluate([[0.3, 0.7]], "test"))
    result = {
        "checkpoint": str(Path(path).relative_to(ROOT))
        if Path(path).is_relative_to(ROOT)
        else str(path),
        "problem": state["problem"],
        "epoch": int(state["epoch"]),
        "test_examples": int(test.inputs.shape[0]),
        "threads": args.threads,
        "torch": torch.__version__,
        "loadavg_before": os.getloadavg(),
        "first_answer_s (load checkpoint + data, evaluate 1)": first,
        "evaluate_1_test_s": now,
        "evaluate_1_test_one_by_one_s (earlier code, same run)": before,
        "speedup_vs_one_by_one": before / now,
        "evaluate_20_test_s": median(lambda: pset.evaluate(twenty, "test"), 1),
        "ui_front_samples": FRONT_SAMPLES,
        "ui_point_samples": POINT_SAMPLES,
        "ui_front_100_prefs_s": median(
            lambda: pset.evaluate(hundred, "test", samples=FRONT_SAMPLES)
        ),
        "ui_point_1_pref_s": median(
            lambda: pset.evaluate([[0.3, 0.7]], "test", samples=POINT_SAMPLES)
        ),
        "model_1_s": median(lambda: pset.model([0.3, 0.7])),
        "loadavg_after": os.getloadavg(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
