"""The admin page of outgoing webhooks: /review/admin/webhooks (and one webhook's log).

Admins only; every change is a form with the session's CSRF token, recorded in the audit
trail in the same transaction. A new webhook's secret is shown on the answer to the form
that made it, and never again.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from api.auth.editor_session import (
    Editor,
    admin_or_redirect,
    check_csrf,
    page_language,
)
from api.web.deps import SessionDep, services_of
from api.web.templating import render
from kb.errors import InvalidInput, NotFound
from kb.notify import webhooks

router = APIRouter(prefix="/review/admin/webhooks", include_in_schema=False)

NOTICES = ("deleted",)
WebhookId = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _list_page(
    request: Request,
    session: Session,
    editor: Editor,
    *,
    notice: str | None = None,
    error: str | None = None,
    created: tuple[int, str] | None = None,
    form: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    default_demand = services_of(request).settings.webhook_draft_min_demand
    context: dict[str, Any] = {
        "lang": page_language(request),
        "editor": editor,
        "hooks": webhooks.list_webhooks(session),
        "events": webhooks.EVENTS,
        "notice": notice if notice in NOTICES else None,
        "error": error,
        "created": created,
        "form": form or {"min_demand": default_demand, "events": []},
    }
    return render(request, "review/admin_webhooks.html", context, status_code=status_code)


@router.get("", response_class=HTMLResponse)
def webhooks_page(
    request: Request,
    session: SessionDep,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """Every webhook (never a secret), with a form to add one."""
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    return _list_page(request, session, editor, notice=done)


@router.post("", response_class=HTMLResponse)
def create_webhook(
    request: Request,
    session: SessionDep,
    url: Annotated[str, Form(max_length=2000)] = "",
    events: Annotated[list[str] | None, Form(max_length=3)] = None,
    min_demand: Annotated[str, Form(max_length=12)] = "",
    description: Annotated[str, Form(max_length=200)] = "",
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Register a webhook; its secret is shown on this answer only."""
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    check_csrf(editor, csrf)
    chosen = [e[:40] for e in (events or [])]
    form = {"url": url, "events": chosen, "min_demand": min_demand, "description": description}
    try:
        demand = int(min_demand.strip()) if min_demand.strip() else None
    except ValueError:
        demand = -1
    try:
        if demand is not None and demand < 1:
            raise InvalidInput("the draft threshold must be a whole number of at least 1")
        hook, secret = webhooks.create_webhook(
            session,
            url=url,
            events=chosen,
            min_demand=demand or services_of(request).settings.webhook_draft_min_demand,
            description=description,
            actor=editor.actor,
        )
        hook_id = hook.id
        session.commit()
    except InvalidInput as exc:
        session.rollback()
        return _list_page(request, session, editor, error=exc.message, form=form, status_code=422)
    return _list_page(request, session, editor, created=(hook_id, secret), status_code=201)


@router.get("/{webhook_id}", response_class=HTMLResponse)
def webhook_page(
    request: Request,
    session: SessionDep,
    webhook_id: WebhookId,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """One webhook and its delivery log, newest first (50 a page)."""
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    hook = webhooks.get_webhook_or_raise(session, webhook_id)
    page = webhooks.list_deliveries(session, webhook_id, limit=50, offset=offset)
    more = offset + len(page.deliveries) < page.total
    context: dict[str, Any] = {
        "lang": page_language(request),
        "editor": editor,
        "hook": hook,
        "deliveries": page.deliveries,
        "total": page.total,
        "offset": offset,
        "next_offset": offset + len(page.deliveries) if more else None,
    }
    return render(request, "review/admin_webhook.html", context)


@router.post("/{webhook_id}/delete", response_class=HTMLResponse)
def delete_webhook(
    request: Request,
    session: SessionDep,
    webhook_id: WebhookId,
    confirm: Annotated[str | None, Form(max_length=10)] = None,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Remove a webhook and its log (needs the confirmation box)."""
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    check_csrf(editor, csrf)
    try:
        if confirm != "yes":
            raise InvalidInput("tick the box to confirm that the webhook should be removed")
        webhooks.delete_webhook(session, webhook_id, actor=editor.actor)
        session.commit()
    except NotFound as exc:
        session.rollback()
        return _list_page(request, session, editor, error=exc.message, status_code=404)
    except InvalidInput as exc:
        session.rollback()
        return _list_page(request, session, editor, error=exc.message, status_code=400)
    return RedirectResponse("/review/admin/webhooks?done=deleted", status_code=303)
