"""The editors' sign-in and sign-out pages (/review/login, /review/logout).

The sign-in form is protected before any session exists: GET sets a random pre-sign-in
cookie (`fql_login`, SameSite=Strict) and the form carries a token derived from it; a POST
without both (a cross-site form) is refused. Success always starts a new session with a new
random id (never the one the browser brought: no fixation) and ends the browser's previous
session. Attempts are limited per account and per address.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from api.auth.editor_session import (
    LOGIN_COOKIE,
    LOGIN_COOKIE_MAX_AGE,
    SESSION_COOKIE,
    cross_site,
    csrf_token,
    page_language,
    safe_next,
    session_policy,
)
from api.state import Services
from api.web.deps import SessionDep
from api.web.i18n import translator
from api.web.lazy import Lazy
from api.web.ratelimit import RateLimiter, limit_storage
from api.web.templating import render
from kb.audit import Actor, record_action
from kb.auth.sessions import end_session, purge_expired, start_session
from kb.auth.users import verify_password
from kb.errors import Forbidden

router = APIRouter(prefix="/review", include_in_schema=False)


@dataclass
class LoginLimits:
    """Sign-in attempts per account and per address (FAQLOOP_LOGIN_RATE_*)."""

    per_account: RateLimiter | None
    per_address: RateLimiter | None

    def wait(self, *, account: str, address: str | None) -> int:
        """Count one attempt; 0 when allowed, else the seconds to wait."""
        waits = [0]
        if self.per_account is not None and account:
            waits.append(self.per_account.hit(account))
        if self.per_address is not None and address:
            waits.append(self.per_address.hit(address))
        return max(waits)


def build_login_limits(services: Services) -> LoginLimits:
    """The sign-in limits of an app, counted where the app's other limits count."""
    s = services.settings
    storage = limit_storage(s)

    def limiter(name: str, limit: int) -> RateLimiter | None:
        return RateLimiter(name, limit, s.login_rate_window, storage=storage) if limit else None

    return LoginLimits(
        per_account=limiter("login-account", s.login_rate_limit),
        per_address=limiter("login-ip", s.login_rate_limit_ip),
    )


_login_limits: Lazy[LoginLimits] = Lazy("login-limits", build_login_limits)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(
    request: Request,
    *,
    next_url: str,
    error: str | None = None,
    status_code: int = 200,
    email: str = "",
) -> Response:
    """The sign-in form with a fresh pre-sign-in token (a new cookie each time)."""
    token = secrets.token_urlsafe(32)
    context: dict[str, Any] = {
        "lang": page_language(request),
        "next": safe_next(next_url),
        "error": error,
        "email": email,
        "csrf": csrf_token(token),
    }
    response = render(request, "review/login.html", context, status_code=status_code)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=LOGIN_COOKIE_MAX_AGE,
        path="/review",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(
    request: Request, next_url: Annotated[str | None, Query(alias="next")] = None
) -> Response:
    """The sign-in form."""
    return _login_page(request, next_url=safe_next(next_url))


def _record_failure(session: Session, email: str, address: str | None, reason: str) -> None:
    record_action(
        session,
        actor=Actor(email[:200] or "anonymous", "user"),
        action="login.failed",
        target=f"user:{email[:120]}",
        after={"reason": reason, "address": address},
    )
    session.commit()


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
    next_url: Annotated[str, Form(alias="next", max_length=2000)] = "/review",
) -> Response:
    """Check email and password; on success start a new session and set its cookie."""
    tr = translator(page_language(request))
    pre = request.cookies.get(LOGIN_COOKIE, "")
    if cross_site(request) or not pre or not hmac.compare_digest(csrf_token(pre), csrf):
        # A form from another site, or an expired one: nothing is checked, nothing is set.
        return _login_page(
            request,
            next_url=next_url,
            error=tr.gettext("This sign-in form has expired; please sign in again."),
            status_code=403,
        )
    email = email.strip().lower()
    address = request.client.host if request.client else None
    wait = _login_limits.of(request).wait(account=email, address=address)
    if wait:
        response = _login_page(
            request,
            next_url=next_url,
            email=email,
            error=tr.gettext(
                "Too many sign-in attempts. Please wait %(seconds)s seconds and try again.",
                seconds=wait,
            ),
            status_code=429,
        )
        response.headers["Retry-After"] = str(wait)
        return response
    user = verify_password(session, email, password)
    if user is None:
        _record_failure(session, email, address, "wrong email or password, or account disabled")
        return _login_page(
            request,
            next_url=next_url,
            email=email,
            error=tr.gettext("Wrong email or password."),
            status_code=401,
        )
    # Never upgrade what the browser brought: its old session (if any) ends, a new id starts.
    end_session(session, request.cookies.get(SESSION_COOKIE))
    purge_expired(session, session_policy(request.app.state.services.settings))
    token = start_session(session, user, address=address)
    actor = Actor(f"{user.name} <{user.email}>"[:200], "user")
    record_action(
        session,
        actor=actor,
        action="login",
        target=f"user:{user.email}",
        after={"address": address},
    )
    session.commit()
    response = RedirectResponse(safe_next(next_url), status_code=303)
    settings = request.app.state.services.settings
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=int(settings.session_max_hours * 3600),
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/review")
    return response


@router.post("/logout")
def logout(
    request: Request,
    session: SessionDep,
    csrf: Annotated[str | None, Form(max_length=100)] = None,
) -> Response:
    """End the session server-side (its id stops working at once) and forget the cookie."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cross_site(request) or (
        cookie and csrf is not None and not hmac.compare_digest(csrf_token(cookie), csrf)
    ):
        raise Forbidden("this form has expired; reload the page and try again")
    user = end_session(session, cookie)
    if user is not None:
        record_action(
            session,
            actor=Actor(f"{user.name} <{user.email}>"[:200], "user"),
            action="logout",
            target=f"user:{user.email}",
        )
    session.commit()
    response = RedirectResponse("/review/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
