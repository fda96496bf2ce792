"""The JSON API through the real app: suggest, FAQ CRUD with revisions, keys, bad input."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from kb.models import FaqEntry, FaqRevision, Suggestion


def _count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_healthz_reports_the_loaded_index(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ready"
    assert body["index"]["entries"] >= 80 and body["index"]["generation"] >= 1


def test_suggest_finds_the_faq_and_records_the_suggestion(
    client: TestClient, agent_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    r = client.post(
        "/v1/suggest",
        json={"text": "I forgot my password and can't get into My Sorami, help?"},
        headers=agent_headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lang"] == "en" and not body["abstained"]
    assert body["best"] == body["candidates"][0]
    assert "password" in body["best"]["title"].lower()
    assert body["best"]["url"] == f"http://testserver/faq/{body['best']['slug']}"
    assert 0.0 <= body["confidence"] <= 1.0 and len(body["candidates"]) == 5
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True)
    with session_factory() as s:
        row = s.get(Suggestion, body["suggestion_id"])
        assert row is not None and row.best_faq_id == body["best"]["faq_id"]


def test_suggest_in_japanese_returns_japanese_articles(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    r = client.post(
        "/v1/suggest",
        json={"text": "パスワードを忘れてログインできません", "k": 3},
        headers=agent_headers,
    )
    body = r.json()
    assert body["lang"] == "ja" and len(body["candidates"]) == 3
    assert all(c["slug"].endswith("-ja") for c in body["candidates"])


def test_everyday_chatter_abstains(client: TestClient, agent_headers: dict[str, str]) -> None:
    for text in ("lunch was great today", "今日は暑いね", "good morning everyone!"):
        body = client.post("/v1/suggest", json={"text": text}, headers=agent_headers).json()
        assert body["abstained"] is True, (text, body["confidence"])
        assert body["best"] is None


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"text": ""}, 400),
        ({"text": "   \n\t "}, 400),
        ({"text": "x" * 5001}, 400),
        ({"text": "hello", "lang": "xx"}, 422),
        ({"text": "hello", "k": 0}, 400),
        ({"text": "hello", "k": 51}, 400),
        ({"text": "hello", "unknown": 1}, 422),
        ({"lang": "en"}, 422),
    ],
)
def test_bad_suggest_input_is_refused_and_stores_nothing(
    client: TestClient,
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    payload: dict[str, object],
    status: int,
) -> None:
    r = client.post("/v1/suggest", json=payload, headers=agent_headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] and r.json()["detail"]
    assert _count(session_factory, Suggestion) == 0


def test_invalid_json_is_a_clear_400(client: TestClient, agent_headers: dict[str, str]) -> None:
    r = client.post(
        "/v1/suggest",
        content=b'{"text": "hi"',
        headers={**agent_headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"


def test_keys_are_required_and_roles_enforced(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    r = client.post("/v1/suggest", json={"text": "hi"})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = client.post("/v1/suggest", json={"text": "hi"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    # Without a key, the key is what is refused, whatever the body.
    r = client.post("/v1/suggest", json={"k": "x"})
    assert r.status_code == 401 and "missing API key" in r.json()["detail"]
    r = client.post("/v1/suggest", json={"text": "hi"}, headers={"Authorization": "Bearer  "})
    assert r.status_code == 401
    r = client.post(
        "/v1/faqs",
        json={"question": "q?", "answer": "a", "category": "billing", "lang": "en"},
        headers=agent_headers,
    )
    assert r.status_code == 403 and r.json()["error"] == "forbidden"


NEW_FAQ = {
    "question": "Can I keep my Sorami number when I travel to the moon?",
    "answer": "Lunar roaming is not available yet. **We will tell you** when it is.",
    "category": "plans",
    "lang": "en",
    "phrasings": ["moon roaming", "use my phone on the moon"],
}


def test_created_faq_is_searchable_when_the_call_returns(
    client: TestClient,
    editor_headers: dict[str, str],
    agent_headers: dict[str, str],
) -> None:
    r = client.post("/v1/faqs", json=NEW_FAQ, headers=editor_headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["slug"] == "can-i-keep-my-sorami-number-when-i-travel-to-the-moon"
    r = client.post(
        "/v1/suggest",
        json={"text": "will my phone work on the moon lol", "k": 3},
        headers=agent_headers,
    )
    assert r.json()["candidates"][0]["faq_id"] == created["id"]
    got = client.get(f"/v1/faqs/{created['id']}", headers=agent_headers).json()
    assert got["answer"] == NEW_FAQ["answer"]
    assert [p["text"] for p in got["phrasings"]] == NEW_FAQ["phrasings"]
    assert [r["number"] for r in got["revisions"]] == [1]


def test_put_makes_a_new_revision_and_reindexes(
    client: TestClient,
    editor_headers: dict[str, str],
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    faq_id = client.post("/v1/faqs", json=NEW_FAQ, headers=editor_headers).json()["id"]
    update = {
        **NEW_FAQ,
        "question": "Does my plan work in Antarctica?",
        "phrasings": ["south pole coverage"],
        "reason": "topic changed",
    }
    r = client.put(f"/v1/faqs/{faq_id}", json=update, headers=editor_headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(rev["number"], rev["question"]) for rev in body["revisions"]] == [
        (1, NEW_FAQ["question"]),
        (2, "Does my plan work in Antarctica?"),
    ]
    assert body["revisions"][1]["reason"] == "topic changed"
    assert body["question"] == "Does my plan work in Antarctica?" and body["revision"] == 2
    r = client.post(
        "/v1/suggest",
        json={"text": "is there coverage at the south pole in antarctica?", "k": 1},
        headers=agent_headers,
    )
    assert r.json()["candidates"][0]["faq_id"] == faq_id
    with session_factory() as s:
        assert s.scalar(select(func.count()).where(FaqRevision.entry_id == faq_id)) == 2


def test_faq_write_errors(
    client: TestClient, editor_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    before = _count(session_factory, FaqEntry)
    r = client.post("/v1/faqs", json={**NEW_FAQ, "question": " "}, headers=editor_headers)
    assert r.status_code == 400
    r = client.post("/v1/faqs", json={**NEW_FAQ, "lang": "xx"}, headers=editor_headers)
    assert r.status_code == 422
    r = client.put("/v1/faqs/99999", json=NEW_FAQ, headers=editor_headers)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    client.post("/v1/faqs", json={**NEW_FAQ, "slug": "moon"}, headers=editor_headers)
    r = client.post("/v1/faqs", json={**NEW_FAQ, "slug": "moon"}, headers=editor_headers)
    assert r.status_code == 409
    assert _count(session_factory, FaqEntry) == before + 1


def test_list_and_filter_faqs(client: TestClient, agent_headers: dict[str, str]) -> None:
    body = client.get("/v1/faqs?lang=ja&limit=500", headers=agent_headers).json()
    assert body["total"] >= 40 and all(item["lang"] == "ja" for item in body["items"])
    one = client.get(f"/v1/faqs/{body['items'][0]['id']}", headers=agent_headers).json()
    assert set(one["translations"]) == {"en"}
    r = client.get("/v1/faqs?lang=xx", headers=agent_headers)
    assert r.status_code == 422


def test_site_serves_home_article_and_404(client: TestClient) -> None:
    home = client.get("/?lang=ja")
    assert home.status_code == 200 and "ヘルプセンター" in home.text
    r = client.get("/faq/does-not-exist")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert client.get("/docs").status_code == 200
    assert "/v1/suggest" in client.get("/openapi.json").json()["paths"]
