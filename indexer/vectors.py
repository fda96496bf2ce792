"""Vector indexes behind one small interface: FAISS inner product and a NumPy reference."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import faiss
import numpy as np
import numpy.typing as npt

from indexer.embedding.encoders import Vectors

Ids = npt.NDArray[np.int64]

# FAISS's OpenMP threads, as the process started (one per core unless OMP_NUM_THREADS).
_FAISS_THREADS = faiss.omp_get_max_threads()


class VectorIndex(Protocol):
    """Inner-product search over L2-normalised vectors keyed by int64 ids."""

    dim: int

    def __len__(self) -> int: ...

    def add(self, ids: Ids, vectors: Vectors) -> None: ...

    def remove(self, ids: Ids) -> int: ...

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]: ...

    def save(self, path: Path) -> None: ...


class FaissIndex:
    """Exact inner-product search (IndexFlatIP) with removable ids (IndexIDMap2).

    Flat search is exact and fast enough: an approximate index would only pay off far beyond
    the size of any FAQ collection (docs/scale.md, "Exact search is enough").
    """

    def __init__(self, dim: int, index: faiss.Index | None = None) -> None:
        self.dim = dim
        self._index = index if index is not None else faiss.IndexIDMap2(faiss.IndexFlatIP(dim))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, ids: Ids, vectors: Vectors) -> None:
        if len(ids) == 0:
            return
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if vecs.shape != (len(ids), self.dim):
            raise ValueError(f"expected {len(ids)} vectors of dimension {self.dim}")
        self._index.add_with_ids(vecs, np.ascontiguousarray(ids, dtype=np.int64))

    def remove(self, ids: Ids) -> int:
        if len(ids) == 0:
            return 0
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(ids, dtype=np.int64))
        return int(self._index.remove_ids(selector))

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        k = min(k, len(self))
        if k <= 0:
            n = len(queries)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        # One query runs on the calling thread alone: handing a 1,700-vector scan to a team
        # of OpenMP threads cost more than it saved (docs/scale.md), and under load those
        # threads would take cores from the model's lanes. Batches
        # of queries (evaluation, duplicate checks) still get every thread. The count is
        # the calling thread's own OpenMP setting, so concurrent searches do not interfere.
        faiss.omp_set_num_threads(1 if len(queries) == 1 else _FAISS_THREADS)
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids

    def vectors_of(self, ids: Ids) -> Vectors:
        """The stored vectors of `ids`, in order (KeyError for an id not stored)."""
        if len(ids) == 0:
            return np.zeros((0, self.dim), np.float32)
        try:
            out = self._index.reconstruct_batch(np.ascontiguousarray(ids, dtype=np.int64))
        except RuntimeError as exc:  # FAISS reports a missing id as a RuntimeError
            raise KeyError(f"an id is not in the index ({exc})") from exc
        return np.asarray(out, dtype=np.float32)

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> FaissIndex:
        """Read an index written by `save`."""
        index = faiss.read_index(str(path))
        return cls(index.d, index)

    def copy(self) -> FaissIndex:
        """An independent copy (for building a new generation aside)."""
        return FaissIndex(self.dim, faiss.clone_index(self._index))


class NumpyIndex:
    """Brute-force reference with the same contract; used to check FAISS in tests."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids = np.zeros(0, dtype=np.int64)
        self._vecs = np.zeros((0, dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Ids, vectors: Vectors) -> None:
        self._ids = np.concatenate([self._ids, ids.astype(np.int64)])
        self._vecs = np.vstack([self._vecs, vectors.astype(np.float32)])

    def remove(self, ids: Ids) -> int:
        keep = ~np.isin(self._ids, ids)
        removed = int((~keep).sum())
        self._ids, self._vecs = self._ids[keep], self._vecs[keep]
        return removed

    def search(self, queries: Vectors, k: int) -> tuple[Vectors, Ids]:
        k = min(k, len(self))
        scores = queries.astype(np.float32) @ self._vecs.T
        # Stable sort: ties keep insertion order, which is also what IndexFlatIP returns.
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(scores, order, axis=1), self._ids[order]

    def vectors_of(self, ids: Ids) -> Vectors:
        row = {int(i): n for n, i in enumerate(self._ids)}
        return self._vecs[[row[int(i)] for i in ids]].reshape(len(ids), self.dim)

    def save(self, path: Path) -> None:
        with path.open("wb") as fh:
            np.savez(fh, ids=self._ids, vecs=self._vecs)
