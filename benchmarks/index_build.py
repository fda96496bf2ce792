"""Index build time and memory for 1k, 10k and 100k phrasings, and one incremental update.

    .venv/bin/python benchmarks/index_build.py [--sizes 1000 10000 100000]

Each size runs in a fresh child process (so its peak memory is its own). The phrasings are
synthesised from the shared eval texts (StackFAQ questions, paraphrases and answer
sentences; JSTS sentences): real sentences first, then sentences extended by a fragment of
another, so every text is distinct and about as long as a real phrasing. Entries get ten
texts each (a title, eight phrasings, an answer paragraph), half English, half Japanese.

Per size: a full build (every text embedded with the model; FAISS, BM25 with Sudachi),
saving the generation (manifest, checksums, fsync), loading it back, hybrid search
latency without the embedding, and one incremental update: an entry with ten new texts
upserted and saved as the next generation -- what a replica does when the change feed
brings one edited article. Embedding 100k texts takes a while on a CPU (about 100k /
(texts per second) -- see the table); nothing is extrapolated.
Writes benchmarks/results/index_build.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (
    EVAL,
    machine,
    peak_rss_mb,
    percentile,
    print_table,
    read_jsonl,
    rss_mb,
    write_result,
)

TEXTS_PER_ENTRY = 10
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s*")


def sentence_pool() -> dict[str, list[str]]:
    """Distinct real sentences per language from the eval sets."""
    en: list[str] = []
    for row in read_jsonl(EVAL / "stackfaq" / "faqs.jsonl"):
        en.append(str(row["question"]))
        en.extend(s for s in _SENTENCE.split(str(row.get("answer") or "")) if 20 <= len(s) <= 200)
    en.extend(str(r["text"]) for r in read_jsonl(EVAL / "stackfaq" / "queries.jsonl"))
    ja = [str(r["question"]) for r in read_jsonl(EVAL / "jsts_ja" / "faqs.jsonl")]
    ja.extend(str(r["text"]) for r in read_jsonl(EVAL / "jsts_ja" / "queries.jsonl"))
    return {"en": list(dict.fromkeys(en)), "ja": list(dict.fromkeys(ja))}


def synthesise(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` distinct (language, text) phrasings, half English and half Japanese."""
    rng = random.Random(seed)
    pool = sentence_pool()
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for lang in ("en", "ja"):
        want = n // 2 if lang == "en" else n - n // 2
        base = list(pool[lang])
        rng.shuffle(base)
        made = 0
        i = 0
        while made < want:
            text = base[i % len(base)]
            if i >= len(base):  # extend with a fragment of another sentence
                other = rng.choice(base)
                if lang == "en":
                    words = other.split()
                    start = rng.randrange(max(1, len(words) - 4))
                    text = f"{text} {' '.join(words[start : start + rng.randint(3, 6)])}"
                else:
                    start = rng.randrange(max(1, len(other) - 8))
                    text = text + other[start : start + rng.randint(5, 10)]
            i += 1
            if text in seen:
                continue
            seen.add(text)
            out.append((lang, text))
            made += 1
    return out


def entries_from(phrasings: list[tuple[str, str]], first_id: int = 1) -> list[Any]:
    """Group phrasings into entries of ten texts (same language within an entry)."""
    from indexer.retrieval.hybrid import EntryDocs

    by_lang: dict[str, list[str]] = {}
    for lang, text in phrasings:
        by_lang.setdefault(lang, []).append(text)
    docs = []
    entry_id = first_id
    for lang, texts in by_lang.items():
        for start in range(0, len(texts), TEXTS_PER_ENTRY):
            group = tuple(texts[start : start + TEXTS_PER_ENTRY])
            docs.append(EntryDocs(entry_id, lang, group, "\n".join(group)))
            entry_id += 1
    return docs


class TimedEmbedder:
    """Counts the time spent embedding passages."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.passage_s = 0.0
        self.passages = 0

    def encode_queries(self, texts: list[str]) -> Any:
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str]) -> Any:
        t0 = time.perf_counter()
        out = self.inner.encode_passages(texts)
        self.passage_s += time.perf_counter() - t0
        self.passages += len(texts)
        return out


def child(size: int) -> dict[str, Any]:
    """Build, save, load, search and update an index of `size` texts; return the figures."""
    from api.settings import Settings
    from indexer.embedding.encoders import SentenceTransformerEmbedder, resolve_model_path
    from indexer.lexical.tokenizer import default_tokenizer
    from indexer.retrieval.hybrid import HybridIndex
    from indexer.store import IndexStore
    from kb.indexing import IndexRecipe

    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    if settings.torch_threads:
        import torch

        torch.set_num_threads(settings.torch_threads)
    path = resolve_model_path(settings.embedding_model, settings.models_dir)
    # No passage cache: a fresh process embeds every text, as a rebuild after a restart does.
    # The backend is FAQLOOP_EMBED_BACKEND's (run_all.py --backends runs each in turn).
    inner: Any
    if settings.embed_backend == "torch":
        inner = SentenceTransformerEmbedder(settings.embedding_model, path)
    else:
        from indexer.embedding.onnx_backend import load_onnx_embedder

        inner = load_onnx_embedder(
            settings.embedding_model,
            path,
            backend=settings.embed_backend,
            threads=settings.torch_threads,
        )
    embedder = TimedEmbedder(inner)
    tokenizer = default_tokenizer()
    tokenizer.tokenize("warm-up 準備")
    phrasings = synthesise(size + TEXTS_PER_ENTRY)
    docs = entries_from(phrasings[:size])
    update = entries_from(phrasings[size:], first_id=len(docs) + 1)[0]
    # Warm the model up first (lazy initialisation, weights paged in), so the memory the
    # build adds is the index's and the batches', not the model's.
    embedder.inner.encode_passages([text for _, text in phrasings[-64:]])
    base_rss = rss_mb()

    t0 = time.perf_counter()
    index = HybridIndex(embedder, tokenizer)
    index.upsert(docs)
    build_s = time.perf_counter() - t0
    embed_s, embedded = embedder.passage_s, embedder.passages

    recipe = IndexRecipe().key(tokenizer.name)
    with tempfile.TemporaryDirectory(prefix="faqloop-build-") as tmp:
        store = IndexStore(Path(tmp))
        t0 = time.perf_counter()
        store.save(index, generation=1, last_change_id=0, recipe=recipe)
        save_s = time.perf_counter() - t0
        size_mb = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file()) / 2**20
        t0 = time.perf_counter()
        store.load(embedder, tokenizer, recipe=recipe)
        load_s = time.perf_counter() - t0

        rng = random.Random(1)
        queries = [text for _, text in rng.sample(phrasings[:size], min(50, size))]
        vectors = embedder.encode_queries(queries)
        search_ms = []
        for text, vec in zip(queries, vectors, strict=True):
            t0 = time.perf_counter()
            index.search(text, k=10, language=None, mode="hybrid", query_vector=vec)
            search_ms.append((time.perf_counter() - t0) * 1000)

        # One edited article arriving through the change feed: re-embed its texts, update
        # FAISS and BM25, save the next generation.
        embedder.passage_s = 0.0
        t0 = time.perf_counter()
        index.upsert([update])
        upsert_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        store.save(index, generation=2, last_change_id=1, recipe=recipe)
        update_save_s = time.perf_counter() - t0
    return {
        "texts": size,
        "entries": len(docs),
        "build_s": round(build_s, 2),
        "embed_s": round(embed_s, 2),
        "texts_per_s": round(embedded / embed_s, 1) if embed_s else None,
        "index_structures_s": round(build_s - embed_s, 2),
        "save_s": round(save_s, 2),
        "load_s": round(load_s, 2),
        "size_on_disk_mb": round(size_mb, 1),
        "rss_before_build_mb": round(base_rss, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "rss_after_mb": round(rss_mb(), 1),
        "hybrid_search_without_embedding_p50_ms": round(percentile(search_ms, 0.5), 2),
        "update_one_entry_s": round(upsert_s + update_save_s, 3),
        "update_embed_s": round(embedder.passage_s, 3),
        "update_upsert_s": round(upsert_s, 3),
        "update_save_s": round(update_save_s, 3),
    }


def main() -> None:
    """Run each size in a child process; print and save the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return
    if any(not 10 <= s <= 1_000_000 for s in args.sizes):
        parser.error("sizes must be between 10 and 1,000,000")

    before = machine()
    runs = []
    for size in args.sizes:
        print(f"building {size:,} texts ...", file=sys.stderr, flush=True)
        out = subprocess.run(  # noqa: S603 (this script, fixed arguments)
            [sys.executable, __file__, "--child", str(size)],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    after = machine()
    body = {
        "benchmark": "index_build",
        "backend": os.environ.get("FAQLOOP_EMBED_BACKEND", "torch"),
        "machine_before": before,
        "machine_after": after,
    }
    body["runs"] = runs
    print(
        f"index build: {before['cpus']} CPUs, load {before['load_1min']} -> "
        f"{after['load_1min']}; {TEXTS_PER_ENTRY} texts per entry, half English, half Japanese"
    )
    print_table(
        [
            "texts",
            "entries",
            "build s",
            "embed s",
            "texts/s",
            "FAISS+BM25 s",
            "save s",
            "load s",
            "peak RSS MB",
            "build +MB",
            "search ms",
            "update s",
        ],
        [
            [
                f"{r['texts']:,}",
                f"{r['entries']:,}",
                r["build_s"],
                r["embed_s"],
                r["texts_per_s"],
                r["index_structures_s"],
                r["save_s"],
                r["load_s"],
                r["peak_rss_mb"],
                round(r["peak_rss_mb"] - r["rss_before_build_mb"], 1),
                r["hybrid_search_without_embedding_p50_ms"],
                r["update_one_entry_s"],
            ]
            for r in runs
        ],
    )
    print(f"written to {write_result('index_build', body, args.json)}")


if __name__ == "__main__":
    main()
