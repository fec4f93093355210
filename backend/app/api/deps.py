"""Dependencies of the routes as ``Annotated`` aliases: settings, session, store, current user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from backend.app.core.config import Settings
from backend.app.core.security import authenticate
from backend.app.db.models import User
from backend.app.db.session import check_schema
from backend.app.storage import ArtifactStore

__all__ = [
    "CurrentUser",
    "SessionDep",
    "SettingsDep",
    "StoreDep",
    "get_current_user",
    "get_session",
    "get_settings",
    "get_store",
]

_bearer = HTTPBearer(auto_error=False, description="an API token from `pmtl user create`")


def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


def get_store(request: Request) -> ArtifactStore:
    """The app's artifact store."""
    return request.app.state.store


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session for one request; routes that write commit explicitly, the rest is rolled back.

    The dependency is async on purpose: its teardown (closing the session, which returns the
    connection to the pool) then runs on the event loop. A sync teardown would need a worker
    thread, and under load every thread can be busy waiting for a connection that only such a
    teardown would free — a deadlock until the pool timeout.
    """
    state = request.app.state
    if not state.schema_ok:
        # SchemaError → 503 telling the user to run `pmtl db upgrade`.
        await run_in_threadpool(check_schema, state.engine)
        state.schema_ok = True
    session = state.session_factory()
    try:
        yield session
    finally:
        session.close()


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]


def get_current_user(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    """The user owning the bearer token; 401 with ``WWW-Authenticate: Bearer`` otherwise."""
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token (send `Authorization: Bearer <token>`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    user = authenticate(session, credentials.credentials)
    # End the transaction (storing a moved last_used_at) so the connection goes back to the
    # pool before the route waits for a worker thread: holding it across that wait lets 40
    # authenticated requests starve 40 threads that each wait for a connection.
    session.commit()
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked token",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def release(session: Session) -> None:
    """End the request's transaction in the route's own thread, returning its connection.

    FastAPI validates a sync route's response in another worker thread before the session's
    teardown runs; a connection still held then can starve the pool under load. Every route
    calls this once its response is built (objects stay readable: no expiry on commit).
    """
    session.commit()
