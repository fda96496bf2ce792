"""The editors' sign-in and sign-out pages (/review/login, /review/logout)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.auth.editor_session import COOKIE, COOKIE_MAX_AGE, page_language, safe_next
from api.web.deps import SessionDep
from api.web.i18n import translator
from api.web.templating import render
from kb.auth.keys import authenticate
from kb.errors import Forbidden, Unauthorized
from kb.models import Role

router = APIRouter(prefix="/review", include_in_schema=False)


def render_page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    """Render a sign-in page in the editor pages' language."""
    context.setdefault("lang", page_language(request))
    return render(request, name, context, status_code=status_code)


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, next_url: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """The sign-in form."""
    return render_page(request, "review/login.html", {"next": safe_next(next_url), "error": None})


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    key: Annotated[str, Form(max_length=200)] = "",
    next_url: Annotated[str, Form(alias="next")] = "/review",
) -> Response:
    """Check the editor key and keep it in the session cookie."""
    try:
        authenticate(session, key.strip(), needs=Role.editor)
    except (Unauthorized, Forbidden):
        lang = page_language(request)
        error = translator(lang).gettext("This key is not a valid editor key.")
        context = {"next": safe_next(next_url), "error": error, "lang": lang}
        return render_page(request, "review/login.html", context, status_code=401)
    response = RedirectResponse(safe_next(next_url), status_code=303)
    response.set_cookie(
        COOKIE,
        key.strip(),
        max_age=COOKIE_MAX_AGE,
        path="/review",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    """Forget the session cookie."""
    response = RedirectResponse("/review/login", status_code=303)
    response.delete_cookie(COOKIE, path="/review")
    return response
