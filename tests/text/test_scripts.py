"""The script classes of indexer.lexical.scripts rebuild every pattern they replaced exactly.

The references are the patterns as they were written before the classes had one home;
each new pattern must match the same characters and the same texts.
"""

from __future__ import annotations

import re
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.lexical import scripts, tokenizer
from kb.replies import compose, triage
from kb.text import cleaning, language, personal_data

# Every code point, surrogates included: a class matches the same set or it does not.
_ALL = "".join(map(chr, range(sys.maxunicode + 1)))

_OLD_CLASSES = [
    (r"[\u3040-\u30ff]", f"[{scripts.KANA}]"),
    (r"[\u30a0-\u30ff]", f"[{scripts.KATAKANA}]"),
    (r"[\u4e00-\u9fff]", f"[{scripts.KANJI}]"),
    (r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]", f"[{scripts.KANA}{scripts.HAN}]"),
    (r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u3005]", f"[{scripts.JAPANESE}]"),
    (r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u3005ー]", f"[{scripts.JAPANESE}]"),
    (
        r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u3005\uff66-\uff9f]",
        f"[{scripts.JAPANESE}{scripts.HALFWIDTH_KATAKANA}]",
    ),
    (r"[\u3040-\u30ff\u3400-\u9fff]", f"[{scripts.KANA}{scripts.HAN}{scripts.HEXAGRAMS}]"),
    (r"[\u3040-\u30ff\u4e00-\u9fff]", f"[{scripts.KANA}{scripts.KANJI}]"),
    (r"[\u4e00-\u9fff\u30a0-\u30ffヶケ々]", f"[{scripts.KANJI}{scripts.KATAKANA}々]"),
]


@pytest.mark.parametrize(("old", "new"), _OLD_CLASSES)
def test_each_class_matches_the_same_code_points(old: str, new: str) -> None:
    assert re.findall(old, _ALL) == re.findall(new, _ALL)


def test_the_named_helpers() -> None:
    assert re.findall(scripts.JAPANESE_CHAR, _ALL) == re.findall(f"[{scripts.JAPANESE}]", _ALL)
    assert re.findall(scripts.KANA_CHAR, _ALL) == re.findall(r"[\u3040-\u30ff]", _ALL)


_KANA_HAN = scripts.KANA + scripts.HAN + scripts.HEXAGRAMS


def _swap(pattern: str, new: str, old: str, count: int = 1) -> str:
    """`pattern` with the class that replaced `old` put back: the rest is unchanged."""
    assert pattern.count(new) == count
    return pattern.replace(new, old)


# The patterns as they stood (long ones: the new pattern with the old class put back).
_OLD_PATTERNS: list[tuple[re.Pattern[str], str, int]] = [
    (tokenizer._JA, r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u3005]", 0),
    (
        language._JA_CHARS,
        r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\u3005\uff66-\uff9f]",
        0,
    ),
    (cleaning._JA_CHAR, r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]", 0),
    (
        cleaning._LAUGH,
        r"(?<=[\u3040-\u30ff\u3400-\u9fff!?。、)）])\s*[wｗ]{2,}(?![A-Za-z])",
        0,
    ),
    (
        cleaning._SIGNATURE,
        _swap(
            cleaning._SIGNATURE.pattern,
            rf"[A-Za-z{_KANA_HAN}][\w.{_KANA_HAN}]{{0,15}}",
            r"[A-Za-z\u3040-\u30ff\u3400-\u9fff][\w.\u3040-\u30ff\u3400-\u9fff]{0,15}",
        ),
        re.IGNORECASE,
    ),
    (
        cleaning._NAME_LINE,
        r"[-—–~^]?\s*(?:[A-Z][a-z]+(?: [A-Z][a-z]*\.?)?|[\u4e00-\u9fff]{1,4}|[\u30a0-\u30ff]{2,8})",
        0,
    ),
    (
        cleaning._SPACE_AFTER_JA,
        r"(?<=[。!?、\u3040-\u30ff\u3400-\u9fff])\s+(?=[\u3040-\u30ff\u3400-\u9fff「『(])",
        0,
    ),
    (cleaning._JA_END, r"[\u3040-\u30ff\u3400-\u9fff。、!?」』)]$", 0),
    (compose._JA_CHAR, r"[\u3040-\u30ff\u3400-\u9fff]", 0),
    (
        triage._MENTION,
        r"(?<![\w@])@([A-Za-z0-9_]{1,50}|[\u3040-\u30ff\u3400-\u9fffー]{1,50})",
        0,
    ),
    (
        triage._JA_PROBLEM,
        _swap(
            triage._JA_PROBLEM.pattern,
            f"(?<=[{scripts.KANA}{scripts.KANJI}])",
            r"(?<=[\u3040-\u30ff\u4e00-\u9fff])",
        ),
        0,
    ),
    (
        personal_data._JA_ADDRESS,
        _swap(
            personal_data._JA_ADDRESS.pattern,
            personal_data._TOWN,
            r"[\u4e00-\u9fff\u30a0-\u30ffヶケ々]",
            count=6,
        ),
        0,
    ),
]


# Each range's ends and their neighbours, the characters the patterns spell out, and some
# ordinary text in both languages.
_EDGES = [
    chr(c + d)
    for c in (0x3040, 0x309F, 0x30A0, 0x30FF, 0x3400, 0x4DBF, 0x4DC0, 0x4DFF, 0x4E00, 0x9FFF)
    for d in (-1, 0, 1)
] + ["\u3005", "\uff65", "\uff66", "\uff9f", "\uffa0", "ー", "ヶ", "ケ", "々"]
_ALPHABET = st.sampled_from(
    [*_EDGES, *"abcSw ｗ\n@._-—^/。、!?)）「『(〒東京都市区町村1２三丁目番号ないなくてらか"]
)
_TEXT = st.text(_ALPHABET, max_size=40)


@pytest.mark.parametrize(("new", "old", "flags"), _OLD_PATTERNS)
@settings(max_examples=300, deadline=None)
@given(text=_TEXT)
def test_each_pattern_reads_texts_as_before(
    new: re.Pattern[str], old: str, flags: int, text: str
) -> None:
    reference = re.compile(old, flags)
    assert new.flags == reference.flags
    assert [m.span() for m in new.finditer(text)] == [m.span() for m in reference.finditer(text)]
    assert [m.groups() for m in new.finditer(text)] == [
        m.groups() for m in reference.finditer(text)
    ]
    for start in range(len(text)):
        # Anchored and look-behind patterns decide at every position.
        assert bool(new.match(text, start)) == bool(reference.match(text, start))
