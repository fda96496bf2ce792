"""Unicode ranges of the Japanese scripts, the one definition every text pattern builds on.

Each name is the inside of a regex character class (no brackets), so patterns combine
them: ``re.compile(f"[{KANA}{HAN}]")``. The analyser here and kb's text cleaning both use
them (kb may import the indexer, not the other way round).
"""

from __future__ import annotations

import re

HIRAGANA = "\u3040-\u309f"
KATAKANA = "\u30a0-\u30ff"  # with the long-vowel mark ー and the small ヶ
KANA = HIRAGANA + KATAKANA
HALFWIDTH_KATAKANA = "\uff66-\uff9f"  # NFKC folds these into KATAKANA

KANJI = "\u4e00-\u9fff"  # CJK Unified Ideographs
KANJI_EXT_A = "\u3400-\u4dbf"  # CJK Unified Ideographs Extension A
HAN = KANJI_EXT_A + KANJI
# The Yijing hexagram block sits between Extension A and the unified ideographs; patterns
# that span U+3400-U+9FFF in one range include it.
HEXAGRAMS = "\u4dc0-\u4dff"
ITERATION_MARK = "\u3005"  # 々

JAPANESE = KANA + HAN + ITERATION_MARK

JAPANESE_CHAR = re.compile(f"[{JAPANESE}]")
KANA_CHAR = re.compile(f"[{KANA}]")
