"""Best-fit strategy: take the GPUs from the smallest free island that fits.

``10 * k / s`` where ``s`` is the number of free GPUs in the island the best
set is taken from (at the achieved level; for 1 GPU at the node's natural
level). An exact fit scores 10; taking 2 GPUs out of a fully free 8-GPU
NVSwitch board scores 3 (2.5 rounds up), which keeps large islands whole for
large jobs and makes single-GPU pods fill already-broken islands first.
"""

from __future__ import annotations

from policy.scoring.base import ScoreInput, ratio_score

__all__ = ["score"]

PER_NODE = False


def score(inp: ScoreInput) -> int | None:
    ev = inp.evaluation
    if ev.placement is None:
        return 0
    return ratio_score(inp.gpus, ev.fit_island)
