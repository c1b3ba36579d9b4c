"""THE one place placement decisions are cached, keyed so that identically wired nodes share them.

What a node gets for a pod depends only on three things (the extender's answer
per node is a pure function of them, tested in ``tests/policy/test_decision.py``):

- its **wiring** id (:class:`~policy.nodes.decode.TopologyRegistry`: equal link
  matrices and bandwidth facts, whatever the node's name, UUIDs or affinity),
- its **free set** (a bitmask by GPU position), and
- the pod's **shape** (:class:`Shape`: GPUs, kind, ``required`` and its level).

So :class:`DecisionCache` keeps one :class:`GroupDecision` per :data:`GroupKey`
``(wiring id, free mask, *shape.key)``, a flat tuple of ints (hashed in C: a
5,000-node request with ~1,250 distinct groups looks each up once). Next to it,
the per-wiring :class:`~policy.decision.evaluation.TopoContext` objects (placer,
GPUDirect mask) in :class:`ContextRegistry`. Both are bounded by estimated bytes
and by entries (:class:`~labeler.topology.bytecache.ByteCache`, insertion-ordered,
lock-free reads). A wiring id is never reused, so a key cannot alias after
eviction; an evicted decision is recomputed, identically.

What is *not* cached here: decoding (:mod:`policy.nodes.decode`, by annotation
string), the placer's and the bandwidth model's own memos (topology core), and
per-node terms (job affinity), which are memoised per request only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from labeler.topology.bytecache import ByteCache
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology
from policy.decision.evaluation import Evaluation, TopoContext, Verdict
from policy.scoring.base import GroupValue
from policy.workload import Intent, Kind, Workload

__all__ = ["ContextRegistry", "DecisionCache", "GroupDecision", "GroupKey", "Shape", "group_key"]

#: ``(wiring id, free mask, gpus, kind code, required, level code)``
GroupKey = tuple[int, ...]

_KIND_CODE: dict[Kind, int] = {k: i for i, k in enumerate(Kind)}


@dataclass(frozen=True, slots=True)
class Shape:
    """The part of a pod a group decision depends on.

    ``required``: the filter judges the level (``placement: required`` and at least 2 GPUs);
    ``max_level``: the level asked (kept only when required; ``None`` then means the best
    level any empty node of the wiring offers). ``key``: the same as a tuple of ints.
    """

    gpus: int
    kind: Kind
    required: bool = False
    max_level: LinkLevel | None = None
    key: tuple[int, int, int, int] = field(default=(0, 0, 0, 0), compare=False)

    def __post_init__(self) -> None:
        level = -1 if self.max_level is None else int(self.max_level)
        object.__setattr__(self, "key", (self.gpus, _KIND_CODE[self.kind], int(self.required), level))

    @classmethod
    def of(cls, w: Workload) -> Shape:
        required = w.intent is Intent.REQUIRED and w.gpus >= 2
        return cls(w.gpus, w.kind, required, w.max_level if required else None)


def group_key(topo_id: int, free_mask: int, shape: Shape) -> GroupKey:
    return (topo_id, free_mask, *shape.key)  # what the hot loops build as `facts.key + shape.key`


@dataclass(frozen=True, slots=True)
class GroupDecision:
    """What every node of one group gets for one pod shape.

    ``evaluation``: the Placer's best free k-set (by link level) and the facts the filter
    reads; ``verdict``: the filter's answer (:data:`~policy.decision.evaluation.PASS` unless
    the shape is ``required``); ``group``: the node-independent part of the score
    (:class:`~policy.scoring.base.GroupValue`: the set scored, chosen by predicted bandwidth,
    its value and the island penalty). The score itself depends on the request's other
    candidates (:meth:`policy.decision.decide.Decider.scores`).
    """

    evaluation: Evaluation
    verdict: Verdict
    group: GroupValue

    def cost_bytes(self) -> int:
        """Estimated bytes of this entry and its key in the cache.

        Conservative by design (``tests/policy/test_decision.py`` checks the estimate stays above
        what tracemalloc measures for stored decisions).
        """
        ev = self.evaluation
        gpus = 0 if ev.placement is None else len(ev.placement.gpus)
        best = self.group.best
        chosen = 0 if best is None else 250 + 32 * len(best.gpus)
        v = self.verdict
        reason = (0 if v.reason is None else len(v.reason) + 50) + (0 if v.detail is None else len(v.detail) + 50)
        return 900 + 32 * gpus + 200 + chosen + reason


class ContextRegistry:
    """:class:`TopoContext` per wiring id, bounded by estimated bytes as well as by entries.

    One context per kind of machine in a real cluster, so the bound only bites on
    hostile input (a different wiring per node).
    """

    def __init__(self, max_entries: int = 512, *, max_bytes: int = 256 << 20) -> None:
        self._by_id: ByteCache[int, TopoContext] = ByteCache(max_bytes=max_bytes, max_entries=max_entries)

    def get(self, topo_id: int, topo: Topology) -> TopoContext:
        ctx = self._by_id.get(topo_id)
        if ctx is not None:
            return ctx
        ctx = TopoContext(topo)
        return self._by_id.put(topo_id, ctx, ctx.cost_bytes())

    @property
    def bytes(self) -> int:
        return self._by_id.bytes

    def __len__(self) -> int:
        return len(self._by_id)


class DecisionCache:
    """Group decisions by :data:`GroupKey` and the per-wiring contexts they are computed with (thread-safe).

    Defaults: 64 MiB and 65,536 group decisions (a 5,000-node cluster of six machine
    kinds with random allocations holds ~1,250 groups per pod shape), 256 MiB and 512
    wiring contexts.
    """

    def __init__(self, *, max_bytes: int = 64 << 20, max_entries: int = 1 << 16,
                 contexts: ContextRegistry | None = None) -> None:
        self.contexts = contexts if contexts is not None else ContextRegistry()
        self._groups: ByteCache[GroupKey, GroupDecision] = ByteCache(max_bytes=max_bytes, max_entries=max_entries)
        #: the decision cached for a key, or None (the store's own lookup: one call on the hot path)
        self.get: Callable[[GroupKey], GroupDecision | None] = self._groups.get

    def put(self, key: GroupKey, decision: GroupDecision) -> GroupDecision:
        """Keep ``decision`` (unless the budget is smaller than it); return what the cache holds for ``key``."""
        return self._groups.put(key, decision, decision.cost_bytes())

    def clear(self) -> None:
        self._groups.clear()

    @property
    def bytes(self) -> int:
        """Estimated bytes of the group decisions (the contexts: ``contexts.bytes``)."""
        return self._groups.bytes

    def __len__(self) -> int:
        return len(self._groups)
