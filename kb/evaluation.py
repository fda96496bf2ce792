"""Retrieval evaluation on a data set in the shared format (faqs.jsonl, queries.jsonl)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.confidence import ConfidenceModel, features
from indexer.embedding import Embedder
from indexer.search import MODES, EntryDocs, FusionConfig, HybridIndex, Mode, SearchResult
from indexer.store import IndexStore
from indexer.tokenizer import Tokenizer
from kb.indexing import IndexRecipe, entry_docs
from kb.text import detect_language, normalize_text

KS = (1, 5, 10)


@dataclass
class EvalFaq:
    id: str
    question: str
    answer: str


@dataclass
class EvalQuery:
    id: str
    text: str
    relevant: list[str]
    grades: dict[str, float] = field(default_factory=dict)


@dataclass
class Dataset:
    name: str
    faqs: list[EvalFaq]
    queries: list[EvalQuery]


class DatasetError(ValueError):
    """The data set folder is missing a file or has a malformed line."""


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    if not path.exists():
        raise DatasetError(f"{path} not found")
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield n, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc


def load_dataset(directory: Path) -> Dataset:
    """Read `faqs.jsonl` and `queries.jsonl` from a data set folder."""
    faqs, queries = [], []
    try:
        for _, row in _jsonl(directory / "faqs.jsonl"):
            faqs.append(EvalFaq(str(row["id"]), row["question"], row.get("answer") or ""))
        for _, row in _jsonl(directory / "queries.jsonl"):
            grades = {str(k): float(v) for k, v in (row.get("grades") or {}).items()}
            queries.append(
                EvalQuery(str(row["id"]), row["text"], [str(r) for r in row["relevant"]], grades)
            )
    except KeyError as exc:
        raise DatasetError(f"{directory}: a line lacks the field {exc}") from exc
    if not faqs or not queries:
        raise DatasetError(f"{directory}: no FAQs or no queries")
    return Dataset(directory.name, faqs, queries)


def build_index(
    dataset: Dataset,
    embedder: Embedder,
    tokenizer: Tokenizer,
    *,
    recipe: IndexRecipe | None = None,
    fusion: FusionConfig | None = None,
    extra_phrasings: dict[str, list[str]] | None = None,
) -> tuple[HybridIndex, dict[int, str]]:
    """Index the data set's FAQs; return the index and entry-number → FAQ id."""
    recipe = recipe or IndexRecipe()
    ids = {n: faq.id for n, faq in enumerate(dataset.faqs, 1)}
    docs: list[EntryDocs] = []
    for n, faq in enumerate(dataset.faqs, 1):
        question = normalize_text(faq.question)
        phr = (extra_phrasings or {}).get(faq.id, [])
        docs.append(entry_docs(n, detect_language(question), question, faq.answer, phr, recipe))
    index = HybridIndex(embedder, tokenizer, fusion)
    index.upsert(docs)
    return index, ids


def _dcg(gains: list[float]) -> float:
    return sum(g / math.log2(i + 2) for i, g in enumerate(gains))


def score_ranking(ranked: list[str], query: EvalQuery) -> dict[str, float]:
    """Recall@k, MRR@10 and nDCG@10 (graded when the query carries grades)."""
    relevant = set(query.relevant)
    out = {f"recall@{k}": len(relevant & set(ranked[:k])) / len(relevant) for k in KS}
    rr = next((1.0 / (i + 1) for i, d in enumerate(ranked[:10]) if d in relevant), 0.0)
    out["mrr@10"] = rr

    def gain(d: str) -> float:
        return query.grades.get(d, 1.0) if d in relevant else 0.0

    ideal = sorted((gain(d) for d in relevant), reverse=True)[:10]
    out["ndcg@10"] = _dcg([gain(d) for d in ranked[:10]]) / _dcg(ideal) if ideal else 0.0
    return out


@dataclass
class ModeReport:
    metrics: dict[str, float]
    # Per query: (features of the ranking, whether its first hit is relevant).
    samples: list[tuple[dict[str, float], bool]]
    # Per query: features of the ranking once its relevant entries are left out, i.e. the
    # same post when the FAQ has no answer for it (a content gap): the top hit is wrong.
    gaps: list[dict[str, float]] = field(default_factory=list)


def evaluate(
    dataset: Dataset,
    index: HybridIndex,
    ids: dict[int, str],
    *,
    modes: tuple[Mode, ...] = MODES,
    progress: Callable[[int], None] | None = None,
) -> dict[str, ModeReport]:
    """Run every query in every mode; metrics averaged over queries, latency percentiles."""
    reports: dict[str, ModeReport] = {}
    texts = [normalize_text(q.text) for q in dataset.queries]
    langs = [detect_language(t) for t in texts]
    # Each query is embedded once, alone (as /v1/suggest does), and the encode time is
    # added to the latency of every mode that uses the vector.
    vectors: list[Any] = [None] * len(texts)
    encode_ms = [0.0] * len(texts)
    if any(m != "lexical" for m in modes):
        for i, text in enumerate(texts):
            started = time.perf_counter()
            vectors[i] = index.embedder.encode_queries([text])[0]
            encode_ms[i] = (time.perf_counter() - started) * 1000
            if progress:
                progress(1)
    for mode in modes:
        totals: dict[str, float] = {}
        latencies: list[float] = []
        samples: list[tuple[dict[str, float], bool]] = []
        gaps: list[dict[str, float]] = []
        for i, q in enumerate(dataset.queries):
            started = time.perf_counter()
            result = index.search(
                texts[i],
                k=10 + len(q.relevant),
                language=langs[i],
                mode=mode,
                query_vector=vectors[i] if mode != "lexical" else None,
            )
            elapsed = (time.perf_counter() - started) * 1000
            latencies.append(elapsed + (encode_ms[i] if mode != "lexical" else 0.0))
            ranked = [ids[h.entry_id] for h in result.hits]
            for name, value in score_ranking(ranked[:10], q).items():
                totals[name] = totals.get(name, 0.0) + value
            top10 = SearchResult(result.hits[:10], result.mode, result.query_terms)
            samples.append((features(top10), bool(ranked) and ranked[0] in q.relevant))
            relevant = set(q.relevant)
            rest = [h for h in result.hits if ids[h.entry_id] not in relevant][:10]
            gaps.append(features(SearchResult(rest, result.mode, result.query_terms)))
            if progress:
                progress(1)
        n = len(dataset.queries)
        metrics = {name: value / n for name, value in totals.items()}
        metrics["p50_ms"] = float(np.percentile(latencies, 50))
        metrics["p95_ms"] = float(np.percentile(latencies, 95))
        reports[mode] = ModeReport(metrics, samples, gaps)
    return reports


def fit_confidence(
    samples: list[tuple[dict[str, float], bool]],
    *,
    model: str,
    fitted_on: str,
    names: tuple[str, ...],
    gaps: list[dict[str, float]] | None = None,
    gap_weight: float = 0.25,
    target_precision: float = 0.9,
    l2: float = 1e-3,
) -> ConfidenceModel:
    """Weighted logistic regression (Newton's method) of "top-1 is right" on ranking features.

    `gaps` are rankings of posts whose answer is missing (always wrong); `gap_weight` is
    their share relative to answerable posts, a prior for how often posts hit a gap.
    """
    rows = [(f, 1.0 if ok else 0.0, 1.0) for f, ok in samples]
    if gaps:
        weight = gap_weight * len(samples) / len(gaps)
        rows += [(f, 0.0, weight) for f in gaps]
    x = np.array([[f[n] for n in names] for f, _, _ in rows], dtype=np.float64)
    y = np.array([label for _, label, _ in rows])
    sw = np.array([w for _, _, w in rows])
    x1 = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(x1.shape[1])
    for _ in range(100):
        p = 1 / (1 + np.exp(-np.clip(x1 @ w, -50, 50)))
        grad = x1.T @ (sw * (p - y)) + l2 * np.r_[w[:-1], 0]
        hess = (x1.T * (sw * p * (1 - p))) @ x1 + l2 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    fitted = ConfidenceModel(
        model=model,
        weights={n: round(float(v), 4) for n, v in zip(names, w[:-1], strict=True)},
        bias=round(float(w[-1]), 4),
        fitted_on=fitted_on,
    )
    conf = np.array([_conf(fitted, f) for f, _ in samples])
    right = np.array([ok for _, ok in samples], dtype=bool)
    threshold = threshold_for_precision(conf, right, target_precision)
    return ConfidenceModel(
        model=fitted.model,
        weights=fitted.weights,
        bias=fitted.bias,
        threshold=round(threshold, 4),
        fitted_on=fitted_on,
    )


def _conf(model: ConfidenceModel, f: dict[str, float]) -> float:
    z = model.bias + sum(model.weights.get(n, 0.0) * f[n] for n in f)
    return 1 / (1 + math.exp(-max(-50.0, min(50.0, z))))


def confidence_of(model: ConfidenceModel, f: dict[str, float]) -> float:
    """The model's confidence for precomputed features."""
    return _conf(model, f)


def threshold_for_precision(conf: np.ndarray, right: np.ndarray, target: float) -> float:
    """The lowest threshold whose answered share is at least `target` precise."""
    order = np.argsort(-conf)
    hits = np.cumsum(right[order])
    precision = hits / np.arange(1, len(order) + 1)
    ok = np.nonzero(precision >= target)[0]
    if len(ok) == 0:
        return 1.0
    return float(conf[order][ok[-1]])


def precision_coverage(
    conf: np.ndarray, right: np.ndarray, thresholds: Iterable[float]
) -> list[tuple[float, float, float]]:
    """(threshold, coverage, precision of answered) for each threshold."""
    rows = []
    for t in thresholds:
        answered = conf >= t
        cov = float(answered.mean())
        prec = float(right[answered].mean()) if answered.any() else float("nan")
        rows.append((t, cov, prec))
    return rows


def save_temp_index(index: HybridIndex, data_dir: Path) -> None:
    """Persist the evaluation index under a (temporary) data directory, as the service does."""
    IndexStore(data_dir / "index").save(index, generation=1, last_change_id=0, recipe="eval")
