"""FAQ drafts for editors: demand, listing and review (edit, publish, merge, reject).

Callers commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from kb.capture.ingest import (
    LIVE_DRAFT,
    Capture,
    IngestReport,
    add_thread_phrasing,
    load_member_threads,
    resolve_entry,
    thread_question,
)
from kb.capture.thread_input import MAX_CATEGORY, MAX_REASON
from kb.errors import InvalidInput, InvalidTransition, NotFound, Unprocessable
from kb.faqs.entries import MAX_ANSWER, MAX_QUESTION, create_entry, record_change, slugify
from kb.models import (
    DraftStatus,
    EntryStatus,
    FaqDraft,
    FaqEntry,
    Thread,
    ThreadStatus,
    utcnow,
)
from kb.text.cleaning import is_substantive_answer
from kb.text.language import CONTENT_LANGUAGES

# --------------------------------------------------------------------------------------
# Demand and listing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    """How many threads asked, and whether the topic is growing."""

    threads: int
    last_7d: int
    previous_7d: int

    @property
    def growth(self) -> float:
        """Change of the last 7 days against the 7 before, relative (0.0 = flat, 2.0 = 3x).

        With nothing the week before, the week's count itself (a launch-day spike of 12
        threads reads 12.0).
        """
        return round((self.last_7d - self.previous_7d) / max(self.previous_7d, 1), 3)

    @property
    def trending(self) -> bool:
        """At least 3 threads this week and at least twice last week's."""
        return self.last_7d >= 3 and self.last_7d >= 2 * self.previous_7d


def demand_of(
    session: Session, draft_ids: Sequence[int], *, now: datetime | None = None
) -> dict[int, Demand]:
    """Thread counts per draft: all time, the last 7 days, the 7 days before."""
    now = now or utcnow()
    week, fortnight = now - timedelta(days=7), now - timedelta(days=14)
    counts = {d: [0, 0, 0] for d in draft_ids}
    if not draft_ids:
        return {}
    rows = session.execute(
        select(Thread.draft_id, Thread.resolved_at, Thread.created_at).where(
            Thread.draft_id.in_(list(draft_ids))
        )
    )
    for draft_id, resolved, created in rows:
        if draft_id is None:
            continue
        when = resolved or created
        c = counts[draft_id]
        c[0] += 1
        if week <= when <= now:
            c[1] += 1
        elif fortnight <= when < week:
            c[2] += 1
    return {d: Demand(*c) for d, c in counts.items()}


SORTS = ("demand", "growth", "recent", "newest")


def needs_answer(draft: FaqDraft) -> bool:
    """Whether a draft is unanswered demand: none of its threads got a substantive agent
    answer (and no editor wrote one). It cannot be published until it has an answer."""
    return not is_substantive_answer(draft.answer or "")


@dataclass
class DraftView:
    """A draft with its demand and its source threads (posts loaded)."""

    draft: FaqDraft
    demand: Demand
    threads: list[Thread]

    @property
    def needs_answer(self) -> bool:
        """Unanswered demand (see `needs_answer`)."""
        return needs_answer(self.draft)


def _sort_key(sort: str) -> Any:
    def key(v: DraftView) -> tuple[float, ...]:
        d = v.demand
        if sort == "growth":
            return (-d.growth, -d.last_7d, -d.threads, v.draft.id)
        if sort == "recent":
            return (-d.last_7d, -d.growth, -d.threads, v.draft.id)
        if sort == "newest":
            return (-v.draft.id,)
        return (-d.threads, -d.growth, -d.last_7d, v.draft.id)

    return key


def list_drafts(
    session: Session,
    *,
    status: DraftStatus | None = DraftStatus.open,
    language: str | None = None,
    sort: str = "demand",
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
    unanswered: bool | None = None,
) -> tuple[list[DraftView], int]:
    """A page of drafts sorted by demand (thread count, then growth) or by growth.

    `unanswered` True lists only unanswered demand (`needs_answer`), False only drafts
    with an answer, None both.
    """
    if sort not in SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS)}")
    query = select(FaqDraft)
    if status is not None:
        query = query.where(FaqDraft.status == status)
    if language is not None:
        query = query.where(FaqDraft.language == language)
    drafts = list(session.scalars(query.order_by(FaqDraft.id)))
    if unanswered is not None:
        drafts = [d for d in drafts if needs_answer(d) == unanswered]
    demand = demand_of(session, [d.id for d in drafts], now=now)
    views = [DraftView(d, demand[d.id], []) for d in drafts]
    views.sort(key=_sort_key(sort))
    page = views[offset : offset + limit]
    members: dict[int, list[Thread]] = {v.draft.id: [] for v in page}
    if page:
        for t in session.scalars(
            select(Thread)
            .where(Thread.draft_id.in_(list(members)))
            .options(selectinload(Thread.posts))
            .order_by(Thread.resolved_at.desc(), Thread.id)
        ):
            if t.draft_id is not None:
                members[t.draft_id].append(t)
    for v in page:
        v.threads = members[v.draft.id]
    return page, len(views)


def get_draft_or_raise(
    session: Session, draft_id: int, *, now: datetime | None = None
) -> DraftView:
    """One draft with its demand and source threads, or NotFound."""
    draft = session.get(FaqDraft, draft_id)
    if draft is None:
        raise NotFound(f"draft {draft_id} not found")
    threads = list(
        session.scalars(
            select(Thread)
            .where(Thread.draft_id == draft_id)
            .options(selectinload(Thread.posts))
            .order_by(Thread.resolved_at.desc(), Thread.id)
        )
    )
    return DraftView(draft, demand_of(session, [draft_id], now=now)[draft_id], threads)


def get_thread_or_raise(session: Session, thread_id: int) -> Thread:
    """A thread with its posts, or NotFound."""
    thread = session.scalar(
        select(Thread).where(Thread.id == thread_id).options(selectinload(Thread.posts))
    )
    if thread is None:
        raise NotFound(f"thread {thread_id} not found")
    return thread


def list_threads(
    session: Session,
    *,
    status: ThreadStatus | None = None,
    faq_id: int | None = None,
    draft_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Thread], int]:
    """A page of threads, newest resolved first; `faq_id` lists an entry's evidence."""
    query = select(Thread)
    if status is not None:
        query = query.where(Thread.status == status)
    if faq_id is not None:
        query = query.where(Thread.faq_id == faq_id)
    if draft_id is not None:
        query = query.where(Thread.draft_id == draft_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.options(selectinload(Thread.posts))
        .order_by(Thread.resolved_at.desc(), Thread.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


def count_threads(session: Session) -> dict[str, int]:
    """Threads per status."""
    rows = session.execute(select(Thread.status, func.count()).group_by(Thread.status))
    out = {s.value: 0 for s in ThreadStatus}
    for status, n in rows:
        out[status.value] = n
    return out


# --------------------------------------------------------------------------------------
# Review actions
# --------------------------------------------------------------------------------------


def _live_draft_or_raise(session: Session, draft_id: int, action: str) -> FaqDraft:
    draft = session.get(FaqDraft, draft_id)
    if draft is None:
        raise NotFound(f"draft {draft_id} not found")
    if draft.status not in LIVE_DRAFT:
        where = f" as FAQ {draft.entry_id}" if draft.entry_id else ""
        raise InvalidTransition(
            f"draft {draft_id} is already {draft.status.value}{where}; it cannot be {action}"
        )
    return draft


def _check_draft_text(question: str, answer: str, category: str | None, language: str) -> None:
    if not question.strip():
        raise InvalidInput("question must not be empty")
    if len(question.strip()) > MAX_QUESTION:
        raise InvalidInput(f"question is longer than {MAX_QUESTION} characters")
    if len(answer) > MAX_ANSWER:
        raise InvalidInput(f"answer is longer than {MAX_ANSWER} characters")
    if category is not None and len(category) > MAX_CATEGORY:
        raise InvalidInput(f"category is longer than {MAX_CATEGORY} characters")
    if language not in CONTENT_LANGUAGES:
        raise InvalidInput(f"lang must be one of {', '.join(CONTENT_LANGUAGES)}")


def update_draft(
    session: Session,
    draft_id: int,
    *,
    question: str | None = None,
    answer: str | None = None,
    category: str | None = None,
    language: str | None = None,
) -> FaqDraft:
    """An editor's rewrite of a draft (None keeps a field); later threads leave it alone."""
    draft = _live_draft_or_raise(session, draft_id, "edited")
    question = draft.question if question is None else question
    answer = draft.answer if answer is None else answer
    language = language or draft.language
    _check_draft_text(question, answer, category, language)
    draft.question = question.strip()
    draft.answer = answer.strip()
    draft.category = category.strip() if category and category.strip() else draft.category
    draft.language = language
    session.flush()
    return draft


def _move_threads_to_entry(
    session: Session, draft: FaqDraft, entry: FaqEntry, report: IngestReport
) -> int:
    """Phrasings and evidence of a draft's threads go to an entry; return phrasings added."""
    added = 0
    for thread in load_member_threads(session, draft.id):
        question = thread_question(thread.posts)
        thread.status = ThreadStatus.covered
        thread.faq_id = entry.id
        if add_thread_phrasing(session, entry.id, thread, question, report):
            added += 1
    record_change(session, entry.id)
    return added


@dataclass
class ReviewResult:
    draft: FaqDraft
    entry: FaqEntry
    phrasings_added: int


_NON_LATIN = ("ja", "zh", "ko", "th")


def draft_slug(session: Session, draft: FaqDraft, question: str) -> tuple[str, str]:
    """The slug and translation group of a published draft, by the seed content's
    convention (faq_content/README.md): the group is the topic in ASCII words; the English
    article's slug is the group, another language's is group + "-" + language
    ("reset-password" / "reset-password-ja").

    The topic comes from the question's words in a Latin-script language; in Japanese,
    Chinese, Korean or Thai (whose stray Latin words, "Wi-Fi", "eSIM", name no topic) and
    when there are none, it is `draft-<id>`. A taken group gets a number ("esim-setup-2",
    "esim-setup-2-ja").
    """
    latin = draft.language not in _NON_LATIN
    topic = (slugify(question)[:60].strip("-") if latin else "") or f"draft-{draft.id}"
    suffix = "" if draft.language == "en" else f"-{draft.language}"
    group, n = topic, 2
    while session.scalar(
        select(FaqEntry.id).where(
            (FaqEntry.slug == group + suffix) | (FaqEntry.translation_group == group)
        )
    ):
        group = f"{topic}-{n}"
        n += 1
    return group + suffix, group


def publish_draft(
    session: Session,
    draft_id: int,
    *,
    category: str | None = None,
    question: str | None = None,
    answer: str | None = None,
    author: str = "",
) -> ReviewResult:
    """Create a published entry from a draft (first revision, the threads as phrasings)."""
    draft = _live_draft_or_raise(session, draft_id, "published")
    question = (question if question is not None else draft.question).strip()
    answer = (answer if answer is not None else draft.answer).strip()
    category = (category or draft.category or "").strip()
    if not category:
        raise InvalidInput("category is required to publish (the draft has none yet)")
    _check_draft_text(question, answer, category, draft.language)
    if not is_substantive_answer(answer):
        raise Unprocessable(
            f"draft {draft.id} has no answer yet (none of its threads got one): write the "
            "answer before publishing"
        )
    slug, group = draft_slug(session, draft, question)
    entry = create_entry(
        session,
        question=question,
        answer=answer,
        category=category,
        language=draft.language,
        slug=slug,
        translation_group=group,
        author=author,
        reason=f"published from draft {draft.id}",
    )
    report = IngestReport()
    added = _move_threads_to_entry(session, draft, entry, report)
    draft.question, draft.answer, draft.category = question, answer, category
    draft.status = DraftStatus.published
    draft.entry_id = entry.id
    session.flush()
    return ReviewResult(draft, entry, added)


def merge_draft(session: Session, draft_id: int, *, faq_id: int) -> ReviewResult:
    """Fold a draft into an existing entry: its threads become that entry's phrasings and
    evidence, and later look-alike threads are routed there."""
    draft = _live_draft_or_raise(session, draft_id, "merged")
    entry = resolve_entry(session, faq_id)
    if entry.status != EntryStatus.published:
        raise InvalidInput(f"FAQ {entry.id} is {entry.status.value}; merge into a published FAQ")
    if entry.language != draft.language:
        other = ""
        if entry.translation_group:
            twin = session.scalar(
                select(FaqEntry.id).where(
                    FaqEntry.translation_group == entry.translation_group,
                    FaqEntry.language == draft.language,
                )
            )
            other = f" (its {draft.language} version is FAQ {twin})" if twin else ""
        raise InvalidInput(
            f"draft {draft.id} is in {draft.language} but FAQ {entry.id} is in "
            f"{entry.language}{other}"
        )
    report = IngestReport()
    added = _move_threads_to_entry(session, draft, entry, report)
    draft.status = DraftStatus.merged
    draft.entry_id = entry.id
    session.flush()
    return ReviewResult(draft, entry, added)


def reject_draft(session: Session, draft_id: int, *, reason: str) -> FaqDraft:
    """Reject a draft with a reason; its look-alikes keep attaching to it, not to new drafts."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput("reason must not be empty")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"reason is longer than {MAX_REASON} characters")
    draft = _live_draft_or_raise(session, draft_id, "rejected")
    draft.status = DraftStatus.rejected
    draft.reject_reason = reason
    session.flush()
    return draft


def reopen_draft(session: Session, draft_id: int) -> FaqDraft:
    """Put a rejected draft back in the review queue."""
    draft = session.get(FaqDraft, draft_id)
    if draft is None:
        raise NotFound(f"draft {draft_id} not found")
    if draft.status != DraftStatus.rejected:
        raise InvalidTransition(f"draft {draft_id} is {draft.status.value}, not rejected")
    draft.status = DraftStatus.open
    draft.reject_reason = None
    session.flush()
    return draft


def similar_entries(
    session: Session, capture: Capture, draft: FaqDraft, *, k: int = 5
) -> list[tuple[FaqEntry, float]]:
    """Published entries closest to a draft's question (merge candidates for the editor)."""
    if not draft.question or not capture.index.ready:
        return []
    result = capture.index.search(draft.question, k=k, language=draft.language)
    found = {
        e.id: e
        for e in session.scalars(
            select(FaqEntry).where(FaqEntry.id.in_([h.entry_id for h in result.hits]))
        )
    }
    return [
        (found[h.entry_id], round(h.score, 4))
        for h in result.hits
        if h.entry_id in found and found[h.entry_id].status == EntryStatus.published
    ]
