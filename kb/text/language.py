"""Text helpers shared by capture, indexing and suggestion: normalisation and language."""

from __future__ import annotations

import re
import unicodedata

from indexer.lexical.scripts import HALFWIDTH_KATAKANA, HAN, HEXAGRAMS, JAPANESE, KANA, KANA_CHAR
from kb.text.cleaning import strip_emoji, strip_hashtag_marks, strip_urls

LANGUAGES = ("ja", "en")

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


def detect_language(text: str) -> str:
    """Return "ja" when the text is mostly Japanese script, otherwise "en".

    Kana decide it at once (Chinese text has none, but this service serves ja and en only);
    otherwise the share of CJK characters among letters decides.
    """
    if KANA_CHAR.search(text):
        return "ja"
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "en"
    cjk = sum(1 for ch in letters if _JA_CHARS.match(ch))
    return "ja" if cjk / len(letters) >= 0.3 else "en"


# Customers also type the brand's name as a handle in kana or kanji (@ソラミモバイル), which
# X itself would not link; kb.text.cleaning's stricter pattern is for stored thread posts.
_MENTION = re.compile(rf"(?<![\w@])@[A-Za-z0-9_{KANA}{HAN}{HEXAGRAMS}]{{1,50}}")


def clean_post(text: str) -> str:
    """The words of a social post: @mentions, URLs, emoji and hashtags' # removed."""
    # The URL, hashtag and emoji rules are kb.text.cleaning's, so posts and threads agree.
    text = strip_urls(unicodedata.normalize("NFKC", text))
    text = _MENTION.sub(" ", text)
    return normalize_text(strip_emoji(strip_hashtag_marks(text)))
