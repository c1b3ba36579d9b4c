"""Allocated term (pods without whole GPUs: CPU-only, GPU shares): go where GPUs are already allocated.

``round_half_up(10 · allocated / total)`` GPUs of the node (a GPU is allocated when it is not
fully free). Idle GPU boards then keep their CPU and memory for GPU pods: without it, a
spreading resource score sends CPU pods to the emptiest nodes, which are exactly the whole
boards the other terms keep free, and an 8-GPU pod no longer fits there for want of CPU.
Only pods the extender sees are scored: with ``managedResources`` empty in the scheduler
configuration, every pod of the profile (``docs/extender.md``). Nodes gputopo does not
manage (no GPU, or no agent) count as fully allocated: :data:`NOT_OURS`.
"""

from __future__ import annotations

from policy.scoring.base import round_half_up
from policy.scoring.weights import ALLOCATED_POINTS

__all__ = ["NOT_OURS", "score"]

#: a node gputopo does not manage: CPU pods are welcome there
NOT_OURS = ALLOCATED_POINTS


def score(free: int, total: int) -> int:
    """``round_half_up(10 · (total − free) / total)``; a node without GPUs: :data:`NOT_OURS`.

    >>> score(8, 8), score(4, 8), score(0, 8), score(1, 8)
    (0, 5, 10, 9)
    """
    if total <= 0:
        return NOT_OURS
    return round_half_up(ALLOCATED_POINTS * (total - free) / total)
