"""Bodies of the outcome and agent-metrics endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.web.schemas import JsonInt


class OutcomeBody(BaseModel):
    """What the agent did with a suggestion."""

    model_config = ConfigDict(extra="forbid")

    outcome: Literal["sent", "edited", "rejected"]
    final_text: str | None = Field(
        None, max_length=10_000, description="Required for edited: the text that was sent."
    )
    faq_id: JsonInt | None = Field(
        None,
        ge=1,
        le=2**31 - 1,
        description="sent/edited: the FAQ that was sent, when not the suggested one; "
        "rejected: the FAQ that would have been right.",
    )


class OutcomeRead(BaseModel):
    """The recorded outcome and what it taught."""

    suggestion_id: int
    outcome: Literal["sent", "edited", "rejected"]
    faq_id: int | None
    phrasing_added: bool = Field(description="The post taught the FAQ a new phrasing.")
    phrasing_faq_id: int | None
    repeated: bool = Field(description="The same outcome was recorded before; nothing changed.")
    threshold: float = Field(description="The abstention threshold now in force.")
    phrasing_pending: bool = Field(
        False,
        description="The post was learnt as a phrasing that waits for an editor's approval or "
        "more agents' agreement; until then it is not searchable.",
    )


class PhrasingApproved(BaseModel):
    """A phrasing after an editor's approval."""

    phrasing_id: int
    faq_id: int
    status: Literal["approved", "pending"]
    approved_by: str | None


class OutcomeCountsRead(BaseModel):
    """Outcomes reported for suggestions made."""

    sent: int
    edited: int
    rejected: int
    reported: int


class ContentGapRead(BaseModel):
    """Similar posts the service abstained on."""

    language: str
    posts: int
    examples: list[str]
    terms: list[str]
    nearest_faq_id: int | None
    last_seen: datetime


class ThresholdRead(BaseModel):
    """The abstention threshold in force and the outcomes behind it."""

    threshold: float = Field(description="In force now.")
    base: float = Field(description="Calibrated (or FAQLOOP_ABSTAIN_THRESHOLD).")
    outcomes: int
    judged: int
    accepted_share: float | None
    reason: str


class AgentMetricsRead(BaseModel):
    """The agents' figures for a time window."""

    start: datetime
    end: datetime
    posts_seen: int
    triage: dict[str, int]
    needing_reply: int = Field(description="Posts triaged reply.")
    suggestions_made: int = Field(description="Posts needing a reply that got a FAQ.")
    coverage: float | None = Field(description="suggestions_made / needing_reply.")
    outcomes: OutcomeCountsRead
    acceptance: float | None = Field(description="(sent + edited) / outcomes reported.")
    dm_handoffs: int
    threads_resolved: int
    resolved_with_one_faq_reply: int
    one_reply_resolution: float | None
    faqs_at_start: int
    faqs_at_end: int
    faqs_added: int
    faq_growth: float | None = Field(description="faqs_added / faqs_at_start.")
    content_gaps: list[ContentGapRead]
    threshold: ThresholdRead | None
