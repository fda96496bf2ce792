"""faqloop against a peer, txtai, on the same texts, model and queries.

    make bench-peer                                     # installs txtai (benchmark only)
    .venv/bin/python benchmarks/peer_txtai.py [--queries 1417] [--no-hybrid]

txtai is installed only for this benchmark (benchmarks/requirements-peer.txt, with the
project's installed versions as constraints); it is not a faqloop dependency.

Both index the texts faqloop indexes for the 1,000-entry benchmark knowledge base (title
and the answer's first paragraph of each entry) with the same model folder
(multilingual-e5-small under sentence-transformers; txtai's sentence-transformers method
applies the model's own `query: ` / `passage: ` prompts, as faqloop does -- checked below
by comparing the vectors), in an exact FAISS inner-product index. Each query is normalised
the same way, sent alone, its language detected, and each system's hits are kept to
entries in that language; an entry ranks by its best text. Per query the systems take
turns, so a change in machine load affects all of them alike.

Configurations: faqloop dense and txtai dense (same model, same texts, same exact search:
recall must be equal, so the latency comparison is at equal recall), and each one's
hybrid (faqloop: FAISS + BM25 with Sudachi for Japanese, fused; txtai: its hybrid with its
own BM25 and tokenizer). Reports recall@1, hit@1, MRR@10, recall@10 and p50/p95/p99
latency per query, then the dense pair again from 8 concurrent clients (faqloop's
micro-batcher embeds concurrent posts together; txtai encodes each on its own).
Writes benchmarks/results/peer_txtai.json.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import (
    KbEntry,
    knowledge_base,
    latency_summary,
    machine,
    peak_rss_mb,
    print_table,
    sample_queries,
    write_result,
)

FETCH = 64  # texts fetched per query before keeping the query's language, as faqloop does


class TxtaiPeer:
    """txtai over the same texts; entries rank by their best text."""

    def __init__(self, model_path: Path, hybrid: bool) -> None:
        from txtai import Embeddings

        config: dict[str, Any] = {
            "path": str(model_path),
            "method": "sentence-transformers",
            "backend": "faiss",
            "faiss": {"components": "IDMap,Flat"},  # exact, as faqloop's IndexFlatIP
            "content": False,
        }
        if hybrid:
            config["hybrid"] = True
        self.embeddings = Embeddings(config)
        self.doc_entry: dict[int, int] = {}

    def index(self, docs: list[tuple[int, str]]) -> None:
        rows = []
        for uid, (entry, text) in enumerate(docs):
            self.doc_entry[uid] = entry
            rows.append((uid, text, None))
        self.embeddings.index(rows)

    def query_vector(self, text: str) -> Any:
        return self.embeddings.transform(text, category="query")

    def search(self, text: str, language: str, langs: dict[int, str], k: int) -> list[int]:
        hits = self.embeddings.search(text, FETCH)
        ranked: list[int] = []
        for uid, _score in hits:
            entry = self.doc_entry[int(uid)]
            if langs[entry] == language and entry not in ranked:
                ranked.append(entry)
        return ranked[:k]


def main() -> None:
    """Index with both, query both in turn, print and save recall and latency."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=0, help="Default: every query (1,417).")
    parser.add_argument("--no-hybrid", action="store_true", help="Dense configurations only.")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent clients (1: skip).")
    parser.add_argument("--concurrent-queries", type=int, default=400)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    try:
        import txtai  # noqa: F401
    except ImportError:
        message = "txtai is not installed: run `make bench-peer` (benchmark only)"
        write_result("peer_txtai", {"benchmark": "peer_txtai", "skipped": message}, args.json)
        sys.exit(f"peer_txtai: {message}")

    from api.settings import Settings
    from indexer.embedding.encoders import load_embedder, resolve_model_path
    from indexer.embedding.microbatch import BatchingEmbedder
    from indexer.lexical.tokenizer import default_tokenizer
    from indexer.retrieval.hybrid import HybridIndex
    from kb.indexing import IndexRecipe, entry_docs
    from kb.suggest.evaluation import EvalQuery, score_ranking
    from kb.text.language import detect_language, normalize_text

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    before = machine()
    kb, queries = knowledge_base()
    if args.queries:
        queries = sample_queries(queries, args.queries, seed=3)
    langs = {n: e.language for n, e in enumerate(kb, 1)}
    keys = {n: e.key for n, e in enumerate(kb, 1)}
    recipe = IndexRecipe()
    docs = [_docs(n, e, recipe, entry_docs) for n, e in enumerate(kb, 1)]
    dense_texts = [(d.entry_id, t) for d in docs for t in d.dense_texts]

    path = resolve_model_path(settings.embedding_model, settings.models_dir)
    builds: dict[str, float] = {}
    t0 = time.perf_counter()
    embedder = load_embedder(settings.embedding_model, settings.models_dir)
    faqloop = HybridIndex(embedder, default_tokenizer())
    faqloop.upsert(docs)
    builds["faqloop"] = time.perf_counter() - t0
    peers: dict[str, TxtaiPeer] = {}
    for name, hybrid in (("txtai dense", False), ("txtai hybrid", True)):
        if hybrid and args.no_hybrid:
            continue
        t0 = time.perf_counter()
        peer = TxtaiPeer(path, hybrid)
        peer.index(dense_texts)
        peers[name] = peer
        builds[name] = time.perf_counter() - t0

    # The same prompts: txtai's query vector equals faqloop's for the same text.
    probe = normalize_text(queries[0].text)
    ours = embedder.encode_queries([probe])[0]
    theirs = np.asarray(peers["txtai dense"].query_vector(probe), dtype=np.float32)
    prompt_cosine = float(ours @ theirs / (np.linalg.norm(ours) * np.linalg.norm(theirs)))

    systems: dict[str, Any] = {
        "faqloop dense": lambda text, lang: [
            h.entry_id for h in faqloop.search(text, k=10, language=lang, mode="dense").hits
        ],
        "faqloop hybrid": lambda text, lang: [
            h.entry_id for h in faqloop.search(text, k=10, language=lang, mode="hybrid").hits
        ],
    }
    for name, peer in peers.items():
        systems[name] = lambda text, lang, peer=peer: peer.search(text, lang, langs, 10)
    if args.no_hybrid:
        systems.pop("faqloop hybrid")

    for q in queries[:10]:  # warm-up
        text = normalize_text(q.text)
        for run in systems.values():
            run(text, detect_language(text))
    latencies: dict[str, list[float]] = {name: [] for name in systems}
    totals: dict[str, dict[str, float]] = {name: {} for name in systems}
    hit1: dict[str, int] = dict.fromkeys(systems, 0)
    wall = dict.fromkeys(systems, 0.0)
    for q in queries:
        text = normalize_text(q.text)
        lang = detect_language(text)
        judged = EvalQuery(q.text, q.text, sorted(q.relevant))
        for name, run in systems.items():
            t0 = time.perf_counter()
            ranked = run(text, lang)
            elapsed = time.perf_counter() - t0
            latencies[name].append(elapsed * 1000)
            wall[name] += elapsed
            ids = [keys[e] for e in ranked]
            for metric, value in score_ranking(ids, judged).items():
                totals[name][metric] = totals[name].get(metric, 0.0) + value
            hit1[name] += int(bool(ids) and ids[0] in q.relevant)

    # Concurrent clients: faqloop's micro-batcher embeds their posts together; txtai
    # encodes each query on its own (both from the same threads, dense, same queries).
    concurrent: dict[str, Any] = {}
    if args.clients > 1:
        batched = HybridIndex(BatchingEmbedder(embedder), default_tokenizer())
        batched.upsert(docs)  # passages come from the embedder's cache
        runners = {
            "faqloop dense": lambda text, lang: batched.search(
                text, k=10, language=lang, mode="dense"
            ),
            "txtai dense": lambda text, lang: peers["txtai dense"].search(text, lang, langs, 10),
        }
        posts = [normalize_text(q.text) for q in queries[: args.concurrent_queries]]
        for name, run in runners.items():
            concurrent[name] = _concurrently(run, posts, args.clients, detect_language)

    n = len(queries)
    results: dict[str, Any] = {}
    for name in systems:
        summary = latency_summary(latencies[name], wall[name])
        summary.update({m: round(v / n, 4) for m, v in totals[name].items()})
        summary["hit@1"] = round(hit1[name] / n, 4)
        summary["build_s"] = round(builds.get(name, builds["faqloop"]), 2)
        results[name] = summary
    after = machine()
    body = {
        "benchmark": "peer_txtai",
        "peer": f"txtai {_version()}",
        "model": settings.embedding_model,
        "entries": len(kb),
        "texts": len(dense_texts),
        "queries": n,
        "query_prompt_cosine": round(prompt_cosine, 6),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "machine_before": before,
        "machine_after": after,
        "results": results,
        "concurrent_clients": args.clients,
        "concurrent": concurrent,
    }
    print(
        f"faqloop vs txtai {_version()}: {len(kb)} entries, {len(dense_texts)} texts, {n} "
        f"queries; same model ({settings.embedding_model}), query vectors agree at cosine "
        f"{prompt_cosine:.6f}; load {before['load_1min']} -> {after['load_1min']} on "
        f"{before['cpus']} CPUs"
    )
    print_table(
        [
            "system",
            "recall@1",
            "hit@1",
            "MRR@10",
            "recall@10",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "build s",
        ],
        [
            [
                name,
                r["recall@1"],
                r["hit@1"],
                r["mrr@10"],
                r["recall@10"],
                r["p50_ms"],
                r["p95_ms"],
                r["p99_ms"],
                r["build_s"],
            ]
            for name, r in results.items()
        ],
    )
    if concurrent:
        print(f"{args.clients} concurrent clients, dense, {len(posts)} queries:")
        print_table(
            ["system", "p50 ms", "p95 ms", "queries/s"],
            [
                [name, c["p50_ms"], c["p95_ms"], c["throughput_per_s"]]
                for name, c in concurrent.items()
            ],
        )
    print(f"written to {write_result('peer_txtai', body, args.json)}")


def _concurrently(run: Any, posts: list[str], clients: int, detect: Any) -> dict[str, Any]:
    """Run every post through `run` from `clients` threads; latency and throughput."""
    work: queue.SimpleQueue[str] = queue.SimpleQueue()
    for post in posts:
        work.put(post)
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        while True:
            try:
                post = work.get_nowait()
            except queue.Empty:
                return
            t0 = time.perf_counter()
            run(post, detect(post))
            elapsed = (time.perf_counter() - t0) * 1000
            with lock:
                latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    wall = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latency_summary(latencies, time.perf_counter() - wall)


def _docs(n: int, e: KbEntry, recipe: Any, entry_docs: Any) -> Any:
    from kb.text.language import normalize_text

    return entry_docs(n, e.language, normalize_text(e.question), e.answer, [], recipe)


def _version() -> str:
    from importlib.metadata import version

    return version("txtai")


if __name__ == "__main__":
    main()
