"""Training throughput on MultiMNIST (LeNet, batch 256): the stacked engine vs sequential loops.

Measures, in one run and interleaved (so machine noise hits every variant alike):

- ``stacked``: the engine training K = 5 Pareto MTL models together (exact task gradients;
  on the CPU its encoders run per model on views of the stacked parameters),
- ``stacked_vmap``: the same with the encoders under ``vmap`` (grouped convolutions, the GPU
  default),
- ``stacked_repr``: the same with task gradients w.r.t. the shared representation,
- ``sequential``: the reference implementation's loop (Xi-L/ParetoMTL, multiMNIST/train.py):
  the K models one after another; per batch and task a forward and a backward of that task's
  loss for its gradient over all parameters, the min-norm weights, then the weighted loss built
  from one fresh forward per task and one backward through them,
- ``sequential_tight``: the same loop with the redundant work removed (one forward for the
  task gradients, taken with ``retain_graph``, and one forward and backward of the weighted loss),
- ``floor``: plain training of one model on the summed loss (one forward and backward).
- ``psl``: Pareto-set learning's one preference-conditioned LeNet (``samples`` preference
  groups per batch, one weighted backward), its training steps only.

Reports samples/s (data samples through all K models for the multi-model variants) and the
ratios stacked/sequential and (stacked time per model)/(floor time). Writes JSON to
``bench/results/train_throughput.json``.

    python bench/train_throughput.py                 # one full epoch of 120k samples each
    python bench/train_throughput.py --batches 40    # a quick sample
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import Tensor

from pmtl_core.config import make_config
from pmtl_core.engine import DatasetLoop
from pmtl_core.engine.conditioned_loop import ConditionedLoop
from pmtl_core.methods import get_method
from pmtl_core.preferences import uniform
from pmtl_core.problems.multi_digit import MultiDigitProblem

OUT = Path(__file__).parent / "results" / "train_throughput.json"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


class Sequential:
    """K plain models trained one after another, as the reference implementation does."""

    def __init__(self, problem, k: int, lr: float, device, tight: bool = False) -> None:
        torch.manual_seed(0)
        self.problem = problem
        self.tight = tight
        self.models = [problem.build_model().to(device) for _ in range(k)]
        self.opts = [torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9) for m in self.models]
        prefs = uniform(2, k).to(device)
        self.methods = [
            get_method("pareto_mtl")(prefs[i : i + 1], all_preferences=prefs) for i in range(k)
        ]

    def _task_grads(self, model, opt, x, y) -> tuple[Tensor, Tensor]:
        """``(m, n)`` task gradients over every parameter a task reaches, and the losses."""
        p = self.problem
        params = list(model.parameters())
        grads, losses = [], []
        if self.tight:
            _, outs = model(x)
            task_losses = p.task_losses(outs, y)
        for t in range(p.n_tasks):
            if self.tight:
                loss = task_losses[t]
                gs = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            else:  # the reference: a fresh forward for every task's backward
                opt.zero_grad()
                _, outs = model(x)
                loss = p.task_losses(outs, y)[t]
                loss.backward()
                gs = [q.grad for q in params]
            grads.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(q)).flatten()
                        for g, q in zip(gs, params, strict=True)
                    ]
                )
            )
            losses.append(loss.detach())
        return torch.stack(grads), torch.stack(losses)

    def step(self, x, y) -> None:
        p = self.problem
        for model, opt, method in zip(self.models, self.opts, self.methods, strict=True):
            flat, losses = self._task_grads(model, opt, x, y)
            alpha = method(losses.unsqueeze(0), (flat @ flat.T).unsqueeze(0))[0]
            opt.zero_grad()
            if self.tight:
                _, outs = model(x)
                total = (alpha * p.task_losses(outs, y)).sum()
            else:  # the reference: each term of the weighted loss from its own forward
                total = sum(alpha[t] * p.task_losses(model(x)[1], y)[t] for t in range(p.n_tasks))
            total.backward()
            opt.step()


class Floor:
    """One model, summed loss, one forward and backward per batch."""

    def __init__(self, problem, lr: float, device) -> None:
        torch.manual_seed(0)
        self.problem = problem
        self.model = problem.build_model().to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)

    def step(self, x, y) -> None:
        self.opt.zero_grad()
        _, outs = self.model(x)
        self.problem.task_losses(outs, y).sum().backward()
        self.opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=0, help="batches per measurement (0: epoch)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", default=os.environ.get("PMTL_DATA_DIR"))
    args = parser.parse_args()
    device = torch.device(args.device)
    problem = MultiDigitProblem("multi_mnist", data_dir=args.data_dir)
    data = problem.load(device)
    n = data.train.inputs.shape[0]
    bs = 256
    n_batches = args.batches or -(-n // bs)
    cfg = make_config({"epochs": 1, "batch_size": bs, "lr": 1e-3, "device": str(device)})

    def engine(params, encoder: str = "auto"):
        algo = get_method("pareto_mtl")(uniform(2, args.k).to(device), params)
        trainer = DatasetLoop(problem, algo, cfg, device)
        if encoder != "auto":
            trainer.stack.encoder_strategy = encoder
        trainer.data = data
        trainer.batches_per_epoch = n_batches
        trainer.samples_per_epoch = min(n, n_batches * bs)
        return trainer

    stacked = engine({"grad_wrt": "shared"})
    stacked_vmap = engine({"grad_wrt": "shared"}, encoder="vmap")
    stacked_repr = engine({"grad_wrt": "representation"})
    sequential = Sequential(problem, args.k, 1e-3, device)
    sequential_tight = Sequential(problem, args.k, 1e-3, device, tight=True)
    floor = Floor(problem, 1e-3, device)
    psl = ConditionedLoop(problem, get_method("psl")(uniform(2, args.k).to(device)), cfg, device)
    gen = torch.Generator().manual_seed(0)

    def run_trainer(trainer) -> float:
        alive = torch.ones(args.k, dtype=torch.bool, device=device)
        t0 = time.perf_counter()
        trainer.train_epoch(1, gen, alive, lambda b, nb: None)
        return time.perf_counter() - t0

    def run_loop(obj, raw: bool = False) -> float:
        perm = torch.randperm(n, generator=gen).to(device)
        t0 = time.perf_counter()
        for b in range(n_batches):
            idx = perm[b * bs : (b + 1) * bs]
            x = data.train.inputs[idx]
            obj.step(x if raw else problem.transform(x), data.train.targets[idx])
        return time.perf_counter() - t0

    variants = {
        "stacked": lambda: run_trainer(stacked),
        "stacked_vmap": lambda: run_trainer(stacked_vmap),
        "stacked_repr": lambda: run_trainer(stacked_repr),
        "sequential": lambda: run_loop(sequential),
        "sequential_tight": lambda: run_loop(sequential_tight),
        "floor": lambda: run_loop(floor),
        "psl": lambda: run_loop(psl, raw=True),
    }
    times: dict[str, list[float]] = {name: [] for name in variants}
    for rep in range(args.repeats):
        for name, fn in variants.items():
            times[name].append(fn())
            print(f"repeat {rep + 1}: {name:16s} {times[name][-1]:8.2f} s", flush=True)
    samples = min(n, n_batches * bs)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    result = {
        "machine": {
            "cpu": _cpu_model(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "device": str(device),
            "encoder_strategy": stacked.stack.encoder_strategy,
            "load_average": os.getloadavg(),
        },
        "setup": {
            "problem": "multi_mnist",
            "model": "LeNet",
            "batch_size": bs,
            "k": args.k,
            "samples_per_measurement": samples,
            "repeats": args.repeats,
        },
        "seconds": med,
        "samples_per_second": {name: samples / t for name, t in med.items()},
        "ratios": {
            "stacked_vs_sequential": med["sequential"] / med["stacked"],
            "stacked_vmap_vs_sequential": med["sequential"] / med["stacked_vmap"],
            "stacked_repr_vs_sequential": med["sequential"] / med["stacked_repr"],
            "stacked_vs_sequential_tight": med["sequential_tight"] / med["stacked"],
            "stacked_repr_vs_sequential_tight": med["sequential_tight"] / med["stacked_repr"],
            "stacked_per_model_vs_floor": med["stacked"] / args.k / med["floor"],
            "stacked_repr_per_model_vs_floor": med["stacked_repr"] / args.k / med["floor"],
            "sequential_per_model_vs_floor": med["sequential"] / args.k / med["floor"],
            "sequential_tight_per_model_vs_floor": med["sequential_tight"] / args.k / med["floor"],
            "stacked_vs_psl": med["stacked"] / med["psl"],
            "psl_vs_floor": med["psl"] / med["floor"],
        },
        "epoch_seconds_estimate": {name: t * n / samples for name, t in med.items()},
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["ratios"], indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
