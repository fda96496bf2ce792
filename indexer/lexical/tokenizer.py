"""Lexical analysis for BM25: Sudachi for Japanese, a stemmed word analyser for English."""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache
from typing import Any, Literal

import Stemmer

from indexer.lexical.scripts import JAPANESE, JAPANESE_CHAR

_JA = JAPANESE_CHAR
_WORD = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?")
# Scripts written without spaces between words (Thai) or read best as syllable bigrams
# (Hangul), and words of any other script.
_HANGUL_THAI = "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af\u0e00-\u0e7f"
_SYLLABIC = re.compile(f"[{_HANGUL_THAI}]")
_GENERIC_RUN = re.compile(f"[{_HANGUL_THAI}]+|[^\\W_{_HANGUL_THAI}]+(?:['’][^\\W_]+)?")

# A short English stop list: function words that BM25's IDF would only partly discount and
# that make "how do I ..." questions all look alike.
_EN_STOP_TEXT = """
a an the and or but if of to in on at by for with from as is are was were be been being do
does did doing have has had i me my we our you your it its this that these those there here
what which who whom how why when where can could should would will shall may might must am so
than too very just not no
"""
EN_STOPWORDS = frozenset(_EN_STOP_TEXT.split())

# Sudachi parts of speech that carry no topic: particles, auxiliaries, symbols, blanks.
_JA_SKIP_POS = frozenset({"助詞", "助動詞", "補助記号", "空白", "記号"})
# Light verbs and formal nouns (normalised forms) that appear in almost every question.
JA_STOPWORDS = frozenset(
    {
        "為る",
        "成る",
        "居る",
        "有る",
        "御座る",
        "致す",
        "下さる",
        "頂く",
        "事",
        "物",
        "様",
        "此れ",
        "其れ",
        "何",
        "どう",
        "ちゃう",
        "の",
        "ん",
    }
)


JaMode = Literal["A", "B", "C", "bigram"]


class Tokenizer:
    """Turns text into index terms; thread-safe (one Sudachi instance per thread).

    `ja_mode` picks Sudachi's split mode (A short units, C long units) or plain character
    bigrams; `stem` turns the English stemmer off. The defaults won the comparison in
    docs/retrieval.md ("Japanese and English analysers").
    """

    def __init__(self, *, ja_mode: JaMode = "B", stem: bool = True) -> None:
        self.ja_mode = ja_mode
        self.stem = stem
        self._local = threading.local()
        self._stemmer = Stemmer.Stemmer("english")
        # One Sudachi dictionary (a 200 MB memory map) shared by the per-thread tokenizers:
        # a dictionary per thread cost seconds per new server thread and counted the map
        # again in the resident memory of every thread that tokenised Japanese.
        self._dictionary: Any = None
        self._dictionary_lock = threading.Lock()

    @property
    def name(self) -> str:
        """Identifies the analysis (recorded in index manifests)."""
        return f"ja-{self.ja_mode}{'' if self.stem else '-nostem'}"

    def _sudachi(self) -> Any:
        tok = getattr(self._local, "sudachi", None)
        if tok is None:
            from sudachipy import Dictionary, SplitMode

            mode = {"A": SplitMode.A, "B": SplitMode.B, "C": SplitMode.C}[self.ja_mode]
            with self._dictionary_lock:
                if self._dictionary is None:
                    self._dictionary = Dictionary(dict="core")
                dictionary = self._dictionary
            tok = dictionary.tokenizer(mode=mode)
            self._local.sudachi = tok
        return tok

    def tokenize(self, text: str) -> list[str]:
        """Index terms of `text`: Japanese runs by Sudachi (mode A, normalised forms)."""
        text = unicodedata.normalize("NFKC", text).lower()
        if not _JA.search(text):
            return self._english(text)
        if self.ja_mode == "bigram":
            return self._bigrams(text)
        terms: list[str] = []
        # Sudachi's input limit is about 49 KB; FAQ texts are far below, but stay safe.
        for chunk in _chunks(text, 8000):
            for m in self._sudachi().tokenize(chunk):
                pos = m.part_of_speech()[0]
                if pos in _JA_SKIP_POS:
                    continue
                surface = m.surface()
                if not _JA.search(surface):
                    terms.extend(self._english(surface))
                    continue
                norm = m.normalized_form()
                if norm not in JA_STOPWORDS:
                    terms.append(norm)
        return terms

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """Where the terms of `tokenize` stand in `text`: (start, end, term), offsets into
        `text` as given, so a page can mark the words a search matched. The text is
        normalised character by character (tokenize does the whole text at once; the terms
        are the same for everything but characters that NFKC composes with a neighbour)."""
        origin: list[int] = []  # normalised position -> position in `text`
        parts: list[str] = []
        for i, ch in enumerate(text):
            norm = unicodedata.normalize("NFKC", ch).lower()
            parts.append(norm)
            origin.extend([i] * len(norm))
        norm_text = "".join(parts)

        def place(found: list[tuple[int, int, str]], base: int) -> list[tuple[int, int, str]]:
            return [
                (origin[base + a], origin[base + b - 1] + 1, term) for a, b, term in found if b > a
            ]

        if not _JA.search(norm_text):
            return place(self._english_spans(norm_text), 0)
        out: list[tuple[int, int, str]] = []
        if self.ja_mode == "bigram":
            for m in re.finditer(f"[{JAPANESE}]+|[a-z0-9]+", norm_text):
                run = m.group(0)
                if not _JA.search(run):
                    out.extend(place(self._english_spans(run), m.start()))
                elif len(run) == 1:
                    out.extend(place([(0, 1, run)], m.start()))
                else:
                    pairs = [(i, i + 2, run[i : i + 2]) for i in range(len(run) - 1)]
                    out.extend(place(pairs, m.start()))
            return out
        for base in range(0, len(norm_text), 8000):
            chunk = norm_text[base : base + 8000]
            for m in self._sudachi().tokenize(chunk):
                if m.part_of_speech()[0] in _JA_SKIP_POS:
                    continue
                surface = m.surface()
                if not _JA.search(surface):
                    out.extend(place(self._english_spans(surface), base + m.begin()))
                    continue
                norm = m.normalized_form()
                if norm not in JA_STOPWORDS:
                    out.extend(place([(0, len(surface), norm)], base + m.begin()))
        return out

    def _english_spans(self, text: str) -> list[tuple[int, int, str]]:
        """`_english` (and `_generic`) with the offsets of each term in `text`."""
        if not text.isascii():
            out: list[tuple[int, int, str]] = []
            for m in _GENERIC_RUN.finditer(text):
                run = m.group(0)
                if run.isascii():
                    out.extend(
                        (m.start() + a, m.start() + b, t) for a, b, t in self._english_spans(run)
                    )
                elif _SYLLABIC.match(run):
                    if len(run) == 1:
                        out.append((m.start(), m.end(), run))
                    else:
                        out.extend(
                            (m.start() + i, m.start() + i + 2, run[i : i + 2])
                            for i in range(len(run) - 1)
                        )
                else:
                    out.append((m.start(), m.end(), run))
            return out
        words = [m for m in _WORD.finditer(text) if m.group(0) not in EN_STOPWORDS]
        terms = [m.group(0) for m in words]
        if self.stem:
            terms = [str(s) for s in self._stemmer.stemWords(terms)]
        return [(m.start(), m.end(), term) for m, term in zip(words, terms, strict=True)]

    def _english(self, text: str) -> list[str]:
        if not text.isascii():
            return self._generic(text)
        words = [w for w in _WORD.findall(text) if w not in EN_STOPWORDS]
        if not self.stem:
            return words
        return [str(s) for s in self._stemmer.stemWords(words)]

    def _generic(self, text: str) -> list[str]:
        """Other languages: bigrams of Hangul and Thai runs (no spaces between Thai words,
        and Korean words carry their particles), whole lower-case words otherwise (accents
        kept: es, fr, de, pt, vi, id); ASCII words still go through the English analysis."""
        terms: list[str] = []
        for m in _GENERIC_RUN.finditer(text):
            run = m.group(0)
            if run.isascii():
                terms.extend(self._english(run))
            elif _SYLLABIC.match(run):
                terms.extend(
                    [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]
                )
            else:
                terms.append(run)
        return terms

    def _bigrams(self, text: str) -> list[str]:
        terms: list[str] = []
        for run in re.findall(f"[{JAPANESE}]+|[a-z0-9]+", text):
            if not _JA.search(run):
                terms.extend(self._english(run))
            elif len(run) == 1:
                terms.append(run)
            else:
                terms.extend(run[i : i + 2] for i in range(len(run) - 1))
        return terms


def _chunks(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


@lru_cache(maxsize=1)
def default_tokenizer() -> Tokenizer:
    """A shared tokenizer (Sudachi's dictionary is loaded once, on first use)."""
    return Tokenizer()
