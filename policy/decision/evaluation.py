"""What a node can do for a k-GPU pod, from its wiring and free GPUs alone: placement facts and the verdict.

Why "from its wiring and free GPUs alone": a node's answer depends only on
those and on the pod, and large clusters hold few distinct (wiring, free set)
pairs, so these are computed once per group of nodes and cached by
:class:`~policy.decision.cache.DecisionCache`. :class:`TopoContext` holds one
wiring's :class:`~labeler.topology.placement.Placer`, its GPUDirect mask (GPUs
with a NIC behind the same PCIe switch) and its natural level.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from labeler.topology import busbw, islands, nic_locality, placement, set_search
from labeler.topology.bytecache import MISS, Memo
from labeler.topology.links import ISLAND_LEVELS, LEVEL_MEANING, LinkLevel
from labeler.topology.model import Topology

__all__ = ["PASS", "Evaluation", "TopoContext", "Verdict", "describe_level", "level_words", "refusal"]


def level_words(level: LinkLevel) -> str:
    """A level in a short message ("joined through a bonded set of NVLinks"): the one table, LEVEL_MEANING."""
    return f"joined through {LEVEL_MEANING[level]}"



def describe_level(level: LinkLevel) -> str:
    """A level with its slug, for a verdict's detail ("joined through at most a single PCIe bridge (pix)")."""
    return f"{level_words(level)} ({level.slug})"


def refusal(k: int, required: LinkLevel, unresolvable: bool) -> str:
    """The filter's reason for a node it refuses: one string per (k, level, resolvable), nothing node-specific.

    Why so little: kube-scheduler turns ``FailedNodes`` into the pod's ``FailedScheduling``
    event by counting nodes per *identical* reason string ("0/5000 nodes are available: 1964
    hardware has no 4 GPUs joined through a bonded set of NVLinks, 2750 Insufficient
    nvidia.com/gpu, 286 no 4 free GPUs joined through a bonded set of NVLinks.") and cuts the
    event at 1,024 bytes; a reason per free set would list dozens of variants and push the rest
    out. And the reason is repeated for every refused node in the answer kube-scheduler decodes
    on its serial path. "free" tells the two apart: not now (preemption may help) or not on this
    hardware (unresolvable). The per-node detail (the free islands) is :attr:`Verdict.detail`,
    for explanations and logs. The level's words are the one table's (``LEVEL_MEANING``).

    >>> refusal(4, LinkLevel.NVLINK, False)
    'no 4 free GPUs joined through a bonded set of NVLinks'
    >>> refusal(8, LinkLevel.PXB, True)
    'hardware has no 8 GPUs joined through multiple PCIe bridges, without the PCIe host bridge'
    """
    if unresolvable:
        return f"hardware has no {k} GPUs {level_words(required)}"
    return f"no {k} free GPUs {level_words(required)}"


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


@dataclass(frozen=True, slots=True)
class Verdict:
    """The filter's answer for a node: passes, or fails with a reason (and whether preemption could help).

    ``required``: the level a ``required`` pod needs on this wiring (None: not required, or no
    k-set exists at all). A verdict that fails is ``unresolvable`` when not even the empty
    node meets the level: kube-scheduler then does not try preemption there. ``reason``: what
    kube-scheduler is told (:func:`refusal`: the same for every node refused the same way);
    ``detail``: why this node, in words (its free islands at the level; what it has when idle).
    """

    passes: bool = True
    unresolvable: bool = False
    reason: str | None = None
    required: LinkLevel | None = None
    detail: str | None = None

    @property
    def fails(self) -> bool:
        return not self.passes

    def as_dict(self) -> dict[str, object]:
        return {"passes": self.passes, "unresolvable": self.unresolvable, "reason": self.reason,
                "required": None if self.required is None else self.required.slug, "detail": self.detail}


#: the verdict of a pod the filter does not judge (not `required`, or fewer than 2 GPUs)
PASS = Verdict()


#: set searches kept per wiring (free mask, k, what): cleared whole when full
MAX_SEARCHES = 1 << 12


class TopoContext:
    """Per-wiring helpers: the placer, the bandwidth model, GPUDirect mask, natural level, set searches (thread-safe).

    Immutable once built except for the memo of :meth:`search`, where a race can only
    compute the same answer twice.
    """

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.placer = placement.placer_for(topo)
        self.model = busbw.model_for(topo)
        self._searches: Memo[tuple[int, int, str], set_search.Found | None] = Memo(MAX_SEARCHES)
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

    def cost_bytes(self) -> int:
        """Estimated bytes: the placer's and the bandwidth model's own estimates (they hold their memos), this
        object and its full search memo."""
        return self.placer.cost_bytes() + self.model.cost_bytes() + 2_000 + 64 * self.total + 200 * MAX_SEARCHES

    def search(self, free_mask: int, k: int, what: str,
               value: Callable[[int], tuple[float, ...]]) -> set_search.Found | None:
        """The free k-set with the highest ``value`` (:func:`labeler.topology.set_search.search`), memoised.

        ``what`` names the value function (equal names, equal functions); the swap search of
        large nodes starts from the Placer's set.
        """
        key = (free_mask, k, what)
        hit = self._searches.get(key, MISS)
        if hit is not MISS:
            return hit  # type: ignore[return-value]
        start = None
        if k >= 1 and math.comb(free_mask.bit_count(), k) > set_search.EXHAUSTIVE_MAX_SUBSETS:
            best = self.placer.best_mask(free_mask, k)
            start = None if best is None else self.placer.mask(best.gpus)
        return self._searches.put(key, set_search.search(free_mask, k, value, start))

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

    def evaluate(self, free_mask: int, k: int) -> Evaluation:
        """The best k-set among the free GPUs and the facts the strategies read about it."""
        free_count = free_mask.bit_count()
        best = self.placer.best_mask(free_mask, k) if 0 < k <= free_count else None
        level = best.level if best is not None and k > 1 else None
        nic_good = 0
        if best is not None:
            nic_good = (self.placer.mask(best.gpus) & self.gpudirect_mask).bit_count()
        return Evaluation(
            placement=best,
            level=level,
            fit_island=self._fit_island(free_mask, k, best),
            free_count=free_count,
            total=self.total,
            nic_good=nic_good,
            has_nics=self.has_nics,
        )

    def verdict(self, free_mask: int, k: int, required: LinkLevel | None, ev: Evaluation) -> Verdict:
        """Does the best free k-set meet ``required`` (None: not judged)? A short reason, the free islands as detail.

        Fewer than k free GPUs passes: the GPU count is kube-scheduler's NodeResourcesFit
        call (it sees allocations before the agent's allocation does).
        """
        best = ev.placement
        if required is None or k < 2 or best is None or best.level <= required:
            return PASS if required is None else Verdict(required=required)
        groups = self.placer.islands_free(self.free_gpus(free_mask), required)
        sizes = sorted((len(g) for g in groups), reverse=True)
        words = level_words(required)
        if not sizes or sizes[0] < 2:
            detail = f"no two free GPUs are {words}"
        else:
            detail = f"the free GPUs {words} form groups of {'+'.join(str(s) for s in sizes)}"
        empty = self.placer.best_mask(self.all_mask, k)
        unresolvable = empty is None or empty.level > required
        if unresolvable:
            idle = "it has no set at all" if empty is None else f"its best {k}-GPU set is {describe_level(empty.level)}"
            detail += f"; even with every GPU free, {idle}"
        return Verdict(passes=False, unresolvable=unresolvable, reason=refusal(k, required, unresolvable),
                       required=required, detail=detail)

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
