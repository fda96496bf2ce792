"""Text helpers shared by capture, indexing and suggestion: normalisation and language."""

from __future__ import annotations

import re
import unicodedata

from kb.text.cleaning import strip_emoji, strip_hashtag_marks, strip_urls

LANGUAGES = ("ja", "en")

# Hiragana, katakana (incl. half-width after NFKC), CJK ideographs and the iteration mark.
_JA_CHARS = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u3005\uff66-\uff9f]")
_KANA = re.compile(r"[\u3040-\u30ff]")
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
    if _KANA.search(text):
        return "ja"
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return "en"
    cjk = sum(1 for ch in letters if _JA_CHARS.match(ch))
    return "ja" if cjk / len(letters) >= 0.3 else "en"


# Customers also type the brand's name as a handle in kana or kanji (@ソラミモバイル), which
# X itself would not link; kb.cleaning's stricter pattern is for stored thread posts.
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9_\u3040-\u30ff\u3400-\u9fff]{1,50}")


def clean_post(text: str) -> str:
    """The words of a social post: @mentions, URLs, emoji and hashtags' # removed."""
    # The URL, hashtag and emoji rules are kb.cleaning's, so posts and threads agree.
    text = strip_urls(unicodedata.normalize("NFKC", text))
    text = _MENTION.sub(" ", text)
    return normalize_text(strip_emoji(strip_hashtag_marks(text)))
