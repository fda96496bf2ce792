"""Health scores of FAQ articles and their revisions. Callers commit (nothing here writes)."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from kb.errors import NotFound
from kb.health.statistics import Z95, Comparison, Proportion, compare_proportions, proportion
from kb.models import (
    DailyFeedback,
    EntryStatus,
    FaqEntry,
    FaqRevision,
    PageView,
    Suggestion,
    SuggestionOutcome,
    ViewSource,
    Vote,
)

# Below this many judged articles the median says little; the pooled ratio is used instead.
MIN_ARTICLES_FOR_TYPICAL = 5
# Ratio assumed before the site has any vote at all (it then judges nothing anyway).
NEUTRAL_PRIOR = 0.5
IMPORTED = "imported"
VIEW_SOURCES = (*(s.value for s in ViewSource), IMPORTED)

# -- policy ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthPolicy:
    """Every threshold of the health scores and flags (the API builds it from settings)."""

    min_views: int = 100  # views of a revision before its helpfulness is judged
    min_votes: int = 20  # votes of a revision before its helpfulness is judged
    min_suggestions: int = 20  # reported outcomes before acceptance is judged
    prior_votes: float = 10.0  # weight of the site prior in Bayesian averages
    acceptance_margin: float = 0.15  # how far below typical acceptance counts as "far"
    stale_days: int = 180  # a revision this old may be stale
    trend_days: int = 30  # length of the two windows compared for falling numbers
    stale_drop: float = 0.3  # share of views lost between the windows that counts as falling
    significance: float = 0.05  # alpha of the before/after and trend tests
    duplicate_threshold: float = 0.81  # duplicate score at which two articles are flagged
    gap_similarity: float = 0.905  # average cosine for posts to form one gap cluster
    gap_min_count: int = 5  # posts + searches before a cluster is a content gap
    gap_days: int = 30  # how far back abstained posts and failed searches are read
    renew_factor: float = 2.0  # a dismissed flag returns when its evidence grows this much
    z: float = Z95


# -- counts ------------------------------------------------------------------------------


@dataclass
class Counts:
    """What happened to one revision (or a sum of revisions)."""

    views: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VIEW_SOURCES, 0))
    helpful: int = 0
    not_helpful: int = 0
    accepted: int = 0
    rejected: int = 0

    @property
    def views_total(self) -> int:
        return sum(self.views.values())

    @property
    def reply_views(self) -> int:
        """Views that arrived from links agents sent."""
        return self.views.get(ViewSource.reply.value, 0)

    @property
    def organic_views(self) -> int:
        """Views from the site's search and everything else (imported history excluded)."""
        return self.views.get(ViewSource.search.value, 0) + self.views.get(
            ViewSource.direct.value, 0
        )

    @property
    def votes(self) -> int:
        return self.helpful + self.not_helpful

    @property
    def judged(self) -> int:
        """Suggestions of this revision whose outcome agents reported."""
        return self.accepted + self.rejected

    def add(self, other: Counts) -> None:
        """Add another revision's counts to these."""
        for source, n in other.views.items():
            self.views[source] = self.views.get(source, 0) + n
        self.helpful += other.helpful
        self.not_helpful += other.not_helpful
        self.accepted += other.accepted
        self.rejected += other.rejected

    def views_dict(self) -> dict[str, int]:
        """Views by source, with the total and the reply/organic split."""
        return {
            **{s: self.views.get(s, 0) for s in VIEW_SOURCES},
            "total": self.views_total,
            "from_replies": self.reply_views,
            "organic": self.organic_views,
        }


def _accepted_case() -> Any:
    # Sent or edited counts as accepted only for the article that was suggested: an agent who
    # sent another article did not accept this one.
    return case(
        (
            and_(
                Suggestion.outcome.in_([SuggestionOutcome.sent, SuggestionOutcome.edited]),
                or_(
                    Suggestion.outcome_faq_id.is_(None),
                    Suggestion.outcome_faq_id == Suggestion.best_faq_id,
                ),
            ),
            1,
        ),
        else_=0,
    )


def revision_counts(
    session: Session, *, entry_ids: Sequence[int] | None = None
) -> dict[int, Counts]:
    """Counts per revision id: views by source, votes, imported history, acceptance.

    Rows are selected by the entry they are filed under now (a merge moves a merged
    article's rows to the entry it became, keeping their revision), all when `entry_ids`
    is None. Grouping happens in the database, so this is a handful of queries for any size.
    """
    out: dict[int, Counts] = {}

    def bucket(revision_id: int) -> Counts:
        counts = out.get(revision_id)
        if counts is None:
            counts = out[revision_id] = Counts()
        return counts

    ids = list(entry_ids) if entry_ids is not None else None
    views = select(PageView.revision_id, PageView.source, func.sum(PageView.count)).group_by(
        PageView.revision_id, PageView.source
    )
    if ids is not None:
        views = views.where(PageView.entry_id.in_(ids))
    for revision_id, source, n in session.execute(views):
        c = bucket(revision_id)
        key = ViewSource(source).value
        c.views[key] = c.views.get(key, 0) + int(n or 0)

    imported = select(
        DailyFeedback.revision_id,
        func.sum(DailyFeedback.views),
        func.sum(DailyFeedback.helpful),
        func.sum(DailyFeedback.not_helpful),
    ).group_by(DailyFeedback.revision_id)
    if ids is not None:
        imported = imported.where(DailyFeedback.entry_id.in_(ids))
    for revision_id, n_views, yes, no in session.execute(imported):
        c = bucket(revision_id)
        c.views[IMPORTED] += int(n_views or 0)
        c.helpful += int(yes or 0)
        c.not_helpful += int(no or 0)

    votes = select(
        Vote.revision_id,
        func.sum(case((Vote.helpful.is_(True), 1), else_=0)),
        func.sum(case((Vote.helpful.is_(False), 1), else_=0)),
    ).group_by(Vote.revision_id)
    if ids is not None:
        votes = votes.where(Vote.entry_id.in_(ids))
    for revision_id, yes, no in session.execute(votes):
        c = bucket(revision_id)
        c.helpful += int(yes or 0)
        c.not_helpful += int(no or 0)

    for revision_id, accepted, rejected in _acceptance_by_revision(session, ids):
        c = bucket(revision_id)
        c.accepted += accepted
        c.rejected += rejected
    return out


def _acceptance_by_revision(
    session: Session, entry_ids: list[int] | None
) -> list[tuple[int, int, int]]:
    """(revision id, accepted, rejected) of suggestions with a reported outcome.

    A suggestion belongs to the revision live when it was made: the number of the entry's
    revisions created up to that moment (revisions are numbered in creation order).
    """
    live_number = (
        select(func.count(FaqRevision.id))
        .where(
            FaqRevision.entry_id == Suggestion.best_faq_id,
            FaqRevision.created_at <= Suggestion.created_at,
        )
        .correlate(Suggestion)
        .scalar_subquery()
    )
    accepted = _accepted_case()
    inner = select(
        Suggestion.best_faq_id.label("entry_id"),
        live_number.label("number"),
        accepted.label("accepted"),
    ).where(
        Suggestion.best_faq_id.is_not(None),
        Suggestion.abstained.is_(False),
        Suggestion.outcome.is_not(None),
    )
    if entry_ids is not None:
        inner = inner.where(Suggestion.best_faq_id.in_(entry_ids))
    sub = inner.subquery()
    grouped = session.execute(
        select(sub.c.entry_id, sub.c.number, func.sum(sub.c.accepted), func.count())
        .group_by(sub.c.entry_id, sub.c.number)
        .order_by(sub.c.entry_id, sub.c.number)
    ).all()
    if not grouped:
        return []
    wanted = {int(e) for e, _, _, _ in grouped}
    by_number = {
        (entry_id, number): revision_id
        for revision_id, entry_id, number in session.execute(
            select(FaqRevision.id, FaqRevision.entry_id, FaqRevision.number).where(
                FaqRevision.entry_id.in_(wanted)
            )
        )
    }
    rows = []
    for entry_id, number, n_accepted, n in grouped:
        revision_id = by_number.get((int(entry_id), int(number or 0)))
        if revision_id is None:  # made before the entry's first revision: nothing to credit
            continue
        yes = int(n_accepted or 0)
        rows.append((revision_id, yes, int(n) - yes))
    return rows


# -- the site's baseline -----------------------------------------------------------------


@dataclass(frozen=True)
class SiteBaseline:
    """What is normal on this site: the priors and the typical ratios articles are held to.

    The prior (pooled ratio over every current revision) anchors Bayesian averages. The
    typical ratio is the median over articles with enough data: a few bad articles move a
    median less than a pooled ratio, so they cannot lower the bar they are judged against.
    """

    helpful_prior: float
    helpful_typical: float
    helpful_articles: int
    acceptance_prior: float
    acceptance_typical: float
    acceptance_articles: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures."""
        return {
            "helpful_prior": round(self.helpful_prior, 4),
            "helpful_typical": round(self.helpful_typical, 4),
            "helpful_articles": self.helpful_articles,
            "acceptance_prior": round(self.acceptance_prior, 4),
            "acceptance_typical": round(self.acceptance_typical, 4),
            "acceptance_articles": self.acceptance_articles,
        }


def _typical(pairs: Sequence[tuple[int, int]], minimum: int) -> tuple[float, float, int]:
    successes = sum(s for s, _ in pairs)
    trials = sum(n for _, n in pairs)
    prior = successes / trials if trials else NEUTRAL_PRIOR
    ratios = [s / n for s, n in pairs if n >= minimum and n > 0]
    typical = statistics.median(ratios) if len(ratios) >= MIN_ARTICLES_FOR_TYPICAL else prior
    return prior, typical, len(ratios)


def site_baseline(current: Iterable[Counts], policy: HealthPolicy) -> SiteBaseline:
    """The baseline from the counts of every published article's current revision."""
    rows = list(current)
    h_prior, h_typical, h_n = _typical([(c.helpful, c.votes) for c in rows], policy.min_votes)
    a_prior, a_typical, a_n = _typical(
        [(c.accepted, c.judged) for c in rows], policy.min_suggestions
    )
    return SiteBaseline(h_prior, h_typical, h_n, a_prior, a_typical, a_n)


def current_revisions(session: Session) -> list[FaqEntry]:
    """Published entries that have a current revision, by id."""
    rows = session.scalars(
        select(FaqEntry)
        .where(FaqEntry.status == EntryStatus.published, FaqEntry.current_revision_id.is_not(None))
        .order_by(FaqEntry.id)
    )
    return list(rows)


def compute_baseline(
    session: Session, policy: HealthPolicy, counts: dict[int, Counts] | None = None
) -> SiteBaseline:
    """The site's baseline now (pass `counts` from `revision_counts` to avoid re-reading)."""
    counts = counts if counts is not None else revision_counts(session)
    entries = current_revisions(session)
    return site_baseline(
        (counts.get(e.current_revision_id or -1, Counts()) for e in entries), policy
    )


# -- recent trends -----------------------------------------------------------------------


@dataclass
class Trend:
    """Views and votes of an entry in the last window and the window before it."""

    recent_views: int = 0
    previous_views: int = 0
    recent_helpful: int = 0
    recent_votes: int = 0
    previous_helpful: int = 0
    previous_votes: int = 0


def local_midnight(day: date, tz: tzinfo | None) -> datetime:
    """The UTC instant a calendar day starts in `tz`."""
    return datetime.combine(day, time(0), tzinfo=tz or UTC).astimezone(UTC)


def entry_trends(
    session: Session, *, today: date, days: int, tz: tzinfo | None
) -> dict[int, Trend]:
    """Per entry: views and votes of the last `days` days (today included) and the ones before."""
    recent_start = today - timedelta(days=days - 1)
    previous_start = recent_start - timedelta(days=days)
    out: dict[int, Trend] = {}

    def trend(entry_id: int) -> Trend:
        return out.setdefault(entry_id, Trend())

    is_recent = PageView.day >= recent_start
    for entry_id, recent, previous in session.execute(
        select(
            PageView.entry_id,
            func.sum(case((is_recent, PageView.count), else_=0)),
            func.sum(case((is_recent, 0), else_=PageView.count)),
        )
        .where(PageView.day >= previous_start, PageView.day <= today)
        .group_by(PageView.entry_id)
    ):
        t = trend(entry_id)
        t.recent_views += int(recent or 0)
        t.previous_views += int(previous or 0)
    fb_recent = DailyFeedback.day >= recent_start
    for entry_id, rv, pv, rh, rn, ph, pn in session.execute(
        select(
            DailyFeedback.entry_id,
            func.sum(case((fb_recent, DailyFeedback.views), else_=0)),
            func.sum(case((fb_recent, 0), else_=DailyFeedback.views)),
            func.sum(case((fb_recent, DailyFeedback.helpful), else_=0)),
            func.sum(case((fb_recent, DailyFeedback.not_helpful), else_=0)),
            func.sum(case((fb_recent, 0), else_=DailyFeedback.helpful)),
            func.sum(case((fb_recent, 0), else_=DailyFeedback.not_helpful)),
        )
        .where(DailyFeedback.day >= previous_start, DailyFeedback.day <= today)
        .group_by(DailyFeedback.entry_id)
    ):
        t = trend(entry_id)
        t.recent_views += int(rv or 0)
        t.previous_views += int(pv or 0)
        t.recent_helpful += int(rh or 0)
        t.recent_votes += int(rh or 0) + int(rn or 0)
        t.previous_helpful += int(ph or 0)
        t.previous_votes += int(ph or 0) + int(pn or 0)
    recent_at = local_midnight(recent_start, tz)
    previous_at = local_midnight(previous_start, tz)
    end_at = local_midnight(today + timedelta(days=1), tz)
    vote_recent = Vote.updated_at >= recent_at
    for entry_id, rh, rn, ph, pn in session.execute(
        select(
            Vote.entry_id,
            func.sum(case((and_(vote_recent, Vote.helpful.is_(True)), 1), else_=0)),
            func.sum(case((vote_recent, 1), else_=0)),
            func.sum(case((and_(~vote_recent, Vote.helpful.is_(True)), 1), else_=0)),
            func.sum(case((vote_recent, 0), else_=1)),
        )
        .where(Vote.updated_at >= previous_at, Vote.updated_at < end_at)
        .group_by(Vote.entry_id)
    ):
        t = trend(entry_id)
        t.recent_helpful += int(rh or 0)
        t.recent_votes += int(rn or 0)
        t.previous_helpful += int(ph or 0)
        t.previous_votes += int(pn or 0)
    return out


# -- one article -------------------------------------------------------------------------


@dataclass
class RevisionHealth:
    """One revision's numbers and what they say."""

    revision: FaqRevision
    current: bool
    counts: Counts
    helpful: Proportion
    acceptance: Proportion
    helpful_judged: bool  # enough views and votes for a judgement
    acceptance_judged: bool
    # The entry the revision belongs to when it came with a merge (None for its own).
    merged_from: int | None = None


@dataclass
class BeforeAfter:
    """One rewrite: the revision before, the revision after, and the test between them."""

    before: RevisionHealth
    after: RevisionHealth
    comparison: Comparison


@dataclass(frozen=True)
class DayPoint:
    """One day of one revision."""

    day: date
    revision_id: int
    views: int
    helpful: int
    not_helpful: int


@dataclass
class ArticleHealth:
    """Everything the article page and `GET /v1/faqs/{id}/health` show."""

    entry: FaqEntry
    revisions: list[RevisionHealth]
    totals: Counts
    baseline: SiteBaseline
    rewrites: list[BeforeAfter]
    series: list[DayPoint]


def judge_revision(
    revision: FaqRevision,
    counts: Counts,
    *,
    current: bool,
    baseline: SiteBaseline,
    policy: HealthPolicy,
    merged_from: int | None = None,
) -> RevisionHealth:
    """A revision's proportions and whether there is enough data to judge it."""
    return RevisionHealth(
        revision=revision,
        current=current,
        counts=counts,
        helpful=proportion(
            counts.helpful,
            counts.votes,
            prior_mean=baseline.helpful_prior,
            prior_weight=policy.prior_votes,
            z=policy.z,
        ),
        acceptance=proportion(
            counts.accepted,
            counts.judged,
            prior_mean=baseline.acceptance_prior,
            prior_weight=policy.prior_votes,
            z=policy.z,
        ),
        helpful_judged=counts.views_total >= policy.min_views and counts.votes >= policy.min_votes,
        acceptance_judged=counts.judged >= policy.min_suggestions,
        merged_from=merged_from,
    )


def _carried_revision_ids(session: Session, entry_id: int) -> set[int]:
    ids: set[int] = set()
    for table in (PageView, Vote, DailyFeedback):
        ids.update(
            session.scalars(select(table.revision_id).where(table.entry_id == entry_id).distinct())
        )
    return ids


def article_health(
    session: Session,
    entry_id: int,
    policy: HealthPolicy,
    *,
    tz: tzinfo | None = None,
    baseline: SiteBaseline | None = None,
) -> ArticleHealth:
    """Scores per revision (its own and those a merge carried over), before/after per rewrite,
    and the daily series of views and votes."""
    entry = session.get(FaqEntry, entry_id)
    if entry is None:
        raise NotFound(f"FAQ {entry_id} not found")
    baseline = baseline or compute_baseline(session, policy)
    counts = revision_counts(session, entry_ids=[entry_id])
    own = list(
        session.scalars(
            select(FaqRevision).where(FaqRevision.entry_id == entry_id).order_by(FaqRevision.number)
        )
    )
    own_ids = {r.id for r in own}
    carried_ids = _carried_revision_ids(session, entry_id) - own_ids
    carried = (
        list(
            session.scalars(
                select(FaqRevision)
                .where(FaqRevision.id.in_(carried_ids))
                .order_by(FaqRevision.entry_id, FaqRevision.number)
            )
        )
        if carried_ids
        else []
    )
    revisions = [
        judge_revision(
            r,
            counts.get(r.id, Counts()),
            current=r.id == entry.current_revision_id,
            baseline=baseline,
            policy=policy,
        )
        for r in own
    ] + [
        judge_revision(
            r,
            counts.get(r.id, Counts()),
            current=False,
            baseline=baseline,
            policy=policy,
            merged_from=r.entry_id,
        )
        for r in carried
    ]
    totals = Counts()
    for rh in revisions:
        totals.add(rh.counts)
    mine = [rh for rh in revisions if rh.merged_from is None]
    rewrites = [
        BeforeAfter(
            before=a,
            after=b,
            comparison=compare_proportions(a.helpful, b.helpful, alpha=policy.significance),
        )
        for a, b in itertools.pairwise(mine)
    ]
    return ArticleHealth(
        entry=entry,
        revisions=revisions,
        totals=totals,
        baseline=baseline,
        rewrites=rewrites,
        series=daily_series(session, entry_id, tz=tz),
    )


def daily_series(session: Session, entry_id: int, *, tz: tzinfo | None) -> list[DayPoint]:
    """Views and votes per day and revision (days in `tz`, the page-view counters' zone)."""
    cells: dict[tuple[date, int], list[int]] = {}

    def cell(day: date, revision_id: int) -> list[int]:
        return cells.setdefault((day, revision_id), [0, 0, 0])

    for day, revision_id, n in session.execute(
        select(PageView.day, PageView.revision_id, func.sum(PageView.count))
        .where(PageView.entry_id == entry_id)
        .group_by(PageView.day, PageView.revision_id)
    ):
        cell(day, revision_id)[0] += int(n or 0)
    for day, revision_id, n, yes, no in session.execute(
        select(
            DailyFeedback.day,
            DailyFeedback.revision_id,
            DailyFeedback.views,
            DailyFeedback.helpful,
            DailyFeedback.not_helpful,
        ).where(DailyFeedback.entry_id == entry_id)
    ):
        c = cell(day, revision_id)
        c[0] += n
        c[1] += yes
        c[2] += no
    # Votes are few per article; their local day is computed here rather than in SQL,
    # whose date functions differ between SQLite and PostgreSQL.
    for revision_id, helpful, at in session.execute(
        select(Vote.revision_id, Vote.helpful, Vote.updated_at).where(Vote.entry_id == entry_id)
    ):
        c = cell(at.astimezone(tz or UTC).date(), revision_id)
        c[1 if helpful else 2] += 1
    return [
        DayPoint(day, revision_id, v, yes, no)
        for (day, revision_id), (v, yes, no) in sorted(cells.items())
    ]
