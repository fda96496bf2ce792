"""Request and response bodies of POST /v1/suggest and /v1/suggest/batch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.web.schemas import ContentLang, JsonInt
from kb.replies.compose import AssistedSuggestion
from kb.replies.file_batch import assisted_record


class SuggestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The customer's post.")
    lang: ContentLang | None = Field(
        None, description="The post's language; detected from the text when absent."
    )
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
    category: str = Field("", description="The article's category.")
    article_lang: ContentLang = Field(
        "en", description="The article's language (another than the post's when none exists)."
    )


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
    dm_reason: Literal["personal_data", "needs_account"] | None = Field(
        None,
        description="personal_data: the post carries some; needs_account: the article is "
        "marked as needing the customer's account.",
    )
    kind: Literal["answer", "thanks", "dm"]
    fits: bool = Field(description="Within the limit (false only if even the link is too long).")
    channel: str | None = None


class SuggestResponse(BaseModel):
    suggestion_id: int | None
    candidates: list[CandidateRead]
    best: CandidateRead | None
    confidence: float = Field(ge=0.0, le=1.0)
    abstained: bool
    lang: ContentLang = Field(description="The post's language (given or detected).")
    cross_language: bool = Field(
        False,
        description="No article exists in the post's language: the candidates are in "
        "another one, and the confidence is calibrated for that case.",
    )
    latency_ms: float
    triage: TriageRead | None = None
    reply: ReplyRead | None = Field(
        None,
        description="The reply draft; null when the advice is skip, no FAQ fits, or the "
        "post's language has no reply template.",
    )
    no_reply_reason: str | None = Field(
        None,
        description="Why `reply` is null, e.g. \"no reply template for language 'th'\" "
        "(the FAQ link is still in `best`).",
    )
    personal_data: list[str] = Field(
        default_factory=list,
        description="Kinds of personal data found in the post (never the data): email, "
        "phone, order_number, card_number, number, address.",
    )


def suggest_response(a: AssistedSuggestion) -> SuggestResponse:
    """The API body of a suggestion with its triage and reply draft."""
    return SuggestResponse.model_validate(assisted_record(a))


class BatchPost(BaseModel):
    """One post of a batch."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=200, description="Echoed in the result.")
    text: str = Field(description="The customer's post.")
    lang: ContentLang | None = None
    k: JsonInt | None = None
    channel: str | None = Field(None, max_length=32, description="Overrides the batch's.")


class BatchRequest(BaseModel):
    """Posts to suggest for together (all or nothing)."""

    model_config = ConfigDict(extra="forbid")

    posts: list[BatchPost] = Field(
        min_length=1, description="Up to FAQLOOP_BATCH_MAX posts (more: 413)."
    )
    channel: str | None = Field(None, max_length=32, description="x, instagram, email, ...")


class BatchItem(SuggestResponse):
    """One post's suggestion, with the id it was sent with."""

    id: str | None = None


class BatchResponse(BaseModel):
    """The results in the order of the posts."""

    results: list[BatchItem]
