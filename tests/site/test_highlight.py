"""Matched words, snippets, meta descriptions and the per-result confidence, without the app."""

from __future__ import annotations

import math

import pytest

from indexer.lexical.tokenizer import Tokenizer, default_tokenizer
from indexer.retrieval.confidence import ConfidenceModel
from indexer.retrieval.hybrid import Hit, SearchResult
from kb.faqs.content import Article
from kb.site.highlight import ELLIPSIS, Piece, first_sentence, mark, snippet
from kb.site.search import hit_confidence


def marked(pieces: list[Piece]) -> list[str]:
    return [p.text for p in pieces if p.matched]


@pytest.mark.parametrize("mode", ["B", "bigram"])
def test_spans_give_the_terms_of_tokenize_at_their_place(
    seed_articles: list[Article], mode: str
) -> None:
    tokenizer = Tokenizer(ja_mode=mode)  # type: ignore[arg-type]
    texts = [t for a in seed_articles for t in (a.question, a.answer, *a.questions)]
    texts += [
        "ｅＳＩＭが開通しない",
        "Ｗｉ－Ｆｉ　ＡＰＮ",
        "¿Cómo activo la eSIM?",
        "eSIM 개통이 안 돼요",
    ]
    for text in texts:
        spans = tokenizer.spans(text)
        assert [term for _, _, term in spans] == tokenizer.tokenize(text), text
        for start, end, term in spans:
            assert 0 <= start < end <= len(text)
            if mode == "B" and text[start:end].isascii():
                # An English word is the stem's source: the same analysis gives the same term.
                assert tokenizer.tokenize(text[start:end]) == [term]


def test_english_words_match_by_their_stem() -> None:
    tok = default_tokenizer()
    terms = tok.tokenize("How do I reset my password?")
    pieces = mark("Forgot your passwords? Resetting takes a minute.", terms, tok)
    assert marked(pieces) == ["passwords", "Resetting"]
    assert "".join(p.text for p in pieces) == "Forgot your passwords? Resetting takes a minute."


def test_japanese_words_match_by_their_normalised_form() -> None:
    tok = default_tokenizer()
    terms = tok.tokenize("パスワードを忘れてしまった")
    text = "パスワードを忘れた場合は、ログイン画面から再設定できます。"
    assert marked(mark(text, terms, tok)) == ["パスワード", "忘れ"]
    # Full-width letters are the same word as the half-width ones typed.
    assert marked(mark("ｅＳＩＭの開通手続き", tok.tokenize("eSIM 開通"), tok)) == [
        "ｅＳＩＭ",
        "開通",
    ]


def test_neighbouring_matches_are_one_mark_and_nothing_is_markup() -> None:
    tok = default_tokenizer()
    text = '<b onclick="x">password reset</b> & more'
    pieces = mark(text, tok.tokenize("password reset"), tok)
    assert marked(pieces) == ["password reset"]
    # Pieces are plain text: the page escapes each one (tests/site/test_search_seo.py).
    assert "".join(p.text for p in pieces) == text
    assert mark("", ["x"], tok) == [] and marked(mark("no match here", [], tok)) == []


def test_snippet_shows_the_paragraph_with_the_searched_word() -> None:
    tok = default_tokenizer()
    answer = (
        "Open **My Sorami** first.\n\n"
        + "Lorem ipsum dolor sit amet. " * 8
        + ("When you are abroad, roaming charges apply per day.")
    )
    text = snippet(answer, tok.tokenize("roaming abroad"), tok)
    assert len(text) <= 160 and text.startswith(ELLIPSIS)
    assert "abroad" in text and "roaming" in text and "**" not in text
    # Without a match: the first paragraph, as plain text.
    assert snippet(answer, tok.tokenize("pizza"), tok) == "Open My Sorami first."
    assert snippet("", ["x"], tok) == ""


def test_first_sentence_is_plain_and_short() -> None:
    # A bare first sentence says nothing alone: the next ones follow while they fit.
    md = "**Yes.** You can [keep](https://x.test) your number. It takes a day.\n\nMore."
    assert first_sentence(md) == "Yes. You can keep your number. It takes a day."
    assert (
        first_sentence("はい、できます。手続きは5分です。") == "はい、できます。手続きは5分です。"
    )
    full = "You can keep your current number when you move to Sorami Mobile. It takes a day."
    assert (
        first_sentence(full) == "You can keep your current number when you move to Sorami Mobile."
    )
    assert first_sentence("1. Open My Sorami and log in to your account. 2. Tap Data.") == (
        "Open My Sorami and log in to your account."
    )
    long = "You can " + "really " * 40 + "do it."
    text = first_sentence(long)
    assert len(text) <= 160 and text.endswith(ELLIPSIS) and not text.endswith(" " + ELLIPSIS)
    assert first_sentence("\n\n") == ""


def _result(*dense: float) -> SearchResult:
    hits = [
        Hit(entry_id=i, score=d, dense=d, matched_text=f"t{i}", coverage=0.5)
        for i, d in enumerate(dense)
    ]
    return SearchResult(hits=hits, mode="hybrid", language="en")


def test_a_lower_result_is_judged_as_if_first_against_the_same_competitors() -> None:
    model = ConfidenceModel(
        model="m", weights={"dense_top": 40.0, "dense_margin": 40.0, "coverage": 2.0}, bias=-35.0
    )
    result = _result(0.92, 0.91, 0.70)
    assert hit_confidence(model, result, 0) == model.confidence(result)  # suggest's
    second = hit_confidence(model, result, 1)
    alone = model.confidence(_result(0.91, 0.70))  # the same hit without the one above it
    assert second < alone  # the better hit above counts against it (no margin)
    z = -35.0 + 40.0 * 0.91 + 2.0 * 0.5  # margin over the best competitor: none
    assert math.isclose(second, 1 / (1 + math.exp(-z)))
    assert hit_confidence(model, result, 2) < second
