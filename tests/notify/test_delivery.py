"""Webhook delivery against a real HTTP receiver: signatures, retries with backoff, the
delivery log, failure after the last attempt, and claims that keep two workers from
sending the same delivery. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from kb.audit import Actor
from kb.db import session_scope
from kb.faqs.entries import create_entry
from kb.models import WebhookDelivery, utcnow
from kb.notify import delivery
from kb.notify.delivery import DeliveryPolicy, deliver_due, sign, verify
from kb.notify.webhooks import create_webhook
from tests.notify.receiver import dead_url, receiver

FAST = DeliveryPolicy(max_attempts=3, backoff_seconds=0.0, timeout=2.0)
ADMIN = Actor("Ada Admin <ada@example.com>", "user")


def _hook(
    factory: sessionmaker[Session], url: str, events: list[str] | None = None
) -> tuple[int, str]:
    with session_scope(factory) as s:
        hook, secret = create_webhook(
            s, url=url, events=events or ["article.published"], min_demand=3, actor=ADMIN
        )
        return hook.id, secret


def _publish(factory: sessionmaker[Session], question: str = "How do I pay by card?") -> int:
    with session_scope(factory) as s:
        entry = create_entry(
            s,
            question=question,
            answer="Open My Sorami, choose Payment, then add a card.",
            category="billing",
            language="en",
            author="tests",
        )
        return entry.id


def _deliveries(factory: sessionmaker[Session]) -> list[WebhookDelivery]:
    with factory() as s:
        return list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def test_a_delivery_is_signed_and_the_signature_verifies(
    session_factory: sessionmaker[Session],
) -> None:
    with receiver() as r:
        _, secret = _hook(session_factory, r.url)
        faq_id = _publish(session_factory)
        report = deliver_due(session_factory, FAST)
    assert report.delivered == 1 and len(r.requests) == 1
    got = r.requests[0]
    assert got.path == "/hook"
    assert got.headers["content-type"].startswith("application/json")
    assert got.headers["x-faqloop-event"] == "article.published"
    stamp = got.headers["x-faqloop-timestamp"]
    assert abs(int(stamp) - time.time()) < 60
    signature = got.headers["x-faqloop-signature"]
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    # What a receiver does: HMAC-SHA256 of "<timestamp>.<raw body>" with the secret.
    assert verify(secret, stamp, got.body, signature)
    assert not verify(secret, stamp, got.body + b" ", signature)
    assert not verify("another secret of enough length", stamp, got.body, signature)
    assert not verify(secret, str(int(stamp) + 1), got.body, signature)
    assert sign(secret, stamp, got.body) == signature
    doc = json.loads(got.body)
    (row,) = _deliveries(session_factory)
    assert got.headers["x-faqloop-delivery"] == str(row.id) == str(doc["delivery"])
    assert doc["type"] == "article.published"
    assert doc["data"]["faq_id"] == faq_id and doc["data"]["question"] == "How do I pay by card?"
    assert doc["data"]["path"].startswith("/faq/") and "How do I pay by card?" in doc["text"]
    assert secret not in got.body.decode() and secret not in json.dumps(dict(got.headers))
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 1, 200)
    assert row.delivered_at is not None and row.last_error is None


def test_base_url_makes_absolute_links(session_factory: sessionmaker[Session]) -> None:
    with receiver() as r:
        _hook(session_factory, r.url)
        faq_id = _publish(session_factory)
        deliver_due(
            session_factory,
            DeliveryPolicy(max_attempts=1, timeout=2.0, base_url="https://faq.example.com/"),
        )
    data = json.loads(r.requests[0].body)["data"]
    assert data["url"] == "https://faq.example.com" + data["path"]
    assert data["review_url"] == f"https://faq.example.com/review/articles/{faq_id}"


def test_a_receiver_failing_twice_then_answering_gets_three_attempts(
    session_factory: sessionmaker[Session],
) -> None:
    policy = DeliveryPolicy(max_attempts=5, backoff_seconds=0.2, timeout=2.0)
    with receiver(script=[500, 503]) as r:
        _hook(session_factory, r.url)
        _publish(session_factory)
        first = deliver_due(session_factory, policy)
        assert (first.retrying, first.delivered) == (1, 0)
        (row,) = _deliveries(session_factory)
        assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, 500)
        assert row.last_error == "HTTP 500 Internal Server Error"
        # Backoff: not due again before 0.2 s have passed.
        assert row.next_attempt_at >= row.last_attempt_at + timedelta(seconds=0.2)
        assert deliver_due(session_factory, policy).attempts == 0
        time.sleep(0.25)
        assert deliver_due(session_factory, policy).retrying == 1
        (row,) = _deliveries(session_factory)
        assert (row.status, row.attempts, row.last_status_code) == ("pending", 2, 503)
        # The second wait is twice the first.
        assert row.next_attempt_at >= row.last_attempt_at + timedelta(seconds=0.4)
        time.sleep(0.45)
        assert deliver_due(session_factory, policy).delivered == 1
    (row,) = _deliveries(session_factory)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 3, 200)
    assert row.last_error is None and row.delivered_at is not None
    # Three POSTs of the same delivery: the same id and body each time.
    assert len(r.requests) == 3
    assert len({q.headers["x-faqloop-delivery"] for q in r.requests}) == 1
    assert len({q.body for q in r.requests}) == 1


def test_a_dead_receiver_ends_as_failed_after_the_last_attempt(
    session_factory: sessionmaker[Session],
) -> None:
    _hook(session_factory, dead_url())
    _publish(session_factory)
    report = deliver_due(session_factory, FAST)  # no backoff: all three attempts now
    assert (report.retrying, report.failed, report.delivered) == (2, 1, 0)
    (row,) = _deliveries(session_factory)
    assert (row.status, row.attempts, row.last_status_code) == ("failed", 3, None)
    assert row.last_error is not None and row.last_error.startswith("could not connect")
    assert deliver_due(session_factory, FAST).attempts == 0  # failed is final


def test_redirects_are_not_followed(session_factory: sessionmaker[Session]) -> None:
    with receiver(then=302) as r:
        _hook(session_factory, r.url)
        _publish(session_factory)
        deliver_due(session_factory, DeliveryPolicy(max_attempts=1, timeout=2.0))
    (row,) = _deliveries(session_factory)
    assert (row.status, row.last_status_code) == ("failed", 302)
    assert len(r.requests) == 1


def test_two_workers_never_send_the_same_delivery(
    session_factory: sessionmaker[Session],
) -> None:
    with receiver() as r:
        _hook(session_factory, r.url)
        _hook(session_factory, r.url)  # two webhooks: two deliveries per event
        for n in range(12):
            _publish(session_factory, f"Question number {n} about paying?")
        errors: list[BaseException] = []

        def work() -> None:
            try:
                deliver_due(session_factory, FAST)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        workers = [threading.Thread(target=work) for _ in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
    assert errors == []
    sent = [q.headers["x-faqloop-delivery"] for q in r.requests]
    assert len(sent) == 24 and len(set(sent)) == 24
    assert {d.status for d in _deliveries(session_factory)} == {"delivered"}


def test_a_claim_whose_worker_died_is_sent_again_after_its_lease(
    session_factory: sessionmaker[Session],
) -> None:
    with receiver() as r:
        _hook(session_factory, r.url)
        _publish(session_factory)
        with session_factory() as s:
            token, ids = delivery.claim_due(s, FAST)  # claimed, then the worker "dies"
        assert len(ids) == 1
        with session_factory() as s:
            assert delivery.claim_due(s, FAST)[1] == []  # held by the first claim
        assert deliver_due(session_factory, FAST).attempts == 0
        with session_scope(session_factory) as s:
            s.execute(update(WebhookDelivery).values(claimed_until=utcnow() - timedelta(seconds=1)))
        assert deliver_due(session_factory, FAST).delivered == 1
        # The dead worker's late result is ignored: its claim is gone.
        with session_factory() as s:
            lost = delivery.record_attempt(s, ids[0], token, delivery.Attempt(500, "x"), FAST)
        assert lost is None
    (row,) = _deliveries(session_factory)
    assert (row.status, row.attempts) == ("delivered", 2)
    assert len(r.requests) == 1
