"""What the app holds for its lifetime, built from settings by the lifespan or the CLI."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.settings import Settings
from indexer.embedding.encoders import Embedder, load_embedder, model_threads
from indexer.embedding.microbatch import BatchingEmbedder
from indexer.lexical.tokenizer import default_tokenizer
from indexer.retrieval.confidence import ConfidenceModel, default_confidence_model
from kb.db import make_engine, make_session_factory
from kb.indexing import IndexManager
from kb.ops.jobs import ClusterJobs, JobResult
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
    # Periodic work that must run once per cluster, not once per replica (kb/ops/jobs.py).
    jobs: ClusterJobs
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
        # FAQLOOP_TORCH_THREADS: torch's threads, or ONNX Runtime's (applied by model_threads).
        embedder = load_embedder(
            settings.embedding_model,
            settings.models_dir,
            trace=settings.embed_trace,
            backend=settings.embed_backend,
            threads=settings.torch_threads,
        )
    # Concurrent suggest requests are embedded together (indexer/batching.py), in up to
    # `lanes` model calls at once.
    if not isinstance(embedder, BatchingEmbedder):
        threads, set_threads = model_threads(embedder, settings.torch_threads)
        embedder = BatchingEmbedder(
            embedder,
            max_wait_ms=settings.batch_wait_ms,
            max_batch=settings.embed_batch_max,
            lanes=settings.embed_lanes or min(threads, MAX_AUTO_LANES),
            threads=threads,
            set_threads=set_threads,
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
    session_factory = make_session_factory(engine)
    return Services(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        embedder=embedder,
        index=index,
        calibration=calibration,
        policy=policy,
        jobs=ClusterJobs(engine, session_factory),
    )


class PeriodicJob:
    """A job of `faqloop serve` on a timer, run once per cluster rather than per replica.

    Every replica ticks every `interval` seconds; a tick runs the job through
    `ClusterJobs.run` only if no other replica holds the job's lock and none ran it less than
    an interval ago, so N replicas run it about once per interval in all. The index sync
    loop (`Services.start_sync_loop`) is not one of these: each replica holds its own index.
    """

    def __init__(
        self,
        jobs: ClusterJobs,
        name: str,
        job: Callable[[], Any],
        interval: float,
        *,
        tick: Callable[[], JobResult[Any]] | None = None,
    ) -> None:
        self.jobs = jobs
        self.name = name
        self.job = job
        self.interval = interval
        # What one tick does; by default the job through the cluster lock and its interval.
        self._tick = tick or (lambda: self.jobs.run(self.name, self.job, interval=self.interval))
        self.ran = 0  # ticks that ran the job in this process
        self.skipped = 0  # ticks that left it to another replica (busy or ran recently)
        self.failed = 0  # ticks whose job raised
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Start the daemon thread (nothing when the interval is 0)."""
        if self.interval > 0:
            self._thread = threading.Thread(
                target=self._run, name=f"faqloop-job-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, wait: float = 30.0) -> None:
        """Stop ticking; wait up to `wait` s for a run under way."""
        self._stop.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(wait)

    def tick(self) -> JobResult[Any] | None:
        """One tick: run the job if it is due here; None when it raised (logged)."""
        try:
            result = self._tick()
        except Exception:  # keep ticking: the next interval tries again
            self.failed += 1
            log.exception("periodic job %s failed", self.name)
            return None
        if result.ran:
            self.ran += 1
        else:
            self.skipped += 1
            log.debug("periodic job %s skipped here: %s", self.name, result.reason)
        return result

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.tick()
