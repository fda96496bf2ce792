"""Editor sign-in for the server-rendered pages under /review.

Browsers cannot send an `Authorization` header from a form, so an editor signs in once with
their editor API key; it is kept in an HttpOnly, SameSite=Strict cookie scoped to /review,
and every form carries a CSRF token derived from it. API clients may send the key as a
Bearer header instead (no cookie, so no CSRF token needed).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from api.web.i18n import languages
from kb.auth.keys import authenticate
from kb.errors import Forbidden, Unauthorized
from kb.models import ApiKey, Role

COOKIE = "fql_editor"
COOKIE_MAX_AGE = 8 * 3600  # one working day


@dataclass
class Editor:
    """Who is signed in to the editor pages, and the CSRF token their forms carry."""

    key: ApiKey
    csrf: str | None  # None when signed in by header: no cookie, nothing to forge

    @property
    def actor(self) -> str:
        """The name recorded as the author of this editor's changes."""
        return self.key.name


def csrf_token(secret: str) -> str:
    """The form token of a cookie session: a MAC of the key, useless without it."""
    return hmac.new(secret.encode(), b"faqloop-review-csrf", hashlib.sha256).hexdigest()[:40]


def page_language(request: Request) -> str:
    """The editor pages' language: ?lang=, else Accept-Language, else English."""
    lang = request.query_params.get("lang")
    if lang in languages():
        return lang
    accept = request.headers.get("accept-language", "").lower()
    return next((code for code in languages() if accept.startswith(code)), "en")


def current_editor(request: Request, session: Session) -> Editor | None:
    """The signed-in editor (Bearer header or session cookie), or None."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return Editor(authenticate(session, token.strip(), needs=Role.editor), None)
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        key = authenticate(session, cookie, needs=Role.editor)
    except (Unauthorized, Forbidden):
        return None  # revoked or downgraded since sign-in: sign in again
    return Editor(key, csrf_token(cookie))


def login_redirect(request: Request) -> Response:
    """Send the browser to the sign-in page, coming back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/review/login?next={quote(target)}", status_code=303)


def check_csrf(editor: Editor, submitted: str | None) -> None:
    """Forbidden unless a cookie session's form carries its token."""
    if editor.csrf is not None and not hmac.compare_digest(editor.csrf, submitted or ""):
        raise Forbidden("this form has expired; reload the page and try again")


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only paths inside the review pages, never another site."""
    if target and target.startswith("/review") and "//" not in target and "\\" not in target:
        return target
    return "/review"
