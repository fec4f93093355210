"""``pmtl serve|worker|db|user``: the service's commands, registered on the ``pmtl`` CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = ["register"]

console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=1)


def _settings():
    from pydantic import ValidationError

    from backend.app.core.config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        raise _fail(f"invalid PMTL_* settings: {exc}") from exc


def serve(
    host: Annotated[str, typer.Option(help="interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="API worker processes; default: one per CPU available, at most 4"),
    ] = None,
) -> None:
    """Run the REST API (uvicorn, app factory ``create_app(Settings())``)."""
    import uvicorn

    from backend.app.core.config import default_api_workers
    from backend.app.core.logging import configure_logging

    settings = _settings()
    workers = workers or default_api_workers()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        "backend.cli:app_factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        # A worker process imports torch (the method registry) before it answers the
        # supervisor's first health check: allow for that on a busy machine.
        timeout_worker_healthcheck=120,
    )


def _prepare_worker(settings) -> None:
    """Hand the cache settings to pmtl_core in the training processes (through their
    environment) and sweep stale temporary files out of the artifact store."""
    import os

    from backend.app.storage import ArtifactStore

    os.environ.update(settings.library_environment())
    try:
        ArtifactStore(settings.artifact_root).clean_stale(settings.stale_file_age_s)
    except OSError as exc:
        console.print(f"[yellow]warning:[/] artifact store sweep failed: {exc}")


def app_factory():
    """The ASGI app for uvicorn's factory mode."""
    from backend.app.main import create_app

    return create_app(_settings())


def worker(
    devices: Annotated[
        str, typer.Option(help="cpu, auto, or a comma-separated list such as cuda:0,cuda:1")
    ] = "auto",
    once: Annotated[bool, typer.Option(help="run one job, then exit")] = False,
    executor: Annotated[
        str, typer.Option(help="local (a process per device) or ray (a Ray task per job)")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="HOST:PORT of the Ray cluster's head (--executor ray)")
    ] = None,
    gpus_per_job: Annotated[
        float | None,
        typer.Option(min=0, help="GPUs per Ray task (default: 1 on a GPU cluster, else 0)"),
    ] = None,
    cpus_per_job: Annotated[
        float, typer.Option(min=0, help="CPUs per Ray task on a cluster without GPUs")
    ] = 1.0,
) -> None:
    """Run a worker: one training process per device, or a dispatcher for a Ray cluster."""
    from backend.app.core.logging import configure_logging
    from backend.app.db.session import DatabaseError
    from backend.app.worker import EXECUTORS, run_worker

    if executor not in EXECUTORS:
        raise _fail(f"--executor must be one of {', '.join(EXECUTORS)}, not {executor!r}")
    if executor == "ray" and not ray_address:
        raise _fail("--executor ray needs --ray-address HOST:PORT")
    if executor == "local" and (ray_address or gpus_per_job is not None):
        raise _fail("--ray-address and --gpus-per-job need --executor ray")
    settings = _settings()
    configure_logging(settings.log_level, settings.log_json)
    _prepare_worker(settings)
    device_list = [d.strip() for d in devices.split(",") if d.strip()]
    if not device_list:
        raise _fail("--devices needs at least one device")
    try:
        run_worker(
            settings,
            device_list,
            once=once,
            executor=executor,
            ray_address=ray_address,
            gpus_per_job=gpus_per_job,
            cpus_per_job=cpus_per_job,
        )
    except (DatabaseError, ValueError) as exc:
        raise _fail(str(exc)) from exc


db_app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema."""
    from backend.app.db.migrate import current, head_revision, upgrade
    from backend.app.db.session import DatabaseError

    settings = _settings()
    try:
        upgrade(settings.database_url)
        console.print(
            f"database at revision {current(settings.database_url)} (head {head_revision()})"
        )
    except (DatabaseError, Exception) as exc:  # alembic raises many types; report any of them
        raise _fail(f"upgrade failed: {exc}") from exc


@db_app.command("current")
def db_current() -> None:
    """Print the database's schema revision (``none`` before the first upgrade)."""
    from backend.app.db.migrate import current, head_revision
    from backend.app.db.session import DatabaseError

    settings = _settings()
    try:
        revision = current(settings.database_url)
    except DatabaseError as exc:
        raise _fail(str(exc)) from exc
    head = head_revision()
    note = "up to date" if revision == head else f"head is {head}; run `pmtl db upgrade`"
    typer.echo(f"{revision or 'none'} ({note})")


user_app = typer.Typer(help="API users and their tokens.", no_args_is_help=True)


@contextmanager
def _user_session() -> Iterator[Session]:
    """A session on the migrated database, committed on success; database errors and
    ``ValueError`` (bad names) end the command with a readable message."""
    from backend.app.db.session import (
        DatabaseError,
        check_schema,
        create_db_engine,
        make_session_factory,
        session_scope,
    )

    try:
        engine = create_db_engine(_settings().database_url)
        try:
            check_schema(engine)
            with session_scope(make_session_factory(engine)) as session:
                yield session
        finally:
            engine.dispose()
    except (DatabaseError, ValueError) as exc:
        raise _fail(str(exc)) from exc


@user_app.command("create")
def user_create(
    name: Annotated[str, typer.Argument(help="user name (unique)")],
    admin: Annotated[bool, typer.Option("--admin", help="may see every user's runs")] = False,
) -> None:
    """Create a user and print its API token on stdout (shown only this once)."""
    from backend.app.core.security import create_user

    with _user_session() as session:
        _, token = create_user(session, name, admin)
    typer.echo(token)
    console.print(f"created {'admin ' if admin else ''}user {name!r}; keep the token above safe")


@user_app.command("list")
def user_list() -> None:
    """List users (id, name, admin flag, number of active tokens)."""
    from sqlalchemy import func, select

    from backend.app.db.models import ApiToken, User

    with _user_session() as session:
        tokens = (
            select(func.count(ApiToken.id))
            .where(ApiToken.user_id == User.id, ApiToken.revoked_at.is_(None))
            .scalar_subquery()
        )
        rows = session.execute(
            select(User.id, User.name, User.is_admin, tokens).order_by(User.id)
        ).all()
    for user_id, name, is_admin, n_tokens in rows:
        typer.echo(f"{user_id}\t{name}\t{'admin' if is_admin else 'user'}\t{n_tokens} token(s)")


def _find_user(session: Session, name: str):
    from sqlalchemy import select

    from backend.app.db.models import User

    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        raise ValueError(f"no user named {name!r} (see `pmtl user list`)")
    return user


@user_app.command("token")
def user_token(name: Annotated[str, typer.Argument(help="an existing user")]) -> None:
    """Issue another token for a user and print it on stdout (shown only this once)."""
    from backend.app.core.security import create_token

    with _user_session() as session:
        token = create_token(session, _find_user(session, name))
    typer.echo(token)
    console.print(f"new token for {name!r}; keep it safe")


@user_app.command("revoke")
def user_revoke(name: Annotated[str, typer.Argument(help="an existing user")]) -> None:
    """Revoke every active token of a user (their runs stay; issue a new one with `token`)."""
    from sqlalchemy import update

    from backend.app.db.models import ApiToken, utcnow

    with _user_session() as session:
        user = _find_user(session, name)
        revoked = session.execute(
            update(ApiToken)
            .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        ).rowcount
    console.print(f"revoked {revoked} token(s) of {name!r}")


def register(app: typer.Typer) -> None:
    """Add ``serve``, ``worker``, ``db`` and ``user`` to the ``pmtl`` command line."""
    app.command()(serve)
    app.command()(worker)
    app.add_typer(db_app, name="db")
    app.add_typer(user_app, name="user")
