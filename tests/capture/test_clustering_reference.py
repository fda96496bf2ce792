"""The capture's average-linkage clustering (SciPy) against the hand-written one it replaced.

The reference below is the former implementation, kept only here: the same partition, in
the same order, on many random inputs.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kb.capture.ingest import average_linkage


def reference_average_linkage(vectors: np.ndarray, threshold: float) -> list[list[int]]:
    n = len(vectors)
    if n == 0:
        return []
    sim = vectors @ vectors.T
    np.fill_diagonal(sim, -np.inf)
    sizes = np.ones(n)
    members: list[list[int]] = [[i] for i in range(n)]
    while n > 1:
        flat = int(np.argmax(sim))
        i, j = divmod(flat, n)
        if sim[i, j] < threshold:
            break
        i, j = min(i, j), max(i, j)
        merged = (sizes[i] * sim[i] + sizes[j] * sim[j]) / (sizes[i] + sizes[j])
        sim[i, :] = merged
        sim[:, i] = merged
        sim[i, i] = -np.inf
        sim[j, :] = -np.inf
        sim[:, j] = -np.inf
        sizes[i] += sizes[j]
        members[i].extend(members[j])
        members[j] = []
    return sorted((sorted(m) for m in members if m), key=lambda m: m[0])


def _points(seed: int, n: int, dim: int, topics: int, spread: float, repeats: int) -> np.ndarray:
    """Normalised float32 vectors around a few centres, some rows repeated exactly."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, dim))
    points = centres[rng.integers(0, topics, size=n)] + rng.normal(scale=spread, size=(n, dim))
    if repeats and n > 1:
        points[rng.integers(0, n, size=repeats)] = points[rng.integers(0, n, size=repeats)]
    points = points.astype(np.float32)
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float64)


@settings(max_examples=400, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 60),
    dim=st.integers(2, 24),
    topics=st.integers(1, 8),
    spread=st.sampled_from([0.05, 0.2, 0.5, 1.0, 3.0]),
    repeats=st.integers(0, 5),
    threshold=st.floats(-1.0, 1.05),
)
def test_same_groups_as_the_reference(
    seed: int, n: int, dim: int, topics: int, spread: float, repeats: int, threshold: float
) -> None:
    points = _points(seed, n, dim, topics, spread, repeats)
    assert average_linkage(points, threshold) == reference_average_linkage(points, threshold)


def test_same_groups_on_a_capture_sized_batch() -> None:
    points = _points(11, 600, 64, 40, 0.6, 30)
    for threshold in (0.5, 0.8, 0.905, 0.95):
        groups = average_linkage(points, threshold)
        assert groups == reference_average_linkage(points, threshold)
        assert 1 < len(groups) < 600


def test_edges() -> None:
    assert average_linkage(np.zeros((0, 3)), 0.9) == []
    assert average_linkage(np.ones((1, 3)) / np.sqrt(3), 0.9) == [[0]]
    same = np.tile([[0.6, 0.8]], (4, 1))
    assert average_linkage(same, 0.9) == [[0, 1, 2, 3]]
    assert average_linkage(same, 1.01) == [[0], [1], [2], [3]]
