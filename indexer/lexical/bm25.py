"""BM25 over pre-tokenised documents (bm25s), keyed by int ids."""

from __future__ import annotations

import math

import bm25s
import numpy as np
import numpy.typing as npt


class LexicalIndex:
    """BM25 (k1 = 1.2, b = 0.75) over documents given as term lists.

    bm25s builds a static sparse matrix; documents are kept as token lists so any change
    rebuilds the matrix (cheap at FAQ sizes; docs/scale.md).
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1, self.b = k1, b
        self._docs: dict[int, list[str]] = {}
        self._order: list[int] = []
        self._bm25: bm25s.BM25 | None = None
        self._idf: dict[str, float] = {}
        self._position: dict[int, int] = {}  # document id -> its row in the BM25 matrix

    def __len__(self) -> int:
        return len(self._docs)

    def tokens(self, doc_id: int) -> list[str]:
        """The stored terms of one document."""
        return self._docs[doc_id]

    def items(self) -> list[tuple[int, list[str]]]:
        """All (id, terms) pairs, in insertion order."""
        return [(i, self._docs[i]) for i in self._order]

    def upsert(self, docs: dict[int, list[str]]) -> None:
        """Add or replace documents; the BM25 matrix is rebuilt lazily on the next search."""
        for doc_id, terms in docs.items():
            if doc_id not in self._docs:
                self._order.append(doc_id)
            self._docs[doc_id] = list(terms)
        self._bm25 = None

    def remove(self, doc_ids: list[int]) -> None:
        """Drop documents (unknown ids are ignored)."""
        gone = {d for d in doc_ids if d in self._docs}
        if not gone:
            return
        for d in gone:
            del self._docs[d]
        self._order = [d for d in self._order if d not in gone]
        self._bm25 = None

    def prepare(self) -> None:
        """Build the BM25 matrix now (so the first search after a change is not slow)."""
        if self._bm25 is not None or not self._order:
            return
        bm25 = bm25s.BM25(k1=self.k1, b=self.b)
        # An empty document would be dropped by bm25s and shift the rows: give it a dummy term.
        corpus = [self._docs[d] or ["\x00"] for d in self._order]
        bm25.index(corpus, show_progress=False)
        df: dict[str, int] = {}
        for terms in corpus:
            for term in set(terms):
                df[term] = df.get(term, 0) + 1
        n = len(corpus)
        self._idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        self._position = {d: row for row, d in enumerate(self._order)}
        self._bm25 = bm25

    def coverage(self, terms: list[str], doc_id: int) -> float:
        """IDF-weighted share of the query's distinct terms that occur in the document."""
        return self.coverage_of(terms, [doc_id])[doc_id]

    def coverage_of(self, terms: list[str], doc_ids: list[int]) -> dict[int, float]:
        """`coverage` for several documents, the query's term weights worked out once."""
        self.prepare()
        wanted = set(terms)
        if not wanted:
            return dict.fromkeys(doc_ids, 0.0)
        # Unknown terms get the largest possible IDF: a word no document has is informative.
        top = math.log(1 + (len(self._docs) + 0.5) / 0.5)
        weights = {t: self._idf.get(t, top) for t in wanted}
        total = sum(weights.values())
        if not total or self._bm25 is None:
            return dict.fromkeys(doc_ids, 0.0)
        # The BM25 matrix already lists, per term, the rows of the documents that hold it
        # (bm25s keeps it column-compressed: `indptr` over terms, `indices` the rows): add
        # each query term's weight to those rows, rather than intersecting the query's terms
        # with each document's (docs/scale.md, "Little Python around the model").
        matrix = self._bm25.scores
        indptr, rows = matrix["indptr"], matrix["indices"]
        vocab = self._bm25.vocab_dict
        found = np.zeros(len(self._order) + 1, dtype=np.float64)  # last: not indexed
        for term, weight in weights.items():
            column = vocab.get(term)
            if column is not None:
                found[rows[indptr[column] : indptr[column + 1]]] += weight
        where = np.fromiter(
            (self._position.get(d, -1) for d in doc_ids), dtype=np.int64, count=len(doc_ids)
        )
        return dict(zip(doc_ids, (found[where] / total).tolist(), strict=True))

    def scores(self, terms: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """BM25 score of every document for the query terms: (ids, scores), same order."""
        ids = np.asarray(self._order, dtype=np.int64)
        if not self._order or not terms:
            return ids, np.zeros(len(ids), dtype=np.float32)
        self.prepare()
        assert self._bm25 is not None
        vocab = self._bm25.vocab_dict
        known = [t for t in terms if t in vocab]
        if not known:
            return ids, np.zeros(len(ids), dtype=np.float32)
        return ids, np.asarray(self._bm25.get_scores(known), dtype=np.float32)
