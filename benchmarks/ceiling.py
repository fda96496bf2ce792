"""The ceiling: the bare model and FAISS, nothing of faqloop around them.

    .venv/bin/python benchmarks/ceiling.py [--queries 300] [--batch-sizes 8 32]

Loads multilingual-e5-small with sentence-transformers straight from its folder, embeds
the texts faqloop would index for the benchmark knowledge base (title and the answer's
first paragraph of each of the 1,000 entries, with the `passage: ` prompt) into a FAISS
IndexFlatIP, then times, in a loop:

- single: embed one post (`query: ` prompt) and search the 10 nearest vectors;
- batched: embed B posts in one call and search them in one call (B = 8, 16, 32);
- batched in lanes: the same from L threads at once (L = torch's thread count), each call
  with 1/L of the threads -- on 2 cores, two single-threaded calls at once get more out of
  the machine than one call on two threads. The batched ceiling is the best of all these.

"Embed" runs the model's modules (tokenise, transformer, pooling, normalise) as one
TorchScript trace under `torch.inference_mode` -- the fastest way to run it in torch here,
and what faqloop runs. For reference, single posts are also timed with the same modules
called eagerly and through `SentenceTransformer.encode`.

With `--backends torch,onnx,onnx-int8` the ONNX Runtime ceilings are measured in the same
run on the same posts and index (`indexer/embedding/onnx_backend.py`, the exported graph of
the same model: single post, batches, batches in lanes of 1/L of the intra-op threads), and
each backend's encoder CPU time per post on one thread (less disturbed by other work on the
machine than wall time).

No cleaning, no BM25, no database, no HTTP: what any service built on this model and
index can at best achieve on this machine. Writes benchmarks/results/ceiling.json.
"""

from __future__ import annotations

import argparse
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import (
    knowledge_base,
    latency_summary,
    machine,
    peak_rss_mb,
    print_table,
    sample_queries,
    write_result,
)


def main() -> None:
    """Measure single and batched encode + search; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=300, help="Posts per measurement.")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--json", type=Path, default=None, help="Where to write the results.")
    parser.add_argument(
        "--backends",
        default="torch",
        help="Comma-separated: torch (the traced model, always measured), onnx, onnx-int8.",
    )
    args = parser.parse_args()
    from indexer.embedding.onnx_backend import BACKENDS, ONNX_BACKENDS

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backends {unknown}; choose from {', '.join(BACKENDS)}")

    import faiss
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    from api.settings import Settings
    from indexer.embedding.encoders import resolve_model_path
    from kb.indexing import IndexRecipe, entry_docs

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    before = machine()
    path = resolve_model_path(settings.embedding_model, settings.models_dir)
    started = time.perf_counter()
    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    load_s = time.perf_counter() - started

    kb, queries = knowledge_base()
    recipe = IndexRecipe()
    texts = [
        t
        for n, e in enumerate(kb)
        for t in entry_docs(n, e.language, e.question, e.answer, [], recipe).dense_texts
    ]
    started = time.perf_counter()
    passages = model.encode(
        texts, prompt_name="passage", normalize_embeddings=True, batch_size=32
    ).astype(np.float32)
    embed_s = time.perf_counter() - started
    index = faiss.IndexFlatIP(passages.shape[1])
    index.add(passages)

    posts = [q.text for q in sample_queries(queries, args.queries, seed=1)]

    query_prompt = model.prompts.get("query", "")
    model.eval()

    def eager_encode(batch: list[str]) -> Any:
        # The model's modules called directly (tokenise, transformer, mean pooling,
        # normalise) under inference mode, without SentenceTransformer.encode's bookkeeping.
        with torch.inference_mode():
            features = model.preprocess(batch, prompt=query_prompt)
            vecs = model(features)["sentence_embedding"]
            return torch.nn.functional.normalize(vecs, p=2, dim=1).numpy()

    # The same modules as one TorchScript trace: the fastest way to run this model in
    # torch here (no Python between its operations), and what faqloop runs.
    example = model.preprocess(["query: a short example", "query: " + "a longer one " * 20])
    inputs = [k for k, v in example.items() if isinstance(v, torch.Tensor)]

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, *tensors: Any) -> Any:
            vecs = self.inner(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]
            return torch.nn.functional.normalize(vecs, p=2, dim=1)

    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(
            Pipeline().eval(), tuple(example[k] for k in inputs), check_trace=False
        )

    def encode(batch: list[str]) -> Any:
        with torch.inference_mode():
            features = model.preprocess(batch, prompt=query_prompt)
            return traced(*(features[k] for k in inputs)).numpy()

    check = posts[:8]
    drift = float(np.abs(encode(check) - eager_encode(check)).max())
    assert drift < 1e-4, f"the trace differs from the eager model by {drift}"

    def library_encode(batch: list[str]) -> Any:
        # The same through SentenceTransformer.encode, which adds its own bookkeeping.
        return model.encode(
            batch, prompt_name="query", normalize_embeddings=True, batch_size=len(batch)
        ).astype(np.float32)

    for post in posts[:20]:  # warm-up: first calls pay for lazy initialisation
        index.search(encode([post]), 10)

    single: list[float] = []
    encode_only: list[float] = []
    wall = time.perf_counter()
    for post in posts:
        t0 = time.perf_counter()
        vec = encode([post])
        t1 = time.perf_counter()
        index.search(vec, 10)
        single.append((time.perf_counter() - t0) * 1000)
        encode_only.append((t1 - t0) * 1000)
    single_wall = time.perf_counter() - wall
    library: list[float] = []
    eager: list[float] = []
    for post in posts:
        t0 = time.perf_counter()
        index.search(library_encode([post]), 10)
        t1 = time.perf_counter()
        index.search(eager_encode([post]), 10)
        library.append((t1 - t0) * 1000)
        eager.append((time.perf_counter() - t1) * 1000)
    # The single-post yardstick is a Japanese post: SentenceTransformer.encode of
    # the Japanese posts alone (the set above is mostly longer English posts).
    ja_posts = [
        q.text
        for q in sample_queries([q for q in queries if q.language == "ja"], args.queries, seed=2)
    ]
    library_ja: list[float] = []
    for post in ja_posts:
        t0 = time.perf_counter()
        index.search(library_encode([post]), 10)
        library_ja.append((time.perf_counter() - t0) * 1000)
    results: dict[str, Any] = {
        "single": latency_summary(single, single_wall),
        "single_library_encode_ja": latency_summary(library_ja, sum(library_ja) / 1000),
        "single_encode_only": latency_summary(encode_only, sum(encode_only) / 1000),
        "single_library_encode": latency_summary(library, sum(library) / 1000),
        "single_eager": latency_summary(eager, sum(eager) / 1000),
    }
    results["batched"] = _batched(encode, index, posts, args.batch_sizes)
    threads = torch.get_num_threads()
    tokenizer_lock = threading.Lock()  # the fast tokenizer is not safe across threads

    def lane_encode(batch: list[str]) -> Any:
        with tokenizer_lock:
            features = model.preprocess(batch, prompt=query_prompt)
        with torch.inference_mode():
            return traced(*(features[k] for k in inputs)).numpy()

    results["lanes"] = threads
    # torch.set_num_threads applies to the calling thread's calls only.
    results["batched_lanes"] = _in_lanes(
        lane_encode, torch.set_num_threads, index, posts, args.batch_sizes, threads
    )
    torch.set_num_threads(threads)

    results["cpu_ms_per_post"] = {"torch": _cpu_ms(lambda b: encode(b), posts, threads)}
    results["backends"] = {}
    for backend in backends:
        if backend in ONNX_BACKENDS:
            results["backends"][backend] = onnx_ceiling(
                backend, path, settings.embedding_model, posts, index, args.batch_sizes, threads
            )
            results["cpu_ms_per_post"][backend] = results["backends"][backend].pop("cpu_ms")

    after = machine()
    body = {
        "benchmark": "ceiling",
        "model": settings.embedding_model,
        "torch_threads": torch.get_num_threads(),
        "entries": len(kb),
        "vectors": int(index.ntotal),
        "model_load_s": round(load_s, 2),
        "passages_embed_s": round(embed_s, 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "machine_before": before,
        "machine_after": after,
        **results,
    }
    print(
        f"ceiling: bare {settings.embedding_model} + FAISS IndexFlatIP, {index.ntotal} vectors, "
        f"torch threads {torch.get_num_threads()}, load {before['load_1min']} -> "
        f"{after['load_1min']} on {before['cpus']} CPUs"
    )
    rows = [
        [
            "single (encode + search)",
            results["single"]["p50_ms"],
            results["single"]["p95_ms"],
            results["single"]["p99_ms"],
            results["single"]["throughput_per_s"],
        ],
        [
            "single, encode only",
            results["single_encode_only"]["p50_ms"],
            results["single_encode_only"]["p95_ms"],
            results["single_encode_only"]["p99_ms"],
            "",
        ],
        [
            "single, eager modules + search",
            results["single_eager"]["p50_ms"],
            results["single_eager"]["p95_ms"],
            results["single_eager"]["p99_ms"],
            results["single_eager"]["throughput_per_s"],
        ],
        [
            "single, SentenceTransformer.encode + search",
            results["single_library_encode"]["p50_ms"],
            results["single_library_encode"]["p95_ms"],
            results["single_library_encode"]["p99_ms"],
            results["single_library_encode"]["throughput_per_s"],
        ],
        [
            "single Japanese post, SentenceTransformer.encode + search",
            results["single_library_encode_ja"]["p50_ms"],
            results["single_library_encode_ja"]["p95_ms"],
            results["single_library_encode_ja"]["p99_ms"],
            results["single_library_encode_ja"]["throughput_per_s"],
        ],
    ]
    for size, s in results["batched"].items():
        rows.append([f"batch of {size}", s["p50_ms"], s["p95_ms"], s["p99_ms"], s["posts_per_s"]])
    for size, s in results["batched_lanes"].items():
        rows.append(
            [
                f"batch of {size}, {results['lanes']} lanes x {threads // results['lanes']} thread",
                s["p50_ms"],
                s["p95_ms"],
                s["p99_ms"],
                s["posts_per_s"],
            ]
        )
    for backend, res in results["backends"].items():
        rows.append([f"{backend}: single (encode + search)", *_cols(res["single"])])
        for size, sm in res["batched"].items():
            rows.append([f"{backend}: batch of {size}", *_cols(sm, "posts_per_s")])
        for size, sm in res["batched_lanes"].items():
            rows.append(
                [
                    f"{backend}: batch of {size}, {res['lanes']} lanes x "
                    f"{max(1, threads // res['lanes'])} thread",
                    *_cols(sm, "posts_per_s"),
                ]
            )
    print_table(["mode", "p50 ms", "p95 ms", "p99 ms", "posts/s"], rows)
    print(
        "encoder CPU ms per post on 1 thread (single / in batches of 32): "
        + "; ".join(
            f"{b} {v['single']} / {v['batch_32']}" for b, v in results["cpu_ms_per_post"].items()
        )
    )
    print(f"written to {write_result('ceiling', body, args.json)}")


def _batched(
    encode: Callable[[list[str]], Any], index: Any, posts: list[str], sizes: list[int]
) -> dict[str, Any]:
    """Batches of each size, one after the other on the calling thread: encode + search."""
    out: dict[str, Any] = {}
    for size in sizes:
        batches = [posts[i : i + size] for i in range(0, len(posts) - size + 1, size)]
        encode(batches[0])  # warm-up at this shape
        per_batch: list[float] = []
        wall = time.perf_counter()
        for batch in batches:
            t0 = time.perf_counter()
            index.search(encode(batch), 10)
            per_batch.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - wall
        summary = latency_summary(per_batch, elapsed)
        summary["posts_per_s"] = round(len(batches) * size / elapsed, 2)
        out[str(size)] = summary
    return out


def _in_lanes(
    encode: Callable[[list[str]], Any],
    set_threads: Callable[[int], None],
    index: Any,
    posts: list[str],
    sizes: list[int],
    threads: int,
) -> dict[str, Any]:
    """Batches of each size from `threads` lanes (threads) at once, each lane's calls with
    threads // lanes intra-op threads (`set_threads`, per calling thread); empty on 1 core."""
    lanes = threads
    out: dict[str, Any] = {}
    if lanes < 2:
        return out

    def lane(mine: list[list[str]], per_batch: list[float], record: threading.Lock) -> None:
        set_threads(max(1, threads // lanes))
        encode(mine[0])  # warm-up at this shape, in this thread
        for batch in mine:
            t0 = time.perf_counter()
            index.search(encode(batch), 10)
            with record:
                per_batch.append((time.perf_counter() - t0) * 1000)

    for size in sizes:
        # At least four batches per lane, so the lanes finish close together.
        count = max(len(posts) // size, 4 * lanes) // lanes * lanes
        batches = [[posts[(n * size + i) % len(posts)] for i in range(size)] for n in range(count)]
        per_batch: list[float] = []
        record = threading.Lock()
        workers = [
            threading.Thread(target=lane, args=(batches[n::lanes], per_batch, record))
            for n in range(lanes)
        ]
        wall = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - wall
        summary = latency_summary(per_batch, elapsed)
        summary["posts_per_s"] = round(len(batches) * size / elapsed, 2)
        out[str(size)] = summary
    return out


def _cols(summary: dict[str, Any], rate: str = "throughput_per_s") -> list[Any]:
    return [summary["p50_ms"], summary["p95_ms"], summary["p99_ms"], summary[rate]]


def _cpu_ms(encode: Any, posts: list[str], threads: int) -> dict[str, float]:
    """Encoder CPU time per post on one thread (this thread's CPU clock), single and batched.

    For torch, `encode` runs on this thread with torch set to 1 thread; for ONNX Runtime a
    1-thread session runs on the calling thread. Medians over the posts / batches.
    """
    import torch

    torch.set_num_threads(1)
    try:
        single = []
        for post in posts[:60]:
            t0 = time.thread_time()
            encode([post])
            single.append((time.thread_time() - t0) * 1000)
        batched = []
        for i in range(0, min(len(posts), 192) - 31, 32):
            t0 = time.thread_time()
            encode(posts[i : i + 32])
            batched.append((time.thread_time() - t0) * 1000 / 32)
    finally:
        torch.set_num_threads(threads)
    return {
        "single": round(float(np.median(single)), 2),
        "batch_32": round(float(np.median(batched)), 2) if batched else None,
    }


def onnx_ceiling(
    backend: str,
    path: Path,
    name: str,
    posts: list[str],
    index: Any,
    batch_sizes: list[int],
    threads: int,
) -> dict[str, Any]:
    """The ONNX Runtime ceiling of `backend`: single, batches, batches in lanes."""
    from indexer.embedding.onnx_backend import load_onnx_embedder

    started = time.perf_counter()
    model = load_onnx_embedder(name, path, backend=backend, threads=threads)
    out: dict[str, Any] = {"load_s": round(time.perf_counter() - started, 2)}
    for post in posts[:20]:
        index.search(model.encode_queries([post]), 10)
    single: list[float] = []
    wall = time.perf_counter()
    for post in posts:
        t0 = time.perf_counter()
        index.search(model.encode_queries([post]), 10)
        single.append((time.perf_counter() - t0) * 1000)
    out["single"] = latency_summary(single, time.perf_counter() - wall)
    out["batched"] = _batched(model.encode_queries, index, posts, batch_sizes)
    out["lanes"] = threads
    # set_threads applies to the calling thread's calls only.
    out["batched_lanes"] = _in_lanes(
        model.encode_queries, model.set_threads, index, posts, batch_sizes, threads
    )
    model.set_threads(1)
    out["cpu_ms"] = _cpu_ms(model.encode_queries, posts, threads)
    out["peak_rss_mb_after"] = round(peak_rss_mb(), 1)
    return out


if __name__ == "__main__":
    main()
