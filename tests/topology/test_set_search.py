"""The k-subset search behind the objective: exhaustive on small nodes, bounded swaps beyond, deterministic ties."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labeler.topology import set_search


def _brute(free_mask: int, k: int, value):  # type: ignore[no-untyped-def]
    free = [p for p in range(free_mask.bit_length()) if free_mask >> p & 1]
    masks = [sum(1 << p for p in c) for c in itertools.combinations(free, k)]
    return max(masks, key=lambda m: (value(m), -m)) if masks else None


@given(st.integers(min_value=0, max_value=255), st.integers(min_value=1, max_value=8), st.integers(0, 10**6))
def test_exhaustive_on_8_gpus_is_the_brute_force_answer(free_mask: int, k: int, seed: int) -> None:
    rng = random.Random(seed)
    table = {m: (float(rng.randrange(4)), float(rng.randrange(3))) for m in range(256)}  # many ties
    found = set_search.search(free_mask, k, table.__getitem__)
    want = _brute(free_mask, k, table.__getitem__)
    assert (None if found is None else found.mask) == want
    assert found is None or (found.exhaustive and found.value == table[found.mask])


def test_ties_go_to_the_lowest_mask() -> None:
    found = set_search.search(0b1111_0000, 2, lambda m: (1.0,))
    assert found is not None and found.mask == 0b0011_0000


def test_too_few_free_or_k_zero_finds_nothing() -> None:
    assert set_search.search(0b101, 3, lambda m: (1.0,)) is None
    assert set_search.search(0b101, 0, lambda m: (1.0,)) is None


def test_large_nodes_swap_from_the_start_set_within_the_budget() -> None:
    """16 free GPUs, k = 8: C(16, 8) = 12,870 subsets, too many: swaps from the start set. A value that counts the
    chosen GPUs among the top eight positions is climbed one swap per round; 8 rounds reach the optimum from the
    bottom eight, and every evaluated mask is a k-subset of the free GPUs."""
    top = 0xFF00
    calls: list[int] = []

    def value(mask: int) -> tuple[float]:
        calls.append(mask)
        return (float((mask & top).bit_count()),)

    found = set_search.search(0xFFFF, 8, value, start=0x00FF)
    assert found is not None and not found.exhaustive and found.mask == top
    assert all(m.bit_count() == 8 and m & ~0xFFFF == 0 for m in calls)
    assert len(calls) <= 1 + set_search.SWAP_ROUNDS * 8 * 8


@pytest.mark.parametrize("start", [None, 0x000F_000F])
def test_a_bad_start_is_replaced_by_the_lowest_positions(start: int | None) -> None:
    found = set_search.search(0xFFFF, 8, lambda m: (0.0,), start=start)
    assert found is not None and found.mask == 0x00FF  # nothing improves: the start it used (bad one ignored)
