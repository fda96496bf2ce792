"""The audit page (/review/audit): who did what, when, filtered like GET /v1/audit."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from api.audit.access import parse_time
from api.auth.editor_session import admin_or_redirect, page_language
from api.web.deps import SessionDep
from api.web.templating import render
from kb.audit import list_events

router = APIRouter(prefix="/review", include_in_schema=False)
PAGE_SIZE = 50


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: SessionDep,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    target: Annotated[str | None, Query(max_length=200)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """The audit trail, newest first (admins)."""
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    filters = {
        "actor": (actor or "").strip() or None,
        "action": (action or "").strip() or None,
        "target": (target or "").strip() or None,
    }
    page = list_events(
        session,
        **filters,
        since=parse_time(since, "since"),
        until=parse_time(until, "until", end_of_day=True),
        limit=PAGE_SIZE,
        offset=offset,
    )
    kept = {k: v for k, v in {**filters, "since": since, "until": until}.items() if v}

    def page_url(at: int) -> str:
        return "/review/audit?" + urlencode({**kept, "offset": at})

    context = {
        "lang": page_language(request),
        "editor": editor,
        "events": page.events,
        "total": page.total,
        "offset": offset,
        "filters": {**filters, "since": since or "", "until": until or ""},
        "previous_url": page_url(max(0, offset - PAGE_SIZE)) if offset else None,
        "next_url": page_url(offset + PAGE_SIZE) if offset + PAGE_SIZE < page.total else None,
        "notice": None,
        "error": None,
    }
    return render(request, "review/audit.html", context)
