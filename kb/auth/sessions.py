"""Server-side sessions of signed-in editors.

The browser holds a random id (256 bits); the database holds only its SHA-256. A session
ends at sign-out, when its account is disabled or its password replaced, after
`idle` without a request, or `absolute` after sign-in, whichever comes first.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from kb.models import User, UserSession, utcnow

TOKEN_BYTES = 32
# last_seen_at is written at most this often per session (not on every request).
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class SessionPolicy:
    """How long a session lives: since its last request, and at most since sign-in."""

    idle: timedelta
    absolute: timedelta


def hash_token(token: str) -> str:
    """The stored form of a session id."""
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, user: User, *, address: str | None = None) -> str:
    """A new session of `user`; returns its id (to set in the cookie; never stored)."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = utcnow()
    session.add(
        UserSession(
            token_hash=hash_token(token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            address=(address or "")[:64] or None,
        )
    )
    user.last_login_at = now
    session.flush()
    return token


def end_session(session: Session, token: str | None) -> User | None:
    """End the session with this id (if any); its user, or None."""
    if not token or len(token) > 200:
        return None
    row = session.scalar(select(UserSession).where(UserSession.token_hash == hash_token(token)))
    if row is None:
        return None
    user = row.user
    session.delete(row)
    return user


def _expired(row: UserSession, policy: SessionPolicy, now: datetime) -> bool:
    return now - row.last_seen_at > policy.idle or now - row.created_at > policy.absolute


def resolve_session(
    session: Session, token: str | None, policy: SessionPolicy
) -> tuple[UserSession, User] | None:
    """The live session with this id and its active user, else None.

    An expired session is deleted. `last_seen_at` is refreshed (at most once a minute);
    the caller commits.
    """
    if not token or len(token) > 200:
        return None
    row = session.scalar(select(UserSession).where(UserSession.token_hash == hash_token(token)))
    if row is None:
        return None
    now = utcnow()
    user = row.user
    if _expired(row, policy, now) or not user.active:
        session.execute(delete(UserSession).where(UserSession.id == row.id))
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        session.execute(
            update(UserSession).where(UserSession.id == row.id).values(last_seen_at=now)
        )
    return row, user


def purge_expired(session: Session, policy: SessionPolicy) -> int:
    """Delete sessions past either limit; the number deleted."""
    now = utcnow()
    result = session.execute(
        delete(UserSession).where(
            (UserSession.last_seen_at < now - policy.idle)
            | (UserSession.created_at < now - policy.absolute)
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)
