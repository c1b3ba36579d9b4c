"""THE weights table of the placement objective: every constant of a score, with the reason for its value.

The objective (``docs/extender.md``, "Prioritize") turns predicted NCCL bus bandwidth into a
0..10 extender score per node; kube-scheduler adds ``score × weight × 10`` to its own
plugins' ``0..100 × weight``. The values below were chosen with the simulator, side by side
with the alternatives (``docs/placement.md``, "The objective"); each row says why.
``docs/extender.md`` renders this table (a test keeps them equal) and a test checks that the
shipped KubeSchedulerConfiguration uses :data:`EXTENDER_WEIGHT`.
"""

from __future__ import annotations

from dataclasses import dataclass

from labeler.topology import bandwidth

__all__ = [
    "AFFINITY_MAX",
    "ALLOCATED_POINTS",
    "EXTENDER_WEIGHT",
    "ISLAND_EMPTY",
    "ISLAND_FILLS",
    "ISLAND_PARTLY_USED",
    "PENALTY_CAP",
    "POINTS_PER_X2",
    "SINGLE_POINTS_PER_X2",
    "UNKNOWN_NETWORK_GBPS",
    "WEIGHTS",
    "Weight",
    "table_markdown",
]


@dataclass(frozen=True, slots=True)
class Weight:
    """One row: a constant of the objective and why it has that value."""

    key: str
    value: float
    why: str


#: points a node loses per halving of predicted bandwidth against the best candidate (×2 = 3 points)
POINTS_PER_X2 = 3
#: island penalty: the pod takes the node's last free GPUs / the node is partly used / entirely free
ISLAND_FILLS, ISLAND_PARTLY_USED, ISLAND_EMPTY = 0, 1, 2
#: the most job affinity can take off (ranks whose siblings are placed)
AFFINITY_MAX = 2
#: island and affinity penalties together never exceed this: one ×2 bandwidth step, so they can tie twice the
#: bandwidth at most, never outrank it
PENALTY_CAP = 3
#: a rank's network when any fact of its path is unknown: NCCL's fallback for one NIC, the same for every such node
UNKNOWN_NETWORK_GBPS = bandwidth.NIC_UNKNOWN.gbps
#: 1-GPU pods: points per ×2 of the best free GPU pair's bandwidth above the least valuable candidate
SINGLE_POINTS_PER_X2 = 3
#: pods without whole GPUs: the score is this × the node's allocated share of GPUs
ALLOCATED_POINTS = 10
#: the extender's weight in the shipped KubeSchedulerConfiguration (manifests/scheduler/configmap.yaml)
EXTENDER_WEIGHT = 10

WEIGHTS: tuple[Weight, ...] = (
    Weight("points per ×2 of predicted bandwidth", POINTS_PER_X2,
           "larger than the largest island penalty (2), so keeping an island whole never beats twice the bandwidth; a "
           "node ×10 slower than the best scores 0"),
    Weight("island penalty: the pod fills the node", ISLAND_FILLS,
           "taking a node's last free GPUs breaks nothing a later pod could use"),
    Weight("island penalty: the node is partly used", ISLAND_PARTLY_USED,
           "pack into boards that are already broken before breaking a whole one (ties between an empty and a "
           "half-used node then never go to the empty one)"),
    Weight("island penalty: the node is entirely free", ISLAND_EMPTY,
           "keep whole boards whole for the pods that need all of them; under a spreading resource score "
           "(LeastAllocated) this term cuts the synthetic mix's waste from 8.1 % to 5.1 %"),
    Weight("job affinity: most points off", AFFINITY_MAX,
           "ranks away from their job's zone, rack, NVLink clique or machine class lose up to the island scale: a "
           "preference between nodes of about the same bandwidth (not measured: the simulated fleets carry no "
           "zone, rack or clique labels)"),
    Weight("penalties together (island + affinity): at most", PENALTY_CAP,
           "one ×2 step: together they can at most tie a node with twice the bandwidth, never outrank it; and an "
           "empty node away from the job still ranks below an empty one next to it (2 + 1 against 2)"),
    Weight("rank: network counted when a fact of its path is unknown, GB/s", UNKNOWN_NETWORK_GBPS,
           "NCCL's fallback for a NIC of unknown speed (10 Gb/s), the same for every node whose network path rests on "
           "an assumed fact: an unknown network never ranks high, and unknown NIC counts invent no differences"),
    Weight("1-GPU pods: points per ×2 of the best free pair", SINGLE_POINTS_PER_X2,
           "one step size for the whole objective"),
    Weight("pods without whole GPUs: points for a fully allocated node", ALLOCATED_POINTS,
           "CPU-only and GPU-share pods go where GPUs are already allocated, so idle boards keep their CPU and memory "
           "for GPU pods; nodes gputopo does not manage count as fully allocated"),
    Weight("extender weight (KubeSchedulerConfiguration)", EXTENDER_WEIGHT,
           "one extender point = 100 in kube-scheduler's total: a ×2 bandwidth step (300) outweighs any difference of "
           "NodeResourcesFit + BalancedAllocation (0..200); where the extender is neutral, the resources decide. "
           "At weight 5 the lowest trace aligned % is 98.5 instead of 99.3"),
)


def table_markdown() -> str:
    """:data:`WEIGHTS` as the markdown table ``docs/extender.md`` carries."""
    lines = ["| constant | value | why |", "|---|---:|---|"]
    for w in WEIGHTS:
        lines.append(f"| {w.key} | {w.value:g} | {w.why} |")
    return "\n".join(lines) + "\n"
