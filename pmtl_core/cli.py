"""The ``pmtl`` command line.

``pmtl_core`` owns the application object and the library commands (``solve``, ``train``).
Other packages add their commands through the ``pmtl.commands`` entry-point group: each entry
point names a function ``register(app: typer.Typer) -> None``. That keeps ``pmtl_core`` free of
any import of the web service or the UI while ``pmtl serve``/``worker``/``ui``/``up`` all live
under one command.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(
    name="pmtl",
    help="Pareto MTL Lab: multi-task trade-offs, from a laptop to a GPU lab.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

PrefsOption = Annotated[
    str,
    typer.Option(
        "--prefs",
        help="number of evenly spread preference vectors, or a JSON list of vectors",
    ),
]


def parse_preferences(text: str) -> int | list[list[float]]:
    """``"10"`` → 10; ``"[[1,0],[0,1]]"`` → the vectors (validated later against the problem)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"--prefs must be a count or a JSON list of vectors: {exc}"
        ) from exc
    if not isinstance(value, list) or not all(isinstance(v, list) for v in value):
        raise typer.BadParameter(
            "--prefs must be a count or a JSON list of vectors like [[1,0],[0,1]]"
        )
    return value


def parse_params(text: str | None) -> dict:
    """Method hyperparameters given as a JSON object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--params must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter("--params must be a JSON object like '{\"eps\": 0.01}'")
    return value


def fail(message: str) -> typer.Exit:
    """Print a readable error and return the exit to raise (status 1)."""
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


@app.command()
def solve(
    problem: Annotated[str, typer.Option(help="synthetic problem name, e.g. concave")] = "concave",
    method: Annotated[str, typer.Option(help="method name from the registry")] = "pareto_mtl",
    prefs: PrefsOption = "10",
    steps: Annotated[int, typer.Option(min=1, help="gradient steps")] = 1000,
    lr: Annotated[float, typer.Option(min=0.0, help="step size")] = 0.1,
    seed: Annotated[int, typer.Option(help="random seed of the starting points")] = 0,
    params: Annotated[str | None, typer.Option(help="method hyperparameters as JSON")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto")] = "cpu",
    out: Annotated[Path, typer.Option(help="output directory for front.json and front.png")] = Path(
        "out"
    ),
) -> None:
    """Solve a synthetic multi-objective problem: one solution per preference vector."""
    from pmtl_core.devices import resolve_device
    from pmtl_core.methods import get_method
    from pmtl_core.plots import plot_front
    from pmtl_core.problems import FunctionProblem, get_problem
    from pmtl_core.solve import DivergenceError, SolveProgress
    from pmtl_core.solve import solve as run_solve

    try:
        prob = get_problem(problem)
        cls = get_method(method)
        method_params = cls.Params.model_validate(parse_params(params))
        dev = resolve_device(device)
    except (ValueError, TypeError) as exc:
        raise fail(str(exc)) from exc
    if not isinstance(prob, FunctionProblem):
        raise fail(f"{problem!r} is a data-set problem; use `pmtl train` for it")
    with Progress(
        TextColumn(f"[bold]{method}[/] on {problem}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("solve", total=steps)

        def report(p: SolveProgress) -> None:
            progress.update(task, completed=p.step)

        try:
            front = run_solve(
                prob,
                cls,
                parse_preferences(prefs),
                steps=steps,
                lr=lr,
                seed=seed,
                params=method_params,
                device=dev,
                callback=report,
            )
        except DivergenceError as exc:
            raise fail(str(exc)) from exc
        except ValueError as exc:
            raise fail(str(exc)) from exc
    out.mkdir(parents=True, exist_ok=True)
    path = front.save(out)
    png = plot_front(front, out / "front.png", problem=prob)
    console.print(f"wrote [bold]{path}[/] and [bold]{png}[/]")


@app.command()
def train(
    problem: Annotated[
        str, typer.Option(help="problem name (see `pmtl problems`) or package.module:factory")
    ] = "multi_mnist",
    method: Annotated[str, typer.Option(help="method name from the registry")] = "pareto_mtl",
    prefs: PrefsOption = "5",
    epochs: Annotated[
        int | None, typer.Option(min=1, help="epochs (default: the problem's)")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="batch size")] = None,
    lr: Annotated[float | None, typer.Option(min=0.0, help="learning rate")] = None,
    seed: Annotated[int, typer.Option(help="seed of initialisation and data order")] = 0,
    params: Annotated[str | None, typer.Option(help="method hyperparameters as JSON")] = None,
    config: Annotated[
        str | None, typer.Option(help="further training settings as JSON (see EngineConfig)")
    ] = None,
    problem_options: Annotated[
        str | None, typer.Option(help="problem options as JSON, e.g. '{\"train_size\": 2000}'")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:N or auto")] = "auto",
    out: Annotated[Path, typer.Option(help="run directory (front.json, PNG, checkpoints)")] = Path(
        "runs/latest"
    ),
    resume: Annotated[
        Path | None, typer.Option(help="continue the run in this directory from its checkpoint")
    ] = None,
) -> None:
    """Train one model per preference vector on a multi-task problem, locally, no server."""
    from pmtl_core.train_cli import TrainRequest, run_local_training

    try:
        if resume is not None:
            request = TrainRequest.load(resume)
        else:
            overrides = parse_params(config)
            for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
                if value is not None:
                    overrides[key] = value
            overrides |= {"seed": seed, "device": device}
            request = TrainRequest(
                problem=problem,
                problem_options=parse_params(problem_options),
                method=method,
                preferences=parse_preferences(prefs),
                params=parse_params(params),
                config=overrides,
                out=str(out),
            )
        run_local_training(request, console, resume=resume is not None)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc


@app.command()
def problems() -> None:
    """List the registered problems."""
    from rich.table import Table

    from pmtl_core.problems import describe_problems

    table = Table("name", "kind", "tasks", "summary")
    for p in describe_problems():
        table.add_row(p["name"], p["kind"], ", ".join(p["task_names"]), p["summary"])
    Console().print(table)


@app.command()
def methods() -> None:
    """List the registered methods and their hyperparameters."""
    from rich.table import Table

    from pmtl_core.methods import describe_methods

    table = Table("name", "hyperparameters", "summary")
    for m in describe_methods():
        names = ", ".join(m["hyperparameters"].get("properties", {})) or "-"
        table.add_row(m["name"], names, m["summary"])
    Console().print(table)


def _load_plugins() -> None:
    for ep in entry_points(group="pmtl.commands"):
        try:
            register = ep.load()
        except ImportError as exc:  # a broken optional part must not take the CLI down
            console.print(f"[yellow]warning:[/] commands from {ep.name!r} unavailable: {exc}")
            continue
        register(app)


def main() -> None:
    """Entry point of the ``pmtl`` console script."""
    _load_plugins()
    app(prog_name="pmtl")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
