"""The one rule for text that enters the system: no NUL, no lone surrogate.

A NUL character (U+0000) or a lone surrogate (U+D800–U+DFFF, which no UTF-8 text can hold)
breaks the tokenizer, the database or the logs further on. The web edge
(`api/web/text.py`) and the file readers (`kb/text/tabular.py`) refuse such text with this
check; nothing replaces it silently.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

_NUL = "\x00"


def text_problem(value: str) -> str | None:
    """Why `value` is not acceptable text (NUL or a lone surrogate), or None if it is."""
    if _NUL in value:
        return "contains a NUL character (U+0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone surrogate (U+D800–U+DFFF), which is not text"
    return None


def bad_text(value: Any, loc: list[str | int]) -> Iterator[tuple[list[str | int], str]]:
    """Each string in a JSON-like value (keys included) that breaks the rule, with its
    location (`loc` extended by keys and indexes) and the problem."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            yield loc, problem
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from bad_text(item, [*loc, i])
    elif isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key)
            if problem:
                yield [*loc, key.encode("utf-8", "backslashreplace").decode()], f"key {problem}"
            else:
                yield from bad_text(item, [*loc, key])
