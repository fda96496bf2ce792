"""The capture services on a real database and index: ingest, covered or not, clustering,
drafts and demand, and the review actions (publish, merge, reject)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.capture.deps import MIN_COVER_THRESHOLD
from indexer.embedding.encoders import CachedEmbedder
from indexer.lexical.tokenizer import default_tokenizer
from indexer.retrieval.confidence import default_confidence_model
from kb.capture import drafts as capture_drafts
from kb.capture import ingest as capture_ingest
from kb.capture import thread_input
from kb.db import make_engine, make_session_factory, migrate, session_scope
from kb.errors import InvalidInput, InvalidTransition, NotFound
from kb.faqs.entries import get_entry_by_slug, get_entry_or_raise, list_revisions
from kb.indexing import IndexManager
from kb.models import (
    DraftStatus,
    FaqDraft,
    PhrasingSource,
    QuestionPhrasing,
    Thread,
    ThreadPost,
    ThreadStatus,
)
from kb.text import cleaning

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
SECRET = "test-pseudonym-secret"

POINTS = [
    "@SoramiMobile ソラミポイントって何に使えますか？",
    "@SoramiMobile ソラミポイントの使い道を教えてください🙏",
    "ソラミのポイントは料金の支払いに使えますか？ #ソラミモバイル",
]
POINTS_ANSWER = (
    "こんにちは！ソラミサポートの中野です。ソラミポイントは1ポイント1円として月々のご利用料金の"
    "お支払いに使えます。My Soramiの「ポイント」からご設定ください。よろしくお願いいたします。^中野"
)
WATCH = [
    "@SoramiMobile Can I use my Apple Watch with a Sorami cellular plan?",
    "does sorami support apple watch cellular / esim for watches? 🤔",
]
WATCH_ANSWER = (
    "Hi there, Sam from the support team here! Apple Watch cellular plans aren't available "
    "yet; we'll announce them on our news page. Hope this helps! ^Sam"
)
SHOP = "@SoramiMobile 渋谷店の営業時間を教えてください"
SHOP_ANSWER = "お問い合わせありがとうございます。渋谷店は10時から20時まで営業しています。"
PASSWORD = "My Soramiのパスワードを忘れたのでログインできない😭"
PASSWORD_ANSWER = "ログイン画面の「パスワードをお忘れの方」から再設定できます。^中野"


def thread(
    external_id: str,
    question: str,
    answer: str = "ご案内します。",
    *,
    channel: str = "x",
    resolved_at: datetime = NOW,
    faq_id: int | None = None,
    author: str = "@customer",
) -> thread_input.ThreadIn:
    body: dict[str, Any] = {
        "channel": channel,
        "external_id": external_id,
        "url": f"https://x.com/i/status/{external_id}",
        "resolved_at": resolved_at.isoformat(),
        "faq_id": faq_id,
        "posts": [
            {"role": "customer", "author": author, "text": question, "created_at": resolved_at},
            {"role": "agent", "author": "@SoramiSupport", "text": answer},
        ],
    }
    return thread_input.thread_from_dict(body)


def make_kit(
    embedder: CachedEmbedder, index_dir: Path, factory: sessionmaker[Session]
) -> capture_ingest.Capture:
    manager = IndexManager(embedder=embedder, tokenizer=default_tokenizer(), index_dir=index_dir)
    manager.open(factory)
    return capture_ingest.Capture(
        index=manager,
        calibration=default_confidence_model(embedder.name),
        vectors=capture_ingest.QuestionVectors(embedder),
        policy=capture_ingest.CapturePolicy(cover_threshold=MIN_COVER_THRESHOLD),
        secret=SECRET,
    )


@pytest.fixture
def kit(
    embedder: CachedEmbedder,
    tmp_path: Path,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> capture_ingest.Capture:
    return make_kit(embedder, tmp_path / "index", session_factory)


def ingest(
    factory: sessionmaker[Session], kit: capture_ingest.Capture, items: list[thread_input.ThreadIn]
) -> capture_ingest.IngestReport:
    with session_scope(factory) as s:
        report = capture_ingest.ingest_threads(s, kit, items)
    kit.index.sync(factory)
    return report


def count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def slug_id(factory: sessionmaker[Session], slug: str) -> int:
    with factory() as s:
        entry = get_entry_by_slug(s, slug)
        assert entry is not None
        return entry.id


def test_a_covered_thread_becomes_evidence_and_a_phrasing_the_index_learns_at_once(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    report = ingest(session_factory, kit, [thread("t1", PASSWORD, PASSWORD_ANSWER)])
    out = report.outcomes[0]
    faq = slug_id(session_factory, "reset-password-ja")
    assert (out.status, out.faq_id, out.draft_id) == (ThreadStatus.covered, faq, None)
    assert out.question == "My Soramiのパスワードを忘れたのでログインできない"
    assert out.confidence is not None and out.confidence >= MIN_COVER_THRESHOLD
    with session_factory() as s:
        learnt = s.scalars(
            select(QuestionPhrasing).where(QuestionPhrasing.source == PhrasingSource.thread)
        ).all()
        assert [(p.entry_id, p.text, p.thread_id) for p in learnt] == [
            (faq, out.question, out.thread_id)
        ]
    hit = kit.index.search(out.question, k=1, language="ja").hits[0]
    assert (hit.entry_id, hit.matched_text) == (faq, out.question)


def test_raw_text_is_kept_cleaned_text_derived_and_handles_pseudonymised(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    ingest(session_factory, kit, [thread("t1", PASSWORD, PASSWORD_ANSWER, author="@Hanako_88")])
    with session_factory() as s:
        posts = s.scalars(select(ThreadPost).order_by(ThreadPost.position)).all()
    assert [p.text_raw for p in posts] == [PASSWORD, PASSWORD_ANSWER]
    assert [p.text_clean for p in posts] == [
        "My Soramiのパスワードを忘れたのでログインできない",
        "ログイン画面の「パスワードをお忘れの方」から再設定できます。",
    ]
    assert posts[0].author_hash == cleaning.pseudonymize("hanako_88", SECRET)
    assert "hanako" not in posts[0].author_hash.lower() and len(posts[0].author_hash) == 64


def test_ingest_is_idempotent_and_an_update_replaces_the_phrasing(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    first = ingest(session_factory, kit, [thread("t1", PASSWORD, PASSWORD_ANSWER)]).outcomes[0]
    again = ingest(session_factory, kit, [thread("t1", PASSWORD, PASSWORD_ANSWER)]).outcomes[0]
    assert (again.created, again.changed, again.thread_id) == (False, False, first.thread_id)
    assert (again.status, again.faq_id, again.phrasing_added) == (
        ThreadStatus.covered,
        first.faq_id,
        False,
    )
    assert count(session_factory, Thread) == 1 and count(session_factory, ThreadPost) == 2
    with session_factory() as s:
        n_phrasings = s.scalar(select(func.count()).select_from(QuestionPhrasing))
    # The customer edits the question: the thread is updated in place, its phrasing replaced.
    edited = "My Soramiのパスワードが分からなくなりました"
    changed = ingest(session_factory, kit, [thread("t1", edited, PASSWORD_ANSWER)]).outcomes[0]
    assert (changed.created, changed.changed, changed.status) == (
        False,
        True,
        ThreadStatus.covered,
    )
    assert count(session_factory, Thread) == 1
    with session_factory() as s:
        texts = s.scalars(
            select(QuestionPhrasing.text).where(QuestionPhrasing.thread_id == first.thread_id)
        ).all()
        assert texts == [edited]
        assert s.scalar(select(func.count()).select_from(QuestionPhrasing)) == n_phrasings
    # The same thread twice in one batch is one thread.
    twice = ingest(session_factory, kit, [thread("t2", SHOP), thread("t2", SHOP, SHOP_ANSWER)])
    assert len(twice.outcomes) == 1 and count(session_factory, Thread) == 2


def test_the_faq_the_agent_linked_wins_and_an_unknown_one_is_refused(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    faq = slug_id(session_factory, "roaming-charges")
    out = ingest(session_factory, kit, [thread("t1", SHOP, SHOP_ANSWER, faq_id=faq)]).outcomes[0]
    assert (out.status, out.faq_id, out.confidence, out.phrasing_added) == (
        ThreadStatus.covered,
        faq,
        None,
        True,
    )
    with session_scope(session_factory) as s, pytest.raises(InvalidInput, match="faq_id 999999"):
        capture_ingest.ingest_threads(s, kit, [thread("t2", SHOP, faq_id=999_999)])
    assert count(session_factory, Thread) == 1
    with session_scope(session_factory) as s:
        report = capture_ingest.ingest_threads(
            s, kit, [thread("t3", SHOP, faq_id=999_999), thread("t4", PASSWORD)], strict=False
        )
    assert report.rejected == [(0, "faq_id 999999 does not exist")]
    assert [o.external_id for o in report.outcomes] == ["t4"]


def _uncovered_batch() -> list[thread_input.ThreadIn]:
    items = [thread(f"p{i}", q, POINTS_ANSWER) for i, q in enumerate(POINTS)]
    items += [thread(f"w{i}", q, WATCH_ANSWER, channel="instagram") for i, q in enumerate(WATCH)]
    items.append(thread("s0", SHOP, SHOP_ANSWER))
    return items


def _partition(factory: sessionmaker[Session]) -> dict[str, set[str]]:
    """Draft question → external ids of its threads."""
    with factory() as s:
        rows = s.execute(
            select(FaqDraft.question, Thread.external_id).join(
                Thread, Thread.draft_id == FaqDraft.id
            )
        ).all()
    out: dict[str, set[str]] = {}
    for question, external_id in rows:
        out.setdefault(question, set()).add(external_id)
    return out


def test_uncovered_threads_are_clustered_into_one_draft_per_topic(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    report = ingest(session_factory, kit, _uncovered_batch())
    assert {o.status for o in report.outcomes} == {ThreadStatus.drafted}
    assert sorted(_partition(session_factory).values(), key=sorted) == [
        {"p0", "p1", "p2"},
        {"s0"},
        {"w0", "w1"},
    ]
    with session_factory() as s:
        views, total = capture_drafts.list_drafts(s, now=NOW)
    assert total == 3
    points, watch, shop = views  # by demand: 3, 2, 1 threads
    assert (points.draft.language, watch.draft.language, shop.draft.language) == ("ja", "en", "ja")
    assert points.draft.question in {cleaning.clean_customer_text(q) for q in POINTS}
    assert points.draft.answer == (
        "ソラミポイントは1ポイント1円として月々のご利用料金のお支払いに使えます。"
        "My Soramiの「ポイント」からご設定ください。"
    )
    assert watch.draft.answer.startswith("Apple Watch cellular plans aren't available yet")
    assert "Sam" not in watch.draft.answer
    assert [len(v.threads) for v in views] == [3, 2, 1]


def test_clustering_is_stable_for_the_same_input(
    kit: capture_ingest.Capture,
    session_factory: sessionmaker[Session],
    embedder: CachedEmbedder,
    tmp_path: Path,
    seed_articles: list[Any],
) -> None:
    items = _uncovered_batch()
    ingest(session_factory, kit, items)
    first = _partition(session_factory)
    again = ingest(session_factory, kit, items)
    assert all(not o.changed for o in again.outcomes) and not again.new_drafts
    assert _partition(session_factory) == first
    # The same threads in another order, into a fresh database, give the same drafts.
    url = f"sqlite:///{tmp_path / 'other.db'}"
    migrate(url)
    engine = make_engine(url)
    try:
        other = make_session_factory(engine)
        from kb.faqs.entries import load_articles

        with session_scope(other) as s:
            load_articles(s, seed_articles, author="faq_content")
        other_kit = make_kit(embedder, tmp_path / "other-index", other)
        ingest(other, other_kit, list(reversed(items)))
        assert _partition(other) == first
    finally:
        engine.dispose()


def test_average_linkage_ignores_input_order() -> None:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(4, 16))
    points = np.vstack([c + rng.normal(scale=0.15, size=(5, 16)) for c in centres])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    groups = capture_ingest.average_linkage(points, 0.8)
    assert sorted(map(sorted, groups)) == [list(range(i, i + 5)) for i in range(0, 20, 5)]
    order = rng.permutation(20)
    shuffled = capture_ingest.average_linkage(points[order], 0.8)
    assert sorted(sorted(int(order[i]) for i in g) for g in shuffled) == sorted(map(sorted, groups))
    assert capture_ingest.average_linkage(points, 1.01) == [[i] for i in range(20)]


def test_new_threads_join_existing_drafts_and_demand_shows_growth(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    # The watch question is old news (three weeks ago); points questions spike this week.
    old = [
        thread(f"w{i}", q, WATCH_ANSWER, resolved_at=NOW - timedelta(days=20 + i))
        for i, q in enumerate([*WATCH, "Apple Watch cellular support on Sorami?"])
    ]
    old.append(
        thread(
            "w9", "is apple watch esim supported by sorami", resolved_at=NOW - timedelta(days=10)
        )
    )
    ingest(session_factory, kit, old)
    spike = [
        thread(f"p{i}", q, POINTS_ANSWER, resolved_at=NOW - timedelta(hours=i + 1))
        for i, q in enumerate(POINTS)
    ]
    ingest(session_factory, kit, spike[:1])
    report = ingest(session_factory, kit, spike[1:])
    assert not report.new_drafts  # joined the draft the first points thread made
    with session_factory() as s:
        by_demand, _ = capture_drafts.list_drafts(s, now=NOW)
        by_growth, _ = capture_drafts.list_drafts(s, sort="growth", now=NOW)
    assert [len(v.threads) for v in by_demand] == [4, 3]
    watch, points = by_demand
    assert (watch.demand.last_7d, watch.demand.previous_7d, watch.demand.growth) == (0, 1, -1.0)
    assert (points.demand.last_7d, points.demand.previous_7d, points.demand.growth) == (3, 0, 3.0)
    assert points.demand.trending and not watch.demand.trending
    assert [v.draft.id for v in by_growth] == [points.draft.id, watch.draft.id]


def test_an_editors_rewrite_is_not_overwritten_by_later_threads(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    draft_id = (
        ingest(session_factory, kit, [thread("p0", POINTS[0], POINTS_ANSWER)]).outcomes[0].draft_id
    )
    assert draft_id is not None
    with session_scope(session_factory) as s:
        capture_drafts.update_draft(
            s,
            draft_id,
            question="ソラミポイントの使い方",
            answer="**1ポイント1円**で使えます。",
            category="billing",
        )
    ingest(
        session_factory,
        kit,
        [thread("p1", POINTS[1], "ポイントは支払いに使えます。詳しくはこちらをご覧ください。")],
    )
    with session_factory() as s:
        draft = s.get(FaqDraft, draft_id)
        assert draft is not None
        assert (draft.question, draft.answer, draft.category) == (
            "ソラミポイントの使い方",
            "**1ポイント1円**で使えます。",
            "billing",
        )


def test_publish_creates_an_indexed_entry_with_the_threads_as_phrasings(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    ingest(session_factory, kit, _uncovered_batch())
    with session_factory() as s:
        points = capture_drafts.list_drafts(s, now=NOW)[0][0]
    with session_scope(session_factory) as s:
        with pytest.raises(InvalidInput, match="category is required"):
            capture_drafts.publish_draft(s, points.draft.id)
        result = capture_drafts.publish_draft(
            s, points.draft.id, category="billing", author="editor"
        )
        entry_id = result.entry.id
        assert result.phrasings_added == 2  # the third question is the title itself
    kit.index.sync(session_factory)
    with session_factory() as s:
        entry = get_entry_or_raise(s, entry_id)
        assert entry.language == "ja" and entry.category == "billing"
        assert [r.number for r in list_revisions(s, entry_id)] == [1]
        assert all(p.source == PhrasingSource.thread and p.thread_id for p in entry.phrasings)
        threads = s.scalars(select(Thread).where(Thread.draft_id == points.draft.id)).all()
        assert {(t.status, t.faq_id) for t in threads} == {(ThreadStatus.covered, entry_id)}
        draft = s.get(FaqDraft, points.draft.id)
        assert draft is not None and (draft.status, draft.entry_id) == (
            DraftStatus.published,
            entry_id,
        )
    assert (
        kit.index.search("ソラミポイントはどう使うの?", k=1, language="ja").hits[0].entry_id
        == entry_id
    )
    with session_scope(session_factory) as s, pytest.raises(InvalidTransition):
        capture_drafts.publish_draft(s, points.draft.id, category="billing")
    # A later look-alike thread is filed under the new FAQ, not in a new draft.
    later = ingest(
        session_factory, kit, [thread("p9", "ソラミポイントって何に使える？", POINTS_ANSWER)]
    )
    assert (later.outcomes[0].status, later.outcomes[0].faq_id) == (ThreadStatus.covered, entry_id)
    assert not later.new_drafts


def test_merge_moves_phrasings_and_evidence_to_the_entry(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    ingest(session_factory, kit, _uncovered_batch())
    faq_en = slug_id(session_factory, "device-compatibility")
    faq_ja = slug_id(session_factory, "device-compatibility-ja")
    with session_factory() as s:
        watch = capture_drafts.list_drafts(s, now=NOW)[0][1]
    assert watch.draft.language == "en"
    with session_scope(session_factory) as s:
        with pytest.raises(InvalidInput, match=f"its en version is FAQ {faq_en}"):
            capture_drafts.merge_draft(s, watch.draft.id, faq_id=faq_ja)
        with pytest.raises(NotFound):
            capture_drafts.merge_draft(s, watch.draft.id, faq_id=999_999)
        result = capture_drafts.merge_draft(s, watch.draft.id, faq_id=faq_en)
        assert result.phrasings_added == 2
    kit.index.sync(session_factory)
    with session_factory() as s:
        entry = get_entry_or_raise(s, faq_en)
        learnt = {p.text for p in entry.phrasings if p.source == PhrasingSource.thread}
        assert learnt == {cleaning.clean_customer_text(q) for q in WATCH}
        evidence, total = capture_drafts.list_threads(s, faq_id=faq_en)
        assert total == 2 and {t.external_id for t in evidence} == {"w0", "w1"}
        draft = s.get(FaqDraft, watch.draft.id)
        assert draft is not None and (draft.status, draft.entry_id) == (DraftStatus.merged, faq_en)
    with session_scope(session_factory) as s, pytest.raises(InvalidTransition):
        capture_drafts.reject_draft(s, watch.draft.id, reason="too late")
    later = ingest(session_factory, kit, [thread("w7", "Apple Watch cellular plan with Sorami?")])
    assert (later.outcomes[0].status, later.outcomes[0].faq_id) == (ThreadStatus.covered, faq_en)


def test_rejected_drafts_attract_their_look_alikes_instead_of_new_drafts(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    first = ingest(session_factory, kit, [thread("s0", SHOP, SHOP_ANSWER)]).outcomes[0]
    assert first.draft_id is not None
    with session_scope(session_factory) as s:
        with pytest.raises(InvalidInput, match="reason"):
            capture_drafts.reject_draft(s, first.draft_id, reason="  ")
        capture_drafts.reject_draft(s, first.draft_id, reason="店舗情報は店舗ページで案内する")
    later = ingest(session_factory, kit, [thread("s1", "渋谷店って何時まで営業してますか？")])
    assert not later.new_drafts
    assert (later.outcomes[0].status, later.outcomes[0].draft_id) == (
        ThreadStatus.drafted,
        first.draft_id,
    )
    with session_factory() as s:
        view = capture_drafts.get_draft_or_raise(s, first.draft_id)
        assert view.draft.status == DraftStatus.rejected
        assert view.draft.reject_reason == "店舗情報は店舗ページで案内する"
        assert {t.external_id for t in view.threads} == {"s0", "s1"}
        assert capture_drafts.list_drafts(s)[1] == 0  # not back in the open queue
    with session_scope(session_factory) as s:
        assert capture_drafts.reopen_draft(s, first.draft_id).status == DraftStatus.open


def test_a_thread_without_words_stays_uncovered_without_a_draft(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    out = ingest(
        session_factory, kit, [thread("e1", "@SoramiMobile 😭😭 https://t.co/abc")]
    ).outcomes[0]
    assert (out.status, out.question, out.draft_id) == (ThreadStatus.uncovered, "", None)
    assert count(session_factory, FaqDraft) == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"external_id": "1", "posts": [{"role": "customer", "text": "hi"}]}, "channel"),
        ({"channel": "x", "posts": [{"role": "customer", "text": "hi"}]}, "external_id"),
        ({"channel": "x", "external_id": "1", "posts": []}, "posts"),
        ({"channel": "x", "external_id": "1", "posts": [{"role": "agent", "text": "hi"}]},
         "customer post"),
        ({"channel": "x", "external_id": "1", "posts": [{"role": "bot", "text": "hi"}]},
         "customer or agent"),
        ({"channel": "x", "external_id": "1", "posts": [{"role": "customer", "text": " "}]},
         "text must not be empty"),
        ({"channel": "x", "external_id": "1", "resolved_at": "yesterday",
          "posts": [{"role": "customer", "text": "hi"}]}, "ISO 8601"),
        ({"channel": "x", "external_id": "1", "url": "javascript:alert(1)",
          "posts": [{"role": "customer", "text": "hi"}]}, "url"),
        ({"channel": "x", "external_id": "1", "faq_id": "abc",
          "posts": [{"role": "customer", "text": "hi"}]}, "faq_id"),
        ("not an object", "object"),
    ],
)  # fmt: skip
def test_invalid_thread_bodies_are_refused_with_a_reason(body: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        thread_input.thread_from_dict(body)


def test_thread_bodies_are_normalised() -> None:
    t = thread_input.thread_from_dict(
        {
            "channel": "Twitter",
            "external_id": 1234567890,
            "resolved_at": "2026-11-20T21:00:00+09:00",
            "posts": [{"role": "Customer", "text": "hi", "created_at": "2026-11-20 11:59:00"}],
            "likes": 3,
        }
    )
    assert (t.channel, t.external_id) == ("x", "1234567890")
    assert t.resolved_at == NOW
    assert t.posts[0].created_at == datetime(2026, 11, 20, 11, 59, tzinfo=UTC)
