"""Search people trust (the confidence cut, categories, highlighted words) and what the site
offers search engines (canonical and alternate links, descriptions, robots.txt, sitemap.xml,
favicon), through the real app on the test database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree as ET

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.settings import Settings
from indexer.embedding.encoders import CachedEmbedder
from kb.models import EntryStatus, FaqEntry
from tests.site.test_site import check_offline, page, published
from tests.support.html_dom import Node, parse
from tests.support.pages import BROWSER_UA, check_accessible
from tests.support.paths import CONTENT_DIR

CATEGORIES = yaml.safe_load((CONTENT_DIR / "categories.yaml").read_text(encoding="utf-8"))
ORIGIN = "http://testserver"
SM = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
XHTML = "{http://www.w3.org/1999/xhtml}"


@pytest.fixture
def web(client: TestClient) -> Iterator[TestClient]:
    """The app as a phone browser sees it (a person's User-Agent, cookies kept)."""
    client.headers["User-Agent"] = BROWSER_UA
    yield client


def _results(doc: Node, section: str) -> list[Node]:
    """The result items of one section (`answers` or `closest`) of a search page."""
    found = doc.find("section", class_=section)
    return found.find_all("li", class_="result") if found else []


def _slug(item: Node) -> str:
    return urlsplit(item.one("a").get("href") or "").path.removeprefix("/faq/")


def _marks(item: Node) -> list[str]:
    return [m.text for m in item.find_all("mark")]


def _search_json(web: TestClient, q: str, lang: str) -> dict:  # type: ignore[type-arg]
    r = web.get("/v1/public/search", params={"q": q, "lang": lang})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _head(doc: Node) -> dict[str, object]:
    """Canonical, alternates (hreflang -> href), description and robots of a page."""
    canonical = [n.get("href") for n in doc.find_all("link") if n.get("rel") == "canonical"]
    alternates = {
        n.get("hreflang"): n.get("href")
        for n in doc.find_all("link")
        if n.get("rel") == "alternate"
    }
    metas = {n.get("name"): n.get("content") for n in doc.find_all("meta") if n.get("name")}
    return {
        "canonical": canonical,
        "alternates": alternates,
        "description": metas.get("description"),
        "robots": metas.get("robots"),
    }


# -- the confidence cut -------------------------------------------------------------------


def test_results_are_cut_into_answers_and_closest_with_categories_and_marks(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    query = "How do I reset my password?"
    data = _search_json(web, query, "en")
    doc = page(web, "/search", params={"q": query, "lang": "en"})
    check_accessible(doc)
    check_offline(doc)
    answers, closest = _results(doc, "answers"), _results(doc, "closest")
    assert answers and closest
    assert (
        doc.one("h2", id="answers-h") and doc.one("h2", id="closest-h").text == "Closest articles"
    )
    assert doc.find("p", class_="empty") is None  # a good result: no "could not find"
    # The page and the JSON API make the same cut: the answers, then at most five closest.
    sections = [r["section"] for r in data["results"]]
    n = sections.count("answer")
    assert n >= 1 and sections == ["answer"] * n + ["closest"] * (len(sections) - n)
    assert [_slug(i) for i in answers] == [r["slug"] for r in data["results"][:n]]
    assert [_slug(i) for i in closest] == [r["slug"] for r in data["results"][n : n + 5]]
    assert data["results"][0]["slug"] == "reset-password" and data["good_result"] is True
    assert data["confidence"] == data["results"][0]["confidence"] >= data["threshold"] > 0
    for r in data["results"][:n]:
        assert r["confidence"] >= data["threshold"]
    if n < len(sections):  # the first result below the cut is below the threshold
        assert data["results"][n]["confidence"] < data["threshold"]
    # Each result names its category in the page's language, and marks the matched words.
    names = {e.slug: CATEGORIES[e.category]["en"] for e in published(session_factory)}
    for item in answers + closest:
        assert item.one("span", class_="category").text == names[_slug(item)]
    first = answers[0]
    assert {m.lower() for m in _marks(first)} >= {"password"}
    assert any("reset" in m.lower() for m in _marks(first))
    assert data["results"][0]["category_name"] == names["reset-password"]
    assert "password" in [w.lower() for w in data["results"][0]["matched_words"]]
    # The link still credits the search.
    href = first.one("a").get("href") or ""
    assert parse_qs(urlsplit(href).query)["src"] == ["search"]


@pytest.mark.parametrize("query", ["pizza recipe with fresh tomatoes", "zqxv blorf wibble quux"])
def test_an_unrelated_search_says_so_and_offers_only_the_closest(
    web: TestClient, query: str
) -> None:
    data = _search_json(web, query, "en")
    assert data["good_result"] is False and data["results"]
    assert {r["section"] for r in data["results"]} == {"closest"}
    assert all(r["confidence"] < data["threshold"] for r in data["results"][:1])
    doc = page(web, "/search", params={"q": query, "lang": "en"})
    assert doc.find("section", class_="answers") is None
    assert "could not find" in doc.one("p", class_="empty", role="status").text
    closest = _results(doc, "closest")
    assert 1 <= len(closest) <= 5
    assert [_slug(i) for i in closest] == [r["slug"] for r in data["results"][:5]]
    assert doc.one("section", class_="closest").one("h2").text == "Closest articles"


def test_a_japanese_search_highlights_japanese_words(web: TestClient) -> None:
    doc = page(web, "/search", params={"q": "パスワードを忘れた", "lang": "ja"})
    answers = _results(doc, "answers")
    assert answers and _slug(answers[0]) == "reset-password-ja"
    title = answers[0].one("a")
    assert "パスワード" in _marks(title)
    # 忘れた is found by its normalised form (忘れる), as BM25 matched it.
    assert _marks(answers[0].one("p", class_="snippet"))[:2] == ["パスワード", "忘れ"]
    assert answers[0].one("span", class_="category").text == CATEGORIES["account"]["ja"]
    assert doc.one("h2", id="closest-h").text == "近い記事"
    # The marks wrap words of the text shown, which reads as it is stored.
    assert "パスワード" in title.text and "<mark>" not in title.text


def test_a_hostile_query_and_article_are_escaped_with_highlighting_on(
    web: TestClient, editor_headers: dict[str, str]
) -> None:
    question = 'Password <script>alert("q")</script> reset <img src=x onerror=alert(1)>?'
    answer = 'To reset your password <b onmouseover="alert(2)">now</b>, open My Sorami.'
    r = web.post(
        "/v1/faqs",
        json={"question": question, "answer": answer, "category": "account", "lang": "en"},
        headers=editor_headers,
    )
    assert r.status_code == 201, r.text
    slug = r.json()["slug"]
    query = '<script>alert("x")</script><img src=x onerror=alert(3)> password reset script'
    r = web.get("/search", params={"q": query, "lang": "en"})
    assert r.status_code == 200
    body = r.text
    for raw in ("<script>alert", "<img src=x", "<b onmouseover", "onerror=alert(3)>"):
        assert raw not in body
    doc = parse(body)
    assert doc.find_all("img") == [] and doc.find_all("b") == []
    assert all(s.get("src") for s in doc.find_all("script"))  # no inline script at all
    assert '<script>alert("x")</script>' in doc.one("h1").text  # shown as text
    items = [i for i in _results(doc, "answers") + _results(doc, "closest") if _slug(i) == slug]
    assert items, "the hostile article is among the results"
    link = items[0].one("a")
    # Every character shown as written, none as markup (the parser's text adds spaces).
    assert "".join(link.text.split()) == "".join(question.split())
    assert [m.lower() for m in _marks(link)][:1] == ["password"]
    assert all("<" not in m for m in _marks(items[0]))
    snippet = items[0].one("p", class_="snippet")
    # The answer's tag is plain text in the snippet; a searched word inside it is marked.
    assert '<bonmouseover="alert(2)"' in "".join(snippet.text.split())
    assert snippet.find_all("b") == [] and "alert" in _marks(snippet)


# -- what search engines see ---------------------------------------------------------------


def test_home_and_category_have_canonical_alternates_and_descriptions(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    for lang in ("ja", "en"):
        head = _head(page(web, f"/?lang={lang}"))
        assert head["canonical"] == [f"{ORIGIN}/?lang={lang}"]
        assert head["alternates"] == {
            "ja": f"{ORIGIN}/?lang=ja",
            "en": f"{ORIGIN}/?lang=en",
            "x-default": f"{ORIGIN}/",
        }
        assert head["robots"] is None and 50 <= len(str(head["description"])) <= 160
    assert "Sorami Mobile" in str(_head(page(web, "/?lang=en"))["description"])
    assert "ソラミモバイル" in str(_head(page(web, "/?lang=ja"))["description"])
    key = published(session_factory, language="en")[0].category
    doc = page(web, f"/category/{key}?lang=ja")
    head = _head(doc)
    assert head["canonical"] == [f"{ORIGIN}/category/{key}?lang=ja"]
    assert head["alternates"] == {
        "en": f"{ORIGIN}/category/{key}?lang=en",
        "ja": f"{ORIGIN}/category/{key}?lang=ja",
        "x-default": f"{ORIGIN}/category/{key}",
    }
    count = len(published(session_factory, language="ja", category=key))
    assert str(head["description"]).startswith(CATEGORIES[key]["ja"])
    assert str(count) in str(head["description"])
    check_offline(doc)
    assert [n.get("href") for n in doc.find_all("link") if n.get("rel") == "icon"] == [
        "/static/favicon.svg"
    ]


def test_articles_have_canonical_hreflang_and_their_first_sentence(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    entries = published(session_factory)
    by_group: dict[str, dict[str, FaqEntry]] = {}
    for e in entries:
        if e.translation_group:
            by_group.setdefault(e.translation_group, {})[e.language] = e
    pair = next(g for g in by_group.values() if set(g) == {"ja", "en"})
    for entry in pair.values():
        head = _head(page(web, f"/faq/{entry.slug}?src=reply"))
        assert head["canonical"] == [f"{ORIGIN}/faq/{entry.slug}"]  # no tracking parameters
        assert head["alternates"] == {
            "en": f"{ORIGIN}/faq/{pair['en'].slug}",
            "ja": f"{ORIGIN}/faq/{pair['ja'].slug}",
            "x-default": f"{ORIGIN}/faq/{pair['ja'].slug}",
        }
        description = str(head["description"])
        assert 0 < len(description) <= 160 and head["robots"] is None
        assert not re.search(r"[*_\[\]#`<>]", description)  # plain text, not Markdown
        assert entry.current_revision is not None
        assert description.rstrip("…")[:20] in " ".join(entry.current_revision.answer.split())
    # An article without a translation: a canonical link and no alternates.
    grouped = {e.id for g in by_group.values() if len(g) > 1 for e in g.values()}
    single = next((e for e in entries if e.id not in grouped), None)
    if single is not None:
        head = _head(page(web, f"/faq/{single.slug}"))
        assert head["canonical"] == [f"{ORIGIN}/faq/{single.slug}"] and head["alternates"] == {}


def test_search_and_error_pages_are_noindex(web: TestClient) -> None:
    head = _head(page(web, "/search", params={"q": "eSIM", "lang": "en"}))
    assert head["robots"] == "noindex, follow"
    assert head["canonical"] == [f"{ORIGIN}/search?lang=en&q=eSIM"]
    assert head["description"]
    assert _head(page(web, "/search?lang=ja"))["robots"] == "noindex, follow"
    head = _head(page(web, "/faq/no-such-article", status=404))
    assert head["robots"] == "noindex, follow" and head["canonical"] == []


def test_absolute_links_use_the_base_url_else_the_trusted_origin(
    settings: Settings, embedder: CachedEmbedder, seeded: None
) -> None:
    configured = settings.model_copy(update={"base_url": "https://help.example.com/"})
    with TestClient(create_app(configured, embedder=embedder)) as c:
        head = _head(parse(c.get("/?lang=en").text))
        assert head["canonical"] == ["https://help.example.com/?lang=en"]
        assert c.get("/robots.txt").text.endswith("Sitemap: https://help.example.com/sitemap.xml\n")
    # Without it: the request's own origin, with the scheme only a trusted proxy may change.
    proxied = settings.model_copy(update={"trusted_proxies": "10.0.0.1"})
    app = create_app(proxied, embedder=embedder)
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
    with TestClient(app, base_url="http://help.test", client=("10.0.0.1", 5000)) as c:
        head = _head(parse(c.get("/?lang=en", headers=https).text))
        assert head["canonical"] == ["https://help.test/?lang=en"]
    with TestClient(app, base_url="http://help.test", client=("198.51.100.7", 5000)) as c:
        head = _head(parse(c.get("/?lang=en", headers=https).text))
        assert head["canonical"] == ["http://help.test/?lang=en"]  # not believed


def test_robots_txt_allows_the_site_and_names_the_sitemap(web: TestClient) -> None:
    r = web.get("/robots.txt")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    lines = r.text.splitlines()
    assert lines[:2] == ["User-agent: *", "Allow: /"]
    disallowed = {line.removeprefix("Disallow: ") for line in lines if line.startswith("Disallow:")}
    assert {"/review", "/v1", "/docs", "/redoc"} <= disallowed
    assert not disallowed & {"/", "/faq", "/search", "/category"}
    assert f"Sitemap: {ORIGIN}/sitemap.xml" in lines


def test_sitemap_lists_exactly_the_published_articles_with_alternates(
    web: TestClient, session_factory: sessionmaker[Session]
) -> None:
    en = published(session_factory, language="en")
    archived, merged, draft, target = en[0], en[1], en[2], en[3]
    with session_factory() as s:
        s.get(FaqEntry, archived.id).status = EntryStatus.archived  # type: ignore[union-attr]
        s.get(FaqEntry, draft.id).status = EntryStatus.draft  # type: ignore[union-attr]
        row = s.get(FaqEntry, merged.id)
        assert row is not None
        row.status, row.merged_into_id = EntryStatus.merged, target.id
        s.commit()
    r = web.get("/sitemap.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)  # well-formed XML
    assert root.tag == f"{SM}urlset"
    urls = {u.findtext(f"{SM}loc"): u for u in root.findall(f"{SM}url")}
    assert all(str(loc).startswith(f"{ORIGIN}/") for loc in urls)
    articles = {str(loc).removeprefix(f"{ORIGIN}/faq/") for loc in urls if "/faq/" in str(loc)}
    live = published(session_factory)
    assert articles == {e.slug for e in live}
    assert not {archived.slug, merged.slug, draft.slug} & articles
    assert {f"{ORIGIN}/?lang=ja", f"{ORIGIN}/?lang=en"} <= set(urls)
    assert any("/category/" in str(loc) for loc in urls)
    by_slug = {e.slug: e for e in live}
    groups: dict[str, set[str]] = {}
    for e in live:
        if e.translation_group:
            groups.setdefault(e.translation_group, set()).add(e.slug)
    for slug, entry in by_slug.items():
        url = urls[f"{ORIGIN}/faq/{slug}"]
        assert entry.current_revision is not None
        lastmod = datetime.fromisoformat(url.findtext(f"{SM}lastmod") or "")
        created = entry.current_revision.created_at
        assert lastmod.replace(tzinfo=None) == created.replace(tzinfo=None, microsecond=0)
        links = {
            link.get("hreflang"): link.get("href")
            for link in url.findall(f"{XHTML}link")
            if link.get("rel") == "alternate"
        }
        group = groups.get(entry.translation_group or "", {slug})
        if len({by_slug[s].language for s in group}) < 2:
            assert links == {}
            continue
        assert links[entry.language] == f"{ORIGIN}/faq/{slug}"
        assert "x-default" in links
        for lang, href in links.items():
            other = str(href).removeprefix(f"{ORIGIN}/faq/")
            assert other in group
            if lang != "x-default":  # each alternate points back (reciprocal hreflang)
                back = urls[href].findall(f"{XHTML}link")
                assert f"{ORIGIN}/faq/{slug}" in {b.get("href") for b in back}


def test_favicon_is_an_svg_at_both_addresses(web: TestClient) -> None:
    for url in ("/favicon.ico", "/static/favicon.svg"):
        r = web.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
        assert ET.fromstring(r.content).tag == "{http://www.w3.org/2000/svg}svg"


def test_openapi_documents_the_cut(web: TestClient) -> None:
    schemas = web.get("/openapi.json").json()["components"]["schemas"]
    hit = schemas["PublicSearchHit"]["properties"]
    assert hit["section"]["enum"] == ["answer", "closest"] and hit["section"]["description"]
    assert {"confidence", "category_name", "matched_words"} <= set(hit)
    response = schemas["PublicSearchResponse"]["properties"]
    assert "threshold" in response and "cut" in response["threshold"]["description"]
