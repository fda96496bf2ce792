"""Flags: what an editor should look at, each with its evidence and an impact score.
Callers commit.

Five kinds (see README, "Content health"):
- `low_helpfulness`: the Wilson upper bound of the current revision's helpful ratio is below
  the site's typical ratio, with enough views and votes;
- `low_acceptance`: the upper bound of agents' acceptance of the article when it was
  suggested is far (`acceptance_margin`) below the typical acceptance;
- `stale`: the current revision is older than `stale_days` and its views fell by
  `stale_drop` (or its helpful ratio fell significantly) between two `trend_days` windows;
- `duplicate`: two published articles of one language (not translations of each other)
  whose questions and phrasings say the same thing, with a merge proposal;
- `content_gap`: a cluster of posts suggest abstained on and site searches without a good
  result, most of which no article answers now.

The score ranks impact in people affected: visitors not helped, replies rejected, views
lost, readers split between two copies, customers without an answer.

A recompute refreshes open flags, raises new ones and resolves those whose problem is gone.
There is at most one open flag per problem (`kind`, `key`; a partial unique index makes it
so even when two processes recompute at once). A dismissed flag stays quiet until its
evidence grows by `renew_factor` (or, for duplicates, either text changes). Flags of one
revision carry the revision in their key: a rewrite resolves them, and the new revision is
judged on its own numbers.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Protocol

import numpy as np
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from kb import faqs
from kb.errors import InvalidInput, InvalidTransition, NotFound
from kb.health import (
    Counts,
    HealthPolicy,
    SiteBaseline,
    Trend,
    compare_proportions,
    current_revisions,
    entry_trends,
    proportion,
    revision_counts,
    site_baseline,
)
from kb.models import (
    EntryStatus,
    FaqEntry,
    FaqRevision,
    Flag,
    FlagKind,
    FlagStatus,
    SearchLog,
    Suggestion,
    utcnow,
)
from kb.text import dedup_key

# Kinds judged on one revision: a rewrite resolves them.
REVISION_KINDS = (FlagKind.low_helpfulness, FlagKind.low_acceptance, FlagKind.stale)
ENTRY_KINDS = REVISION_KINDS
MAX_REASON = 500
HEALTH_ACTOR = "health"
# Texts per article compared for duplicates (title first, then the oldest phrasings).
MAX_TEXTS_PER_ENTRY = 30
# Nearest articles (by centroid) scored exactly for each article.
DUPLICATE_CANDIDATES = 10
# Weights of the duplicate score; chosen on StackFAQ pairs and the seed content
# (benchmarks/duplicate_detection.py, README "Content health").
DUPLICATE_DENSE_WEIGHT = 0.8
DUPLICATE_LEXICAL_WEIGHT = 0.2
MAX_GAP_TEXTS = 2000
# A gap is covered when articles answer at least this share of its posts (by count) now.
COVERED_SHARE = 0.5
MAX_COVERAGE_CHECKS = 30
GAP_EXAMPLES = 8


class Encoder(Protocol):
    """Turns texts into L2-normalised vectors (kb.capture.QuestionVectors does)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class Tokenize(Protocol):
    """Turns text into index terms (indexer.tokenizer.Tokenizer does)."""

    def tokenize(self, text: str) -> list[str]: ...


# "Is this text answered now?" → (faq id, confidence) when an article covers it.
Coverage = Callable[[str, str], tuple[int, float] | None]


@dataclass
class Detection:
    """A problem found by a recompute (becomes or refreshes an open flag)."""

    kind: FlagKind
    key: str
    score: float
    evidence: dict[str, Any]
    # Size of the evidence (votes, outcomes, posts, ...): a dismissed flag comes back only
    # when it reaches `renew_factor` times its size at dismissal.
    weight: int
    fingerprint: str = ""
    entry_id: int | None = None
    revision_id: int | None = None
    language: str | None = None
    category: str | None = None


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


# -- duplicates --------------------------------------------------------------------------


@dataclass
class _Doc:
    entry: FaqEntry
    texts: list[str]
    vectors: np.ndarray
    terms: set[str]


def _idf(docs: Sequence[_Doc]) -> dict[str, float]:
    df: dict[str, int] = defaultdict(int)
    for d in docs:
        for term in d.terms:
            df[term] += 1
    n = len(docs)
    return {term: math.log(1 + n / count) for term, count in df.items()}


def duplicate_score(
    a: np.ndarray,
    b: np.ndarray,
    terms_a: set[str],
    terms_b: set[str],
    idf: dict[str, float],
) -> tuple[float, float, float]:
    """(score, question similarity, word overlap) of two articles' question texts.

    Question similarity: every text of each article matched to its closest text of the
    other (cosine), averaged both ways. Word overlap: IDF-weighted Jaccard of their terms;
    it keeps apart articles on neighbouring topics ("eSIM on iPhone" vs "eSIM on Android")
    that the small embedding model places close together.
    """
    sims = a @ b.T
    dense = float((sims.max(axis=1).mean() + sims.max(axis=0).mean()) / 2)
    union = sum(idf.get(t, 0.0) for t in terms_a | terms_b)
    overlap = sum(idf.get(t, 0.0) for t in terms_a & terms_b) / union if union else 0.0
    score = DUPLICATE_DENSE_WEIGHT * dense + DUPLICATE_LEXICAL_WEIGHT * overlap
    return score, dense, overlap


def _docs_by_language(
    session: Session, entries: Sequence[FaqEntry], encoder: Encoder, tokenizer: Tokenize
) -> dict[str, list[_Doc]]:
    phrasings = faqs.phrasings_of(session, [e.id for e in entries])
    out: dict[str, list[_Doc]] = defaultdict(list)
    for entry in entries:
        assert entry.current_revision is not None
        seen: dict[str, str] = {}
        for text in [entry.current_revision.question, *phrasings.get(entry.id, [])]:
            key = dedup_key(text)
            if key and key not in seen:
                seen[key] = text
        texts = list(seen.values())[:MAX_TEXTS_PER_ENTRY]
        terms = set(tokenizer.tokenize(" ".join(texts)))
        out[entry.language].append(_Doc(entry, texts, np.zeros((0, 0)), terms))
    for docs in out.values():
        flat = [t for d in docs for t in d.texts]
        vectors = np.asarray(encoder.encode(flat), dtype=np.float64)
        start = 0
        for d in docs:
            d.vectors = vectors[start : start + len(d.texts)]
            start += len(d.texts)
    return out


def detect_duplicates(
    session: Session,
    entries: Sequence[FaqEntry],
    views: dict[int, int],
    policy: HealthPolicy,
    encoder: Encoder,
    tokenizer: Tokenize,
) -> list[Detection]:
    """Pairs of published same-language articles that answer the same question.

    Translations (one translation group) are never duplicates. The article with more
    views (then the older one) is proposed to stay; the other to be merged into it.
    """
    found: list[Detection] = []
    for language, docs in sorted(_docs_by_language(session, entries, encoder, tokenizer).items()):
        if len(docs) < 2:
            continue
        idf = _idf(docs)
        centroids = np.stack([d.vectors.mean(axis=0) for d in docs])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
        near = centroids @ centroids.T
        np.fill_diagonal(near, -np.inf)
        k = min(DUPLICATE_CANDIDATES, len(docs) - 1)
        pairs: set[tuple[int, int]] = set()
        for i in range(len(docs)):
            for j in np.argpartition(-near[i], k - 1)[:k]:
                pairs.add((min(i, int(j)), max(i, int(j))))
        for i, j in sorted(pairs):
            a, b = docs[i], docs[j]
            group = a.entry.translation_group
            if group and group == b.entry.translation_group:
                continue
            score, dense, overlap = duplicate_score(a.vectors, b.vectors, a.terms, b.terms, idf)
            if score < policy.duplicate_threshold:
                continue
            found.append(_duplicate(a, b, score, dense, overlap, views, language))
    return found


def _duplicate(
    a: _Doc,
    b: _Doc,
    score: float,
    dense: float,
    overlap: float,
    views: dict[int, int],
    language: str,
) -> Detection:
    va, vb = views.get(a.entry.id, 0), views.get(b.entry.id, 0)
    keep, drop = (a, b) if (va, -a.entry.id) >= (vb, -b.entry.id) else (b, a)
    sims = a.vectors @ b.vectors.T
    closest = []
    for flat in np.argsort(-sims, axis=None)[:3]:
        i, j = divmod(int(flat), sims.shape[1])
        similarity = round(float(sims[i, j]), 4)
        closest.append({"a": a.texts[i], "b": b.texts[j], "similarity": similarity})
    first, second = sorted((a.entry.id, b.entry.id))
    ra, rb = a.entry.current_revision_id, b.entry.current_revision_id
    return Detection(
        kind=FlagKind.duplicate,
        key=f"duplicate:{first}:{second}",
        # Readers split between two copies: the smaller audience is the one at risk of
        # reading the weaker one; a pair without traffic still counts for one.
        score=float(max(1, min(va, vb))),
        evidence={
            "pair": [first, second],
            "titles": {
                str(d.entry.id): d.entry.current_revision.question  # type: ignore[union-attr]
                for d in (a, b)
            },
            "slugs": {str(d.entry.id): d.entry.slug for d in (a, b)},
            "views": {str(a.entry.id): va, str(b.entry.id): vb},
            "score": round(score, 4),
            "question_similarity": round(dense, 4),
            "word_overlap": round(overlap, 4),
            "closest_texts": closest,
            "texts": {str(a.entry.id): len(a.texts), str(b.entry.id): len(b.texts)},
            "merge": {"from": drop.entry.id, "into": keep.entry.id},
            "rule": f"duplicate score {score:.3f} (0.8 x question similarity {dense:.3f} + "
            f"0.2 x word overlap {overlap:.3f}) >= threshold",
        },
        weight=len(a.texts) + len(b.texts),
        fingerprint=f"{min(ra or 0, rb or 0)}:{max(ra or 0, rb or 0)}",
        entry_id=drop.entry.id,
        language=language,
        category=drop.entry.category,
    )


# -- content gaps ------------------------------------------------------------------------


@dataclass
class GapText:
    """A distinct text of an abstained post or a failed search."""

    text: str
    language: str
    posts: int = 0
    searches: int = 0
    first_at: datetime | None = None
    last_at: datetime | None = None

    @property
    def total(self) -> int:
        return self.posts + self.searches


def gap_texts(session: Session, *, since: datetime) -> list[GapText]:
    """Texts suggest abstained on and searches without a good result since a time."""
    folded: dict[tuple[str, str], GapText] = {}

    def add(text: str, language: str, n: int, first: datetime, last: datetime, post: bool) -> None:
        key = dedup_key(text)
        if not key:
            return
        g = folded.get((language, key))
        if g is None:
            g = folded[(language, key)] = GapText(text=text, language=language)
        if post:
            g.posts += n
        else:
            g.searches += n
        g.first_at = min(first, g.first_at) if g.first_at else first
        g.last_at = max(last, g.last_at) if g.last_at else last

    for text, language, n, first, last in session.execute(
        select(
            Suggestion.text,
            Suggestion.language,
            func.count(),
            func.min(Suggestion.created_at),
            func.max(Suggestion.created_at),
        )
        .where(Suggestion.abstained.is_(True), Suggestion.created_at >= since)
        .group_by(Suggestion.text, Suggestion.language)
    ):
        add(text, language, int(n), first, last, True)
    for text, language, n, first, last in session.execute(
        select(
            SearchLog.query,
            SearchLog.language,
            func.count(),
            func.min(SearchLog.created_at),
            func.max(SearchLog.created_at),
        )
        .where(SearchLog.good_result.is_(False), SearchLog.created_at >= since)
        .group_by(SearchLog.query, SearchLog.language)
    ):
        add(text, language, int(n), first, last, False)
    rows = sorted(folded.values(), key=lambda g: (-g.total, g.language, g.text))
    return rows[:MAX_GAP_TEXTS]


def _gap_key(language: str, medoid: str) -> str:
    digest = hashlib.blake2b(f"{language}:{dedup_key(medoid)}".encode(), digest_size=6).hexdigest()
    return f"content_gap:{language}:{digest}"


def detect_content_gaps(
    session: Session,
    policy: HealthPolicy,
    encoder: Encoder,
    *,
    now: datetime,
    covered: Coverage | None = None,
) -> list[Detection]:
    """Clusters of unanswered posts and searches (average linkage, as the capture's drafts).

    A cluster keeps the key of an earlier gap flag whose central text is as similar as the
    clustering threshold, so a growing topic stays one flag.
    """
    from kb.capture import average_linkage  # the capture's clustering, shared

    texts = gap_texts(session, since=now - timedelta(days=policy.gap_days))
    by_language: dict[str, list[GapText]] = defaultdict(list)
    for g in texts:
        by_language[g.language].append(g)
    found: list[Detection] = []
    for language, rows in sorted(by_language.items()):
        if sum(g.total for g in rows) < policy.gap_min_count:
            continue
        vectors = np.asarray(encoder.encode([g.text for g in rows]), dtype=np.float64)
        earlier = _earlier_gaps(session, language, encoder)
        taken: set[str] = set()
        for members in average_linkage(vectors, policy.gap_similarity):
            group = [rows[i] for i in members]
            total = sum(g.total for g in group)
            if total < policy.gap_min_count:
                continue
            sub = vectors[members]
            weights = np.array([g.total for g in group], dtype=np.float64)
            medoid_at = int(np.argmax((sub @ sub.T) @ weights))
            medoid = group[medoid_at].text
            answered = _answered_share(group, language, covered) if covered else 0.0
            if answered >= COVERED_SHARE:
                continue  # articles answer most of these questions now
            key = _match_earlier(sub[medoid_at], earlier, policy.gap_similarity, taken)
            key = key or _gap_key(language, medoid)
            taken.add(key)
            gap = _gap(language, key, group, medoid, total, policy)
            gap.evidence["answered_now"] = round(answered, 3)
            found.append(gap)
    return found


def _answered_share(group: Sequence[GapText], language: str, covered: Coverage) -> float:
    """Share of a cluster's posts and searches (by count) that an article answers now.

    Every text is asked again, not only the central one: a confidence model can vouch for
    a few paraphrases of a question no article answers, and one article published since
    should answer most of them.
    """
    checked = sorted(group, key=lambda g: -g.total)[:MAX_COVERAGE_CHECKS]
    total = sum(g.total for g in checked)
    answered = sum(g.total for g in checked if covered(g.text, language) is not None)
    return answered / total if total else 0.0


def _earlier_gaps(
    session: Session, language: str, encoder: Encoder
) -> list[tuple[str, np.ndarray]]:
    flags = list(
        session.scalars(
            select(Flag)
            .where(Flag.kind == FlagKind.content_gap, Flag.language == language)
            .order_by(Flag.id.desc())
            .limit(500)
        )
    )
    keyed: dict[str, str] = {}
    for f in flags:
        medoid = (f.evidence or {}).get("medoid")
        if isinstance(medoid, str) and f.key not in keyed:
            keyed[f.key] = medoid
    if not keyed:
        return []
    vectors = np.asarray(encoder.encode(list(keyed.values())), dtype=np.float64)
    return list(zip(keyed.keys(), vectors, strict=True))


def _match_earlier(
    vector: np.ndarray, earlier: list[tuple[str, np.ndarray]], threshold: float, taken: set[str]
) -> str | None:
    best, best_sim = None, threshold
    for key, other in earlier:
        sim = float(vector @ other)
        if key not in taken and sim >= best_sim:
            best, best_sim = key, sim
    return best


def _gap(
    language: str, key: str, group: list[GapText], medoid: str, total: int, policy: HealthPolicy
) -> Detection:
    group = sorted(group, key=lambda g: (-g.total, g.text))
    firsts = [g.first_at for g in group if g.first_at]
    lasts = [g.last_at for g in group if g.last_at]
    posts = sum(g.posts for g in group)
    searches = sum(g.searches for g in group)
    return Detection(
        kind=FlagKind.content_gap,
        key=key,
        score=float(total),  # customers who asked and got no article
        evidence={
            "language": language,
            "medoid": medoid,
            "posts": posts,
            "searches": searches,
            "total": total,
            "distinct_texts": len(group),
            "examples": [
                {"text": g.text, "posts": g.posts, "searches": g.searches}
                for g in group[:GAP_EXAMPLES]
            ],
            "first_seen": min(firsts).isoformat() if firsts else None,
            "last_seen": max(lasts).isoformat() if lasts else None,
            "days": policy.gap_days,
            "rule": f"{posts} posts without a suggestion and {searches} searches without a "
            f"good result in {policy.gap_days} days (min {policy.gap_min_count}); articles "
            "answer under half of them now",
        },
        weight=total,
        language=language,
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
        session.add(
            Flag(
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
        )
        report.bump(report.created, d.kind)
    for flag in open_flags.values():
        _resolve(flag, by=HEALTH_ACTOR, why=_why_gone(session, flag), now=now)
        report.bump(report.resolved, flag.kind)
    session.flush()
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
