"""Fronts of seven methods on MultiMNIST with 5 preference vectors, and HV against wall time.

Each method trains K = 5 models with the engine (LeNet, batch 256, SGD lr 1e-3, momentum 0.9);
after every epoch the test-set losses of the 5 models give a hypervolume at reference point
(2, 2). Writes ``bench/results/multimnist_front.json`` (per method: HV per epoch with wall
time, final test losses and accuracies per model, spread checks) and two figures in docs/:
``docs/images/hv_vs_time.png`` and ``docs/images/multimnist_fronts.png``.

    python bench/multimnist_front.py --epochs 10          # full data, 10 epochs per method
    python bench/multimnist_front.py --epochs 3 --train-size 20000   # a quicker look

On a CPU the paper's 100 epochs are out of reach; the number of epochs and the data size used
are recorded in the JSON and printed on the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from pmtl_core.engine import train
from pmtl_core.indicators import hypervolume, non_dominated
from pmtl_core.methods import get_method
from pmtl_core.preferences import uniform
from pmtl_core.problems import get_problem

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "multimnist_front.json"
REF = [2.0, 2.0]
METHODS = {
    "pareto_mtl": {},
    "mgda_ub": {},
    "linear": {},
    "epo": {},
    "mt2o": {},
    "uncertainty": {},
    "single_task": {},
}


class Recorder:
    """Collects test HV and losses per epoch."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_epoch(self, record) -> None:
        test = sorted((p for p in record.points if p.split == "test"), key=lambda p: p.index)
        train = sorted((p for p in record.points if p.split == "train"), key=lambda p: p.index)
        losses = [p.losses for p in test]
        self.rows.append(
            {
                "epoch": record.epoch,
                "wall_time": record.wall_time,
                "hypervolume": hypervolume(losses, REF) if losses else 0.0,
                "test_losses": losses,
                "test_accuracy": [p.metrics.get("accuracy") for p in test],
                "train_losses": [p.losses for p in train],
            }
        )
        print(
            f"  epoch {record.epoch:3d} {record.wall_time:8.1f} s  "
            f"test HV {self.rows[-1]['hypervolume']:.4f}",
            flush=True,
        )


def _in_sector(losses: list[list[float]], prefs: torch.Tensor) -> list[bool]:
    """Whether each model's test loss vector lies in its own preference sector."""
    out = []
    for k, loss in enumerate(losses):
        vec = torch.tensor(loss)
        cos = (prefs @ (vec / vec.norm())).tolist()
        out.append(max(range(len(cos)), key=cos.__getitem__) == k)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--train-size", type=int, default=120_000)
    parser.add_argument("--test-size", type=int, default=20_000)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lr", type=float, default=1e-3, help="SGD learning rate (paper: 1e-3)")
    parser.add_argument(
        "--lr-step", type=int, default=0, help="multiply the lr by --lr-gamma every N epochs"
    )
    parser.add_argument("--lr-gamma", type=float, default=0.1)
    parser.add_argument(
        "--merge", action="store_true", help="keep the other methods' results of the last run"
    )
    parser.add_argument(
        "--tag", default="", help="suffix of the JSON and PNG names (keeps other runs' files)"
    )
    args = parser.parse_args()
    options = {"train_size": args.train_size, "test_size": args.test_size}
    if os.environ.get("PMTL_DATA_DIR"):
        options["data_dir"] = os.environ["PMTL_DATA_DIR"]
    problem = get_problem("multi_mnist", options)
    prefs = uniform(2, 5)
    # Pareto MTL's init phase gets the reference implementation's budget: up to two epochs.
    batches = math.ceil(args.train_size / 256)
    params = {**METHODS, "pareto_mtl": {"init_steps": 2 * batches}}
    results: dict[str, dict] = {}
    out = OUT.with_name(f"{OUT.stem}{args.tag}.json")
    if args.merge and out.is_file():
        results = json.loads(out.read_text())["methods"]
    for name in args.methods.split(","):
        print(f"{name}:", flush=True)
        rec = Recorder()
        started = time.perf_counter()
        train(
            problem,
            name,
            prefs,
            {
                "epochs": args.epochs,
                "lr": args.lr,
                "lr_step": args.lr_step,
                "lr_gamma": args.lr_gamma,
                "device": args.device,
                "seed": 0,
            },
            params=params.get(name, {}),
            callbacks=[rec],
        )
        final = rec.rows[-1]
        results[name] = {
            "history": rec.rows,
            "seconds": time.perf_counter() - started,
            "final_hypervolume": final["hypervolume"],
            "final_test_losses": final["test_losses"],
            "final_test_accuracy": final["test_accuracy"],
            "final_train_losses": final["train_losses"],
            # Pareto MTL's constraints hold on the training losses; the test set shows how
            # far they carry over.
            "in_sector_train": _in_sector(final["train_losses"], prefs),
            "in_sector_test": _in_sector(final["test_losses"], prefs),
            "one_per_sector": all(_in_sector(final["test_losses"], prefs)),
            "non_dominated": non_dominated(torch.tensor(final["test_losses"])).tolist(),
        }
    setup = {
        "epochs": args.epochs,
        **options,
        "k": 5,
        "reference_point": REF,
        "lr": args.lr,
        "lr_step": args.lr_step,
        "lr_gamma": args.lr_gamma,
        "batch_size": 256,
        "device": args.device,
        # every hyperparameter, defaults included, so that a later change of default shows
        "params": {
            name: get_method(name).Params(**params.get(name, {})).model_dump() for name in results
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"setup": setup, "methods": results}, indent=1))
    _plots(results, setup, args.tag)
    for name, r in results.items():
        acc = [[round(a, 4) for a in row] for row in r["final_test_accuracy"]]
        print(
            f"{name:12s} HV {r['final_hypervolume']:.4f}  {r['seconds']:7.0f} s  "
            f"one per sector: {r['one_per_sector']}  acc {acc}"
        )
    print(f"wrote {out}")


def _plots(results: dict[str, dict], setup: dict, tag: str = "") -> None:
    images = ROOT / "docs" / "images"
    images.mkdir(parents=True, exist_ok=True)
    note = f"MultiMNIST, {setup['train_size']} train samples, {setup['epochs']} epochs, CPU"
    fig, ax = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    for name, r in results.items():
        # a method re-run later with --merge may carry a note on how its times compare
        ax.plot(
            [row["wall_time"] for row in r["history"]],
            [row["hypervolume"] for row in r["history"]],
            marker="o",
            ms=3,
            ls="--" if r.get("note") else "-",
            label=f"{name} ({r['note']})" if r.get("note") else name,
        )
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("test hypervolume, ref (2, 2)")
    ax.set_title(f"Hypervolume vs time — {note}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(images / f"hv_vs_time{tag}.png")
    plt.close(fig)
    cols = min(4, len(results))
    rows = math.ceil(len(results) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.1 * rows), dpi=110, squeeze=False)
    angles = torch.atan2(*uniform(2, setup["k"]).flip(-1).T)
    borders = (angles[1:] + angles[:-1]) / 2
    for ax, (name, r) in zip(axes.flat, results.items(), strict=False):
        pts = torch.tensor(r["final_test_losses"])
        top = float(pts.max()) * 1.1
        # preference rays (dashed) and the sector borders between them (dotted), equal axes so
        # that angles read true: a model belongs to the sector its loss vector falls in
        for a, style in [*((a, "--") for a in angles), *((a, ":") for a in borders)]:
            ax.plot([0, top * math.cos(a)], [0, top * math.sin(a)], style, c="0.6", lw=0.8)
        ax.scatter(
            pts[:, 0], pts[:, 1], c=range(len(pts)), cmap="viridis", edgecolors="k", zorder=3
        )
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_aspect("equal")
        ax.set_title(f"{name} (HV {r['final_hypervolume']:.3f})", fontsize=9)
        ax.set_xlabel("top-left loss", fontsize=8)
        ax.set_ylabel("bottom-right loss", fontsize=8)
    for ax in list(axes.flat)[len(results) :]:
        ax.axis("off")
    fig.suptitle(f"Test fronts — {note}\nrays dashed, sector borders dotted", fontsize=9)
    fig.tight_layout()
    fig.savefig(images / f"multimnist_fronts{tag}.png")
    plt.close(fig)


if __name__ == "__main__":
    main()
