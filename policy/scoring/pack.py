"""Node packing strategy: prefer nodes with fewer GPUs left over after this pod.

``10 * (1 - (free - k) / total)``: the last free GPU of a node scores 10, one
GPU out of an idle 8-GPU node scores 1. Used for single-GPU and small
inference pods so whole nodes stay free for multi-GPU and multi-node jobs.
"""

from __future__ import annotations

from policy.scoring.base import ScoreInput, ratio_score

__all__ = ["score"]

PER_NODE = False


def score(inp: ScoreInput) -> int | None:
    ev = inp.evaluation
    if ev.placement is None or ev.total == 0:
        return 0
    return ratio_score(ev.total - (ev.free_count - inp.gpus), ev.total)
