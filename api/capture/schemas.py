"""Request and response bodies of the capture API: threads and drafts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictStr

from api.web.schemas import ContentLang, JsonInt
from kb.capture.drafts import DraftView
from kb.capture.ingest import ThreadOutcome, thread_question
from kb.models import Thread


# Types are loose on purpose: the same checks as for an import line run in kb.capture
# (thread_from_dict), so the API and `faqloop import-threads` accept and refuse the same
# bodies, with the same messages.
class PostBody(BaseModel):
    role: str = Field(description="customer or agent.", examples=["customer"])
    author: str = Field("", description="Handle or name; stored only as a keyed hash.")
    text: str = Field(description="The post as written (kept raw; a cleaned copy is derived).")
    created_at: Annotated[datetime, Strict()] | StrictStr | None = Field(
        None,
        description="ISO 8601; naive times are UTC.",
        examples=["2026-11-20T09:40:00+09:00"],
    )


class ThreadBody(BaseModel):
    """A resolved support thread; also one line of `faqloop import-threads` JSONL files."""

    # Exports carry extra fields (likes, language, ...): they are ignored, not refused.
    model_config = ConfigDict(extra="ignore")

    channel: str = Field(description="x, instagram, email, ... (twitter is stored as x).")
    external_id: StrictStr | JsonInt = Field(
        description="The thread's id on its channel; with the channel, the key that makes "
        "sending a thread again an update.",
    )
    url: str | None = Field(None, description="Link to the thread.")
    resolved_at: Annotated[datetime, Strict()] | StrictStr | None = Field(
        None,
        description="When it was resolved (default: its last post's time, else now).",
    )
    # A string too, as in import files ("12", or "" for none); checked by thread_from_dict.
    faq_id: JsonInt | StrictStr | None = Field(
        None, description="The FAQ the agent linked, if any."
    )
    posts: list[PostBody] = Field(description="In conversation order.")


class ThreadFiled(BaseModel):
    """Where an ingested thread was filed."""

    id: int
    channel: str
    external_id: str
    created: bool = Field(description="False when the thread was known (an update).")
    changed: bool = Field(description="False when it was sent again unchanged.")
    status: Literal["covered", "uncovered", "drafted"]
    faq_id: int | None = Field(description="The FAQ it is evidence for (status covered).")
    draft_id: int | None = Field(description="The draft it belongs to.")
    question: str = Field(description="The customer's cleaned question.")
    lang: ContentLang
    confidence: float | None = Field(
        description="Retrieval confidence of the best FAQ (None when the agent linked one)."
    )
    phrasing_added: bool
    covered_by: Literal["faq_id", "link", "match", "draft"] | None = Field(
        None,
        description="How it was found covered: the given faq_id, an agent's link to the "
        "article, a confident retrieval match, or a published draft it clustered with.",
    )


def thread_filed(o: ThreadOutcome) -> ThreadFiled:
    return ThreadFiled(
        id=o.thread_id,
        channel=o.channel,
        external_id=o.external_id,
        created=o.created,
        changed=o.changed,
        status=o.status.value,
        faq_id=o.faq_id,
        draft_id=o.draft_id,
        question=o.question,
        lang=o.language if o.language in ("ja", "en") else "en",
        confidence=o.confidence,
        phrasing_added=o.phrasing_added,
        covered_by=o.covered_by if o.status.value == "covered" else None,
    )


class PostRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    position: int
    role: str
    author_hash: str
    text_raw: str
    text_clean: str
    created_at: datetime | None


class SourceThread(BaseModel):
    id: int
    channel: str
    external_id: str
    url: str | None
    status: str
    resolved_at: datetime | None
    faq_id: int | None
    draft_id: int | None
    question: str


class ThreadRead(SourceThread):
    posts: list[PostRead]


class ThreadList(BaseModel):
    items: list[SourceThread]
    total: int


def source_thread(t: Thread) -> SourceThread:
    return SourceThread(
        id=t.id,
        channel=t.channel,
        external_id=t.external_id,
        url=t.url,
        status=t.status.value,
        resolved_at=t.resolved_at,
        faq_id=t.faq_id,
        draft_id=t.draft_id,
        question=thread_question(t.posts),
    )


def thread_read(t: Thread) -> ThreadRead:
    return ThreadRead(
        **source_thread(t).model_dump(),
        posts=[PostRead.model_validate(p) for p in sorted(t.posts, key=lambda p: p.position)],
    )


class DraftRead(BaseModel):
    id: int
    lang: str
    question: str
    answer: str = Field(description="Markdown, from the best agent reply unless edited.")
    category: str | None
    status: Literal["open", "published", "merged", "rejected"]
    reject_reason: str | None
    faq_id: int | None = Field(description="The entry it was published as or merged into.")
    demand: int = Field(description="Number of source threads.")
    last_7d: int = Field(description="Source threads resolved in the last 7 days.")
    previous_7d: int = Field(description="Source threads resolved in the 7 days before.")
    growth: float = Field(
        description="(last_7d - previous_7d) / max(previous_7d, 1): 0 is flat, a launch-day "
        "spike from nothing reads as its thread count."
    )
    trending: bool = Field(description="At least 3 threads this week and twice last week's.")
    needs_answer: bool = Field(
        False,
        description="Unanswered demand: no source thread got a substantive agent answer and "
        "no editor wrote one; publishing it is refused (422) until it has an answer.",
    )
    source_threads: list[SourceThread]
    created_at: datetime
    updated_at: datetime


class DraftDetail(DraftRead):
    source_threads: list[ThreadRead]  # type: ignore[assignment]


class DraftList(BaseModel):
    items: list[DraftRead]
    total: int


def _draft_fields(v: DraftView) -> dict[str, object]:
    d = v.draft
    return {
        "id": d.id,
        "lang": d.language,
        "question": d.question,
        "answer": d.answer,
        "category": d.category,
        "status": d.status.value,
        "reject_reason": d.reject_reason,
        "faq_id": d.entry_id,
        "demand": v.demand.threads,
        "last_7d": v.demand.last_7d,
        "previous_7d": v.demand.previous_7d,
        "growth": v.demand.growth,
        "trending": v.demand.trending,
        "needs_answer": v.needs_answer,
        "created_at": d.created_at,
        "updated_at": d.updated_at,
    }


def draft_read(v: DraftView) -> DraftRead:
    return DraftRead(**_draft_fields(v), source_threads=[source_thread(t) for t in v.threads])


def draft_detail(v: DraftView) -> DraftDetail:
    return DraftDetail(**_draft_fields(v), source_threads=[thread_read(t) for t in v.threads])


class DraftUpdate(BaseModel):
    """An editor's rewrite; fields left out keep their value."""

    model_config = ConfigDict(extra="forbid")

    question: str | None = None
    answer: str | None = Field(None, description="Markdown.")
    category: str | None = None
    lang: ContentLang | None = None


class DraftPublish(BaseModel):
    model_config = ConfigDict(extra="forbid")

    category: str | None = Field(None, description="Required unless the draft has one.")
    question: str | None = Field(None, description="Overrides the draft's question.")
    answer: str | None = Field(None, description="Overrides the draft's answer (Markdown).")


class DraftMerge(BaseModel):
    model_config = ConfigDict(extra="forbid")

    faq_id: JsonInt = Field(description="The published entry the draft is folded into.")


class DraftReject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(description="Why; shown to editors when look-alikes arrive later.")


class TranslationProposalRead(BaseModel):
    """An article (or open draft) of the same topic in another language."""

    kind: Literal["article", "draft"]
    faq_id: int | None = Field(None, description="The article (kind article).")
    draft_id: int | None = Field(None, description="The open draft (kind draft).")
    slug: str | None = None
    lang: str
    similarity: float = Field(
        description="Centred cosine of question + answer (docs/capture.md, Translations)."
    )
    question: str = ""
    link: str | None = Field(
        None,
        description="PUT this path (editor key) to link the article as a translation of the "
        "published one; nothing is linked until then.",
    )


class ReviewDone(BaseModel):
    draft: DraftRead
    faq_id: int
    slug: str
    url: str
    phrasings_added: int = Field(description="Phrasings the entry learnt from the threads.")
    proposed_translation: TranslationProposalRead | None = Field(
        None,
        description="Publishing: the published article of the same topic in another language "
        "that is not linked yet, best first; link it with `link`. Never linked silently.",
    )
    translation_proposals: list[TranslationProposalRead] = Field(
        default_factory=list,
        description="Publishing: every proposal, articles and open drafts in other languages.",
    )
