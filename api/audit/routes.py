"""GET /v1/audit: the audit trail, newest first, filtered and paginated (admins only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from api.audit.access import as_utc, require_audit_reader
from api.web.deps import SessionDep
from api.web.schemas import ErrorBody, IsoDateTime
from kb.audit import list_events
from kb.models import AuditEvent

router = APIRouter(prefix="/v1/audit", tags=["audit"])
_ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403)
}


class AuditEventRead(BaseModel):
    """One recorded action."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime = Field(description="When, in UTC.")
    actor: str = Field(description="A person's name and email, an API key's name, or the CLI.")
    actor_kind: str = Field(description="user, key or system (the command line).")
    action: str = Field(description="e.g. draft.publish, faq.update, flag.dismiss, login.")
    target: str = Field(description="type:id, e.g. faq:12, draft:3, user:ann@example.com.")
    target_type: str
    target_id: str
    before: dict[str, Any] | None = Field(None, description="A summary before the change.")
    after: dict[str, Any] | None = Field(None, description="A summary after the change.")


class AuditPage(BaseModel):
    """One page of events and how to get the next."""

    items: list[AuditEventRead]
    total: int = Field(description="Events matching the filters.")
    limit: int
    offset: int
    next_offset: int | None = Field(description="The offset of the next page; null at the end.")


def event_read(event: AuditEvent) -> AuditEventRead:
    """The JSON form of an event."""
    return AuditEventRead(
        id=event.id,
        at=event.at,
        actor=event.actor,
        actor_kind=event.actor_kind,
        action=event.action,
        target=f"{event.target_type}:{event.target_id}",
        target_type=event.target_type,
        target_id=event.target_id,
        before=event.before,
        after=event.after,
    )


@router.get(
    "",
    response_model=AuditPage,
    responses=_ERRORS,
    summary="Read the audit trail (admin)",
)
def read_audit(
    request: Request,
    session: SessionDep,
    actor: Annotated[
        str | None, Query(max_length=200, description="Part of the actor's name or email.")
    ] = None,
    action: Annotated[str | None, Query(max_length=64, description="Exact action.")] = None,
    target: Annotated[
        str | None,
        Query(max_length=200, description="A target type (`faq`) or type and id (`faq:12`)."),
    ] = None,
    since: Annotated[
        IsoDateTime | None, Query(description="From this time (inclusive; UTC if no zone).")
    ] = None,
    until: Annotated[
        IsoDateTime | None, Query(description="Before this time (exclusive; UTC if no zone).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> AuditPage:
    """Every recorded editorial and administrative action, newest first.

    Needs an admin API key (Bearer) or an admin's signed-in session.
    """
    require_audit_reader(request, session)
    page = list_events(
        session,
        actor=actor,
        action=action,
        target=target,
        since=as_utc(since),
        until=as_utc(until),
        limit=limit,
        offset=offset,
    )
    more = offset + len(page.events) < page.total
    return AuditPage(
        items=[event_read(e) for e in page.events],
        total=page.total,
        limit=limit,
        offset=offset,
        next_offset=offset + len(page.events) if more else None,
    )
