"""Link-level strategy: the tighter the best achievable ring bottleneck, the higher.

The table follows the bandwidth priors (``shared/research/nccl-bandwidth.md``
§5): NVLink sets are several times faster than anything over PCIe; a set
behind one PCIe switch (PIX/PXB) keeps P2P at full PCIe rate; crossing the
host bridge, NUMA nodes or sockets roughly halves it again (rule 1: the
slowest hop sets the ring's speed). 1-GPU pods abstain (no links inside).
"""

from __future__ import annotations

from labeler.topology.links import LinkLevel
from policy.scoring.base import ScoreInput

__all__ = ["LEVEL_SCORES", "score"]

LEVEL_SCORES: dict[LinkLevel, int] = {
    LinkLevel.NVLINK: 10,
    LinkLevel.PIX: 8,
    LinkLevel.PXB: 7,
    LinkLevel.PHB: 5,
    LinkLevel.NODE: 3,
    LinkLevel.SYS: 1,
}

PER_NODE = False


def score(inp: ScoreInput) -> int | None:
    if inp.gpus < 2:
        return None
    level = inp.evaluation.level
    return 0 if level is None else LEVEL_SCORES[level]
