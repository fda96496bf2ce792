"""The public JSON API (no key) and the editors' statistics (editor key) through the real app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.db import session_scope
from kb.faqs.content import Article
from kb.faqs.entries import revise_entry
from kb.models import EntryStatus, FaqEntry, SearchLog
from tests.support.pages import BROWSER_UA, limited_client


@pytest.fixture
def api(client: TestClient) -> Iterator[TestClient]:
    client.headers["User-Agent"] = BROWSER_UA
    yield client


def _pair(factory: sessionmaker[Session]) -> tuple[FaqEntry, FaqEntry]:
    with factory() as s:
        rows = s.scalars(
            select(FaqEntry)
            .where(FaqEntry.status == EntryStatus.published, FaqEntry.language == "en")
            .order_by(FaqEntry.id)
        ).all()
        entry = rows[len(rows) // 2]
        other = s.scalar(
            select(FaqEntry).where(
                FaqEntry.translation_group == entry.translation_group, FaqEntry.language == "ja"
            )
        )
        assert other is not None
        return entry, other


def test_public_search_needs_no_key_and_logs(
    api: TestClient, session_factory: sessionmaker[Session], seed_articles: list[Article]
) -> None:
    target = next(a for a in seed_articles if a.language == "en" and len(a.questions) > 1)
    r = api.get("/v1/public/search", params={"q": target.questions[1], "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["lang"] == "en" and len(body["results"]) <= 5
    assert target.slug in [hit["slug"] for hit in body["results"][:3]]
    first = body["results"][0]
    assert first["url"] == f"/faq/{first['slug']}?src=search&q_id={body['search_id']}"
    assert set(first) >= {"id", "slug", "lang", "category", "title", "url", "score", "snippet"}
    assert isinstance(body["good_result"], bool) and 0 <= body["confidence"] <= 1
    with session_factory() as s:
        log = s.get(SearchLog, body["search_id"])
        assert log is not None and log.result_count == len(body["results"])
        assert log.good_result == body["good_result"]
    ja = api.get("/v1/public/search", params={"q": "データ容量を追加したい"}).json()
    assert ja["lang"] == "ja" and all(h["lang"] == "ja" for h in ja["results"])


@pytest.mark.parametrize(
    ("params", "status", "error"),
    [
        ({"q": ""}, 400, "invalid_input"),
        ({"q": "   "}, 400, "invalid_input"),
        ({"q": "x" * 501}, 400, "invalid_input"),
        ({"q": "eSIM", "lang": "fr"}, 422, "validation_error"),
        ({"q": "eSIM", "k": 0}, 422, "validation_error"),
    ],
)
def test_public_search_rejects_bad_input(
    api: TestClient, params: dict[str, object], status: int, error: str
) -> None:
    r = api.get("/v1/public/search", params=params)  # type: ignore[arg-type]
    assert r.status_code == status and r.json()["error"] == error and r.json()["detail"]


def test_public_article_by_slug(api: TestClient, session_factory: sessionmaker[Session]) -> None:
    entry, other = _pair(session_factory)
    r = api.get(f"/v1/public/faqs/{entry.slug}")
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == entry.id and body["revision_id"] == entry.current_revision_id
    assert body["translations"] == {"ja": other.slug}
    assert body["url"] == f"/faq/{entry.slug}" and body["your_vote"] is None
    assert "<script" not in body["answer_html"] and body["answer_html"].startswith("<")
    related = body["related"]
    assert related and all(x["lang"] == "en" and x["id"] != entry.id for x in related)
    assert "fql_v=" in r.headers["set-cookie"] and len(body["csrf_token"]) >= 32
    r = api.get("/v1/public/faqs/not-an-article")
    assert r.status_code == 404 and r.json() == {
        "error": "not_found",
        "detail": "there is no article at /faq/not-an-article",
    }


def test_public_vote_and_view_endpoints(
    api: TestClient, session_factory: sessionmaker[Session], editor_headers: dict[str, str]
) -> None:
    entry, _ = _pair(session_factory)
    article = api.get(f"/v1/public/faqs/{entry.slug}").json()
    token = {"X-CSRF-Token": article["csrf_token"]}
    url = f"/v1/public/faqs/{entry.slug}"
    r = api.post(f"{url}/vote", json={"helpful": True})
    assert r.status_code == 403 and r.json()["error"] == "csrf_failed"
    r = api.post(f"{url}/vote", json={"helpful": False, "comment": "no APN values"}, headers=token)
    assert r.status_code == 200, r.text
    assert r.json() | {"message": ""} == {
        "faq_id": entry.id,
        "revision_id": article["revision_id"],
        "helpful": False,
        "comment_saved": True,
        "replaced": False,
        "message": "",
    }
    r = api.post(f"{url}/vote", json={"helpful": True, "comment": "ignored"}, headers=token)
    assert r.json()["replaced"] is True and r.json()["comment_saved"] is False
    assert api.get(url).json()["your_vote"] is True
    bad = api.post(f"{url}/vote", json={"helpful": "perhaps"}, headers=token)
    assert bad.status_code == 422
    assert api.post(f"{url}/views", json={"src": "reply"}).json() == {
        "counted": True,
        "reason": "counted",
    }
    assert api.post(f"{url}/views", json={"src": "reply"}).json()["reason"] == "repeat"
    robot = api.post(f"{url}/views", json={}, headers={"User-Agent": "curl/8.0"})
    assert robot.json() == {"counted": False, "reason": "robot"}
    stats = api.get(f"/v1/faqs/{entry.id}/stats", headers=editor_headers).json()
    (rev,) = stats["revisions"]
    assert rev["views"] == {"reply": 1, "search": 0, "direct": 0, "total": 1}
    assert (rev["helpful"], rev["not_helpful"]) == (1, 0)


def test_public_vote_is_rate_limited_with_retry_after(
    settings: Settings,
    embedder: CachedEmbedder,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> None:
    entry, _ = _pair(session_factory)
    with limited_client(settings, embedder, vote_rate_limit=2) as api:
        token = {"X-CSRF-Token": api.get(f"/v1/public/faqs/{entry.slug}").json()["csrf_token"]}
        codes = [
            api.post(
                f"/v1/public/faqs/{entry.slug}/vote", json={"helpful": True}, headers=token
            ).status_code
            for _ in range(3)
        ]
        r = api.post(f"/v1/public/faqs/{entry.slug}/vote", json={"helpful": True}, headers=token)
    assert codes == [200, 200, 429]
    assert r.status_code == 429 and r.json()["error"] == "rate_limited"
    assert "wait" in r.json()["detail"] and int(r.headers["retry-after"]) >= 1


def test_stats_per_revision_by_source(
    api: TestClient,
    session_factory: sessionmaker[Session],
    editor_headers: dict[str, str],
    agent_headers: dict[str, str],
) -> None:
    entry, _ = _pair(session_factory)
    url = f"/v1/faqs/{entry.id}/stats"
    assert api.get(url).status_code == 401
    assert api.get(url, headers=agent_headers).status_code == 403
    assert api.get("/v1/faqs/999999/stats", headers=editor_headers).status_code == 404

    def visit(src: str, vote: str | None, comment: str = "") -> None:
        api.cookies.clear()
        page = api.get(f"/faq/{entry.slug}", params={"src": src})
        assert page.status_code == 200
        if vote:
            article = api.get(f"/v1/public/faqs/{entry.slug}").json()
            api.post(
                f"/v1/public/faqs/{entry.slug}/vote",
                json={"helpful": vote == "yes", "comment": comment or None},
                headers={"X-CSRF-Token": article["csrf_token"]},
            ).raise_for_status()

    visit("reply", "yes")
    visit("reply", "no", "the screenshots are outdated")
    visit("search", None)
    visit("direct", "no")
    first = entry.current_revision_id
    with session_scope(session_factory) as s:
        rev = entry.current_revision
        assert rev is not None
        revise_entry(
            s,
            entry.id,
            question=rev.question,
            answer=rev.answer + "\n\nRewritten.",
            category=entry.category,
            language=entry.language,
            reason="rewrite for flag 1",
        )
    visit("reply", "yes")
    body = api.get(url, headers=editor_headers).json()
    assert body["faq_id"] == entry.id and body["slug"] == entry.slug and body["lang"] == "en"
    old, new = body["revisions"]
    assert old["revision_id"] == first and old["current"] is False and new["current"] is True
    assert body["current_revision_id"] == new["revision_id"]
    assert old["views"] == {"reply": 2, "search": 1, "direct": 1, "total": 4}
    assert (old["helpful"], old["not_helpful"], old["helpful_ratio"]) == (1, 2, 0.3333)
    assert [c["text"] for c in old["comments"]] == ["the screenshots are outdated"]
    assert new["views"] == {"reply": 1, "search": 0, "direct": 0, "total": 1}
    assert (new["helpful"], new["not_helpful"]) == (1, 0) and new["reason"] == "rewrite for flag 1"
    assert body["totals"] == {"reply": 3, "search": 1, "direct": 1, "total": 5}
    assert (body["helpful"], body["not_helpful"]) == (2, 2)


def test_search_gaps_collect_searches_without_a_good_result(
    api: TestClient, editor_headers: dict[str, str]
) -> None:
    nonsense = "qwzx vlorp snarfle"
    for _ in range(3):
        api.get("/search", params={"q": nonsense, "lang": "en"})
    assert api.get("/v1/search-gaps").status_code == 401
    body = api.get("/v1/search-gaps?lang=en", headers=editor_headers).json()
    top = body["items"][0]
    assert (top["query"], top["lang"], top["searches"], top["clicked"]) == (nonsense, "en", 3, 0)


def test_protected_endpoints_stay_protected_and_public_ones_are_documented(
    api: TestClient,
) -> None:
    assert api.get("/v1/faqs").status_code == 401
    assert api.post("/v1/suggest", json={"text": "eSIM"}).status_code == 401
    paths = api.get("/openapi.json").json()["paths"]
    for path in (
        "/v1/public/search",
        "/v1/public/faqs/{slug}",
        "/v1/public/faqs/{slug}/vote",
        "/v1/public/faqs/{slug}/views",
        "/v1/faqs/{faq_id}/stats",
    ):
        assert path in paths
    assert "/faq/{slug}" not in paths  # HTML pages are not part of the JSON API
