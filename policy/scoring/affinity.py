"""Job-affinity strategy: run next to the job's already-placed ranks.

For each configured locality label (zone, rack, ``nvidia.com/gpu.clique``)
and the topology class, a node matches when its value equals the most common
value among the nodes of the job's placed siblings. Score = ``10 * matches /
keys``, over the keys some sibling node has. Abstains when no sibling is
known: always in stateless mode (a request carries no pods but this one), and
for the first rank of a job in cached mode.
"""

from __future__ import annotations

from policy.scoring.base import ScoreInput, ratio_score

__all__ = ["score"]

PER_NODE = True


def score(inp: ScoreInput) -> int | None:
    sib = inp.siblings
    if sib is None:
        return None
    keys = matches = 0
    for mine, theirs in zip(inp.locality, sib.locality, strict=False):
        if theirs is not None:
            keys += 1
            matches += mine == theirs
    if sib.topology_class is not None:
        keys += 1
        matches += inp.topology_class == sib.topology_class
    return None if keys == 0 else ratio_score(matches, keys)
