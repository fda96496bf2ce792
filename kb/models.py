"""SQLAlchemy 2 models for the whole faqloop domain (see docs/architecture.md)."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


# A naming convention keeps constraint names stable across SQLite and PostgreSQL, which
# Alembic needs to alter them later (batch mode on SQLite recreates tables by name).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012
        datetime: UTCDateTime(),
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class EntryStatus(enum.StrEnum):
    draft = "draft"
    published = "published"
    archived = "archived"
    merged = "merged"


class PhrasingSource(enum.StrEnum):
    content = "content"  # front matter of a faq_content/ file
    editor = "editor"
    thread = "thread"  # learnt from a resolved support thread
    outcome = "outcome"  # learnt from an agent's sent/edited suggestion


class PhrasingStatus(enum.StrEnum):
    approved = "approved"  # indexed: it shapes search and suggest
    pending = "pending"  # learnt from agents' outcomes, waiting for trust (not indexed)


class Role(enum.StrEnum):
    agent = "agent"
    editor = "editor"
    admin = "admin"

    @property
    def rank(self) -> int:
        return {"agent": 1, "editor": 2, "admin": 3}[self.value]


class PostRole(enum.StrEnum):
    customer = "customer"
    agent = "agent"


class ThreadStatus(enum.StrEnum):
    covered = "covered"  # evidence for an existing entry
    uncovered = "uncovered"  # waiting for a draft
    drafted = "drafted"


class SuggestionOutcome(enum.StrEnum):
    sent = "sent"
    edited = "edited"
    rejected = "rejected"


class TriageAdvice(enum.StrEnum):
    reply = "reply"  # a question or a problem
    thank = "thank"  # thanks or praise: a short thank-you, no link
    skip = "skip"  # customers talking among themselves: do not interrupt


class FlagKind(enum.StrEnum):
    low_helpfulness = "low_helpfulness"
    low_acceptance = "low_acceptance"
    duplicate = "duplicate"
    stale = "stale"
    content_gap = "content_gap"


class FlagStatus(enum.StrEnum):
    open = "open"
    resolved = "resolved"
    dismissed = "dismissed"


class ViewSource(enum.StrEnum):
    reply = "reply"
    search = "search"
    direct = "direct"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as plain strings (no native PG enum): adding a member needs no migration.
    return Enum(cls, name=name, native_enum=False, length=32, validate_strings=True)


class FaqEntry(Base):
    """A question and its answer; the text lives in immutable revisions."""

    __tablename__ = "faq_entry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    slug: Mapped[str] = mapped_column(String(200), unique=True)
    category: Mapped[str] = mapped_column(String(64), index=True)
    language: Mapped[str] = mapped_column(String(8), index=True)
    status: Mapped[EntryStatus] = mapped_column(
        _enum(EntryStatus, "entry_status"), default=EntryStatus.published, index=True
    )
    translation_group: Mapped[str | None] = mapped_column(String(200), index=True)
    # Answering it needs the customer's account: a reply hands off to a DM (docs/replies.md).
    needs_account: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=sql_text("false")
    )
    current_revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("faq_revision.id", use_alter=True, ondelete="SET NULL")
    )
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("faq_entry.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    current_revision: Mapped[FaqRevision | None] = relationship(
        foreign_keys=[current_revision_id], lazy="joined", post_update=True
    )
    revisions: Mapped[list[FaqRevision]] = relationship(
        back_populates="entry",
        foreign_keys="FaqRevision.entry_id",
        order_by="FaqRevision.number",
        lazy="raise",
    )
    phrasings: Mapped[list[QuestionPhrasing]] = relationship(
        back_populates="entry", order_by="QuestionPhrasing.id", lazy="raise"
    )


class FaqRevision(Base):
    """One immutable version of an entry's question and answer."""

    __tablename__ = "faq_revision"
    __table_args__ = (UniqueConstraint("entry_id", "number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("faq_entry.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    entry: Mapped[FaqEntry] = relationship(
        back_populates="revisions", foreign_keys=[entry_id], lazy="raise"
    )


class QuestionPhrasing(Base):
    """Another way customers ask an entry's question; indexed like the title."""

    __tablename__ = "question_phrasing"
    __table_args__ = (UniqueConstraint("entry_id", "normalized"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("faq_entry.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(Text)
    # Case/width-folded text: the de-duplication key within an entry.
    normalized: Mapped[str] = mapped_column(String(1000))
    source: Mapped[PhrasingSource] = mapped_column(_enum(PhrasingSource, "phrasing_source"))
    thread_id: Mapped[int | None] = mapped_column(ForeignKey("thread.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Phrasings learnt from agents' outcomes start pending and are indexed only once an
    # editor approves them or enough distinct agents agree (kb/replies/outcomes.py).
    status: Mapped[PhrasingStatus] = mapped_column(
        _enum(PhrasingStatus, "phrasing_status"),
        default=PhrasingStatus.approved,
        server_default=PhrasingStatus.approved.value,
    )
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None] = mapped_column()

    entry: Mapped[FaqEntry] = relationship(back_populates="phrasings", lazy="raise")


class PhrasingAgreement(Base):
    """One agent (API key) whose outcome taught a pending phrasing: distinct agents agree."""

    __tablename__ = "phrasing_agreement"

    phrasing_id: Mapped[int] = mapped_column(
        ForeignKey("question_phrasing.id", ondelete="CASCADE"), primary_key=True
    )
    api_key_id: Mapped[int] = mapped_column(
        ForeignKey("api_key.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EntryChange(Base):
    """Append-only change feed: every write to an entry's searchable text adds a row.

    Index processes remember the last id they applied, so they update incrementally and
    several processes sharing one database converge on the same content.
    """

    __tablename__ = "entry_change"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    entry_id: Mapped[int] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Thread(Base):
    """A resolved support conversation from a social channel or e-mail."""

    __tablename__ = "thread"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    external_id: Mapped[str] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(2000))
    status: Mapped[ThreadStatus] = mapped_column(
        _enum(ThreadStatus, "thread_status"), default=ThreadStatus.uncovered
    )
    resolved_at: Mapped[datetime | None] = mapped_column()
    faq_id: Mapped[int | None] = mapped_column(
        ForeignKey("faq_entry.id", ondelete="SET NULL"), index=True
    )
    draft_id: Mapped[int | None] = mapped_column(
        ForeignKey("faq_draft.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    posts: Mapped[list[ThreadPost]] = relationship(
        back_populates="thread",
        order_by="ThreadPost.position",
        cascade="all, delete-orphan",
        lazy="raise",
    )


class ThreadPost(Base):
    """One post of a thread; raw text kept, cleaned text derived, handle pseudonymised."""

    __tablename__ = "thread_post"
    __table_args__ = (UniqueConstraint("thread_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("thread.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    role: Mapped[PostRole] = mapped_column(_enum(PostRole, "post_role"))
    author_hash: Mapped[str] = mapped_column(String(64))
    text_raw: Mapped[str] = mapped_column(Text)
    text_clean: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime | None] = mapped_column()

    thread: Mapped[Thread] = relationship(back_populates="posts", lazy="raise")


class DraftStatus(enum.StrEnum):
    open = "open"
    published = "published"
    merged = "merged"
    rejected = "rejected"


class FaqDraft(Base):
    """A proposed entry distilled from a cluster of uncovered threads."""

    __tablename__ = "faq_draft"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    language: Mapped[str] = mapped_column(String(8))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[DraftStatus] = mapped_column(
        _enum(DraftStatus, "draft_status"), default=DraftStatus.open, index=True
    )
    reject_reason: Mapped[str | None] = mapped_column(String(500))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("faq_entry.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Suggestion(Base):
    """A post an agent asked about, what the service suggested and what the agent did."""

    __tablename__ = "suggestion"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)  # personal data masked before storing
    language: Mapped[str] = mapped_column(String(8))
    channel: Mapped[str | None] = mapped_column(String(32))
    candidates: Mapped[list[Any]] = mapped_column(default=list)
    best_faq_id: Mapped[int | None] = mapped_column(
        ForeignKey("faq_entry.id", ondelete="SET NULL"), index=True
    )
    confidence: Mapped[float] = mapped_column(Float)
    abstained: Mapped[bool] = mapped_column(Boolean, index=True)
    latency_ms: Mapped[float] = mapped_column(Float)
    outcome: Mapped[SuggestionOutcome | None] = mapped_column(
        _enum(SuggestionOutcome, "suggestion_outcome")
    )
    outcome_text: Mapped[str | None] = mapped_column(Text)
    outcome_faq_id: Mapped[int | None] = mapped_column(
        ForeignKey("faq_entry.id", ondelete="SET NULL")
    )
    outcome_at: Mapped[datetime | None] = mapped_column()
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # The reply draft offered with the suggestion (never containing the post's personal data).
    triage: Mapped[TriageAdvice | None] = mapped_column(_enum(TriageAdvice, "triage_advice"))
    reply_text: Mapped[str | None] = mapped_column(Text)
    dm_handoff: Mapped[bool | None] = mapped_column(Boolean)


class PageView(Base):
    """Views of one revision on one day from one source (aggregated counter row)."""

    __tablename__ = "page_view"
    __table_args__ = (
        UniqueConstraint("revision_id", "day", "source"),
        # An article's numbers (health page, stats) are read by entry, over days.
        Index("ix_page_view_entry_id_day", "entry_id", "day"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("faq_entry.id", ondelete="CASCADE"))
    revision_id: Mapped[int] = mapped_column(ForeignKey("faq_revision.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    source: Mapped[ViewSource] = mapped_column(_enum(ViewSource, "view_source"))
    count: Mapped[int] = mapped_column(Integer, default=0)


class VisitorSeen(Base):
    """Last counted view per visitor and revision, so reloads within a window count once."""

    __tablename__ = "visitor_seen"
    __table_args__ = (UniqueConstraint("revision_id", "visitor_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("faq_revision.id", ondelete="CASCADE"))
    visitor_hash: Mapped[str] = mapped_column(String(64))
    last_counted_at: Mapped[datetime] = mapped_column()


class Vote(Base):
    """A visitor's "was this helpful?" answer for the revision they were shown."""

    __tablename__ = "vote"
    __table_args__ = (
        UniqueConstraint("revision_id", "visitor_hash"),
        Index("ix_vote_entry_id", "entry_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("faq_entry.id", ondelete="CASCADE"))
    revision_id: Mapped[int] = mapped_column(ForeignKey("faq_revision.id", ondelete="CASCADE"))
    visitor_hash: Mapped[str] = mapped_column(String(64))
    helpful: Mapped[bool] = mapped_column(Boolean)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DailyFeedback(Base):
    """Daily counts imported from another help center, attached to a revision."""

    __tablename__ = "daily_feedback"
    __table_args__ = (UniqueConstraint("entry_id", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("faq_entry.id", ondelete="CASCADE"))
    revision_id: Mapped[int] = mapped_column(ForeignKey("faq_revision.id", ondelete="CASCADE"))
    day: Mapped[date] = mapped_column(Date)
    views: Mapped[int] = mapped_column(Integer, default=0)
    helpful: Mapped[int] = mapped_column(Integer, default=0)
    not_helpful: Mapped[int] = mapped_column(Integer, default=0)


class SearchLog(Base):
    """A site search: text, result count, clicked article; no personal data."""

    __tablename__ = "search_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    query: Mapped[str] = mapped_column(String(500))
    language: Mapped[str] = mapped_column(String(8))
    result_count: Mapped[int] = mapped_column(Integer)
    top_score: Mapped[float | None] = mapped_column(Float)
    good_result: Mapped[bool] = mapped_column(Boolean)
    clicked_entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("faq_entry.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class Flag(Base):
    """Something an editor should look at, with the evidence and an impact score."""

    __tablename__ = "flag"
    __table_args__ = (
        Index("ix_flag_kind_status", "kind", "status"),
        # At most one open flag per problem, even when two recomputes race (CLI and server).
        Index(
            "uq_flag_open_kind_key",
            "kind",
            "key",
            unique=True,
            sqlite_where=sql_text("status = 'open'"),
            postgresql_where=sql_text("status = 'open'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int | None] = mapped_column(
        ForeignKey("faq_entry.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[FlagKind] = mapped_column(_enum(FlagKind, "flag_kind"))
    # Identifies "the same problem" so an open flag is not raised twice (e.g. the pair of ids).
    key: Mapped[str] = mapped_column(String(200))
    score: Mapped[float] = mapped_column(Float, default=0.0)
    evidence: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[FlagStatus] = mapped_column(_enum(FlagStatus, "flag_status"))
    resolved_by: Mapped[str | None] = mapped_column(String(200))
    resolution: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column()
    # The revision judged (per-revision kinds): a rewrite starts a new revision, so its flag
    # is resolved and the new text is judged on its own numbers.
    revision_id: Mapped[int | None] = mapped_column(
        ForeignKey("faq_revision.id", ondelete="SET NULL")
    )
    # Copied from the entry (or the gap's posts) so the queue filters without joins.
    language: Mapped[str | None] = mapped_column(String(8), index=True)
    category: Mapped[str | None] = mapped_column(String(64))
    # The last recompute that confirmed the problem (score and evidence refreshed then).
    checked_at: Mapped[datetime | None] = mapped_column()


class ApiKey(Base):
    """An API key; only the SHA-256 of the secret is stored."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "api_role"))
    prefix: Mapped[str] = mapped_column(String(16))  # shown in listings to tell keys apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()
    last_used_at: Mapped[datetime | None] = mapped_column()


class User(Base):
    """A named editor or admin who signs in to the pages (kb/auth/users.py)."""

    __tablename__ = "app_user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Stored lower-cased, so uniqueness is case-insensitive on every database.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "user_role"))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column()
    last_login_at: Mapped[datetime | None] = mapped_column()


class UserSession(Base):
    """A signed-in browser: only the SHA-256 of the cookie's random id is stored."""

    __tablename__ = "user_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("app_user.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    address: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship()


class AuditEvent(Base):
    """One editorial or administrative action: who, when, what, and before/after."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_target", "target_type", "target_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(400), index=True)
    actor_kind: Mapped[str] = mapped_column(String(16))  # user, key or system
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str] = mapped_column(String(128))
    before: Mapped[dict[str, Any] | None] = mapped_column()
    after: Mapped[dict[str, Any] | None] = mapped_column()


class JobRun(Base):
    """The last run of a periodic job of `faqloop serve` (kb/ops/jobs.py), one row per job:
    a replica that gets the job's lock skips the run when another ran it within the interval."""

    __tablename__ = "job_run"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    started_at: Mapped[datetime] = mapped_column()
    finished_at: Mapped[datetime] = mapped_column()
    ok: Mapped[bool] = mapped_column(Boolean)
    runner: Mapped[str] = mapped_column(String(200))  # host and process id
    runs: Mapped[int] = mapped_column(Integer, default=0)  # runs recorded, ever


class Webhook(Base):
    """An outgoing webhook: where to POST which events, signed with its secret
    (kb/notify/)."""

    __tablename__ = "webhook"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(200), default="")
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # HMAC-SHA256 key of the signatures; kept as is (signing needs it), never shown again.
    secret: Mapped[str] = mapped_column(String(200))
    # draft.demand fires once a draft has this many threads.
    min_demand: Mapped[int] = mapped_column(Integer, default=5)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(400), default="")


class WebhookEvent(Base):
    """The outbox: an event, written in the transaction of the change it reports."""

    __tablename__ = "webhook_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook: its attempts, last answer and next try."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        # An event about the same thing (a draft reaching its demand) reaches a webhook once;
        # checked before writing, not a unique constraint: a rare duplicate notice is better
        # than an ingestion that fails on a race.
        Index("ix_webhook_delivery_dedup", "webhook_id", "dedup_key"),
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(
        ForeignKey("webhook.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_event.id", ondelete="CASCADE"), index=True
    )
    dedup_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Who is sending it now and until when (a worker that dies frees it when this passes).
    claim_token: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None] = mapped_column()
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column()
    delivered_at: Mapped[datetime | None] = mapped_column()

    event: Mapped[WebhookEvent] = relationship(lazy="joined")
