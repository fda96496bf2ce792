"""Micro-batching of query embeddings: concurrent `encode_queries` calls share one model call.

A transformer on a CPU encodes 16 short posts in far less time than 16 separate calls (one
forward pass instead of 16, better use of the matrix kernels). Under load, `/v1/suggest`
requests arrive on many threads at once; `BatchingEmbedder` queues them and encodes them
together, so throughput approaches the model's batched throughput.

How a call is served (the callers take turns choosing batches; the model runs on `lanes`
threads of its own):

- The model runs in up to `lanes` model calls at once. A caller that finds a lane free
  becomes a *leader*: it normally encodes its own request at once, so a lone request at
  low load never waits.
- While every lane is busy, later callers queue up. When a leader finishes, it hands its
  lane to the oldest waiting caller, which encodes everything queued (up to `max_batch`
  texts) in one call. This is where batches come from under load: nobody waits on
  purpose, requests simply accumulate while the model is busy.
- When recent requests often found the model busy (several clients at once), a leader
  that finds a lane free waits up to `max_wait_ms` after its request arrived for company,
  or until `max_batch` texts are queued, whichever comes first. A single client, however
  fast, never finds the model busy and so never waits; no request waits longer than the
  window for company.
- Threads: with `set_threads`, a leader gives its model call all `threads` intra-op
  threads when it runs alone at low load (the lowest latency for one post), and
  `threads // lanes` while the lanes share the cores under load: two threads of one call
  wait for each other at every operation, and any other work on either core (HTTP,
  database, reply drafting) stalls both; two single-threaded calls never wait for each
  other (measured in docs/scale.md, "Suggest under load").
- Model threads: a leader chooses its batch on its own thread and hands the model call to
  one of `lanes` long-lived model threads, then waits for it. The model's native state
  (glibc allocator arenas, OpenMP/MKL per-thread buffers) then lives in `lanes` threads,
  not in every server worker that ever led a call, which keeps a server's memory flat
  (docs/scale.md, "Model threads" and the load test).
- If a batched call fails, each request of the batch is encoded again on its own, so an
  error reaches only the caller whose texts caused it and the others get their vectors.
- `close()` refuses new calls, lets queued ones finish and returns when the model is idle.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from indexer.embedding.encoders import Embedder, Vectors

# A leader waits for company only when at least this share of recent requests found every
# lane busy: then another request is likely to arrive within the window. A leader gives its
# call all threads only when fewer than this share found some lane busy (low load).
_CONTENTION_TO_WAIT = 0.25
# Weight of the newest request in these running shares.
_CONTENTION_SMOOTHING = 0.2


class EmbedderClosed(RuntimeError):
    """The batching embedder was closed; no new encodes are accepted."""


@dataclass
class BatchStats:
    """Counters of what the batcher did (for benchmarks and logs)."""

    requests: int = 0
    texts: int = 0
    batches: int = 0
    largest: int = 0  # most requests encoded in one call
    waited: int = 0  # batches whose leader used the wait window
    split: int = 0  # batches that failed and were retried request by request

    @property
    def mean_batch(self) -> float:
        """Average number of requests per model call."""
        return self.requests / self.batches if self.batches else 0.0

    def as_dict(self) -> dict[str, float]:
        """The counters and the mean batch size."""
        return {**asdict(self), "mean_batch": round(self.mean_batch, 3)}


class _Request:
    """One caller's texts, and where its vectors or its error end up."""

    __slots__ = ("arrived", "error", "lead", "texts", "vectors", "wake")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.arrived = time.monotonic()
        self.vectors: Vectors | None = None
        self.error: BaseException | None = None
        self.lead = False  # set when this caller is handed the lead
        self.wake = threading.Event()  # done, or promoted to leader

    def result(self) -> Vectors:
        if self.error is not None:
            raise self.error
        assert self.vectors is not None
        return self.vectors


class BatchingEmbedder:
    """An `Embedder` whose query encodes are micro-batched across threads (thread-safe).

    Passage encodes (index builds) go straight to the wrapped embedder: they come in large
    batches already.
    """

    def __init__(
        self,
        inner: Embedder,
        *,
        max_wait_ms: float = 2.0,
        max_batch: int = 32,
        lanes: int = 1,
        threads: int = 1,
        set_threads: Callable[[int], None] | None = None,
    ) -> None:
        if max_wait_ms < 0:
            raise ValueError("max_wait_ms must be >= 0")
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if lanes < 1:
            raise ValueError("lanes must be >= 1")
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.max_wait = max_wait_ms / 1000.0
        self.max_batch = max_batch
        self.lanes = lanes
        self.threads = threads
        self._set_threads = set_threads
        self.stats = BatchStats()
        # At most `lanes` leaders hand calls over at once, so a model thread is always free.
        self._model_threads = ThreadPoolExecutor(lanes, thread_name_prefix="faqloop-model")
        self._index_thread = ThreadPoolExecutor(1, thread_name_prefix="faqloop-index")
        self._lock = threading.Lock()
        self._arrival = threading.Condition(self._lock)  # a waiting leader listens here
        self._idle = threading.Condition(self._lock)  # close() listens here
        self._pending: deque[_Request] = deque()
        self._pending_texts = 0
        self._active = 0  # leaders choosing or encoding a batch (at most `lanes`)
        self._closed = False
        self._contention = 0.0  # running share of requests that found every lane busy
        self._sharing = 0.0  # running share of requests that found some lane busy

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def active(self) -> int:
        """Leaders gathering or encoding a batch (at most `lanes`)."""
        with self._lock:
            return self._active

    @property
    def pending(self) -> int:
        """Requests queued and not yet being encoded."""
        with self._lock:
            return len(self._pending)

    def encode_passages(self, texts: list[str]) -> Vectors:
        """Passages are not batched across callers (see the class docstring).

        They run on a model thread of their own (index builds take seconds to minutes and
        must not hold a lane), with every intra-op thread.
        """
        return self._index_thread.submit(self._passages, texts).result()

    def _passages(self, texts: list[str]) -> Vectors:
        if self._set_threads is not None:
            self._set_threads(self.threads)
        return self.inner.encode_passages(texts)

    def encode_queries(self, texts: list[str]) -> Vectors:
        """L2-normalised query vectors for `texts`, encoded together with concurrent calls."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        request = _Request(list(texts))
        with self._lock:
            if self._closed:
                raise EmbedderClosed("the embedder is closed")
            queued = float(self._active >= self.lanes)
            self._contention += _CONTENTION_SMOOTHING * (queued - self._contention)
            shared = float(self._active > 0)
            self._sharing += _CONTENTION_SMOOTHING * (shared - self._sharing)
            # The queue holds only callers waiting for a lane: a leader is never in it, so
            # no other leader can take its request.
            lead = self._active < self.lanes
            if lead:
                self._active += 1
            else:
                self._pending.append(request)
                self._pending_texts += len(request.texts)
                self._arrival.notify()  # a leader waiting for company may have enough now
        if not lead:
            request.wake.wait()
            if not request.lead:
                return request.result()
        self._lead(request)
        return request.result()

    def close(self, timeout: float | None = 10.0) -> bool:
        """Refuse new calls, let queued ones finish; True when the model is idle."""
        with self._lock:
            self._closed = True
            self._arrival.notify_all()  # a leader waiting for company stops waiting
            deadline = None if timeout is None else time.monotonic() + timeout
            while self._active:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False  # a call still runs: its model thread stays
                self._idle.wait(remaining)
        # Idle: the model threads end. The index thread stays (an index sync may still be
        # finishing); it ends with this object.
        self._model_threads.shutdown(wait=False)
        return True

    # -- internals ----------------------------------------------------------------------
    def _lead(self, own: _Request) -> None:
        """Encode the caller's own request and what is queued, in one call, as a leader."""
        waited = False
        with self._lock:
            if self.max_wait > 0 and self._contention >= _CONTENTION_TO_WAIT:
                deadline = own.arrived + self.max_wait
                while len(own.texts) + self._pending_texts < self.max_batch and not self._closed:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    waited = True
                    self._arrival.wait(remaining)
            batch = [own]
            size = len(own.texts)
            taken = 0
            while self._pending and size + len(self._pending[0].texts) <= self.max_batch:
                request = self._pending.popleft()
                batch.append(request)
                size += len(request.texts)
                taken += len(request.texts)
            self._pending_texts -= taken
            alone = self._active == 1 and self._sharing < _CONTENTION_TO_WAIT
            threads = self.threads if alone else max(1, self.threads // self.lanes)
        try:
            self._model_threads.submit(self._call, threads, batch).result()
        finally:
            for request in batch:
                if request.vectors is None and request.error is None:
                    request.error = RuntimeError("the batch was interrupted")
            with self._lock:
                self.stats.requests += len(batch)
                self.stats.texts += size
                self.stats.batches += 1
                self.stats.largest = max(self.stats.largest, len(batch))
                self.stats.waited += int(waited)
                if self._pending:  # the lane passes to the oldest waiting caller
                    successor = self._pending.popleft()
                    self._pending_texts -= len(successor.texts)
                    successor.lead = True
                    successor.wake.set()
                else:
                    self._active -= 1
                    if not self._active:
                        self._idle.notify_all()
            for request in batch:
                request.wake.set()

    def _call(self, threads: int, batch: list[_Request]) -> None:
        """One model call, on a model thread."""
        if self._set_threads is not None:
            self._set_threads(threads)  # this thread's model calls only
        self._encode(batch)

    def _encode(self, batch: list[_Request]) -> None:
        texts = [t for request in batch for t in request.texts]
        try:
            vectors = self.inner.encode_queries(texts)
            if vectors.shape[0] != len(texts):
                raise RuntimeError(
                    f"the model returned {vectors.shape[0]} vectors for {len(texts)}"
                )
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            # Find out whose texts fail: each request alone, so errors reach only their caller.
            with self._lock:
                self.stats.split += 1
            for request in batch:
                try:
                    request.vectors = self.inner.encode_queries(request.texts)
                except Exception as own:
                    request.error = own
            return
        start = 0
        for request in batch:
            end = start + len(request.texts)
            request.vectors = np.array(vectors[start:end], dtype=np.float32, copy=True)
            start = end
