"""Threads and drafts through the real app: ingest, review queue, publish/merge/reject, and
the editor's HTML pages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from kb.models import FaqDraft, QuestionPhrasing, Thread, ThreadPost
from tests.support.accounts import make_account, sign_in
from tests.support.html_dom import parse

PASSWORD = "@SoramiMobile My Soramiのパスワードを忘れたのでログインできない😭"
POINTS = [
    "@SoramiMobile ソラミポイントって何に使えますか？",
    "ソラミポイントの使い道を教えてください🙏",
]
POINTS_ANSWER = (
    "こんにちは！ソラミサポートの中野です。ソラミポイントは1ポイント1円として月々のご利用料金の"
    "お支払いに使えます。よろしくお願いいたします。^中野"
)
SHOP = "渋谷店の営業時間を教えてください"
WATCH = "Can I use my Apple Watch with a Sorami cellular plan?"


def body(
    external_id: str, question: str, answer: str = "ご案内します。", **extra: Any
) -> dict[str, Any]:
    return {
        "channel": "x",
        "external_id": external_id,
        "url": f"https://x.com/i/status/{external_id}",
        "resolved_at": "2026-11-20T10:00:00+09:00",
        "posts": [
            {
                "role": "customer",
                "author": "@cust",
                "text": question,
                "created_at": "2026-11-20T09:00:00+09:00",
            },
            {"role": "agent", "author": "@SoramiSupport", "text": answer},
        ],
        **extra,
    }


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def test_ingest_is_idempotent_and_the_covering_faq_learns_the_question(
    client: TestClient, agent_headers: dict[str, str], session_factory: sessionmaker[Session]
) -> None:
    r = client.post("/v1/threads", json=body("1", PASSWORD), headers=agent_headers)
    assert r.status_code == 201, r.text
    filed = r.json()
    assert filed["created"] and filed["status"] == "covered" and filed["lang"] == "ja"
    assert filed["question"] == "My Soramiのパスワードを忘れたのでログインできない"
    faq = client.get(f"/v1/faqs/{filed['faq_id']}", headers=agent_headers).json()
    assert faq["slug"] == "reset-password-ja"
    assert {"text": filed["question"], "source": "thread"} in [
        {"text": p["text"], "source": p["source"]} for p in faq["phrasings"]
    ]
    # Searchable at once: the phrasing itself is what suggest matches now.
    s = client.post("/v1/suggest", json={"text": filed["question"], "k": 1}, headers=agent_headers)
    assert s.json()["candidates"][0]["faq_id"] == filed["faq_id"]
    again = client.post("/v1/threads", json=body("1", PASSWORD), headers=agent_headers)
    assert again.status_code == 200
    assert (again.json()["id"], again.json()["created"], again.json()["changed"]) == (
        filed["id"],
        False,
        False,
    )
    assert count(session_factory, Thread) == 1 and count(session_factory, ThreadPost) == 2
    with session_factory() as db:
        n = db.scalar(
            select(func.count())
            .select_from(QuestionPhrasing)
            .where(QuestionPhrasing.thread_id == filed["id"])
        )
    assert n == 1
    got = client.get(f"/v1/threads/{filed['id']}", headers=agent_headers).json()
    assert [p["text_raw"] for p in got["posts"]] == [PASSWORD, "ご案内します。"]
    assert got["posts"][0]["text_clean"] == filed["question"]
    assert "cust" not in got["posts"][0]["author_hash"]
    evidence = client.get(f"/v1/threads?faq_id={filed['faq_id']}", headers=agent_headers).json()
    assert [t["id"] for t in evidence["items"]] == [filed["id"]]


@pytest.mark.parametrize(
    ("payload", "status", "error"),
    [
        ({"channel": "x", "external_id": "1"}, 422, "validation_error"),
        ({**body("1", "hi"), "posts": []}, 400, "invalid_input"),
        ({**body("1", "hi"), "posts": [{"role": "agent", "text": "hello"}]}, 400, "invalid_input"),
        ({**body("1", "hi"), "posts": [{"role": "bot", "text": "hello"}]}, 400, "invalid_input"),
        (
            {**body("1", "hi"), "posts": [{"role": "customer", "text": "x" * 10_001}]},
            400,
            "invalid_input",
        ),
        ({**body("1", "hi"), "faq_id": 999_999}, 400, "invalid_input"),
        ({**body("1", "hi"), "channel": " "}, 400, "invalid_input"),
        ({**body("1", "hi"), "resolved_at": "someday"}, 400, "invalid_input"),
        ({**body("1", "hi"), "posts": "none"}, 422, "validation_error"),
    ],
)
def test_bad_threads_are_refused_and_store_nothing(
    client: TestClient,
    agent_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    payload: dict[str, Any],
    status: int,
    error: str,
) -> None:
    r = client.post("/v1/threads", json=payload, headers=agent_headers)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error and r.json()["detail"]
    assert count(session_factory, Thread) == 0


def test_threads_need_a_key(client: TestClient, agent_headers: dict[str, str]) -> None:
    assert client.post("/v1/threads", json=body("1", PASSWORD)).status_code == 401
    r = client.get("/v1/drafts", headers=agent_headers)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"


def _draft_ids(client: TestClient, agent_headers: dict[str, str]) -> dict[str, int]:
    items = [body(f"p{i}", q, POINTS_ANSWER) for i, q in enumerate(POINTS)]
    items += [
        body("s0", SHOP, "渋谷店は10時から20時まで営業しています。"),
        body("w0", WATCH, "Not yet, sorry!"),
    ]
    out = {}
    for item in items:
        r = client.post("/v1/threads", json=item, headers=agent_headers)
        assert r.status_code == 201 and r.json()["status"] == "drafted", r.text
        out[item["external_id"]] = r.json()["draft_id"]
    assert out["p0"] == out["p1"] and len(set(out.values())) == 3
    return out


def test_the_review_queue_lists_drafts_by_demand_with_their_evidence(
    client: TestClient, agent_headers: dict[str, str], editor_headers: dict[str, str]
) -> None:
    ids = _draft_ids(client, agent_headers)
    r = client.get("/v1/drafts", params={"as_of": "2026-11-21T00:00:00Z"}, headers=editor_headers)
    assert r.status_code == 200, r.text
    listing = r.json()
    assert listing["total"] == 3
    first = listing["items"][0]
    assert {"id", "question", "answer", "demand", "growth", "source_threads"} <= set(first)
    assert (first["id"], first["demand"], first["lang"], first["status"]) == (
        ids["p0"],
        2,
        "ja",
        "open",
    )
    assert first["growth"] == 2.0 and first["last_7d"] == 2
    assert (
        first["answer"]
        == "ソラミポイントは1ポイント1円として月々のご利用料金のお支払いに使えます。"
    )
    assert {t["external_id"] for t in first["source_threads"]} == {"p0", "p1"}
    assert [d["demand"] for d in listing["items"]] == [2, 1, 1]
    detail = client.get(f"/v1/drafts/{ids['w0']}", headers=editor_headers).json()
    assert detail["lang"] == "en" and detail["source_threads"][0]["posts"][0]["text_raw"] == WATCH
    assert client.get("/v1/drafts/999999", headers=editor_headers).status_code == 404
    bad = client.get("/v1/drafts", params={"sort": "random"}, headers=editor_headers)
    assert bad.status_code == 422


def test_edit_then_publish_makes_a_searchable_faq(
    client: TestClient, agent_headers: dict[str, str], editor_headers: dict[str, str]
) -> None:
    draft_id = _draft_ids(client, agent_headers)["p0"]
    edit = {
        "question": "ソラミポイントは何に使えますか?",
        "answer": "**1ポイント1円**で料金に充当できます。",
        "category": "billing",
    }
    r = client.put(f"/v1/drafts/{draft_id}", json=edit, headers=editor_headers)
    assert r.status_code == 200 and r.json()["question"] == edit["question"], r.text
    patched = client.patch(
        f"/v1/drafts/{draft_id}", json={"answer": "**1ポイント=1円**"}, headers=editor_headers
    )
    assert (patched.json()["question"], patched.json()["answer"]) == (
        edit["question"],
        "**1ポイント=1円**",
    )
    client.patch(f"/v1/drafts/{draft_id}", json={"answer": edit["answer"]}, headers=editor_headers)
    bad = client.put(
        f"/v1/drafts/{draft_id}", json={**edit, "question": ""}, headers=editor_headers
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_input"
    r = client.post(f"/v1/drafts/{draft_id}/publish", json={}, headers=editor_headers)
    assert r.status_code == 201, r.text
    done = r.json()
    assert done["draft"]["status"] == "published" and done["draft"]["faq_id"] == done["faq_id"]
    assert done["phrasings_added"] == 2 and done["url"] == f"/faq/{done['slug']}"
    faq = client.get(f"/v1/faqs/{done['faq_id']}", headers=agent_headers).json()
    assert faq["question"] == edit["question"] and faq["answer"] == edit["answer"]
    assert [rev["number"] for rev in faq["revisions"]] == [1]
    assert sorted(p["source"] for p in faq["phrasings"]) == ["thread", "thread"]
    s = client.post(
        "/v1/suggest",
        json={"text": "ソラミポイントの使い方を知りたい", "k": 1},
        headers=agent_headers,
    )
    assert s.json()["candidates"][0]["faq_id"] == done["faq_id"]
    again = client.post(f"/v1/drafts/{draft_id}/publish", json={}, headers=editor_headers)
    assert again.status_code == 409 and again.json()["error"] == "invalid_transition"
    no_category = client.post(
        f"/v1/drafts/{_draft_ids_only(client, editor_headers)[0]}/publish",
        json={},
        headers=editor_headers,
    )
    assert no_category.status_code == 400 and "category" in no_category.json()["detail"]


def _draft_ids_only(client: TestClient, editor_headers: dict[str, str]) -> list[int]:
    return [d["id"] for d in client.get("/v1/drafts", headers=editor_headers).json()["items"]]


def test_merge_and_reject_through_the_api(
    client: TestClient, agent_headers: dict[str, str], editor_headers: dict[str, str]
) -> None:
    ids = _draft_ids(client, agent_headers)
    faqs = client.get("/v1/faqs", params={"lang": "en", "limit": 500}, headers=agent_headers).json()
    target = next(f["id"] for f in faqs["items"] if f["slug"] == "device-compatibility")
    r = client.post(
        f"/v1/drafts/{ids['w0']}/merge", json={"faq_id": target}, headers=editor_headers
    )
    assert r.status_code == 200, r.text
    assert r.json()["draft"]["status"] == "merged" and r.json()["phrasings_added"] == 1
    faq = client.get(f"/v1/faqs/{target}", headers=agent_headers).json()
    assert WATCH in [p["text"] for p in faq["phrasings"]]
    missing = client.post(
        f"/v1/drafts/{ids['s0']}/merge", json={"faq_id": 999_999}, headers=editor_headers
    )
    assert missing.status_code == 404
    empty = client.post(
        f"/v1/drafts/{ids['s0']}/reject", json={"reason": " "}, headers=editor_headers
    )
    assert empty.status_code == 400
    r = client.post(
        f"/v1/drafts/{ids['s0']}/reject",
        json={"reason": "店舗ページで案内"},
        headers=editor_headers,
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert r.json()["reject_reason"] == "店舗ページで案内"
    later = client.post(
        "/v1/threads", json=body("s1", "渋谷店は何時まで開いていますか？"), headers=agent_headers
    ).json()
    assert later["draft_id"] == ids["s0"] and later["status"] == "drafted"
    open_ids = _draft_ids_only(client, editor_headers)
    assert ids["s0"] not in open_ids and ids["w0"] not in open_ids
    rejected = client.get(
        "/v1/drafts", params={"status": "rejected"}, headers=editor_headers
    ).json()
    assert [d["id"] for d in rejected["items"]] == [ids["s0"]] and rejected["items"][0][
        "demand"
    ] == 2


# -- editor pages -----------------------------------------------------------------------
def _login(client: TestClient, editor_headers: dict[str, str]) -> None:
    # Editors sign in with a personal account (a Bearer key is for API clients).
    account = make_account(client.app.state.services.session_factory)
    r = sign_in(client, account, next_url="/review")
    assert r.status_code == 303 and r.headers["location"] == "/review"
    cookie = r.headers["set-cookie"].lower()
    assert "fql_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie


def test_review_pages_need_an_editor_sign_in(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    r = client.get("/review", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
    account = make_account(client.app.state.services.session_factory)
    r = sign_in(client, account, password="not the password")
    assert r.status_code == 401 and "fql_session" not in r.headers.get("set-cookie", "")
    assert parse(r.text).find("p", class_="notice") is not None
    r = sign_in(client, account, next_url="https://evil.example/")
    assert r.status_code == 303 and r.headers["location"] == "/review"


def test_editor_reviews_and_publishes_in_the_browser(
    client: TestClient, agent_headers: dict[str, str], editor_headers: dict[str, str]
) -> None:
    ids = _draft_ids(client, agent_headers)
    _login(client, editor_headers)
    page = parse(client.get("/review").text)
    rows = page.find_all("tr", class_="draft-row")
    assert [int(r.get("data-draft-id") or 0) for r in rows] == [ids["p0"], ids["s0"], ids["w0"]]
    assert rows[0].one("td", class_="demand").text == "2"
    detail = client.get(f"/review/drafts/{ids['p0']}")
    doc = parse(detail.text)
    threads = [n for n in doc.find_all("section", class_="thread")]
    assert len(threads) == 2
    assert doc.by_id("publish-form") is not None and doc.by_id("merge-form") is not None
    csrf = doc.by_id("publish-form").one("input", name="csrf").get("value")  # type: ignore[union-attr]
    assert csrf and re.fullmatch(r"[0-9a-f]{40}", csrf)
    forged = client.post(
        f"/review/drafts/{ids['p0']}/publish", data={"category": "billing"}, follow_redirects=False
    )
    assert forged.status_code == 403
    r = client.post(
        f"/review/drafts/{ids['p0']}/publish",
        data={"category": "", "csrf": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 400 and parse(r.text).find("p", class_="notice") is not None
    r = client.post(
        f"/review/drafts/{ids['p0']}/publish",
        data={"category": "billing", "csrf": csrf},
        follow_redirects=False,
    )
    assert (
        r.status_code == 303
        and r.headers["location"] == f"/review/drafts/{ids['p0']}?done=published"
    )
    doc = parse(client.get(r.headers["location"]).text)
    assert doc.by_id("draft-status").text == "published"  # type: ignore[union-attr]
    assert doc.by_id("publish-form") is None
    r = client.post(
        f"/review/drafts/{ids['s0']}/reject",
        data={"reason": "店舗ページで案内", "csrf": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    open_rows = parse(client.get("/review").text).find_all("tr", class_="draft-row")
    assert {int(r.get("data-draft-id") or 0) for r in open_rows} == {ids["w0"]}


def test_api_clients_may_use_the_bearer_key_on_review_pages(
    client: TestClient,
    agent_headers: dict[str, str],
    editor_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    ids = _draft_ids(client, agent_headers)
    r = client.post(
        f"/review/drafts/{ids['w0']}/reject",
        data={"reason": "not planned"},
        headers=editor_headers,
        follow_redirects=False,
    )
    assert r.status_code == 303
    with session_factory() as s:
        draft = s.get(FaqDraft, ids["w0"])
        assert draft is not None and draft.reject_reason == "not planned"
