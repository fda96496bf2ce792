"""/v1/webhooks: admins register, list and remove webhooks and read the delivery log;
other roles are refused, bad input is a 4xx with a reason, secrets are shown once and
the changes are in the audit trail. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kb.auth.keys import create_key
from kb.db import session_scope
from kb.models import AuditEvent
from kb.notify.delivery import DeliveryPolicy, deliver_due, verify
from tests.notify.receiver import receiver


@pytest.fixture
def admin_headers(session_factory: sessionmaker[Session]) -> dict[str, str]:
    with session_scope(session_factory) as s:
        _, secret = create_key(s, role="admin", name="ops admin key")
    return {"Authorization": f"Bearer {secret}"}


def test_only_admins_manage_webhooks(
    client: TestClient,
    editor_headers: dict[str, str],
    agent_headers: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    body = {"url": "https://hooks.example.com/x", "events": ["flag.raised"]}
    assert client.post("/v1/webhooks", json=body).status_code == 401
    for headers in (editor_headers, agent_headers):
        r = client.post("/v1/webhooks", json=body, headers=headers)
        assert r.status_code == 403, r.text
        assert client.get("/v1/webhooks", headers=headers).status_code == 403
        assert client.delete("/v1/webhooks/1", headers=headers).status_code == 403
        assert client.get("/v1/webhooks/1/deliveries", headers=headers).status_code == 403
    assert client.get("/v1/webhooks", headers=admin_headers).json() == []


@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example.com/x",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "hooks.example.com/x",
        "http://",
        "https://user:pass@hooks.example.com/x",
        "http://exa mple.com/x",
        "",
    ],
)
def test_a_bad_url_is_422_with_a_reason(
    client: TestClient, admin_headers: dict[str, str], url: str
) -> None:
    r = client.post(
        "/v1/webhooks", json={"url": url, "events": ["flag.raised"]}, headers=admin_headers
    )
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation_error"
    assert r.json()["detail"][0]["loc"][-1] == "url"
    assert client.get("/v1/webhooks", headers=admin_headers).json() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://h.example.com", "events": []}, "events"),
        ({"url": "https://h.example.com", "events": ["draft.created"]}, "events"),
        (
            {"url": "https://h.example.com", "events": ["flag.raised"], "min_demand": 0},
            "min_demand",
        ),
        ({"url": "https://h.example.com", "events": ["flag.raised"], "secret": "short"}, "secret"),
        ({"url": "https://h.example.com", "events": ["flag.raised"], "extra": 1}, "extra"),
    ],
)
def test_other_bad_input_is_422(
    client: TestClient,
    admin_headers: dict[str, str],
    body: dict,
    field: str,  # type: ignore[type-arg]
) -> None:
    r = client.post("/v1/webhooks", json=body, headers=admin_headers)
    assert r.status_code == 422, r.text
    assert field in [str(p) for p in r.json()["detail"][0]["loc"]]


def test_register_list_deliver_and_remove_a_webhook(
    client: TestClient,
    admin_headers: dict[str, str],
    editor_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    with receiver(script=[500]) as r:
        created = client.post(
            "/v1/webhooks",
            json={
                "url": r.url,
                "events": ["article.published", "flag.raised"],
                "description": "team chat",
            },
            headers=admin_headers,
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        secret = hook["secret"]
        assert secret.startswith("whsec_") and len(secret) > 40
        assert hook["events"] == ["flag.raised", "article.published"]
        assert hook["min_demand"] == 5  # FAQLOOP_WEBHOOK_DRAFT_MIN_DEMAND
        assert hook["created_by"] == "ops admin key"
        # The secret is never shown again.
        listed = client.get("/v1/webhooks", headers=admin_headers)
        assert listed.status_code == 200 and secret not in listed.text
        assert [h["id"] for h in listed.json()] == [hook["id"]]
        one = client.get(f"/v1/webhooks/{hook['id']}", headers=admin_headers)
        assert one.status_code == 200 and "secret" not in one.json()

        # An editor publishes an article through the API: the event is delivered.
        article = client.post(
            "/v1/faqs",
            json={
                "question": "Can I pause my plan while abroad?",
                "answer": "Yes: choose Pause in My Sorami before you leave.",
                "category": "plans",
                "lang": "en",
            },
            headers=editor_headers,
        )
        assert article.status_code == 201, article.text
        policy = DeliveryPolicy(max_attempts=3, backoff_seconds=0.05, timeout=2.0)
        assert deliver_due(session_factory, policy).retrying == 1
        log = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=admin_headers).json()
        (item,) = log["items"]
        assert (item["status"], item["attempts"], item["last_status_code"]) == ("pending", 1, 500)
        assert item["event"] == "article.published" and item["next_attempt_at"] is not None
        time.sleep(0.1)
        assert deliver_due(session_factory, policy).delivered == 1
    got = r.requests[-1]
    assert verify(
        secret, got.headers["x-faqloop-timestamp"], got.body, got.headers["x-faqloop-signature"]
    )
    log = client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=admin_headers).json()
    (item,) = log["items"]
    assert (item["status"], item["attempts"], item["last_status_code"]) == ("delivered", 2, 200)
    assert item["last_error"] is None and item["next_attempt_at"] is None
    assert (log["total"], log["next_offset"]) == (1, None)
    only_failed = client.get(
        f"/v1/webhooks/{hook['id']}/deliveries?status=failed", headers=admin_headers
    )
    assert only_failed.json()["items"] == []
    bad = client.get(f"/v1/webhooks/{hook['id']}/deliveries?status=lost", headers=admin_headers)
    assert bad.status_code == 422

    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=admin_headers).status_code == 204
    assert client.get("/v1/webhooks", headers=admin_headers).json() == []
    for path in (f"/v1/webhooks/{hook['id']}", f"/v1/webhooks/{hook['id']}/deliveries"):
        assert client.get(path, headers=admin_headers).status_code == 404
    assert client.delete(f"/v1/webhooks/{hook['id']}", headers=admin_headers).status_code == 404

    with session_factory() as s:
        events = list(
            s.scalars(
                select(AuditEvent)
                .where(AuditEvent.target_type == "webhook")
                .order_by(AuditEvent.id)
            )
        )
    assert [(e.action, e.actor) for e in events] == [
        ("webhook.create", "ops admin key"),
        ("webhook.delete", "ops admin key"),
    ]
    # The audit trail names the host only: chat tools put a secret in the URL's path.
    assert events[0].after is not None and events[0].after["url"] == r.url.replace("/hook", "/…")
    assert events[0].after["events"] == ["flag.raised", "article.published"]
    assert secret not in str(events[0].after) and secret not in str(events[1].before)


def test_the_openapi_schema_documents_the_webhook_endpoints(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    create = paths["/v1/webhooks"]["post"]
    assert create["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "WebhookCreated"
    )
    assert {"401", "403", "422"} <= set(create["responses"])
    assert {"401", "403", "404"} <= set(paths["/v1/webhooks/{webhook_id}"]["delete"]["responses"])
    log = paths["/v1/webhooks/{webhook_id}/deliveries"]["get"]["responses"]
    assert log["200"]["content"]["application/json"]["schema"]["$ref"].endswith("DeliveryPage")
