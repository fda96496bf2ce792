"""Confidence when a post is answered from another language's articles: fit and check.

    .venv/bin/python benchmarks/cross_language.py

The seed content (faq_content/) has each topic in Japanese and English. Every Japanese
question and phrasing is searched among the English articles only, and every English one
among the Japanese articles, as suggest does when a post's language has no articles. A
search is right when its first hit is the same topic (translation group); each search also
counts once with that topic left out (a content gap: the first hit is then wrong). The script fits
p(right) = sigmoid(a * logit(c) + b) on the same-language confidence c of those searches
(kb.suggest.service.CROSS_LANGUAGE) and prints precision and coverage at the abstention
threshold, same-language confidence versus the cross-language one.
"""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from indexer.embedding.encoders import load_embedder  # noqa: E402
from indexer.lexical.tokenizer import default_tokenizer  # noqa: E402
from indexer.retrieval.confidence import default_confidence_model  # noqa: E402
from indexer.retrieval.hybrid import HybridIndex  # noqa: E402
from kb.faqs.content import read_content_dir  # noqa: E402
from kb.indexing import IndexRecipe, entry_docs  # noqa: E402
from kb.suggest.service import CROSS_LANGUAGE, cross_language_confidence  # noqa: E402


def _logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def main() -> None:
    """Search across languages, fit, print the figures."""
    settings = Settings(_env_file=None)
    embedder = load_embedder(settings.embedding_model, settings.models_dir)
    calibration = default_confidence_model(embedder.name)
    articles = read_content_dir(ROOT / "faq_content")
    index = HybridIndex(embedder, default_tokenizer())
    recipe = IndexRecipe()
    group = {}
    docs = []
    for n, a in enumerate(articles, 1):
        group[n] = a.translation_group or a.key
        docs.append(entry_docs(n, a.language, a.question, a.answer, [], recipe))
    index.upsert(docs)
    samples: list[tuple[float, bool]] = []
    for a in articles:
        other = "en" if a.language == "ja" else "ja"
        for text in [a.question, *a.questions]:
            result = index.search(text, k=5, language=other)
            if not result.hits:
                continue
            topic = a.translation_group or a.key
            right = group[result.hits[0].entry_id] == topic
            samples.append((calibration.confidence(result), right))
            # The same post when the other language has no article on its topic (a content
            # gap): whatever comes first is wrong.
            gap = [h for h in result.hits if group[h.entry_id] != topic]
            if gap:
                samples.append((calibration.confidence(replace(result, hits=gap)), False))
    x = np.array([_logit(c) for c, _ in samples])
    y = np.array([1.0 if r else 0.0 for _, r in samples])
    a_, b_ = 1.0, 0.0
    for _ in range(5000):  # plain gradient descent on the log loss: two parameters
        p = 1 / (1 + np.exp(-(a_ * x + b_)))
        a_ -= 0.05 * float(np.mean((p - y) * x))
        b_ -= 0.05 * float(np.mean(p - y))
    print(f"cross-language searches (with their gap twins): {len(samples)}")
    print(f"first hit right: {y.mean():.3f}")
    print(f"fitted: a={a_:.3f} b={b_:.3f} (shipped: a={CROSS_LANGUAGE[0]} b={CROSS_LANGUAGE[1]})")
    t = calibration.threshold
    for name, conf in (
        ("same-language confidence", [c for c, _ in samples]),
        ("cross-language confidence", [cross_language_confidence(c) for c, _ in samples]),
    ):
        kept = [r for c, r in zip(conf, (r for _, r in samples), strict=True) if c >= t]
        precision = sum(kept) / len(kept) if kept else float("nan")
        print(
            f"{name}: threshold {t:.2f}, answered {len(kept)}/{len(samples)}, "
            f"precision {precision:.3f}"
        )


if __name__ == "__main__":
    main()
