"""DM hand-off by personal data or an article marked `needs_account`, never by category: the
flag in content files, the API, the editor form and the export; the draft that follows it."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from kb.db import make_engine, make_session_factory, migrate, session_scope
from kb.errors import ContentError
from kb.faqs.content import parse_article, read_content_dir, render_article
from kb.faqs.entries import load_articles
from kb.models import FaqEntry
from kb.ops.export import export_content
from kb.replies.channels import DEFAULT_LIMITS, resolve_channel
from kb.replies.compose import FaqForReply, ReplyPolicy, compose_reply, reply_link
from kb.replies.triage import triage_post
from kb.text.personal_data import personal_data_kinds
from tests.support.html_dom import parse
from tests.support.paths import CONTENT_DIR, PG_URL

ARTICLES = {a.slug: a for a in read_content_dir(CONTENT_DIR)}
# The seed articles whose answer needs the customer's own account or order.
NEEDS_ACCOUNT = {"refund-timing", "defective-device-exchange", "unpaid-bill-suspension"}
BASE = "https://help.sorami-mobile.com"
ROAMING_EN = "@SoramiMobile how much does it cost to use my phone abroad?"
ROAMING_JA = "@ソラミモバイル 海外で使うといくらかかりますか？"
REFUND_EN = "@SoramiMobile I returned my phone two weeks ago and still no refund, when do I get it?"
PERSONAL = {
    "phone": "@SoramiMobile how much does roaming cost abroad? call me 090-1234-5678",
    "email": "@SoramiMobile how much does roaming cost abroad? reply to taro@example.jp",
    "order": "@SoramiMobile how much does roaming cost abroad? my order number is SO-2024-001234",
}


def _draft(post: str, slug: str) -> tuple[str | None, str, bool]:
    art = ARTICLES[slug]
    faq = FaqForReply(
        7, art.question, art.answer, f"{BASE}/faq/{slug}", art.category, art.needs_account
    )
    draft = compose_reply(
        post,
        art.language,
        faq=faq,
        triage=triage_post(
            post,
            brand_handles=["SoramiMobile"],
            brand_names=["Sorami Mobile", "ソラミモバイル"],
            matched=True,
        ),
        personal_data=personal_data_kinds(post),
        channel=resolve_channel("x", DEFAULT_LIMITS),
        policy=ReplyPolicy(),
    )
    assert draft is not None
    return draft.dm_reason, draft.text, draft.dm_handoff


@pytest.fixture
def second_db_url(db_url: str, tmp_path: Path, _sqlite_template: Path) -> Iterator[str]:
    """Another migrated, empty database (a fresh instance), of the same kind as `db_url`."""
    if not PG_URL:
        path = tmp_path / "second.db"
        shutil.copy(_sqlite_template, path)
        yield f"sqlite:///{path}"
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    url_str = url.render_as_string(hide_password=False)
    migrate(url_str)
    try:
        yield url_str
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# -- content files ---------------------------------------------------------------------------


def test_the_seed_marks_only_articles_that_need_the_account_in_both_languages() -> None:
    marked = {a.translation_group for a in ARTICLES.values() if a.needs_account}
    assert marked == NEEDS_ACCOUNT
    for art in ARTICLES.values():  # both language versions agree
        twin = [b for b in ARTICLES.values() if b.translation_group == art.translation_group]
        assert {b.needs_account for b in twin} == {art.needs_account}
    # General questions about money are answered in public, whatever their category.
    assert not ARTICLES["roaming-charges"].needs_account
    assert ARTICLES["roaming-charges"].category == "billing"


def test_front_matter_reads_and_writes_needs_account() -> None:
    text = (
        "---\nid: a.en\nslug: a\ncategory: billing\nlanguage: en\nneeds_account: true\n"
        "---\n# Q?\n\nA."
    )
    art = parse_article(text)
    assert art.needs_account
    assert parse_article(render_article(art)) == art
    plain = parse_article(text.replace("needs_account: true\n", ""))
    assert not plain.needs_account and "needs_account" not in render_article(plain)
    with pytest.raises(ContentError, match="needs_account must be true or false"):
        parse_article(text.replace("needs_account: true", "needs_account: sometimes"))


# -- the draft -----------------------------------------------------------------------------


def test_a_roaming_price_question_is_answered_in_public_with_the_link() -> None:
    for post, slug in [(ROAMING_EN, "roaming-charges"), (ROAMING_JA, "roaming-charges-ja")]:
        reason, text, handoff = _draft(post, slug)
        assert reason is None and not handoff and "DM" not in text
        assert reply_link(f"{BASE}/faq/{slug}") in text


def test_an_article_marked_needs_account_moves_to_a_dm() -> None:
    reason, text, handoff = _draft(REFUND_EN, "refund-timing")
    assert handoff and reason == "needs_account" and "DM" in text
    assert reply_link(f"{BASE}/faq/refund-timing") in text


@pytest.mark.parametrize("kind", sorted(PERSONAL))
def test_personal_data_in_the_post_moves_to_a_dm(kind: str) -> None:
    reason, text, handoff = _draft(PERSONAL[kind], "roaming-charges")
    assert handoff and reason == "personal_data" and "DM" in text
    for secret in ("090-1234", "taro@example", "SO-2024"):
        assert secret not in text


# -- through the service (SQLite and PostgreSQL) ------------------------------------------------


def _suggest(client: TestClient, headers: dict[str, str], text: str) -> dict:  # type: ignore[type-arg]
    r = client.post("/v1/suggest", json={"text": text, "channel": "x"}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_suggest_hands_off_by_article_flag_and_personal_data_only(
    client: TestClient, agent_headers: dict[str, str]
) -> None:
    body = _suggest(client, agent_headers, ROAMING_EN)
    assert body["best"]["slug"] == "roaming-charges" and body["best"]["category"] == "billing"
    assert body["reply"]["kind"] == "answer" and not body["reply"]["dm_handoff"]
    assert "/faq/roaming-charges?src=reply" in body["reply"]["text"]

    body = _suggest(client, agent_headers, REFUND_EN)
    assert body["best"]["slug"] == "refund-timing"
    assert body["reply"]["dm_handoff"] and body["reply"]["dm_reason"] == "needs_account"

    for post in PERSONAL.values():
        body = _suggest(client, agent_headers, post)
        assert body["reply"]["dm_reason"] == "personal_data", post


def test_the_api_sets_and_keeps_the_flag_and_suggest_follows_it(
    client: TestClient,
    agent_headers: dict[str, str],
    editor_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as s:
        faq_id = s.scalar(select(FaqEntry.id).where(FaqEntry.slug == "roaming-charges"))
    got = client.get(f"/v1/faqs/{faq_id}", headers=agent_headers).json()
    assert got["needs_account"] is False
    edit = {k: got[k] for k in ("question", "answer", "category", "lang")}
    r = client.put(
        f"/v1/faqs/{faq_id}", json={**edit, "needs_account": True}, headers=editor_headers
    )
    assert r.status_code == 200 and r.json()["needs_account"] is True
    body = _suggest(client, agent_headers, ROAMING_EN)
    assert body["best"]["slug"] == "roaming-charges"
    assert body["reply"]["dm_reason"] == "needs_account"
    # An edit that does not mention it keeps it; false clears it.
    r = client.put(f"/v1/faqs/{faq_id}", json=edit, headers=editor_headers)
    assert r.json()["needs_account"] is True
    r = client.put(
        f"/v1/faqs/{faq_id}", json={**edit, "needs_account": False}, headers=editor_headers
    )
    assert r.json()["needs_account"] is False
    assert not _suggest(client, agent_headers, ROAMING_EN)["reply"]["dm_handoff"]
    # Creating: false unless given; a non-boolean is 422.
    new = {
        "question": "Can I get a refund for a cancelled order?",
        "answer": "Yes, see below.",
        "category": "billing",
        "lang": "en",
    }
    r = client.post("/v1/faqs", json={**new, "needs_account": True}, headers=editor_headers)
    assert r.status_code == 201, r.text
    assert client.get(f"/v1/faqs/{r.json()['id']}", headers=agent_headers).json()["needs_account"]
    r = client.post(
        "/v1/faqs", json={**new, "slug": "x-1", "needs_account": "maybe"}, headers=editor_headers
    )
    assert r.status_code in (400, 422)


def test_the_editor_form_has_the_checkbox(
    editor_client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    with session_factory() as s:
        faq_id = s.scalar(select(FaqEntry.id).where(FaqEntry.slug == "refund-timing"))
    doc = parse(editor_client.get(f"/review/articles/{faq_id}").text)
    box = doc.by_id("needs_account")
    assert box is not None and "checked" in box.attrs
    form = doc.by_id("article-form")
    assert form is not None
    data = {
        "csrf": form.one("input", name="csrf").get("value") or "",
        "question": ARTICLES["refund-timing"].question,
        "answer": ARTICLES["refund-timing"].answer,
        "category": "returns",
        "lang": "en",
    }
    # Unticked: the browser sends nothing, and the flag goes.
    r = editor_client.post(f"/review/articles/{faq_id}/edit", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    with session_factory() as s:
        assert s.get(FaqEntry, faq_id).needs_account is False  # type: ignore[union-attr]
    doc = parse(editor_client.get(f"/review/articles/{faq_id}").text)
    assert "checked" not in doc.by_id("needs_account").attrs  # type: ignore[union-attr]
    r = editor_client.post(
        f"/review/articles/{faq_id}/edit",
        data={**data, "needs_account": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with session_factory() as s:
        assert s.get(FaqEntry, faq_id).needs_account is True  # type: ignore[union-attr]
    # In Japanese the label is translated.
    ja = editor_client.get(f"/review/articles/{faq_id}", headers={"Accept-Language": "ja"}).text
    assert "アカウント確認が必要" in ja


def test_export_round_trips_the_flag(
    seeded: None, session_factory: sessionmaker[Session], second_db_url: str, tmp_path: Path
) -> None:
    with session_scope(session_factory) as s:
        export_content(s, tmp_path / "out")
    exported = {a.slug: a for a in read_content_dir(tmp_path / "out")}
    assert {a.translation_group for a in exported.values() if a.needs_account} == NEEDS_ACCOUNT
    fresh = make_session_factory(make_engine(second_db_url))
    with session_scope(fresh) as s:
        load_articles(s, list(exported.values()), author="export")
    with fresh() as s:
        flagged = set(s.scalars(select(FaqEntry.slug).where(FaqEntry.needs_account)))
    assert flagged == {a.slug for a in ARTICLES.values() if a.needs_account}
    # Loading a file that drops the flag clears it (the files are the truth for content).
    refund = exported["refund-timing"]
    with session_scope(fresh) as s:
        summary = load_articles(
            s, [type(refund)(**{**refund.__dict__, "needs_account": False})], author="edit"
        )
        assert summary.revised == 1
    with fresh() as s:
        assert not s.scalar(select(FaqEntry.needs_account).where(FaqEntry.slug == "refund-timing"))
