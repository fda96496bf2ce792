"""Editor sessions: sign-in with email and password behind a CSRF token, a random server-side
session id in the cookie (never an API key, never a Bearer token), rotation at sign-in,
server-side end at sign-out and when the account is disabled, idle and absolute expiry,
throttled attempts, and the security headers of every /review answer."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from api.auth.editor_session import csrf_token
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.audit import Actor
from kb.auth.sessions import hash_token
from kb.auth.users import set_active, set_password
from kb.db import session_scope
from kb.models import AuditEvent, UserSession, utcnow
from tests.support.accounts import Account, login_csrf, make_account, sign_in, signed_in
from tests.support.pages import limited_client

SESSION = "fql_session"


def _set_cookie(response_headers: list[tuple[str, str]], name: str) -> str:
    for key, value in response_headers:
        if key.lower() == "set-cookie" and value.startswith(f"{name}="):
            return value
    raise AssertionError(f"no {name} cookie set")


def _signed_in_as(client: TestClient, cookie: str | None = None) -> bool:
    """Whether /review answers the page (True) or sends to the sign-in form (False)."""
    headers = {"Cookie": f"{SESSION}={cookie}"} if cookie is not None else {}
    jar = client.cookies
    client.cookies = {}  # type: ignore[assignment]
    try:
        r = client.get("/review", headers=headers, follow_redirects=False)
    finally:
        client.cookies = jar
    if r.status_code == 303:
        assert r.headers["location"].startswith("/review/login")
        return False
    assert r.status_code == 200, r.text[:300]
    return True


def test_sign_in_sets_a_random_server_side_session_and_sign_out_ends_it(
    client: TestClient, session_factory: sessionmaker[Session], editor_account: Account
) -> None:
    assert not _signed_in_as(client)
    r = sign_in(client, editor_account)
    assert r.status_code == 303 and r.headers["location"] == "/review"
    cookie = _set_cookie(r.headers.multi_items(), SESSION)
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert "secure" not in flags  # plain http in tests; https sets Secure
    token = client.cookies[SESSION]
    assert len(token) >= 43 and not token.startswith("fql_")  # 256 random bits, not a key
    with session_factory() as s:
        stored = list(s.scalars(select(UserSession.token_hash)))
    assert stored == [hash_token(token)]  # only the hash is kept
    assert _signed_in_as(client, token)

    # Every /review answer: a strict CSP, no framing, no caching.
    page = client.get("/review")
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    login_page = client.get("/review/login")
    assert login_page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in login_page.headers["content-security-policy"]

    # Sign-out ends the session on the server: the old id no longer works anywhere.
    out = client.post("/review/logout", data={"csrf": csrf_token(token)}, follow_redirects=False)
    assert out.status_code == 303
    assert not _signed_in_as(client, token)
    with session_factory() as s:
        assert s.scalar(select(func.count(UserSession.id))) == 0
        actions = list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    assert actions[-2:] == ["login", "logout"]


def test_login_without_its_csrf_token_is_refused(
    client: TestClient, editor_account: Account
) -> None:
    form = {"email": editor_account.email, "password": editor_account.password, "next": "/review"}
    # A cross-site form: no pre-sign-in cookie, no token.
    r = client.post("/review/login", data=form, follow_redirects=False)
    assert r.status_code == 403 and SESSION not in r.headers.get("set-cookie", "")
    # The attacker's token with the victim's own pre-sign-in cookie does not match.
    token = login_csrf(client)
    other = TestClient(client.app)
    attacker_token = login_csrf(other)
    assert attacker_token != token
    r = client.post("/review/login", data={**form, "csrf": attacker_token}, follow_redirects=False)
    assert r.status_code == 403 and SESSION not in r.headers.get("set-cookie", "")
    # A matching pair sent from another site (Origin / Sec-Fetch-Site) is refused too.
    token = login_csrf(client)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
        r = client.post(
            "/review/login", data={**form, "csrf": token}, headers=headers, follow_redirects=False
        )
        assert r.status_code == 403 and SESSION not in r.headers.get("set-cookie", "")
    assert SESSION not in client.cookies
    # The same form from this site signs in.
    r = client.post(
        "/review/login",
        data={**form, "csrf": login_csrf(client)},
        headers={"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and SESSION in client.cookies


def test_session_fixation_is_refused(
    client: TestClient, session_factory: sessionmaker[Session], editor_account: Account
) -> None:
    attacker = make_account(session_factory, email="mallory@example.com", name="Mallory")
    attacker_client = TestClient(client.app)
    signed_in(attacker_client, attacker)
    planted = attacker_client.cookies[SESSION]
    # The victim's browser carries the attacker's session id (and a made-up one) at sign-in.
    for brought in (planted, "chosen-by-the-attacker-" + "x" * 30):
        client.cookies.clear()
        client.cookies.set(SESSION, brought)
        r = sign_in(client, editor_account)
        assert r.status_code == 303
        fresh = _set_cookie(r.headers.multi_items(), SESSION).split(";")[0].split("=", 1)[1]
        assert fresh != brought and _signed_in_as(client, fresh)
        # The id the browser brought is never upgraded to the victim's session.
        assert not _signed_in_as(client, brought)
        client.cookies.clear()
    with session_factory() as s:
        hashes = set(s.scalars(select(UserSession.token_hash)))
    assert hash_token(planted) not in hashes


def test_session_cookie_is_never_a_bearer_token(
    client: TestClient, editor_account: Account, editor_headers: dict[str, str]
) -> None:
    signed_in(client, editor_account)
    token = client.cookies[SESSION]
    bare = TestClient(client.app)
    bearer = {"Authorization": f"Bearer {token}"}
    for method, url in (("GET", "/review"), ("GET", "/v1/faqs"), ("GET", "/v1/audit")):
        r = bare.request(method, url, headers=bearer, follow_redirects=False)
        assert r.status_code == 401, (url, r.status_code)
    # API keys still work as Bearer tokens, on the API and the review pages.
    assert bare.get("/v1/faqs", headers=editor_headers).status_code == 200
    assert bare.get("/review", headers=editor_headers).status_code == 200


def test_disabling_the_account_or_a_new_password_ends_its_sessions_at_once(
    client: TestClient, session_factory: sessionmaker[Session], editor_account: Account
) -> None:
    signed_in(client, editor_account)
    token = client.cookies[SESSION]
    with session_scope(session_factory) as s:
        set_password(s, editor_account.email, "a brand new password", actor=Actor("admin"))
    assert not _signed_in_as(client, token)
    new = Account(editor_account.email, editor_account.name, "editor", "a brand new password")
    signed_in(client, new)
    token = client.cookies[SESSION]
    assert _signed_in_as(client, token)
    with session_scope(session_factory) as s:
        set_active(s, editor_account.email, False, actor=Actor("admin"))
    assert not _signed_in_as(client, token)
    # A disabled account cannot sign in again (same answer as a wrong password).
    r = sign_in(client, new)
    assert r.status_code == 401 and SESSION not in r.headers.get("set-cookie", "")


def test_sessions_expire_when_idle_and_at_the_absolute_limit(
    client: TestClient, session_factory: sessionmaker[Session], editor_account: Account
) -> None:
    settings: Settings = client.app.state.services.settings
    signed_in(client, editor_account)
    token = client.cookies[SESSION]
    idle = timedelta(minutes=settings.session_idle_minutes)
    with session_scope(session_factory) as s:
        s.execute(update(UserSession).values(last_seen_at=utcnow() - idle - timedelta(seconds=5)))
    assert not _signed_in_as(client, token)
    signed_in(client, editor_account)
    token = client.cookies[SESSION]
    # Active all along, but signed in longer ago than the absolute limit.
    limit = timedelta(hours=settings.session_max_hours)
    with session_scope(session_factory) as s:
        s.execute(update(UserSession).values(created_at=utcnow() - limit - timedelta(seconds=5)))
    assert not _signed_in_as(client, token)
    with session_factory() as s:
        assert s.scalar(select(func.count(UserSession.id))) == 0  # expired sessions deleted


def test_sign_in_is_case_insensitive_and_failures_are_recorded(
    client: TestClient, session_factory: sessionmaker[Session], editor_account: Account
) -> None:
    r = sign_in(client, editor_account, password="wrong password!")
    assert r.status_code == 401
    unknown = Account("nobody@example.com", "Nobody", "editor", "whatever pw")
    r2 = sign_in(client, unknown)
    assert r2.status_code == 401
    shouting = Account(editor_account.email.upper(), "", "editor", editor_account.password)
    # Over HTTPS the session cookie is Secure.
    https = TestClient(client.app, base_url="https://testserver")
    r3 = sign_in(https, shouting)
    assert r3.status_code == 303
    flags = [p.strip().lower() for p in _set_cookie(r3.headers.multi_items(), SESSION).split(";")]
    assert "secure" in flags and "httponly" in flags
    with session_factory() as s:
        events = list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    failed = [e for e in events if e.action == "login.failed"]
    assert [e.target_id for e in failed] == [editor_account.email, "nobody@example.com"]
    assert events[-1].action == "login" and events[-1].actor_kind == "user"
    assert editor_account.name in events[-1].actor


def test_sign_in_attempts_are_limited_per_account_and_per_address(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> None:
    account = make_account(session_factory)
    with limited_client(
        settings, embedder, login_rate_limit=2, login_rate_limit_ip=3, login_rate_window=600
    ) as c:
        for _ in range(2):
            assert sign_in(c, account, password="wrong password!").status_code == 401
        # The account's budget is spent: even the right password waits.
        r = sign_in(c, account)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert SESSION not in c.cookies
        # Another account from the same address: the address's budget (3) is spent now too.
        other = make_account(session_factory, email="other@example.com", name="Other")
        assert sign_in(c, other).status_code == 429
