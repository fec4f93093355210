"""Pictures of fronts: loss-space scatter with preference rays, and training curves (PNG)."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the library never needs a display
import matplotlib.pyplot as plt
import torch

from pmtl_core.front import Front
from pmtl_core.indicators import non_dominated

__all__ = ["plot_front"]


def plot_front(
    front: Front, path: str | os.PathLike[str], *, problem=None, title: str | None = None
) -> Path:
    """Draw a two-task front: solutions coloured by preference, their rays, the analytic front
    when the problem knows it, trajectories and the test split when present. For three or more
    tasks draws the pairwise scatter matrix. Returns the PNG path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = front.objectives.detach().cpu().float()
    names = front.task_names or tuple(f"task {i + 1}" for i in range(front.n_tasks))
    colours = plt.cm.viridis(torch.linspace(0, 1, front.n_solutions).numpy())
    if front.n_tasks == 2:
        fig, ax = plt.subplots(figsize=(6, 5.5), dpi=120)
        _draw_two(ax, front, obj, colours, problem)
        ax.set_xlabel(f"{names[0]} loss")
        ax.set_ylabel(f"{names[1]} loss")
    else:
        m = front.n_tasks
        fig, axes = plt.subplots(m, m, figsize=(2.6 * m, 2.6 * m), dpi=110)
        for i in range(m):
            for j in range(m):
                ax = axes[i][j]
                if i == j:
                    ax.text(0.5, 0.5, names[i], ha="center", va="center", transform=ax.transAxes)
                    ax.set_xticks([])
                    ax.set_yticks([])
                    continue
                ax.scatter(obj[:, j], obj[:, i], c=colours, s=22, edgecolors="k", linewidths=0.4)
    fig.suptitle(title or f"{front.method} on {front.problem}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _draw_two(ax, front: Front, obj: torch.Tensor, colours, problem) -> None:
    if problem is not None and hasattr(problem, "pareto_front"):
        try:
            pf = problem.pareto_front(400)
            ax.plot(pf[:, 0], pf[:, 1], color="0.6", lw=1.5, label="analytic front", zorder=1)
        except NotImplementedError:
            pass
    if front.history is not None and front.history.shape[0] > 1:
        hist = front.history.detach().cpu().float()
        for k in range(front.n_solutions):
            ax.plot(hist[:, k, 0], hist[:, k, 1], color=colours[k], alpha=0.35, lw=0.8, zorder=2)
    reach = float(obj.max()) * 1.15 if obj.numel() else 1.0
    for k, u in enumerate(front.preferences.float()):
        ray = u / u.norm() * reach
        ax.plot([0, ray[0]], [0, ray[1]], ls="--", color=colours[k], lw=0.8, alpha=0.7, zorder=1)
    nd = non_dominated(obj)
    ax.scatter(
        obj[:, 0],
        obj[:, 1],
        c=colours,
        s=48,
        edgecolors="k",
        linewidths=0.6,
        zorder=4,
        label="solutions (train)",
    )
    ax.scatter(
        obj[nd, 0],
        obj[nd, 1],
        facecolors="none",
        edgecolors="red",
        s=110,
        lw=1.0,
        zorder=5,
        label="non-dominated",
    )
    if front.test_objectives is not None:
        test = front.test_objectives.detach().cpu().float()
        ax.scatter(
            test[:, 0],
            test[:, 1],
            c=colours,
            marker="^",
            s=40,
            edgecolors="k",
            linewidths=0.4,
            zorder=4,
            label="solutions (test)",
        )
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper right", fontsize=8)
