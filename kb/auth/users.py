"""Editor accounts: email (unique whatever its case), display name, role, active or disabled,
and a password kept only as an argon2id hash (pwdlib)."""

from __future__ import annotations

import re
from functools import cache

from pwdlib import PasswordHash
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kb.audit import record_action
from kb.errors import Conflict, InvalidInput, NotFound
from kb.models import Role, User, UserSession, utcnow

USER_ROLES = (Role.editor, Role.admin)
MIN_PASSWORD_CHARS = 8
MAX_PASSWORD_CHARS = 1024
MAX_NAME_CHARS = 200
# One "@" with text either side, no spaces or characters that break a header or a list;
# a dot in the domain is not required (intranet addresses like ops@localhost).
_EMAIL = re.compile(r"^[^@\s<>\"',;()\[\]\\]+@[^@\s<>\"',;()\[\]\\]+$")


@cache
def password_hasher() -> PasswordHash:
    """The hasher of new passwords (argon2id with pwdlib's recommended parameters)."""
    return PasswordHash.recommended()


@cache
def _dummy_hash() -> str:
    return password_hasher().hash("faqloop: no such user")


def normalise_email(email: str) -> str:
    """The stored form of an address: trimmed and lower-cased; InvalidInput if not one."""
    value = (email or "").strip().lower()
    if len(value) > 320 or not _EMAIL.match(value):
        raise InvalidInput("email must be an address like name@example.com")
    return value


def _role(role: str | Role) -> Role:
    try:
        value = Role(role)
    except ValueError:
        value = None
    if value not in USER_ROLES:
        raise InvalidInput("role must be editor or admin")
    return value


def _name(name: str) -> str:
    value = " ".join((name or "").split())
    if not value:
        raise InvalidInput("name must not be empty")
    if len(value) > MAX_NAME_CHARS:
        raise InvalidInput(f"name must be at most {MAX_NAME_CHARS} characters")
    return value


def check_password(password: str) -> str:
    """The password if long enough and not too long; InvalidInput otherwise."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise InvalidInput(f"password must be at most {MAX_PASSWORD_CHARS} characters")
    if "\x00" in password:
        raise InvalidInput("password must not contain NUL characters")
    return password


def user_summary(user: User) -> dict[str, object]:
    """What the audit trail keeps of an account (never the password hash)."""
    return {
        "email": user.email,
        "name": user.name,
        "role": user.role.value,
        "active": user.active,
    }


def find_user(session: Session, email: str) -> User | None:
    """The account of `email` (any case), or None."""
    value = (email or "").strip().lower()
    if not value:
        return None
    return session.scalar(select(User).where(User.email == value))


def user_by_id(session: Session, user_id: int) -> User:
    """The account with this id; NotFound otherwise."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def get_user(session: Session, email: str) -> User:
    """The account of `email`; NotFound otherwise."""
    user = find_user(session, email)
    if user is None:
        raise NotFound(f"no user with email {email.strip()!r}")
    return user


def create_user(
    session: Session,
    *,
    email: str,
    name: str,
    role: str | Role,
    password: str | None,
    actor: str,
) -> User:
    """Create an active account; Conflict when the email is taken (in any case).

    Without a password the account can only sign in through single sign-on.
    """
    address = normalise_email(email)
    user = User(
        email=address,
        name=_name(name),
        role=_role(role),
        password_hash=password_hasher().hash(check_password(password)) if password else None,
        active=True,
    )
    if find_user(session, address) is not None:
        raise Conflict(f"a user with email {address} already exists")
    try:
        with session.begin_nested():
            session.add(user)
            session.flush()
    except IntegrityError as exc:  # a concurrent create of the same address
        raise Conflict(f"a user with email {address} already exists") from exc
    record_action(
        session,
        actor=actor,
        action="user.create",
        target=f"user:{address}",
        after=user_summary(user),
    )
    return user


def list_users(session: Session) -> list[User]:
    """Every account, active ones first, then by email."""
    return list(session.scalars(select(User).order_by(User.active.desc(), User.email)))


def end_sessions(session: Session, user: User) -> int:
    """End every session of `user` at once; the number ended."""
    result = session.execute(delete(UserSession).where(UserSession.user_id == user.id))
    return int(getattr(result, "rowcount", 0) or 0)


def set_active(session: Session, email: str, active: bool, *, actor: str) -> User:
    """Disable (ending every session at once) or enable an account; idempotent."""
    user = get_user(session, email)
    before = user_summary(user)
    if not active and user.active and user.role == Role.admin and count_admins(session) <= 1:
        raise Conflict("this is the last active admin; make another admin first")
    if user.active != active:
        user.active = active
        user.disabled_at = None if active else utcnow()
        record_action(
            session,
            actor=actor,
            action="user.enable" if active else "user.disable",
            target=f"user:{user.email}",
            before=before,
            after=user_summary(user),
        )
    if not active:
        end_sessions(session, user)
    return user


def set_role(session: Session, email: str, role: str | Role, *, actor: str) -> User:
    """Change an account's role; its sessions see the new role on their next request."""
    user = get_user(session, email)
    new_role = _role(role)
    if (
        user.role == Role.admin
        and new_role != Role.admin
        and user.active
        and count_admins(session) <= 1
    ):
        raise Conflict("this is the last active admin; make another admin first")
    if user.role != new_role:
        before = user_summary(user)
        user.role = new_role
        record_action(
            session,
            actor=actor,
            action="user.role",
            target=f"user:{user.email}",
            before=before,
            after=user_summary(user),
        )
    return user


def set_password(session: Session, email: str, password: str, *, actor: str) -> User:
    """Replace an account's password and end its sessions."""
    user = get_user(session, email)
    user.password_hash = password_hasher().hash(check_password(password))
    end_sessions(session, user)
    record_action(session, actor=actor, action="user.password", target=f"user:{user.email}")
    return user


def count_admins(session: Session) -> int:
    """Active admin accounts."""
    stmt = select(func.count(User.id)).where(User.role == Role.admin, User.active.is_(True))
    return int(session.scalar(stmt) or 0)


def verify_password(session: Session, email: str, password: str) -> User | None:
    """The active account whose password this is, else None.

    An unknown address costs the same hashing time as a wrong password, so timing does not
    tell which addresses have accounts. A hash made with older parameters is upgraded.
    """
    user = find_user(session, email) if len(email or "") <= 320 else None
    if not password or len(password) > MAX_PASSWORD_CHARS:
        return None
    if user is None or user.password_hash is None:
        password_hasher().verify(password, _dummy_hash())
        return None
    valid, updated = password_hasher().verify_and_update(password, user.password_hash)
    if not valid or not user.active:
        return None
    if updated:
        user.password_hash = updated
    return user
