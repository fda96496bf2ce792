"""Editor pages of content health: the queue by impact with filters, the article page with its
server-rendered chart, diff, before/after, and the rewrite, merge and dismiss forms (CSRF)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from kb.db import session_scope
from kb.faqs import entries as faqs
from kb.models import FaqEntry, Flag, FlagKind, FlagStatus, ViewSource, utcnow
from tests.support.accounts import make_account, sign_in
from tests.support.html_dom import Node, parse
from tests.support.pages import check_accessible
from tests.support.traffic import add_abstained, add_views, add_votes, recompute_via_api

SVG = "{http://www.w3.org/2000/svg}"


def _login(client: TestClient, editor_headers: dict[str, str]) -> None:
    # Editors sign in with a personal account (a Bearer key is for API clients).
    account = make_account(client.app.state.services.session_factory)
    r = sign_in(client, account, next_url="/review/health")
    assert r.status_code == 303 and r.headers["location"] == "/review/health"


def _page(client: TestClient, url: str, status: int = 200) -> Node:
    r = client.get(url)
    assert r.status_code == status, r.text[:500]
    return parse(r.text)


def _csrf(doc: Node, form_id: str) -> str:
    form = doc.by_id(form_id)
    assert form is not None, form_id
    value = form.one("input", name="csrf").get("value")
    assert value and re.fullmatch(r"[0-9a-f]{40}", value)
    return value


@pytest.fixture
def scene(client: TestClient, session_factory: sessionmaker[Session]) -> dict[str, int]:
    """Seed content with traffic: one unhelpful English article, one unhelpful Japanese one,
    healthy others, and unanswered posts about one topic."""
    today = utcnow().date()
    with session_scope(session_factory) as s:
        entries = {
            slug: faqs.get_entry_by_slug(s, slug)
            for slug in (
                "esim-iphone-activate",
                "esim-android-activate",
                "apn-iphone",
                "apn-android",
                "5g-not-showing",
                "no-signal",
                "esim-iphone-activate-ja",
                "apn-iphone-ja",
                "no-signal-ja",
                "5g-not-showing-ja",
            )
        }
        for slug, e in entries.items():
            assert e is not None
            bad = slug in ("esim-iphone-activate", "apn-iphone-ja")
            add_views(s, e, 150 if bad else 120, day=today, source=ViewSource.reply)
            add_views(s, e, 100, day=today, source=ViewSource.search)
            if bad:
                add_votes(s, e, 5, 25, comment="手順が <b>古い</b>")
            else:
                add_votes(s, e, 26, 4)
        add_abstained(
            s,
            [
                "Can I bring my dog into the shop?",
                "are dogs allowed in your stores",
                "Can I take my dog into a Sorami shop?",
                "Is it OK to bring my dog to the store?",
                "Can I bring my dog into the shop?",
            ],
            "en",
        )
        return {slug: e.id for slug, e in entries.items() if e is not None}


def test_health_pages_need_an_editor(
    client: TestClient, agent_headers: dict[str, str], scene: dict[str, int]
) -> None:
    for url in (
        "/review/health",
        f"/review/health/faqs/{scene['apn-iphone']}",
        f"/review/health/faqs/{scene['apn-iphone']}/chart.svg",
        "/review/health/flags/1",
    ):
        r = client.get(url, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/review/login"), url
    for url in ("/review/health/recompute", f"/review/health/faqs/{scene['apn-iphone']}/rewrite"):
        r = client.post(url, data={}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
    # An agent key works for the API of agents, not for these pages.
    r = client.get("/review/health", headers=agent_headers)
    assert r.status_code == 403


def test_queue_is_sorted_by_impact_and_filters(
    client: TestClient, editor_headers: dict[str, str], scene: dict[str, int]
) -> None:
    _login(client, editor_headers)
    doc = _page(client, "/review/health")
    check_accessible(doc)
    r = client.post("/review/health/recompute", data={"csrf": "0" * 40}, follow_redirects=False)
    assert r.status_code == 403  # a forged form
    r = client.post(
        "/review/health/recompute",
        data={"csrf": _csrf(doc, "recompute-form")},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/review/health?done=recomputing"
    assert "started" in _page(client, r.headers["location"]).one("p", class_="notice").text
    recompute_via_api(client, editor_headers)  # waits for the one the form started
    doc = _page(client, "/review/health")
    check_accessible(doc)
    rows = doc.find_all("tr", class_="flag-row")
    kinds = [row.get("data-kind") for row in rows]
    assert kinds.count("low_helpfulness") == 2 and kinds.count("content_gap") == 1
    scores = [float(row.one("td", class_="score").text) for row in rows]
    assert scores == sorted(scores, reverse=True)
    links = [a.get("href") for row in rows for a in row.find_all("a")]
    assert f"/review/health/faqs/{scene['esim-iphone-activate']}#flag-" in " ".join(
        str(h) for h in links
    )
    only_ja = _page(client, "/review/health?in=ja&kind=low_helpfulness")
    [row] = only_ja.find_all("tr", class_="flag-row")
    href = row.one("a").get("href") or ""
    assert href.startswith(f"/review/health/faqs/{scene['apn-iphone-ja']}")
    gaps = _page(client, "/review/health?kind=content_gap")
    [gap] = gaps.find_all("tr", class_="flag-row")
    assert "dog" in gap.text
    by_category = _page(client, "/review/health?category=network")
    assert by_category.find_all("tr", class_="flag-row") == []
    japanese = _page(client, "/review/health?lang=ja")
    assert japanese.one("html").get("lang") == "ja"
    assert "コンテンツの健全性" in japanese.one("h1").text
    assert "役に立たない" in japanese.one("table").text


def test_article_page_shows_chart_revisions_and_rewrites_with_before_after(
    client: TestClient,
    editor_headers: dict[str, str],
    scene: dict[str, int],
    session_factory: sessionmaker[Session],
) -> None:
    _login(client, editor_headers)
    recompute_via_api(client, editor_headers)
    faq_id = scene["esim-iphone-activate"]
    doc = _page(client, f"/review/health/faqs/{faq_id}")
    check_accessible(doc)
    flag_sections = doc.find_all("section", class_="flag")
    assert [s.get("data-kind") for s in flag_sections] == ["low_helpfulness"]
    svg = doc.one("svg")
    assert svg.get("role") == "img" and svg.find("title") is not None
    assert len([r for r in svg.find_all("rect") if r.find("title")]) == 1  # one day of views
    [revision] = doc.one("table", id="revisions").one("tbody").find_all("tr")
    assert revision.get("data-revision") == "1"
    assert "250" in revision.text and "5" in revision.text and "25" in revision.text
    assert "手順が <b>古い</b>" in doc.text  # the comment, as text
    assert doc.find("b") is None
    # Rewrite through the form, answering the flag.
    form = doc.by_id("rewrite-form")
    assert form is not None
    options = form.one("select", name="flag_id").find_all("option")
    [chosen] = [o for o in options if "selected" in o.attrs]
    flag_id = chosen.get("value")
    r = client.post(
        f"/review/health/faqs/{faq_id}/rewrite",
        data={
            "csrf": _csrf(doc, "rewrite-form"),
            "question": "How do I activate eSIM on my iPhone?",
            "answer": "1. Open **Settings**.\n2. <script>alert(1)</script> Scan the QR code.",
            "reason": "clearer steps",
            "flag_id": flag_id or "",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:400]
    with session_scope(session_factory) as s:
        flag = s.get(Flag, int(flag_id or 0))
        assert flag is not None and flag.status == FlagStatus.resolved
        entry = s.get(FaqEntry, faq_id)
        assert entry is not None
        add_views(s, entry, 90, day=utcnow().date(), source=ViewSource.reply)
        add_votes(s, entry, 27, 3)
    doc = _page(client, r.headers["location"])
    check_accessible(doc)
    assert doc.find("p", class_="notice") is not None
    rows = doc.one("table", id="revisions").one("tbody").find_all("tr")
    assert [row.get("data-revision") for row in rows] == ["1", "2"]
    [ba] = doc.one("table", id="before-after").one("tbody").find_all("tr")
    assert (ba.get("data-from"), ba.get("data-to")) == ("1", "2")
    assert "17%" in ba.text and "90%" in ba.text and "+73 pt" in ba.text
    assert ba.find("span", class_="sig-yes") is not None
    # Diff between the revisions: escaped text, never markup.
    diff = doc.by_id("diff")
    assert diff is not None
    added = [d.text for d in diff.find_all("div", class_="ins")]
    assert any("<script>alert(1)</script>" in t for t in added)
    assert doc.find("script") is None
    assert [d.text for d in diff.find_all("div", class_="del")]
    # The chart now has two revisions and a dashed line where r2 went live.
    chart = client.get(f"/review/health/faqs/{faq_id}/chart.svg")
    assert chart.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(chart.text)
    assert any(ln.get("stroke-dasharray") for ln in root.iter(f"{SVG}line"))
    assert "r2" in "".join(root.itertext())
    # An empty rewrite is refused with the form kept.
    r = client.post(
        f"/review/health/faqs/{faq_id}/rewrite",
        data={"csrf": _csrf(doc, "rewrite-form"), "question": "", "answer": "x"},
    )
    assert r.status_code == 400 and parse(r.text).find("p", class_="notice") is not None


def test_dismiss_and_merge_from_the_pages(
    client: TestClient,
    editor_headers: dict[str, str],
    scene: dict[str, int],
    session_factory: sessionmaker[Session],
) -> None:
    _login(client, editor_headers)
    recompute_via_api(client, editor_headers)
    faq_id = scene["apn-iphone-ja"]
    doc = _page(client, f"/review/health/faqs/{faq_id}?lang=ja")
    [section] = doc.find_all("section", class_="flag")
    flag_id = int((section.get("id") or "").removeprefix("flag-"))
    form = section.one("form")
    csrf = form.one("input", name="csrf").get("value")
    r = client.post(
        f"/review/health/flags/{flag_id}/dismiss",
        data={"csrf": csrf, "reason": " ", "back": f"/review/health/faqs/{faq_id}"},
    )
    assert r.status_code == 400
    r = client.post(
        f"/review/health/flags/{flag_id}/dismiss",
        data={"csrf": csrf, "reason": "キャンペーン終了で一時的", "back": "https://evil.example/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].startswith(
        f"/review/health/flags/{flag_id}"
    )
    with session_factory() as s:
        flag = s.get(Flag, flag_id)
        assert flag is not None and flag.status == FlagStatus.dismissed
        assert flag.resolution == "キャンペーン終了で一時的"
    page = _page(client, r.headers["location"])
    assert page.by_id("dismiss-form") is None  # nothing left to dismiss
    # Merge the Japanese APN article into another Japanese one.
    into = scene["no-signal-ja"]
    doc = _page(client, f"/review/health/faqs/{faq_id}")
    r = client.post(
        f"/review/health/faqs/{faq_id}/merge",
        data={"csrf": _csrf(doc, "merge-form"), "into": str(scene["apn-iphone"]), "confirm": "yes"},
    )
    assert r.status_code == 400 and "only articles of one language" in r.text
    r = client.post(
        f"/review/health/faqs/{faq_id}/merge",
        data={"csrf": _csrf(doc, "merge-form"), "into": str(into), "confirm": "yes"},
        follow_redirects=False,
    )
    assert (
        r.status_code == 303 and r.headers["location"] == f"/review/health/faqs/{into}?done=merged"
    )
    doc = _page(client, r.headers["location"])
    merged_rows = [
        row
        for row in doc.one("table", id="revisions").find_all("tr")
        if row.get("data-merged-from")
    ]
    assert [row.get("data-merged-from") for row in merged_rows] == [str(faq_id)]
    r = client.get("/faq/apn-iphone-ja", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == "/faq/no-signal-ja"


def test_content_gap_flag_page_shows_its_examples(
    client: TestClient, editor_headers: dict[str, str], scene: dict[str, int]
) -> None:
    _login(client, editor_headers)
    recompute_via_api(client, editor_headers)
    listed = client.get(
        "/v1/flags", params={"kind": FlagKind.content_gap.value}, headers=editor_headers
    ).json()
    [gap] = listed["items"]
    assert gap["evidence"]["posts"] == 5 and gap["evidence"]["distinct_texts"] == 4
    doc = _page(client, f"/review/health/flags/{gap['id']}")
    check_accessible(doc)
    examples = doc.one("table", id="examples").one("tbody").find_all("tr")
    assert len(examples) == 4 and "dog" in examples[0].text
    assert doc.by_id("dismiss-form") is not None
    assert _page(client, "/review/health/flags/999999", status=404) is not None
