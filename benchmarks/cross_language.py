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
from scipy.optimize import minimize

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from indexer.embedding.encoders import load_embedder  # noqa: E402
from indexer.lexical.tokenizer import default_tokenizer  # noqa: E402
from indexer.retrieval.confidence import default_confidence_model  # noqa: E402
from indexer.retrieval.hybrid import HybridIndex  # noqa: E402
from kb.faqs.content import read_content_dir  # noqa: E402
from kb.indexing import IndexRecipe, entry_docs  # noqa: E402
from kb.suggest.service import (  # noqa: E402
    CROSS_LANGUAGE,
    CROSS_LANGUAGE_MIN,
    cross_language_confidence,
)


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
    a_, b_ = fit_logistic(x, y)
    print(f"cross-language searches (with their gap twins): {len(samples)}")
    print(f"first hit right: {y.mean():.3f}")
    print(f"fitted: a={a_:.3f} b={b_:.3f} (shipped: a={CROSS_LANGUAGE[0]} b={CROSS_LANGUAGE[1]})")
    t = calibration.threshold
    fitted = [1 / (1 + math.exp(-(a_ * _logit(c) + b_))) for c, _ in samples]
    for name, conf in (
        ("same-language confidence", [c for c, _ in samples]),
        ("shipped cross-language confidence", [cross_language_confidence(c) for c, _ in samples]),
        ("fitted cross-language confidence", fitted),
    ):
        report(name, conf, [r for _, r in samples], t)
    report(
        f"shipped, answering from {CROSS_LANGUAGE_MIN}",
        [cross_language_confidence(c) for c, _ in samples],
        [r for _, r in samples],
        max(t, CROSS_LANGUAGE_MIN),
    )
    # Calibration (mean predicted against observed, in bins) of the shipped and fitted curves.
    for name, curve in (
        ("shipped", np.array([cross_language_confidence(c) for c, _ in samples])),
        ("fitted", np.array(fitted)),
    ):
        for lo, hi in ((0.0, 0.1), (0.1, 0.29), (0.29, 0.6), (0.6, 0.84), (0.84, 1.01)):
            sel = (curve >= lo) & (curve < hi)
            if sel.any():
                print(
                    f"  {name} {lo:.2f}-{min(hi, 1):.2f}: {int(sel.sum())} searches, "
                    f"predicted {curve[sel].mean():.3f}, right {y[sel].mean():.3f}"
                )
    # The lowest fitted confidence from which answering keeps precision >= 0.95.
    order = sorted(zip(fitted, (r for _, r in samples), strict=True), reverse=True)
    right = floor = 0
    for n, (_c, r) in enumerate(order, 1):
        right += r
        if right / n >= 0.95:
            floor = n
    if floor:
        print(
            f"precision >= 0.95 down to fitted confidence {order[floor - 1][0]:.3f} "
            f"({floor}/{len(order)} answered)"
        )


def fit_logistic(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """p(right) = sigmoid(a*x + b) by maximum likelihood (scipy's BFGS on the log loss)."""

    def loss(params: np.ndarray) -> float:
        z = params[0] * x + params[1]
        return float(np.mean(np.logaddexp(0.0, z) - y * z))

    found = minimize(loss, np.array([1.0, 0.0]), method="BFGS")
    return float(found.x[0]), float(found.x[1])


def report(name: str, conf: list[float], right: list[bool], t: float) -> None:
    kept = [r for c, r in zip(conf, right, strict=True) if c >= t]
    precision = sum(kept) / len(kept) if kept else float("nan")
    print(
        f"{name}: threshold {t:.2f}, answered {len(kept)}/{len(right)}, precision {precision:.3f}"
    )


if __name__ == "__main__":
    main()
