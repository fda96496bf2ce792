"""Bodies shared by every JSON endpoint: the error body, languages, strict integers."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator

# A language of the interface (site pages, editor pages).
Lang = Literal["ja", "en"]
# A language of an article or a post: kb.text.language.CONTENT_LANGUAGES (a test keeps the
# two lists equal), ISO 639-1.
ContentLang = Literal["ja", "en", "zh", "ko", "es", "fr", "de", "pt", "th", "vi", "id"]


def _json_integer(value: object) -> object:
    # JSON Schema's integer: 5 and 5.0 are integers; true and "5" are not (pydantic's lax
    # mode would take them, so the API would accept what its schema forbids).
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]


class ErrorBody(BaseModel):
    error: str
    detail: object | None = None


_NUMBER = re.compile(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\s*")


def _iso_datetime(value: object) -> object:
    # pydantic would read a bare number as a Unix timestamp; the API documents ISO 8601.
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("expected an ISO 8601 date-time, e.g. 2026-12-01T09:00:00Z")
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime)]
