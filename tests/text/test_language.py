"""Language detection on short support posts in the eleven languages faqloop reads
(tests/data/language_posts.yaml; accuracy per language in docs/replies.md)."""

from __future__ import annotations

import typing
from collections import Counter
from pathlib import Path

import pytest
import yaml

from api.web.schemas import ContentLang
from kb.text.cleaning import clean_post
from kb.text.language import CONTENT_LANGUAGES, detect_language

POSTS: dict[str, list[str]] = yaml.safe_load(
    (Path(__file__).parents[1] / "data" / "language_posts.yaml").read_text(encoding="utf-8")
)


def accuracy() -> dict[str, float]:
    """Share of each language's posts detected right (cleaned as suggest cleans them)."""
    out = {}
    for lang, posts in POSTS.items():
        right = Counter(detect_language(clean_post(p) or p) == lang for p in posts)
        out[lang] = right[True] / len(posts)
    return out


def test_every_language_has_thirty_posts() -> None:
    assert set(POSTS) == set(CONTENT_LANGUAGES)
    assert all(len(posts) >= 30 for posts in POSTS.values())


def test_short_posts_are_detected_in_every_language() -> None:
    scores = accuracy()
    total = sum(scores[lang] * len(POSTS[lang]) for lang in POSTS) / sum(map(len, POSTS.values()))
    assert total >= 0.95, scores
    assert min(scores.values()) >= 0.85, scores


@pytest.mark.parametrize(
    ("text", "lang"),
    [
        ("我的手机无法连接网络", "zh"),  # Han only: Chinese
        ("機種変更の方法を教えて", "ja"),  # kana: Japanese
        ("유심", "ko"),  # one Hangul word is enough
        ("เน็ต", "th"),
        ("eSIM?", "en"),  # product names say nothing: English
        ("", "en"),
        ("12345", "en"),
    ],
)
def test_scripts_decide_the_obvious_cases(text: str, lang: str) -> None:
    assert detect_language(text) == lang


def test_the_api_accepts_exactly_the_content_languages() -> None:
    assert typing.get_args(ContentLang) == CONTENT_LANGUAGES
