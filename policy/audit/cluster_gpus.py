"""The cluster audit's GPU questions: pods that span islands, GPUs stranded by topology, where to run nccl-tests.

Every answer about which GPUs form a good set comes from
:class:`labeler.topology.placement.Placer`, the one placement computation the extender and the
simulator use; this module only asks it questions. Only *usable* nodes take part (status
ok|degraded, topology and allocation decoded, allocation not stale): on the others the free/used
state is not what the extender would believe either.

**Level of a pod's GPU set.** ``Placer.best(gpus, k=len(gpus))`` on exactly the pod's GPUs gives
the best NCCL ring through them and its bottleneck link; its level is "the level the pod spans".
The node's *best level for k* is the same question asked of all the node's GPUs. A pod **spans
islands** when its level is worse than that (a tighter set existed on the empty node). Its ring
**crosses sockets** when its level is SYS *and* its GPUs sit on more than one NUMA node
(:func:`labeler.topology.numa.crosses`, from NUMA affinity): a SYS ring inside one NUMA node
(board 032) is a SYS bottleneck, not a crossing, and with the grouping unknown the answer is
unknown. A crossing is avoidable when some NUMA node of the node holds k GPUs.

**Stranded GPUs** (docs/audit.md says the same). Let S be the demanded sizes: the GPU requests of
unscheduled Pending pods, or, when none is pending, the sizes of the running GPU pods (from the
allocations' ``used`` maps), or the sizes given. On a node with GPU count n, let S_n = {k in S :
k <= n} and F its free GPUs. For k in S_n let L_k be the node's best level for k (the level of
``Placer.best(all GPUs, k)``). A free GPU g is *stranded* when |F| >= min(S_n) (the node has
enough free GPUs for some demanded size, so count is not the reason) and, for every k in S_n,
the free island of g at L_k (``Placer.islands_free(F, L_k)``) holds fewer than k GPUs: no
demanded pod can use g at the level this node offers for its size.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labeler.topology import numa
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology
from labeler.topology.placement import Placer
from policy.audit.cluster_nodes import Freshness, NodeView
from policy.bandwidth import expected_busbw

__all__ = [
    "NCCL_COMMAND",
    "NcclSuggestion",
    "PodSpan",
    "Stranded",
    "Topologies",
    "nccl_suggestion",
    "pod_spans",
    "running_sizes",
    "stranded",
]

#: nccl-tests (NVIDIA/nccl-tests README): one process driving all the node's GPUs (-g), message sizes
#: 8 B to 1 GiB doubling (-f 2); 1 GiB keeps send+receive buffers at 2 GiB per GPU. NCCL_DEBUG=INFO makes
#: the log name the GPUs and paths NCCL chose, which `gputopo audit nccl` reads and compares with the
#: expectation printed beside the command (policy.bandwidth, the one bandwidth seam).
NCCL_COMMAND = "NCCL_DEBUG=INFO all_reduce_perf -b 8 -e 1G -f 2 -g {gpus}"


class Topologies:
    """One :class:`Placer` per distinct topology object and its best level per size (memoised)."""

    def __init__(self) -> None:
        self._placers: dict[int, tuple[Topology, Placer]] = {}
        self._best: dict[tuple[int, int], LinkLevel | None] = {}
        self._numa: dict[int, tuple[Topology, numa.NumaGroups]] = {}

    def placer(self, topo: Topology) -> Placer:
        hit = self._placers.get(id(topo))
        if hit is None or hit[0] is not topo:
            hit = (topo, Placer(topo))
            self._placers[id(topo)] = hit
        return hit[1]

    def numa(self, topo: Topology) -> numa.NumaGroups:
        """The NUMA grouping of ``topo`` (memoised like the placer)."""
        hit = self._numa.get(id(topo))
        if hit is None or hit[0] is not topo:
            hit = (topo, numa.group(topo))
            self._numa[id(topo)] = hit
        return hit[1]

    def best_level(self, topo: Topology, k: int) -> LinkLevel | None:
        """Level of the best k-GPU ring on the empty node; ``None`` when none closes (k > n, unknown links)."""
        key = (id(topo), k)
        if key not in self._best:
            placed = self.placer(topo).best(topo.gpu_indices, k) if 1 <= k <= len(topo.gpus) else None
            self._best[key] = None if placed is None else placed.level
        return self._best[key]


@dataclass(frozen=True, slots=True)
class PodSpan:
    """A running multi-GPU pod: its GPUs, the level they ring at, and the best the node offers for that count."""

    pod: str
    node: str
    gpus: tuple[int, ...]
    level: LinkLevel | None  # None: the set closes no ring over known links
    best: LinkLevel | None
    ring_token: str | None  # the bottleneck link's nvidia-smi token (NV12, SYS…)
    numa_crossing: bool | None = None  # labeler.topology.numa.crosses: GPUs on more than one NUMA node
    numa_fits: bool | None = None  # some NUMA node of the node holds this many GPUs (None: grouping unknown)

    @property
    def spans(self) -> bool:
        """Worse than the node's best level for this GPU count (a tighter set existed on the empty node)."""
        return self.level is not None and self.best is not None and self.level > self.best

    @property
    def crosses_sockets(self) -> bool | None:
        """A SYS hop in the ring and GPUs on different NUMA nodes; ``None`` when the NUMA grouping is unknown."""
        if self.level is not LinkLevel.SYS:
            return False
        return self.numa_crossing

    @property
    def sys_within_numa(self) -> bool:
        """The ring has a SYS hop although all the GPUs share one NUMA node (the node finding ``sys-within-numa``)."""
        return self.level is LinkLevel.SYS and self.numa_crossing is False


def _pods_on(view: NodeView) -> dict[str, list[int]]:
    by_pod: dict[str, list[int]] = {}
    if view.state is None or view.topo is None:
        return by_pod
    known = set(view.topo.gpu_indices)
    for gpu, pod in view.state.used.items():
        if gpu in known:
            by_pod.setdefault(pod, []).append(gpu)
    return by_pod


def pod_spans(views: Iterable[NodeView], topos: Topologies) -> list[PodSpan]:
    """Every running pod holding two or more GPUs on a usable node, with its level and the node's best."""
    out: list[PodSpan] = []
    for v in views:
        if not v.usable or v.topo is None:
            continue
        for pod, gpus in sorted(_pods_on(v).items()):
            if len(gpus) < 2:
                continue
            placed = topos.placer(v.topo).best(gpus, len(gpus))
            groups = topos.numa(v.topo)
            out.append(PodSpan(
                pod=pod, node=v.name, gpus=tuple(sorted(gpus)),
                level=None if placed is None else placed.level,
                best=topos.best_level(v.topo, len(gpus)),
                ring_token=None if placed is None else placed.bottleneck.token,
                numa_crossing=groups.crosses(gpus),
                numa_fits=None if groups.largest is None else groups.largest >= len(gpus),
            ))
    return out


def running_sizes(views: Iterable[NodeView]) -> Counter[int]:
    """GPU counts of the running pods on usable nodes (the typical sizes), as a histogram."""
    sizes: Counter[int] = Counter()
    for v in views:
        if v.usable:
            sizes.update(len(g) for g in _pods_on(v).values())
    return sizes


@dataclass(frozen=True, slots=True)
class Stranded:
    """A node's free GPUs that no demanded size can use at the level the node offers for it."""

    node: str
    free: tuple[int, ...]
    stranded: tuple[int, ...]
    #: per demanded size k the node can host: (k, L_k, free island sizes at L_k, largest first)
    islands: tuple[tuple[int, LinkLevel, tuple[int, ...]], ...]


def stranded(view: NodeView, sizes: Sequence[int], topos: Topologies) -> Stranded | None:
    """The node's stranded GPUs (module doc); ``None`` when none is, or the node takes no part."""
    topo = view.topo
    if not view.usable or topo is None or view.state is None:
        return None
    known = set(topo.gpu_indices)
    free = sorted(g for g in view.state.free if g in known)
    demanded = sorted({k for k in sizes if 1 <= k <= len(topo.gpus)})
    if not free or not demanded or len(free) < demanded[0]:
        return None
    placer = topos.placer(topo)
    usable: set[int] = set()
    islands: list[tuple[int, LinkLevel, tuple[int, ...]]] = []
    for k in demanded:
        level = topos.best_level(topo, k)
        if k == 1 or level is None:
            if k == 1:
                usable.update(free)
            continue
        groups = placer.islands_free(free, level)
        islands.append((k, level, tuple(sorted((len(g) for g in groups), reverse=True))))
        for g in groups:
            if len(g) >= k:
                usable.update(g)
    left = tuple(g for g in free if g not in usable)
    if not left:
        return None
    return Stranded(view.name, tuple(free), left, tuple(islands))


@dataclass(frozen=True, slots=True)
class NcclSuggestion:
    """The node of a class to run nccl-tests on, and the exact command."""

    node: str
    gpus: int
    command: str
    age_s: float | None
    expected_busbw_gbps: float | None  # policy.bandwidth.expected_busbw of all the node's GPUs


def nccl_suggestion(views: Sequence[NodeView]) -> NcclSuggestion | None:
    """Among one class's nodes: status ok, schedulable, allocation fresh, every GPU free; the freshest wins.

    ``None`` when no node qualifies (each is busy, degraded, cordoned or not current).
    """
    best: tuple[float, str, NodeView] | None = None
    for v in views:
        topo, state = v.topo, v.state
        if (not v.usable or v.status != "ok" or v.unschedulable or topo is None or state is None
                or v.freshness is not Freshness.FRESH or state.used or not set(topo.gpu_indices) <= state.free):
            continue
        key = (v.age_s or 0.0, v.name)
        if best is None or key < best[:2]:
            best = (*key, v)
    if best is None:
        return None
    v = best[2]
    assert v.topo is not None
    n = len(v.topo.gpus)
    return NcclSuggestion(v.name, n, NCCL_COMMAND.format(gpus=n), v.age_s, expected_busbw(v.topo, v.topo.gpu_indices))
