"""How well the duplicate detector separates duplicates from neighbouring articles.

    .venv/bin/python benchmarks/duplicate_detection.py [--stackfaq ../shared/eval/stackfaq]

Scores pairs with the shipped `kb.health.duplicates.duplicate_score` (0.8 × question
similarity + 0.2 × IDF-weighted word overlap; question texts embedded by the configured
model):

- negatives, seed content: every same-language pair of the 106 seed articles (53 topics,
  ja and en; neighbours such as eSIM on iPhone vs on Android are the hard cases);
- negatives, StackFAQ: pairs of different topics;
- positives, StackFAQ: for every topic with two answers, article A = the topic's question,
  its first answer and three block-0 user paraphrases; article B = a block-1 paraphrase as
  the title, the second answer and three more block-1 paraphrases (two people writing an
  article for one question).

Prints the highest negative score, recall of the positives at several thresholds, and the
false positives there. No training: the weights and the threshold are chosen from these
figures (docs/health.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.settings import Settings  # noqa: E402
from indexer.embedding.encoders import load_embedder  # noqa: E402
from indexer.lexical.tokenizer import default_tokenizer  # noqa: E402
from kb.faqs.content import read_content_dir  # noqa: E402
from kb.health.duplicates import duplicate_score  # noqa: E402

THRESHOLDS = (0.78, 0.79, 0.80, 0.81, 0.82, 0.83, 0.85)


def idf(term_sets: list[set[str]]) -> dict[str, float]:
    """The detector's IDF over one collection (log(1 + N / df))."""
    df: dict[str, int] = defaultdict(int)
    for terms in term_sets:
        for t in terms:
            df[t] += 1
    n = len(term_sets)
    return {t: float(np.log(1 + n / c)) for t, c in df.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stackfaq", type=Path, default=ROOT.parent / "shared/eval/stackfaq")
    args = parser.parse_args()
    settings = Settings()
    embedder = load_embedder(settings.embedding_model, settings.models_dir)
    tokenizer = default_tokenizer()

    def prepare(docs: list[list[str]]) -> tuple[list[np.ndarray], list[set[str]]]:
        flat = [t for d in docs for t in d]
        vectors = np.asarray(embedder.encode_queries(flat), dtype=np.float64)
        out, start = [], 0
        for d in docs:
            out.append(vectors[start : start + len(d)])
            start += len(d)
        return out, [set(tokenizer.tokenize(" ".join(d))) for d in docs]

    seed_scores = []
    articles = read_content_dir(settings.content_dir)
    for lang in ("ja", "en"):
        group = [a for a in articles if a.language == lang]
        vecs, terms = prepare([[a.question, *a.questions] for a in group])
        weights = idf(terms)
        for i, j in itertools.combinations(range(len(group)), 2):
            score = duplicate_score(vecs[i], vecs[j], terms[i], terms[j], weights)[0]
            seed_scores.append((score, group[i].slug, group[j].slug))

    faqs = [json.loads(x) for x in (args.stackfaq / "faqs.jsonl").open(encoding="utf-8")]
    queries = [json.loads(x) for x in (args.stackfaq / "queries.jsonl").open(encoding="utf-8")]
    meta = {
        m["id"]: m
        for m in map(json.loads, (args.stackfaq / "query_meta.jsonl").open(encoding="utf-8"))
    }
    topics: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for f in faqs:
        topics[f["id"][:4]]["question"] = [f["question"]]
        topics[f["id"][:4]]["answers"].append(f["answer"])
    for q in queries:
        m = meta[q["id"]]
        topics[m["thread"]][f"block{m['block']}"].append(q["text"])
    docs, pairs = [], []
    for key in sorted(topics):
        t = topics[key]
        if len(t["answers"]) < 2 or len(t["block1"]) < 4:
            continue
        docs.append([t["question"][0], *t["block0"][:3]])
        docs.append(t["block1"][:4])
        pairs.append((len(docs) - 2, len(docs) - 1))
    vecs, terms = prepare(docs)
    weights = idf(terms)
    positives = np.array(
        [duplicate_score(vecs[a], vecs[b], terms[a], terms[b], weights)[0] for a, b in pairs]
    )
    stack_negatives = np.array(
        [
            duplicate_score(
                vecs[pairs[x][0]],
                vecs[pairs[y][0]],
                terms[pairs[x][0]],
                terms[pairs[y][0]],
                weights,
            )[0]
            for x, y in itertools.combinations(range(len(pairs)), 2)
        ]
    )
    seed = np.array([s for s, _, _ in seed_scores])
    print(f"model {embedder.name}")
    print(
        f"seed content: {len(seed)} same-language pairs, highest score {seed.max():.3f} "
        f"({max(seed_scores)[1]} / {max(seed_scores)[2]})"
    )
    print(
        f"StackFAQ: {len(positives)} duplicate pairs, {len(stack_negatives)} other pairs, "
        f"highest other {stack_negatives.max():.3f}"
    )
    print(f"{'threshold':>10}{'recall':>9}{'seed FP':>9}{'StackFAQ FP':>13}")
    for t in THRESHOLDS:
        print(
            f"{t:>10.2f}{np.mean(positives >= t):>9.3f}{int(np.sum(seed >= t)):>9}"
            f"{int(np.sum(stack_negatives >= t)):>13}"
        )


if __name__ == "__main__":
    main()
