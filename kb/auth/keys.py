"""API keys: created once, stored only as SHA-256 hashes, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from kb.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from kb.models import ApiKey, Role, utcnow

KEY_PREFIX = "fql_"

# Built once: every API request checks its key, and building the statement (the column
# comparison above all) cost more than running it (docs/scale.md, "Little Python around
# the model").
_KEY_BY_HASH = select(ApiKey).where(ApiKey.key_hash == bindparam("digest"))


def hash_key(secret: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, *, role: str, name: str = "") -> tuple[ApiKey, str]:
    """Create a key; return the row and the secret (shown once, never stored)."""
    try:
        role_enum = Role(role)
    except ValueError as exc:
        raise InvalidInput(f"role must be one of {', '.join(r.value for r in Role)}") from exc
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name or f"{role_enum.value} key",
        role=role_enum,
        prefix=secret[: len(KEY_PREFIX) + 6],
        key_hash=hash_key(secret),
    )
    session.add(key)
    session.flush()
    return key, secret


def list_keys(session: Session) -> list[ApiKey]:
    """Every key, newest first (revoked ones included)."""
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id.desc())))


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revoke a key by id; revoking twice is harmless."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key


def authenticate(session: Session, secret: str | None, *, needs: Role) -> ApiKey:
    """The key behind `secret` if it is live and its role is at least `needs`."""
    if not secret:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    digest = hash_key(secret)
    key = session.scalar(_KEY_BY_HASH, {"digest": digest})
    # The lookup is by hash, so timing reveals nothing of the secret; compare_digest keeps
    # the final check constant-time as well.
    if key is None or not hmac.compare_digest(key.key_hash, digest) or key.revoked_at:
        raise Unauthorized("invalid or revoked API key")
    if key.role.rank < needs.rank:
        raise Forbidden(f"this endpoint needs a {needs.value} key (yours is {key.role.value})")
    return key
