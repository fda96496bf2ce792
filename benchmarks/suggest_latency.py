"""Single-post suggest latency in-process on a 1,000-entry knowledge base.

    .venv/bin/python benchmarks/suggest_latency.py [--entries 1000] [--queries 300]

Entries come from the shared eval sets (English StackFAQ first, then Japanese JSTS), are
written through the real services into a temporary SQLite database and indexed with the
configured model (FAQLOOP_EMBEDDING_MODEL, default multilingual-e5-small). Each query then
goes through `kb.suggest.service.suggest` exactly as POST /v1/suggest does (clean, embed one post,
FAISS + BM25, fuse, calibrate, look up the entries, record the suggestion). Prints p50/p95.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from api.state import build_services  # noqa: E402
from kb.db import migrate, session_scope  # noqa: E402
from kb.faqs.entries import create_entry  # noqa: E402
from kb.suggest.service import suggest  # noqa: E402
from kb.text.language import detect_language  # noqa: E402

EVAL = ROOT.parent / "shared" / "eval"


def _rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def main() -> None:
    """Build the knowledge base, warm up, time the queries, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--eval-dir", type=Path, default=EVAL)
    args = parser.parse_args()

    faqs = _rows(args.eval_dir / "stackfaq" / "faqs.jsonl") + _rows(
        args.eval_dir / "jsts_ja" / "faqs.jsonl"
    )
    queries = _rows(args.eval_dir / "stackfaq" / "queries.jsonl") + _rows(
        args.eval_dir / "jsts_ja" / "queries.jsonl"
    )
    faqs = faqs[: args.entries]
    rng = np.random.default_rng(0)
    picked = [queries[i] for i in rng.permutation(len(queries))[: args.queries]]

    with tempfile.TemporaryDirectory(prefix="faqloop-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), sync_interval=3600, _env_file=None)  # type: ignore[call-arg]
        migrate(settings.db_url)
        started = time.perf_counter()
        services = build_services(settings)
        load_s = time.perf_counter() - started
        with session_scope(services.session_factory) as session:
            for n, row in enumerate(faqs):
                question = str(row["question"])
                create_entry(
                    session,
                    question=question,
                    answer=str(row["answer"]) or question,
                    category="bench",
                    language=detect_language(question),
                    slug=f"bench-{n}",
                )
        started = time.perf_counter()
        services.index.rebuild(services.session_factory)
        build_s = time.perf_counter() - started
        info = services.index.describe()

        def one(text: str) -> float:
            t0 = time.perf_counter()
            with session_scope(services.session_factory) as session:
                suggest(
                    session,
                    services.index,
                    services.calibration,
                    services.policy,
                    text=text,
                )
            return (time.perf_counter() - t0) * 1000

        for row in picked[:20]:  # warm-up: first calls pay for lazy initialisation
            one(str(row["text"]))
        times = [one(str(row["text"])) for row in picked]
        encode = []
        for row in picked[:100]:
            t0 = time.perf_counter()
            services.embedder.encode_queries([str(row["text"])])
            encode.append((time.perf_counter() - t0) * 1000)
        services.close()

    p50, p95 = np.percentile(times, [50, 95])
    print(f"model {info['model']}: {info['entries']} entries, {info['texts']} indexed texts")
    print(f"model load {load_s:.1f} s, index build {build_s:.1f} s")
    print(
        f"suggest in-process, {len(times)} single posts: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
        f"mean {statistics.fmean(times):.1f} ms"
    )
    print(f"of which embedding one post: p50 {np.percentile(encode, 50):.1f} ms")


if __name__ == "__main__":
    main()
