"""Text helpers shared by capture, indexing and suggestion: normalisation and language."""

from __future__ import annotations

import re
import threading
import unicodedata
from typing import Any

from indexer.lexical.scripts import HALFWIDTH_KATAKANA, JAPANESE, KANA_CHAR
from kb.text import cleaning

# The languages with an interface (site, editor pages) of their own.
LANGUAGES = ("ja", "en")
# Every language an article or a post may be in: the ones the multilingual model reads and
# detect_language tells apart (ISO 639-1 codes).
CONTENT_LANGUAGES = ("ja", "en", "zh", "ko", "es", "fr", "de", "pt", "th", "vi", "id")

# Kana (half-width too), kanji and the iteration mark.
_JA_CHARS = re.compile(f"[{JAPANESE}{HALFWIDTH_KATAKANA}]")
_SPACE = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC (full-width ASCII and half-width kana folded) with whitespace collapsed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def dedup_key(text: str) -> str:
    """Key under which two phrasings count as the same: normalised, case-folded, no punctuation."""
    folded = normalize_text(text).casefold()
    kept = [ch for ch in folded if not unicodedata.category(ch).startswith(("P", "S", "Z"))]
    return "".join(kept)[:1000]


_HANGUL = re.compile("[\u1100-\u11ff\u3130-\u318f\uac00-\ud7af]")
_THAI = re.compile("[\u0e00-\u0e7f]")
# Languages written in Latin letters, told apart by lingua's models.
_LATIN_LANGUAGES = ("en", "es", "fr", "de", "pt", "vi", "id")
# Below this confidence in lingua's best guess a Latin-script post counts as English: a lone
# "eSIM?" or "APN" is what an English speaker would type as well.
_MIN_CONFIDENCE = 0.3
# ... or when English is within this margin of it (English is the common second language).
_ENGLISH_MARGIN = 0.1
# Words with a digit, a capital after the first letter, or all capitals.
_NAME_OR_CODE = re.compile(r"\b(?:\w*\d\w*|\w+[A-Z]\w*)\b")

_detector: Any = None
_detector_lock = threading.Lock()


def _latin_detector() -> Any:
    """lingua's detector for the Latin-script languages, built once per process on first use."""
    global _detector
    if _detector is None:
        with _detector_lock:
            if _detector is None:
                from lingua import IsoCode639_1, LanguageDetectorBuilder

                codes = [getattr(IsoCode639_1, code.upper()) for code in _LATIN_LANGUAGES]
                _detector = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).build()
    return _detector


def detect_language(text: str) -> str:
    """The language of a post: one of CONTENT_LANGUAGES ("en" when nothing tells).

    Scripts decide the obvious cases at once, even on the shortest posts: kana is Japanese,
    hangul Korean, Thai script Thai; Han characters without kana, when they make up a third
    of the letters, are Chinese. Latin-script text goes to lingua's models (en, es, fr, de,
    pt, vi, id), and counts as English when lingua is unsure.
    """
    if KANA_CHAR.search(text):
        return "ja"
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "en"
    if _HANGUL.search(text):
        return "ko"
    if _THAI.search(text):
        return "th"
    han = sum(1 for ch in letters if _JA_CHARS.match(ch))
    if han / len(letters) >= 0.3:
        return "zh"
    # Product names and codes (eSIM, APN, 5G, iPhone 15) are the same in every language.
    words = _NAME_OR_CODE.sub(" ", text)
    if not any(ch.isalpha() for ch in words):
        return "en"
    confidences = _latin_detector().compute_language_confidence_values(words)
    if not confidences or confidences[0].value < _MIN_CONFIDENCE:
        return "en"
    code = str(confidences[0].language.iso_code_639_1.name).lower()
    english = next((c.value for c in confidences if c.language.iso_code_639_1.name == "EN"), 0.0)
    if confidences[0].value - english < _ENGLISH_MARGIN:
        return "en"
    return code if code in _LATIN_LANGUAGES else "en"


def clean_post(text: str) -> str:
    """The words of a social post (kb.text.cleaning.clean_post: the one cleaner)."""
    return cleaning.clean_post(text)
