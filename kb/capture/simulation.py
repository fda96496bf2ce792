"""The capture loop measured on StackFAQ (docs/capture.md).

StackFAQ has 125 topics, each with a question, 1–24 answers and ten user paraphrases in two
blocks of five. The simulation:

1. Every other topic (sorted by id) is published as FAQ entries, one per answer as in
   `faqloop eval`; the other topics are content gaps.
2. Block-0 paraphrases become resolved threads: the paraphrase is the customer's post, one
   of the topic's answers the agent's reply; resolved times are spread over four weeks.
   They are ingested through `kb.capture.ingest.ingest_threads` on a real database and index:
   covered threads add phrasings, the rest are clustered into drafts.
3. Block-1 paraphrases are held-out queries, evaluated (MRR@10, recall) before the capture,
   after its phrasings were learnt, and after an editor published every open draft as is.
   An entry published from a draft is relevant to a query when most of the draft's threads
   came from the query's topic.

Clustering is scored on the threads that became drafts: number of drafts against the number
of their true topics, purity (share of threads in their draft's majority topic), inverse
purity (share of threads in their topic's largest draft) and the adjusted Rand index.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select

from indexer.embedding.encoders import Embedder
from indexer.lexical.tokenizer import Tokenizer
from indexer.retrieval.confidence import ConfidenceModel
from kb.capture.drafts import publish_draft
from kb.capture.ingest import Capture, CapturePolicy, QuestionVectors, ingest_threads
from kb.capture.thread_input import PostIn, ThreadIn
from kb.db import make_engine, make_session_factory, migrate, session_scope
from kb.faqs.entries import create_entry
from kb.indexing import IndexManager
from kb.models import DraftStatus, FaqDraft, PostRole, Thread, ThreadStatus
from kb.suggest.evaluation import DatasetError, EvalQuery, score_ranking
from kb.text.language import normalize_text

START = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


@dataclass
class Topic:
    id: str
    question: str
    answers: list[tuple[str, str]]  # (faq id, answer)
    paraphrases: dict[int, list[tuple[str, str]]] = field(
        default_factory=dict
    )  # block → (id, text)


def load_topics(directory: Path) -> list[Topic]:
    """StackFAQ's topics with their answers and paraphrase blocks (needs query_meta.jsonl)."""

    def rows(name: str) -> list[dict[str, Any]]:
        path = directory / name
        if not path.exists():
            raise DatasetError(f"{path} not found (the simulation needs query_meta.jsonl)")
        out = []
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DatasetError(f"{path}:{n}: invalid JSON ({exc.msg})") from exc
        return out

    try:
        meta = {m["id"]: (str(m["thread"]), int(m["block"])) for m in rows("query_meta.jsonl")}
        topics: dict[str, Topic] = {}
        for faq in rows("faqs.jsonl"):
            topic_id = str(faq["id"])[:4]
            topic = topics.setdefault(topic_id, Topic(topic_id, faq["question"], []))
            topic.answers.append((str(faq["id"]), faq.get("answer") or ""))
        for q in rows("queries.jsonl"):
            if q["id"] not in meta:
                continue
            topic_id, block = meta[q["id"]]
            if topic_id in topics:
                topics[topic_id].paraphrases.setdefault(block, []).append((q["id"], q["text"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{directory}: unexpected line format ({exc})") from exc
    if not topics:
        raise DatasetError(f"{directory}: no topics")
    return [topics[k] for k in sorted(topics)]


def comb2(n: int) -> float:
    return n * (n - 1) / 2


def adjusted_rand_index(labels: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Hubert–Arabie adjusted Rand index of two labelings of the same items."""
    n = len(labels)
    if n < 2:
        return 1.0
    pairs = sum(comb2(c) for c in Counter(zip(labels, truth, strict=True)).values())
    a = sum(comb2(c) for c in Counter(labels).values())
    b = sum(comb2(c) for c in Counter(truth).values())
    expected = a * b / comb2(n)
    top = (a + b) / 2
    return 1.0 if top == expected else (pairs - expected) / (top - expected)


def purity(labels: Sequence[Hashable], truth: Sequence[Hashable]) -> float:
    """Share of items that belong to their cluster's majority class."""
    if not labels:
        return 1.0
    best: dict[Hashable, int] = {}
    for (label, _), count in Counter(zip(labels, truth, strict=True)).items():
        best[label] = max(best.get(label, 0), count)
    return sum(best.values()) / len(labels)


@dataclass
class SimResult:
    """Every figure docs/capture.md reports."""

    figures: dict[str, Any]

    def lines(self) -> list[str]:
        f = self.figures
        c, m = f["clustering"], f["retrieval"]
        cov = f["coverage"]
        out = [
            f"topics: {f['topics']} ({f['published_topics']} published as "
            f"{f['published_entries']} FAQs, {f['gap_topics']} gaps)",
            f"threads: {f['threads']} ingested in {f['ingest_seconds']:.1f} s: "
            f"{cov['covered']} covered ({cov['phrasings_added']} new phrasings), "
            f"{cov['drafted']} drafted, {cov['uncovered']} without a question",
            f"covered threads on the right topic: {cov['covered_right_topic']:.3f}; "
            f"threads of published topics covered: {cov['published_topic_recall']:.3f}; "
            f"gap threads wrongly covered: {cov['gap_wrongly_covered']:.3f}",
            f"drafts: {c['drafts']} for {c['true_topics']} true topics; purity "
            f"{c['purity']:.3f}, inverse purity {c['inverse_purity']:.3f}, ARI {c['ari']:.3f}",
            f"held-out queries: {m['queries']} ({m['published_queries']} on published topics)",
            f"{'MRR@10':<28}{'all':>8}{'published':>11}{'gaps':>8}",
        ]
        for stage in ("before", "after_phrasings", "after_publishing"):
            s = m[stage]
            out.append(
                f"{stage.replace('_', ' '):<28}{s['mrr@10']:>8.3f}"
                f"{s['published_mrr@10']:>11.3f}{s['gap_mrr@10']:>8.3f}"
            )
        return out


def _evaluate(
    index: IndexManager,
    queries: list[tuple[str, str, str]],
    vectors: np.ndarray,
    relevant: dict[str, set[int]],
    published_topics: set[str],
) -> dict[str, float]:
    live = index.index_or_raise()
    totals: dict[str, list[float]] = {"all": [], "published": [], "gap": []}
    recall: list[float] = []
    for (qid, text, topic), vec in zip(queries, vectors, strict=True):
        hits = live.search(text, k=10, language="en", query_vector=vec).hits
        ids = sorted(relevant.get(topic, set()))
        query = EvalQuery(qid, text, [str(i) for i in ids] or ["-"])
        scores = score_ranking([str(h.entry_id) for h in hits], query)
        totals["all"].append(scores["mrr@10"])
        recall.append(scores["recall@10"] if ids else 0.0)
        totals["published" if topic in published_topics else "gap"].append(scores["mrr@10"])
    mean = {k: (sum(v) / len(v) if v else math.nan) for k, v in totals.items()}
    return {
        "mrr@10": round(mean["all"], 4),
        "published_mrr@10": round(mean["published"], 4),
        "gap_mrr@10": round(mean["gap"], 4),
        "recall@10": round(sum(recall) / len(recall), 4),
    }


def run_simulation(
    directory: Path,
    embedder: Embedder,
    tokenizer: Tokenizer,
    calibration: ConfidenceModel,
    policy: CapturePolicy,
    *,
    work_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> SimResult:
    """Run the whole loop on a fresh SQLite database in `work_dir` (a temporary one if None)."""
    say = progress or (lambda _msg: None)
    topics = load_topics(directory)
    published = {t.id for i, t in enumerate(topics) if i % 2 == 0}
    with tempfile.TemporaryDirectory(prefix="faqloop-capture-sim-") as tmp:
        root = work_dir or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(root / 'sim.db').resolve()}"
        migrate(url)
        engine = make_engine(url)
        try:
            return _run(topics, published, root, url, engine, embedder, tokenizer, calibration,
                        policy, say)  # fmt: skip
        finally:
            engine.dispose()


def _run(
    topics: list[Topic],
    published: set[str],
    root: Path,
    url: str,
    engine: Any,
    embedder: Embedder,
    tokenizer: Tokenizer,
    calibration: ConfidenceModel,
    policy: CapturePolicy,
    say: Callable[[str], None],
) -> SimResult:
    factory = make_session_factory(engine)
    relevant: dict[str, set[int]] = {}
    with session_scope(factory) as session:
        for topic in topics:
            if topic.id not in published:
                continue
            for faq_id, answer in topic.answers:
                entry = create_entry(
                    session,
                    question=normalize_text(topic.question),
                    answer=answer.strip() or topic.question,
                    category="stackfaq",
                    language="en",
                    slug=faq_id.lower(),
                    author="capture-sim",
                )
                relevant.setdefault(topic.id, set()).add(entry.id)
    published_entries = sum(len(v) for v in relevant.values())
    say(f"indexing {published_entries} FAQs of {len(published)} topics")
    index = IndexManager(embedder=embedder, tokenizer=tokenizer, index_dir=root / "index")
    index.open(factory)

    held_out = [
        (qid, normalize_text(text), t.id) for t in topics for qid, text in t.paraphrases.get(1, [])
    ]
    say(f"embedding {len(held_out)} held-out queries")
    qvecs = embedder.encode_queries([text for _, text, _ in held_out])
    figures: dict[str, Any] = {
        "dataset": "stackfaq",
        "model": embedder.name,
        "topics": len(topics),
        "published_topics": len(published),
        "gap_topics": len(topics) - len(published),
        "published_entries": published_entries,
        "policy": {
            "cover_threshold": policy.cover_threshold,
            "join_similarity": policy.join_similarity,
        },
    }
    retrieval: dict[str, Any] = {
        "queries": len(held_out),
        "published_queries": sum(1 for _, _, t in held_out if t in published),
    }
    retrieval["before"] = _evaluate(index, held_out, qvecs, relevant, published)

    threads: list[ThreadIn] = []
    topic_of: dict[str, str] = {}
    block0 = [(t, qid, text) for t in topics for qid, text in t.paraphrases.get(0, [])]
    for n, (topic, qid, text) in enumerate(block0):
        _, answer = topic.answers[int(qid[-2:]) % len(topic.answers)]
        # Interleaved over 28 days, so topics do not arrive one after another.
        resolved = START + timedelta(hours=(n * 7919) % (28 * 24))
        threads.append(
            ThreadIn(
                channel="sim",
                external_id=qid,
                url=None,
                resolved_at=resolved,
                posts=(
                    PostIn(PostRole.customer, f"customer-{qid}", text, resolved),
                    PostIn(PostRole.agent, "agent", answer or "-", resolved),
                ),
            )
        )
        topic_of[qid] = topic.id
    capture = Capture(index, calibration, QuestionVectors(embedder), policy, "capture-sim")
    say(f"ingesting {len(threads)} resolved threads")
    started = time.perf_counter()
    with session_scope(factory) as session:
        report = ingest_threads(session, capture, threads)
        index.commit_and_sync(session, factory)
    ingest_seconds = time.perf_counter() - started
    retrieval["after_phrasings"] = _evaluate(index, held_out, qvecs, relevant, published)

    entry_topic = {e: t for t, ids in relevant.items() for e in ids}
    outcomes = {o.external_id: o for o in report.outcomes}
    covered = [o for o in report.outcomes if o.status == ThreadStatus.covered]
    right = sum(1 for o in covered if entry_topic.get(o.faq_id or 0) == topic_of[o.external_id])
    pub_threads = [q for q, t in topic_of.items() if t in published]
    gap_threads = [q for q, t in topic_of.items() if t not in published]
    figures["coverage"] = {
        "covered": len(covered),
        "drafted": report.count(ThreadStatus.drafted),
        "uncovered": report.count(ThreadStatus.uncovered),
        "phrasings_added": sum(1 for o in covered if o.phrasing_added),
        "covered_right_topic": round(right / len(covered), 4) if covered else 1.0,
        "published_topic_recall": round(
            sum(1 for q in pub_threads if outcomes[q].status == ThreadStatus.covered)
            / max(1, len(pub_threads)),
            4,
        ),
        "gap_wrongly_covered": round(
            sum(1 for q in gap_threads if outcomes[q].status == ThreadStatus.covered)
            / max(1, len(gap_threads)),
            4,
        ),
    }
    # What other cover thresholds would have done (every thread's best match is recorded).
    curve = []
    for threshold in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9):
        chosen = [o for o in report.outcomes if (o.confidence or 0.0) >= threshold]
        ok = sum(
            1 for o in chosen if entry_topic.get(o.best_faq_id or 0) == topic_of[o.external_id]
        )
        pub = sum(1 for o in chosen if topic_of[o.external_id] in published)
        curve.append(
            {
                "threshold": threshold,
                "covered": len(chosen),
                "right_topic": round(ok / len(chosen), 4) if chosen else 1.0,
                "published_topic_recall": round(pub / max(1, len(pub_threads)), 4),
                "gap_wrongly_covered": round((len(chosen) - pub) / max(1, len(gap_threads)), 4),
            }
        )
    figures["coverage"]["curve"] = curve

    with session_scope(factory) as session:
        rows = session.execute(
            select(Thread.external_id, Thread.draft_id).where(Thread.status == ThreadStatus.drafted)
        ).all()
        labels = [int(d or 0) for _, d in rows]
        truth = [topic_of[e] for e, _ in rows]
        inverse = purity(truth, labels)
        figures["clustering"] = {
            "threads": len(rows),
            "drafts": len(set(labels)),
            "true_topics": len(set(truth)),
            "purity": round(purity(labels, truth), 4),
            "inverse_purity": round(inverse, 4),
            "ari": round(adjusted_rand_index(labels, truth), 4),
            "singleton_drafts": sum(1 for c in Counter(labels).values() if c == 1),
        }
        majority: dict[int, str] = {}
        for draft_id in sorted(set(labels)):
            counts = Counter(t for (_, d), t in zip(rows, truth, strict=True) if d == draft_id)
            majority[draft_id] = min(counts, key=lambda t: (-counts[t], t))
        drafts = list(
            session.scalars(
                select(FaqDraft).where(FaqDraft.status == DraftStatus.open).order_by(FaqDraft.id)
            )
        )
        say(f"publishing {len(drafts)} drafts")
        for draft in drafts:
            result = publish_draft(
                session,
                draft.id,
                category="stackfaq",
                answer=draft.answer or draft.question,
                author="capture-sim",
            )
            relevant.setdefault(majority[draft.id], set()).add(result.entry.id)
        index.commit_and_sync(session, factory)
    retrieval["after_publishing"] = _evaluate(index, held_out, qvecs, relevant, published)
    figures["retrieval"] = retrieval
    figures["ingest_seconds"] = round(ingest_seconds, 1)
    figures["threads"] = len(threads)
    return SimResult(figures)
