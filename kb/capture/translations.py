"""Translation proposals: when a draft is published, the article (or open draft) of the same
topic in another language, for the editor to link as its translation with one click.

Nothing is linked here: the proposal only names the article and the similarity; linking
goes through `kb.faqs.lifecycle.link_translation` when the editor accepts.

**Similarity.** A topic's vector is the sum of its question's and its answer's first
paragraph's passage vectors (the multilingual model), normalised: the very texts the index
embeds for every article, so an article's vectors come from the passage cache and only the
new text is embedded. Raw cosines of these vectors mostly sit between 0.85 and 0.93 on the
seed content (one domain, one model), true translations and unrelated topics overlapping;
subtracting each language's mean vector (over its published articles) before the cosine
removes what every support article of that language shares, and the true pair stands out.
`TRANSLATION_SIMILARITY` is the centred cosine above which the nearest is proposed; with
fewer than `MIN_CENTRED` published articles in a language there is no stable mean, and the
raw cosine with `RAW_TRANSLATION_SIMILARITY` is used. Both were measured by
`measure_translation_pairs` on the 53 ja/en pairs of `faq_content/` (the numbers are in
docs/capture.md; `tests/capture/test_translation_proposals.py` prints them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from indexer.embedding.encoders import Embedder
from kb.indexing import first_passage
from kb.models import DraftStatus, EntryStatus, FaqDraft, FaqEntry, FaqRevision

# Centred cosine above which the nearest article in another language is proposed: on the
# seed pairs, recall 0.925 with every proposal right while the translation exists, and a
# wrong proposal for 16 % of articles whose translation is missing (0.45: recall 0.887, 9.4 %
# wrong). Recall wins: an editor confirms every proposal, and a missed one leaves the pair
# unlinked.
TRANSLATION_SIMILARITY = 0.40
# Raw cosine used when a language has too few articles to centre: on the seed pairs, recall
# 0.49, every proposal right, 6.6 % wrong when the translation is missing.
RAW_TRANSLATION_SIMILARITY = 0.92
MIN_CENTRED = 20


def topic_vectors(embedder: Embedder, texts: Sequence[tuple[str, str]]) -> np.ndarray:
    """One vector per (question, answer): the question's and the answer's first paragraph's
    passage vectors (as the index embeds them) summed and normalised."""
    if not texts:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    questions = embedder.encode_passages([q.strip() for q, _ in texts])
    passages = embedder.encode_passages([first_passage(a) or q.strip() for q, a in texts])
    return _normalised(np.asarray(questions) + np.asarray(passages))


@dataclass(frozen=True)
class TranslationProposal:
    """An article or open draft of the same topic in another language."""

    kind: str  # "article" or "draft"
    id: int
    language: str
    similarity: float
    slug: str | None = None
    translation_group: str | None = None
    question: str = ""


@dataclass(frozen=True)
class _Doc:
    kind: str
    id: int
    language: str
    text: tuple[str, str]  # question, answer
    slug: str | None
    group: str | None
    question: str


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def language_means(vectors: np.ndarray, languages: Sequence[str]) -> dict[str, np.ndarray]:
    """Each language's mean vector, for languages with at least `MIN_CENTRED` vectors."""
    out: dict[str, np.ndarray] = {}
    for language in set(languages):
        rows = [i for i, lang in enumerate(languages) if lang == language]
        if len(rows) >= MIN_CENTRED:
            out[language] = vectors[rows].mean(axis=0)
    return out


def similarities(
    own: np.ndarray,
    own_language: str,
    others: np.ndarray,
    other_languages: Sequence[str],
    means: dict[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """Similarity of `own` to each row of `others`, and whether each passes its threshold.

    Centred cosine where both languages have a mean, raw cosine (stricter threshold) where not.
    """
    sims = np.empty(len(other_languages), dtype=np.float64)
    passes = np.zeros(len(other_languages), dtype=bool)
    for i, language in enumerate(other_languages):
        if own_language in means and language in means:
            a = _normalised((own - means[own_language])[None, :])[0]
            b = _normalised((others[i] - means[language])[None, :])[0]
            sims[i] = float(a @ b)
            passes[i] = sims[i] >= TRANSLATION_SIMILARITY
        else:
            sims[i] = float(own @ others[i])
            passes[i] = sims[i] >= RAW_TRANSLATION_SIMILARITY
    return sims, passes


def propose_translations(
    session: Session,
    embedder: Embedder,
    *,
    question: str,
    answer: str,
    language: str,
    entry_id: int | None = None,
    draft_id: int | None = None,
    limit: int = 3,
) -> list[TranslationProposal]:
    """Published articles and open drafts in other languages about the same topic, best
    first, at most one per language and kind; never the entry itself, an article already in
    its translation group, nor one whose group already has an article in `language` (it
    could not be linked)."""
    own_group = None
    if entry_id is not None:
        own_group = session.scalar(
            select(FaqEntry.translation_group).where(FaqEntry.id == entry_id)
        )
    rows = session.execute(
        select(
            FaqEntry.id,
            FaqEntry.slug,
            FaqEntry.language,
            FaqEntry.translation_group,
            FaqRevision.question,
            FaqRevision.answer,
        )
        .join(FaqRevision, FaqRevision.id == FaqEntry.current_revision_id)
        .where(FaqEntry.status == EntryStatus.published)
        .order_by(FaqEntry.id)
    ).all()
    groups_with_language = {r.translation_group for r in rows if r.language == language}
    articles = [
        _Doc(
            "article",
            r.id,
            r.language,
            (r.question, r.answer),
            r.slug,
            r.translation_group,
            r.question,
        )
        for r in rows
        if r.id != entry_id
    ]
    drafts = [
        _Doc(
            "draft",
            d.id,
            d.language,
            (d.question, d.answer or ""),
            None,
            None,
            d.question,
        )
        for d in session.scalars(
            select(FaqDraft)
            .where(FaqDraft.status == DraftStatus.open, FaqDraft.language != language)
            .order_by(FaqDraft.id)
        )
        if d.id != draft_id and d.question.strip()
    ]

    def linkable(doc: _Doc) -> bool:
        if doc.language == language:
            return False
        if doc.kind == "draft":
            return True
        in_own_group = own_group is not None and doc.group == own_group
        return not in_own_group and not (
            doc.group is not None and doc.group in groups_with_language
        )

    if not any(linkable(d) for d in articles + drafts):
        return []  # nothing could be linked: no need to embed anything
    vectors = topic_vectors(
        embedder, [(question, answer)] + [d.text for d in articles] + [d.text for d in drafts]
    )
    own, rest = vectors[0], vectors[1:]
    # The means: every published article of each language, this one included.
    mean_rows = [own] + [rest[i] for i in range(len(articles))]
    means = language_means(np.stack(mean_rows), [language] + [a.language for a in articles])
    docs = articles + drafts
    sims, passes = similarities(own, language, rest, [d.language for d in docs], means)
    best: dict[tuple[str, str], TranslationProposal] = {}
    for i in np.argsort(-sims):
        doc = docs[int(i)]
        if not passes[int(i)] or not linkable(doc):
            continue
        best.setdefault(
            (doc.kind, doc.language),
            TranslationProposal(
                kind=doc.kind,
                id=doc.id,
                language=doc.language,
                similarity=round(float(sims[int(i)]), 4),
                slug=doc.slug,
                translation_group=doc.group,
                question=doc.question,
            ),
        )
    return sorted(best.values(), key=lambda p: -p.similarity)[:limit]


@dataclass(frozen=True)
class PairMeasure:
    """How a threshold does on known translation pairs (`measure_translation_pairs`)."""

    threshold: float
    centred: bool
    recall: float  # articles whose translation is proposed
    precision: float  # proposals that are the translation, while it exists
    false_when_missing: float  # articles proposed a wrong one when their translation is gone


def measure_translation_pairs(
    embedder: Embedder,
    pairs: Sequence[tuple[tuple[str, str], tuple[str, str]]],
    thresholds: Sequence[float],
    *,
    centred: bool = True,
) -> list[PairMeasure]:
    """Precision and recall of proposing the nearest article of the other language above each
    threshold, on (question, answer) pairs known to be translations, both directions; and
    how often a wrong article is proposed once the true translation is removed."""
    left = topic_vectors(embedder, [left for left, _ in pairs])
    right = topic_vectors(embedder, [right for _, right in pairs])
    if centred:
        left, right = left - left.mean(axis=0), right - right.mean(axis=0)
    sims = _normalised(left) @ _normalised(right).T
    n = len(pairs)
    present: list[tuple[bool, float]] = []
    missing: list[float] = []
    for matrix in (sims, sims.T):
        for i in range(n):
            j = int(np.argmax(matrix[i]))
            present.append((j == i, float(matrix[i, j])))
            others = np.delete(matrix[i], i)
            missing.append(float(others.max()))
    out = []
    for t in thresholds:
        proposed = [ok for ok, s in present if s >= t]
        right_ones = sum(proposed)
        out.append(
            PairMeasure(
                threshold=t,
                centred=centred,
                recall=round(right_ones / len(present), 3),
                precision=round(right_ones / len(proposed), 3) if proposed else 1.0,
                false_when_missing=round(sum(s >= t for s in missing) / len(missing), 3),
            )
        )
    return out
