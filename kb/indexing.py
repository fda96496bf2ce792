"""Keeps the search index in step with the database (the source of truth)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from indexer.embedding.encoders import Embedder, Vectors, passage_cache_of
from indexer.lexical.tokenizer import Tokenizer
from indexer.retrieval.hybrid import EntryDocs, FusionConfig, HybridIndex, Mode, SearchResult
from indexer.store import IndexStore, IndexUnusable, Manifest
from kb.db import session_scope
from kb.errors import IndexNotReady
from kb.faqs.entries import phrasings_of
from kb.models import EntryChange, EntryStatus, FaqEntry, utcnow

log = logging.getLogger(__name__)

# How long a change may take from getting its id to being committed and still be applied.
LATE_COMMIT_WINDOW = timedelta(seconds=60)

_MD_NOISE = re.compile(r"[#>*_`~|]+|!\[[^\]]*\]\([^)]*\)|\[([^\]]*)\]\([^)]*\)")


@dataclass(frozen=True)
class IndexRecipe:
    """Which texts of an entry are indexed (decided by measurement; see docs/retrieval.md)."""

    # Add the answer's first paragraph as one more dense text.
    dense_answer: bool = True
    # Also embed the rest of the answer: every paragraph (long ones cut at sentence ends
    # into pieces of at most CHUNK_CHARS), up to this many answer texts per entry in all;
    # an entry scores its best text (docs/retrieval.md, "Long answers"). 1: first only.
    dense_answer_chunks: int = 8
    # Taken off a chunk's cosine (not the first paragraph's) before it competes for the
    # entry's score: a paragraph that merely mentions a topic should not outrank the
    # article about it. 0.02 is the only discount measured not worse anywhere
    # (benchmarks/answer_chunks.py; docs/retrieval.md, "Long answers").
    chunk_discount: float = 0.02
    # Add the answer to the BM25 document.
    lexical_answer: bool = True

    def key(self, tokenizer: str) -> str:
        """Identifies the recipe and the analysis, so a change of either forces a rebuild."""
        return json.dumps({"recipe": asdict(self), "tokenizer": tokenizer}, sort_keys=True)


def markdown_to_text(markdown: str) -> str:
    """Plain text of a Markdown answer, good enough for indexing."""
    return re.sub(r"\s+", " ", _MD_NOISE.sub(r"\1", markdown)).strip()


def first_passage(markdown: str, limit: int = 400) -> str:
    """The answer's first paragraph as plain text."""
    for para in re.split(r"\n\s*\n", markdown.strip()):
        text = markdown_to_text(para)
        if text:
            return text[:limit]
    return ""


CHUNK_CHARS = 400
_SENTENCE_END = re.compile(r"(?<=[。!?！？])|(?<=[.!?])\s+")


def answer_chunks(markdown: str, limit: int, size: int = CHUNK_CHARS) -> list[str]:
    """The answer as plain-text pieces for embedding, in order, at most `limit` of them.

    Each paragraph is one piece; a paragraph longer than `size` is cut at sentence ends
    into pieces of at most `size` characters (a longer sentence is cut at `size`).
    """
    chunks: list[str] = []
    for para in re.split(r"\n\s*\n", markdown.strip()):
        text = markdown_to_text(para)
        piece = ""
        for sentence in (s.strip() for s in _SENTENCE_END.split(text)):
            if not sentence:
                continue
            if piece and len(piece) + 1 + len(sentence) > size:
                chunks.append(piece)
                piece = ""
            glue = "" if not piece or piece[-1] in "。!?！？" else " "
            piece = piece + glue + sentence
            while len(piece) > size:
                chunks.append(piece[:size])
                piece = piece[size:].strip()
        if piece:
            chunks.append(piece)
        if len(chunks) >= limit:
            break
    return chunks[:limit]


def entry_docs(
    entry_id: int,
    language: str,
    question: str,
    answer: str,
    phrasings: Sequence[str],
    recipe: IndexRecipe,
) -> EntryDocs:
    """The texts one entry contributes to the index: its question, phrasings, the answer's
    first paragraph and (recipe permitting) the answer's other paragraphs as chunks."""
    # text -> discount; a text met twice keeps its first (lowest) discount.
    dense: dict[str, float] = dict.fromkeys([question, *phrasings], 0.0)
    if recipe.dense_answer:
        passage = first_passage(answer)
        if passage:
            dense.setdefault(passage, 0.0)
        if recipe.dense_answer_chunks > 1:
            for chunk in answer_chunks(answer, recipe.dense_answer_chunks):
                dense.setdefault(chunk, recipe.chunk_discount)
    lexical = [question, *phrasings]
    if recipe.lexical_answer:
        lexical.append(markdown_to_text(answer))
    discounts = tuple(dense.values()) if any(dense.values()) else ()
    return EntryDocs(entry_id, language, tuple(dense), "\n".join(lexical), discounts)


def load_entry_docs(
    session: Session, entry_ids: Sequence[int] | None, recipe: IndexRecipe
) -> tuple[list[EntryDocs], list[int]]:
    """Docs of the published entries among `entry_ids` (all when None), and the ids to drop."""
    query = select(FaqEntry).where(FaqEntry.status == EntryStatus.published)
    if entry_ids is not None:
        query = query.where(FaqEntry.id.in_(list(entry_ids)))
    entries = list(session.scalars(query.order_by(FaqEntry.id)))
    # Pending phrasings (learnt from outcomes, not yet trusted) are not indexed.
    phr = phrasings_of(session, [e.id for e in entries], approved_only=True)
    docs = []
    for e in entries:
        rev = e.current_revision
        if rev is None:
            continue
        docs.append(entry_docs(e.id, e.language, rev.question, rev.answer, phr[e.id], recipe))
    live = {d.entry_id for d in docs}
    gone = [i for i in (entry_ids or []) if i not in live]
    return docs, gone


def _last_change_id(session: Session) -> int:
    return int(session.scalar(select(func.max(EntryChange.id))) or 0)


class IndexManager:
    """Owns the live index: loads or rebuilds it, follows the change feed, saves generations.

    Searches read the current `HybridIndex` reference; a rebuild builds a new one aside and
    swaps the reference, so serving never waits for a rebuild.
    """

    def __init__(
        self,
        *,
        embedder: Embedder,
        tokenizer: Tokenizer,
        index_dir: Path,
        recipe: IndexRecipe | None = None,
        fusion: FusionConfig | None = None,
    ) -> None:
        self.embedder = embedder
        self.tokenizer = tokenizer
        self.store = IndexStore(index_dir)
        self.recipe = recipe or IndexRecipe()
        self.fusion = fusion
        self._index: HybridIndex | None = None
        self._manifest: Manifest | None = None
        self._last_change_id = 0
        self._generation = 0
        # Change ids applied recently (id -> monotonic time), to spot late commits.
        self._recent: dict[int, float] = {}
        self._write_lock = threading.Lock()
        # What this process did to its index (reported by /healthz): replicas prove with it
        # that others' changes arrive incrementally, without full rebuilds.
        self._rebuilds = 0
        self._syncs_applied = 0
        self._entries_applied = 0

    @property
    def ready(self) -> bool:
        return self._index is not None

    @property
    def last_change_id(self) -> int:
        return self._last_change_id

    @property
    def generation(self) -> int:
        return self._generation

    def index_or_raise(self) -> HybridIndex:
        """The live index, or IndexNotReady while none is loaded."""
        index = self._index
        if index is None:
            raise IndexNotReady("the search index is not loaded yet")
        return index

    def _load_saved(self) -> tuple[HybridIndex, Manifest]:
        """The saved index if it was built with this model and index recipe; IndexUnusable
        otherwise (none saved, damaged, another model or recipe)."""
        return self.store.load(
            self.embedder,
            self.tokenizer,
            recipe=self.recipe.key(self.tokenizer.name),
            fusion=self.fusion,
        )

    def open(self, factory: sessionmaker[Session]) -> str:
        """Load the saved index (or rebuild it) and catch up with the change feed."""
        try:
            index, manifest = self._load_saved()
        except IndexUnusable as exc:
            log.info("rebuilding the index: %s", exc)
            self.rebuild(factory)
            return f"rebuilt ({exc})"
        with self._write_lock:
            self._index, self._manifest = index, manifest
            self._last_change_id = manifest.last_change_id
            self._generation = manifest.generation
            with session_scope(factory) as session:
                self._mark_applied(session, manifest.last_change_id)
        self._remember_passages(index)
        applied = self.sync(factory)
        return f"loaded generation {manifest.generation}, applied {applied} changes"

    def _remember_passages(self, index: HybridIndex) -> int:
        """Hand the loaded index's vectors to the passage cache, as a build in this process
        would have left them there: texts it already holds (an edited article's unchanged
        phrasings, a translation proposal's articles) are then not embedded again. The store
        loads only an index saved with this model (name and dimension; its backends share
        the name, their vectors agree within the cosine checked at load)."""
        cache = passage_cache_of(self.embedder)
        if cache is None:
            return 0
        texts, vectors = index.passages()
        added = cache.remember_passages(texts, vectors)
        log.info("passage cache: %d vectors taken from the saved index", added)
        return added

    def reuse_saved_vectors(self) -> int:
        """Before a full rebuild (`faqloop reindex`): hand the saved index's vectors to the
        passage cache, so the rebuild embeds only texts that are new or changed since it was
        saved; returns how many vectors were taken. 0 when this process has loaded an index
        already (its vectors are in the cache), or when the saved one cannot be loaded: none,
        damaged, or built with another model or index recipe (then everything is embedded)."""
        if self._index is not None:
            return 0
        try:
            index, _ = self._load_saved()
        except IndexUnusable as exc:
            log.info("reindex embeds every text: %s", exc)
            return 0
        return self._remember_passages(index)

    def rebuild(self, factory: sessionmaker[Session]) -> Manifest:
        """Build a complete index from the database aside, save it, then swap it in."""
        with self._write_lock:
            with session_scope(factory) as session:
                last = _last_change_id(session)
                docs, _ = load_entry_docs(session, None, self.recipe)
                self._mark_applied(session, last)
            index = HybridIndex(self.embedder, self.tokenizer, self.fusion)
            index.upsert(docs)
            self._rebuilds += 1
            return self._save_locked(index, last)

    def _mark_applied(self, session: Session, upto: int) -> None:
        """Record the recent change ids up to `upto` as applied (the index has them)."""
        since = utcnow() - LATE_COMMIT_WINDOW
        now = time.monotonic()
        ids = session.scalars(
            select(EntryChange.id).where(EntryChange.id <= upto, EntryChange.created_at > since)
        )
        for cid in ids:
            self._recent[cid] = now

    def sync(self, factory: sessionmaker[Session]) -> int:
        """Apply changes recorded since the last sync; return how many entries changed.

        Change ids are handed out when a transaction writes, not when it commits, so on a
        busy database id 10 can become visible after id 11. Changes from the last minute
        are therefore looked at again, and any not yet applied is applied late.
        """
        with self._write_lock:
            index = self._index
            if index is None:
                return 0
            since = utcnow() - LATE_COMMIT_WINDOW
            with session_scope(factory) as session:
                rows = session.execute(
                    select(EntryChange.id, EntryChange.entry_id).where(
                        or_(
                            EntryChange.id > self._last_change_id,
                            EntryChange.created_at > since,
                        )
                    )
                ).all()
                fresh = [(cid, eid) for cid, eid in rows if cid not in self._recent]
                if not fresh:
                    return 0
                changed = sorted({eid for _, eid in fresh})
                docs, gone = load_entry_docs(session, changed, self.recipe)
            index.upsert(docs)
            index.remove(gone)
            now = time.monotonic()
            for cid, _ in fresh:
                self._recent[cid] = now
            horizon = now - 2 * LATE_COMMIT_WINDOW.total_seconds()
            self._recent = {c: t for c, t in self._recent.items() if t > horizon}
            last = max(self._last_change_id, *(cid for cid, _ in fresh))
            self._save_locked(index, last)
            self._syncs_applied += 1
            self._entries_applied += len(changed)
            return len(changed)

    def commit_and_sync(
        self, session: Session, factory: sessionmaker[Session], *, reindex: bool = True
    ) -> int:
        """Commit `session`, then `sync`, so what it wrote is searchable when this returns.

        `reindex=False` only commits (the write touched nothing indexed). A failed commit
        raises before any sync; a failed sync raises after the commit, whose changes the
        next sync applies. Returns how many entries the sync changed.
        """
        session.commit()
        return self.sync(factory) if reindex else 0

    def _save_locked(self, index: HybridIndex, last_change_id: int) -> Manifest:
        current = self.store.current_manifest()
        generation = max(self._generation, current.generation if current else 0) + 1
        manifest = self.store.save(
            index,
            generation=generation,
            last_change_id=last_change_id,
            recipe=self.recipe.key(self.tokenizer.name),
        )
        self._index, self._manifest = index, manifest
        self._last_change_id, self._generation = last_change_id, generation
        return manifest

    def search(
        self,
        text: str,
        *,
        k: int,
        language: str | None,
        mode: Mode = "hybrid",
        query_vector: Vectors | None = None,
    ) -> SearchResult:
        """Search the live index (with `query_vector`, the text's vector is not computed again)."""
        return self.index_or_raise().search(
            text, k=k, language=language, mode=mode, query_vector=query_vector
        )

    def activity(self) -> dict[str, int]:
        """Full rebuilds, and incremental updates applied from the feed, by this process."""
        return {
            "full_rebuilds": self._rebuilds,
            "incremental_syncs": self._syncs_applied,
            "entries_synced": self._entries_applied,
        }

    def describe(self) -> dict[str, object]:
        """Model, generation and counts of the live index."""
        index = self._index
        return {
            "ready": index is not None,
            "model": self.embedder.name,
            "dim": self.embedder.dim,
            "generation": self._generation,
            "last_change_id": self._last_change_id,
            "entries": index.entry_count if index else 0,
            "texts": index.doc_count if index else 0,
        }
