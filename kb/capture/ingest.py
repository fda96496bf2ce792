"""Ingesting resolved threads: covered threads become evidence and phrasings, the rest
cluster into FAQ drafts. Callers commit.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from indexer.embedding.encoders import Embedder, VectorCache, Vectors
from indexer.retrieval.confidence import ConfidenceModel
from kb.capture.thread_input import PostIn, ThreadIn
from kb.errors import InvalidInput, NotFound
from kb.faqs.entries import MAX_QUESTION, add_phrasings, record_change
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
from kb.notify import outbox
from kb.text import cleaning
from kb.text.language import detect_language
from kb.text.personal_data import mask_personal_data

# Chosen on StackFAQ (docs/capture.md, "Drafts"): average linkage of multilingual-e5-small
# query vectors; 0.905 gave the best adjusted Rand index, and purity near 0.9.
DEFAULT_JOIN_SIMILARITY = 0.905
# Open and rejected drafts take new threads; published and merged ones route them to their
# entry as evidence.
LIVE_DRAFT = (DraftStatus.open, DraftStatus.rejected)
_CAPTURING_DRAFT = (*LIVE_DRAFT, DraftStatus.published, DraftStatus.merged)
# --------------------------------------------------------------------------------------
# What the capture needs from the process
# --------------------------------------------------------------------------------------


class QuestionVectors:
    """Query vectors of cleaned questions, memoised (clustering compares against every
    thread already filed, and re-embedding them on each ingest would dominate its cost)."""

    def __init__(self, embedder: Embedder, *, max_items: int = 50_000) -> None:
        self.embedder = embedder
        self._cache = VectorCache(embedder.dim, max_items=max_items)

    def encode(self, texts: Sequence[str]) -> Vectors:
        """L2-normalised query vectors, one row per text."""
        return self._cache.encode(texts, self.embedder.encode_queries)


@dataclass(frozen=True)
class CapturePolicy:
    """Thresholds of the capture (the CLI can override them; see docs/capture.md)."""

    # Calibrated confidence needed to call a thread covered by the FAQ retrieval finds.
    cover_threshold: float = 0.5
    # Average cosine similarity for a thread to join a draft (and for threads to group).
    join_similarity: float = DEFAULT_JOIN_SIMILARITY
    # Threads clustered together at most (the similarity matrix is quadratic).
    max_cluster_batch: int = 1000
    search_k: int = 5
    # Public URLs of the site besides relative links (FAQLOOP_BASE_URL and
    # FAQLOOP_PUBLIC_ORIGINS): an agent's link to /faq/<slug> under one marks the thread
    # covered by that article.
    public_origins: tuple[str, ...] = ()


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
    # How the thread came to be covered: "faq_id" (given), "link" (an agent linked the
    # article), "match" (retrieval was confident), "draft" (a published draft took it).
    covered_by: str | None = None


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
    via: str | None = None


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


def linked_entry(session: Session, item: ThreadIn, origins: Sequence[str]) -> int | None:
    """The live article an agent's reply links to (the first that resolves), or None.

    Links are read from the raw agent text, before cleaning drops them: relative, under
    one of `origins`, with any query string or fragment; a merged article's old slug leads
    to the article it was merged into. Unknown slugs and archived articles are ignored.
    """
    for post in item.posts:
        if post.role != PostRole.agent:
            continue
        for slug in cleaning.faq_link_slugs(post.text, origins):
            entry = session.scalar(select(FaqEntry).where(FaqEntry.slug == slug))
            live = _live_entry(session, entry.id) if entry is not None else None
            if live is not None:
                return live.id
    return None


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
        via = "faq_id" if link is not None else None
        if link is None:
            link = linked_entry(session, item, capture.policy.public_origins)
            via = "link" if link is not None else None
        stored = _store(session, capture, item, link, report, machine_made)
        stored.via = via
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
    # Webhooks hear of open drafts whose demand reached their threshold (same transaction).
    outbox.drafts_demand(session, report.touched_drafts)
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
        if draft is not None and draft.status in LIVE_DRAFT:
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
        # Stored posts keep personal data masked (kb.text.personal_data); links stay.
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
        if draft is not None and draft.status in LIVE_DRAFT:
            report.touched_drafts.add(draft.id)
    thread.status = ThreadStatus.uncovered
    thread.faq_id = None
    thread.draft_id = None


def add_thread_phrasing(
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
    p.outcome.phrasing_added = add_thread_phrasing(
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
                p.outcome.covered_by = p.via or "faq_id"
                continue
            best, confidence = _best_match(session, capture, p, vec_of[id(p)])
            p.outcome.confidence = round(confidence, 4)
            p.outcome.best_faq_id = best
            entry_id = best if confidence >= capture.policy.cover_threshold else None
            if entry_id is not None:
                _cover(session, p, entry_id, report, None)
                p.outcome.covered_by = "match"
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
            if draft.status in LIVE_DRAFT:
                p.thread.status = ThreadStatus.drafted
                p.thread.draft_id = draft.id
                report.touched_drafts.add(draft.id)
            elif (entry := _live_entry(session, draft.entry_id)) is not None:
                _cover(session, p, entry.id, report, draft.id)
                p.outcome.covered_by = "draft"
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

    Rows are L2-normalised, so a dot product is their cosine similarity. Groups come in
    order of their first row, each in row order.
    """
    n = len(vectors)
    if n < 2:
        return [[i] for i in range(n)]
    from scipy.cluster import hierarchy  # slow to import, and only clustering needs it

    upper = np.triu_indices(n, 1)  # the pairs in the order of a condensed distance matrix
    distances = 1.0 - (vectors @ vectors.T)[upper]
    # Rounding can put a similarity above 1, and SciPy wants no negative distance: shift
    # the distances and the cut alike (average linkage moves with a shift).
    shift = max(0.0, -float(distances.min()))
    tree = hierarchy.linkage(distances + shift, method="average")
    labels = hierarchy.fcluster(tree, t=1.0 - threshold + shift, criterion="distance")
    groups: dict[int, list[int]] = {}
    for row, label in enumerate(labels.tolist()):
        groups.setdefault(label, []).append(row)
    return list(groups.values())  # a group first seen at its first row


# --------------------------------------------------------------------------------------
# Draft text
# --------------------------------------------------------------------------------------


def load_member_threads(session: Session, draft_id: int) -> list[Thread]:
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
    if draft is None or draft.status not in LIVE_DRAFT:
        return
    threads = load_member_threads(session, draft_id)
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
    The answer is the substantive agent reply (kb.text.cleaning.is_substantive_answer: not
    only "please DM us", "we'll look into it" or greetings; "" when none is) whose passage
    vector is closest to the mean of
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
    # Only a reply that answers something can be a draft's answer: without one the draft
    # is unanswered demand (kb.capture.drafts.needs_answer), never an empty article.
    candidates = [a for a in answers if cleaning.is_substantive_answer(a)]
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
