"""How the ONNX encoder cuts a call's texts into batches (`cut_batches`): cheapest by cost.

Pure arithmetic, no model: the cut is checked against every possible cut of small inputs.
That the cut texts get their own vectors is tested with the model in test_onnx_backend.py.
"""

from __future__ import annotations

import itertools
import random

import pytest

from indexer.embedding.onnx_backend import cut_batches


def _cost(widths: list[int], cuts: list[tuple[int, int]], call_cost: float) -> float:
    return sum(call_cost + (end - start) * widths[start] for start, end in cuts)


def _every_cut(n: int, max_batch: int) -> list[list[tuple[int, int]]]:
    """Every way to cut n ordered texts into consecutive batches of at most max_batch."""
    out = []
    for mask in itertools.product((False, True), repeat=max(0, n - 1)):
        bounds = [0] + [i + 1 for i, cut in enumerate(mask) if cut] + [n]
        cuts = list(itertools.pairwise(bounds))
        if all(end - start <= max_batch for start, end in cuts):
            out.append(cuts)
    return out


def _assert_partition(cuts: list[tuple[int, int]], n: int, max_batch: int) -> None:
    assert [start for start, _ in cuts] == [0] + [end for _, end in cuts[:-1]]
    assert cuts[-1][1] == n
    assert all(0 < end - start <= max_batch for start, end in cuts)


@pytest.mark.parametrize("seed", range(40))
def test_the_cut_is_the_cheapest_of_all_cuts(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 10)
    max_batch = rng.randint(1, 6)
    call_cost = rng.choice([0, 1, 4, 16, 40])
    widths = sorted((rng.randint(1, 60) for _ in range(n)), reverse=True)
    cuts = cut_batches(widths, max_batch, call_cost)
    _assert_partition(cuts, n, max_batch)
    best = min(_cost(widths, c, call_cost) for c in _every_cut(n, max_batch))
    assert _cost(widths, cuts, call_cost) == pytest.approx(best)


def test_a_mix_of_long_and_short_posts_is_cut_where_the_length_drops() -> None:
    # Eight long posts (40 tokens) and 24 short ones (12): one batch would pad the short
    # ones to 40 (1,280 tokens of work for 576 real); two batches cost 576 + 2 calls.
    widths = [40] * 8 + [12] * 24
    assert cut_batches(widths, 32, 16) == [(0, 8), (8, 32)]
    # With calls costing more than the padding saves, one batch.
    assert cut_batches(widths, 32, 1000) == [(0, 32)]


def test_equal_widths_fill_batches_up_to_the_limit() -> None:
    assert cut_batches([20] * 70, 32, 16) == [(0, 32), (32, 64), (64, 70)]
    assert cut_batches([], 32, 16) == []


def test_free_calls_give_no_padding_at_all() -> None:
    widths = [9, 9, 7, 5, 5, 5, 1]
    cuts = cut_batches(widths, 32, 0)
    assert all(len(set(widths[start:end])) == 1 for start, end in cuts)


def test_ten_thousand_texts_are_cut_quickly_and_completely() -> None:
    # An index build's call: the cut is linear in texts × max_batch.
    rng = random.Random(3)
    widths = sorted((rng.randint(4, 512) for _ in range(10_000)), reverse=True)
    cuts = cut_batches(widths, 32, 16)
    _assert_partition(cuts, len(widths), 32)
