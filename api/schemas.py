"""Request and response bodies of the JSON API (ORM classes are never returned as is)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Lang = Literal["ja", "en"]


class ErrorBody(BaseModel):
    error: str
    detail: object | None = None


class SuggestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The customer's post.")
    lang: Lang | None = Field(None, description="ja or en; detected from the text when absent.")
    k: int | None = Field(None, description="How many candidates (1 to the configured maximum).")
    channel: str | None = Field(None, max_length=32, description="x, instagram, email, ...")


class CandidateRead(BaseModel):
    faq_id: int
    slug: str
    title: str
    url: str
    score: float


class SuggestResponse(BaseModel):
    suggestion_id: int | None
    candidates: list[CandidateRead]
    best: CandidateRead | None
    confidence: float = Field(ge=0.0, le=1.0)
    abstained: bool
    lang: Lang
    latency_ms: float


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


class Health(BaseModel):
    status: Literal["ready", "loading", "error"]
    index: dict[str, object]
    detail: str | None = None
