"""Job-affinity term (ranks whose job already has placed ranks): stay with the job's locality and machine class.

For each configured locality label (zone, rack, ``nvidia.com/gpu.clique``) and the topology
class, a node matches when its value equals the most common value among the nodes of the
job's placed siblings. Points off: ``round_half_up(AFFINITY_MAX · mismatches / keys)`` over
the keys some sibling node has, at most 2, and together with the island penalty at most
``PENALTY_CAP`` (3, one ×2 bandwidth step): affinity orders nodes of about the same bandwidth
and can at most tie a ring twice as fast, never outrank it. Nothing without siblings: always in stateless
mode (a request carries no pods but this one), and for the first rank of a job in cached mode.
"""

from __future__ import annotations

from policy.scoring.base import round_half_up
from policy.scoring.weights import AFFINITY_MAX
from policy.siblings import Siblings

__all__ = ["mismatches", "penalty"]


def mismatches(locality: tuple[str | None, ...], topology_class: str | None, siblings: Siblings) -> tuple[int, int]:
    """``(keys where the node differs from the siblings' majority, keys the siblings have)``."""
    keys = misses = 0
    for mine, theirs in zip(locality, siblings.locality, strict=False):
        if theirs is not None:
            keys += 1
            misses += mine != theirs
    if siblings.topology_class is not None:
        keys += 1
        misses += topology_class != siblings.topology_class
    return misses, keys


def penalty(locality: tuple[str | None, ...], topology_class: str | None, siblings: Siblings | None) -> int:
    """Points off for a node (0 without siblings, or when the node matches on every key)."""
    if siblings is None:
        return 0
    misses, keys = mismatches(locality, topology_class, siblings)
    return 0 if keys == 0 else round_half_up(AFFINITY_MAX * misses / keys)
