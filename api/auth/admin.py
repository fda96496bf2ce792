"""Admin pages: people (/review/admin/users) and API keys (/review/admin/keys).

Only the admin role reaches them. Every change is a form with the session's CSRF token,
and is written to the audit trail in the same transaction.
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
from api.web.deps import SessionDep
from api.web.templating import render
from kb.audit import record_action
from kb.auth import users as accounts
from kb.auth.keys import create_key, list_keys, revoke_key
from kb.errors import Conflict, InvalidInput, NotFound
from kb.models import ApiKey, Role

router = APIRouter(prefix="/review/admin", include_in_schema=False)

KEY_ROLES = tuple(r.value for r in Role)
USER_ROLES = tuple(r.value for r in accounts.USER_ROLES)
NOTICES = ("created", "disabled", "enabled", "role", "password", "revoked")


def _users_page(
    request: Request,
    session: Session,
    editor: Editor,
    *,
    notice: str | None = None,
    error: str | None = None,
    form: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "lang": page_language(request),
        "editor": editor,
        "users": accounts.list_users(session),
        "roles": USER_ROLES,
        "notice": notice if notice in NOTICES else None,
        "error": error,
        "form": form or {},
        "min_password": accounts.MIN_PASSWORD_CHARS,
    }
    return render(request, "review/admin_users.html", context, status_code=status_code)


def _failure(exc: InvalidInput | Conflict | NotFound) -> int:
    return 409 if isinstance(exc, Conflict) else 404 if isinstance(exc, NotFound) else 400


@router.get("/users", response_class=HTMLResponse)
def users_page(
    request: Request,
    session: SessionDep,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """Every account, with forms to create, disable, enable, change role or password."""
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    return _users_page(request, session, editor, notice=done)


@router.post("/users", response_class=HTMLResponse)
def create_user(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    name: Annotated[str, Form(max_length=400)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Create an account with a first password (tell it to the person another way)."""
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    check_csrf(editor, csrf)
    try:
        accounts.create_user(
            session, email=email, name=name, role=role, password=password, actor=editor.actor
        )
        session.commit()
    except (InvalidInput, Conflict) as exc:
        session.rollback()
        form = {"email": email, "name": name, "role": role}
        return _users_page(
            request, session, editor, error=exc.message, form=form, status_code=_failure(exc)
        )
    return RedirectResponse("/review/admin/users?done=created", status_code=303)


def _change(
    request: Request,
    session: Session,
    csrf: str | None,
    done: str,
    change: Any,
) -> Response:
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    check_csrf(editor, csrf)
    try:
        change(editor)
        session.commit()
    except (InvalidInput, Conflict, NotFound) as exc:
        session.rollback()
        return _users_page(request, session, editor, error=exc.message, status_code=_failure(exc))
    return RedirectResponse(f"/review/admin/users?done={done}", status_code=303)


UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/users/{user_id}/disable", response_class=HTMLResponse)
def disable_user(
    request: Request,
    session: SessionDep,
    user_id: UserId,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Disable an account: its sessions end at once."""
    return _change(
        request,
        session,
        csrf,
        "disabled",
        lambda editor: accounts.set_active(
            session, accounts.user_by_id(session, user_id).email, False, actor=editor.actor
        ),
    )


@router.post("/users/{user_id}/enable", response_class=HTMLResponse)
def enable_user(
    request: Request,
    session: SessionDep,
    user_id: UserId,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Enable a disabled account."""
    return _change(
        request,
        session,
        csrf,
        "enabled",
        lambda editor: accounts.set_active(
            session, accounts.user_by_id(session, user_id).email, True, actor=editor.actor
        ),
    )


@router.post("/users/{user_id}/role", response_class=HTMLResponse)
def change_role(
    request: Request,
    session: SessionDep,
    user_id: UserId,
    role: Annotated[str, Form(max_length=20)] = "",
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Make an account an editor or an admin."""
    return _change(
        request,
        session,
        csrf,
        "role",
        lambda editor: accounts.set_role(
            session, accounts.user_by_id(session, user_id).email, role, actor=editor.actor
        ),
    )


@router.post("/users/{user_id}/password", response_class=HTMLResponse)
def change_password(
    request: Request,
    session: SessionDep,
    user_id: UserId,
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Set a new password; the account's sessions end."""
    return _change(
        request,
        session,
        csrf,
        "password",
        lambda editor: accounts.set_password(
            session, accounts.user_by_id(session, user_id).email, password, actor=editor.actor
        ),
    )


# -- API keys -----------------------------------------------------------------------------


def _key_summary(key: ApiKey) -> dict[str, object]:
    return {"name": key.name, "role": key.role.value, "prefix": key.prefix}


def _keys_page(
    request: Request,
    session: Session,
    editor: Editor,
    *,
    notice: str | None = None,
    error: str | None = None,
    secret: str | None = None,
    status_code: int = 200,
) -> Response:
    context: dict[str, Any] = {
        "lang": page_language(request),
        "editor": editor,
        "keys": list_keys(session),
        "roles": KEY_ROLES,
        "notice": notice if notice in NOTICES else None,
        "error": error,
        "secret": secret,
    }
    return render(request, "review/admin_keys.html", context, status_code=status_code)


@router.get("/keys", response_class=HTMLResponse)
def keys_page(
    request: Request,
    session: SessionDep,
    done: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    """Every API key (never a secret), with forms to create and revoke."""
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    return _keys_page(request, session, editor, notice=done)


@router.post("/keys", response_class=HTMLResponse)
def create_api_key(
    request: Request,
    session: SessionDep,
    name: Annotated[str, Form(max_length=200)] = "",
    role: Annotated[str, Form(max_length=20)] = "",
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Create a key; its secret is shown on this answer only (never stored, never again)."""
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    check_csrf(editor, csrf)
    if not name.strip():
        return _keys_page(request, session, editor, error="name must not be empty", status_code=400)
    try:
        key, secret = create_key(session, role=role, name=name.strip())
    except InvalidInput as exc:
        session.rollback()
        return _keys_page(request, session, editor, error=exc.message, status_code=400)
    record_action(
        session,
        actor=editor.actor,
        action="key.create",
        target=f"key:{key.id}",
        after=_key_summary(key),
    )
    session.commit()
    return _keys_page(request, session, editor, secret=secret, status_code=201)


@router.post("/keys/{key_id}/revoke", response_class=HTMLResponse)
def revoke_api_key(
    request: Request,
    session: SessionDep,
    key_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """Revoke a key: it stops working at once."""
    editor = admin_or_redirect(request, session)
    if isinstance(editor, Response):
        return editor
    check_csrf(editor, csrf)
    found = session.get(ApiKey, key_id)
    was_live = found is not None and found.revoked_at is None
    try:
        key = revoke_key(session, key_id)
    except NotFound as exc:
        return _keys_page(request, session, editor, error=exc.message, status_code=404)
    if was_live:  # revoking twice is harmless and recorded once
        record_action(
            session,
            actor=editor.actor,
            action="key.revoke",
            target=f"key:{key.id}",
            after=_key_summary(key),
        )
    session.commit()
    return RedirectResponse("/review/admin/keys?done=revoked", status_code=303)
