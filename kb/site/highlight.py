"""The words of a text that a search matched, and the snippet of an answer to show.

A word is matched when the lexical analyser (the one BM25 indexes with: Sudachi's normalised
forms for Japanese, stems for English) turns it into one of the query's terms, so "passwords"
matches "password" and 忘れた matches 忘れる. The result is plain text cut into pieces, each
marked or not: the page escapes every piece and wraps the marked ones, so no text of an
article or a query is ever markup.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from indexer.lexical.tokenizer import Tokenizer
from kb.indexing import markdown_to_text

SNIPPET_CHARS = 160
# Characters of context kept before the first matched word when a snippet starts later.
SNIPPET_LEAD = 40
ELLIPSIS = "…"
# A first sentence shorter than this is followed by the next in a meta description.
SHORT_SENTENCE = 40


@dataclass(frozen=True)
class Piece:
    """A run of text, and whether it is a matched word."""

    text: str
    matched: bool


def mark(text: str, terms: Collection[str], tokenizer: Tokenizer) -> list[Piece]:
    """`text` in pieces, the words whose term is one of `terms` marked (neighbours joined)."""
    if not text:
        return []
    wanted = set(terms)
    ranges: list[list[int]] = []
    if wanted:
        for start, end, term in tokenizer.spans(text):
            if term not in wanted:
                continue
            # Touching, overlapping (bigrams) or apart by spaces only: one mark.
            if ranges and (start <= ranges[-1][1] or text[ranges[-1][1] : start].isspace()):
                ranges[-1][1] = max(ranges[-1][1], end)
            else:
                ranges.append([start, end])
    pieces: list[Piece] = []
    at = 0
    for start, end in ranges:
        if start > at:
            pieces.append(Piece(text[at:start], False))
        pieces.append(Piece(text[start:end], True))
        at = end
    if at < len(text):
        pieces.append(Piece(text[at:], False))
    return pieces


def matched_terms(text: str, terms: Collection[str], tokenizer: Tokenizer) -> set[str]:
    """Which of `terms` occur in `text`."""
    wanted = set(terms)
    return {term for _, _, term in tokenizer.spans(text) if term in wanted}


def _cut(text: str, start: int, limit: int) -> str:
    """At most `limit` characters of `text` from `start`, with ellipses where it was cut."""
    head = ELLIPSIS if start > 0 else ""
    room = limit - len(head)
    if len(text) - start <= room:
        return head + text[start:]
    return head + text[start : start + room - 1].rstrip() + ELLIPSIS


def snippet(
    answer: str, terms: Collection[str], tokenizer: Tokenizer, limit: int = SNIPPET_CHARS
) -> str:
    """A plain-text piece of an answer (Markdown) of at most `limit` characters: the first
    paragraph holding a query term, from a little before that term; else the first paragraph.
    """
    paragraphs = [p for p in (markdown_to_text(x) for x in re.split(r"\n\s*\n", answer)) if p]
    if not paragraphs:
        return ""
    wanted = set(terms)
    if wanted:
        for text in paragraphs:
            starts = [s for s, _, term in tokenizer.spans(text) if term in wanted]
            if not starts:
                continue
            first = starts[0]
            if first + SNIPPET_LEAD < limit - len(ELLIPSIS):
                return _cut(text, 0, limit)  # the match shows from the paragraph's start
            begin = max(0, first - SNIPPET_LEAD)
            # Start at the sentence the word is in, else at a word where words are spaced.
            stop = max(text.rfind(mark, begin, first) for mark in "。！？!?.")
            start = stop + 1 if stop >= 0 else text.find(" ", begin, first) + 1 or begin
            while start < first and text[start].isspace():
                start += 1
            return _cut(text, start, limit)
    return _cut(paragraphs[0], 0, limit)


_SENTENCE = re.compile(r".+?(?:[。！？!?]|[.](?=\s|$)|$)", re.S)
_LIST_MARKER = re.compile(r"^(?:\d+[.)]|[-*+])\s+")


def first_sentence(answer: str, limit: int = SNIPPET_CHARS) -> str:
    """The answer's first sentence as plain text, at most `limit` characters (a meta
    description); a longer sentence is cut at a word boundary with an ellipsis. A bare
    first sentence ("Yes." / 「はい、交換いたします。」, under SHORT_SENTENCE characters) is
    followed by the next ones of its paragraph while they fit: "Yes." describes nothing."""
    for para in re.split(r"\n\s*\n", answer.strip()):
        text = _LIST_MARKER.sub("", markdown_to_text(para))  # "1. Open…" reads "Open…"
        if not text:
            continue
        sentences = [m.group(0).strip() for m in _SENTENCE.finditer(text) if m.group(0).strip()]
        sentence = sentences[0] if sentences else text
        if len(sentence) > limit:
            cut = sentence[: limit - 1]
            space = cut.rfind(" ")
            if space > limit // 2:
                cut = cut[:space]
            return cut.rstrip(" ,、") + ELLIPSIS
        for following in sentences[1:]:
            if len(sentence) >= SHORT_SENTENCE:
                break
            glue = "" if sentence[-1] in "。！？" else " "
            if len(sentence) + len(glue) + len(following) > limit:
                break
            sentence += glue + following
        return sentence
    return ""
