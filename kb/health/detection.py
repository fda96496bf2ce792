"""What a recompute finds before it becomes a flag, and the knobs of the detectors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from kb.models import (
    FlagKind,
)

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
# (benchmarks/duplicate_detection.py, docs/health.md).
DUPLICATE_DENSE_WEIGHT = 0.8
DUPLICATE_LEXICAL_WEIGHT = 0.2
MAX_GAP_TEXTS = 2000
# A gap is covered when articles answer at least this share of its posts (by count) now.
COVERED_SHARE = 0.5
MAX_COVERAGE_CHECKS = 30
GAP_EXAMPLES = 8


class Encoder(Protocol):
    """Turns texts into L2-normalised vectors (kb.capture.ingest.QuestionVectors does)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class Tokenize(Protocol):
    """Turns text into index terms (indexer.lexical.tokenizer.Tokenizer does)."""

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
