"""Channel limits and X's weighted length (twitter-text-parser) checked against X's rules:
CJK characters and emoji count 2, every URL 23 whatever its length, the rest 1."""

from __future__ import annotations

import sys

import pytest
from pydantic import ValidationError

from api.settings import Settings
from kb.errors import InvalidInput
from kb.replies.channels import (
    DEFAULT_LIMITS,
    NO_CHANNEL,
    channel_limits,
    parse_channel_limits,
    resolve_channel,
    x_weighted_length,
)

URL_WEIGHT = 23
X = resolve_channel("x", DEFAULT_LIMITS)
LONG_URL = "https://help.sorami-mobile.com/faq/esim-iphone-activate?src=reply&utm=" + "a" * 120


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a", 1),
        ("hello world", 11),
        ("é ñ ü", 5),  # Latin with accents: 1 each
        ("’—“”", 4),  # typographic punctuation in X's weight-100 ranges
        ("あ", 2),
        ("日本語", 6),
        ("ｱ", 2),  # half-width katakana is still CJK for X
        ("１２３", 6),  # full-width digits count 2
        ("한국어", 6),
        ("😷", 2),
        ("👍🏽", 2),  # skin tone modifier: one emoji
        ("👨\u200d👩\u200d👧\u200d👦", 2),  # ZWJ family: one emoji
        ("🇯🇵", 2),  # flag: one emoji
        ("❤️", 2),  # with variation selector
        ("https://a.co", URL_WEIGHT),
        (LONG_URL, URL_WEIGHT),
        ("https://a.co/x https://b.co/y", URL_WEIGHT * 2 + 1),
        ("見て https://sorami.jp/faq/a と https://sorami.jp/faq/b", 4 + 1 + 23 + 1 + 2 + 1 + 23),
        ("詳しくはこちら：https://sorami.jp/faq/x?src=reply", 8 * 2 + URL_WEIGHT),
        ("english text 日本語 😷 https://example.com", 13 + 6 + 1 + 2 + 1 + URL_WEIGHT),
        ("line\nbreak", 10),
    ],
)
def test_weighted_length_follows_x_rules(text: str, expected: int) -> None:
    assert x_weighted_length(text) == expected
    assert X.length(text) == expected


def test_what_x_does_not_link_counts_as_characters() -> None:
    # A relative link and a host without a real top-level domain are plain text to X,
    # so FAQLOOP_BASE_URL must be a public https URL for links to count 23.
    assert x_weighted_length("/faq/x?src=reply") == len("/faq/x?src=reply")
    assert x_weighted_length("https://faq.sorami.example/faq/x") == len(
        "https://faq.sorami.example/faq/x"
    )


@pytest.mark.parametrize(
    ("text", "fits"),
    [
        ("a" * 280, True),
        ("a" * 281, False),
        ("あ" * 140, True),
        ("あ" * 141, False),
        ("あ" * 139 + "ab", True),  # 280
        ("あ" * 139 + "abc", False),  # 281
        ("😷" * 140, True),
        ("😷" * 140 + "a", False),
        ("あ" * 128 + " " + LONG_URL, True),  # 256 + 1 + 23 = 280, however long the URL
        ("あ" * 128 + "  " + LONG_URL, False),
        (" ".join(["https://sorami.jp/faq/x"] * 11) + " " + "a" * 16, True),  # 11·23+11+16
        (" ".join(["https://sorami.jp/faq/x"] * 11) + " " + "a" * 17, False),
    ],
)
def test_x_limit_is_exact_at_the_boundary(text: str, fits: bool) -> None:
    assert X.fits(text) is fits
    assert (X.length(text) <= 280) is fits


def test_other_channels_count_characters() -> None:
    instagram = resolve_channel("Instagram", DEFAULT_LIMITS)
    assert (instagram.name, instagram.limit, instagram.weighted) == ("instagram", 2200, False)
    assert instagram.length("あ😷 https://a.co") == len("あ😷 https://a.co")
    assert instagram.fits("あ" * 2200) and not instagram.fits("あ" * 2201)
    assert resolve_channel("facebook", DEFAULT_LIMITS).limit == 8000
    assert resolve_channel("email", DEFAULT_LIMITS).limit is None
    assert resolve_channel("twitter", DEFAULT_LIMITS).weighted
    unknown = resolve_channel("carrier-pigeon", DEFAULT_LIMITS)
    assert unknown.limit is None and unknown.fits("x" * 100_000)
    assert resolve_channel(None, DEFAULT_LIMITS) is NO_CHANNEL
    assert resolve_channel("  ", DEFAULT_LIMITS) is NO_CHANNEL


def test_limits_are_configurable() -> None:
    overrides = parse_channel_limits(" x=140, Email=0, line=none ,sms=160")
    assert overrides == {"x": 140, "email": None, "line": None, "sms": 160}
    limits = channel_limits(overrides)
    assert limits["x"] == 140 and limits["instagram"] == 2200 and limits["sms"] == 160
    assert resolve_channel("x", limits).fits("a" * 140)
    assert not resolve_channel("x", limits).fits("a" * 141)
    for bad in ("x", "x=abc", "=5", "x=-1"):
        with pytest.raises(InvalidInput):
            parse_channel_limits(bad)
    with pytest.raises(ValidationError):
        Settings(channel_limits="x=lots", _env_file=None)  # type: ignore[call-arg]


def test_pkg_resources_stand_in_does_not_leak() -> None:
    x_weighted_length("warm")
    module = sys.modules.get("pkg_resources")
    # Either a real pkg_resources was importable, or nothing is left behind.
    assert module is None or hasattr(module, "working_set")
