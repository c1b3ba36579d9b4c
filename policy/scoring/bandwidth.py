"""Bandwidth term (multi-GPU pods and ranks): points lost against the best candidate, on a log scale.

``round_half_up(POINTS_PER_X2 · log2(V* / V))`` where ``V`` is this node's value (the
predicted NCCL ring bus bandwidth of its best free k-set; for a rank, that ring and its
network path, :mod:`.network`) and ``V*`` the best value among the request's candidates.
Log scale because bandwidth ratios are what a job feels: twice as fast is the same step
between 6 and 12 GB/s as between 240 and 480. A node ×10 slower than the best loses 10.
"""

from __future__ import annotations

import math

from policy.scoring.base import round_half_up
from policy.scoring.weights import POINTS_PER_X2

__all__ = ["drop", "x2_steps"]


def x2_steps(value: float, best: float) -> float:
    """How many halvings ``value`` is below ``best`` (0 at or above it)."""
    if value >= best:
        return 0.0
    return math.log2(best) - math.log2(value)


def drop(value: float, best: float) -> int:
    """Points lost: 3 per halving, rounded half up.

    >>> drop(240.0, 240.0), drop(20.0, 240.0), drop(120.0, 240.0)  # 3·log2(12) = 10.75
    (0, 11, 3)
    """
    return round_half_up(POINTS_PER_X2 * x2_steps(value, best))
