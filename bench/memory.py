"""Peak memory of the engine on MultiMNIST: K = 10 models, and how gradient memory scales.

Each measurement runs in a fresh process (so peaks do not mix): it loads MultiMNIST, trains
``--batches`` batches of K stacked models and reports the process's peak RSS
(``ru_maxrss``) and the size of the task gradients the method materialised per step. Cases:
Pareto MTL (exact) and MGDA-UB at K = 10 with the paper's LeNet, then both with a 4x wider
encoder. Writes ``bench/results/memory.json``.

    python bench/memory.py --batches 20
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).parent / "results" / "memory.json"
CASES = [
    ("pareto_mtl", 10, 1.0),
    ("mgda_ub", 10, 1.0),
    ("pareto_mtl", 10, 4.0),
    ("mgda_ub", 10, 4.0),
]


def measure(method: str, k: int, width: float, batches: int) -> dict:
    """Run inside a child process: train a few batches, return peak RSS and gradient sizes."""
    import torch

    from pmtl_core.config import make_config
    from pmtl_core.engine import DatasetLoop
    from pmtl_core.methods import get_method
    from pmtl_core.preferences import uniform
    from pmtl_core.problems.multi_digit import MultiDigitProblem

    problem = MultiDigitProblem(
        "multi_mnist", width=width, data_dir=os.environ.get("PMTL_DATA_DIR")
    )
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    grad_numel: list[int] = []
    real_grad = torch.autograd.grad

    def counting(*args, **kwargs):
        out = real_grad(*args, **kwargs)
        grad_numel.append(sum(t.numel() for t in out if t is not None))
        return out

    torch.autograd.grad = counting
    cfg = make_config({"epochs": 1, "batch_size": 256, "device": "cpu"})
    trainer = DatasetLoop(problem, get_method(method)(uniform(2, k)), cfg, torch.device("cpu"))
    data_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    trainer.batches_per_epoch = batches
    trainer.train_epoch(
        1, torch.Generator().manual_seed(0), torch.ones(k, dtype=torch.bool), lambda b, n: None
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n_params = sum(p[0].numel() for p in trainer.stack.params.values())
    return {
        "method": method,
        "k": k,
        "width": width,
        "params_per_model": n_params,
        "peak_rss_mb": peak / 1024,
        "rss_after_data_mb": data_rss / 1024,
        "rss_before_data_mb": base_rss / 1024,
        "task_gradient_floats_per_step": grad_numel[0] * 2 if grad_numel else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--child", nargs=3, metavar=("METHOD", "K", "WIDTH"))
    args = parser.parse_args()
    if args.child:
        method, k, width = args.child
        print(json.dumps(measure(method, int(k), float(width), args.batches)))
        return
    rows = []
    for method, k, width in CASES:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--batches",
                str(args.batches),
                "--child",
                method,
                str(k),
                str(width),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(
            f"{method:10s} K={k:2d} width={width:3.1f}  params/model {row['params_per_model']:8d}"
            f"  peak RSS {row['peak_rss_mb']:7.0f} MB"
            f"  task-gradient floats/step {row['task_gradient_floats_per_step']:10d}",
            flush=True,
        )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"batches": args.batches, "cases": rows}, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
