"""The ``pmtl`` command line.

``pmtl_core`` owns the application object and the library commands (``solve``, ``train``).
Other packages add their commands through the ``pmtl.commands`` entry-point group: each entry
point names a function ``register(app: typer.Typer) -> None``. That keeps ``pmtl_core`` free of
any import of the web service or the UI while ``pmtl serve``/``worker``/``ui``/``up`` all live
under one command.
"""

from __future__ import annotations

import contextlib
import json
import re
import shlex
import sys
from datetime import datetime
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
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
    # escape: messages quote user input such as "[[1, -1]]"; soft_wrap: commands in a message
    # stay on one line, so they can be copied.
    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    return typer.Exit(code=1)


OverwriteOption = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="replace the results already in --out (without it, a non-empty --out is an error)",
    ),
]


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse (exit 1, nothing touched) an ``--out`` that already holds something, unless
    ``overwrite``."""
    if out.exists() and not out.is_dir():
        raise fail(f"--out {out} is a file, not a directory")
    if not overwrite and out.is_dir() and any(out.iterdir()):
        raise fail(
            f"{out} is not empty (an earlier result?); nothing was changed. Pass --overwrite to "
            "replace its results, or choose another --out (without --out each run gets a new "
            "folder under runs/)"
        )


def new_run_dir(problem: str, method: str, root: Path = Path("runs")) -> Path:
    """Create and return a new folder ``root/<problem>-<method>-<timestamp>`` (``-2``, ``-3``, …
    when two runs start within one second); never an existing one."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{problem}-{method}")
    base = root / f"{safe}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 2
    root.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            candidate.mkdir()
        except FileExistsError:
            candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
            continue
        return candidate


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
    out: Annotated[
        Path | None,
        typer.Option(
            help="output directory for front.json and front.png "
            "(default: a new runs/<problem>-<method>-<timestamp>)"
        ),
    ] = None,
    overwrite: OverwriteOption = False,
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
    if out is not None:
        check_out(out, overwrite)
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
    if out is None:
        out = new_run_dir(problem, method)
    out.mkdir(parents=True, exist_ok=True)
    path = front.save(out)
    png = plot_front(front, out / "front.png", problem=prob)
    console.print(f"wrote {path} and {png}", markup=False, soft_wrap=True)


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
    download: Annotated[
        bool,
        typer.Option(
            "--download",
            help="let torchvision fetch missing raw data files (MNIST, Fashion-MNIST) into "
            "PMTL_DATA_DIR; the same as the problem option download=true",
        ),
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            help="run directory: front.json, PNG, checkpoints "
            "(default: a new runs/<problem>-<method>-<timestamp>)"
        ),
    ] = None,
    overwrite: OverwriteOption = False,
    resume: Annotated[
        Path | None, typer.Option(help="continue the run in this directory from its checkpoint")
    ] = None,
) -> None:
    """Train one model per preference vector on a multi-task problem, locally, no server."""
    from pmtl_core import checkpoints
    from pmtl_core.problems.multi_digit import MissingDataError
    from pmtl_core.train_cli import TrainRequest, run_local_training

    created = False
    try:
        if resume is not None:
            if overwrite:
                raise fail("--resume continues a run and --overwrite starts one over: pick one")
            request = TrainRequest.load(resume)
            if checkpoints.latest(resume / "checkpoints") is None:
                raise fail(
                    f"nothing to resume in {resume}: the run has no checkpoint yet (it stopped "
                    "before the end of its first epoch, when the first one is written). Nothing "
                    f"was changed. To start it over from the beginning: {restart_command(request)}"
                )
        else:
            options = parse_params(problem_options)
            if download:
                options["download"] = True
            preferences, method_params = parse_preferences(prefs), parse_params(params)
            overrides = parse_params(config)
            for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
                if value is not None:
                    overrides[key] = value
            overrides |= {"seed": seed, "device": device}
            if out is not None:
                check_out(out, overwrite)
            else:
                out, created = new_run_dir(problem, method), True
            request = TrainRequest(
                problem=problem,
                problem_options=options,
                method=method,
                preferences=preferences,
                params=method_params,
                config=overrides,
                out=str(out),
            )
        run_local_training(request, console, resume=resume is not None)
    except (ValueError, TypeError, FileNotFoundError) as exc:
        if created and not checkpoints.list_checkpoints(out / "checkpoints"):
            # bad input, found before any training: leave no empty run folder behind
            _remove_new_run_dir(out)
        message = str(exc)
        if isinstance(exc, MissingDataError):
            message += " With `pmtl train`: add --download."
        raise fail(message) from exc


def restart_command(request) -> str:
    """The ``pmtl train`` command that starts ``request``'s run over in its own directory."""
    config = dict(request.config)
    args = ["pmtl", "train", "--problem", request.problem, "--method", request.method]
    prefs = request.preferences
    args += ["--prefs", str(prefs) if isinstance(prefs, int) else json.dumps(prefs)]
    for flag, key in (("--seed", "seed"), ("--device", "device")):
        if key in config:
            args += [flag, str(config.pop(key))]
    for flag, value in (
        ("--params", request.params),
        ("--problem-options", request.problem_options),
        ("--config", config),
    ):
        if value:
            args += [flag, json.dumps(value)]
    return shlex.join([*args, "--out", request.out, "--overwrite"])


def _remove_new_run_dir(directory: Path) -> None:
    """Remove the files ``pmtl train`` wrote into a run folder it created itself."""
    for name in ("run.json", "metrics.jsonl"):
        (directory / name).unlink(missing_ok=True)
    for sub in (directory / "checkpoints", directory):
        with contextlib.suppress(OSError):  # not empty: keep it
            sub.rmdir()


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
