"""What the app holds for its lifetime, built from settings by the lifespan or the CLI."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings
from indexer.embedding.encoders import Embedder, load_embedder, set_torch_threads, torch_threads
from indexer.embedding.microbatch import BatchingEmbedder
from indexer.lexical.tokenizer import default_tokenizer
from indexer.retrieval.confidence import ConfidenceModel, default_confidence_model
from kb.db import make_engine, make_session_factory
from kb.indexing import IndexManager
from kb.suggest.service import SuggestPolicy

log = logging.getLogger(__name__)

# Default number of concurrent model calls: one per torch thread, up to this many.
MAX_AUTO_LANES = 4


@dataclass
class Services:
    """The engine, session factory, model and index of one process."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    embedder: Embedder
    index: IndexManager
    calibration: ConfidenceModel
    policy: SuggestPolicy
    load_error: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def close(self) -> None:
        """Stop background work, let queued encodes finish and release the database."""
        self._stop.set()
        if isinstance(self.embedder, BatchingEmbedder):
            self.embedder.close()
            if self.embedder.stats.requests:
                log.info("query batching: %s", self.embedder.stats.as_dict())
        self.engine.dispose()

    def start_sync_loop(self, interval: float) -> threading.Thread:
        """Follow the change feed (writes by the CLI or other processes) every `interval` s."""

        def loop() -> None:
            while not self._stop.wait(interval):
                if not self.index.ready:
                    continue
                try:
                    self.index.sync(self.session_factory)
                except Exception:  # keep serving on the last good index
                    log.exception("index sync failed")

        thread = threading.Thread(target=loop, name="faqloop-index-sync", daemon=True)
        thread.start()
        return thread


def build_services(settings: Settings, *, embedder: Embedder | None = None) -> Services:
    """Create everything a process needs; the index is not opened yet."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    if embedder is None:
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        embedder = load_embedder(
            settings.embedding_model, settings.models_dir, trace=settings.embed_trace
        )
    # Concurrent suggest requests are embedded together (indexer/batching.py), in up to
    # `lanes` model calls at once.
    if not isinstance(embedder, BatchingEmbedder):
        threads = settings.torch_threads or torch_threads()
        embedder = BatchingEmbedder(
            embedder,
            max_wait_ms=settings.batch_wait_ms,
            max_batch=settings.embed_batch_max,
            lanes=settings.embed_lanes or min(threads, MAX_AUTO_LANES),
            threads=threads,
            set_threads=set_torch_threads,
        )
    calibration = default_confidence_model(embedder.name)
    threshold = (
        settings.abstain_threshold
        if settings.abstain_threshold is not None
        else calibration.threshold
    )
    policy = SuggestPolicy(
        max_chars=settings.max_text_chars,
        max_k=settings.max_k,
        threshold=threshold,
        base_url=settings.base_url,
    )
    index = IndexManager(
        embedder=embedder, tokenizer=default_tokenizer(), index_dir=settings.index_dir
    )
    return Services(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        embedder=embedder,
        index=index,
        calibration=calibration,
        policy=policy,
    )
