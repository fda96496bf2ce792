"""Bodies of the public site's JSON API and of the editors' statistics endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.web.schemas import ContentLang, JsonInt, Lang
from kb.site.votes import MAX_COMMENT_CHARS


class PublicArticleLink(BaseModel):
    id: int
    slug: str
    lang: ContentLang
    category: str
    title: str
    url: str


class PublicSearchHit(PublicArticleLink):
    category_name: str = Field(description="The category's name in the language searched.")
    score: float = Field(description="Fused retrieval score (for ordering only).")
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="Calibrated confidence that this article answers the search: suggest's "
        "confidence for the top result; a lower one is judged as if ranked first against the "
        "same competitors (docs/site.md).",
    )
    section: Literal["answer", "closest"] = Field(
        description="`answer` above the cut (the leading results whose confidence reaches "
        "`threshold`), `closest` below it: related articles that may not answer the search."
    )
    snippet: str = Field(
        description="Plain text from the answer: the first paragraph with a searched word "
        "(from shortly before it), else the first paragraph; at most 160 characters."
    )
    matched_words: list[str] = Field(
        description="The words of `title` and `snippet` the search matched (as written there, "
        "each once), for highlighting."
    )


class PublicSearchResponse(BaseModel):
    query: str = Field(description="The search text after normalisation.")
    lang: Lang = Field(description="The language searched.")
    search_id: int | None = Field(
        description="Log id of this search; send it as `search_id` with the view of the "
        "article opened from the results (null when the caller looks like a robot)."
    )
    good_result: bool = Field(
        description="Whether the top result's calibrated confidence reaches the threshold."
    )
    confidence: float = Field(ge=0.0, le=1.0, description="The top result's confidence.")
    threshold: float = Field(
        ge=0.0,
        le=1.0,
        description="The cut: suggest's abstention threshold. Results whose confidence "
        "reaches it, from the top down, are `answer`s; the rest are `closest`.",
    )
    results: list[PublicSearchHit] = Field(
        description="In ranking order: the answers first, then the closest articles."
    )


class PublicArticle(PublicArticleLink):
    category_name: str
    revision_id: int = Field(description="The revision shown: send it with votes and views.")
    revision: int = Field(description="Revision number.")
    updated_at: datetime
    answer_html: str = Field(description="The Markdown answer rendered and sanitised.")
    translations: dict[str, str] = Field(
        description="Language → slug of the same article in that language."
    )
    related: list[PublicArticleLink]
    csrf_token: str = Field(
        description="Send as the X-CSRF-Token header with votes (bound to the visitor cookie "
        "this response sets)."
    )
    your_vote: bool | None = Field(
        description="This visitor's vote on this revision: true, false, or null."
    )


class VoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    helpful: bool = Field(strict=True)
    revision_id: JsonInt | None = Field(
        None, description="The revision shown (default: the current one)."
    )
    comment: str | None = Field(
        None, max_length=MAX_COMMENT_CHARS, description="Optional, kept only with helpful=false."
    )


class VoteResponse(BaseModel):
    faq_id: int
    revision_id: int
    helpful: bool
    comment_saved: bool
    replaced: bool = Field(description="True when this visitor had voted on this revision.")
    message: str


class ViewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    revision_id: JsonInt | None = Field(
        None, description="The revision shown (default: the current one)."
    )
    src: Literal["reply", "search", "direct"] = "direct"
    search_id: JsonInt | None = Field(None, description="The search the visitor came from.")


class ViewResponse(BaseModel):
    counted: bool
    reason: Literal["counted", "robot", "repeat", "limited"] = Field(
        description="robot: the User-Agent is a known robot; repeat: the same visitor was "
        "counted for this revision within the de-duplication window; limited: the address "
        "used up its budget of counted views (FAQLOOP_VIEW_COUNT_LIMIT_IP)."
    )


class ViewsBySource(BaseModel):
    reply: int = Field(description="Arrivals from links agents sent (?src=reply).")
    search: int = Field(description="Arrivals from the site's search results.")
    direct: int = Field(description="Everything else.")
    total: int


class VoteComment(BaseModel):
    text: str
    at: datetime


class RevisionStatsRead(BaseModel):
    revision_id: int
    number: int
    current: bool
    created_at: datetime
    reason: str
    views: ViewsBySource
    helpful: int
    not_helpful: int
    helpful_ratio: float | None = Field(description="helpful / votes; null without votes.")
    comments: list[VoteComment] = Field(description="The latest comments on 'no' votes.")


class FaqStats(BaseModel):
    faq_id: int
    slug: str
    lang: ContentLang
    current_revision_id: int | None
    revisions: list[RevisionStatsRead]
    totals: ViewsBySource
    helpful: int
    not_helpful: int


class SearchGapRead(BaseModel):
    query: str
    lang: Lang
    searches: int
    clicked: int = Field(description="How many of those searches led to an article anyway.")
    last_at: datetime


class SearchGapList(BaseModel):
    since: datetime
    items: list[SearchGapRead]
