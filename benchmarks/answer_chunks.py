"""Long answers: the customer-style posts with and without one vector per answer chunk.

    .venv/bin/python benchmarks/answer_chunks.py [../shared/eval/stackfaq ...]

Indexes the seed content (faq_content/) once per recipe, as the service does: with the
answer's first paragraph only (IndexRecipe(dense_answer_chunks=1), shipped) and with every
paragraph chunked, at several discounts of a chunk's cosine. Each post of
tests/data/suggest_cases.yaml is cleaned as suggest cleans it and searched in its language
(hybrid); prints hit@1, hit@3 and MRR@10 per recipe and the number of dense texts indexed.
Each data set folder given (faqs.jsonl + queries.jsonl, as `faqloop eval` reads them) is
indexed with every recipe too: dense and hybrid R@1 and MRR@10, queries cleaned as suggest
cleans them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from indexer.embedding.encoders import VectorCache, load_embedder  # noqa: E402
from indexer.lexical.tokenizer import default_tokenizer  # noqa: E402
from kb.faqs.content import read_content_dir  # noqa: E402
from kb.indexing import IndexRecipe, entry_docs  # noqa: E402
from kb.suggest.evaluation import build_index, content_index, evaluate, load_dataset  # noqa: E402
from kb.text.cleaning import clean_post  # noqa: E402
from kb.text.language import detect_language, normalize_text  # noqa: E402

RECIPES = (
    ("first paragraph only", IndexRecipe(dense_answer_chunks=1)),
    ("8 chunks, no discount", IndexRecipe(dense_answer_chunks=8, chunk_discount=0.0)),
    *(
        (f"8 chunks, discount {d:.3f}", IndexRecipe(dense_answer_chunks=8, chunk_discount=d))
        for d in (0.01, 0.015, 0.02, 0.025, 0.03, 0.04)
    ),
)


class QueryMemo:
    """The service's embedder (which already caches passages) with its query vectors kept
    too, in the same cache type: every recipe searches the same queries."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self._queries = VectorCache(inner.dim, max_items=100_000)

    def encode_passages(self, texts: list[str]) -> Any:
        return self.inner.encode_passages(texts)

    def encode_queries(self, texts: list[str]) -> Any:
        return self._queries.encode(texts, self.inner.encode_queries)


def shared_set(path: Path, embedder: object, tokenizer: object) -> None:
    dataset = load_dataset(path)
    print(f"\n{dataset.name}: {len(dataset.faqs)} FAQs, {len(dataset.queries)} queries")
    print(f"{'recipe':<28}{'mode':>8}{'R@1':>8}{'MRR@10':>8}")
    for name, recipe in RECIPES:
        index, ids = build_index(dataset, embedder, tokenizer, recipe=recipe)  # type: ignore[arg-type]
        reports = evaluate(dataset, index, ids, modes=("dense", "hybrid"))
        for mode, report in reports.items():
            m = report.metrics
            print(f"{name:<28}{mode:>8}{m['recall@1']:>8.3f}{m['mrr@10']:>8.3f}")


def main() -> None:
    settings = Settings()
    embedder = QueryMemo(
        load_embedder(settings.embedding_model, settings.models_dir, backend=settings.embed_backend)
    )
    tokenizer = default_tokenizer()
    articles = read_content_dir(ROOT / "faq_content")
    slugs = {n: a.slug for n, a in enumerate(articles, 1)}
    cases = yaml.safe_load((ROOT / "tests" / "data" / "suggest_cases.yaml").read_text())
    print(f"{len(articles)} articles, {len(cases)} posts, model {embedder.name}")
    print(f"{'recipe':<28}{'texts':>7}{'hit@1':>8}{'hit@3':>8}{'MRR@10':>8}")
    for name, recipe in RECIPES:
        index = content_index(articles, embedder, tokenizer, recipe)
        at1 = at3 = rr = 0.0
        for case in cases:
            text = clean_post(case["text"]) or normalize_text(case["text"])
            hits = index.search(text, k=10, language=detect_language(text)).hits
            ranked = [slugs[h.entry_id] for h in hits]
            at1 += ranked[:1] == [case["expect"]]
            at3 += case["expect"] in ranked[:3]
            rr += next((1 / (i + 1) for i, s in enumerate(ranked) if s == case["expect"]), 0.0)
        n = len(cases)
        texts = sum(
            len(entry_docs(n, a.language, a.question, a.answer, a.questions, recipe).dense_texts)
            for n, a in enumerate(articles, 1)
        )
        print(f"{name:<28}{texts:>7}{at1 / n:>8.3f}{at3 / n:>8.3f}{rr / n:>8.3f}")
    for arg in sys.argv[1:]:
        shared_set(Path(arg), embedder, tokenizer)


if __name__ == "__main__":
    main()
