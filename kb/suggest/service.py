"""Suggest the FAQ that answers a post, with a confidence, or abstain."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Table
from sqlalchemy.orm import Session

from indexer.retrieval.confidence import ConfidenceModel
from kb.errors import InvalidInput
from kb.faqs.entries import published_heads
from kb.indexing import IndexManager
from kb.models import Suggestion, TriageAdvice
from kb.text.language import CONTENT_LANGUAGES, clean_post, detect_language
from kb.text.personal_data import mask_personal_data


@dataclass(frozen=True)
class SuggestPolicy:
    """Limits and the abstention threshold (from settings)."""

    max_chars: int = 5000
    max_k: int = 50
    default_k: int = 5
    threshold: float = 0.5
    base_url: str = ""


@dataclass
class Candidate:
    faq_id: int
    slug: str
    title: str
    url: str
    score: float
    language: str
    category: str
    needs_account: bool = False


@dataclass
class SuggestOutcome:
    """The answer to one post."""

    candidates: list[Candidate]
    confidence: float
    abstained: bool
    language: str
    suggestion_id: int | None = None
    latency_ms: float = 0.0
    best: Candidate | None = field(default=None)
    query: str = ""  # the post as searched (cleaned), what a recorded suggestion stores
    best_answer: str | None = None  # the best article's current answer, for the reply
    # The articles are in another language than the post (none exist in the post's).
    cross_language: bool = False


# p(right) = sigmoid(a * logit(c) + b) for a post answered from another language's articles,
# c being the confidence the same ranking would get between texts of one language. Fitted
# (maximum likelihood) by benchmarks/cross_language.py on the seed content: ja questions and
# phrasings against the en articles and back, each also with its topic left out (a content
# gap); the figures are in docs/replies.md ("Posts in other languages").
CROSS_LANGUAGE = (0.638, 1.237)
# A calibrated probability is not a licence to guess: across languages a post is answered
# only from this confidence, the lowest at which those searches kept precision >= 0.95.
CROSS_LANGUAGE_MIN = 0.84


def cross_language_confidence(confidence: float) -> float:
    """The confidence of a ranking of another language's articles (see CROSS_LANGUAGE)."""
    c = min(max(confidence, 1e-6), 1 - 1e-6)
    a, b = CROSS_LANGUAGE
    z = a * math.log(c / (1 - c)) + b
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


def validate_post(text: str, lang: str | None, k: int | None, policy: SuggestPolicy) -> int:
    """Check a suggest request; return the effective k. Raises InvalidInput."""
    if not text or not text.strip():
        raise InvalidInput("text must not be empty")
    if len(text) > policy.max_chars:
        raise InvalidInput(f"text is longer than {policy.max_chars} characters")
    if lang is not None and lang not in CONTENT_LANGUAGES:
        raise InvalidInput(f"lang must be one of {', '.join(CONTENT_LANGUAGES)}")
    k = policy.default_k if k is None else k
    if not 1 <= k <= policy.max_k:
        raise InvalidInput(f"k must be between 1 and {policy.max_k}")
    return k


def article_url(base_url: str, slug: str) -> str:
    """The public URL of an article."""
    return f"{base_url.rstrip('/')}/faq/{slug}"


def suggest(
    session: Session,
    index: IndexManager,
    calibration: ConfidenceModel,
    policy: SuggestPolicy,
    *,
    text: str,
    lang: str | None = None,
    k: int | None = None,
    channel: str | None = None,
    api_key_id: int | None = None,
    record: bool = True,
) -> SuggestOutcome:
    """Rank FAQs for a post in its language, decide whether to abstain, and record it."""
    started = time.perf_counter()
    k = validate_post(text, lang, k, policy)
    # Mentions, links and emoji say nothing about the question (and a brand handle would
    # pull every article that names the brand).
    query = clean_post(text) or text.strip()
    language = lang or detect_language(query)
    result = index.search(query, k=k, language=language)
    cross_language = False
    if not result.hits:
        # No article in the post's language: the best of the others, with a confidence
        # calibrated for answers across languages. The post's vector is the same: the
        # model runs once.
        result = index.search(query, k=k, language=None, query_vector=result.query_vector)
        cross_language = bool(result.hits)
    confidence = calibration.confidence(result)
    if cross_language:
        confidence = cross_language_confidence(confidence)
    # The database is the truth: a hit whose entry was unpublished since is dropped.
    heads = published_heads(session, [h.entry_id for h in result.hits])
    candidates = []
    for hit in result.hits:
        head = heads.get(hit.entry_id)
        if head is None:
            continue
        candidates.append(
            Candidate(
                faq_id=head.id,
                slug=head.slug,
                title=head.question,
                url=article_url(policy.base_url, head.slug),
                score=round(hit.score, 6),
                language=head.language,
                category=head.category,
                needs_account=head.needs_account,
            )
        )
    if candidates and candidates[0].faq_id != (result.hits[0].entry_id if result.hits else None):
        confidence = 0.0  # the ranked winner vanished: do not vouch for the runner-up
    threshold = max(policy.threshold, CROSS_LANGUAGE_MIN) if cross_language else policy.threshold
    abstained = not candidates or confidence < threshold
    outcome = SuggestOutcome(
        candidates=candidates,
        confidence=round(confidence, 4),
        abstained=abstained,
        language=language,
        cross_language=cross_language,
        best=None if abstained else candidates[0],
        best_answer=None if abstained else heads[candidates[0].faq_id].answer,
    )
    outcome.latency_ms = round((time.perf_counter() - started) * 1000, 2)
    outcome.query = query
    if record:
        record_suggestion(session, outcome, channel=channel, api_key_id=api_key_id)
    return outcome


# On the table, not the mapped class: an ORM-enabled insert goes through the bulk path.
_INSERT_SUGGESTION = cast(Table, Suggestion.__table__).insert()


def record_suggestion(
    session: Session,
    outcome: SuggestOutcome,
    *,
    channel: str | None = None,
    api_key_id: int | None = None,
    triage: TriageAdvice | None = None,
    reply_text: str | None = None,
    dm_handoff: bool | None = None,
) -> int:
    """Store a suggestion (one INSERT); set and return its id.

    Callers write it last, just before they commit: on SQLite the INSERT takes the database's
    write lock, and everything between it and the commit holds every other writer back.
    """
    # A Core INSERT: the unit of work's bookkeeping for one new row cost more than the row
    # (docs/scale.md, "Little Python around the model").
    result = cast(
        CursorResult[Any],
        session.execute(
            _INSERT_SUGGESTION,
            {
                # Searched unmasked (placeholders would be search terms), stored masked;
                # PostgreSQL text cannot hold NUL.
                "text": mask_personal_data(outcome.query).replace("\x00", ""),
                "language": outcome.language,
                "channel": channel,
                "candidates": [{"faq_id": c.faq_id, "score": c.score} for c in outcome.candidates],
                "best_faq_id": outcome.best.faq_id if outcome.best else None,
                "confidence": outcome.confidence,
                "abstained": outcome.abstained,
                "latency_ms": outcome.latency_ms,
                "api_key_id": api_key_id,
                "triage": triage,
                "reply_text": reply_text,
                "dm_handoff": dm_handoff,
            },
        ),
    )
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every supported database reports the new id
        raise RuntimeError("the database did not report the new suggestion's id")
    suggestion_id = int(key[0])
    outcome.suggestion_id = suggestion_id
    return suggestion_id
