"""Events reach the outbox in the same transaction as the change they report: a new draft
reaching a webhook's demand threshold, a new content-health flag, an article published
(created, from a draft, restored). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from indexer.embedding.encoders import CachedEmbedder
from kb.audit import Actor
from kb.capture import drafts as capture_drafts
from kb.capture import ingest as capture_ingest
from kb.db import session_scope
from kb.faqs import lifecycle
from kb.faqs.entries import create_entry
from kb.health import flags
from kb.health.detection import Detection
from kb.health.scores import HealthPolicy
from kb.models import FlagKind, WebhookDelivery, WebhookEvent
from kb.notify.delivery import DeliveryPolicy, deliver_due
from kb.notify.webhooks import create_webhook
from tests.capture.test_capture import POINTS, POINTS_ANSWER, make_kit, thread
from tests.notify.receiver import receiver

ADMIN = Actor("Ada Admin <ada@example.com>", "user")


def _hook(
    factory: sessionmaker[Session], events: list[str], *, min_demand: int = 3, url: str = ""
) -> int:
    with session_scope(factory) as s:
        hook, _ = create_webhook(
            s,
            url=url or "http://127.0.0.1:9/hook",
            events=events,
            min_demand=min_demand,
            actor=ADMIN,
        )
        return hook.id


def _sent(factory: sessionmaker[Session]) -> list[tuple[int, str, dict]]:  # type: ignore[type-arg]
    """(webhook id, event kind, payload) of every delivery, oldest first."""
    with factory() as s:
        rows = s.execute(
            select(WebhookDelivery.webhook_id, WebhookEvent.kind, WebhookEvent.payload)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .order_by(WebhookDelivery.id)
        ).all()
    return [(h, k, p) for h, k, p in rows]


def _entry(s: Session, question: str = "How do I change my plan?") -> int:
    return create_entry(
        s,
        question=question,
        answer="Open My Sorami and choose Plan.",
        category="plans",
        language="en",
        author="tests",
    ).id


def test_nothing_is_written_when_no_webhook_listens(
    session_factory: sessionmaker[Session],
) -> None:
    _hook(session_factory, ["flag.raised"])  # listens to something else
    with session_scope(session_factory) as s:
        _entry(s)
    with session_factory() as s:
        assert s.scalar(select(func.count(WebhookEvent.id))) == 0
        assert s.scalar(select(func.count(WebhookDelivery.id))) == 0


def test_an_event_is_written_with_its_change_or_not_at_all(
    session_factory: sessionmaker[Session],
) -> None:
    hook = _hook(session_factory, ["article.published"])
    with session_factory() as s:
        _entry(s, "A change that is rolled back?")
        s.rollback()
    assert _sent(session_factory) == []
    with session_scope(session_factory) as s:
        faq_id = _entry(s)
    ((webhook_id, kind, payload),) = _sent(session_factory)
    assert (webhook_id, kind) == (hook, "article.published")
    assert payload["data"]["faq_id"] == faq_id and payload["data"]["how"] == "created"


def test_restoring_an_article_publishes_it_again_and_unpublishing_does_not(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as s:
        faq_id = _entry(s)
    _hook(session_factory, ["article.published"])
    with session_scope(session_factory) as s:
        lifecycle.unpublish(s, faq_id, by=ADMIN)
    assert _sent(session_factory) == []
    with session_scope(session_factory) as s:
        lifecycle.restore(s, faq_id, by=ADMIN)
    ((_, kind, payload),) = _sent(session_factory)
    assert kind == "article.published"
    assert (payload["data"]["faq_id"], payload["data"]["how"]) == (faq_id, "restored")


def test_a_new_flag_is_announced_once(
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as s:
        faq_id = _entry(s, "Why is my bill so high?")
    hook = _hook(session_factory, ["flag.raised"])
    detection = Detection(
        kind=FlagKind.low_helpfulness,
        key=f"low_helpfulness:{faq_id}",
        score=0.8,
        evidence={"votes": 40},
        weight=40,
        entry_id=faq_id,
        language="en",
        category="plans",
    )
    for _ in range(2):  # the second recompute refreshes the open flag: no new event
        with session_scope(session_factory) as s:
            flags.apply_detections(
                s, [detection], kinds=[FlagKind.low_helpfulness], policy=HealthPolicy()
            )
    ((webhook_id, kind, payload),) = _sent(session_factory)
    assert (webhook_id, kind) == (hook, "flag.raised")
    data = payload["data"]
    assert (data["kind"], data["faq_id"], data["question"]) == (
        "low_helpfulness",
        faq_id,
        "Why is my bill so high?",
    )
    assert data["review_path"] == f"/review/health/flags/{data['flag_id']}"
    assert "low helpfulness" in payload["text"]


@pytest.fixture
def kit(
    embedder: CachedEmbedder,
    tmp_path: Path,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> capture_ingest.Capture:
    return make_kit(embedder, tmp_path / "index", session_factory)


def _ingest(
    factory: sessionmaker[Session], kit: capture_ingest.Capture, items: list
) -> capture_ingest.IngestReport:  # type: ignore[type-arg]
    with session_scope(factory) as s:
        report = capture_ingest.ingest_threads(s, kit, items)
    kit.index.sync(factory)
    return report


def test_a_new_draft_is_announced_when_its_demand_reaches_each_webhooks_threshold(
    kit: capture_ingest.Capture, session_factory: sessionmaker[Session]
) -> None:
    two = _hook(session_factory, ["draft.demand"], min_demand=2)
    three = _hook(session_factory, ["draft.demand", "article.published"], min_demand=3)
    first = _ingest(session_factory, kit, [thread("p0", POINTS[0], POINTS_ANSWER)])
    draft_id = first.outcomes[0].draft_id
    assert draft_id is not None
    assert _sent(session_factory) == []  # one thread: below both thresholds
    _ingest(session_factory, kit, [thread("p1", POINTS[1], POINTS_ANSWER)])
    ((webhook_id, kind, payload),) = _sent(session_factory)
    assert (webhook_id, kind) == (two, "draft.demand")
    data = payload["data"]
    assert (data["draft_id"], data["threads"], data["min_demand"]) == (draft_id, 2, 2)
    assert data["language"] == "ja" and data["question"]
    assert data["review_path"] == f"/review/drafts/{draft_id}"
    _ingest(session_factory, kit, [thread("p2", POINTS[2], POINTS_ANSWER)])
    sent = _sent(session_factory)
    assert [(h, k) for h, k, _ in sent] == [(two, "draft.demand"), (three, "draft.demand")]
    assert sent[1][2]["data"]["threads"] == 3
    # Later threads and re-ingestion announce nothing again.
    _ingest(session_factory, kit, [thread("p3", "ソラミポイントは何に使える？", POINTS_ANSWER)])
    _ingest(session_factory, kit, [thread("p1", POINTS[1], POINTS_ANSWER)])
    assert len(_sent(session_factory)) == 2
    # Publishing the draft is an article.published event for the webhook that wants it.
    with session_scope(session_factory) as s:
        result = capture_drafts.publish_draft(s, draft_id, category="billing", author="tests")
        faq_id = result.entry.id
    sent = _sent(session_factory)
    assert len(sent) == 3
    webhook_id, kind, payload = sent[2]
    assert (webhook_id, kind, payload["data"]["faq_id"]) == (three, "article.published", faq_id)
    assert payload["data"]["reason"] == f"published from draft {draft_id}"


def test_events_reach_a_real_receiver_end_to_end(
    session_factory: sessionmaker[Session],
) -> None:
    with receiver() as r:
        _hook(session_factory, ["article.published", "flag.raised"], url=r.url)
        with session_scope(session_factory) as s:
            faq_id = _entry(s)
        with session_scope(session_factory) as s:
            flags.apply_detections(
                s,
                [
                    Detection(
                        kind=FlagKind.stale,
                        key=f"stale:{faq_id}",
                        score=0.5,
                        evidence={},
                        weight=1,
                        entry_id=faq_id,
                    )
                ],
                kinds=[FlagKind.stale],
                policy=HealthPolicy(),
            )
        report = deliver_due(session_factory, DeliveryPolicy(max_attempts=1, timeout=2.0))
    assert report.delivered == 2
    kinds = [json.loads(q.body)["type"] for q in r.requests]
    assert kinds == ["article.published", "flag.raised"]
    assert [q.headers["x-faqloop-event"] for q in r.requests] == kinds
