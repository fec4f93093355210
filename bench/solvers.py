"""Benchmark: batched ``min_norm`` against a Python loop over quadprog's ``min_norm_exact``.

Both sides are timed in the same run on the same inputs (gradients ``(B, n, d)``, Gram matrix
included in the time), each the median of several repeats after a warm-up. Cases: B = 1000
problems of n = 7 gradients in d = 64 for three gradient distributions, and the training-loop
size K = 5. The quality column is the largest objective gap to quadprog relative to
``max_i ||g_i||^2``. Writes ``bench/results/solvers.json`` and prints a table.

    python bench/solvers.py [--device cpu] [--repeats 7] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from pmtl_core.solvers import min_norm, min_norm_exact

RESULTS = Path(__file__).resolve().parent / "results" / "solvers.json"
N_GRADS, DIM = 7, 64


def gaussian(b: int, gen: torch.Generator) -> torch.Tensor:
    """Independent standard normal gradients."""
    return torch.randn(b, N_GRADS, DIM, generator=gen, dtype=torch.float64)


def conflicting(b: int, gen: torch.Generator) -> torch.Tensor:
    """One shared direction per problem with random signs and scales, plus 10% noise."""
    direction = torch.randn(b, 1, DIM, generator=gen, dtype=torch.float64)
    signs = torch.where(torch.rand(b, N_GRADS, 1, generator=gen) < 0.5, -1.0, 1.0)
    scales = 0.1 + 2.9 * torch.rand(b, N_GRADS, 1, generator=gen, dtype=torch.float64)
    noise = 0.1 * torch.randn(b, N_GRADS, DIM, generator=gen, dtype=torch.float64)
    return signs * scales * direction + noise


def low_rank(b: int, gen: torch.Generator) -> torch.Tensor:
    """Rank-3 gradient sets: 7 gradients in a random 3-D subspace."""
    mix = torch.randn(b, N_GRADS, 3, generator=gen, dtype=torch.float64)
    basis = torch.randn(b, 3, DIM, generator=gen, dtype=torch.float64)
    return mix @ basis


def median_seconds(
    fn: Callable[[], object], repeats: int, sync: Callable[[], None], warmup: Callable[[], object]
) -> tuple[float, object]:
    """Median wall time of ``fn`` over ``repeats`` runs after ``warmup``; also its last result."""
    warmup()
    sync()
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def max_relative_gap(grads: torch.Tensor, w: torch.Tensor, exact: torch.Tensor) -> float:
    """Largest ``(f(w) - f(w_exact)) / max_i ||g_i||^2`` over the batch (f = ||w^T g||^2)."""
    g = grads.double().cpu()
    f = (w.double().cpu().unsqueeze(-2) @ g).squeeze(-2).pow(2).sum(-1)
    f_exact = (exact.unsqueeze(-2) @ g).squeeze(-2).pow(2).sum(-1)
    scale = g.pow(2).sum(-1).amax(-1).clamp_min(torch.finfo(torch.float64).tiny)
    return float(((f - f_exact) / scale).max())


def run_case(name: str, grads: torch.Tensor, repeats: int, device: torch.device) -> dict:
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    on_device = grads.to(device)
    host = grads.cpu()

    def loop() -> torch.Tensor:
        return torch.stack([min_norm_exact(g) for g in host])

    def batched() -> torch.Tensor:
        return min_norm(on_device)

    b = grads.shape[0]
    if b < 100:  # cheap: more repeats steady the median
        repeats *= 5
    batched_s, w = median_seconds(batched, repeats, sync, warmup=batched)
    loop_s, exact = median_seconds(
        loop, max(3, repeats // 2), sync, warmup=lambda: [min_norm_exact(g) for g in host[:10]]
    )
    return {
        "case": name,
        "problems": b,
        "n": grads.shape[1],
        "d": grads.shape[2],
        "seconds_batched": batched_s,
        "seconds_loop": loop_s,
        "throughput_batched": b / batched_s,
        "throughput_loop": b / loop_s,
        "ratio_loop_over_batched": loop_s / batched_s,
        "max_relative_objective_gap": max_relative_gap(grads, w, exact),
    }


def machine_info(device: torch.device) -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
        "load_average_1m": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device for the batched solver")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    cases = [
        (f"{dist.__name__} B=1000", dist(1000, gen)) for dist in (gaussian, conflicting, low_rank)
    ]
    cases += [(f"{dist.__name__} K=5", dist(5, gen)) for dist in (gaussian, conflicting)]
    results = [run_case(name, grads, args.repeats, device) for name, grads in cases]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info(device), "repeats": args.repeats, "cases": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")

    table = Table(title=f"min-norm: batched vs quadprog loop (n={N_GRADS}, d={DIM})")
    for column in ("case", "batched ms", "loop ms", "batched problems/s", "speed-up", "max gap"):
        table.add_column(column, justify="left" if column == "case" else "right")
    for r in results:
        table.add_row(
            r["case"],
            f"{1e3 * r['seconds_batched']:.3f}",
            f"{1e3 * r['seconds_loop']:.3f}",
            f"{r['throughput_batched']:,.0f}",
            f"{r['ratio_loop_over_batched']:.1f}x",
            f"{r['max_relative_objective_gap']:.1e}",
        )
    console = Console()
    console.print(table)
    console.print(f"written to {args.out}")


if __name__ == "__main__":
    main()
