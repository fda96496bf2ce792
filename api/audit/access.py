"""Who may read the audit trail: an admin API key (Bearer) or an admin's session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import Request
from sqlalchemy.orm import Session

from api.auth.editor_session import current_editor
from kb.errors import Forbidden, InvalidInput, Unauthorized


def require_audit_reader(request: Request, session: Session) -> None:
    """Unauthorized without a key or session, Forbidden below the admin role."""
    editor = current_editor(request, session)  # a Bearer token is checked as an API key only
    if editor is None:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'")
    if not editor.is_admin:
        raise Forbidden("the audit trail is for admins")


def as_utc(value: datetime | None) -> datetime | None:
    """A time in UTC; a time without zone is taken as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_time(value: str | None, name: str, *, end_of_day: bool = False) -> datetime | None:
    """An ISO date or date-time from a form (UTC unless it says otherwise), or None.

    With `end_of_day`, a bare date means the end of that day (an inclusive "until" date).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        parsed = as_utc(datetime.fromisoformat(text))
        if parsed is not None and end_of_day and len(text) == 10:
            parsed += timedelta(days=1)
        return parsed
    except ValueError as exc:
        raise InvalidInput(f"{name} must be a date (2026-12-01) or an ISO date-time") from exc
