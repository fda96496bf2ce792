"""Request and response bodies of the JSON API (ORM classes are never returned as is)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

Lang = Literal["ja", "en"]


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


class SuggestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The customer's post.")
    lang: Lang | None = Field(None, description="ja or en; detected from the text when absent.")
    k: JsonInt | None = Field(
        None, description="How many candidates (1 to the configured maximum)."
    )
    channel: str | None = Field(None, max_length=32, description="x, instagram, email, ...")


class CandidateRead(BaseModel):
    faq_id: int
    slug: str
    title: str
    url: str
    score: float


class TriageRead(BaseModel):
    advice: Literal["reply", "thank", "skip"]
    reason: str = Field(description="Why, with the words that decided it.")
    kind: str = Field(
        description="question, problem, request, thanks, praise, resolved, "
        "users_talking, recommendation or unclear."
    )
    cue: str | None = None


class ReplyRead(BaseModel):
    text: str = Field(description="A draft the agent can send as it is.")
    weighted_length: int = Field(description="Length as the channel counts it (X: weighted).")
    limit: int | None = Field(description="The channel's limit (null: none).")
    dm_handoff: bool = Field(description="The draft moves the conversation to a DM.")
    dm_reason: Literal["personal_data", "account_category"] | None = None
    kind: Literal["answer", "thanks", "dm"]
    fits: bool = Field(description="Within the limit (false only if even the link is too long).")
    channel: str | None = None


class SuggestResponse(BaseModel):
    suggestion_id: int | None
    candidates: list[CandidateRead]
    best: CandidateRead | None
    confidence: float = Field(ge=0.0, le=1.0)
    abstained: bool
    lang: Lang
    latency_ms: float
    triage: TriageRead | None = None
    reply: ReplyRead | None = Field(
        None, description="The reply draft; null when the advice is skip or no FAQ fits."
    )
    personal_data: list[str] = Field(
        default_factory=list,
        description="Kinds of personal data found in the post (never the data): email, "
        "phone, order_number, card_number, number, address.",
    )


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
