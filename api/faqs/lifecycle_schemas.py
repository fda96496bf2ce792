"""Response bodies of the article life-cycle endpoints (archive, translations, phrasings)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class PhrasingOriginRead(BaseModel):
    id: int
    text: str
    source: str = Field(description="content, editor, thread or outcome.")
    created_at: datetime
    thread_id: int | None = Field(None, description="The support thread it was learnt from.")
    thread_channel: str | None = None
    thread_url: str | None = None
    state: str | None = Field(None, description="Review state of an outcome-learnt phrasing.")


class PhrasingList(BaseModel):
    faq_id: int
    items: list[PhrasingOriginRead]


class TranslationsRead(BaseModel):
    faq_id: int
    translation_group: str | None
    translations: dict[str, int] = Field(
        default_factory=dict, description="Language → id of the same article in that language."
    )
