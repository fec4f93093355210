"""Bearer tokens: 256-bit random strings shown once, stored only as their SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from backend.app.db.models import ApiToken, User, utcnow

__all__ = ["TOKEN_PREFIX", "authenticate", "create_token", "create_user", "hash_token"]

TOKEN_PREFIX = "pmtl_"
# Characters of the token kept in clear (``api_tokens.prefix``) to tell tokens apart.
_SHOWN = 12
# last_used_at is refreshed at most this often, so polling clients do not write on every request.
_TOUCH_SECONDS = 60.0


def hash_token(token: str) -> str:
    """SHA-256 hex digest of a token (what the database stores)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_token(session: Session, user: User) -> str:
    """Issue a new token for ``user``; the clear text is returned once and never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(user=user, token_hash=hash_token(token), prefix=token[:_SHOWN]))
    return token


def create_user(session: Session, name: str, admin: bool = False) -> tuple[User, str]:
    """Create a user with one token; ``ValueError`` if the name is empty or taken."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValueError("a user name must have 1 to 100 characters")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise ValueError(f"a user named {name!r} already exists")
    user = User(name=name, is_admin=admin)
    session.add(user)
    token = create_token(session, user)
    session.flush()
    return user, token


def authenticate(session: Session, token: str) -> User | None:
    """The user owning an unrevoked ``token``, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    row = session.scalar(
        select(ApiToken)
        .options(joinedload(ApiToken.user))  # one query per request, not two
        .where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None))
    )
    # The lookup is by hash; compare again in constant time so a lookup quirk (collation,
    # truncation) can never let a different token through.
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        return None
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > _TOUCH_SECONDS:
        row.last_used_at = now
    return row.user
