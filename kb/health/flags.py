"""Flags: what an editor should look at, each with its evidence and impact. Callers commit.

Article flags (low helpfulness, low acceptance, stale) are raised here; duplicates and
content gaps are found in their own modules and applied here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from kb.errors import InvalidInput, InvalidTransition, NotFound
from kb.faqs import entries as faqs
from kb.health.detection import (
    ENTRY_KINDS,
    HEALTH_ACTOR,
    MAX_REASON,
    REVISION_KINDS,
    Coverage,
    Detection,
    Encoder,
    Tokenize,
)
from kb.health.duplicates import detect_duplicates
from kb.health.gaps import detect_content_gaps
from kb.health.scores import (
    Counts,
    HealthPolicy,
    SiteBaseline,
    Trend,
    current_revisions,
    entry_trends,
    revision_counts,
    site_baseline,
)
from kb.health.statistics import compare_proportions, proportion
from kb.models import (
    EntryStatus,
    FaqEntry,
    FaqRevision,
    Flag,
    FlagKind,
    FlagStatus,
    utcnow,
)
from kb.notify import outbox

# -- entry flags -------------------------------------------------------------------------


def _revision_key(kind: FlagKind, entry_id: int, revision_id: int) -> str:
    return f"{kind.value}:{entry_id}:r{revision_id}"


def _round(value: float | None, places: int = 4) -> float | None:
    return None if value is None else round(value, places)


def detect_article_flags(
    entries: Sequence[FaqEntry],
    counts: dict[int, Counts],
    trends: dict[int, Trend],
    baseline: SiteBaseline,
    policy: HealthPolicy,
    *,
    now: datetime,
) -> list[Detection]:
    """Low helpfulness, low acceptance and stale flags of published articles."""
    found: list[Detection] = []
    for entry in entries:
        revision = entry.current_revision
        if revision is None:
            continue
        c = counts.get(revision.id, Counts())
        base = {
            "revision_id": revision.id,
            "revision": revision.number,
            "title": revision.question,
            "views": c.views_dict(),
        }
        helpful = proportion(
            c.helpful,
            c.votes,
            prior_mean=baseline.helpful_prior,
            prior_weight=policy.prior_votes,
            z=policy.z,
        )
        if (
            c.views_total >= policy.min_views
            and c.votes >= policy.min_votes
            and helpful.high < baseline.helpful_typical
        ):
            found.append(
                Detection(
                    kind=FlagKind.low_helpfulness,
                    key=_revision_key(FlagKind.low_helpfulness, entry.id, revision.id),
                    # Expected visitors of this revision who were not helped.
                    score=round(c.views_total * (1 - helpful.bayesian), 2),
                    evidence={
                        **base,
                        "helpful": c.helpful,
                        "not_helpful": c.not_helpful,
                        "helpful_ratio": helpful.as_dict(),
                        "site_typical": round(baseline.helpful_typical, 4),
                        "site_prior": round(baseline.helpful_prior, 4),
                        "rule": f"upper 95% bound {helpful.high:.3f} < site typical "
                        f"{baseline.helpful_typical:.3f} with {c.views_total} views "
                        f"(min {policy.min_views}) and {c.votes} votes (min {policy.min_votes})",
                    },
                    weight=c.votes,
                    entry_id=entry.id,
                    revision_id=revision.id,
                    language=entry.language,
                    category=entry.category,
                )
            )
        acceptance = proportion(
            c.accepted,
            c.judged,
            prior_mean=baseline.acceptance_prior,
            prior_weight=policy.prior_votes,
            z=policy.z,
        )
        bar = baseline.acceptance_typical - policy.acceptance_margin
        if c.judged >= policy.min_suggestions and acceptance.high < bar:
            found.append(
                Detection(
                    kind=FlagKind.low_acceptance,
                    key=_revision_key(FlagKind.low_acceptance, entry.id, revision.id),
                    # Expected suggestions of this article that agents turn down.
                    score=round(c.judged * (1 - acceptance.bayesian), 2),
                    evidence={
                        **base,
                        "accepted": c.accepted,
                        "rejected": c.rejected,
                        "acceptance": acceptance.as_dict(),
                        "site_typical": round(baseline.acceptance_typical, 4),
                        "margin": policy.acceptance_margin,
                        "rule": f"upper 95% bound {acceptance.high:.3f} < site typical "
                        f"{baseline.acceptance_typical:.3f} - {policy.acceptance_margin} with "
                        f"{c.judged} outcomes (min {policy.min_suggestions})",
                    },
                    weight=c.judged,
                    entry_id=entry.id,
                    revision_id=revision.id,
                    language=entry.language,
                    category=entry.category,
                )
            )
        stale = _stale(entry, revision, trends.get(entry.id, Trend()), policy, now=now)
        if stale is not None:
            stale.evidence = {**base, **stale.evidence}
            found.append(stale)
    return found


def _stale(
    entry: FaqEntry, revision: FaqRevision, t: Trend, policy: HealthPolicy, *, now: datetime
) -> Detection | None:
    age_days = (now - revision.created_at).days
    if age_days < policy.stale_days:
        return None
    reasons: list[str] = []
    score = 0.0
    views_fell = (
        t.previous_views >= policy.min_views
        and t.recent_views <= (1 - policy.stale_drop) * t.previous_views
    )
    if views_fell:
        reasons.append(f"views fell from {t.previous_views} to {t.recent_views}")
        score += t.previous_views - t.recent_views
    before = proportion(t.previous_helpful, t.previous_votes, prior_mean=0.5, prior_weight=0)
    after = proportion(t.recent_helpful, t.recent_votes, prior_mean=0.5, prior_weight=0)
    trend_test = None
    if t.previous_votes >= policy.min_votes and t.recent_votes >= policy.min_votes:
        trend_test = compare_proportions(before, after, alpha=policy.significance)
        if trend_test.significant and (trend_test.difference or 0) < 0:
            reasons.append(
                f"helpful ratio fell from {before.ratio:.2f} to {after.ratio:.2f} "
                f"(p = {trend_test.p_value:.3g})"
            )
            score += t.recent_views * -(trend_test.difference or 0)
    if not reasons:
        return None
    return Detection(
        kind=FlagKind.stale,
        key=_revision_key(FlagKind.stale, entry.id, revision.id),
        score=round(score, 2),
        evidence={
            "revised_days_ago": age_days,
            "stale_days": policy.stale_days,
            "window_days": policy.trend_days,
            "recent_views": t.recent_views,
            "previous_views": t.previous_views,
            "recent_helpful_ratio": after.as_dict(),
            "previous_helpful_ratio": before.as_dict(),
            "trend_test": trend_test.as_dict() if trend_test else None,
            "rule": "; ".join(reasons),
        },
        weight=age_days,
        entry_id=entry.id,
        revision_id=revision.id,
        language=entry.language,
        category=entry.category,
    )


# -- applying a recompute ----------------------------------------------------------------


@dataclass
class RecomputeReport:
    """What a recompute did."""

    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    resolved: dict[str, int] = field(default_factory=dict)
    quiet: dict[str, int] = field(default_factory=dict)  # dismissed, no new evidence
    skipped: list[str] = field(default_factory=list)  # kinds not checked this time
    open: int = 0
    baseline: SiteBaseline | None = None

    def bump(self, what: dict[str, int], kind: FlagKind) -> None:
        """Count one flag of `kind` in `what`."""
        what[kind.value] = what.get(kind.value, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "created": self.created,
            "updated": self.updated,
            "resolved": self.resolved,
            "quiet": self.quiet,
            "skipped": self.skipped,
            "open": self.open,
            "baseline": self.baseline.as_dict() if self.baseline else None,
        }


def _renews(dismissed: Flag, d: Detection, policy: HealthPolicy) -> bool:
    """Whether a detection brings evidence the dismissing editor had not seen."""
    before = dismissed.evidence or {}
    if d.fingerprint and before.get("fingerprint") not in (None, d.fingerprint):
        return True
    weight = int(before.get("weight") or 0)
    return d.weight >= max(1, weight) * policy.renew_factor


def apply_detections(
    session: Session,
    detections: Iterable[Detection],
    *,
    kinds: Iterable[FlagKind],
    policy: HealthPolicy,
    now: datetime | None = None,
    report: RecomputeReport | None = None,
) -> RecomputeReport:
    """Make the open flags of `kinds` match the detections (the others are left alone)."""
    now = now or utcnow()
    report = report or RecomputeReport()
    kinds = list(kinds)
    open_flags = {
        (f.kind, f.key): f
        for f in session.scalars(
            select(Flag).where(Flag.status == FlagStatus.open, Flag.kind.in_(kinds))
        )
    }
    detections = list(detections)
    raised: list[Flag] = []
    dismissed: dict[tuple[FlagKind, str], Flag] = {}
    keys = [d.key for d in detections]
    for start in range(0, len(keys), 500):
        for f in session.scalars(
            select(Flag)
            .where(
                Flag.status == FlagStatus.dismissed,
                Flag.key.in_(keys[start : start + 500]),
            )
            .order_by(Flag.id)
        ):
            dismissed[(f.kind, f.key)] = f  # the latest dismissal wins
    for d in detections:
        evidence = {**d.evidence, "weight": d.weight, "fingerprint": d.fingerprint}
        flag = open_flags.pop((d.kind, d.key), None)
        if flag is not None:
            flag.score, flag.evidence, flag.checked_at = d.score, evidence, now
            flag.entry_id, flag.revision_id = d.entry_id, d.revision_id
            flag.language, flag.category = d.language, d.category
            report.bump(report.updated, d.kind)
            continue
        last = dismissed.get((d.kind, d.key))
        if last is not None:
            if not _renews(last, d, policy):
                report.bump(report.quiet, d.kind)
                continue
            evidence["previous_flag"] = last.id
        new_flag = Flag(
            kind=d.kind,
            key=d.key,
            score=d.score,
            evidence=evidence,
            status=FlagStatus.open,
            entry_id=d.entry_id,
            revision_id=d.revision_id,
            language=d.language,
            category=d.category,
            created_at=now,
            checked_at=now,
        )
        session.add(new_flag)
        raised.append(new_flag)
        report.bump(report.created, d.kind)
    for flag in open_flags.values():
        _resolve(flag, by=HEALTH_ACTOR, why=_why_gone(session, flag), now=now)
        report.bump(report.resolved, flag.kind)
    session.flush()
    outbox.flags_raised(session, raised)  # webhooks, in the same transaction
    report.open = int(
        session.scalar(select(func.count(Flag.id)).where(Flag.status == FlagStatus.open)) or 0
    )
    return report


def _why_gone(session: Session, flag: Flag) -> str:
    entry = session.get(FaqEntry, flag.entry_id) if flag.entry_id else None
    if flag.entry_id is not None and entry is None:
        return "the FAQ was deleted"
    if entry is not None and entry.status == EntryStatus.merged:
        return f"FAQ merged into FAQ {entry.merged_into_id}"
    if entry is not None and entry.status != EntryStatus.published:
        return f"FAQ {entry.status.value}"
    if flag.kind == FlagKind.duplicate:
        pair = (flag.evidence or {}).get("pair") or []
        for other_id in pair:
            other = session.get(FaqEntry, other_id)
            if other is None or other.status != EntryStatus.published:
                return f"FAQ {other_id} is no longer published"
    if (
        flag.kind in REVISION_KINDS
        and entry is not None
        and entry.current_revision is not None
        and flag.revision_id != entry.current_revision_id
    ):
        return f"rewritten as revision {entry.current_revision.number}"
    if flag.kind == FlagKind.content_gap:
        return "no longer a gap: an article answers it or the posts stopped"
    return "no longer holds"


def _resolve(flag: Flag, *, by: str, why: str, now: datetime) -> None:
    flag.status = FlagStatus.resolved
    flag.resolved_by = by[:200]
    flag.resolution = why[:MAX_REASON]
    flag.resolved_at = now


@dataclass
class Detected:
    """The outcome of detection: what was found, which kinds were checked, when."""

    detections: list[Detection]
    kinds: list[FlagKind]
    report: RecomputeReport
    now: datetime


def detect_all(
    session: Session,
    policy: HealthPolicy,
    *,
    now: datetime | None = None,
    tz: tzinfo | None = None,
    encoder: Encoder | None = None,
    tokenizer: Tokenize | None = None,
    covered: Coverage | None = None,
    gaps: bool = True,
) -> Detected:
    """Score every published article and detect every problem (reads only).

    Without an encoder (and tokenizer) duplicates and content gaps are not checked, and
    their flags are left as they are; likewise content gaps when `gaps` is False.
    """
    now = now or utcnow()
    today = now.astimezone(tz).date() if tz else now.date()
    report = RecomputeReport()
    entries = current_revisions(session)
    counts = revision_counts(session)
    baseline = site_baseline(
        (counts.get(e.current_revision_id or -1, Counts()) for e in entries), policy
    )
    report.baseline = baseline
    trends = entry_trends(session, today=today, days=policy.trend_days, tz=tz)
    detections = detect_article_flags(entries, counts, trends, baseline, policy, now=now)
    kinds: list[FlagKind] = list(ENTRY_KINDS)
    if encoder is not None and tokenizer is not None:
        views = {
            e.id: counts.get(e.current_revision_id or -1, Counts()).views_total for e in entries
        }
        detections += detect_duplicates(session, entries, views, policy, encoder, tokenizer)
        kinds.append(FlagKind.duplicate)
    else:
        report.skipped.append(FlagKind.duplicate.value)
    if encoder is not None and gaps:
        detections += detect_content_gaps(session, policy, encoder, now=now, covered=covered)
        kinds.append(FlagKind.content_gap)
    else:
        report.skipped.append(FlagKind.content_gap.value)
    return Detected(detections, kinds, report, now)


def apply_detected(session: Session, found: Detected, policy: HealthPolicy) -> RecomputeReport:
    """Write what `detect_all` found (in a transaction of its own, if the caller likes)."""
    return apply_detections(
        session,
        found.detections,
        kinds=found.kinds,
        policy=policy,
        now=found.now,
        report=found.report,
    )


def recompute(
    session: Session,
    policy: HealthPolicy,
    *,
    now: datetime | None = None,
    tz: tzinfo | None = None,
    encoder: Encoder | None = None,
    tokenizer: Tokenize | None = None,
    covered: Coverage | None = None,
    gaps: bool = True,
) -> RecomputeReport:
    """Detect and apply in one session (callers commit); see `detect_all`."""
    found = detect_all(
        session,
        policy,
        now=now,
        tz=tz,
        encoder=encoder,
        tokenizer=tokenizer,
        covered=covered,
        gaps=gaps,
    )
    return apply_detected(session, found, policy)


# -- editor actions ----------------------------------------------------------------------


def get_flag_or_raise(session: Session, flag_id: int) -> Flag:
    """The flag, or NotFound."""
    flag = session.get(Flag, flag_id)
    if flag is None:
        raise NotFound(f"flag {flag_id} not found")
    return flag


def dismiss_flag(session: Session, flag_id: int, *, reason: str, by: str) -> Flag:
    """Dismiss an open flag with a reason; it stays quiet until new evidence arrives.

    The flag keeps the evidence it had (its size and fingerprint): a later recompute
    compares against it to decide whether the evidence is new.
    """
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("reason must not be empty")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"reason is longer than {MAX_REASON} characters")
    flag = get_flag_or_raise(session, flag_id)
    if flag.status != FlagStatus.open:
        raise InvalidTransition(f"flag {flag_id} is {flag.status.value}, not open")
    flag.status = FlagStatus.dismissed
    flag.resolved_by = (by or "editor")[:200]
    flag.resolution = reason
    flag.resolved_at = utcnow()
    session.flush()
    return flag


def resolve_after_rewrite(session: Session, entry: FaqEntry, *, by: str) -> list[Flag]:
    """Resolve the open per-revision flags of an entry whose revision they judged is gone."""
    if entry.current_revision is None:
        return []
    flags = list(
        session.scalars(
            select(Flag).where(
                Flag.entry_id == entry.id,
                Flag.status == FlagStatus.open,
                Flag.kind.in_(REVISION_KINDS),
            )
        )
    )
    now = utcnow()
    done = []
    for flag in flags:
        if flag.revision_id != entry.current_revision_id:
            why = f"rewritten as revision {entry.current_revision.number}"
            _resolve(flag, by=by or "editor", why=why, now=now)
            done.append(flag)
    session.flush()
    return done


@dataclass
class RewriteResult:
    """A rewrite: the entry, the new revision and the flags it resolved."""

    entry: FaqEntry
    revision: FaqRevision
    resolved: list[Flag]


def rewrite_entry(
    session: Session,
    entry_id: int,
    *,
    question: str,
    answer: str,
    author: str,
    reason: str | None = None,
    flag_id: int | None = None,
) -> RewriteResult:
    """Write a new revision of the text (phrasings kept) and resolve the flags it answers."""
    entry = faqs.get_entry_or_raise(session, entry_id)
    if flag_id is not None:
        flag = get_flag_or_raise(session, flag_id)
        if flag.entry_id != entry.id:
            raise InvalidInput(f"flag {flag_id} is not about FAQ {entry_id}")
    before = entry.current_revision_id
    why = (reason or "").strip() or (f"rewrite for flag {flag_id}" if flag_id else "rewrite")
    faqs.revise_entry(
        session,
        entry_id,
        question=question,
        answer=answer,
        category=entry.category,
        language=entry.language,
        author=author,
        reason=why[:MAX_REASON],
    )
    if entry.current_revision_id == before or entry.current_revision is None:
        raise InvalidInput("the question and answer are unchanged: a rewrite needs new text")
    resolved = resolve_after_rewrite(session, entry, by=author)
    return RewriteResult(entry=entry, revision=entry.current_revision, resolved=resolved)


def list_flags(
    session: Session,
    *,
    status: FlagStatus | None = FlagStatus.open,
    kind: FlagKind | None = None,
    category: str | None = None,
    language: str | None = None,
    entry_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Flag], int]:
    """Flags by impact (highest score first), filtered, and the total matching."""
    query = select(Flag)
    if status is not None:
        query = query.where(Flag.status == status)
    if kind is not None:
        query = query.where(Flag.kind == kind)
    if category:
        query = query.where(Flag.category == category)
    if language:
        query = query.where(Flag.language == language)
    if entry_id is not None:
        query = query.where(Flag.entry_id == entry_id)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = session.scalars(query.order_by(Flag.score.desc(), Flag.id).limit(limit).offset(offset))
    return list(rows), total


def open_flags_of(session: Session, entry_id: int) -> list[Flag]:
    """Open flags about an entry: its own, and duplicate pairs it belongs to; by impact."""
    rows = list(
        session.scalars(
            select(Flag).where(
                Flag.status == FlagStatus.open,
                or_(Flag.entry_id == entry_id, Flag.kind == FlagKind.duplicate),
            )
        )
    )
    mine = [
        f
        for f in rows
        if f.entry_id == entry_id or entry_id in ((f.evidence or {}).get("pair") or [])
    ]
    return sorted(mine, key=lambda f: (-f.score, f.id))


def flag_categories(session: Session) -> list[str]:
    """Categories that have flags (for the queue's filter)."""
    rows = session.scalars(
        select(Flag.category).where(Flag.category.is_not(None)).distinct().order_by(Flag.category)
    )
    return [c for c in rows if c]
