"""Index contract: FAISS equals brute force; save then load gives the same results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from indexer.lexical.tokenizer import Tokenizer
from indexer.retrieval.hybrid import EntryDocs, HybridIndex
from indexer.store import IndexStore, IndexUnusable
from indexer.vectors import FaissIndex, NumpyIndex


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 300),
    k=st.integers(1, 20),
    seed=st.integers(0, 2**16),
    n_removed=st.integers(0, 50),
)
def test_faiss_top_k_equals_brute_force(n: int, k: int, seed: int, n_removed: int) -> None:
    rng = np.random.default_rng(seed)
    dim = 16
    vecs = _unit(rng, n, dim)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    faiss_index, ref = FaissIndex(dim), NumpyIndex(dim)
    for index in (faiss_index, ref):
        index.add(ids, vecs)
    gone = ids[: min(n_removed, n - 1)]
    assert faiss_index.remove(gone) == ref.remove(gone) == len(gone)
    queries = _unit(rng, 5, dim)
    fs, fi = faiss_index.search(queries, k)
    rs, ri = ref.search(queries, k)
    np.testing.assert_allclose(fs, rs, rtol=1e-5, atol=1e-5)
    # Ids agree wherever scores are not tied.
    for row in range(len(queries)):
        for col in range(fs.shape[1]):
            tied = np.isclose(rs[row], rs[row, col], atol=1e-6).sum() > 1
            if not tied:
                assert fi[row, col] == ri[row, col]


def test_faiss_save_load_same_results(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    index = FaissIndex(32)
    index.add(np.arange(100, 200, dtype=np.int64), _unit(rng, 100, 32))
    index.save(tmp_path / "v.faiss")
    loaded = FaissIndex.load(tmp_path / "v.faiss")
    q = _unit(rng, 3, 32)
    for a, b in zip(index.search(q, 10), loaded.search(q, 10), strict=True):
        np.testing.assert_array_equal(a, b)


class HashEmbedder:
    """A deterministic embedder for index-mechanics tests (not for retrieval quality)."""

    name = "test-hash"
    dim = 32

    def _vec(self, text: str) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(("seed", text))) % 2**32)
        v = rng.standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim))

    encode_passages = encode_queries


DOCS = [
    EntryDocs(1, "en", ("How do I reset my password?", "forgot password"), "reset password"),
    EntryDocs(2, "en", ("Activate eSIM on iPhone",), "activate esim iphone settings"),
    EntryDocs(3, "ja", ("パスワードを忘れました",), "パスワード 再設定 ログイン"),
    EntryDocs(4, "ja", ("eSIMの開通方法",), "eSIM 開通 設定 QRコード"),
]


@pytest.fixture
def hybrid() -> HybridIndex:
    index = HybridIndex(HashEmbedder(), Tokenizer())
    index.upsert(DOCS)
    return index


def _ranking(index: HybridIndex, text: str, **kw: object) -> list[tuple[int, float]]:
    return [(h.entry_id, round(h.score, 6)) for h in index.search(text, k=4, **kw).hits]  # type: ignore[arg-type]


def test_hybrid_save_load_same_results(hybrid: HybridIndex, tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "index")
    store.save(hybrid, generation=1, last_change_id=9, recipe="r")
    loaded, manifest = store.load(HashEmbedder(), Tokenizer(), recipe="r")
    assert manifest.generation == 1 and manifest.last_change_id == 9
    assert manifest.entries == 4 and manifest.docs == 5
    for text in ("forgot password", "パスワード 再設定", "esim"):
        for mode in ("dense", "lexical", "hybrid"):
            assert _ranking(loaded, text, mode=mode) == _ranking(hybrid, text, mode=mode)


@settings(max_examples=30, deadline=None)
@given(
    n_entries=st.integers(10, 40),
    depth=st.integers(1, 8),
    seed=st.integers(0, 2**16),
    discount=st.sampled_from([0.0, 0.01, 0.05, 0.3]),
)
@example(n_entries=12, depth=2, seed=23, discount=0.3)  # float32 vs float64 at a rounding edge
def test_discounted_dense_ranking_equals_brute_force(
    n_entries: int, depth: int, seed: int, discount: float
) -> None:
    """Each entry scores its best text after the text's discount, over every vector (the
    scan stops early only when no later text could change the first `depth`), and the
    discounts survive save and load."""
    import random
    import tempfile

    rnd = random.Random(seed)
    embedder = HashEmbedder()
    docs = []
    for entry_id in range(1, n_entries + 1):
        n_texts = rnd.randint(1, 6)
        texts = tuple(f"entry {entry_id} text {i} {seed}" for i in range(n_texts))
        discounts = tuple(0.0 if i == 0 else discount * rnd.random() for i in range(n_texts))
        docs.append(EntryDocs(entry_id, rnd.choice(["en", "ja"]), texts, texts[0], discounts))
    index = HybridIndex(embedder, Tokenizer())
    index.fusion = type(index.fusion)(depth=depth)
    index.upsert(docs)
    query = f"query {seed}"
    qvec = embedder.encode_queries([query])[0]
    for language in (None, "en"):
        best: dict[int, float] = {}
        for d in docs:
            if language and d.language != language:
                continue
            scores = [
                float(qvec @ embedder._vec(t)) - d.discount(i) for i, t in enumerate(d.dense_texts)
            ]
            best[d.entry_id] = max(scores)
        expected = sorted(best.items(), key=lambda kv: -kv[1])[:depth]
        hits = index.search(query, k=depth, language=language, mode="dense").hits
        # The index scores in float32, the brute force in float64: compare within 1e-5.
        assert [h.score for h in hits] == pytest.approx([v for _, v in expected], abs=1e-5)
        # Every hit truly belongs among the first `depth` (entries of equal score may swap).
        assert len(hits) == len(expected)
        for h in hits:
            assert best[h.entry_id] >= expected[-1][1] - 1e-5
            assert h.score == pytest.approx(best[h.entry_id], abs=1e-5)
    with tempfile.TemporaryDirectory() as tmp:
        store = IndexStore(Path(tmp) / "index")
        store.save(index, generation=1, last_change_id=0, recipe="r")
        loaded, _ = store.load(embedder, Tokenizer(), recipe="r")
        loaded.fusion = index.fusion
        for language in (None, "ja"):
            assert _ranking(loaded, query, mode="dense", language=language) == _ranking(
                index, query, mode="dense", language=language
            )


@settings(max_examples=30, deadline=None)
@given(
    n_entries=st.integers(5, 60),
    depth=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    discount=st.sampled_from([0.0, 0.05, 0.3, 1.0]),
)
def test_dense_scan_after_edits_equals_brute_force(
    n_entries: int, depth: int, seed: int, discount: float
) -> None:
    """After removals and re-upserts (doc ids with gaps, a language gone or new), each dense
    hit is an entry's best text after its discount: its score, its matched text and its
    rank, for every language filter."""
    import random

    rnd = random.Random(seed)
    embedder = HashEmbedder()
    index = HybridIndex(embedder, Tokenizer())
    index.fusion = type(index.fusion)(depth=depth)
    current: dict[int, EntryDocs] = {}

    def make(entry_id: int, version: int) -> EntryDocs:
        n_texts = rnd.randint(1, 5)
        texts = tuple(f"e{entry_id} v{version} t{i} {seed}" for i in range(n_texts))
        discounts = tuple(0.0 if i == 0 else discount * rnd.random() for i in range(n_texts))
        return EntryDocs(entry_id, rnd.choice(["en", "ja", "ko"]), texts, texts[0], discounts)

    query = f"query {seed}"
    qvec = embedder.encode_queries([query])[0]
    for version in range(3):
        batch = [make(e, version) for e in range(1, n_entries + 1) if rnd.random() < 0.6]
        index.upsert(batch)
        current.update({d.entry_id: d for d in batch})
        gone = [e for e in list(current) if rnd.random() < 0.2]
        index.remove(gone)
        for e in gone:
            del current[e]
        for language in (None, "en", "ja", "ko", "fr"):
            best: dict[int, tuple[float, str]] = {}
            adjusted: dict[str, float] = {}
            for d in current.values():
                if language and d.language != language:
                    continue
                for i, t in enumerate(d.dense_texts):
                    adjusted[t] = float(np.float32(qvec @ embedder._vec(t))) - d.discount(i)
                best[d.entry_id] = max((adjusted[t], t) for t in d.dense_texts)
            expected = sorted(best.values(), key=lambda st: -st[0])[:depth]
            hits = index.search(query, k=depth, language=language, mode="dense").hits
            assert len(hits) == len(expected)
            assert [h.dense_rank for h in hits] == list(range(1, len(hits) + 1))
            assert [h.score for h in hits] == pytest.approx([v for v, _ in expected], abs=1e-5)
            for h in hits:
                score, _ = best[h.entry_id]
                assert h.score == pytest.approx(score, abs=1e-5) and h.dense == h.score
                # The best text (another of equal score would do as well).
                assert h.matched_text in current[h.entry_id].dense_texts
                assert adjusted[h.matched_text] == pytest.approx(score, abs=1e-6)


def test_language_filter_and_removal(hybrid: HybridIndex) -> None:
    assert {h.entry_id for h in hybrid.search("パスワード", k=4, language="ja").hits} <= {3, 4}
    assert hybrid.search("パスワード", k=4, mode="lexical").hits[0].entry_id == 3
    hybrid.remove([3])
    assert 3 not in {h.entry_id for h in hybrid.search("パスワード", k=4).hits}
    assert hybrid.entry_count == 3 and hybrid.doc_count == 4


def test_upsert_replaces_texts(hybrid: HybridIndex) -> None:
    hybrid.upsert([EntryDocs(2, "en", ("Roaming charges abroad",), "roaming abroad charges")])
    assert hybrid.search("roaming", k=1, mode="lexical").hits[0].entry_id == 2
    assert hybrid.search("esim", k=4, mode="lexical", language="en").hits == []
    assert hybrid.doc_count == 5 and hybrid.entry_count == 4


def test_manifest_records_the_backend_and_old_manifests_still_load(
    hybrid: HybridIndex, tmp_path: Path
) -> None:
    """The manifest names the runtime that computed the vectors; a manifest written before
    it did (no "backend") loads, and another backend of the same model is not refused."""
    import json

    class Int8(HashEmbedder):
        backend = "onnx-int8"

    hybrid.embedder = Int8()
    store = IndexStore(tmp_path / "index")
    store.save(hybrid, generation=1, last_change_id=0, recipe="r")
    manifest_file = tmp_path / "index" / "gen-00000001" / "manifest.json"
    assert json.loads(manifest_file.read_text())["backend"] == "onnx-int8"
    _, manifest = store.load(HashEmbedder(), Tokenizer(), recipe="r")
    assert manifest.backend == "onnx-int8"
    old = json.loads(manifest_file.read_text())
    del old["backend"]
    manifest_file.write_text(json.dumps(old))
    _, manifest = store.load(HashEmbedder(), Tokenizer(), recipe="r")
    assert manifest.backend == ""


def test_store_rejects_corrupt_or_foreign_index(hybrid: HybridIndex, tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "index")
    store.save(hybrid, generation=3, last_change_id=1, recipe="r")
    with pytest.raises(IndexUnusable, match="other indexing settings"):
        store.load(HashEmbedder(), Tokenizer(), recipe="other")

    class OtherModel(HashEmbedder):
        name = "another-model"

    with pytest.raises(IndexUnusable, match="built with model"):
        store.load(OtherModel(), Tokenizer(), recipe="r")
    vectors = tmp_path / "index" / "gen-00000003" / "vectors.faiss"
    vectors.write_bytes(vectors.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(IndexUnusable, match="corrupt"):
        store.load(HashEmbedder(), Tokenizer(), recipe="r")


def test_store_keeps_previous_generation_when_pointer_is_old(
    hybrid: HybridIndex, tmp_path: Path
) -> None:
    store = IndexStore(tmp_path / "index", keep=2)
    for gen in (1, 2, 3):
        store.save(hybrid, generation=gen, last_change_id=gen, recipe="r")
    gens = sorted(p.name for p in (tmp_path / "index").glob("gen-*"))
    assert gens == ["gen-00000002", "gen-00000003"]
    assert (tmp_path / "index" / "CURRENT").read_text().strip() == "gen-00000003"
    # A crashed writer's leftovers are not mistaken for a generation.
    (tmp_path / "index" / ".gen-00000004.tmp-1-1").mkdir()
    _, manifest = store.load(HashEmbedder(), Tokenizer(), recipe="r")
    assert manifest.generation == 3


def test_fusion_weights_follow_the_query_language() -> None:
    # Lexical weights of zero for Japanese: a Japanese hybrid ranking is the dense one,
    # while English queries still get the lexical evidence.
    from indexer.retrieval.hybrid import FusionConfig

    cfg = FusionConfig(lexical_weight=0.5, coverage_weight=0.5, language_weights=(("ja", 0, 0),))
    index = HybridIndex(HashEmbedder(), Tokenizer(), cfg)
    index.upsert(DOCS)
    assert index.weights_for("ja") == (0, 0)
    assert index.weights_for("en") == (0.5, 0.5)
    ja = index.search("パスワード 再設定", k=2, language="ja")
    ja_dense = index.search("パスワード 再設定", k=2, language="ja", mode="dense")
    assert [(h.entry_id, round(h.score, 6)) for h in ja.hits] == [
        (h.entry_id, round(h.dense, 6)) for h in ja_dense.hits
    ]
    assert ja.language == "ja"
    en = index.search("reset password", k=2, language="en")
    en_dense = index.search("reset password", k=2, language="en", mode="dense")
    # Entry 1 contains every query term: its score carries 0.5 × 1 + 0.5 × coverage more.
    top = next(h for h in en.hits if h.entry_id == 1)
    cos = next(h.dense for h in en_dense.hits if h.entry_id == 1)
    assert top.score > cos + 0.5


def test_reliability_table_and_ece() -> None:
    import numpy as np

    from kb.suggest.evaluation import reliability

    conf = np.array([0.05, 0.15, 0.95, 0.95, 0.85])
    right = np.array([False, True, True, False, True])
    rows, ece = reliability(conf, right, bins=10)
    assert [(r[2], round(r[4], 2)) for r in rows] == [(1, 0.0), (1, 1.0), (1, 1.0), (2, 0.5)]
    # |.05-0| + |.15-1| + |.85-1| + 2×|.95-.5| over 5 queries
    assert ece == pytest.approx((0.05 + 0.85 + 0.15 + 0.9) / 5)


def _coverage_by_definition(docs: dict[int, list[str]], terms: list[str], doc_id: int) -> float:
    """IDF-weighted share of the query's distinct terms found in the document, worked out
    from the documents alone (BM25's IDF; unknown terms get the largest possible IDF)."""
    import math

    n = len(docs)
    df: dict[str, int] = {}
    for words in docs.values():
        for w in set(words):
            df[w] = df.get(w, 0) + 1
    top = math.log(1 + (n + 0.5) / 0.5)
    weights = {
        t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) if t in df else top for t in set(terms)
    }
    total = sum(weights.values())
    held = set(docs.get(doc_id, []))
    return sum(w for t, w in weights.items() if t in held) / total if total else 0.0


@settings(max_examples=40, deadline=None)
@given(
    docs=st.dictionaries(
        st.integers(1, 60),
        st.lists(st.sampled_from("abcdefghij"), min_size=0, max_size=8),
        min_size=1,
        max_size=25,
    ),
    terms=st.lists(st.sampled_from("abcdefghijxyz"), min_size=0, max_size=6),
    removed=st.lists(st.integers(1, 60), max_size=5),
)
def test_coverage_matches_its_definition(
    docs: dict[int, list[str]], terms: list[str], removed: list[int]
) -> None:
    """coverage_of reads the BM25 matrix; it must agree with the definition, also after
    documents are replaced and removed, and for ids the index does not hold."""
    from indexer.lexical.bm25 import LexicalIndex

    index = LexicalIndex()
    index.upsert({d: ["a"] for d in docs})  # replaced below
    index.upsert(docs)
    index.remove(removed)
    live = {d: w for d, w in docs.items() if d not in set(removed)}
    asked = [*docs, 999]
    got = index.coverage_of(terms, asked)
    assert set(got) == set(asked)
    for doc_id in asked:
        expected = _coverage_by_definition(live, terms, doc_id) if live else 0.0
        assert got[doc_id] == pytest.approx(expected, abs=1e-9), doc_id
