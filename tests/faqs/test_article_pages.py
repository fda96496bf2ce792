"""Editor pages of the articles: list and filter, create with the site's sanitiser as preview,
edit, unpublish/archive (confirmed)/restore, translations, phrasings with their origin and
removal; one navigation on every /review page; no preselected destructive choice."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from kb.db import session_scope
from kb.faqs import entries as faqs
from kb.models import AuditEvent, EntryStatus, FaqEntry, PhrasingSource, Thread
from tests.support.accounts import make_account, signed_in
from tests.support.html_dom import Node, parse
from tests.support.pages import check_accessible

pytestmark = pytest.mark.db


@pytest.fixture
def editor(client: TestClient, session_factory: sessionmaker[Session]) -> TestClient:
    account = make_account(session_factory, name="Erika Editor")
    return signed_in(client, account)


def _page(client: TestClient, url: str, status: int = 200) -> Node:
    r = client.get(url)
    assert r.status_code == status, r.text[:500]
    return parse(r.text)


def _csrf(doc: Node, form_id: str) -> str:
    form = doc.by_id(form_id)
    assert form is not None, form_id
    return form.one("input", name="csrf").get("value") or ""


def _id(doc: Node, id_: str) -> Node:
    node = doc.by_id(id_)
    assert node is not None, id_
    return node


def _nav(doc: Node) -> list[str]:
    nav = doc.one("nav", class_="review-nav")
    return [a.get("href") or "" for a in nav.find_all("a")]


def test_pages_need_a_signed_in_editor(client: TestClient) -> None:
    r = client.get("/review/articles", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/review/login")
    r = client.post("/review/articles/preview", data={"answer": "x"})
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"


def test_create_edit_archive_restore_through_the_pages(
    editor: TestClient, session_factory: sessionmaker[Session]
) -> None:
    new = _page(editor, "/review/articles/new")
    check_accessible(new)
    token = _csrf(new, "article-form")
    preview = editor.post(
        "/review/articles/preview",
        data={
            "csrf": token,
            "answer": "Use **Wi-Fi** <script>alert(1)</script>[x](javascript:alert(1))",
        },
    )
    assert preview.status_code == 200
    html = preview.json()["html"]
    assert "<strong>Wi-Fi</strong>" in html and "<script" not in html and "javascript:" not in html
    assert (
        editor.post("/review/articles/preview", data={"csrf": "bad", "answer": "x"}).status_code
        == 403
    )

    bad = editor.post(
        "/review/articles/new",
        data={"csrf": token, "question": "", "answer": "x", "category": "account", "lang": "en"},
    )
    assert bad.status_code == 400
    assert parse(bad.text).one("p", class_="notice").text.startswith("question")
    r = editor.post(
        "/review/articles/new",
        data={
            "csrf": token,
            "question": "Can I pause my plan while travelling?",
            "answer": "Yes, for up to **3 months**.",
            "category": "account",
            "lang": "en",
            "phrasings": "suspend my line abroad\n\nhold my plan during a trip\n",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text[:300]
    m = re.fullmatch(r"/review/articles/(\d+)\?done=created", r.headers["location"])
    assert m
    faq_id = int(m.group(1))
    doc = _page(editor, r.headers["location"])
    check_accessible(doc)
    assert _id(doc, "article-status").text == "Published"
    assert [
        row.one("td", class_="phrasing-text").text
        for row in doc.find_all("tr", class_="phrasing-row")
    ] == [
        "suspend my line abroad",
        "hold my plan during a trip",
    ]
    with session_factory() as s:
        entry = s.get(FaqEntry, faq_id)
        assert entry is not None
        slug = entry.slug
    assert editor.get(f"/faq/{slug}").status_code == 200

    r = editor.post(
        f"/review/articles/{faq_id}/edit",
        data={
            "csrf": _csrf(doc, "article-form"),
            "question": "Can I pause my plan while travelling abroad?",
            "answer": "Yes, for up to **6 months**.",
            "category": "account",
            "lang": "en",
            "phrasings": "suspend my line abroad",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("done=edited")
    doc = _page(editor, r.headers["location"])
    assert "6 months" in _id(doc, "answer-preview").text
    assert len(doc.find_all("tr", class_="phrasing-row")) == 1

    # Archive needs the box ticked; unticked is refused and nothing changes.
    r = editor.post(f"/review/articles/{faq_id}/archive", data={"csrf": _csrf(doc, "archive-form")})
    assert r.status_code == 400 and "confirm" in parse(r.text).one("p", class_="notice").text
    confirm = _id(doc, "archive-form").one("input", name="confirm")
    assert "required" in confirm.attrs and confirm.get("checked") is None
    r = editor.post(
        f"/review/articles/{faq_id}/archive",
        data={"csrf": _csrf(doc, "archive-form"), "confirm": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    doc = _page(editor, r.headers["location"])
    assert _id(doc, "article-status").text == "Archived" and doc.by_id("archive-form") is None
    assert editor.get(f"/faq/{slug}").status_code in (404, 410)
    again = editor.post(
        f"/review/articles/{faq_id}/archive",
        data={"csrf": _csrf(doc, "restore-form"), "confirm": "yes"},
    )
    assert again.status_code == 409

    listed = _page(editor, "/review/articles?status=archived")
    assert [row.get("data-faq-id") for row in listed.find_all("tr", class_="article-row")] == [
        str(faq_id)
    ]
    r = editor.post(
        f"/review/articles/{faq_id}/restore",
        data={"csrf": _csrf(doc, "restore-form")},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert editor.get(f"/faq/{slug}").status_code == 200
    with session_factory() as s:
        rows = s.execute(
            select(AuditEvent.action, AuditEvent.actor)
            .where(AuditEvent.target_type == "faq", AuditEvent.target_id == str(faq_id))
            .order_by(AuditEvent.id)
        ).all()
    assert [a for a, _ in rows] == ["create", "edit", "archive", "restore"]
    assert all(b.startswith("Erika Editor") for _, b in rows), rows


def test_phrasings_with_origin_and_translations_in_the_pages(
    editor: TestClient, session_factory: sessionmaker[Session]
) -> None:
    with session_scope(session_factory) as s:
        entry = faqs.get_entry_by_slug(s, "reset-password")
        assert entry is not None
        thread = Thread(channel="twitter", external_id="t-77", url="https://x.example/t/77")
        s.add(thread)
        s.flush()
        faqs.add_phrasings(
            s,
            entry,
            ["locked out after the update"],
            source=PhrasingSource.thread,
            thread_id=thread.id,
        )
        faqs.add_phrasings(s, entry, ["wrong outcome phrasing"], source=PhrasingSource.outcome)
        faq_id, group = entry.id, entry.translation_group
        other = faqs.create_entry(
            s, question="Change my e-mail", answer="Settings.", category="account", language="en"
        )
        other_id = other.id
    doc = _page(editor, f"/review/articles/{faq_id}?lang=ja")
    check_accessible(doc)
    rows = {
        row.one("td", class_="phrasing-text").text: row
        for row in doc.find_all("tr", class_="phrasing-row")
    }
    learnt = rows["locked out after the update"].find_all("td")[1]
    assert (
        "サポートスレッド" in learnt.text
        and learnt.one("a").get("href") == "https://x.example/t/77"
    )
    outcome = rows["wrong outcome phrasing"]
    form = outcome.one("form")
    data = {
        "csrf": form.one("input", name="csrf").get("value") or "",
        "phrasing_id": form.one("input", name="phrasing_id").get("value") or "",
    }
    assert editor.post(f"/review/articles/{faq_id}/remove-phrasing", data=data).status_code == 400
    r = editor.post(
        f"/review/articles/{faq_id}/remove-phrasing",
        data={**data, "confirm": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    doc = _page(editor, r.headers["location"])
    assert "wrong outcome phrasing" not in [
        r.one("td", class_="phrasing-text").text for r in doc.find_all("tr", class_="phrasing-row")
    ]
    gone = editor.post(
        f"/review/articles/{faq_id}/remove-phrasing", data={**data, "confirm": "yes"}
    )
    assert gone.status_code == 404

    # The seed's Japanese translation is listed; linking another English article is refused.
    assert group and doc.by_id("translations") is not None
    r = editor.post(
        f"/review/articles/{faq_id}/link",
        data={"csrf": _csrf(doc, "link-form"), "other_id": str(other_id)},
    )
    assert r.status_code == 400
    ja_link = _id(doc, "translations").find_all("form")[0]
    ja_id = ja_link.one("input", name="other_id").get("value")
    r = editor.post(
        f"/review/articles/{faq_id}/unlink",
        data={"csrf": _csrf(doc, "link-form"), "other_id": ja_id},
        follow_redirects=False,
    )
    assert r.status_code == 303
    doc = _page(editor, r.headers["location"])
    assert doc.by_id("translations") is None
    r = editor.post(
        f"/review/articles/{faq_id}/link",
        data={"csrf": _csrf(doc, "link-form"), "other_id": str(ja_id)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with session_factory() as s:
        a, b = s.get(FaqEntry, faq_id), s.get(FaqEntry, int(ja_id or 0))
        assert a and b and a.translation_group and a.translation_group == b.translation_group
        assert a.status == EntryStatus.published


def test_one_navigation_on_every_review_page_and_no_preselected_merge(
    editor: TestClient, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as s:
        faq_id = s.scalar(select(FaqEntry.id).order_by(FaqEntry.id))
    expected = ["/review", "/review/articles", "/review/health"]
    for url in (
        "/review",
        "/review/articles",
        "/review/health",
        f"/review/articles/{faq_id}",
        f"/review/health/faqs/{faq_id}",
    ):
        doc = _page(editor, url)
        links = _nav(doc)
        assert links[:3] == expected, (url, links)
        assert "/review/admin/users" not in links  # an editor is no admin
        current = [
            a.get("href")
            for a in doc.one("nav", class_="review-nav").find_all("a")
            if a.get("aria-current") == "page"
        ]
        assert len(current) == 1, (url, current)
    merge = _page(editor, f"/review/health/faqs/{faq_id}").by_id("merge-form")
    if merge is not None:
        assert merge.one("input", name="into").get("value") in ("", None)
        assert "required" in merge.one("input", name="confirm").attrs


def test_admins_see_the_admin_links(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    admin = make_account(session_factory, email="root@example.com", role="admin")
    signed_in(client, admin)
    links = _nav(_page(client, "/review/articles"))
    assert "/review/audit" in links and "/review/admin/users" in links
