"""Retrieval quality per embedding backend (torch, onnx, onnx-int8), side by side.

    .venv/bin/python benchmarks/backend_quality.py                      # all three backends
    .venv/bin/python benchmarks/backend_quality.py --backends torch,onnx-int8 --quick

For each backend: `faqloop eval`'s dense and hybrid MRR@10 (and R@10) on the shared sets
(../shared/eval/stackfaq and jsts_ja, the same code as the command), hit@1 / hit@3 on the 80
customer-style posts of tests/data/suggest_cases.yaml against faq_content/ (hybrid, each
post cleaned and searched in its language, as suggest does), and how far the backend's
query vectors are from the first backend's (cosine, min and median over every query).
Prints one table with each figure's change from the first backend in points (0.5 points =
0.005), the budget of the default backend (docs/scale.md, "Backends"); writes
benchmarks/results/backend_quality.json. The model folder is FAQLOOP_MODELS_DIR's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from indexer.embedding.encoders import backend_of, load_embedder  # noqa: E402
from indexer.embedding.onnx_backend import BACKENDS  # noqa: E402
from indexer.lexical.tokenizer import default_tokenizer  # noqa: E402
from kb.faqs.content import read_content_dir  # noqa: E402
from kb.indexing import IndexRecipe  # noqa: E402
from kb.suggest.evaluation import (  # noqa: E402
    build_index,
    content_index,
    evaluate,
    load_dataset,
    query_text,
)
from kb.text.cleaning import clean_post  # noqa: E402
from kb.text.language import detect_language, normalize_text  # noqa: E402

SETS = (ROOT.parent / "shared" / "eval" / "stackfaq", ROOT.parent / "shared" / "eval" / "jsts_ja")


def _posts(embedder: Any, tokenizer: Any) -> tuple[dict[str, float], list[str]]:
    articles = read_content_dir(ROOT / "faq_content")
    slugs = {n: a.slug for n, a in enumerate(articles, 1)}
    cases = yaml.safe_load((ROOT / "tests" / "data" / "suggest_cases.yaml").read_text())
    index = content_index(articles, embedder, tokenizer, IndexRecipe())
    at1 = at3 = 0
    texts = []
    for case in cases:
        text = clean_post(case["text"]) or normalize_text(case["text"])
        texts.append(text)
        hits = index.search(text, k=10, language=detect_language(text)).hits
        ranked = [slugs[h.entry_id] for h in hits]
        at1 += ranked[:1] == [case["expect"]]
        at3 += case["expect"] in ranked[:3]
    n = len(cases)
    return {"posts_hit@1": at1 / n, "posts_hit@3": at3 / n}, texts


class Prepared:
    """The embedder, with the query vectors of a whole set computed up front in batches.

    `faqloop eval` embeds each query alone (it also times them); on a busy 2-core machine
    that takes many minutes per backend. Batches give the same vectors here: fp32 differs
    by round-off only and the int8 recipe quantises activations per block of each token's
    row, so a text's vector does not depend on its batch (checked by
    tests/indexer/test_onnx_backend.py). Texts not prepared go to the model.
    """

    def __init__(self, inner: Any, texts: list[str]) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        unique = list(dict.fromkeys(texts))
        self._vectors = dict(zip(unique, inner.encode_queries(unique), strict=True))

    def encode_queries(self, texts: list[str]) -> Any:
        if all(t in self._vectors for t in texts):
            return np.stack([self._vectors[t] for t in texts])
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str]) -> Any:
        return self.inner.encode_passages(texts)


def measure(
    backend: str, sets: list[Path], settings: Settings, limit: int | None
) -> dict[str, Any]:
    started = time.perf_counter()
    embedder = load_embedder(
        settings.embedding_model,
        settings.models_dir,
        backend=backend,
        threads=settings.torch_threads,
    )
    loaded = backend_of(embedder)
    tokenizer = default_tokenizer()
    figures: dict[str, float] = {}
    queries: list[str] = []
    for path in sets:
        data = load_dataset(path)
        if limit:
            data.queries = data.queries[:limit]
        prepared = Prepared(embedder, [query_text(q.text) for q in data.queries])
        index, ids = build_index(data, prepared, tokenizer)
        reports = evaluate(data, index, ids, modes=("dense", "hybrid"))
        for mode, rep in reports.items():
            figures[f"{data.name} {mode} MRR@10"] = rep.metrics["mrr@10"]
            figures[f"{data.name} {mode} R@10"] = rep.metrics["recall@10"]
        queries += [q.text for q in data.queries]
        print(f"  {backend}: {data.name} done", file=sys.stderr, flush=True)
    posts, post_texts = _posts(embedder, tokenizer)
    figures.update(posts)
    vectors = embedder.encode_queries([query_text(t) for t in queries] + post_texts)
    return {
        "backend": backend,
        "loaded": loaded,
        "model": embedder.name,
        "figures": figures,
        "vectors": vectors,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--sets", nargs="*", type=Path, default=list(SETS))
    parser.add_argument("--quick", action="store_true", help="first 200 queries of each set")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not backends:
        parser.error(f"unknown backends {unknown}; choose from {', '.join(BACKENDS)}")
    for path in args.sets:
        if not (path / "queries.jsonl").is_file():
            parser.error(f"{path} is not an evaluation set (no queries.jsonl)")
    settings = Settings()
    runs = [measure(b, args.sets, settings, 200 if args.quick else None) for b in backends]
    base = runs[0]
    names = list(base["figures"])
    width = max(len(n) for n in names) + 2
    head = "".join(f"{r['backend']:>22}" for r in runs)
    print(f"{'':<{width}}{head}")
    for name in names:
        row = f"{name:<{width}}"
        for r in runs:
            value = r["figures"][name]
            delta = (value - base["figures"][name]) * 100
            row += f"{value:>12.3f} ({delta:+5.2f})" if r is not base else f"{value:>22.3f}"
        print(row)
    agreement = {}
    for r in runs[1:]:
        cos = np.sum(r["vectors"] * base["vectors"], axis=1)
        agreement[r["backend"]] = {
            "min_cosine": float(cos.min()),
            "median_cosine": float(np.median(cos)),
        }
        print(
            f"query vectors of {r['backend']} vs {base['backend']}: cosine min "
            f"{cos.min():.6f}, median {np.median(cos):.6f} ({len(cos)} queries and posts)"
        )
    for r in runs:
        if r["loaded"] != r["backend"]:
            print(f"WARNING: {r['backend']} fell back to {r['loaded']} (see the log)")
    args.out.mkdir(parents=True, exist_ok=True)
    body = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "quick": args.quick,
        "runs": [{k: v for k, v in r.items() if k != "vectors"} for r in runs],
        "agreement_with_first": agreement,
    }
    (args.out / "backend_quality.json").write_text(json.dumps(body, indent=2) + "\n")


if __name__ == "__main__":
    main()
