"""Editor accounts for tests: create one in the database, sign a TestClient in as it."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker

from kb.audit import Actor
from kb.auth.users import create_user
from kb.db import session_scope
from tests.support.html_dom import parse

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Account:
    email: str
    name: str
    role: str
    password: str


def make_account(
    session_factory: sessionmaker[Session],
    *,
    email: str = "editor@example.com",
    name: str = "Erika Editor",
    role: str = "editor",
    password: str = PASSWORD,
) -> Account:
    """An active account in the test database."""
    with session_scope(session_factory) as s:
        create_user(s, email=email, name=name, role=role, password=password, actor=Actor("tests"))
    return Account(email=email.lower(), name=name, role=role, password=password)


def login_csrf(client: TestClient, path: str = "/review/login") -> str:
    """Open the sign-in form (setting its pre-sign-in cookie); the form's CSRF token."""
    r = client.get(path)
    assert r.status_code == 200, r.text[:300]
    field = parse(r.text).one("input", name="csrf")
    return field.attrs["value"] or ""


def sign_in(
    client: TestClient, account: Account, *, next_url: str = "/review", password: str | None = None
) -> Response:
    """Sign in through the form as a browser would; the answer (not followed)."""
    token = login_csrf(client)
    return client.post(
        "/review/login",
        data={
            "email": account.email,
            "password": account.password if password is None else password,
            "csrf": token,
            "next": next_url,
        },
        follow_redirects=False,
    )


def signed_in(client: TestClient, account: Account, next_url: str = "/review") -> TestClient:
    """`client` signed in as `account` (its session cookie kept in the client)."""
    r = sign_in(client, account, next_url=next_url)
    assert r.status_code == 303, r.text[:500]
    assert r.headers["location"] == next_url
    return client
