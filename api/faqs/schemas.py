"""Request and response bodies of the FAQ entries API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.web.schemas import Lang


class RevisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    number: int
    question: str
    answer: str
    author: str
    reason: str
    created_at: datetime


class PhrasingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    text: str
    source: str


class FaqSummary(BaseModel):
    id: int
    slug: str
    category: str
    lang: Lang
    status: str
    question: str
    url: str
    translation_group: str | None
    revision: int


class FaqRead(FaqSummary):
    answer: str
    phrasings: list[PhrasingRead]
    revisions: list[RevisionRead]
    translations: dict[str, int] = Field(
        default_factory=dict, description="Language → id of the same article in that language."
    )


class FaqList(BaseModel):
    items: list[FaqSummary]
    total: int


class FaqUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(max_length=500)
    answer: str = Field(description="Markdown.", max_length=50_000)
    category: str = Field(max_length=64)
    lang: Lang
    phrasings: list[str] | None = Field(
        None, max_length=100, description="Replaces the editor phrasings when given."
    )
    reason: str | None = Field(None, max_length=500, description="Why (stored on the revision).")


class FaqCreate(FaqUpdate):
    phrasings: list[str] | None = Field(None, max_length=100)
    slug: str | None = Field(None, max_length=200, description="Generated when absent.")
    translation_group: str | None = Field(None, max_length=200)


class FaqCreated(BaseModel):
    id: int
    slug: str
    revision: int
    url: str
