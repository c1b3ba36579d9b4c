"""Placement facts for (topology, free GPUs, k): the only expensive step, memoised.

Why memoise here and not per node: a node's answer depends only on its
topology, its free set and the request, and large clusters hold few distinct
(topology, free set) pairs. :class:`TopoContext` holds one topology's
:class:`~labeler.topology.placement.Placer`, NIC locality and an LRU of
:class:`Evaluation`, so a 5,000-node request costs a dict lookup per node.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from labeler.topology import islands, nic_locality, placement
from labeler.topology.bytecache import ByteCache
from labeler.topology.links import ISLAND_LEVELS, LinkLevel
from labeler.topology.model import Topology

__all__ = ["LEVEL_WORDS", "ContextRegistry", "Evaluation", "TopoContext", "describe_level"]

#: How a level reads in a filter message ("needs 4 GPUs within one PCIe switch (pxb)").
LEVEL_WORDS: dict[LinkLevel, str] = {
    LinkLevel.NVLINK: "connected by NVLink",
    LinkLevel.PIX: "behind a single PCIe bridge",
    LinkLevel.PXB: "within one PCIe switch",
    LinkLevel.PHB: "under one PCIe host bridge",
    LinkLevel.NODE: "within one NUMA node",
    LinkLevel.SYS: "anywhere in the node",
}


def describe_level(level: LinkLevel) -> str:
    return f"{LEVEL_WORDS[level]} ({level.slug})"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What a node can do for a k-GPU pod, independent of which node it is."""

    placement: placement.Placement | None  # best k-set among the free GPUs (None: fewer than k free)
    level: LinkLevel | None  # its bottleneck level (None for k=1 or no placement)
    fit_island: int  # free GPUs in the island the best set comes from (best-fit denominator)
    free_count: int
    total: int
    nic_good: int  # GPUs of the placement with a NIC at PXB or better (GPUDirect RDMA)
    has_nics: bool
    required: LinkLevel | None  # the level a `required` pod needs here (None: not required)
    fails: bool  # `required` and no free k-set meets it
    unresolvable: bool  # ... and not even with every GPU free (preemption cannot help)
    reason: str | None


class TopoContext:
    """Per-topology helpers and the evaluation memo (bounded, thread-safe for readers)."""

    def __init__(self, topo: Topology, *, memo_size: int = 4096) -> None:
        self.topo = topo
        self.placer = placement.placer_for(topo)
        self.total = len(topo.gpus)
        self.all_mask = (1 << self.total) - 1
        locality = nic_locality.compute(topo)
        self.has_nics = bool(topo.nics)
        self.gpudirect_mask = 0
        for pos, gpu in enumerate(topo.gpus):
            loc = locality.get(gpu.index)
            if loc is not None and loc.level is not None and loc.level <= nic_locality.GPUDIRECT_MAX_LEVEL:
                self.gpudirect_mask |= 1 << pos
        self.natural_level = self._natural_level()
        self._memo: OrderedDict[tuple[int, int, int], Evaluation] = OrderedDict()
        self._memo_size = memo_size
        self._lock = threading.Lock()

    def cost_bytes(self) -> int:
        """Estimated bytes at a full memo: the placer's own estimate plus ~700 B per evaluation."""
        return self.placer.cost_bytes() + self._memo_size * (700 + 16 * self.total)

    def _natural_level(self) -> LinkLevel:
        """The tightest level at which the hardware groups GPUs (where single GPUs pack)."""
        for level in ISLAND_LEVELS:
            if any(len(g) > 1 for g in islands.components(self.topo, level)):
                return level
        return LinkLevel.SYS

    def free_gpus(self, free_mask: int) -> list[int]:
        return [g.index for p, g in enumerate(self.topo.gpus) if free_mask >> p & 1]

    def empty_best_level(self, k: int) -> LinkLevel | None:
        """Bottleneck of the best k-set on the empty node (the default `required` level)."""
        if k > self.total:
            return None
        best = self.placer.best_mask(self.all_mask, k)
        if best is None:
            return None
        return best.level if k > 1 else LinkLevel.SELF

    def evaluate(self, free_mask: int, k: int, required: LinkLevel | None) -> Evaluation:
        """Memoised :meth:`_evaluate` keyed by (free set, k, required level)."""
        key = (free_mask, k, -1 if required is None else int(required))
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        result = self._evaluate(free_mask, k, required)
        with self._lock:
            self._memo[key] = result
            if len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return result

    def _evaluate(self, free_mask: int, k: int, required: LinkLevel | None) -> Evaluation:
        free_count = free_mask.bit_count()
        best = self.placer.best_mask(free_mask, k) if 0 < k <= free_count else None
        level = best.level if best is not None and k > 1 else None
        fit = self._fit_island(free_mask, k, best)
        nic_good = 0
        if best is not None:
            nic_good = (self.placer.mask(best.gpus) & self.gpudirect_mask).bit_count()
        fails = unresolvable = False
        reason = None
        if required is not None and k > 1 and best is not None and best.level > required:
            fails = True
            groups = self.placer.islands_free(self.free_gpus(free_mask), required)
            sizes = sorted((len(g) for g in groups), reverse=True)
            shown = "+".join(str(s) for s in sizes) if sizes else "none"
            reason = f"needs {k} GPUs {describe_level(required)}; free islands at {required.slug}: {shown}"
            empty = self.placer.best_mask(self.all_mask, k)
            if empty is None or empty.level > required:
                unresolvable = True
                got = "no set" if empty is None else f"the best {k}-GPU set is at {empty.level.slug}"
                reason += f" (even with every GPU free {got})"
        return Evaluation(
            placement=best,
            level=level,
            fit_island=fit,
            free_count=free_count,
            total=self.total,
            nic_good=nic_good,
            has_nics=self.has_nics,
            required=required,
            fails=fails,
            unresolvable=unresolvable,
            reason=reason,
        )

    def _fit_island(self, free_mask: int, k: int, best: placement.Placement | None) -> int:
        """Free GPUs in the smallest free island that still hosts the best level (best fit).

        k=1: the smallest free island at the node's natural level (where the
        Placer takes a single GPU from). k>1: islands at the achieved level,
        smallest first, the first one whose own best k-set reaches that level.
        """
        if best is None:
            return 0
        free = self.free_gpus(free_mask)
        if k == 1:
            groups = self.placer.islands_free(free, self.natural_level)
            return min((len(g) for g in groups), default=1)
        level = best.level
        groups = sorted((g for g in self.placer.islands_free(free, level) if len(g) >= k), key=len)
        for group in groups:
            inner = self.placer.best(group, k)
            if inner is not None and inner.bottleneck.rank <= best.bottleneck.rank:
                return len(group)
        return free_mask.bit_count()


class ContextRegistry:
    """:class:`TopoContext` per wiring id (ids come from :class:`~policy.nodes.decode.TopologyRegistry`).

    Bounded by estimated bytes (each context at its full memo, see
    :meth:`TopoContext.cost_bytes`) as well as by entries: one context per kind
    of machine in a real cluster, so the bound only bites on hostile input.
    """

    def __init__(self, max_entries: int = 512, *, max_bytes: int = 256 << 20) -> None:
        self._by_id: ByteCache[int, TopoContext] = ByteCache(max_bytes=max_bytes, max_entries=max_entries)

    def get(self, topo_id: int, topo: Topology) -> TopoContext:
        ctx = self._by_id.get(topo_id)
        if ctx is not None:
            return ctx
        ctx = TopoContext(topo)
        return self._by_id.put(topo_id, ctx, ctx.cost_bytes())

    def __len__(self) -> int:
        return len(self._by_id)
