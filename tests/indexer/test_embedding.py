"""Embedding models are configuration: packaged names or any local folder, loaded offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexer.embedding.encoders import (
    DEFAULT_MODEL,
    MINILM_MODEL,
    CachedEmbedder,
    ModelNotFound,
    load_embedder,
    resolve_model_path,
)


def test_minilm_stays_selectable(models_dir: Path) -> None:
    emb = load_embedder(MINILM_MODEL, models_dir)
    vecs = emb.encode_passages(["How do I reset my password?", "Track my parcel"])
    q = emb.encode_queries(["forgot my password"])
    assert vecs.shape == (2, 384) and emb.dim == 384
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert int(np.argmax(vecs @ q[0])) == 0


def test_default_model_uses_e5_prompts(embedder: CachedEmbedder) -> None:
    if embedder.name != DEFAULT_MODEL:
        pytest.skip("the suite runs another model")
    q = embedder.encode_queries(["eSIMの設定方法"])[0]
    p = embedder.encode_passages(["eSIMの設定方法"])[0]
    # The same text embeds differently as a query and as a passage: the prompts are applied.
    assert 0.8 < float(q @ p) < 0.999


def test_local_folder_and_unknown_names(models_dir: Path, tmp_path: Path) -> None:
    built = models_dir / DEFAULT_MODEL
    assert resolve_model_path(str(built), models_dir) == built
    with pytest.raises(ModelNotFound, match="neither one of"):
        resolve_model_path(str(tmp_path / "nothing"), models_dir)
    with pytest.raises(ModelNotFound, match="faqloop models build"):
        resolve_model_path(DEFAULT_MODEL, tmp_path)


def test_passage_cache_returns_the_same_vectors(embedder: CachedEmbedder) -> None:
    texts = ["料金プランの変更", "Change my plan", "料金プランの変更"]
    first = embedder.encode_passages(texts)
    again = embedder.encode_passages(texts[::-1])
    np.testing.assert_allclose(first, again[::-1], rtol=1e-6)
    np.testing.assert_allclose(first[0], first[2])


def test_traced_model_gives_the_library_s_vectors(models_dir: Path) -> None:
    """The traced pipeline and the eager one give what SentenceTransformer.encode gives."""
    from indexer.embedding.encoders import SentenceTransformerEmbedder

    path = resolve_model_path(MINILM_MODEL, models_dir)
    traced = SentenceTransformerEmbedder(MINILM_MODEL, path, batch_size=4)
    eager = SentenceTransformerEmbedder(MINILM_MODEL, path, batch_size=4, trace=False)
    assert traced.traced and not eager.traced
    # Lengths differ widely and there are more texts than one batch: sorting, padding and
    # putting rows back in order are all exercised.
    texts = ["x", "Where is my parcel?", "料金プランの変更方法を教えてください。" * 4, "ok"] * 3
    texts += ["a long post " * 60]
    want = traced.encode_with_library(texts, None)
    for emb in (traced, eager):
        np.testing.assert_allclose(emb.encode_queries(texts), want, atol=1e-5)
        np.testing.assert_allclose(emb.encode_passages(texts[:1]), want[:1], atol=1e-5)
    assert traced.encode_queries([]).shape == (0, traced.dim)


def test_default_model_is_traced(torch_embedder: CachedEmbedder) -> None:
    from indexer.embedding.encoders import SentenceTransformerEmbedder

    inner = torch_embedder.inner
    if torch_embedder.name != DEFAULT_MODEL or not isinstance(inner, SentenceTransformerEmbedder):
        pytest.skip("the suite runs another model")
    assert inner.traced
    texts = ["eSIMの設定方法", "How do I change my plan?"]
    np.testing.assert_allclose(
        inner.encode_queries(texts), inner.encode_with_library(texts, "query"), atol=1e-5
    )


def test_freed_model_memory_is_handed_back_only_after_use() -> None:
    import time

    from indexer.embedding.encoders import _MemoryTrimmer

    trimmer = _MemoryTrimmer(0.05)
    if trimmer._trim is None:
        pytest.skip("the C library has no malloc_trim")
    time.sleep(0.2)
    assert trimmer.trims == 0  # never used: no thread, no trims
    trimmer.note_use()
    deadline = time.monotonic() + 10
    while trimmer.trims == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert trimmer.trims == 1
    time.sleep(0.3)
    assert trimmer.trims == 1  # idle periods do not trim again
