"""Tables and figures of ``docs/results.md`` from the JSON runs of ``bench/reproduce.py``.

Every number comes from ``bench/results/reproduce/*.json``. The tables are written between
``<!-- reproduce:NAME -->`` and ``<!-- /reproduce:NAME -->`` markers of ``docs/results.md`` (the
prose around them is written by hand, from these tables); figures go to ``docs/images/``.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

IMAGES = Path(__file__).resolve().parent.parent / "docs" / "images"
DIGIT_NAMES = {
    "multi_mnist": "MultiMNIST",
    "multi_fashion": "MultiFashion",
    "multi_fashion_mnist": "Multi-(Fashion+MNIST)",
}


def _runs(results: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("*.json"))]


def _mean_std(values: list[float], digits: int = 3) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- synthetic


def synthetic_table(runs: list[dict[str, Any]]) -> str:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        spec = run["spec"]
        if spec["suite"] == "synthetic":
            groups[(spec["problem"], spec["label"])].append(run)
    rows = []
    for (problem, label), group in sorted(groups.items()):
        method, protocol = label.split("@")
        k = len(group[0]["objectives"])
        rows.append(
            [
                f"`{problem}`",
                protocol,
                f"`{method}`",
                str(len(group)),
                _mean_std([r["hypervolume"] for r in group]),
                _mean_std([sum(r["in_own_sector"]) for r in group], 1) + f" / {k}",
                _mean_std([r["sectors_covered"] for r in group], 1),
                _mean_std([max(r["distance_to_front"]) for r in group]),
                _mean_std([r["igd"] for r in group]),
            ]
        )
    return _table(
        [
            "problem",
            "protocol",
            "method",
            "seeds",
            "HV",
            "in own sector",
            "sectors covered",
            "max distance to front",
            "IGD",
        ],
        rows,
    )


def psl_table(runs: list[dict[str, Any]]) -> str:
    """Pareto-set learning: 100 preferences it never trained on, against the analytic front."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        if run["spec"]["suite"] == "synthetic" and "unseen_distance_to_front" in run:
            groups[run["spec"]["problem"]].append(run)
    if not groups:
        return "_no runs yet_"
    rows = [
        [
            f"`{problem}`",
            str(len(group)),
            _mean_std([max(r["unseen_distance_to_front"]) for r in group], 4),
            _mean_std([statistics.mean(r["unseen_distance_to_front"]) for r in group], 4),
            _mean_std([max(r["unseen_angle_error_deg"]) for r in group], 2),
            _mean_std([statistics.median(r["unseen_angle_error_deg"]) for r in group], 2),
            _mean_std([r["wall_time"] for r in group], 0) + " s",
        ]
        for problem, group in sorted(groups.items())
    ]
    return _table(
        [
            "problem",
            "seeds",
            "max distance to front",
            "mean distance",
            "max angle to its ray (°)",
            "median angle (°)",
            "wall time",
        ],
        rows,
    )


def synthetic_figure(runs: list[dict[str, Any]], problem: str, protocol: str, path: Path) -> None:
    """Seed 0's solutions per method on the analytic front, with the preference rays."""
    from pmtl_core.problems import get_problem

    chosen = {
        r["spec"]["label"].split("@")[0]: r
        for r in runs
        if r["spec"]["suite"] == "synthetic"
        and r["spec"]["problem"] == problem
        and r["spec"]["label"].endswith("@" + protocol)
        and r["spec"]["seed"] == 0
    }
    if not chosen:
        return
    front = get_problem(problem).pareto_front(400).numpy()
    names = sorted(chosen)
    cols = 4
    fig, axes = plt.subplots(
        math.ceil(len(names) / cols), cols, figsize=(14, 3.8 * math.ceil(len(names) / cols))
    )
    for ax, name in zip(axes.flat, names, strict=False):
        run = chosen[name]
        top = max(front[:, 0].max(), front[:, 1].max()) * 1.05
        for u in run["preferences"]:
            norm = math.hypot(*u)
            ax.plot([0, top * u[0] / norm], [0, top * u[1] / norm], color="0.85", lw=0.8)
        ax.plot(front[:, 0], front[:, 1], color="0.3", lw=1.2, label="analytic front")
        pts = run["objectives"]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color="C3", s=28, zorder=3)
        own = sum(run["in_own_sector"])
        ax.set_title(
            f"{name}\nHV {run['hypervolume']:.3f}, {own}/{len(pts)} in own sector", fontsize=10
        )
        ax.set_xlim(0, front[:, 0].max() * 1.1)
        ax.set_ylim(0, front[:, 1].max() * 1.1)
        ax.set_aspect("equal")
        ax.set_xlabel("f1")
        ax.set_ylabel("f2")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(f"{problem}, {protocol} protocol, seed 0 (grey: preference rays)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------- data sets


def _digit_groups(runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        spec = run["spec"]
        if spec["suite"] == "digits" and run["history"]:
            groups[(spec["problem"], spec["label"])].append(run)
    return groups


def digits_table(runs: list[dict[str, Any]], problem: str) -> str:
    rows = []
    for (prob, label), group in sorted(_digit_groups(runs).items()):
        if prob != problem:
            continue
        done = [r for r in group if r.get("done")]
        shown = done or group
        last = [r["history"][-1] for r in shown]
        k = len(last[0]["test_losses"])
        acc = []
        for i in range(k):
            a1 = statistics.mean(row["test_accuracy"][i][0] for row in last)
            a2 = statistics.mean(row["test_accuracy"][i][1] for row in last)
            acc.append(f"{a1:.2f}/{a2:.2f}")
        epochs = sorted({row["epoch"] for row in last})
        rows.append(
            [
                f"`{label}`",
                f"{len(done)} done" + (f" (+{len(group) - len(done)} running)" if not done else ""),
                ",".join(str(e) for e in epochs),
                _mean_std([row["test_hypervolume"] for row in last]),
                _mean_std([row["train_hypervolume"] for row in last]),
                _mean_std([sum(row["test_in_own_sector"]) for row in last], 1) + f" / {k}",
                _mean_std([sum(row["train_in_own_sector"]) for row in last], 1) + f" / {k}",
                ", ".join(acc),
                _mean_std([row["wall_time"] for row in last], 0) + " s",
            ]
        )
    return _table(
        [
            "method",
            "seeds",
            "epochs",
            "test HV at (2, 2)",
            "train HV",
            "in own sector (test)",
            "in own sector (train)",
            "test accuracy per model (task 1/task 2, mean over seeds)",
            "wall time",
        ],
        rows,
    )


def hv_curves(runs: list[dict[str, Any]], problem: str, labels: list[str], path: Path) -> bool:
    """Mean test HV per epoch (band: min to max over seeds) for ``labels`` on ``problem``."""
    groups = _digit_groups(runs)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for i, label in enumerate(labels):
        group = groups.get((problem, label), [])
        if not group:
            continue
        epochs = min(len(r["history"]) for r in group)
        if epochs == 0:
            continue
        xs = list(range(1, epochs + 1))
        per_epoch = [[r["history"][e]["test_hypervolume"] for r in group] for e in range(epochs)]
        mean = [statistics.mean(v) for v in per_epoch]
        ax.plot(xs, mean, color=f"C{i}", label=f"{label} ({len(group)} seeds)", marker="o", ms=3)
        ax.fill_between(
            xs, [min(v) for v in per_epoch], [max(v) for v in per_epoch], color=f"C{i}", alpha=0.15
        )
        drawn = True
    _finish_hv_figure(fig, ax, drawn, "epoch", DIGIT_NAMES.get(problem, problem), path)
    return drawn


def _finish_hv_figure(fig, ax, drawn: bool, xlabel: str, title: str, path: Path) -> None:
    """Label, save (if anything was drawn) and close a test-HV figure."""
    if drawn:
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test hypervolume at (2, 2)")
        ax.set_title(title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=90)
    plt.close(fig)


def curve_table(runs: list[dict[str, Any]], problem: str, labels: list[str]) -> str:
    """Test HV per epoch (mean ± std over seeds) side by side."""
    groups = _digit_groups(runs)
    present = [lab for lab in labels if groups.get((problem, lab))]
    if not present:
        return "_no runs yet_"
    epochs = max(len(r["history"]) for lab in present for r in groups[(problem, lab)])
    rows = []
    for e in range(epochs):
        row = [str(e + 1)]
        for lab in present:
            vals = [
                r["history"][e]["test_hypervolume"]
                for r in groups[(problem, lab)]
                if len(r["history"]) > e
            ]
            row.append(_mean_std(vals) + f" ({len(vals)})")
        rows.append(row)
    return _table(["epoch", *(f"`{lab}` (seeds)" for lab in present)], rows)


def _at_time(history: list[dict[str, Any]], limit: float) -> dict[str, Any] | None:
    """The last epoch record whose wall time is within ``limit`` seconds."""
    within = [row for row in history if row["wall_time"] <= limit * 1.001]
    return within[-1] if within else None


def psl_wall_table(runs: list[dict[str, Any]], problem: str = "multi_mnist") -> str:
    """psl against Pareto MTL at Pareto MTL's wall time, seed by seed (test HV at (2, 2))."""
    groups = _digit_groups(runs)
    pmtl = {r["spec"]["seed"]: r for r in groups.get((problem, "pareto_mtl"), []) if r.get("done")}
    rows, pairs = [], []
    for run in sorted(groups.get((problem, "psl@wall"), []), key=lambda r: r["spec"]["seed"]):
        seed = run["spec"]["seed"]
        partner = pmtl.get(seed)
        if partner is None:
            continue
        limit = partner["history"][-1]["wall_time"]
        row = _at_time(run["history"], limit)
        if row is None:
            continue
        ours, theirs = row["test_hypervolume"], partner["history"][-1]["test_hypervolume"]
        if run.get("done"):
            pairs.append((theirs, ours))
        rows.append(
            [
                str(seed),
                f"{theirs:.3f} ({partner['history'][-1]['epoch']} epochs, {limit:.0f} s)",
                f"{ours:.3f} ({row['epoch']} epochs, {row['wall_time']:.0f} s)"
                + ("" if run.get("done") else ", running"),
                f"{sum(partner['history'][-1]['test_in_own_sector'])} / "
                f"{sum(row['test_in_own_sector'])}",
            ]
        )
    if not rows:
        return "_no finished pair yet_"
    if pairs:
        rows.append(
            [
                f"mean ± std ({len(pairs)} seeds)",
                _mean_std([a for a, _ in pairs]),
                _mean_std([b for _, b in pairs]),
                "",
            ]
        )
    return _table(
        [
            "seed",
            "`pareto_mtl`: test HV (epochs, wall time)",
            "`psl` at that wall time: test HV (epochs, wall time)",
            "in own sector (pareto_mtl / psl)",
        ],
        rows,
    )


def hv_time_curves(runs: list[dict[str, Any]], problem: str, labels: list[str], path: Path) -> bool:
    """Test HV against wall time, one line per run, for ``labels`` on ``problem``."""
    groups = _digit_groups(runs)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    drawn = False
    for i, label in enumerate(labels):
        for j, run in enumerate(
            sorted(groups.get((problem, label), []), key=lambda r: r["spec"]["seed"])
        ):
            xs = [row["wall_time"] / 60 for row in run["history"]]
            ys = [row["test_hypervolume"] for row in run["history"]]
            name = f"{label}" if j == 0 else None
            ax.plot(xs, ys, color=f"C{i}", marker="o", ms=2, alpha=0.8, label=name)
            drawn = True
    title = f"{DIGIT_NAMES.get(problem, problem)}: one line per seed"
    _finish_hv_figure(fig, ax, drawn, "wall time (min, one CPU thread)", title, path)
    return drawn


def progress_line(runs: list[dict[str, Any]]) -> str:
    """How many recorded runs are finished; says that the rest resume only when some are left."""
    done = sum(1 for r in runs if r.get("done"))
    line = f"{done} of {len(runs)} recorded runs finished"
    return line + ("." if done == len(runs) else " (the others resume in later sessions).")


# ---------------------------------------------------------------------------- writing


def _replace_block(text: str, name: str, body: str) -> str:
    pattern = re.compile(
        rf"(<!-- reproduce:{name} -->\n).*?(<!-- /reproduce:{name} -->)", flags=re.DOTALL
    )
    if not pattern.search(text):
        raise SystemExit(f"docs/results.md lacks the markers of block {name!r}")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def write_report(results: Path, docs: Path) -> None:
    """Regenerate every table block of ``docs`` and the figures from ``results``."""
    runs = _runs(results)
    text = docs.read_text()
    blocks = {
        "progress": progress_line(runs),
        "synthetic": synthetic_table(runs),
        "psl": psl_table(runs),
        "multi_mnist": digits_table(runs, "multi_mnist"),
        "psl_multi_mnist": psl_wall_table(runs),
        "multi_fashion": digits_table(runs, "multi_fashion"),
        "multi_fashion_mnist": digits_table(runs, "multi_fashion_mnist"),
        "mt2o": curve_table(runs, "multi_mnist", ["mt2o", "mt2o-no-transfer"]),
        "init": curve_table(runs, "multi_mnist", ["pareto_mtl", "pareto_mtl-no-init"]),
    }
    for name, body in blocks.items():
        text = _replace_block(text, name, body)
    docs.write_text(text)
    for problem in ("concave", "concave_unbalanced"):
        for protocol in ("paper", "paper-lr1", "long"):
            synthetic_figure(runs, problem, protocol, IMAGES / f"results_{problem}_{protocol}.png")
    for problem in DIGIT_NAMES:
        labels = sorted({lab for (p, lab) in _digit_groups(runs) if p == problem})
        hv_curves(runs, problem, labels, IMAGES / f"results_{problem}_hv.png")
    hv_curves(runs, "multi_mnist", ["mt2o", "mt2o-no-transfer"], IMAGES / "results_mt2o.png")
    hv_time_curves(
        runs, "multi_mnist", ["pareto_mtl", "psl@wall"], IMAGES / "results_psl_multi_mnist.png"
    )
    hv_curves(
        runs, "multi_mnist", ["pareto_mtl", "pareto_mtl-no-init"], IMAGES / "results_init.png"
    )
    print(f"wrote {docs} and figures in {IMAGES}")
