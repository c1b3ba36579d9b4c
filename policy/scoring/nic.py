"""GPUDirect RDMA strategy for multi-node ranks: GPUs with a NIC at PXB or better.

``10 * good / k`` over the chosen set, where a GPU is good when its nearest
NIC sits behind the same PCIe switch (PIX/PXB, ``nic_locality.GPUDIRECT_MAX_LEVEL``):
NCCL then reads GPU memory straight from the NIC instead of staging through
host memory. A node without NICs scores 0 for a multi-node rank.
"""

from __future__ import annotations

from policy.scoring.base import ScoreInput, ratio_score

__all__ = ["score"]

PER_NODE = False


def score(inp: ScoreInput) -> int | None:
    ev = inp.evaluation
    if ev.placement is None or not ev.has_nics:
        return 0
    return ratio_score(ev.nic_good, inp.gpus)
