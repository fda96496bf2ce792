"""How the agents' assistant is doing over a time window (GET /v1/metrics).

- **posts seen**: every post sent to suggest (API, batch or file) in the window;
- **needing a reply**: those triaged "reply" (thanks and chatter are not questions);
- **suggestions made**: posts needing a reply that got a FAQ (did not abstain);
- **coverage**: suggestions made / posts needing a reply;
- **acceptance**: sent or edited / all outcomes reported for suggestions made;
- **one-reply resolution**: threads resolved in the window whose only agent post carried
  an FAQ link, out of all threads resolved in the window;
- **FAQ count growth**: published FAQs created before the window vs by its end;
- **top content gaps**: posts needing a reply that the service abstained on, grouped by the
  words they share (stemmed English, Sudachi-normalised Japanese; Jaccard ≥ 0.3 with the
  group's first post), largest first, with examples (already masked) and the FAQ they came
  closest to.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from kb.models import (
    EntryStatus,
    FaqEntry,
    PostRole,
    Suggestion,
    SuggestionOutcome,
    Thread,
    ThreadPost,
    TriageAdvice,
)
from kb.replies.outcomes import LearntThreshold
from kb.text.cleaning import faq_link_slugs
from kb.text.personal_data import strip_placeholders

GAP_SIMILARITY = 0.3
MAX_GAP_POSTS = 2000  # the most recent abstained posts grouped per request


@dataclass
class OutcomeCounts:
    """Outcomes reported for suggestions made (posts needing a reply, not abstained)."""

    sent: int = 0
    edited: int = 0
    rejected: int = 0

    @property
    def reported(self) -> int:
        """All outcomes reported."""
        return self.sent + self.edited + self.rejected


@dataclass
class ContentGap:
    """Similar posts nothing answered."""

    language: str
    posts: int
    examples: list[str]
    terms: list[str]
    nearest_faq_id: int | None
    last_seen: datetime


@dataclass
class AgentMetrics:
    """The figures of one window (see the module docstring for each definition)."""

    start: datetime
    end: datetime
    posts_seen: int
    triage: dict[str, int]
    needing_reply: int
    suggestions_made: int
    coverage: float | None
    outcomes: OutcomeCounts
    acceptance: float | None
    dm_handoffs: int
    threads_resolved: int
    resolved_with_one_faq_reply: int
    one_reply_resolution: float | None
    faqs_at_start: int
    faqs_at_end: int
    faqs_added: int
    faq_growth: float | None
    content_gaps: list[ContentGap] = field(default_factory=list)
    threshold: LearntThreshold | None = None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _suggestion_counts(
    session: Session, start: datetime, end: datetime
) -> tuple[int, dict[str, int], int, int, OutcomeCounts, int]:
    rows = session.execute(
        select(
            Suggestion.triage,
            Suggestion.abstained,
            Suggestion.outcome,
            Suggestion.dm_handoff,
            func.count(),
        )
        .where(Suggestion.created_at >= start, Suggestion.created_at < end)
        .group_by(
            Suggestion.triage, Suggestion.abstained, Suggestion.outcome, Suggestion.dm_handoff
        )
    )
    seen = needing = made = handoffs = 0
    triage = {a.value: 0 for a in TriageAdvice}
    outcomes = OutcomeCounts()
    for advice, abstained, outcome, dm, count in rows:
        seen += count
        # Rows from before triage existed count as needing a reply.
        advice = advice or TriageAdvice.reply
        triage[advice.value] += count
        handoffs += count if dm else 0
        if advice != TriageAdvice.reply:
            continue
        needing += count
        if abstained:
            continue
        made += count
        if outcome == SuggestionOutcome.sent:
            outcomes.sent += count
        elif outcome == SuggestionOutcome.edited:
            outcomes.edited += count
        elif outcome == SuggestionOutcome.rejected:
            outcomes.rejected += count
    return seen, triage, needing, made, outcomes, handoffs


def has_faq_link(text: str) -> bool:
    """Whether an agent post links to an FAQ article (relative or absolute, as capture reads
    links: kb.text.cleaning.faq_link_slugs)."""
    return bool(faq_link_slugs(text))


def _one_reply_resolution(session: Session, start: datetime, end: datetime) -> tuple[int, int]:
    resolved = session.scalar(
        select(func.count())
        .select_from(Thread)
        .where(Thread.resolved_at >= start, Thread.resolved_at < end)
    )
    rows = session.execute(
        select(ThreadPost.thread_id, ThreadPost.text_raw)
        .join(Thread, Thread.id == ThreadPost.thread_id)
        .where(
            Thread.resolved_at >= start,
            Thread.resolved_at < end,
            ThreadPost.role == PostRole.agent,
        )
    )
    agent_posts: dict[int, list[str]] = {}
    for thread_id, text in rows:
        agent_posts.setdefault(thread_id, []).append(text)
    one = sum(1 for posts in agent_posts.values() if len(posts) == 1 and has_faq_link(posts[0]))
    return int(resolved or 0), one


def _faq_counts(session: Session, start: datetime, end: datetime) -> tuple[int, int]:
    def published_before(when: datetime) -> int:
        return int(
            session.scalar(
                select(func.count())
                .select_from(FaqEntry)
                .where(FaqEntry.status == EntryStatus.published, FaqEntry.created_at < when)
            )
            or 0
        )

    return published_before(start), published_before(end)


@dataclass
class _Group:
    language: str
    leader: set[str]
    texts: list[str] = field(default_factory=list)
    terms: Counter[str] = field(default_factory=Counter)
    nearest: Counter[int] = field(default_factory=Counter)
    last: datetime | None = None

    def gap(self) -> ContentGap:
        examples: list[str] = []
        for text in reversed(self.texts):  # the most recent first, each once
            if text not in examples:
                examples.append(text)
            if len(examples) == 3:
                break
        assert self.last is not None
        return ContentGap(
            language=self.language,
            posts=len(self.texts),
            examples=examples,
            terms=[term for term, _ in self.terms.most_common(5)],
            nearest_faq_id=self.nearest.most_common(1)[0][0] if self.nearest else None,
            last_seen=self.last,
        )


def content_gaps(
    session: Session,
    start: datetime,
    end: datetime,
    tokenize: Callable[[str], list[str]],
    *,
    limit: int = 10,
    similarity: float = GAP_SIMILARITY,
) -> list[ContentGap]:
    """Abstained posts needing a reply, grouped by shared terms, the largest groups first."""
    rows = session.execute(
        select(Suggestion.text, Suggestion.language, Suggestion.candidates, Suggestion.created_at)
        .where(
            Suggestion.created_at >= start,
            Suggestion.created_at < end,
            Suggestion.abstained.is_(True),
            or_(Suggestion.triage.is_(None), Suggestion.triage == TriageAdvice.reply),
        )
        .order_by(Suggestion.created_at.desc(), Suggestion.id.desc())
        .limit(MAX_GAP_POSTS)
    ).all()
    groups: list[_Group] = []
    for text, language, candidates, created_at in reversed(rows):  # oldest first
        terms = set(tokenize(strip_placeholders(text)))
        if not terms:
            continue
        best, best_sim = None, 0.0
        for group in groups:
            if group.language == language:
                sim = len(terms & group.leader) / len(terms | group.leader)
                if sim > best_sim:
                    best, best_sim = group, sim
        if best is None or best_sim < similarity:
            best = _Group(language=language, leader=terms)
            groups.append(best)
        best.texts.append(text)
        best.terms.update(terms)
        nearest = candidates[0].get("faq_id") if candidates else None
        if isinstance(nearest, int):
            best.nearest[nearest] += 1
        best.last = created_at
    gaps = [g.gap() for g in groups]
    gaps.sort(key=lambda g: (-g.posts, -g.last_seen.timestamp()))
    return gaps[:limit]


def agent_metrics(
    session: Session,
    *,
    start: datetime,
    end: datetime,
    tokenize: Callable[[str], list[str]],
    gaps: int = 10,
    threshold: LearntThreshold | None = None,
) -> AgentMetrics:
    """The figures of the window [start, end)."""
    seen, triage, needing, made, outcomes, handoffs = _suggestion_counts(session, start, end)
    resolved, one = _one_reply_resolution(session, start, end)
    at_start, at_end = _faq_counts(session, start, end)
    return AgentMetrics(
        start=start,
        end=end,
        posts_seen=seen,
        triage=triage,
        needing_reply=needing,
        suggestions_made=made,
        coverage=_share(made, needing),
        outcomes=outcomes,
        acceptance=_share(outcomes.sent + outcomes.edited, outcomes.reported),
        dm_handoffs=handoffs,
        threads_resolved=resolved,
        resolved_with_one_faq_reply=one,
        one_reply_resolution=_share(one, resolved),
        faqs_at_start=at_start,
        faqs_at_end=at_end,
        faqs_added=at_end - at_start,
        faq_growth=_share(at_end - at_start, at_start),
        content_gaps=content_gaps(session, start, end, tokenize, limit=gaps) if gaps else [],
        threshold=threshold,
    )
