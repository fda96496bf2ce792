"""Who is signed in to the editor pages under /review, and how their forms are protected.

A person signs in with email and password (api/auth/pages.py); the browser then holds only
a random session id (`fql_session`: HttpOnly, SameSite=Lax, Secure over HTTPS) whose
SHA-256 is the server-side session row (kb/auth/sessions.py). It is never an API key and is
never accepted as a Bearer token. Every form of a session carries a CSRF token derived from
the session id. API clients may instead send an editor API key as a Bearer header (no
cookie, so no CSRF token needed).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from api.settings import Settings
from api.web.deps import services_of
from api.web.i18n import languages
from kb.audit import Actor
from kb.auth.keys import authenticate
from kb.auth.sessions import SessionPolicy, resolve_session
from kb.errors import Forbidden
from kb.models import ApiKey, Role, User

SESSION_COOKIE = "fql_session"
LOGIN_COOKIE = "fql_login"  # the pre-sign-in token the login form's CSRF field must match
LOGIN_COOKIE_MAX_AGE = 3600
COOKIE = SESSION_COOKIE


@dataclass
class Editor:
    """Who is signed in to the editor pages, and the CSRF token their forms carry.

    Exactly one of `key` (Bearer API key) and `user` (a person's session) is set.
    """

    key: ApiKey | None
    csrf: str | None  # None when signed in by header: no cookie, nothing to forge
    user: User | None = None

    @property
    def actor(self) -> Actor:
        """The name recorded as the author of this editor's changes: a person's display
        name and email, or an API key's name."""
        if self.user is not None:
            return Actor(f"{self.user.name} <{self.user.email}>"[:200], "user")
        assert self.key is not None
        return Actor(self.key.name, "key")

    @property
    def role(self) -> Role:
        """The signed-in person's or key's role."""
        if self.user is not None:
            return self.user.role
        assert self.key is not None
        return self.key.role

    @property
    def is_admin(self) -> bool:
        """True for the admin role (users, keys and the audit trail)."""
        return self.role.rank >= Role.admin.rank

    @property
    def name(self) -> str:
        """A display name for the pages."""
        if self.user is not None:
            return self.user.name
        assert self.key is not None
        return self.key.name


def csrf_token(secret: str) -> str:
    """The form token of a cookie (session or pre-sign-in): a MAC of its value."""
    return hmac.new(secret.encode(), b"faqloop-review-csrf", hashlib.sha256).hexdigest()[:40]


def session_policy(settings: Settings) -> SessionPolicy:
    """FAQLOOP_SESSION_IDLE_MINUTES and FAQLOOP_SESSION_MAX_HOURS as a policy."""
    return SessionPolicy(
        idle=timedelta(minutes=settings.session_idle_minutes),
        absolute=timedelta(hours=settings.session_max_hours),
    )


def page_language(request: Request) -> str:
    """The editor pages' language: ?lang=, else Accept-Language, else English."""
    lang = request.query_params.get("lang")
    if lang in languages():
        return lang
    accept = request.headers.get("accept-language", "").lower()
    return next((code for code in languages() if accept.startswith(code)), "en")


def bearer_of(request: Request) -> str | None:
    """The Bearer token of the request, if it sends one."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def current_editor(request: Request, session: Session) -> Editor | None:
    """The signed-in editor (Bearer API key, or a person's session cookie), or None.

    A Bearer token is only ever checked as an API key (401/403 when it is not an editor
    key): a session id sent as a Bearer token is refused. A session past its idle or
    absolute limit, or of a disabled account, is ended and counts as signed out.
    """
    token = bearer_of(request)
    if token is not None:
        return Editor(authenticate(session, token, needs=Role.editor), None)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    found = resolve_session(session, cookie, session_policy(services_of(request).settings))
    # Ends the lookup's transaction (and keeps a refreshed last-seen time or the deletion
    # of an expired session); loaded attributes are kept.
    session.commit()
    if found is None:
        return None
    _, user = found
    if user.role.rank < Role.editor.rank:
        return None
    return Editor(None, csrf_token(cookie), user)


def login_redirect(request: Request) -> Response:
    """Send the browser to the sign-in page, coming back here afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/review/login?next={quote(target)}", status_code=303)


def check_csrf(editor: Editor, submitted: str | None) -> None:
    """Forbidden unless a cookie session's form carries its token."""
    if editor.csrf is not None and not hmac.compare_digest(editor.csrf, submitted or ""):
        raise Forbidden("this form has expired; reload the page and try again")


def require_admin(editor: Editor) -> None:
    """Forbidden unless the editor has the admin role."""
    if not editor.is_admin:
        raise Forbidden("this page is for admins")


def admin_or_redirect(request: Request, session: Session) -> Editor | Response:
    """The signed-in admin; the sign-in page for a visitor; Forbidden for other editors."""
    editor = current_editor(request, session)
    if editor is None:
        return login_redirect(request)
    require_admin(editor)
    return editor


def cross_site(request: Request) -> bool:
    """True when the browser says the request comes from another site (Sec-Fetch-Site, or
    an Origin whose host is not this one)."""
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin is None:
        return False
    if origin == "null":
        return True
    hosts = {request.headers.get("host", "").lower()}
    hosts.add(request.headers.get("x-forwarded-host", "").split(",")[0].strip().lower())
    return urlsplit(origin).netloc.lower() not in hosts - {""}


def safe_next(target: str | None) -> str:
    """Where to go after sign-in: only paths inside the review pages, never another site."""
    if (
        target
        and target.startswith("/review")
        and "//" not in target
        and "\\" not in target
        and not target.startswith(("/review/login", "/review/logout"))
    ):
        return target
    return "/review"
