"""Request and response bodies of the FAQ entries API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from api.web.schemas import ContentLang


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
    lang: ContentLang
    status: str
    question: str
    url: str
    translation_group: str | None
    revision: int
    needs_account: bool = Field(
        False,
        description="Answering it needs the customer's account: reply drafts hand off to a DM.",
    )


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
    lang: ContentLang
    phrasings: list[str] | None = Field(
        None, max_length=100, description="Replaces the editor phrasings when given."
    )
    reason: str | None = Field(None, max_length=500, description="Why (stored on the revision).")
    needs_account: bool | None = Field(
        None,
        description="Answering it needs the customer's account (reply drafts hand off to a "
        "DM); absent keeps it (false for a new article).",
    )


class FaqCreate(FaqUpdate):
    phrasings: list[str] | None = Field(None, max_length=100)
    slug: str | None = Field(None, max_length=200, description="Generated when absent.")
    translation_group: str | None = Field(None, max_length=200)


class FaqCreated(BaseModel):
    id: int
    slug: str
    revision: int
    url: str


class UnmergeRead(BaseModel):
    faq_id: int
    was_merged_into: int
    status: str
    url: str = Field(description="The article's own URL again (no longer a redirect).")
    views_moved_back: int
    votes_moved_back: int
    feedback_days_moved_back: int
