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
_HANDLE_OR_LINK = re.compile(r"@\w+|https?://\S+|www\.\S+|#")
# Product words written the same way in every Latin-script language.
_LOANWORD = re.compile(
    r"\b(?:e?sim|apn|wi-?fi|ios|android|iphone|app|apps|ok|faq|sms|pin|puk|lte|online)\b", re.I
)
_SHORT_POST_WORDS = 3
_SHORT_POST_MARGIN = 0.3

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


# Han text without kana is Japanese kanji compounds (料金, 解約手続) unless it shows Chinese:
# a character Japanese writing does not use (outside Shift_JIS: 们, 这, 热), a Chinese
# function word, or a phrase Japanese does not form.
_CHINESE_CHARS = frozenset("的吗呢吧么们这那个我你她它没请问怎什哪为给让说嗎麼无")
_CHINESE_PHRASES = (
    "一直", "无法", "無法", "怎麼", "什麼", "可以", "已經", "沒有", "請問", "網路", "斷線",
    "不了", "不能", "了吗", "是不是", "太慢",
)  # fmt: skip


def _reads_as_chinese(text: str) -> bool:
    for ch in text:
        if not _JA_CHARS.match(ch):
            continue
        if ch in _CHINESE_CHARS:
            return True
        try:
            ch.encode("cp932")
        except UnicodeEncodeError:
            return True
    return any(phrase in text for phrase in _CHINESE_PHRASES)


def detect_language(text: str) -> str:
    """The language of a post: one of CONTENT_LANGUAGES ("en" when nothing tells).

    Scripts decide the obvious cases at once, even on the shortest posts: kana is Japanese,
    hangul Korean, Thai script Thai; Han characters without kana, when they make up a third
    of the letters, are Chinese when the text shows Chinese, else Japanese kanji. Latin-script
    text goes to lingua's models (en, es, fr, de, pt, vi, id), and counts as English when
    lingua is unsure.
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
        return "zh" if _reads_as_chinese(text) else "ja"
    # Handles, links and product names or codes (eSIM, esim, APN, 5G, iPhone 15) are the same
    # in every language; they only mislead the models.
    words = _NAME_OR_CODE.sub(" ", _HANDLE_OR_LINK.sub(" ", text))
    words = _LOANWORD.sub(" ", words)
    if not any(ch.isalpha() for ch in words):
        return "en"
    confidences = _latin_detector().compute_language_confidence_values(words)
    if not confidences or confidences[0].value < _MIN_CONFIDENCE:
        return "en"
    code = str(confidences[0].language.iso_code_639_1.name).lower()
    english = next((c.value for c in confidences if c.language.iso_code_639_1.name == "EN"), 0.0)
    # A few words say little: another language must be clearly ahead of English there.
    short = len(words.split()) <= _SHORT_POST_WORDS
    if confidences[0].value - english < (_SHORT_POST_MARGIN if short else _ENGLISH_MARGIN):
        return "en"
    return code if code in _LATIN_LANGUAGES else "en"


def clean_post(text: str) -> str:
    """The words of a social post (kb.text.cleaning.clean_post: the one cleaner)."""
    return cleaning.clean_post(text)
