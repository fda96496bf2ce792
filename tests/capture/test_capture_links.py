"""Links are coverage: an agent's link to a faqloop article marks the thread covered by that
article (relative, absolute under a configured origin, with query or fragment, through a
merge), and the agent metrics count it as an FAQ-link answer."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.capture.deps import MIN_COVER_THRESHOLD
from indexer.embedding.encoders import CachedEmbedder
from indexer.lexical.tokenizer import default_tokenizer
from indexer.retrieval.confidence import default_confidence_model
from kb.capture import ingest as capture_ingest
from kb.capture import thread_input
from kb.db import session_scope
from kb.faqs.entries import get_entry_by_slug
from kb.faqs.lifecycle import archive
from kb.faqs.merge import merge_entries
from kb.indexing import IndexManager
from kb.models import FaqDraft, QuestionPhrasing, ThreadStatus
from kb.replies.metrics import has_faq_link
from kb.text.cleaning import faq_link_slugs

WHEN = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
ORIGINS = ("https://help.sorami.example", "http://old-help.sorami.example:8080/support/")


def make_kit(
    embedder: CachedEmbedder, index_dir: Path, factory: sessionmaker[Session]
) -> capture_ingest.Capture:
    manager = IndexManager(embedder=embedder, tokenizer=default_tokenizer(), index_dir=index_dir)
    manager.open(factory)
    return capture_ingest.Capture(
        index=manager,
        calibration=default_confidence_model(embedder.name),
        vectors=capture_ingest.QuestionVectors(embedder),
        policy=capture_ingest.CapturePolicy(
            cover_threshold=MIN_COVER_THRESHOLD, public_origins=ORIGINS
        ),
        secret="links-test-secret",
    )


@pytest.fixture
def kit(
    embedder: CachedEmbedder, tmp_path: Path, seeded: None, session_factory: sessionmaker[Session]
) -> capture_ingest.Capture:
    return make_kit(embedder, tmp_path / "index", session_factory)


def thread(external_id: str, question: str, *replies: str) -> thread_input.ThreadIn:
    posts: list[dict[str, Any]] = [{"role": "customer", "author": "@kana_k", "text": question}]
    posts += [{"role": "agent", "author": "@SoramiCare", "text": r} for r in replies]
    body = {
        "channel": "instagram",
        "external_id": external_id,
        "resolved_at": WHEN.isoformat(),
        "posts": posts,
    }
    return thread_input.thread_from_dict(body)


def ingest(
    factory: sessionmaker[Session], kit: capture_ingest.Capture, items: list[thread_input.ThreadIn]
) -> capture_ingest.IngestReport:
    with session_scope(factory) as s:
        report = capture_ingest.ingest_threads(s, kit, items)
    kit.index.sync(factory)
    return report


def entry_id(factory: sessionmaker[Session], slug: str) -> int:
    with factory() as s:
        entry = get_entry_by_slug(s, slug)
        assert entry is not None
        return entry.id


# A question no seed article answers well, so only the link can make it covered.
ODD = "@ソラミモバイル公式 旅行先でいきなり圏外になって、戻ってきても直らないんですけど"


@pytest.mark.parametrize(
    ("reply", "slug"),
    [
        ("こちらの手順をお試しください /faq/no-signal-ja", "no-signal-ja"),
        ("詳細：/faq/no-signal-ja?src=reply", "no-signal-ja"),
        ("[圏外のとき](/faq/no-signal-ja#steps) をご覧ください", "no-signal-ja"),
        ("See https://help.sorami.example/faq/no-signal?src=reply&utm=x.", "no-signal"),
        ("Try this: http://old-help.sorami.example:8080/support/faq/no-signal#fix", "no-signal"),
        ("HTTPS://HELP.SORAMI.EXAMPLE:443/faq/no-signal-ja", "no-signal-ja"),
    ],
)
@pytest.mark.db
def test_a_reply_linking_an_article_covers_the_thread_without_a_draft(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session], reply: str, slug: str
) -> None:
    report = ingest(
        session_factory, kit, [thread("ig-501", ODD, "ご連絡ありがとうございます。", reply)]
    )
    out = report.outcomes[0]
    assert out.status == ThreadStatus.covered
    assert out.faq_id == entry_id(session_factory, slug)
    assert out.covered_by == "link"
    assert out.draft_id is None
    assert out.phrasing_added
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(FaqDraft)) == 0
        learnt = s.scalars(
            select(QuestionPhrasing.text).where(QuestionPhrasing.entry_id == out.faq_id)
        )
        assert any("圏外" in t for t in learnt)


@pytest.mark.parametrize(
    "reply",
    [
        "https://evil.example/faq/no-signal-ja",  # not one of the site's origins
        "https://help.sorami.example/blog/faq/no-signal-ja",  # not an article path
        "/faq/there-is-no-such-article",  # an unknown slug
        "https://help.sorami.example.evil.example/faq/no-signal",
    ],
)
@pytest.mark.db
def test_links_that_are_not_live_articles_of_this_site_cover_nothing(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session], reply: str
) -> None:
    report = ingest(session_factory, kit, [thread("ig-502", ODD, reply)])
    out = report.outcomes[0]
    assert out.covered_by != "link"
    assert out.status in (ThreadStatus.drafted, ThreadStatus.covered)


@pytest.mark.db
def test_a_merged_articles_old_slug_leads_to_the_live_article(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    old, survivor = (
        entry_id(session_factory, "apn-android-ja"),
        entry_id(session_factory, "apn-iphone-ja"),
    )
    with session_scope(session_factory) as s:
        merge_entries(s, old, survivor, by="editor")
    kit.index.sync(session_factory)
    question = "@小林さん Pixelでモバイルデータだけ繋がらないです"
    report = ingest(
        session_factory, kit, [thread("ig-503", question, "/faq/apn-android-ja?src=reply")]
    )
    assert (report.outcomes[0].status, report.outcomes[0].faq_id) == (
        ThreadStatus.covered,
        survivor,
    )


@pytest.mark.db
def test_a_link_to_an_archived_article_is_no_answer(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    gone = entry_id(session_factory, "no-signal-ja")
    with session_scope(session_factory) as s:
        archive(s, gone, by="editor")
    kit.index.sync(session_factory)
    report = ingest(session_factory, kit, [thread("ig-504", ODD, "/faq/no-signal-ja")])
    assert report.outcomes[0].faq_id != gone


@pytest.mark.db
def test_an_explicit_faq_id_wins_over_a_link(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    given = entry_id(session_factory, "change-plan-ja")
    item = dataclasses.replace(thread("ig-505", ODD, "/faq/no-signal-ja"), faq_id=given)
    out = ingest(session_factory, kit, [item]).outcomes[0]
    assert (out.faq_id, out.covered_by) == (given, "faq_id")


def test_link_slugs_in_order_once_each() -> None:
    text = (
        "/faq/a-ja と https://help.sorami.example/faq/b?src=reply、"
        "また /faq/a-ja も (https://other.example/faq/c)"
    )
    assert faq_link_slugs(text, ORIGINS) == ["a-ja", "b"]
    assert faq_link_slugs(text) == ["a-ja", "b", "c"]  # any origin


@pytest.mark.parametrize(
    ("text", "linked"),
    [
        ("詳細：/faq/reset-password-ja?src=reply", True),
        ("https://help.sorami.example/faq/esim-iphone-activate#steps", True),
        ("[手順](/faq/apn-iphone-ja)", True),
        ("DMでお伺いします", False),
        ("https://example.com/faqs/", False),
    ],
)
def test_agent_metrics_count_every_form_of_faq_link(text: str, linked: bool) -> None:
    assert has_faq_link(text) is linked
