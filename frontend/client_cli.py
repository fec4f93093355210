"""``pmtl login|submit|status|watch|download``: the command-line client of a remote API.

The same HTTP client as the UI (:mod:`frontend.lib.api_client`). Where the API is and which
token to use come, in this order, from the ``--api-url``/``--token`` flags, the environment
(``PMTL_API_URL``, ``PMTL_TOKEN``), or the file written by ``pmtl login``
(``$XDG_CONFIG_HOME/pmtl/client.json``, default ``~/.config/pmtl/client.json``, mode 0600).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from frontend.lib.api_client import ApiClient, ApiError, ApiUnavailable
from frontend.lib.settings import UISettings

__all__ = ["client_config_path", "register"]

console = Console(stderr=True)
# Tables go to stdout; piped into a file or grep, rich would cut them to 80 columns and
# truncate names, so a pipe gets a wide console unless COLUMNS says otherwise.
out = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200)
_FINAL = {"finished", "failed", "cancelled"}

ApiUrl = Annotated[str | None, typer.Option("--api-url", help="API base URL")]
Token = Annotated[str | None, typer.Option("--token", help="API token")]


def client_config_path() -> Path:
    """Where ``pmtl login`` keeps the API URL and token."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pmtl" / "client.json"


def _connect(api_url: str | None, token: str | None) -> ApiClient:
    """A client from flags, then the environment, then the login file."""
    settings = UISettings()
    saved: dict[str, Any] = {}
    path = client_config_path()
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise _fail(f"{path} is not valid JSON ({exc}); run `pmtl login` again") from exc
    from_env = "api_url" in settings.model_fields_set
    # An empty variable (PMTL_API_URL="") counts as unset, like an empty PMTL_TOKEN.
    env_url = settings.api_url if from_env else None
    url = api_url or env_url or saved.get("api_url") or settings.api_url
    tok = token or settings.token or saved.get("token")
    if not tok:
        raise _fail("no API token: pass --token, set PMTL_TOKEN or run `pmtl login`")
    return ApiClient(url, tok, timeout=settings.request_timeout)


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


def _json_option(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"{what} must be a JSON object: {exc}") from exc
    if not isinstance(value, dict):
        raise _fail(f"{what} must be a JSON object, e.g. '{{\"epochs\": 10}}'")
    return value


def _preferences(text: str) -> dict[str, Any]:
    text = text.strip()
    if text.isdigit():
        return {"count": int(text)}
    try:
        vectors = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(f"--prefs must be a count or a JSON list of vectors: {exc}") from exc
    return {"vectors": vectors}


def _call(fn, *args: Any, **kwargs: Any) -> Any:
    """Run one API call, turning its errors into readable messages and exit status 1."""
    try:
        return fn(*args, **kwargs)
    except ApiError as exc:
        raise _fail(str(exc)) from exc
    except ApiUnavailable as exc:
        raise _fail(str(exc)) from exc


def login(api_url: ApiUrl = None, token: Token = None) -> None:
    """Check a URL and token against the API and remember them for the other commands."""
    settings = UISettings()
    url = api_url or settings.api_url
    tok = token or settings.token or typer.prompt("API token", hide_input=True)
    user = _call(ApiClient(url, tok, timeout=settings.request_timeout).me)
    path = client_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"api_url": url, "token": tok}, fh)
    console.print(f"signed in to {url} as [bold]{user.name}[/]; saved to {path}")


def submit(
    problem: Annotated[str, typer.Option(help="problem name")] = "concave",
    method: Annotated[str, typer.Option(help="method name")] = "pareto_mtl",
    prefs: Annotated[str, typer.Option(help="a count or a JSON list of vectors")] = "5",
    name: Annotated[str | None, typer.Option(help="run name")] = None,
    params: Annotated[str | None, typer.Option(help="method hyperparameters (JSON)")] = None,
    training: Annotated[str | None, typer.Option(help="training settings (JSON)")] = None,
    problem_options: Annotated[str | None, typer.Option(help="problem options (JSON)")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    watch_run: Annotated[bool, typer.Option("--watch", help="then watch it")] = False,
    api_url: ApiUrl = None,
    token: Token = None,
) -> None:
    """Submit a run; prints its id on stdout."""
    client = _connect(api_url, token)
    body = {
        "name": name or f"{method} on {problem}",
        "problem": problem,
        "problem_options": _json_option(problem_options, "--problem-options"),
        "method": method,
        "preferences": _preferences(prefs),
        "hyperparameters": _json_option(params, "--params"),
        "training": _json_option(training, "--training"),
        "seed": seed,
    }
    run = _call(client.create_run, body)
    typer.echo(run.id)
    console.print(f"queued run {run.id}: {run.name} ({run.n_preferences} preference vectors)")
    if watch_run:
        _watch(client, run.id, poll=UISettings().poll_seconds)


def status(
    run_id: Annotated[int | None, typer.Argument(help="a run id; omit to list runs")] = None,
    api_url: ApiUrl = None,
    token: Token = None,
) -> None:
    """List runs, or show one run's preference vectors, jobs and latest losses."""
    client = _connect(api_url, token)
    if run_id is None:
        table = Table("id", "name", "problem", "method", "prefs", "status", "progress", "HV")
        for run in _call(client.all_runs, 200):
            p = run.progress
            hv = "-" if run.hypervolume is None else f"{run.hypervolume:.4f}"
            table.add_row(
                str(run.id),
                run.name,
                run.problem,
                run.method,
                str(run.n_preferences),
                run.status,
                f"{p.jobs_finished}/{p.jobs_total} jobs, epoch {p.epoch}/{p.epochs}",
                hv,
            )
        out.print(table)
        return
    run = _call(client.get_run, run_id)
    front = {p.preference_id: p for p in _call(client.front, run_id, "test").points}
    if not front:
        front = {p.preference_id: p for p in _call(client.front, run_id, "train").points}
    out.print(f"[bold]run {run.id}[/] {run.name}: {run.method} on {run.problem}, {run.status}")
    table = Table("pref", "vector", "status", "epoch", *run.task_names)
    for pref in run.preferences:
        point = front.get(pref.id)
        losses = [f"{v:.4f}" for v in point.losses] if point else ["-"] * run.n_tasks
        table.add_row(
            str(pref.id),
            ", ".join(f"{v:.3f}" for v in pref.vector),
            pref.status,
            str(pref.epoch),
            *losses,
        )
    out.print(table)
    for job in run.jobs:
        where = f" on {job.device} ({job.worker})" if job.device else ""
        error = f" — {job.error}" if job.error else ""
        out.print(
            f"job {job.id}: {job.state}{where}, epoch {job.epoch}/{job.epochs}, "
            f"attempt {job.attempts}/{job.max_attempts}{error}"
        )


def watch(
    run_id: Annotated[int, typer.Argument(help="the run to follow")],
    poll: Annotated[float, typer.Option(min=0.2, help="seconds between polls")] = 2.0,
    api_url: ApiUrl = None,
    token: Token = None,
) -> None:
    """Follow a run live until it finishes: job progress, latest losses, hypervolume."""
    _watch(_connect(api_url, token), run_id, poll)


def _poll(client: ApiClient, run_id: int, poll: float) -> Iterator[tuple[Any, dict]]:
    """The run and its latest point per (preference, split), once per poll, until it is over."""
    after, latest = 0, {}
    while True:
        run = _call(client.get_run, run_id)
        while True:  # incremental: only points newer than the last one seen
            page = _call(client.metrics, run_id, after=after)
            for point in page.points:
                latest[(point.preference_id, point.split)] = point
            after = page.last_seq
            if not page.has_more:
                break
        yield run, latest
        if run.status in _FINAL:
            return
        time.sleep(poll)


def _watch(client: ApiClient, run_id: int, poll: float) -> None:
    """A live view when stdout and stderr are terminals; otherwise (piped, redirected, in CI)
    one plain progress line on stdout per change."""
    if sys.stdout.isatty() and console.is_terminal:
        run = _watch_live(client, run_id, poll)
    else:
        run = _watch_lines(client, run_id, poll)
    hv = "-" if run.hypervolume is None else f"{run.hypervolume:.4f}"
    console.print(f"run {run_id} {run.status}; hypervolume {hv}")
    if run.status != "finished":
        raise typer.Exit(code=1)


def _watch_live(client: ApiClient, run_id: int, poll: float) -> Any:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} epochs"),
    )
    bars: dict[int, int] = {}
    run = None
    with Live(console=console, refresh_per_second=4) as live:
        for run, latest in _poll(client, run_id, poll):
            for job in run.jobs:
                if job.id not in bars:
                    bars[job.id] = progress.add_task(f"job {job.id}", total=max(job.epochs, 1))
                progress.update(
                    bars[job.id],
                    completed=job.epoch,
                    total=max(job.epochs, 1),
                    description=f"job {job.id} {job.state}",
                )
            live.update(Group(progress, _losses_table(run, latest)))
    return run


def _watch_lines(client: ApiClient, run_id: int, poll: float) -> Any:
    last, run = None, None
    for run, latest in _poll(client, run_id, poll):
        line = _progress_line(run, latest)
        if line != last:
            typer.echo(line)
            last = line
    return run


def _progress_line(run, latest: dict) -> str:
    """``run 3 running: epoch 2/10, jobs 0/1 finished, 1 running; test losses pref 7 [0.41,
    0.52] …; hypervolume 0.6123`` — plain text for logs and pipes."""
    p = run.progress
    parts = [f"epoch {p.epoch}/{p.epochs}", f"jobs {p.jobs_finished}/{p.jobs_total} finished"]
    if p.jobs_running:
        parts.append(f"{p.jobs_running} running")
    if p.jobs_failed:
        parts.append(f"{p.jobs_failed} failed")
    line = f"run {run.id} {run.status}: " + ", ".join(parts)
    split = "test" if any(k[1] == "test" for k in latest) else "train"
    points = [(pid, pt) for (pid, sp), pt in sorted(latest.items()) if sp == split]
    if points:
        more = f"; … {len(points) - 8} more" if len(points) > 8 else ""
        shown = "; ".join(
            f"pref {pid} ["
            + ", ".join("nan" if v is None or math.isnan(v) else f"{v:.4f}" for v in pt.losses)
            + "]"
            for pid, pt in points[:8]
        )
        line += f"; {split} losses {shown}{more}"
    if run.hypervolume is not None:
        line += f"; hypervolume {run.hypervolume:.4f}"
    return line


def _losses_table(run, latest: dict) -> Table:
    split = "test" if any(k[1] == "test" for k in latest) else "train"
    table = Table(
        "pref",
        "vector",
        "epoch",
        *[f"{t} ({split})" for t in run.task_names],
        title=f"{run.name}: {run.status}",
    )
    for pref in run.preferences:
        point = latest.get((pref.id, split))
        cells = (
            ["-"] * run.n_tasks
            if point is None
            else ["nan" if v is None or math.isnan(v) else f"{v:.4f}" for v in point.losses]
        )
        table.add_row(
            str(pref.id),
            ", ".join(f"{v:.3f}" for v in pref.vector),
            str(point.epoch if point else 0),
            *cells,
        )
    return table


def download(
    run_id: Annotated[int, typer.Argument(help="the run")],
    pref_id: Annotated[int, typer.Argument(help="the preference vector's id (see `status`)")],
    out_dir: Annotated[Path, typer.Option("--out", help="directory for the two files")] = Path("."),
    api_url: ApiUrl = None,
    token: Token = None,
) -> None:
    """Download a chosen model: ``model.safetensors`` and ``config.json`` of one checkpoint."""
    client = _connect(api_url, token)
    weights = _call(client.model_file, run_id, pref_id)
    # Training may go on between the two requests: ask for the config of the weights' epoch.
    config = _call(client.model_config, run_id, pref_id, epoch=weights.epoch)
    if weights.epoch is not None and config.get("epoch", weights.epoch) != weights.epoch:
        raise _fail(
            f"the API sent the config of epoch {config.get('epoch')} for weights of epoch "
            f"{weights.epoch}; try again"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path, config_path = out_dir / "model.safetensors", out_dir / "config.json"
    weights_path.write_bytes(weights.content)
    config_path.write_text(json.dumps(config, indent=1))
    console.print(
        f"wrote {weights_path} and {config_path} (epoch {config.get('epoch')}); "
        "load them in Python (from this directory) with\n"
        f"  {load_model_hint(config_path, weights_path, predictor=_is_table(config))}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


def _is_table(config: dict) -> bool:
    """Whether the model carries a table's preprocessing (it predicts from a DataFrame)."""
    model = config.get("model")
    return isinstance(model, dict) and bool(model.get("preprocessing"))


def load_model_hint(config_path: Path, weights_path: Path, *, predictor: bool = False) -> str:
    """One line of Python that loads the downloaded model, paths as written: a predictor
    (``predict(DataFrame)``) for a table's model, the network otherwise."""
    if predictor:
        return (
            "from pmtl_core import load_predictor; "
            f"predictor = load_predictor({str(config_path)!r}, {str(weights_path)!r})"
        )
    return (
        "from pmtl_core import load_model; "
        f"model = load_model({str(config_path)!r}, {str(weights_path)!r})"
    )


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``pmtl`` command line."""
    for command in (login, submit, status, watch, download):
        app.command()(command)
