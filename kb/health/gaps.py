"""Content gaps: groups of posts and searches that no article answers."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kb.health.detection import (
    COVERED_SHARE,
    GAP_EXAMPLES,
    MAX_COVERAGE_CHECKS,
    MAX_GAP_TEXTS,
    Coverage,
    Detection,
    Encoder,
)
from kb.health.scores import HealthPolicy
from kb.models import (
    Flag,
    FlagKind,
    SearchLog,
    Suggestion,
)
from kb.text.language import dedup_key

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
    from kb.capture.ingest import average_linkage  # the capture's clustering, shared

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
