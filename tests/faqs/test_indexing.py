"""The index follows the database: built when missing, rebuilt when corrupt or foreign,
updated incrementally from the change feed, and saved atomically as generations."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from indexer.embedding.encoders import CachedEmbedder
from indexer.lexical.tokenizer import Tokenizer
from kb.db import session_scope
from kb.faqs import entries as faqs
from kb.indexing import IndexManager
from kb.models import EntryChange, EntryStatus


def _manager(embedder: CachedEmbedder, root: Path) -> IndexManager:
    return IndexManager(embedder=embedder, tokenizer=Tokenizer(), index_dir=root / "index")


def _counting(embedder: CachedEmbedder) -> tuple[CachedEmbedder, list[str]]:
    """The model under a fresh, empty passage cache, and the passages it is asked to embed."""
    asked: list[str] = []

    class Counting:
        name, dim = embedder.name, embedder.dim

        def encode_queries(self, texts: list[str]) -> Any:
            return embedder.encode_queries(texts)

        def encode_passages(self, texts: list[str]) -> Any:
            asked.extend(texts)
            return embedder.encode_passages(texts)

    return CachedEmbedder(Counting()), asked


def _top(manager: IndexManager, text: str, language: str = "en") -> int:
    return manager.search(text, k=1, language=language).hits[0].entry_id


@pytest.fixture
def manager(
    embedder: CachedEmbedder, tmp_path: Path, seeded: None, session_factory: sessionmaker[Session]
) -> IndexManager:
    m = _manager(embedder, tmp_path)
    assert m.open(session_factory).startswith("rebuilt (no saved index)")
    return m


def test_open_loads_the_saved_generation(
    manager: IndexManager,
    embedder: CachedEmbedder,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    again = _manager(embedder, tmp_path)
    assert again.open(session_factory) == "loaded generation 1, applied 0 changes"
    assert again.describe() == manager.describe()
    text = "I forgot my password"
    assert _top(again, text) == _top(manager, text)


def test_corrupt_or_foreign_index_is_rebuilt(
    manager: IndexManager,
    embedder: CachedEmbedder,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    docs = tmp_path / "index" / "gen-00000001" / "docs.jsonl"
    docs.write_text(docs.read_text()[:-50])
    again = _manager(embedder, tmp_path)
    outcome = again.open(session_factory)
    assert outcome.startswith("rebuilt") and "corrupt" in outcome
    assert again.generation == 2 and again.describe()["entries"] == manager.describe()["entries"]

    class Other:
        name, dim = "another-model", embedder.dim
        encode_queries = embedder.encode_queries
        encode_passages = embedder.encode_passages

    foreign = IndexManager(embedder=Other(), tokenizer=Tokenizer(), index_dir=tmp_path / "index")
    outcome = foreign.open(session_factory)
    assert outcome.startswith("rebuilt") and "configured 'another-model'" in outcome


def test_change_feed_updates_the_index_incrementally(
    manager: IndexManager, session_factory: sessionmaker[Session]
) -> None:
    with session_scope(session_factory) as s:
        entry = faqs.create_entry(
            s,
            question="Do you sell phone cases for the Pixel 9?",
            answer="Yes, in the online shop under **Accessories**.",
            category="orders",
            language="en",
            phrasings=["pixel 9 case"],
        )
        new_id = entry.id
    before = manager.generation
    assert manager.sync(session_factory) == 1
    assert manager.generation == before + 1
    assert _top(manager, "do you have a case for pixel 9") == new_id
    with session_scope(session_factory) as s:
        e = faqs.get_entry_or_raise(s, new_id)
        e.status = EntryStatus.archived
        faqs.record_change(s, new_id)
    assert manager.sync(session_factory) == 1
    assert new_id not in manager.index_or_raise().entry_ids()
    assert manager.sync(session_factory) == 0  # nothing new: no new generation
    assert manager.generation == before + 2


def test_rebuild_equals_incremental(
    manager: IndexManager,
    embedder: CachedEmbedder,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    with session_scope(session_factory) as s:
        faqs.create_entry(
            s,
            question="Can I pause my line while abroad for a year?",
            answer="Yes, with **Line pause** for ¥550 a month.",
            category="plans",
            language="en",
        )
    manager.sync(session_factory)
    fresh = _manager(embedder, tmp_path / "other")
    fresh.rebuild(session_factory)
    for text in ("pause my line abroad", "password reset", "esim on iphone"):
        a = [(h.entry_id, round(h.score, 5)) for h in manager.search(text, k=5, language="en").hits]
        b = [(h.entry_id, round(h.score, 5)) for h in fresh.search(text, k=5, language="en").hits]
        assert a == b


def test_a_change_that_commits_late_is_still_applied(
    manager: IndexManager, session_factory: sessionmaker[Session]
) -> None:
    # On PostgreSQL a transaction can take change id n and commit after id n+1 was synced.
    with session_scope(session_factory) as s:
        late = faqs.create_entry(
            s,
            question="Can I get a paper bill by post?",
            answer="Yes, for ¥110 a month; switch in **My Sorami > Billing**.",
            category="billing",
            language="en",
        )
        late_id = late.id
        late_change = s.scalar(select(EntryChange).where(EntryChange.entry_id == late_id))
        assert late_change is not None
        late_change_id = late_change.id
        early = faqs.create_entry(
            s,
            question="Do you offer a senior discount?",
            answer="Yes, ¥500 off for customers over 65.",
            category="plans",
            language="en",
        )
        early_id = early.id
        s.delete(late_change)  # not visible yet: its transaction has not committed
    assert manager.sync(session_factory) == 1
    assert late_id not in manager.index_or_raise().entry_ids()
    assert manager.last_change_id > late_change_id
    with session_scope(session_factory) as s:
        s.add(EntryChange(id=late_change_id, entry_id=late_id))  # the late commit lands
    assert manager.sync(session_factory) == 1
    assert {late_id, early_id} <= manager.index_or_raise().entry_ids()
    assert manager.sync(session_factory) == 0


class _GatedEmbedder:
    """The real embedder, but embedding passages (index writes) waits for a gate.

    Queries pass straight through, so a test can hold a rebuild or a sync in the middle of
    its work and check that searches are still answered meanwhile."""

    def __init__(self, inner: CachedEmbedder) -> None:
        self.inner = inner
        self.name, self.dim = inner.name, inner.dim
        self.gate = threading.Event()
        self.gate.set()
        self.writing = threading.Event()

    def encode_queries(self, texts: list[str]) -> Any:
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str]) -> Any:
        self.writing.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.inner.encode_passages(texts)


def test_rebuilds_and_syncs_never_block_serving(
    embedder: CachedEmbedder,
    tmp_path: Path,
    seeded: None,
    session_factory: sessionmaker[Session],
) -> None:
    gated = _GatedEmbedder(embedder)
    manager = IndexManager(embedder=gated, tokenizer=Tokenizer(), index_dir=tmp_path / "index")
    manager.open(session_factory)
    text = "I forgot my password"
    expected = _top(manager, text)
    generation = manager.generation

    def held(work: Callable[[], object]) -> None:
        """Run `work` in a thread held inside its embedding step; search meanwhile."""
        gated.gate.clear()
        gated.writing.clear()
        worker = threading.Thread(target=work)
        worker.start()
        try:
            assert gated.writing.wait(30), "the index write never started"
            for _ in range(5):  # answered while the write is held, from the old index
                assert _top(manager, text) == expected
            assert worker.is_alive()
        finally:
            gated.gate.set()
            worker.join(60)
        assert not worker.is_alive()

    held(lambda: manager.rebuild(session_factory))
    assert manager.generation == generation + 1  # swapped in once complete
    with session_scope(session_factory) as s:
        faqs.create_entry(
            s,
            question="Do you sell screen protectors?",
            answer="Yes, in the online shop under **Accessories**.",
            category="orders",
            language="en",
        )
    held(lambda: manager.sync(session_factory))
    assert manager.generation == generation + 2
    assert _top(manager, text) == expected


def test_a_loaded_index_fills_the_passage_cache(
    manager: IndexManager,
    embedder: CachedEmbedder,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    """A process that loads the saved index (a restart, another replica) takes its vectors
    into the passage cache, as one that built it has them: indexed texts are not embedded
    again (an edited article's unchanged phrasings, a draft page's translation proposals)."""
    cold, asked = _counting(embedder)
    again = IndexManager(embedder=cold, tokenizer=Tokenizer(), index_dir=tmp_path / "index")
    assert again.open(session_factory).startswith("loaded generation 1")
    texts, vectors = again.index_or_raise().passages()
    assert len(texts) == again.describe()["texts"] > 100
    np.testing.assert_allclose(cold.encode_passages(texts), vectors)
    assert asked == []
    # They are the model's own vectors of those texts.
    np.testing.assert_allclose(vectors[:5], embedder.encode_passages(texts[:5]), atol=1e-6)
    cold.encode_passages([texts[0], "a text no article holds"])
    assert asked == ["a text no article holds"]


def test_a_full_rebuild_embeds_only_the_texts_the_saved_index_lacks(
    manager: IndexManager,
    embedder: CachedEmbedder,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    """`faqloop reindex` in a new process: the saved generation's vectors go to the passage
    cache first, so the rebuild embeds only a new article's texts, and its index holds the
    model's own vectors of every text, as a rebuild that embeds everything does."""
    saved_texts, _ = manager.index_or_raise().passages()
    saved = len(set(saved_texts))
    with session_scope(session_factory) as s:
        faqs.create_entry(
            s,
            question="Can I pause my line for a month?",
            answer="Yes: **My page** > Plan > Pause. Pausing is free for up to 3 months.",
            category="plans",
            language="en",
            phrasings=["suspend my line temporarily"],
        )
    cold, asked = _counting(embedder)
    again = IndexManager(embedder=cold, tokenizer=Tokenizer(), index_dir=tmp_path / "index")
    assert again.reuse_saved_vectors() == saved
    manifest = again.rebuild(session_factory)
    assert manifest.generation == 2 and manifest.docs > saved
    texts, vectors = again.index_or_raise().passages()
    assert len(texts) == manifest.docs
    assert asked and sorted(asked) == sorted(set(texts) - set(saved_texts))
    assert any("pause my line" in t for t in asked) and "suspend my line temporarily" in asked
    np.testing.assert_allclose(vectors, embedder.encode_passages(texts), atol=1e-6)
    # Once loaded, a process's vectors are in its cache already: nothing more to take.
    assert again.reuse_saved_vectors() == 0


def test_a_full_rebuild_embeds_everything_when_the_saved_index_is_unusable(
    manager: IndexManager,
    embedder: CachedEmbedder,
    tmp_path: Path,
    session_factory: sessionmaker[Session],
) -> None:
    docs = tmp_path / "index" / "gen-00000001" / "docs.jsonl"
    docs.write_text(docs.read_text()[:-50])
    cold, asked = _counting(embedder)
    again = IndexManager(embedder=cold, tokenizer=Tokenizer(), index_dir=tmp_path / "index")
    assert again.reuse_saved_vectors() == 0
    manifest = again.rebuild(session_factory)
    texts, _ = again.index_or_raise().passages()
    assert manifest.docs == manager.describe()["texts"]
    assert sorted(asked) == sorted(set(texts))
    # A saved index of another model gives none of its vectors either.
    cold, asked = _counting(embedder)
    cold.name = "another-model"
    foreign = IndexManager(embedder=cold, tokenizer=Tokenizer(), index_dir=tmp_path / "index")
    assert foreign.reuse_saved_vectors() == 0


def test_stored_vectors_are_read_back_by_id() -> None:
    from indexer.vectors import FaissIndex, NumpyIndex

    rng = np.random.default_rng(1)
    vecs = rng.standard_normal((6, 4)).astype(np.float32)
    ids = np.array([10, 11, 12, 20, 21, 30], dtype=np.int64)
    for index in (FaissIndex(4), NumpyIndex(4)):
        index.add(ids, vecs)
        index.remove(np.array([11], dtype=np.int64))
        np.testing.assert_array_equal(index.vectors_of(np.array([30, 10])), vecs[[5, 0]])
        assert index.vectors_of(np.array([], dtype=np.int64)).shape == (0, 4)
    with pytest.raises(KeyError):
        FaissIndex(4).vectors_of(np.array([5], dtype=np.int64))
