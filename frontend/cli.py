"""``pmtl ui``: run the Streamlit UI headless, registered on the ``pmtl`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register", "streamlit_command"]

APP = Path(__file__).resolve().parent / "streamlit_app.py"


def streamlit_command(host: str, port: int) -> list[str]:
    """The ``streamlit run`` command line: headless, no telemetry, no file watcher."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.headless",
        "true",
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--browser.serverAddress",
        host,
        "--browser.serverPort",
        str(port),
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        "light",
    ]


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port of the UI")] = 8501,
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", help="base URL of the REST API (default: PMTL_API_URL)"),
    ] = None,
) -> None:
    """Run the browser UI (Streamlit) against the REST API."""
    env = dict(os.environ)
    if api_url:
        env["PMTL_API_URL"] = api_url
    cmd = streamlit_command(host, port)
    if os.name == "posix":
        # Become the Streamlit server, so signals (Ctrl-C, SIGTERM) reach it directly.
        os.execve(cmd[0], cmd, env)
    try:
        code = subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code=code)


def register(app: typer.Typer) -> None:
    """Add ``ui`` to the ``pmtl`` command line."""
    app.command()(ui)
