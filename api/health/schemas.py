"""Request and response bodies of the content-health API (flags, health, rewrite, merge)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kb.health.scores import ArticleHealth, BeforeAfter, Counts, RevisionHealth
from kb.health.statistics import Proportion
from kb.models import FaqEntry, Flag


class FlagRead(BaseModel):
    id: int
    kind: str
    status: str
    faq_id: int | None
    revision_id: int | None
    key: str
    score: float = Field(description="Impact: people affected (see docs/health.md).")
    lang: str | None
    category: str | None
    title: str | None = Field(None, description="The FAQ's current question, if any.")
    slug: str | None = None
    evidence: dict[str, Any]
    created_at: datetime
    checked_at: datetime | None
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None

    @classmethod
    def of(cls, flag: Flag, entry: FaqEntry | None) -> FlagRead:
        """The API view of a flag (with its entry's title and slug when it has one)."""
        rev = entry.current_revision if entry else None
        return cls(
            id=flag.id,
            kind=flag.kind.value,
            status=flag.status.value,
            faq_id=flag.entry_id,
            revision_id=flag.revision_id,
            key=flag.key,
            score=flag.score,
            lang=flag.language,
            category=flag.category,
            title=rev.question if rev else None,
            slug=entry.slug if entry else None,
            evidence=flag.evidence or {},
            created_at=flag.created_at,
            checked_at=flag.checked_at,
            resolved_at=flag.resolved_at,
            resolved_by=flag.resolved_by,
            resolution=flag.resolution,
        )


class FlagList(BaseModel):
    items: list[FlagRead]
    total: int


class DismissRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=500, description="Why it is not a problem.")


class RecomputeRead(BaseModel):
    created: dict[str, int]
    updated: dict[str, int]
    resolved: dict[str, int]
    quiet: dict[str, int] = Field(description="Dismissed problems without new evidence.")
    skipped: list[str]
    open: int
    baseline: dict[str, Any] | None


class RecomputeStatus(BaseModel):
    running: bool = Field(description="A recompute is under way.")
    started: bool = Field(description="This request started one (POST only).")
    completed: int = Field(description="Recomputes finished since the process started.")
    finished_at: datetime | None
    last_error: str | None
    last: RecomputeRead | None = Field(description="What the last finished recompute did.")


class ProportionRead(BaseModel):
    successes: int
    n: int
    ratio: float | None
    wilson_low: float = Field(description="Lower bound of the 95 % Wilson score interval.")
    wilson_high: float = Field(description="Upper bound of the 95 % Wilson score interval.")
    bayesian: float = Field(description="Bayesian average against the site prior.")

    @classmethod
    def of(cls, p: Proportion) -> ProportionRead:
        """From a kb.health Proportion."""
        return cls(**p.as_dict())


class ViewsRead(BaseModel):
    reply: int
    search: int
    direct: int
    imported: int
    total: int
    from_replies: int = Field(description="Views from links agents sent (src=reply).")
    organic: int = Field(description="Views from the site's search and direct visits.")


class CountsRead(BaseModel):
    views: ViewsRead
    helpful: int
    not_helpful: int
    accepted: int = Field(description="Suggestions of it that agents sent or edited.")
    rejected: int = Field(description="Suggestions of it that agents rejected.")

    @classmethod
    def of(cls, c: Counts) -> CountsRead:
        """From kb.health Counts."""
        return cls(
            views=ViewsRead(**c.views_dict()),
            helpful=c.helpful,
            not_helpful=c.not_helpful,
            accepted=c.accepted,
            rejected=c.rejected,
        )


class RevisionHealthRead(BaseModel):
    revision_id: int
    number: int
    current: bool
    created_at: datetime
    author: str
    reason: str
    merged_from: int | None = Field(description="FAQ id when a merge carried it over.")
    counts: CountsRead
    helpful_ratio: ProportionRead
    acceptance: ProportionRead
    enough_votes: bool = Field(description="Views and votes reach the minimums for a judgement.")
    enough_outcomes: bool = Field(description="Reported outcomes reach the minimum.")

    @classmethod
    def of(cls, r: RevisionHealth) -> RevisionHealthRead:
        """From a kb.health RevisionHealth."""
        return cls(
            revision_id=r.revision.id,
            number=r.revision.number,
            current=r.current,
            created_at=r.revision.created_at,
            author=r.revision.author,
            reason=r.revision.reason,
            merged_from=r.merged_from,
            counts=CountsRead.of(r.counts),
            helpful_ratio=ProportionRead.of(r.helpful),
            acceptance=ProportionRead.of(r.acceptance),
            enough_votes=r.helpful_judged,
            enough_outcomes=r.acceptance_judged,
        )


class RewriteComparisonRead(BaseModel):
    from_revision: int
    to_revision: int
    before: ProportionRead
    after: ProportionRead
    difference: float | None = Field(description="After minus before helpful ratio.")
    z: float | None = Field(description="Two-proportion z statistic (effect size).")
    p_value: float
    test: str
    significant: bool
    improved: bool

    @classmethod
    def of(cls, ba: BeforeAfter) -> RewriteComparisonRead:
        """From a kb.health BeforeAfter."""
        c = ba.comparison.as_dict()
        return cls(
            from_revision=ba.before.revision.number,
            to_revision=ba.after.revision.number,
            before=ProportionRead(**c["before"]),
            after=ProportionRead(**c["after"]),
            difference=c["difference"],
            z=c["z"],
            p_value=c["p_value"],
            test=c["test"],
            significant=c["significant"],
            improved=c["improved"],
        )


class DayRead(BaseModel):
    day: date
    revision_id: int
    views: int
    helpful: int
    not_helpful: int


class ArticleHealthRead(BaseModel):
    faq_id: int
    slug: str
    lang: str
    category: str
    status: str
    merged_into: int | None
    current_revision_id: int | None
    baseline: dict[str, Any]
    totals: CountsRead
    revisions: list[RevisionHealthRead]
    rewrites: list[RewriteComparisonRead] = Field(
        description="Before/after of each rewrite: helpful ratios and Fisher's exact test."
    )
    open_flags: list[FlagRead]
    series: list[DayRead]

    @classmethod
    def of(cls, h: ArticleHealth, open_flags: list[FlagRead]) -> ArticleHealthRead:
        """From a kb.health ArticleHealth."""
        e = h.entry
        return cls(
            faq_id=e.id,
            slug=e.slug,
            lang=e.language,
            category=e.category,
            status=e.status.value,
            merged_into=e.merged_into_id,
            current_revision_id=e.current_revision_id,
            baseline=h.baseline.as_dict(),
            totals=CountsRead.of(h.totals),
            revisions=[RevisionHealthRead.of(r) for r in h.revisions],
            rewrites=[RewriteComparisonRead.of(b) for b in h.rewrites],
            open_flags=open_flags,
            series=[
                DayRead(
                    day=p.day,
                    revision_id=p.revision_id,
                    views=p.views,
                    helpful=p.helpful,
                    not_helpful=p.not_helpful,
                )
                for p in h.series
            ],
        )


class RewriteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(max_length=500)
    answer: str = Field(max_length=50_000, description="Markdown.")
    reason: str | None = Field(None, max_length=500, description="Stored on the revision.")
    flag_id: int | None = Field(None, description="The flag this rewrite answers.")


class RewriteRead(BaseModel):
    faq_id: int
    revision_id: int
    revision: int
    resolved_flags: list[int]


class MergeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    into: int = Field(description="The FAQ that stays; this one redirects to it.")
    reason: str | None = Field(None, max_length=500)


class MergeRead(BaseModel):
    faq_id: int
    into: int
    redirect: str = Field(description="The old URL, now a 301 to the surviving article.")
    url: str
    views_moved: int
    votes_moved: int
    feedback_days_moved: int
    phrasings_added: int
    threads_moved: int
    resolved_flags: list[int]
