"""Retrieval evaluation on a data set in the shared format (faqs.jsonl, queries.jsonl)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexer.embedding.encoders import Embedder
from indexer.lexical.tokenizer import Tokenizer
from indexer.retrieval.confidence import ConfidenceModel, features
from indexer.retrieval.hybrid import MODES, EntryDocs, FusionConfig, HybridIndex, Mode
from indexer.store import IndexStore
from kb.indexing import IndexRecipe, entry_docs
from kb.text.cleaning import clean_post
from kb.text.language import detect_language, normalize_text

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


def query_text(text: str, *, clean: bool = True) -> str:
    """A query as searched: cleaned as suggest cleans a post (if that leaves nothing, or
    without `clean`, only normalised)."""
    normal = normalize_text(text)
    return (clean_post(text) or normal) if clean else normal


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
    clean: bool = True,
) -> dict[str, ModeReport]:
    """Run every query in every mode; metrics averaged over queries, latency percentiles.

    With `clean` (the default) each query is read as suggest reads a post (`query_text`).
    """
    reports: dict[str, ModeReport] = {}
    texts = [query_text(q.text, clean=clean) for q in dataset.queries]
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
            top10 = dataclasses.replace(result, hits=result.hits[:10])
            samples.append((features(top10), bool(ranked) and ranked[0] in q.relevant))
            relevant = set(q.relevant)
            rest = [h for h in result.hits if ids[h.entry_id] not in relevant][:10]
            gaps.append(features(dataclasses.replace(result, hits=rest)))
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
    off_topic: list[dict[str, float]] | None = None,
    off_topic_weight: float = 0.25,
    target_precision: float = 0.9,
    l2: float = 1e-3,
) -> ConfidenceModel:
    """Weighted logistic regression (Newton's method) of "top-1 is right" on ranking features.

    `gaps` are rankings of posts whose answer is missing, `off_topic` of posts that are no
    question at all (both always wrong); each weight is that group's share relative to the
    answerable posts, a prior for how often such posts arrive.
    """
    rows = [(f, 1.0 if ok else 0.0, 1.0) for f, ok in samples]
    for group, share in ((gaps, gap_weight), (off_topic, off_topic_weight)):
        if group:
            weight = share * len(samples) / len(group)
            rows += [(f, 0.0, weight) for f in group]
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
    conf = np.array([_conf(fitted, {n: f[n] for n in names}) for f, _ in samples])
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
    z = model.bias + sum(w * f[n] for n, w in model.weights.items())
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


def reliability(
    conf: np.ndarray, right: np.ndarray, bins: int = 10
) -> tuple[list[tuple[float, float, int, float, float]], float]:
    """Reliability table and expected calibration error (ECE).

    Rows: (bin low, bin high, count, mean confidence, share right). A calibrated model has
    mean confidence ≈ share right in every bin; ECE is the count-weighted mean gap.
    """
    rows = []
    gap = 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    for i, (lo, hi) in enumerate(itertools.pairwise(edges)):
        inside = (conf >= lo) & ((conf < hi) if i < bins - 1 else (conf <= hi))
        n = int(inside.sum())
        if n == 0:
            continue
        mean_conf = float(conf[inside].mean())
        share = float(right[inside].mean())
        rows.append((float(lo), float(hi), n, mean_conf, share))
        gap += n * abs(mean_conf - share)
    return rows, gap / max(1, len(conf))


def save_temp_index(index: HybridIndex, data_dir: Path) -> None:
    """Persist the evaluation index under a (temporary) data directory, as the service does."""
    IndexStore(data_dir / "index").save(index, generation=1, last_change_id=0, recipe="eval")


def read_lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines of a text file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


def content_index(
    articles: list[Any], embedder: Embedder, tokenizer: Tokenizer, recipe: IndexRecipe
) -> HybridIndex:
    """An in-memory index of content articles (as the service indexes them)."""
    index = HybridIndex(embedder, tokenizer)
    index.upsert(
        [
            entry_docs(n, a.language, a.question, a.answer, list(a.questions), recipe)
            for n, a in enumerate(articles, 1)
        ]
    )
    return index


def chatter_features(index: HybridIndex, posts: list[str]) -> list[dict[str, float]]:
    """Ranking features of off-topic posts against a content index (each is a wrong answer)."""
    out = []
    for post in posts:
        text = clean_post(post)
        out.append(features(index.search(text, k=10, language=detect_language(text))))
    return out


@dataclass
class Calibration:
    model: ConfidenceModel
    per_set_threshold: dict[str, float]
    chatter_threshold: float
    chatter_fit_abstain: float
    chatter_heldout_abstain: float
    curve: list[tuple[float, float, float]]
    # Per data set: reliability rows and ECE of the fitted model (see `reliability`).
    reliability: dict[str, tuple[list[tuple[float, float, int, float, float]], float]] = field(
        default_factory=dict
    )


def calibrate(
    per_set: dict[str, ModeReport],
    chatter_fit: list[dict[str, float]],
    chatter_heldout: list[dict[str, float]],
    *,
    model_name: str,
    names: tuple[str, ...],
    gap_weight: float = 0.25,
    off_topic_weight: float = 0.25,
    target_precision: float = 0.9,
    target_abstain: float = 0.97,
    vectors: str = "",
) -> Calibration:
    """Fit the confidence model and pick the threshold.

    The threshold is the larger of: the lowest confidence at which the first set's answered
    suggestions are `target_precision` right, and the confidence below which
    `target_abstain` of the off-topic posts fall. `vectors` (the backend and index recipe
    the rankings came from) is recorded in the model's `fitted_on`.
    """
    samples = [x for rep in per_set.values() for x in rep.samples]
    gaps = [g for rep in per_set.values() for g in rep.gaps]
    fitted_on = ", ".join(f"{n} ({len(r.samples)})" for n, r in per_set.items())
    model = fit_confidence(
        samples,
        gaps=gaps,
        gap_weight=gap_weight,
        off_topic=chatter_fit,
        off_topic_weight=off_topic_weight,
        model=model_name,
        fitted_on=f"{fitted_on}; content gaps weighted {gap_weight}, "
        f"{len(chatter_fit)} off-topic posts weighted {off_topic_weight}"
        + (f"; {vectors}" if vectors else ""),
        names=names,
        target_precision=target_precision,
    )
    thresholds = {}
    tables = {}
    for name, rep in per_set.items():
        conf = np.array([confidence_of(model, f) for f, _ in rep.samples])
        right = np.array([ok for _, ok in rep.samples], dtype=bool)
        thresholds[name] = threshold_for_precision(conf, right, target_precision)
        tables[name] = reliability(conf, right)
    chat = np.array([confidence_of(model, f) for f in chatter_fit])
    chat_t = float(np.quantile(chat, target_abstain)) + 1e-4 if len(chat) else 0.0
    first = next(iter(per_set))
    threshold = max(thresholds[first], chat_t)
    model = ConfidenceModel(
        model=model.model,
        weights=model.weights,
        bias=model.bias,
        threshold=round(threshold, 4),
        fitted_on=model.fitted_on,
    )
    held = np.array([confidence_of(model, f) for f in chatter_heldout])
    rep = per_set[first]
    conf = np.array([confidence_of(model, f) for f, _ in rep.samples])
    right = np.array([ok for _, ok in rep.samples], dtype=bool)
    grid = [round(x, 2) for x in np.arange(0.0, 1.0, 0.05)] + [round(threshold, 4)]
    return Calibration(
        model=model,
        per_set_threshold=thresholds,
        chatter_threshold=chat_t,
        chatter_fit_abstain=float((chat < threshold).mean()) if len(chat) else 1.0,
        chatter_heldout_abstain=float((held < threshold).mean()) if len(held) else 1.0,
        curve=precision_coverage(conf, right, sorted(set(grid))),
        reliability=tables,
    )
