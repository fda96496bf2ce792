"""Knowledge capture: resolved support threads become phrasings, evidence and FAQ drafts.

The flow for each thread (ARCHITECTURE.md, "The loop"):

1. **Store** it, idempotent on (channel, external id): raw posts kept, cleaned text derived
   (kb.cleaning), handles pseudonymised. Sending a thread again updates it; when its
   customer question and linked FAQ are unchanged it keeps where it was filed.
2. **Covered?** The FAQ the agent linked, or else the same retrieval and calibrated
   confidence as suggest on the customer's cleaned question. A covered thread is evidence
   for that FAQ (``thread.faq_id``) and its question becomes a phrasing of it (de-duplicated),
   recorded in the change feed so the index learns it once the caller commits and syncs.
3. **Cluster** the rest by meaning: a thread joins the draft whose threads it is, on
   average, most similar to (cosine of the embedded questions ≥ ``join_similarity``), open
   or rejected (a rejected topic keeps attracting its look-alikes instead of coming back as
   a new draft) or already published (then it is evidence for the published FAQ). Threads
   that join nothing are grouped among themselves by average-linkage clustering with the
   same threshold, and each group becomes a new draft. Inputs are sorted and ties broken by
   position, so the same input always gives the same drafts.
4. **Drafts** carry a representative question (the medoid of their threads' questions) and
   an answer (the agent reply that best answers the cluster), refreshed as threads join
   unless an editor has rewritten them; demand is computed from the threads.
5. **Review**: edit, publish (a new entry with its first revision and the threads'
   phrasings), merge into an entry (phrasings and evidence move over), reject with a
   reason, reopen.

Services flush but never commit; the router or the CLI commits and then syncs the index.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from indexer.confidence import ConfidenceModel
from indexer.embedding import Embedder, Vectors
from kb import cleaning
from kb.errors import InvalidInput, InvalidTransition, NotFound
from kb.faqs import MAX_ANSWER, MAX_QUESTION, add_phrasings, create_entry, record_change
from kb.indexing import IndexManager, first_passage
from kb.models import (
    DraftStatus,
    EntryStatus,
    FaqDraft,
    FaqEntry,
    PhrasingSource,
    PostRole,
    QuestionPhrasing,
    Thread,
    ThreadPost,
    ThreadStatus,
    utcnow,
)
from kb.personal_data import mask_personal_data
from kb.text import LANGUAGES, detect_language

MAX_POSTS = 200
MAX_POST_CHARS = 10_000
MAX_CHANNEL = 32
MAX_EXTERNAL_ID = 200
MAX_URL = 2000
MAX_REASON = 500
MAX_CATEGORY = 64
# Measured on StackFAQ (README, "Knowledge capture"): average linkage of multilingual-e5-small
# query vectors; 0.905 gave the best adjusted Rand index, and purity near 0.9.
DEFAULT_JOIN_SIMILARITY = 0.905
# Open and rejected drafts take new threads; published and merged ones route them to their
# entry as evidence.
_LIVE_DRAFT = (DraftStatus.open, DraftStatus.rejected)
_CAPTURING_DRAFT = (*_LIVE_DRAFT, DraftStatus.published, DraftStatus.merged)


# --------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostIn:
    role: PostRole
    author: str
    text: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class ThreadIn:
    """A resolved thread as received (API body or one import row), validated."""

    channel: str
    external_id: str
    posts: tuple[PostIn, ...]
    url: str | None = None
    resolved_at: datetime | None = None
    faq_id: int | None = None


CHANNEL_ALIASES = {"twitter": "x", "x.com": "x", "ig": "instagram", "mail": "email"}


def parse_time(value: object, what: str) -> datetime | None:
    """An aware UTC datetime from a datetime, an ISO 8601 string or a Unix time; None for empty.

    Naive times are taken as UTC, the convention of the exports this reads.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # Milliseconds since the epoch are common in exports; seconds would be before 1973.
        seconds = value / 1000 if value > 100_000_000_000 else value
        try:
            parsed = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise InvalidInput(f"{what} is not a valid time: {value!r}") from exc
    elif isinstance(value, str):
        text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
        if "T" not in text and " " in text and text.count(":") >= 1:
            text = text.replace(" ", "T", 1)
        text = text.replace("/", "-")
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise InvalidInput(
                f"{what} is not an ISO 8601 time (e.g. 2026-11-20T09:15:00+09:00): {value!r}"
            ) from exc
    else:
        raise InvalidInput(f"{what} must be a time string, got {type(value).__name__}")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _text(data: Mapping[str, Any], key: str, what: str, *, required: bool, limit: int) -> str:
    value = data.get(key)
    if value is None:
        value = ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # numeric ids in exports
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    value = value.strip()
    if required and not value:
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters")
    return value


def normalize_channel(value: str) -> str:
    """Lower-case channel name with common aliases folded (twitter → x)."""
    channel = value.strip().lower()
    return CHANNEL_ALIASES.get(channel, channel)


def post_from_dict(data: object, where: str) -> PostIn:
    """One post of a thread body; raises InvalidInput naming `where`."""
    if not isinstance(data, Mapping):
        raise InvalidInput(f"{where} must be an object")
    role = _text(data, "role", f"{where}.role", required=True, limit=32).lower()
    if role not in (PostRole.customer.value, PostRole.agent.value):
        raise InvalidInput(f"{where}.role must be customer or agent, got {role!r}")
    text = _text(data, "text", f"{where}.text", required=True, limit=MAX_POST_CHARS)
    author = _text(data, "author", f"{where}.author", required=False, limit=200)
    created = parse_time(data.get("created_at"), f"{where}.created_at")
    return PostIn(role=PostRole(role), author=author, text=text, created_at=created)


def thread_from_dict(data: object) -> ThreadIn:
    """Validate a thread body (the API body and one JSONL line share it); InvalidInput if bad.

    Unknown keys are ignored: exports carry extra fields.
    """
    if not isinstance(data, Mapping):
        raise InvalidInput("a thread must be a JSON object")
    channel = normalize_channel(_text(data, "channel", "channel", required=True, limit=MAX_CHANNEL))
    external_id = _text(data, "external_id", "external_id", required=True, limit=MAX_EXTERNAL_ID)
    url = _text(data, "url", "url", required=False, limit=MAX_URL) or None
    if url is not None and not url.lower().startswith(("http://", "https://", "mailto:")):
        raise InvalidInput("url must start with http://, https:// or mailto:")
    raw_faq = data.get("faq_id")
    faq_id: int | None = None
    if raw_faq not in (None, ""):
        try:
            faq_id = int(str(raw_faq).strip())
        except ValueError as exc:
            raise InvalidInput(f"faq_id must be an integer, got {raw_faq!r}") from exc
        if faq_id < 1:
            raise InvalidInput("faq_id must be a positive integer")
    raw_posts = data.get("posts")
    if not isinstance(raw_posts, list) or not raw_posts:
        raise InvalidInput("posts must be a non-empty list")
    if len(raw_posts) > MAX_POSTS:
        raise InvalidInput(f"a thread has at most {MAX_POSTS} posts")
    posts = tuple(post_from_dict(p, f"posts[{i}]") for i, p in enumerate(raw_posts))
    if not any(p.role == PostRole.customer for p in posts):
        raise InvalidInput("a thread needs at least one customer post")
    return ThreadIn(
        channel=channel,
        external_id=external_id,
        url=url,
        resolved_at=parse_time(data.get("resolved_at"), "resolved_at"),
        faq_id=faq_id,
        posts=posts,
    )


# --------------------------------------------------------------------------------------
# What the capture needs from the process
# --------------------------------------------------------------------------------------


class QuestionVectors:
    """Query vectors of cleaned questions, memoised (clustering compares against every
    thread already filed, and re-embedding them on each ingest would dominate its cost)."""

    def __init__(self, embedder: Embedder, *, max_items: int = 50_000) -> None:
        self.embedder = embedder
        self._max = max_items
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised query vectors, one row per text."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        fresh = self.embedder.encode_queries(missing) if missing else None
        out = np.zeros((len(texts), self.embedder.dim), dtype=np.float32)
        with self._lock:
            if fresh is not None:
                for text, vec in zip(missing, fresh, strict=True):
                    self._cache[text] = vec
            local = dict(zip(missing, fresh, strict=True)) if fresh is not None else {}
            for i, text in enumerate(texts):
                vec = local.get(text)
                if vec is None:
                    vec = self._cache[text]
                    self._cache.move_to_end(text)
                out[i] = vec
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return out


@dataclass(frozen=True)
class CapturePolicy:
    """Thresholds of the capture (the CLI can override them; see README)."""

    # Calibrated confidence needed to call a thread covered by the FAQ retrieval finds.
    cover_threshold: float = 0.5
    # Average cosine similarity for a thread to join a draft (and for threads to group).
    join_similarity: float = DEFAULT_JOIN_SIMILARITY
    # Threads clustered together at most (the similarity matrix is quadratic).
    max_cluster_batch: int = 1000
    search_k: int = 5


@dataclass
class Capture:
    """The process's index, confidence model, vectors and the pseudonymisation secret."""

    index: IndexManager
    calibration: ConfidenceModel
    vectors: QuestionVectors
    policy: CapturePolicy
    secret: str


# --------------------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------------------


@dataclass
class ThreadOutcome:
    """Where one ingested thread was filed."""

    thread_id: int
    channel: str
    external_id: str
    created: bool
    changed: bool
    status: ThreadStatus
    faq_id: int | None
    draft_id: int | None
    question: str
    language: str
    confidence: float | None = None
    # The best match of the retrieval even when not confident enough (for measurement).
    best_faq_id: int | None = None
    phrasing_added: bool = False


@dataclass
class IngestReport:
    """What `ingest_threads` did; `touched_entries` need an index sync after the commit."""

    outcomes: list[ThreadOutcome] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (input position, why)
    touched_entries: set[int] = field(default_factory=set)
    new_drafts: set[int] = field(default_factory=set)
    touched_drafts: set[int] = field(default_factory=set)

    def count(self, status: ThreadStatus) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


@dataclass
class _Pending:
    thread: Thread
    outcome: ThreadOutcome
    link: int | None
    sort_key: tuple[str, str, str]


def thread_question(posts: Sequence[ThreadPost]) -> str:
    """The customer's cleaned question of a thread (from its stored posts)."""
    ordered = sorted(posts, key=lambda p: p.position)
    return cleaning.customer_question([(p.role.value, p.text_clean) for p in ordered])


def thread_answer(posts: Sequence[ThreadPost]) -> str:
    """The agents' replies of a thread as one cleaned Markdown answer."""
    ordered = sorted(posts, key=lambda p: p.position)
    return cleaning.agent_reply_markdown(p.text_raw for p in ordered if p.role == PostRole.agent)


def resolve_entry(session: Session, entry_id: int) -> FaqEntry:
    """The entry, following merges to the surviving one; NotFound when absent."""
    seen: set[int] = set()
    entry = session.get(FaqEntry, entry_id)
    while entry is not None and entry.status == EntryStatus.merged and entry.merged_into_id:
        if entry.id in seen:
            break
        seen.add(entry.id)
        entry = session.get(FaqEntry, entry.merged_into_id)
    if entry is None:
        raise NotFound(f"FAQ {entry_id} not found")
    return entry


def _resolve_link(session: Session, faq_id: int | None) -> int | None:
    if faq_id is None:
        return None
    try:
        return resolve_entry(session, faq_id).id
    except NotFound as exc:
        raise InvalidInput(f"faq_id {faq_id} does not exist") from exc


def ingest_threads(
    session: Session,
    capture: Capture,
    items: Sequence[ThreadIn],
    *,
    strict: bool = True,
    progress: Callable[[int], None] | None = None,
) -> IngestReport:
    """Store threads and file each: evidence and phrasing, a draft, or (no question) neither.

    With `strict` the first invalid thread raises; otherwise it is listed in `rejected` and
    the others go on. Every check runs before a thread is written, so a rejected thread
    leaves nothing behind. The caller commits, then syncs the index for `touched_entries`.
    """
    report = IngestReport()
    pending: list[_Pending] = []
    machine_made: dict[int, set[str]] = {}
    by_key: dict[tuple[str, str], _Pending] = {}
    for position, item in enumerate(items):
        try:
            link = _resolve_link(session, item.faq_id)
        except InvalidInput as exc:
            if strict:
                raise
            report.rejected.append((position, exc.message))
            continue
        stored = _store(session, capture, item, link, report, machine_made)
        key = (item.channel, item.external_id)
        previous = by_key.get(key)
        if previous is not None:  # the same thread twice in one batch: the last one wins
            pending.remove(previous)
            report.outcomes.remove(previous.outcome)
            stored.outcome.created = stored.outcome.created or previous.outcome.created
            stored.outcome.changed = True
        by_key[key] = stored
        pending.append(stored)
        report.outcomes.append(stored.outcome)
    session.flush()
    to_file = [p for p in pending if p.outcome.changed and (p.outcome.question or p.link)]
    if progress is not None:
        progress(len(items) - len(to_file))
    _file_threads(session, capture, to_file, report, progress)
    for p in pending:
        if p.outcome.changed and not p.outcome.question and not p.link:
            # Nothing to match or cluster: the posts were all greetings, links or emoji.
            p.thread.status = ThreadStatus.uncovered
            p.outcome.status = ThreadStatus.uncovered
    for draft_id in sorted(report.touched_drafts):
        _refresh_draft(session, capture, draft_id, machine_made.get(draft_id, set()))
    session.flush()
    for p in pending:  # the refresh may have deleted an emptied draft
        p.outcome.status = p.thread.status
        p.outcome.faq_id = p.thread.faq_id
        p.outcome.draft_id = p.thread.draft_id
    return report


def _store(
    session: Session,
    capture: Capture,
    item: ThreadIn,
    link: int | None,
    report: IngestReport,
    machine_made: dict[int, set[str]],
) -> _Pending:
    thread = session.scalar(
        select(Thread)
        .where(Thread.channel == item.channel, Thread.external_id == item.external_id)
        .options(selectinload(Thread.posts))
    )
    created = thread is None
    if thread is None:
        thread = Thread(channel=item.channel, external_id=item.external_id, posts=[])
        session.add(thread)
        old_question = old_answer = ""
    else:
        old_question = thread_question(thread.posts)
        old_answer = thread_answer(thread.posts)
    thread.url = item.url if item.url is not None else thread.url
    resolved = item.resolved_at or max(
        (p.created_at for p in item.posts if p.created_at), default=None
    )
    thread.resolved_at = resolved or thread.resolved_at or utcnow()
    _replace_posts(thread, item.posts, capture.secret)
    session.flush()
    question = thread_question(thread.posts)
    changed = (
        created
        or question != old_question
        or (link is not None and link != thread.faq_id)
        or (thread.status == ThreadStatus.uncovered and bool(question))
    )
    if changed and not created:
        if thread.draft_id is not None:
            machine_made.setdefault(thread.draft_id, set()).update({old_question, old_answer})
        _detach(session, thread, report)
    elif not created and thread.draft_id is not None:
        # Same question, maybe a better agent reply: the draft's answer may change.
        machine_made.setdefault(thread.draft_id, set()).update({old_question, old_answer})
        draft = session.get(FaqDraft, thread.draft_id)
        if draft is not None and draft.status in _LIVE_DRAFT:
            report.touched_drafts.add(draft.id)
    language = detect_language(question) if question else "en"
    outcome = ThreadOutcome(
        thread_id=thread.id,
        channel=thread.channel,
        external_id=thread.external_id,
        created=created,
        changed=changed,
        status=thread.status,
        faq_id=thread.faq_id,
        draft_id=thread.draft_id,
        question=question,
        language=language,
    )
    when = thread.resolved_at.isoformat() if thread.resolved_at else ""
    return _Pending(thread, outcome, link, (when, thread.channel, thread.external_id))


def _replace_posts(thread: Thread, posts: Sequence[PostIn], secret: str) -> None:
    # Updated in place by position: rows keep their ids, and no delete-then-insert of the
    # same (thread, position) has to be ordered within one flush.
    existing = {p.position: p for p in thread.posts}
    for position, post in enumerate(posts):
        # Stored posts keep personal data masked (kb.personal_data); links stay.
        raw = mask_personal_data(post.text)
        clean = cleaning.clean_post_text(raw, post.role.value)
        values = {
            "role": post.role,
            "author_hash": cleaning.pseudonymize(post.author, secret),
            "text_raw": raw,
            "text_clean": clean,
            "created_at": post.created_at,
        }
        row = existing.pop(position, None)
        if row is None:
            thread.posts.append(ThreadPost(position=position, **values))
            continue
        for name, value in values.items():
            if getattr(row, name) != value:
                setattr(row, name, value)
    for row in existing.values():
        thread.posts.remove(row)


def _detach(session: Session, thread: Thread, report: IngestReport) -> None:
    """Undo where a thread was filed (its question changed): phrasing, evidence, draft."""
    learnt = session.scalars(
        select(QuestionPhrasing).where(
            QuestionPhrasing.thread_id == thread.id,
            QuestionPhrasing.source == PhrasingSource.thread,
        )
    ).all()
    for phrasing in learnt:
        report.touched_entries.add(phrasing.entry_id)
        record_change(session, phrasing.entry_id)
        session.delete(phrasing)
    if thread.draft_id is not None:
        draft = session.get(FaqDraft, thread.draft_id)
        if draft is not None and draft.status in _LIVE_DRAFT:
            report.touched_drafts.add(draft.id)
    thread.status = ThreadStatus.uncovered
    thread.faq_id = None
    thread.draft_id = None


def _add_thread_phrasing(
    session: Session, entry_id: int, thread: Thread, question: str, report: IngestReport
) -> bool:
    if not question:
        return False
    entry = session.get(FaqEntry, entry_id)
    if entry is None:
        return False
    added = add_phrasings(
        session,
        entry,
        [cleaning.shorten(question, MAX_QUESTION)],
        source=PhrasingSource.thread,
        thread_id=thread.id,
    )
    if added:
        record_change(session, entry_id)
        report.touched_entries.add(entry_id)
    return bool(added)


def _cover(
    session: Session, p: _Pending, entry_id: int, report: IngestReport, draft_id: int | None
) -> None:
    p.thread.status = ThreadStatus.covered
    p.thread.faq_id = entry_id
    p.thread.draft_id = draft_id
    p.outcome.phrasing_added = _add_thread_phrasing(
        session, entry_id, p.thread, p.outcome.question, report
    )
    report.touched_entries.add(entry_id)


_ENCODE_BATCH = 64


def _file_threads(
    session: Session,
    capture: Capture,
    pending: list[_Pending],
    report: IngestReport,
    progress: Callable[[int], None] | None,
) -> None:
    if not pending:
        return
    pending = sorted(pending, key=lambda p: p.sort_key)
    vec_of: dict[int, Vectors] = {}
    uncovered: list[_Pending] = []
    for start in range(0, len(pending), _ENCODE_BATCH):
        part = pending[start : start + _ENCODE_BATCH]
        asked = [p for p in part if p.outcome.question]
        vectors = capture.vectors.encode([p.outcome.question for p in asked])
        vec_of.update({id(p): vectors[i] for i, p in enumerate(asked)})
        for p in part:
            if p.link is not None:
                _cover(session, p, p.link, report, None)
                continue
            best, confidence = _best_match(session, capture, p, vec_of[id(p)])
            p.outcome.confidence = round(confidence, 4)
            p.outcome.best_faq_id = best
            entry_id = best if confidence >= capture.policy.cover_threshold else None
            if entry_id is not None:
                _cover(session, p, entry_id, report, None)
            else:
                uncovered.append(p)
        if progress is not None:
            progress(len(part))
    by_language: dict[str, list[_Pending]] = {}
    for p in uncovered:
        by_language.setdefault(p.outcome.language, []).append(p)
    size = max(1, capture.policy.max_cluster_batch)
    for language in sorted(by_language):
        group = by_language[language]
        for start in range(0, len(group), size):
            chunk = group[start : start + size]
            matrix = np.stack([vec_of[id(p)] for p in chunk])
            _cluster(session, capture, language, chunk, matrix, report)
            session.flush()


def _best_match(
    session: Session, capture: Capture, p: _Pending, vector: Vectors
) -> tuple[int | None, float]:
    """The top published entry for the thread's question and the calibrated confidence."""
    index = capture.index.index_or_raise()
    result = index.search(
        p.outcome.question,
        k=capture.policy.search_k,
        language=p.outcome.language,
        query_vector=vector,
    )
    if not result.hits:
        return None, 0.0
    confidence = capture.calibration.confidence(result)
    top = session.get(FaqEntry, result.hits[0].entry_id)
    # The index may lag the database: never file evidence under an unpublished entry.
    if top is None or top.status != EntryStatus.published:
        return None, 0.0
    return top.id, confidence


@dataclass
class _Cluster:
    draft: FaqDraft
    thread_ids: list[int]


def _draft_members(session: Session, language: str) -> defaultdict[int, list[tuple[int, str]]]:
    """(thread id, question) of the threads of each capturing draft, oldest thread first."""
    out: defaultdict[int, list[tuple[int, str]]] = defaultdict(list)
    rows = session.execute(
        select(
            Thread.id, Thread.draft_id, ThreadPost.position, ThreadPost.role, ThreadPost.text_clean
        )
        .join(ThreadPost, ThreadPost.thread_id == Thread.id)
        .join(FaqDraft, FaqDraft.id == Thread.draft_id)
        .where(FaqDraft.language == language, FaqDraft.status.in_(_CAPTURING_DRAFT))
        .order_by(Thread.id, ThreadPost.position)
    ).all()
    posts: dict[int, list[tuple[str, str]]] = {}
    owner: dict[int, int] = {}
    for thread_id, draft_id, _, role, text in rows:
        if draft_id is None:
            continue
        posts.setdefault(thread_id, []).append((role.value, text))
        owner[thread_id] = draft_id
    for thread_id in sorted(posts):
        question = cleaning.customer_question(posts[thread_id])
        if question:
            out[owner[thread_id]].append((thread_id, question))
    return out


def _cluster(
    session: Session,
    capture: Capture,
    language: str,
    chunk: list[_Pending],
    matrix: Vectors,
    report: IngestReport,
) -> None:
    threshold = capture.policy.join_similarity
    drafts = list(
        session.scalars(
            select(FaqDraft)
            .where(FaqDraft.language == language, FaqDraft.status.in_(_CAPTURING_DRAFT))
            .order_by(FaqDraft.id)
        )
    )
    members = _draft_members(session, language)
    clusters = [_Cluster(d, [t for t, _ in members[d.id]]) for d in drafts if members[d.id]]
    texts = [q for d in drafts for _, q in members[d.id]]
    rest = list(range(len(chunk)))
    if clusters:
        known = capture.vectors.encode(texts).astype(np.float64)
        sizes = np.array([len(c.thread_ids) for c in clusters])
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        sims = matrix.astype(np.float64) @ known.T  # threads x known questions, by draft
        means = np.add.reduceat(sims, starts, axis=1) / sizes  # average similarity per draft
        best = means.argmax(axis=1)  # the first of equals: the oldest draft
        rest = []
        for i, p in enumerate(chunk):
            if means[i, best[i]] < threshold:
                rest.append(i)
                continue
            draft = clusters[best[i]].draft
            if draft.status in _LIVE_DRAFT:
                p.thread.status = ThreadStatus.drafted
                p.thread.draft_id = draft.id
                report.touched_drafts.add(draft.id)
            elif (entry := _live_entry(session, draft.entry_id)) is not None:
                _cover(session, p, entry.id, report, draft.id)
            else:  # its entry was archived since: the thread needs a draft of its own
                rest.append(i)
    if not rest:
        return
    groups = average_linkage(matrix[rest].astype(np.float64), threshold)
    for group in groups:
        draft = FaqDraft(language=language, question="", answer="", status=DraftStatus.open)
        session.add(draft)
        session.flush()
        report.new_drafts.add(draft.id)
        report.touched_drafts.add(draft.id)
        for i in group:
            p = chunk[rest[i]]
            p.thread.status = ThreadStatus.drafted
            p.thread.draft_id = draft.id


def _live_entry(session: Session, entry_id: int | None) -> FaqEntry | None:
    if entry_id is None:
        return None
    try:
        entry = resolve_entry(session, entry_id)
    except NotFound:
        return None
    return entry if entry.status == EntryStatus.published else None


def average_linkage(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    """Group rows whose average pairwise cosine similarity stays ≥ threshold (UPGMA).

    Deterministic: of equally similar pairs the first in row order merges first. Groups are
    returned in order of their first row.
    """
    n = len(vectors)
    if n == 0:
        return []
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    sizes = np.ones(n)
    members: list[list[int]] = [[i] for i in range(n)]
    while n > 1:
        flat = int(np.argmax(sim))
        i, j = divmod(flat, n)
        if sim[i, j] < threshold:
            break
        i, j = min(i, j), max(i, j)
        # Lance-Williams update: the average similarity to the union of i and j.
        merged = (sizes[i] * sim[i] + sizes[j] * sim[j]) / (sizes[i] + sizes[j])
        sim[i, :] = merged
        sim[:, i] = merged
        sim[i, i] = -np.inf
        sim[j, :] = -np.inf
        sim[:, j] = -np.inf
        sizes[i] += sizes[j]
        members[i].extend(members[j])
        members[j] = []
    return sorted((sorted(m) for m in members if m), key=lambda m: m[0])


# --------------------------------------------------------------------------------------
# Draft text
# --------------------------------------------------------------------------------------


def _load_member_threads(session: Session, draft_id: int) -> list[Thread]:
    return list(
        session.scalars(
            select(Thread)
            .where(Thread.draft_id == draft_id)
            .options(selectinload(Thread.posts))
            .order_by(Thread.id)
        )
    )


def _refresh_draft(
    session: Session, capture: Capture, draft_id: int, machine_made: set[str]
) -> None:
    """Recompute a draft's question and answer from its threads, unless an editor wrote them.

    A text is machine-made when it is still one of the threads' own questions (or
    answers): that is all the capture ever writes, and an editor's rewrite is not.
    """
    draft = session.get(FaqDraft, draft_id)
    if draft is None or draft.status not in _LIVE_DRAFT:
        return
    threads = _load_member_threads(session, draft_id)
    questions = [(t, thread_question(t.posts)) for t in threads]
    questions = [(t, q) for t, q in questions if q]
    if not questions:
        if draft.status == DraftStatus.open:
            for t in threads:
                t.draft_id = None
                t.status = ThreadStatus.uncovered
            session.delete(draft)
        return
    answers = {t.id: thread_answer(t.posts) for t, _ in questions}
    own_questions = {q for _, q in questions} | machine_made | {""}
    own_answers = set(answers.values()) | machine_made | {""}
    question, answer = representative(capture, [q for _, q in questions], list(answers.values()))
    if draft.question in own_questions and draft.question != question:
        draft.question = question
    if draft.answer in own_answers and draft.answer != answer:
        draft.answer = answer


def representative(
    capture: Capture, questions: Sequence[str], answers: Sequence[str]
) -> tuple[str, str]:
    """The medoid question, and the answer that best answers the cluster.

    The medoid is the question most similar on average to the others (ties: the shorter,
    then the oldest).
    The answer is the non-empty agent reply whose passage vector is closest to the mean of
    the questions' vectors, the retrieval model's own notion of "answers this"; a reply of
    fewer than 20 characters ("DMで伺います" left nothing) is used only when none is longer.
    """
    qv = capture.vectors.encode(list(questions)).astype(np.float64)
    centrality = (qv @ qv.T).sum(axis=1)
    # Of equally central questions (always so for two) the shorter reads more like a title;
    # rounding keeps float noise from deciding.
    best = min(
        range(len(questions)), key=lambda i: (-round(centrality[i], 4), len(questions[i]), i)
    )
    question = questions[best]
    candidates = [a for a in answers if a.strip()]
    if not candidates:
        return question, ""
    substantive = [a for a in candidates if len(a) >= 20] or candidates
    unique = list(dict.fromkeys(substantive))
    if len(unique) == 1:
        return question, unique[0]
    centre = qv.mean(axis=0)
    # The first paragraph is what the index embeds for an answer too (so the vector is
    # reused once the draft is published), and long replies cost quadratic encode time.
    passages = [first_passage(a) or a[:400] for a in unique]
    av = capture.vectors.embedder.encode_passages(passages).astype(np.float64)
    scores = av @ centre
    return question, unique[int(np.argmax(scores))]


# --------------------------------------------------------------------------------------
# Demand and listing
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Demand:
    """How many threads asked, and whether the topic is growing."""

    threads: int
    last_7d: int
    previous_7d: int

    @property
    def growth(self) -> float:
        """Change of the last 7 days against the 7 before, relative (0.0 = flat, 2.0 = 3x).

        With nothing the week before, the week's count itself (a launch-day spike of 12
        threads reads 12.0).
        """
        return round((self.last_7d - self.previous_7d) / max(self.previous_7d, 1), 3)

    @property
    def trending(self) -> bool:
        """At least 3 threads this week and at least twice last week's."""
        return self.last_7d >= 3 and self.last_7d >= 2 * self.previous_7d


def demand_of(
    session: Session, draft_ids: Sequence[int], *, now: datetime | None = None
) -> dict[int, Demand]:
    """Thread counts per draft: all time, the last 7 days, the 7 days before."""
    now = now or utcnow()
    week, fortnight = now - timedelta(days=7), now - timedelta(days=14)
    counts = {d: [0, 0, 0] for d in draft_ids}
    if not draft_ids:
        return {}
    rows = session.execute(
        select(Thread.draft_id, Thread.resolved_at, Thread.created_at).where(
            Thread.draft_id.in_(list(draft_ids))
        )
    )
    for draft_id, resolved, created in rows:
        if draft_id is None:
            continue
        when = resolved or created
        c = counts[draft_id]
        c[0] += 1
        if week <= when <= now:
            c[1] += 1
        elif fortnight <= when < week:
            c[2] += 1
    return {d: Demand(*c) for d, c in counts.items()}


SORTS = ("demand", "growth", "recent", "newest")


@dataclass
class DraftView:
    """A draft with its demand and its source threads (posts loaded)."""

    draft: FaqDraft
    demand: Demand
    threads: list[Thread]


def _sort_key(sort: str) -> Any:
    def key(v: DraftView) -> tuple[float, ...]:
        d = v.demand
        if sort == "growth":
            return (-d.growth, -d.last_7d, -d.threads, v.draft.id)
        if sort == "recent":
            return (-d.last_7d, -d.growth, -d.threads, v.draft.id)
        if sort == "newest":
            return (-v.draft.id,)
        return (-d.threads, -d.growth, -d.last_7d, v.draft.id)

    return key


def list_drafts(
    session: Session,
    *,
    status: DraftStatus | None = DraftStatus.open,
    language: str | None = None,
    sort: str = "demand",
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> tuple[list[DraftView], int]:
    """A page of drafts sorted by demand (thread count, then growth) or by growth."""
    if sort not in SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS)}")
    query = select(FaqDraft)
    if status is not None:
        query = query.where(FaqDraft.status == status)
    if language is not None:
        query = query.where(FaqDraft.language == language)
    drafts = list(session.scalars(query.order_by(FaqDraft.id)))
    demand = demand_of(session, [d.id for d in drafts], now=now)
    views = [DraftView(d, demand[d.id], []) for d in drafts]
    views.sort(key=_sort_key(sort))
    page = views[offset : offset + limit]
    members: dict[int, list[Thread]] = {v.draft.id: [] for v in page}
    if page:
        for t in session.scalars(
            select(Thread)
            .where(Thread.draft_id.in_(list(members)))
            .options(selectinload(Thread.posts))
            .order_by(Thread.resolved_at.desc(), Thread.id)
        ):
            if t.draft_id is not None:
                members[t.draft_id].append(t)
    for v in page:
        v.threads = members[v.draft.id]
    return page, len(views)


def get_draft_or_raise(
    session: Session, draft_id: int, *, now: datetime | None = None
) -> DraftView:
    """One draft with its demand and source threads, or NotFound."""
    draft = session.get(FaqDraft, draft_id)
    if draft is None:
        raise NotFound(f"draft {draft_id} not found")
    threads = list(
        session.scalars(
            select(Thread)
            .where(Thread.draft_id == draft_id)
            .options(selectinload(Thread.posts))
            .order_by(Thread.resolved_at.desc(), Thread.id)
        )
    )
    return DraftView(draft, demand_of(session, [draft_id], now=now)[draft_id], threads)


def get_thread_or_raise(session: Session, thread_id: int) -> Thread:
    """A thread with its posts, or NotFound."""
    thread = session.scalar(
        select(Thread).where(Thread.id == thread_id).options(selectinload(Thread.posts))
    )
    if thread is None:
        raise NotFound(f"thread {thread_id} not found")
    return thread


def list_threads(
    session: Session,
    *,
    status: ThreadStatus | None = None,
    faq_id: int | None = None,
    draft_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Thread], int]:
    """A page of threads, newest resolved first; `faq_id` lists an entry's evidence."""
    query = select(Thread)
    if status is not None:
        query = query.where(Thread.status == status)
    if faq_id is not None:
        query = query.where(Thread.faq_id == faq_id)
    if draft_id is not None:
        query = query.where(Thread.draft_id == draft_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(
        query.options(selectinload(Thread.posts))
        .order_by(Thread.resolved_at.desc(), Thread.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), total


def count_threads(session: Session) -> dict[str, int]:
    """Threads per status."""
    rows = session.execute(select(Thread.status, func.count()).group_by(Thread.status))
    out = {s.value: 0 for s in ThreadStatus}
    for status, n in rows:
        out[status.value] = n
    return out


# --------------------------------------------------------------------------------------
# Review actions
# --------------------------------------------------------------------------------------


def _live_draft_or_raise(session: Session, draft_id: int, action: str) -> FaqDraft:
    draft = session.get(FaqDraft, draft_id)
    if draft is None:
        raise NotFound(f"draft {draft_id} not found")
    if draft.status not in _LIVE_DRAFT:
        where = f" as FAQ {draft.entry_id}" if draft.entry_id else ""
        raise InvalidTransition(
            f"draft {draft_id} is already {draft.status.value}{where}; it cannot be {action}"
        )
    return draft


def _check_draft_text(question: str, answer: str, category: str | None, language: str) -> None:
    if not question.strip():
        raise InvalidInput("question must not be empty")
    if len(question.strip()) > MAX_QUESTION:
        raise InvalidInput(f"question is longer than {MAX_QUESTION} characters")
    if len(answer) > MAX_ANSWER:
        raise InvalidInput(f"answer is longer than {MAX_ANSWER} characters")
    if category is not None and len(category) > MAX_CATEGORY:
        raise InvalidInput(f"category is longer than {MAX_CATEGORY} characters")
    if language not in LANGUAGES:
        raise InvalidInput(f"lang must be one of {', '.join(LANGUAGES)}")


def update_draft(
    session: Session,
    draft_id: int,
    *,
    question: str | None = None,
    answer: str | None = None,
    category: str | None = None,
    language: str | None = None,
) -> FaqDraft:
    """An editor's rewrite of a draft (None keeps a field); later threads leave it alone."""
    draft = _live_draft_or_raise(session, draft_id, "edited")
    question = draft.question if question is None else question
    answer = draft.answer if answer is None else answer
    language = language or draft.language
    _check_draft_text(question, answer, category, language)
    draft.question = question.strip()
    draft.answer = answer.strip()
    draft.category = category.strip() if category and category.strip() else draft.category
    draft.language = language
    session.flush()
    return draft


def _move_threads_to_entry(
    session: Session, draft: FaqDraft, entry: FaqEntry, report: IngestReport
) -> int:
    """Phrasings and evidence of a draft's threads go to an entry; return phrasings added."""
    added = 0
    for thread in _load_member_threads(session, draft.id):
        question = thread_question(thread.posts)
        thread.status = ThreadStatus.covered
        thread.faq_id = entry.id
        if _add_thread_phrasing(session, entry.id, thread, question, report):
            added += 1
    record_change(session, entry.id)
    return added


@dataclass
class ReviewResult:
    draft: FaqDraft
    entry: FaqEntry
    phrasings_added: int


def publish_draft(
    session: Session,
    draft_id: int,
    *,
    category: str | None = None,
    question: str | None = None,
    answer: str | None = None,
    author: str = "",
) -> ReviewResult:
    """Create a published entry from a draft (first revision, the threads as phrasings)."""
    draft = _live_draft_or_raise(session, draft_id, "published")
    question = (question if question is not None else draft.question).strip()
    answer = (answer if answer is not None else draft.answer).strip()
    category = (category or draft.category or "").strip()
    if not category:
        raise InvalidInput("category is required to publish (the draft has none yet)")
    _check_draft_text(question, answer, category, draft.language)
    entry = create_entry(
        session,
        question=question,
        answer=answer,
        category=category,
        language=draft.language,
        author=author,
        reason=f"published from draft {draft.id}",
    )
    report = IngestReport()
    added = _move_threads_to_entry(session, draft, entry, report)
    draft.question, draft.answer, draft.category = question, answer, category
    draft.status = DraftStatus.published
    draft.entry_id = entry.id
    session.flush()
    return ReviewResult(draft, entry, added)


def merge_draft(session: Session, draft_id: int, *, faq_id: int) -> ReviewResult:
    """Fold a draft into an existing entry: its threads become that entry's phrasings and
    evidence, and later look-alike threads are routed there."""
    draft = _live_draft_or_raise(session, draft_id, "merged")
    entry = resolve_entry(session, faq_id)
    if entry.status != EntryStatus.published:
        raise InvalidInput(f"FAQ {entry.id} is {entry.status.value}; merge into a published FAQ")
    if entry.language != draft.language:
        other = ""
        if entry.translation_group:
            twin = session.scalar(
                select(FaqEntry.id).where(
                    FaqEntry.translation_group == entry.translation_group,
                    FaqEntry.language == draft.language,
                )
            )
            other = f" (its {draft.language} version is FAQ {twin})" if twin else ""
        raise InvalidInput(
            f"draft {draft.id} is in {draft.language} but FAQ {entry.id} is in "
            f"{entry.language}{other}"
        )
    report = IngestReport()
    added = _move_threads_to_entry(session, draft, entry, report)
    draft.status = DraftStatus.merged
    draft.entry_id = entry.id
    session.flush()
    return ReviewResult(draft, entry, added)


def reject_draft(session: Session, draft_id: int, *, reason: str) -> FaqDraft:
    """Reject a draft with a reason; its look-alikes keep attaching to it, not to new drafts."""
    reason = reason.strip()
    if not reason:
        raise InvalidInput("reason must not be empty")
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"reason is longer than {MAX_REASON} characters")
    draft = _live_draft_or_raise(session, draft_id, "rejected")
    draft.status = DraftStatus.rejected
    draft.reject_reason = reason
    session.flush()
    return draft


def reopen_draft(session: Session, draft_id: int) -> FaqDraft:
    """Put a rejected draft back in the review queue."""
    draft = session.get(FaqDraft, draft_id)
    if draft is None:
        raise NotFound(f"draft {draft_id} not found")
    if draft.status != DraftStatus.rejected:
        raise InvalidTransition(f"draft {draft_id} is {draft.status.value}, not rejected")
    draft.status = DraftStatus.open
    draft.reject_reason = None
    session.flush()
    return draft


def similar_entries(
    session: Session, capture: Capture, draft: FaqDraft, *, k: int = 5
) -> list[tuple[FaqEntry, float]]:
    """Published entries closest to a draft's question (merge candidates for the editor)."""
    if not draft.question or not capture.index.ready:
        return []
    result = capture.index.search(draft.question, k=k, language=draft.language)
    found = {
        e.id: e
        for e in session.scalars(
            select(FaqEntry).where(FaqEntry.id.in_([h.entry_id for h in result.hits]))
        )
    }
    return [
        (found[h.entry_id], round(h.score, 4))
        for h in result.hits
        if h.entry_id in found and found[h.entry_id].status == EntryStatus.published
    ]
