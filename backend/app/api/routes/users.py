"""The caller's own account."""

from __future__ import annotations

from fastapi import APIRouter

from backend.app.api.common import errors
from backend.app.api.deps import CurrentUser
from backend.app.api.schemas import UserPublic

router = APIRouter(tags=["users"])


@router.get("/me", response_model=UserPublic, responses=errors())
def me(user: CurrentUser) -> UserPublic:
    """Who the bearer token belongs to."""
    return UserPublic(id=user.id, name=user.name, is_admin=user.is_admin)
