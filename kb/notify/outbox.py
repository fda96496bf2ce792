"""The outbox: events written in the same transaction as the change they report.

Each function adds an event and one pending delivery per active webhook subscribed to it,
to the caller's session (the caller commits: no change, no event; no event, no change).
Nothing is written when no webhook listens. Sending is kb/notify/delivery.py's job.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kb.models import (
    DraftStatus,
    FaqDraft,
    FaqEntry,
    Flag,
    Thread,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    utcnow,
)
from kb.notify.webhooks import ARTICLE_PUBLISHED, DRAFT_DEMAND, FLAG_RAISED

MAX_TEXT_QUOTE = 140


def _subscribers(session: Session, kind: str) -> list[Webhook]:
    hooks = session.scalars(select(Webhook).where(Webhook.active.is_(True)).order_by(Webhook.id))
    return [h for h in hooks if kind in (h.events or [])]


def _quote(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= MAX_TEXT_QUOTE else text[: MAX_TEXT_QUOTE - 1] + "…"


def _add(
    session: Session,
    kind: str,
    text: str,
    data: dict[str, Any],
    hooks: Sequence[Webhook],
    *,
    dedup_key: str | None = None,
) -> WebhookEvent | None:
    if not hooks:
        return None
    event = WebhookEvent(kind=kind, payload={"text": text, "data": data}, created_at=utcnow())
    session.add(event)
    session.flush()
    now = utcnow()
    for hook in hooks:
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                event_id=event.id,
                dedup_key=dedup_key,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )
    session.flush()
    return event


def article_published(session: Session, entry: FaqEntry, *, how: str, reason: str = "") -> None:
    """An article became visible on the site: created, published from a draft, or restored."""
    hooks = _subscribers(session, ARTICLE_PUBLISHED)
    if not hooks:
        return
    rev = entry.current_revision
    question = rev.question if rev is not None else ""
    data = {
        "faq_id": entry.id,
        "slug": entry.slug,
        "language": entry.language,
        "category": entry.category,
        "question": question,
        "how": how,
        "reason": reason,
        "path": f"/faq/{entry.slug}",
        "review_path": f"/review/articles/{entry.id}",
    }
    text = f"Article published ({how}): “{_quote(question)}” [{entry.language}]"
    _add(session, ARTICLE_PUBLISHED, text, data, hooks)


def flags_raised(session: Session, flags: Iterable[Flag]) -> None:
    """New content-health flags (one event each)."""
    flags = list(flags)
    if not flags:
        return
    hooks = _subscribers(session, FLAG_RAISED)
    if not hooks:
        return
    for flag in flags:
        question = ""
        if flag.entry_id is not None:
            entry = session.get(FaqEntry, flag.entry_id)
            rev = entry.current_revision if entry is not None else None
            question = rev.question if rev is not None else ""
        kind = flag.kind.value
        data = {
            "flag_id": flag.id,
            "kind": kind,
            "faq_id": flag.entry_id,
            "question": question,
            "score": flag.score,
            "language": flag.language,
            "category": flag.category,
            "review_path": f"/review/health/flags/{flag.id}",
        }
        about = f" on “{_quote(question)}”" if question else ""
        text = f"New content-health flag: {kind.replace('_', ' ')}{about}"
        _add(session, FLAG_RAISED, text, data, hooks)


def drafts_demand(session: Session, draft_ids: Iterable[int]) -> None:
    """Open drafts whose thread count reached a webhook's `min_demand` (once per draft and
    webhook)."""
    ids = sorted(set(draft_ids))
    if not ids:
        return
    hooks = _subscribers(session, DRAFT_DEMAND)
    if not hooks:
        return
    counts = dict(
        session.execute(
            select(Thread.draft_id, func.count(Thread.id))
            .where(Thread.draft_id.in_(ids))
            .group_by(Thread.draft_id)
        ).all()
    )
    for draft_id in ids:
        threads = int(counts.get(draft_id, 0))
        if threads == 0:
            continue
        draft = session.get(FaqDraft, draft_id)
        if draft is None or draft.status != DraftStatus.open:
            continue
        key = f"draft:{draft_id}"
        told = set(
            session.scalars(
                select(WebhookDelivery.webhook_id).where(
                    WebhookDelivery.dedup_key == key,
                    WebhookDelivery.webhook_id.in_([h.id for h in hooks]),
                )
            )
        )
        due = [h for h in hooks if h.min_demand <= threads and h.id not in told]
        if not due:
            continue
        data = {
            "draft_id": draft.id,
            "language": draft.language,
            "category": draft.category,
            "question": draft.question,
            "threads": threads,
            "review_path": f"/review/drafts/{draft.id}",
        }
        text = (
            f"A new FAQ draft has {threads} customer threads: “{_quote(draft.question)}” "
            f"[{draft.language}]"
        )
        # One event per threshold group: the payload names the threshold each one crossed.
        for threshold in sorted({h.min_demand for h in due}):
            group = [h for h in due if h.min_demand == threshold]
            _add(
                session,
                DRAFT_DEMAND,
                text,
                {**data, "min_demand": threshold},
                group,
                dedup_key=key,
            )
