"""Webhook registrations: where to POST which events, and the secret that signs them.

Callers commit. The secret is returned once, by `create_webhook`; nothing else reads it
out except the sender (kb/notify/delivery.py).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kb.audit import record_action
from kb.errors import InvalidInput, NotFound
from kb.models import Webhook, WebhookDelivery, WebhookEvent

DRAFT_DEMAND = "draft.demand"
FLAG_RAISED = "flag.raised"
ARTICLE_PUBLISHED = "article.published"
EVENTS = (DRAFT_DEMAND, FLAG_RAISED, ARTICLE_PUBLISHED)

MAX_URL = 2000
MIN_SECRET = 16
MAX_SECRET = 200
MAX_DESCRIPTION = 200
MAX_MIN_DEMAND = 100_000
DELIVERY_STATUSES = ("pending", "sending", "delivered", "failed")


def check_url(url: str) -> str:
    """The URL stripped, or InvalidInput: http or https, a host, no user:password part."""
    url = (url or "").strip()
    if not url:
        raise InvalidInput("url must not be empty")
    if len(url) > MAX_URL:
        raise InvalidInput(f"url must be at most {MAX_URL} characters")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput("url must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"url is not a valid URL: {exc}") from exc
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("url must start with http:// or https://")
    if not parts.hostname:
        raise InvalidInput("url must name a host")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url must not carry a user name or password; use the secret")
    if parts.fragment:
        raise InvalidInput("url must not have a #fragment")
    if port == 0:
        raise InvalidInput("url port must be between 1 and 65535")
    host = parts.hostname
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(label and len(label) <= 63 for label in host.split(".")):
            raise InvalidInput("url host is not a valid name") from None
    return url


def check_events(events: Iterable[str]) -> list[str]:
    """The events in canonical order, or InvalidInput (none, or an unknown one)."""
    chosen = [e.strip() for e in events if e and e.strip()]
    if not chosen:
        raise InvalidInput(f"choose at least one event: {', '.join(EVENTS)}")
    unknown = sorted(set(chosen) - set(EVENTS))
    if unknown:
        raise InvalidInput(f"unknown event {unknown[0]!r}; use {', '.join(EVENTS)}")
    return [e for e in EVENTS if e in chosen]


def new_secret() -> str:
    """A random signing secret (256 bits)."""
    return "whsec_" + secrets.token_urlsafe(32)


def _check_secret(secret: str | None) -> str:
    if secret is None or not secret.strip():
        return new_secret()
    secret = secret.strip()
    if not MIN_SECRET <= len(secret) <= MAX_SECRET:
        raise InvalidInput(
            f"secret must be {MIN_SECRET} to {MAX_SECRET} characters (or leave it empty "
            "to have one made)"
        )
    if not all("!" <= c <= "~" for c in secret):
        raise InvalidInput("secret must be printable ASCII without spaces")
    return secret


def url_origin(url: str) -> str:
    """The scheme and host of a URL, its path hidden: chat tools put their own secret in the
    path (https://hooks.slack.com/services/T…/B…/X…), so only admins see the whole URL."""
    parts = urlsplit(url)
    hidden = "/…" if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{parts.netloc}{hidden}"


def summary(hook: Webhook) -> dict[str, object]:
    """What the audit trail records of a webhook (never its secret, nor its URL's path)."""
    return {
        "url": url_origin(hook.url),
        "events": list(hook.events),
        "min_demand": hook.min_demand,
        "description": hook.description,
    }


def create_webhook(
    session: Session,
    *,
    url: str,
    events: Sequence[str],
    min_demand: int,
    description: str = "",
    secret: str | None = None,
    actor: str,
) -> tuple[Webhook, str]:
    """Register a webhook; returns it and its secret (made when not given), audit-recorded."""
    url = check_url(url)
    chosen = check_events(events)
    if not 1 <= min_demand <= MAX_MIN_DEMAND:
        raise InvalidInput(f"min_demand must be between 1 and {MAX_MIN_DEMAND}")
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"description must be at most {MAX_DESCRIPTION} characters")
    key = _check_secret(secret)
    hook = Webhook(
        url=url,
        events=chosen,
        min_demand=min_demand,
        description=description,
        secret=key,
        active=True,
        created_by=str(actor)[:400],
    )
    session.add(hook)
    session.flush()
    record_action(
        session,
        actor=actor,
        action="webhook.create",
        target=f"webhook:{hook.id}",
        after=summary(hook),
    )
    return hook, key


def list_webhooks(session: Session) -> list[Webhook]:
    """Every webhook, oldest first."""
    return list(session.scalars(select(Webhook).order_by(Webhook.id)))


def get_webhook_or_raise(session: Session, webhook_id: int) -> Webhook:
    """One webhook, or NotFound."""
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFound(f"webhook {webhook_id} not found")
    return hook


def delete_webhook(session: Session, webhook_id: int, *, actor: str) -> None:
    """Remove a webhook and its delivery log (audit-recorded)."""
    hook = get_webhook_or_raise(session, webhook_id)
    record_action(
        session,
        actor=actor,
        action="webhook.delete",
        target=f"webhook:{hook.id}",
        before=summary(hook),
    )
    event_ids = list(
        session.scalars(
            select(WebhookDelivery.event_id).where(WebhookDelivery.webhook_id == hook.id)
        )
    )
    session.query(WebhookDelivery).filter(WebhookDelivery.webhook_id == hook.id).delete(
        synchronize_session=False
    )
    session.delete(hook)
    session.flush()
    _drop_orphan_events(session, event_ids)


def _drop_orphan_events(session: Session, event_ids: Sequence[int]) -> None:
    """Delete events no delivery refers to any more (the outbox keeps only what is due)."""
    for start in range(0, len(event_ids), 500):
        chunk = sorted(set(event_ids[start : start + 500]))
        used = set(
            session.scalars(
                select(WebhookDelivery.event_id).where(WebhookDelivery.event_id.in_(chunk))
            )
        )
        orphans = [e for e in chunk if e not in used]
        if orphans:
            session.query(WebhookEvent).filter(WebhookEvent.id.in_(orphans)).delete(
                synchronize_session=False
            )


@dataclass(frozen=True)
class DeliveryPage:
    """One page of a webhook's delivery log, newest first."""

    deliveries: list[WebhookDelivery]
    total: int


def list_deliveries(
    session: Session,
    webhook_id: int,
    *,
    status: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> DeliveryPage:
    """A webhook's deliveries, newest first (NotFound for an unknown webhook)."""
    get_webhook_or_raise(session, webhook_id)
    if status is not None and status not in DELIVERY_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}")
    if not 1 <= limit <= 500:
        raise InvalidInput("limit must be between 1 and 500")
    if offset < 0:
        raise InvalidInput("offset must not be negative")
    where = [WebhookDelivery.webhook_id == webhook_id]
    if status is not None:
        where.append(WebhookDelivery.status == status)
    total = session.scalar(select(func.count(WebhookDelivery.id)).where(*where)) or 0
    rows = session.scalars(
        select(WebhookDelivery)
        .where(*where)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return DeliveryPage(list(rows), int(total))
