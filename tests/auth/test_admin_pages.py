"""Admin pages: people and API keys managed from /review/admin, gated by the admin role,
every change a CSRF-protected form recorded in the audit trail."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.auth.editor_session import csrf_token
from kb.models import AuditEvent, User
from tests.support.accounts import Account, make_account, sign_in, signed_in
from tests.support.html_dom import parse

SESSION = "fql_session"


def _csrf(client: TestClient) -> str:
    return csrf_token(client.cookies[SESSION])


def test_admin_pages_are_for_admins_only(
    client: TestClient, session_factory: sessionmaker[Session], editor_account: Account
) -> None:
    for url in ("/review/admin/users", "/review/admin/keys", "/review/audit"):
        r = client.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
    signed_in(client, editor_account)
    for url in ("/review/admin/users", "/review/admin/keys", "/review/audit"):
        assert client.get(url).status_code == 403, url
    r = client.post(
        "/review/admin/users",
        data={
            "email": "x@example.com",
            "name": "X",
            "role": "admin",
            "password": "p" * 12,
            "csrf": _csrf(client),
        },
    )
    assert r.status_code == 403
    with session_factory() as s:
        assert s.scalar(select(User).where(User.email == "x@example.com")) is None


def test_admin_creates_disables_and_restores_an_editor(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    admin = make_account(session_factory, email="ada@example.com", name="Ada Admin", role="admin")
    signed_in(client, admin, "/review/admin/users")
    form = {
        "email": "New.Editor@Example.com",
        "name": "Nina Neu",
        "role": "editor",
        "password": "first password 1",
    }
    # Without the form's token: refused, nothing created.
    assert client.post("/review/admin/users", data=form).status_code == 403
    r = client.post(
        "/review/admin/users", data={**form, "csrf": _csrf(client)}, follow_redirects=False
    )
    assert r.status_code == 303
    page = parse(client.get(r.headers["location"]).text)
    row = next(
        n for n in page.find_all("tr") if n.attrs.get("data-email") == "new.editor@example.com"
    )
    assert "Nina Neu" in row.text
    # The same address in another case is taken.
    r = client.post(
        "/review/admin/users",
        data={**form, "email": "NEW.EDITOR@example.com", "csrf": _csrf(client)},
    )
    assert r.status_code == 409
    # Bad input is a 400 with the reason, the form kept.
    r = client.post("/review/admin/users", data={**form, "email": "nope", "csrf": _csrf(client)})
    assert r.status_code == 400 and "email" in r.text
    short = {**form, "email": "b@example.com", "password": "short", "csrf": _csrf(client)}
    r = client.post("/review/admin/users", data=short)
    assert r.status_code == 400

    editor = TestClient(client.app)
    nina = Account("new.editor@example.com", "Nina Neu", "editor", "first password 1")
    signed_in(editor, nina)
    assert editor.get("/review", follow_redirects=False).status_code == 200

    with session_factory() as s:
        nina_id = s.scalar(select(User.id).where(User.email == "new.editor@example.com"))
        admin_id = s.scalar(select(User.id).where(User.email == "ada@example.com"))
    r = client.post(
        f"/review/admin/users/{nina_id}/disable",
        data={"csrf": _csrf(client)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert editor.get("/review", follow_redirects=False).status_code == 303  # session ended
    assert sign_in(TestClient(client.app), nina).status_code == 401
    # The last active admin cannot disable themself or step down.
    r = client.post(f"/review/admin/users/{admin_id}/disable", data={"csrf": _csrf(client)})
    assert r.status_code == 409
    r = client.post(
        f"/review/admin/users/{admin_id}/role", data={"role": "editor", "csrf": _csrf(client)}
    )
    assert r.status_code == 409
    r = client.post(f"/review/admin/users/{nina_id}/enable", data={"csrf": _csrf(client)})
    assert r.status_code == 200
    r = client.post(
        f"/review/admin/users/{nina_id}/role", data={"role": "admin", "csrf": _csrf(client)}
    )
    assert r.status_code == 200
    assert (
        client.post("/review/admin/users/999999/disable", data={"csrf": _csrf(client)}).status_code
        == 404
    )

    with session_factory() as s:
        events = list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    mine = [(e.action, e.target_id) for e in events if e.actor.startswith("Ada Admin")]
    assert mine == [
        ("login", "ada@example.com"),
        ("user.create", "new.editor@example.com"),
        ("user.disable", "new.editor@example.com"),
        ("user.enable", "new.editor@example.com"),
        ("user.role", "new.editor@example.com"),
    ]
    created = next(
        e for e in events if e.action == "user.create" and e.target_id == "new.editor@example.com"
    )
    assert created.actor_kind == "user" and created.after is not None
    assert created.after["name"] == "Nina Neu" and "password" not in str(created.after)


def test_admin_creates_and_revokes_api_keys(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    admin = make_account(session_factory, email="ada@example.com", name="Ada Admin", role="admin")
    signed_in(client, admin, "/review/admin/keys")
    r = client.post(
        "/review/admin/keys", data={"name": "chat bot", "role": "agent", "csrf": _csrf(client)}
    )
    assert r.status_code == 201
    secret = parse(r.text).by_id("new-key")
    assert secret is not None
    key = secret.one("code").text.strip()
    assert key.startswith("fql_")
    api = TestClient(client.app)
    assert api.get("/v1/faqs", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    # The key is never shown again.
    assert key not in client.get("/review/admin/keys").text
    assert (
        client.post(
            "/review/admin/keys", data={"name": "x", "role": "root", "csrf": _csrf(client)}
        ).status_code
        == 400
    )
    with session_factory() as s:
        key_id = s.scalar(select(AuditEvent.target_id).where(AuditEvent.action == "key.create"))
    r = client.post(f"/review/admin/keys/{key_id}/revoke", data={"csrf": "forged"})
    assert r.status_code == 403
    r = client.post(
        f"/review/admin/keys/{key_id}/revoke", data={"csrf": _csrf(client)}, follow_redirects=False
    )
    assert r.status_code == 303
    assert api.get("/v1/faqs", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    with session_factory() as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.target_type == "key")))
    assert actions == ["key.create", "key.revoke"]
