"""The audit trail: recorded in the caller's transaction, read by admins through
GET /v1/audit (filters, pages) and /review/audit; editorial actions land in it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from kb.audit import Actor, list_events, record_action
from kb.auth.keys import create_key
from kb.db import session_scope
from kb.errors import InvalidInput
from kb.models import AuditEvent, utcnow
from tests.support.accounts import make_account, signed_in
from tests.support.html_dom import parse


def _admin_headers(session_factory: sessionmaker[Session]) -> dict[str, str]:
    with session_scope(session_factory) as s:
        _, secret = create_key(s, role="admin", name="ops robot")
    return {"Authorization": f"Bearer {secret}"}


def test_an_event_commits_or_rolls_back_with_its_change(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as s:
        record_action(s, actor=Actor("Ann <ann@example.com>", "user"), action="faq.update",
                      target="faq:7", before={"answer": "x" * 5000}, after={"n": 1})  # fmt: skip
        s.rollback()
        assert s.scalar(select(func.count(AuditEvent.id))) == 0
        record_action(s, actor="cron", action="flag.dismiss", target="flag:3")
        s.commit()
    with session_factory() as s:
        event = s.scalar(select(AuditEvent))
        assert event is not None
        assert (event.actor, event.actor_kind, event.target_type, event.target_id) == (
            "cron", "system", "flag", "3"
        )  # fmt: skip
        record_action(s, actor=Actor("Ann", "user"), action="faq.update", target="faq:7",
                      before={"answer": "x" * 5000, "when": utcnow()})  # fmt: skip
        s.commit()
        page = list_events(s, actor="ANN")
        assert page.total == 1 and page.events[0].actor_kind == "user"
        before = page.events[0].before
        assert before is not None and len(before["answer"]) < 600  # long texts shortened
        with pytest.raises(InvalidInput):
            list_events(s, limit=0)
        with pytest.raises(InvalidInput):
            list_events(s, since=utcnow(), until=utcnow() - timedelta(days=1))


def test_v1_audit_is_for_admins_and_filters_and_pages(
    client: TestClient,
    session_factory: sessionmaker[Session],
    agent_headers: dict[str, str],
    editor_headers: dict[str, str],
) -> None:
    admin = _admin_headers(session_factory)
    assert client.get("/v1/audit").status_code == 401
    assert client.get("/v1/audit").json()["error"] == "unauthorized"
    assert client.get("/v1/audit", headers=agent_headers).status_code == 403
    assert client.get("/v1/audit", headers=editor_headers).status_code == 403
    with session_scope(session_factory) as s:
        for i in range(7):
            record_action(s, actor=Actor(f"Editor {i % 2}", "user"), action="draft.publish",
                          target=f"draft:{i}", after={"status": "published"})  # fmt: skip
        record_action(s, actor=Actor("bot", "key"), action="faq.update", target="faq:12")
    r = client.get("/v1/audit", headers=admin)
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["total"] == 8 and body["items"][0]["action"] == "faq.update"
    assert body["items"][0]["target"] == "faq:12" and body["items"][0]["actor_kind"] == "key"
    assert body["next_offset"] is None
    r = client.get("/v1/audit", params={"actor": "editor 1", "limit": 2}, headers=admin).json()
    assert r["total"] == 3 and len(r["items"]) == 2 and r["next_offset"] == 2
    rest = client.get(
        "/v1/audit", params={"actor": "editor 1", "limit": 2, "offset": 2}, headers=admin
    ).json()
    assert len(rest["items"]) == 1 and rest["next_offset"] is None
    seen = {e["id"] for e in r["items"]} | {e["id"] for e in rest["items"]}
    assert len(seen) == 3
    assert client.get("/v1/audit", params={"target": "draft:3"}, headers=admin).json()["total"] == 1
    assert client.get("/v1/audit", params={"target": "draft"}, headers=admin).json()["total"] == 7
    assert (
        client.get("/v1/audit", params={"action": "faq.update"}, headers=admin).json()["total"] == 1
    )
    future = (utcnow() + timedelta(hours=1)).isoformat()
    assert client.get("/v1/audit", params={"since": future}, headers=admin).json()["total"] == 0
    assert client.get("/v1/audit", params={"until": future}, headers=admin).json()["total"] == 8
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"since": "yesterday"}):
        r = client.get("/v1/audit", params=bad, headers=admin)
        assert 400 <= r.status_code < 500 and "error" in r.json(), bad
    r = client.get("/v1/audit", params={"since": future, "until": "2020-01-01"}, headers=admin)
    assert r.status_code == 400 and r.json()["error"] == "invalid_input"
    assert "/v1/audit" in client.get("/openapi.json").json()["paths"]


def test_admin_session_reads_the_trail_and_editor_actions_are_recorded(
    client: TestClient,
    session_factory: sessionmaker[Session],
    agent_headers: dict[str, str],
    editor_headers: dict[str, str],
) -> None:
    # An API key's edit of an article is recorded with its name, before and after.
    faq = client.get("/v1/faqs", headers=agent_headers).json()["items"][0]
    full = client.get(f"/v1/faqs/{faq['id']}", headers=agent_headers).json()
    r = client.put(
        f"/v1/faqs/{faq['id']}",
        json={
            "question": full["question"],
            "answer": "Updated. " + full["answer"],
            "category": full["category"],
            "lang": full["lang"],
        },
        headers=editor_headers,
    )
    assert r.status_code == 200, r.text
    created = client.post(
        "/v1/faqs",
        json={"question": "How do I export my audit log?", "answer": "Ask an admin.",
              "category": "account", "lang": "en"},
        headers=editor_headers,
    )  # fmt: skip
    assert created.status_code == 201, created.text

    admin = make_account(session_factory, email="ada@example.com", name="Ada Admin", role="admin")
    signed_in(client, admin, "/review/audit")
    r = client.get("/v1/audit", params={"target": f"faq:{faq['id']}"})  # the session cookie
    assert r.status_code == 200
    event = r.json()["items"][0]
    assert event["action"] == "faq.update" and event["actor"] == "test editor"
    assert event["before"]["revision"] + 1 == event["after"]["revision"]
    assert event["after"]["answer"].startswith("Updated. ")
    assert not event["before"]["answer"].startswith("Updated. ")
    r = client.get("/v1/audit", params={"action": "faq.create"}).json()
    assert r["items"][0]["target"] == f"faq:{created.json()['id']}"

    page = parse(client.get("/review/audit", params={"action": "faq.update"}).text)
    rows = page.find_all("tr", class_="event")
    assert len(rows) == 1 and "test editor" in rows[0].text
    page = parse(client.get("/review/audit").text)
    actors = [row.one("td", class_="actor").text for row in page.find_all("tr", class_="event")]
    assert any("Ada Admin" in a for a in actors)  # the sign-in
    assert client.get("/review/audit", params={"since": "not a date"}).status_code == 400
