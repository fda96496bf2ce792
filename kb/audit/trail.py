"""Record and read audit events.

`record_action` adds the event to the caller's session and never commits: the event is
written in the same transaction as the change it describes, or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from kb.errors import InvalidInput
from kb.models import AuditEvent

ACTOR_KINDS = ("user", "key", "system")
MAX_SUMMARY_CHARS = 4000  # per before/after summary, so a long answer cannot bloat the log
MAX_VALUE_CHARS = 500


class Actor(str):
    """An actor's name that also knows its kind (`user`, `key` or `system`).

    It is a plain string wherever a name is expected (revision authors, logs); the audit
    trail reads `kind` from it.
    """

    kind: str

    def __new__(cls, name: str, kind: str = "system") -> Actor:
        if kind not in ACTOR_KINDS:
            raise ValueError(f"actor kind must be one of {ACTOR_KINDS}")
        obj = super().__new__(cls, name)
        obj.kind = kind
        return obj


def _split_target(target: str) -> tuple[str, str]:
    kind, sep, ident = target.partition(":")
    if not sep or not kind.strip():
        return "other", target[:128]
    return kind.strip()[:32], ident.strip()[:128]


def _shorten(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS] + "…"
    if isinstance(value, Mapping):
        return {str(k): _shorten(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_shorten(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)


def _summary(data: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    short = _shorten(data)
    if len(json.dumps(short, ensure_ascii=False)) > MAX_SUMMARY_CHARS:
        return {"summary": json.dumps(short, ensure_ascii=False)[:MAX_SUMMARY_CHARS] + "…"}
    return dict(short)


def record_action(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Add an audit event to `session` (committed with the caller's transaction).

    `target` is "type:id" (e.g. "faq:12", "draft:3", "user:alice@example.com").
    `actor` is a name; an `Actor` also gives its kind, a plain string counts as "system".
    Values in the summaries are made JSON-safe and long texts are shortened.
    """
    kind = getattr(actor, "kind", "system")
    target_type, target_id = _split_target(target)
    session.add(
        AuditEvent(
            actor=str(actor)[:400] or "unknown",
            actor_kind=kind if kind in ACTOR_KINDS else "system",
            action=action[:64],
            target_type=target_type,
            target_id=target_id,
            before=_summary(before),
            after=_summary(after),
        )
    )


@dataclass(frozen=True)
class EventPage:
    """One page of events, newest first, and the total matching the filters."""

    events: list[AuditEvent]
    total: int


def _filtered(
    stmt: Select[Any],
    *,
    actor: str | None,
    action: str | None,
    target: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Select[Any]:
    if actor:
        # A substring, case-insensitive: "alice" finds "Alice Example <alice@example.com>".
        escaped = actor.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(func.lower(AuditEvent.actor).like(f"%{escaped}%", escape="\\"))
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if target:
        kind, sep, ident = target.partition(":")
        stmt = stmt.where(AuditEvent.target_type == kind.strip())
        if sep and ident.strip():
            stmt = stmt.where(AuditEvent.target_id == ident.strip())
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.at < until)
    return stmt


def list_events(
    session: Session,
    *,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> EventPage:
    """Events matching every given filter, newest first.

    `target` is "type" or "type:id"; `actor` matches a part of the name, any case;
    `since` is inclusive, `until` exclusive.
    """
    if not 1 <= limit <= 500:
        raise InvalidInput("limit must be between 1 and 500")
    if offset < 0:
        raise InvalidInput("offset must not be negative")
    if since is not None and until is not None and until < since:
        raise InvalidInput("until must not be before since")

    def where(stmt: Select[Any]) -> Select[Any]:
        return _filtered(stmt, actor=actor, action=action, target=target, since=since, until=until)

    total = session.scalar(where(select(func.count(AuditEvent.id)))) or 0
    rows = session.scalars(
        where(select(AuditEvent))
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return EventPage(list(rows), int(total))
