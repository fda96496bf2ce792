"""Duplicate articles: pairs whose questions mean the same, by dense and lexical similarity."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from kb.faqs import entries as faqs
from kb.health.detection import (
    DUPLICATE_CANDIDATES,
    DUPLICATE_DENSE_WEIGHT,
    DUPLICATE_LEXICAL_WEIGHT,
    MAX_TEXTS_PER_ENTRY,
    Detection,
    Encoder,
    Tokenize,
)
from kb.health.scores import HealthPolicy
from kb.models import (
    FaqEntry,
    FlagKind,
)
from kb.text.language import dedup_key

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
