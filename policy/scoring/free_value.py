"""Free-value term (1-GPU pods): take the GPU whose loss costs multi-GPU pods least.

``c`` = log2 of the predicted bus bandwidth of the best free GPU *pair* on the node (0 when
fewer than two GPUs are free: a lone GPU, or a 1-GPU node). Score ``10 − round_half_up(3 ·
(c − c_min))`` over the request's candidates: a lone free GPU whose NVLink partner is busy
goes first, PCIe boxes next, whole NVLink/NVSwitch boards last. It reads only the node's free
GPUs, never its CPU or memory: between nodes whose free GPUs are worth the same it gives every
node 10, and kube-scheduler's resource scoring decides (a 1-GPU pod never overrides CPU or
memory fit).
"""

from __future__ import annotations

import math

from policy.scoring.base import round_half_up
from policy.scoring.weights import SINGLE_POINTS_PER_X2

__all__ = ["drop", "value"]


def value(best_pair_gbps: float | None) -> float:
    """``c``: log2 of the best free pair's bandwidth; 0 without a pair (fewer than two free GPUs).

    >>> round(value(240.0), 3), value(None)
    (7.907, 0.0)
    """
    return math.log2(best_pair_gbps) if best_pair_gbps is not None and best_pair_gbps > 1.0 else 0.0


def drop(c: float, c_min: float) -> int:
    """Points lost against the least valuable candidate (3 per ×2 of pair bandwidth).

    >>> drop(7.907, 0.0), drop(3.0, 3.0)
    (24, 0)
    """
    return round_half_up(SINGLE_POINTS_PER_X2 * max(0.0, c - c_min))
