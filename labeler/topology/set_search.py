"""The k-subset of a node's free GPUs that maximises a value: exhaustive when small, bounded swaps beyond.

Why a search of its own: the Placer (:mod:`labeler.topology.placement`) ranks sets by the
*link level* of their worst ring hop, and the objective ranks them by *predicted NCCL bus
bandwidth* (:mod:`labeler.topology.busbw`). The two disagree where a level hides a shared
link: on a GeForce PCIe-switch box without P2P the tightest 4-GPU set sends four streams
through one switch uplink (corpus 035: 12 / 4 = 3 GB/s) while a set spread over two
switches gets 6. So the set a score is about is found by the value itself.

Budget: every k-subset when there are at most :data:`EXHAUSTIVE_MAX_SUBSETS` (all of them on
any node of up to 8 GPUs: C(8, 4) = 70); beyond, start from a given set (the Placer's) and
take the first single swap (one GPU in, one out) that raises the value, for at most
:data:`SWAP_ROUNDS` rounds. A value is a tuple compared as Python compares tuples; ties go to
the lower bitmask, so the answer is deterministic.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["EXHAUSTIVE_MAX_SUBSETS", "SWAP_ROUNDS", "Found", "search"]

#: every k-subset is tried when there are at most this many (any node of up to 8 GPUs)
EXHAUSTIVE_MAX_SUBSETS = 256
#: beyond: at most this many rounds of single swaps from the start set (each round tries
#: k × (free − k) swaps until one improves)
SWAP_ROUNDS = 8

Value = tuple[float, ...]


@dataclass(frozen=True, slots=True)
class Found:
    """The chosen subset (a bitmask over positions), its value, and whether every subset was tried."""

    mask: int
    value: Value
    exhaustive: bool


def _bits(mask: int) -> list[int]:
    return [p for p in range(mask.bit_length()) if mask >> p & 1]


def search(free_mask: int, k: int, value: Callable[[int], Value], start: int | None = None) -> Found | None:
    """The k-subset of ``free_mask`` with the highest ``value(mask)``; None when fewer than k are free.

    ``start``: the set the swap search begins from when the subsets are too many to try
    (a k-subset of ``free_mask``; default: its k lowest positions).

    >>> search(0b1111, 2, lambda m: (float(m),)).mask  # the highest value: positions 2 and 3
    12
    >>> search(0b0011, 3, lambda m: (1.0,)) is None
    True
    """
    free = _bits(free_mask)
    if k < 1 or len(free) < k:
        return None
    if math.comb(len(free), k) <= EXHAUSTIVE_MAX_SUBSETS:
        best: tuple[Value, int] | None = None
        for combo in itertools.combinations(free, k):
            m = 0
            for p in combo:
                m |= 1 << p
            v = value(m)
            if best is None or v > best[0] or (v == best[0] and m < best[1]):
                best = (v, m)
        assert best is not None
        return Found(best[1], best[0], True)
    cur = start if start is not None and start.bit_count() == k and start & ~free_mask == 0 else sum(
        1 << p for p in free[:k])
    cv = value(cur)
    for _ in range(SWAP_ROUNDS):
        improved = False
        inside = [p for p in free if cur >> p & 1]
        outside = [p for p in free if not cur >> p & 1]
        for a, b in itertools.product(inside, outside):
            m = (cur & ~(1 << a)) | (1 << b)
            v = value(m)
            if v > cv:
                cur, cv, improved = m, v, True
                break
        if not improved:
            break
    return Found(cur, cv, False)
