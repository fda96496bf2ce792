"""Deliver the outbox: signed POSTs, retries with exponential backoff, a delivery log.

Safe across replicas and processes: a worker claims due deliveries with a conditional
UPDATE (`... WHERE status = 'pending'`; on PostgreSQL the candidates are read with
`FOR UPDATE SKIP LOCKED` first) and commits before it sends, so two workers never send the
same delivery. A claim is a lease: a worker that dies mid-send frees its deliveries when
the lease runs out, and another one sends them again (at-least-once; receivers dedupe on
`X-Faqloop-Delivery`).

Only the standard library speaks HTTP here (urllib): no redirects are followed, the
timeout is short, and neither the secret nor the signature is ever logged or stored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import Message
from typing import IO, Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from kb.models import Webhook, WebhookDelivery, WebhookEvent, utcnow

log = logging.getLogger("faqloop.webhooks")

SIGNATURE_HEADER = "X-Faqloop-Signature"
TIMESTAMP_HEADER = "X-Faqloop-Timestamp"
EVENT_HEADER = "X-Faqloop-Event"
DELIVERY_HEADER = "X-Faqloop-Delivery"
USER_AGENT = "faqloop-webhooks/1"
MAX_BACKOFF = timedelta(hours=6)
MAX_ERROR = 500
CLAIM_BATCH = 10


@dataclass(frozen=True)
class DeliveryPolicy:
    """How deliveries are sent and retried (FAQLOOP_WEBHOOK_* settings)."""

    max_attempts: int = 8
    backoff_seconds: float = 30.0  # the wait after the first failure; doubles each time
    timeout: float = 5.0
    base_url: str = ""  # when set, payloads also carry absolute "url"/"review_url"

    @property
    def lease(self) -> timedelta:
        """How long a claim holds: a whole batch sent one after the other, and a margin."""
        return timedelta(seconds=CLAIM_BATCH * (self.timeout + 1) + 60)

    def delay(self, attempts: int) -> timedelta:
        """The wait after the `attempts`-th failed attempt: backoff × 2^(attempts-1)."""
        seconds = self.backoff_seconds * (2 ** max(attempts - 1, 0))
        return min(timedelta(seconds=seconds), MAX_BACKOFF)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value: "sha256=" + hex HMAC-SHA256 of "<timestamp>.<body>"."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """Whether `signature` is this secret's signature of timestamp and body (what a receiver
    checks; also documented in docs/webhooks.md)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def body_of(event: WebhookEvent, delivery_id: int, base_url: str = "") -> bytes:
    """The JSON body of a delivery (compact, UTF-8)."""
    payload = event.payload or {}
    data = dict(payload.get("data") or {})
    base = base_url.rstrip("/")
    if base:
        if "path" in data:
            data["url"] = base + str(data["path"])
        if "review_path" in data:
            data["review_url"] = base + str(data["review_path"])
    doc = {
        "id": event.id,
        "type": event.kind,
        "created_at": event.created_at.isoformat(),
        "delivery": delivery_id,
        "text": payload.get("text", ""),
        "data": data,
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST: a status code (None when no answer came) and an error."""

    status_code: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None  # a 3xx is an answer (a failure), never followed


_OPENER = urllib.request.build_opener(_NoRedirect)


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Attempt:
    """POST `body` to `url`; the answer's status, or what went wrong (no secret in it)."""
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(65536)
            return Attempt(int(response.status), None)
    except urllib.error.HTTPError as exc:
        return Attempt(int(exc.code), f"HTTP {exc.code} {exc.reason}"[:MAX_ERROR])
    except urllib.error.URLError as exc:
        return Attempt(None, f"could not connect: {exc.reason}"[:MAX_ERROR])
    except TimeoutError:
        return Attempt(None, f"no answer within {timeout:g} s")
    except OSError as exc:  # reset connections, TLS errors
        return Attempt(None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR])


Sender = Callable[[str, bytes, dict[str, str], float], Attempt]


def _due(now: datetime) -> Any:
    return or_(
        and_(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now),
        # A claim whose worker died: its lease ran out.
        and_(WebhookDelivery.status == "sending", WebhookDelivery.claimed_until < now),
    )


def claim_due(
    session: Session, policy: DeliveryPolicy, *, limit: int = CLAIM_BATCH
) -> tuple[str, list[int]]:
    """Claim up to `limit` due deliveries for this worker and commit; (token, ids).

    Each claim is an UPDATE that only matches a row still due, so of two workers racing
    for a delivery exactly one updates it. Claiming counts the attempt.
    """
    now = utcnow()
    token = secrets.token_hex(16)
    query = (
        select(WebhookDelivery.id)
        .where(_due(now))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    candidates = list(session.scalars(query))
    claimed: list[int] = []
    for delivery_id in candidates:
        result = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, _due(now))
            .values(
                status="sending",
                claim_token=token,
                claimed_until=now + policy.lease,
                attempts=WebhookDelivery.attempts + 1,
                last_attempt_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) == 1:
            claimed.append(delivery_id)
    session.commit()
    return token, claimed


def record_attempt(
    session: Session, delivery_id: int, token: str, attempt: Attempt, policy: DeliveryPolicy
) -> str | None:
    """Write an attempt's outcome to the log (only while this worker's claim holds);
    the delivery's new status, or None when the claim was lost."""
    delivery = session.scalar(
        select(WebhookDelivery).where(
            WebhookDelivery.id == delivery_id, WebhookDelivery.claim_token == token
        )
    )
    if delivery is None or delivery.status != "sending":
        session.rollback()
        return None
    now = utcnow()
    delivery.last_status_code = attempt.status_code
    delivery.claim_token = None
    delivery.claimed_until = None
    if attempt.ok:
        delivery.status = "delivered"
        delivery.delivered_at = now
        delivery.last_error = None
    else:
        delivery.last_error = (attempt.error or "failed")[:MAX_ERROR]
        if delivery.attempts >= policy.max_attempts:
            delivery.status = "failed"
        else:
            delivery.status = "pending"
            delivery.next_attempt_at = now + policy.delay(delivery.attempts)
    status = delivery.status
    session.commit()
    return status


@dataclass
class DrainReport:
    """What one pass of the worker did."""

    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    lost: int = 0  # claims another worker took over (lease ran out mid-send)
    ids: list[int] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        """POSTs sent in this pass."""
        return self.delivered + self.retrying + self.failed + self.lost


def _send_one(
    session: Session, delivery_id: int, policy: DeliveryPolicy, sender: Sender
) -> Attempt:
    row = session.execute(
        select(WebhookDelivery, Webhook, WebhookEvent)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.id == delivery_id)
    ).one_or_none()
    if row is None:  # the webhook was deleted after the claim
        session.rollback()
        return Attempt(None, "webhook deleted")
    delivery, hook, event = row
    url, secret, kind = hook.url, hook.secret, event.kind
    body = body_of(event, delivery.id, policy.base_url)
    session.rollback()  # no transaction stays open while the receiver answers
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": USER_AGENT,
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        EVENT_HEADER: kind,
        DELIVERY_HEADER: str(delivery_id),
    }
    return sender(url, body, headers, policy.timeout)


def deliver_due(
    session_factory: sessionmaker[Session],
    policy: DeliveryPolicy,
    *,
    sender: Sender = post,
    max_batches: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> DrainReport:
    """Send every due delivery (claiming in batches) until none is due, `max_batches`
    batches were sent, or `stop()` says so. Failures are retried later, not here: a
    delivery comes due again only after its backoff."""
    report = DrainReport()
    batches = 0
    while max_batches is None or batches < max_batches:
        if stop is not None and stop():
            break
        with session_factory() as session:
            token, ids = claim_due(session, policy)
        if not ids:
            break
        batches += 1
        for delivery_id in ids:
            with session_factory() as session:
                attempt = _send_one(session, delivery_id, policy, sender)
                status = record_attempt(session, delivery_id, token, attempt, policy)
            report.ids.append(delivery_id)
            if status == "delivered":
                report.delivered += 1
            elif status == "pending":
                report.retrying += 1
                log.warning(
                    "webhook delivery %s failed, will retry: %s", delivery_id, attempt.error
                )
            elif status == "failed":
                report.failed += 1
                log.warning("webhook delivery %s failed for good: %s", delivery_id, attempt.error)
            else:
                report.lost += 1
    return report
