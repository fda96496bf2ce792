"""Long answers are searchable: every paragraph of an answer is a dense text (chunked), the
entry scores its best text, and the recipe in the index manifest says so (old indexes are
rebuilt)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from indexer.embedding.encoders import CachedEmbedder
from indexer.lexical.tokenizer import default_tokenizer
from indexer.retrieval.hybrid import HybridIndex
from kb.indexing import CHUNK_CHARS, IndexRecipe, answer_chunks, entry_docs

LONG_ANSWER = (
    "海外でのご利用には、出発前に国際ローミングの設定が必要です。\n\n"
    "料金は1日980円の定額で、データ通信量の上限は1GBです。\n\n"
    "船の上や飛行機の中では、衛星回線のため、ローミングの対象外となり、別途料金が発生します。"
    "客船の船内Wi-Fiをご利用ください。\n\n"
    "帰国後は、設定アプリからデータローミングをオフにしてください。"
)
OTHER = [
    ("パスワードを忘れた", "ログイン画面の「パスワードをお忘れの方」から再設定できます。"),
    ("機種変更の手続き", "My Soramiから機種変更を申し込めます。"),
    ("船の上で電話はつながりますか", "陸から近い海上では、国内の電波が届く範囲でつながります。"),
]


def test_every_paragraph_is_a_chunk_and_long_ones_are_cut_at_sentence_ends() -> None:
    chunks = answer_chunks(LONG_ANSWER, 8)
    assert len(chunks) == 4 and chunks[2].startswith("船の上や飛行機")
    long = "これは長い文です。" * 100
    pieces = answer_chunks(long, 8)
    assert all(len(p) <= CHUNK_CHARS for p in pieces) and len(pieces) == 3
    assert all(p.endswith("。") for p in pieces)  # cut between sentences
    assert "".join(pieces) == long
    assert len(answer_chunks("one.\n\ntwo.\n\nthree.\n\nfour.", 2)) == 2  # bounded
    assert answer_chunks(" \n\n ", 8) == []


def test_a_later_paragraph_matches_when_the_recipe_chunks_answers(embedder: CachedEmbedder) -> None:
    query = "クルーズ船に乗っている間もローミング料金は定額ですか?"

    def rank(recipe: IndexRecipe) -> list[int]:
        index = HybridIndex(embedder, default_tokenizer())
        docs = [entry_docs(1, "ja", "海外で使うには", LONG_ANSWER, [], recipe)]
        docs += [entry_docs(n, "ja", q, a, [], recipe) for n, (q, a) in enumerate(OTHER, 2)]
        index.upsert(docs)
        return [h.entry_id for h in index.search(query, k=4, language="ja", mode="dense").hits]

    chunked = rank(IndexRecipe())  # the shipped recipe: chunks, discounted
    assert chunked[0] == 1
    first_only = rank(IndexRecipe(dense_answer_chunks=1))
    assert first_only.index(1) >= chunked.index(1)


def test_a_chunk_counts_its_cosine_less_the_discount(embedder: CachedEmbedder) -> None:
    """The entry's dense score is its best text's cosine, a chunk's less the discount: the
    same question and answer score exactly `discount` lower when only the chunk matches."""
    query = "船の上や飛行機の中ではローミングの対象外ですか"
    recipe = IndexRecipe()
    assert recipe.chunk_discount > 0
    docs = entry_docs(1, "ja", "パスワードを忘れた", LONG_ANSWER, [], recipe)
    assert docs.discount(0) == 0.0  # the question
    chunk_at = next(i for i, t in enumerate(docs.dense_texts) if t.startswith("船の上や飛行機"))
    assert docs.discount(chunk_at) == recipe.chunk_discount
    index = HybridIndex(embedder, default_tokenizer())
    index.upsert([docs])
    hit = index.search(query, k=1, language="ja", mode="dense").hits[0]
    assert hit.matched_text.startswith("船の上や飛行機")
    qvec = embedder.encode_queries([query])[0]
    cosine = float(qvec @ embedder.encode_passages([docs.dense_texts[chunk_at]])[0])
    assert hit.dense == pytest.approx(cosine - recipe.chunk_discount, abs=1e-5)


def test_the_recipe_key_changes_so_old_indexes_are_rebuilt() -> None:
    tokenizer = default_tokenizer().name
    default = IndexRecipe()
    assert default.dense_answer_chunks > 1
    assert default.key(tokenizer) != replace(default, dense_answer_chunks=1).key(tokenizer)
    assert default.key(tokenizer) != replace(default, chunk_discount=0.0).key(tokenizer)
    assert '"dense_answer_chunks"' in default.key(tokenizer)
    docs = entry_docs(1, "ja", "海外で使うには", LONG_ANSWER, ["海外ローミング"], default)
    assert len(docs.dense_texts) == 2 + 4
    # The lexical document is unchanged: the whole answer, once.
    assert docs.lexical_text.count("船の上や飛行機") == 1
