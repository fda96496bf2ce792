"""The /healthz response."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class Health(BaseModel):
    status: Literal["ready", "loading", "error"]
    index: dict[str, object]
    detail: str | None = None
