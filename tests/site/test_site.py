"""The public site's pages through the real app, checked by parsing their structure."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.web.markdown import render_markdown
from kb.faqs.content import Article
from kb.models import EntryStatus, FaqEntry, PageView, SearchLog, ViewSource
from tests.support.html_dom import Node, parse
from tests.support.pages import BROWSER_UA, check_accessible
from tests.support.paths import CONTENT_DIR

CATEGORIES = yaml.safe_load((CONTENT_DIR / "categories.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def web(client: TestClient) -> Iterator[TestClient]:
    """The app as a phone browser sees it (a person's User-Agent, cookies kept)."""
    client.headers["User-Agent"] = BROWSER_UA
    yield client


def page(client: TestClient, url: str, status: int = 200, **kwargs: object) -> Node:
    r = client.get(url, **kwargs)  # type: ignore[arg-type]
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("text/html")
    return parse(r.text)


def published(factory: sessionmaker[Session], **where: object) -> list[FaqEntry]:
    with factory() as s:
        query = select(FaqEntry).where(FaqEntry.status == EntryStatus.published)
        for name, value in where.items():
            query = query.where(getattr(FaqEntry, name) == value)
        return list(s.scalars(query.order_by(FaqEntry.id)))


def links(node: Node) -> list[str]:
    return [a.get("href") or "" for a in node.find_all("a")]


def check_offline(doc: Node) -> None:
    """Every stylesheet, script and image comes from this site (no CDN, no web font)."""
    for node in doc.find_all("link") + doc.find_all("script") + doc.find_all("img"):
        url = node.get("href") or node.get("src") or ""
        if node.tag == "link" and node.get("rel") in ("alternate", "canonical"):
            continue  # links for search engines, not resources
        assert url.startswith("/") and not url.startswith("//"), url


def test_home_lists_categories_in_the_chosen_language(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    r = web.get("/?lang=ja")
    assert "default-src 'self'" in r.headers["content-security-policy"]
    doc = parse(r.text)
    check_accessible(doc)
    check_offline(doc)
    assert doc.one("html").get("lang") == "ja"
    form = doc.one("form", role="search")
    assert form.get("action") == "/search" and form.get("method") == "get"
    assert form.one("input", type="hidden").get("value") == "ja"
    section = doc.by_id("categories")
    assert section is not None
    names = [h.text for h in section.find_all("h3")]
    entries = published(session_factory, language="ja")
    used = {e.category for e in entries}
    expected = sorted(used, key=lambda k: (CATEGORIES.get(k, {}).get("order", 999), k))
    assert names == [CATEGORIES.get(k, {}).get("ja", k) for k in expected]
    slugs = {e.slug for e in entries}
    article_links = [h for h in links(section) if h.startswith("/faq/")]
    assert article_links and all(h.removeprefix("/faq/") in slugs for h in article_links)
    switch = doc.one("a", class_="lang-switch")
    assert switch.get("href") == "/?lang=en" and switch.get("hreflang") == "en"
    assert switch.text == "English" and switch.get("lang") == "en"


@pytest.mark.parametrize(
    ("accept", "lang"),
    [("en-US,en;q=0.9", "en"), ("ja-JP,ja;q=0.9,en;q=0.8", "ja"), ("fr-FR, en;q=0.5", "en")],
)
def test_home_follows_the_browser_language(web: TestClient, accept: str, lang: str) -> None:
    r = web.get("/", headers={"Accept-Language": accept})
    assert r.status_code == 200 and "accept-language" in r.headers["vary"].lower()
    assert parse(r.text).one("html").get("lang") == lang


def test_unknown_language_gets_the_friendly_400_page(web: TestClient) -> None:
    doc = page(web, "/?lang=fr", status=400)
    check_accessible(doc)
    assert "lang" in doc.one("main").text


def test_category_page_lists_exactly_its_articles(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    entries = published(session_factory, language="en")
    key = max({e.category for e in entries}, key=lambda k: sum(e.category == k for e in entries))
    doc = page(web, f"/category/{key}?lang=en")
    check_accessible(doc)
    assert doc.one("h1").text == CATEGORIES.get(key, {}).get("en", key)
    listed = [h.removeprefix("/faq/") for h in links(doc.one("ul", class_="article-list"))]
    assert listed == [e.slug for e in entries if e.category == key]
    switch = doc.one("a", class_="lang-switch")
    assert switch.get("href") == f"/category/{key}?lang=ja" and switch.text == "日本語"
    page(web, "/category/no-such-category?lang=en", status=404)


def _with_translation(factory: sessionmaker[Session], language: str) -> tuple[FaqEntry, FaqEntry]:
    entries = published(factory)
    groups: dict[str, dict[str, FaqEntry]] = {}
    for e in entries:
        if e.translation_group:
            groups.setdefault(e.translation_group, {})[e.language] = e
    pairs = [g for g in groups.values() if set(g) == {"ja", "en"}]
    assert pairs
    pair = pairs[len(pairs) // 2]
    return pair[language], pair["en" if language == "ja" else "ja"]


@pytest.mark.parametrize("language", ["ja", "en"])
def test_article_page_renders_answer_switch_and_related(
    web: TestClient, session_factory: sessionmaker[Session], language: str
) -> None:
    entry, other = _with_translation(session_factory, language)
    r = web.get(f"/faq/{entry.slug}")
    assert r.status_code == 200 and r.headers["cache-control"] == "private, no-store"
    doc = parse(r.text)
    check_accessible(doc)
    check_offline(doc)
    assert doc.one("html").get("lang") == language
    revision = entry.current_revision
    assert revision is not None
    assert doc.one("h1").text == " ".join(revision.question.split())
    answer = doc.one("div", class_="answer")
    assert answer.text == parse(render_markdown(revision.answer)).text
    translation = doc.one("a", class_="translation")
    assert translation.get("href") == f"/faq/{other.slug}"
    assert translation.get("hreflang") == other.language
    assert doc.one("a", class_="lang-switch").get("href") == f"/faq/{other.slug}"
    crumbs = links(doc.one("nav", class_="crumbs"))
    assert crumbs == [f"/?lang={language}", f"/category/{entry.category}?lang={language}"]
    related_section = doc.one("section", class_="related")
    related = [h.removeprefix("/faq/") for h in links(related_section)]
    same_language = {e.slug for e in published(session_factory, language=language)}
    assert 1 <= len(related) <= 5 and entry.slug not in related
    assert set(related) <= same_language and len(set(related)) == len(related)
    form = doc.one("form", class_="vote")
    assert form.get("method") == "post" and form.get("action") == f"/faq/{entry.slug}/vote"
    assert {b.get("value") for b in form.find_all("button")} == {"yes", "no"}
    hidden = {i.get("name"): i.get("value") for i in form.find_all("input", type="hidden")}
    assert hidden["revision_id"] == str(revision.id) and len(hidden["csrf_token"] or "") >= 32
    scripts = [s.get("src") for s in doc.find_all("script")]
    assert scripts == ["/static/vote.js"]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_published_articles_have_pages(
    web: TestClient, session_factory: sessionmaker[Session], seed_articles: list[Article]
) -> None:
    entries = published(session_factory)
    assert len(entries) == len(seed_articles)
    # A third of them, spread over both languages and all categories: each first view costs
    # a query embedding (related articles), and the rest add time, not coverage.
    sample = entries[::3]
    assert {e.language for e in sample} == {"ja", "en"}
    for entry in sample:
        doc = page(web, f"/faq/{entry.slug}")
        assert entry.current_revision is not None
        assert doc.one("h1").text == " ".join(entry.current_revision.question.split())
        assert doc.one("html").get("lang") == entry.language


def test_missing_pages_get_the_html_404(web: TestClient) -> None:
    for url in ("/faq/no-such-article", "/no/such/page", "/category/nothing"):
        doc = page(web, url, status=404)
        check_accessible(doc)
        assert "/" in links(doc.one("main")) or any(h.startswith("/?lang=") for h in links(doc))
    r = web.get("/v1/public/faqs/no-such-article")
    assert r.status_code == 404 and r.json()["error"] == "not_found"


def test_unpublished_articles_are_not_shown_and_merged_ones_redirect(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    first, second, third = published(session_factory, language="en")[:3]
    with session_factory() as s:
        s.get(FaqEntry, first.id).status = EntryStatus.archived  # type: ignore[union-attr]
        merged = s.get(FaqEntry, second.id)
        assert merged is not None
        merged.status, merged.merged_into_id = EntryStatus.merged, third.id
        s.commit()
    page(web, f"/faq/{first.slug}", status=404)
    r = web.get(f"/faq/{second.slug}?src=reply", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == f"/faq/{third.slug}?src=reply"


def _search(web: TestClient, query: str, lang: str) -> tuple[Node, list[str]]:
    """The page, and its result links in order: the answers, then the closest articles."""
    doc = page(web, "/search", params={"q": query, "lang": lang})
    return doc, [h for ol in doc.find_all("ol", class_="results") for h in links(ol)]


def test_japanese_search_finds_the_article_and_logs_it(
    web: TestClient, session_factory: sessionmaker[Session], seed_articles: list[Article]
) -> None:
    ja = [a for a in seed_articles if a.language == "ja" and a.questions]
    target = ja[len(ja) // 3]
    doc, hrefs = _search(web, target.questions[0], "ja")
    check_accessible(doc)
    assert doc.one("html").get("lang") == "ja"
    slugs = [urlsplit(h).path.removeprefix("/faq/") for h in hrefs]
    assert target.slug in slugs[:3]
    assert all(s.endswith("-ja") for s in slugs)
    params = parse_qs(urlsplit(hrefs[0]).query)
    assert params["src"] == ["search"]
    with session_factory() as s:
        log = s.get(SearchLog, int(params["q_id"][0]))
        assert log is not None and log.language == "ja"
        # Every result is logged; the page shows the answers and the five closest.
        assert log.query == target.questions[0].strip() and log.result_count >= len(hrefs)
        assert log.top_score is not None and log.clicked_entry_id is None
    # Opening a result credits the search and counts a view from search.
    web.get(hrefs[slugs.index(target.slug)])
    with session_factory() as s:
        entry = s.scalar(select(FaqEntry).where(FaqEntry.slug == target.slug))
        assert entry is not None
        assert s.get(SearchLog, int(params["q_id"][0])).clicked_entry_id == entry.id  # type: ignore[union-attr]
        views = s.scalars(select(PageView).where(PageView.entry_id == entry.id)).all()
        assert [(v.source, v.count) for v in views] == [(ViewSource.search, 1)]


def test_search_without_a_good_match_still_offers_the_closest(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    doc, hrefs = _search(web, "zqxv blorf wibble quux frobnicate", "en")
    assert doc.one("p", class_="empty", role="status") is not None
    assert 1 <= len(hrefs) <= 5
    with session_factory() as s:
        log = s.scalars(select(SearchLog).order_by(SearchLog.id.desc())).first()
        assert log is not None and log.good_result is False and log.result_count >= len(hrefs)


def test_search_log_keeps_no_personal_data(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    query = "taro.yamada@example.com 090-1234-5678 cannot log in " + "x" * 300
    web.get("/search", params={"q": query, "lang": "en"})
    with session_factory() as s:
        log = s.scalars(select(SearchLog)).one()
    assert "example.com" not in log.query and "1234" not in log.query
    assert log.query.startswith("<email> <number> cannot log in") and len(log.query) == 200


def test_search_language_follows_japanese_script(web: TestClient) -> None:
    doc, hrefs = _search(web, "解約の方法", "en")
    assert doc.one("html").get("lang") == "ja"
    assert hrefs and all(urlsplit(h).path.endswith("-ja") for h in hrefs)
    doc, hrefs = _search(web, "eSIM", "ja")
    assert hrefs and all(urlsplit(h).path.endswith("-ja") for h in hrefs)
    switch = doc.one("a", class_="lang-switch")
    assert parse_qs(urlsplit(switch.get("href") or "").query) == {"lang": ["en"], "q": ["eSIM"]}


def test_empty_and_oversized_searches(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    doc = page(web, "/search?q=&lang=en")
    assert doc.find("ol", class_="results") is None
    doc = page(web, "/search", status=400, params={"q": "a" * 501})
    assert "500" in doc.one("main").text
    with session_factory() as s:
        assert s.scalars(select(SearchLog)).all() == []


def test_robots_searching_are_not_logged(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    ua = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)"
    r = client.get("/search?q=eSIM&lang=en", headers={"User-Agent": ua})
    assert r.status_code == 200 and parse(r.text).find("ol", class_="results") is not None
    with session_factory() as s:
        assert s.scalars(select(SearchLog)).all() == []
