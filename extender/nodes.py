"""What a Node offers: its decoded topology, free GPUs and locality labels.

Why a small immutable record (:class:`NodeFacts`) instead of the Node object:
the cached mode keeps one per node for thousands of nodes (memory), and the
request path must touch as little as possible per node (latency). Parsing is
memoised by annotation *string* (:class:`TopologyRegistry`), because identical
machines publish identical annotations: 5,000 nodes of one hardware type decode
one topology once, and share one :class:`~extender.evaluate.TopoContext`
(placer, NIC locality, memoised evaluations).

The agent's word on its own data is read too (``docs/labels.md``, "Status"): a node
whose ``{prefix}status`` is ``error``, or whose allocation ``ts`` is older than
``allocation_max_age_s``, is not scored on data we cannot trust: it fails open
(:attr:`NodeState.ERROR` / :attr:`NodeState.STALE`, with a reason for the log and
the fail-open metric). ``degraded`` is used as published on purpose: its topology
lists the GPUs that work (a lost GPU is left out) or the last good probe.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labeler.topology import allocation, labels
from labeler.topology.bytecache import ByteCache
from labeler.topology.errors import CodecError
from labeler.topology.model import Gpu, Nic, Topology

__all__ = [
    "REQUEST_DECODE_CHARS",
    "BudgetExceeded",
    "DecodeBudget",
    "NodeFacts",
    "NodeState",
    "TopologyRegistry",
    "broken",
    "facts_from_object",
    "facts_from_parts",
    "node_name",
    "wiring",
]


class NodeState(enum.Enum):
    """How much we know about a node."""

    NOT_OURS = "not-ours"  # no gputopo labels/annotation: non-GPU or not labelled yet → pass through
    NO_DATA = "no-data"  # ours, but topology/allocation missing or damaged → fail open
    ERROR = "error"  # the agent says status=error: its labels are not current → fail open
    STALE = "stale"  # the allocation is older than allocation_max_age_s (agent gone?) → fail open
    OK = "ok"


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """Everything the extender uses about one node (kept small: cached per node)."""

    name: str
    state: NodeState
    topo_id: int = -1
    topo: Topology | None = None
    free_mask: int = 0  # by GPU position in ``topo.gpus`` (the Placer's bit order)
    free_count: int = 0
    locality: tuple[str | None, ...] = ()  # values of the configured locality label keys, in order
    topology_class: str | None = None
    problem: str | None = None  # why NO_DATA, for logs and the fail-open metric label
    fail_reason: str | None = None  # the metric label: no_topology | undecodable_topology | ...
    estimated: bool = False  # free set includes our estimate for bound pods the agent has not seen
    #: (topo_id, free_mask): nodes with equal keys get equal answers; precomputed for the hot loop
    key: tuple[int, int] = field(default=(-1, 0), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.topo_id, self.free_mask))


class DecodeBudget:
    """How many characters of annotations one request may decode that no cache holds yet.

    Why: a stateless request carries every Node object; 64 MiB of distinct
    annotations would otherwise cost seconds of decoding and their results'
    memory in one request. Past the budget the remaining nodes fail open
    (``fail_reason="decode_budget"``); cached values cost nothing.
    """

    __slots__ = ("left",)

    def __init__(self, chars: int) -> None:
        self.left = chars

    def charge(self, chars: int) -> None:
        self.left -= chars
        if self.left < 0:
            raise BudgetExceeded("this request's decode budget is used up (too many distinct annotations)")


class BudgetExceeded(CodecError):
    """A request's :class:`DecodeBudget` ran out: the node fails open, its data is not judged damaged."""


#: per stateless request: characters of not-yet-cached annotations decoded (5,000 real nodes with
#: unique annotations are ~15 MB)
REQUEST_DECODE_CHARS = 32 << 20


def wiring(topo: Topology) -> Topology:
    """The part of a topology placement depends on: GPU indices and the link matrix.

    Names, bus ids, UUIDs, affinity and NIC device names differ between identical
    machines (every node's annotation is unique once UUIDs are in it), so the
    extender keeps only this: nodes wired alike share one value, one id and one
    :class:`~extender.evaluate.TopoContext`, and a node costs no more memory than
    its matrix.
    """
    return Topology(
        tuple(Gpu(g.index) for g in topo.gpus),
        tuple(Nic(f"NIC{i}") for i in range(len(topo.nics))),
        topo.links,
    )


def _wiring_bytes(topo: Topology) -> int:
    n = len(topo.gpus) + len(topo.nics)
    return 1_000 + n * (n * 8 + 120)


class TopologyRegistry:
    """Decoded annotations by string, as ``(wiring id, wiring)``; allocation states by string.

    Three caches, each bounded by estimated bytes and by entries
    (:class:`~labeler.topology.bytecache.ByteCache`): annotation text → wiring id
    (a 5,000-node cluster with unique annotations fits), wiring → id (one per
    kind of machine), allocation text → state (one per node). A wiring id is
    never reused, so memo keys that include it cannot alias after eviction.
    Thread-safe.
    """

    def __init__(
        self,
        max_entries: int = 1 << 16,
        max_allocations: int = 1 << 17,
        *,
        max_bytes: int = 64 << 20,
    ) -> None:
        self._by_text: ByteCache[str, tuple[int, Topology]] = ByteCache(max_bytes=max_bytes, max_entries=max_entries)
        self._wirings: ByteCache[Topology, tuple[int, Topology]] = ByteCache(max_bytes=max_bytes, max_entries=4096)
        # allocation strings are unique per node (they name pods), so this cache holds one per
        # node: sized for the largest clusters, so a warm stateless request decodes nothing
        self._alloc: ByteCache[str, allocation.AllocationState] = ByteCache(max_bytes=max_bytes,
                                                                            max_entries=max_allocations)
        self._next_id = 0
        self._lock = threading.Lock()

    def topology(self, text: str, prefix: str, budget: DecodeBudget | None = None) -> tuple[int, Topology]:
        """``(wiring id, wiring)`` for an annotation value; raises :class:`CodecError` when damaged."""
        hit = self._by_text.get(text)
        if hit is not None:
            return hit
        if budget is not None:
            budget.charge(len(text))
        topo = labels.decode_topology({prefix + labels.ANNOTATION_TOPOLOGY: text}, prefix=prefix)
        if topo is None:  # pragma: no cover - decode_topology only returns None when absent
            raise CodecError("empty topology annotation")
        shape = wiring(topo)
        entry = self._wirings.get(shape)
        if entry is None:
            with self._lock:
                entry = (self._next_id, shape)
                self._next_id += 1
            entry = self._wirings.put(shape, entry, _wiring_bytes(shape))
        return self._by_text.put(text, entry, len(text) + 200)

    def allocation(self, text: str, budget: DecodeBudget | None = None) -> allocation.AllocationState:
        hit = self._alloc.get(text)
        if hit is not None:
            return hit
        if budget is not None:
            budget.charge(len(text))
        state = allocation.decode(text)
        return self._alloc.put(text, state, len(text) + 300 + 100 * (len(state.free) + len(state.used)))

    def __len__(self) -> int:
        return len(self._by_text)

    @property
    def bytes(self) -> int:
        """Estimated bytes held by the three caches."""
        return self._by_text.bytes + self._wirings.bytes + self._alloc.bytes


def _str_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def is_ours(node_labels: Mapping[str, Any], annotations: Mapping[str, Any], prefix: str) -> bool:
    """Does the labeler describe this node (any of our schema/count labels or the annotation)?"""
    return (
        prefix + labels.SCHEMA in node_labels
        or prefix + labels.GPU_COUNT in node_labels
        or prefix + labels.ANNOTATION_TOPOLOGY in annotations
    )


def facts_from_parts(
    name: str,
    node_labels: Mapping[str, Any],
    annotations: Mapping[str, Any],
    *,
    prefix: str,
    locality_keys: Sequence[str],
    registry: TopologyRegistry,
    used_extra: Sequence[tuple[str, int]] = (),
    allocation_max_age_s: float = 0.0,
    now: float | None = None,
    budget: DecodeBudget | None = None,
) -> NodeFacts:
    """Build :class:`NodeFacts` from a node's labels and annotations.

    ``used_extra``: ``(pod key, gpus)`` of pods bound to the node but not yet in
    the agent's allocation annotation (cached mode); their GPUs are taken from
    the free set with the Placer's best choice (see :func:`apply_pending`).
    ``allocation_max_age_s`` > 0: an allocation whose ``ts`` is older than that at
    ``now`` (unix seconds, default: the wall clock) makes the node :attr:`NodeState.STALE`.
    """
    locality = tuple(
        (v if isinstance(v := node_labels.get(k), str) else None) for k in locality_keys
    )
    tclass = node_labels.get(prefix + labels.TOPOLOGY_CLASS)
    tclass = tclass if isinstance(tclass, str) else None
    if not is_ours(node_labels, annotations, prefix):
        return NodeFacts(name, NodeState.NOT_OURS, locality=locality, topology_class=tclass)
    status = node_labels.get(prefix + labels.STATUS)
    if status == labels.Status.ERROR.value:
        return NodeFacts(name, NodeState.ERROR, locality=locality, topology_class=tclass,
                         problem=f"{prefix}status=error: the agent cannot describe this node now",
                         fail_reason="status_error")
    if status is not None and status not in (labels.Status.OK.value, labels.Status.DEGRADED.value):
        return NodeFacts(name, NodeState.NO_DATA, locality=locality, topology_class=tclass,
                         problem=f"{prefix}status={str(status)[:63]!r} is not ok|degraded|error",
                         fail_reason="undecodable_status")
    text = annotations.get(prefix + labels.ANNOTATION_TOPOLOGY)
    if not isinstance(text, str):
        status = node_labels.get(prefix + labels.STATUS)
        return NodeFacts(
            name,
            NodeState.NO_DATA,
            locality=locality,
            topology_class=tclass,
            problem=f"labelled (status={status}) but no {prefix}topology annotation",
            fail_reason="no_topology",
        )
    try:
        topo_id, topo = registry.topology(text, prefix, budget)
    except CodecError as err:
        return NodeFacts(
            name,
            NodeState.NO_DATA,
            locality=locality,
            topology_class=tclass,
            problem=f"undecodable {prefix}topology annotation: {err}",
            fail_reason="decode_budget" if isinstance(err, BudgetExceeded) else "undecodable_topology",
        )
    all_mask = (1 << len(topo.gpus)) - 1
    alloc_text = annotations.get(prefix + allocation.ANNOTATION_SUFFIX)
    known = {g.index: p for p, g in enumerate(topo.gpus)}
    if isinstance(alloc_text, str):
        try:
            state = registry.allocation(alloc_text, budget)
        except CodecError as err:
            return NodeFacts(
                name,
                NodeState.NO_DATA,
                topo_id=topo_id,
                topo=topo,
                locality=locality,
                topology_class=tclass,
                problem=f"undecodable {prefix}allocation annotation: {err}",
                fail_reason="decode_budget" if isinstance(err, BudgetExceeded) else "undecodable_allocation",
            )
        if allocation_max_age_s > 0 and state.observed_at is not None:
            age = (time.time() if now is None else now) - state.observed_at
            if age > allocation_max_age_s:
                return NodeFacts(
                    name,
                    NodeState.STALE,
                    topo_id=topo_id,
                    topo=topo,
                    locality=locality,
                    topology_class=tclass,
                    problem=f"allocation is {age:.0f}s old (allocation_max_age_seconds {allocation_max_age_s:g}): "
                    "the agent has not confirmed it",
                    fail_reason="stale_allocation",
                )
        free_mask = 0
        for g in state.free:
            if g in known:
                free_mask |= 1 << known[g]
        seen = set(state.used.values())
    else:
        free_mask, seen = all_mask, set()  # agent has not published yet: assume all free (estimate)
    pending = [(key, k) for key, k in used_extra if key not in seen]
    estimated = bool(pending)
    if pending:
        free_mask = apply_pending(topo, free_mask, [k for _, k in pending])
    return NodeFacts(
        name,
        NodeState.OK,
        topo_id=topo_id,
        topo=topo,
        free_mask=free_mask,
        free_count=free_mask.bit_count(),
        locality=locality,
        topology_class=tclass,
        estimated=estimated,
    )


def apply_pending(topo: Topology, free_mask: int, requests: Sequence[int]) -> int:
    """Remove GPUs for pods the agent has not reported yet: an **estimate**.

    We assume the device plugin gives each pod the best set the Placer would
    choose (NVIDIA's device plugin asks go-gpuallocator for its best-connected
    set, which agrees with the Placer on the common boards), in the order given
    (oldest pod first). When fewer GPUs are free than a pod asks for, all of
    them are taken. The agent's next annotation replaces the estimate.
    """
    from labeler.topology import placement  # local: keeps this module import-light

    placer = placement.placer_for(topo)
    for k in requests:
        if k <= 0:
            continue
        chosen = placer.best_mask(free_mask, k)
        if chosen is None:
            return 0
        free_mask &= ~placer.mask(chosen.gpus)
    return free_mask


def facts_from_object(
    node: Mapping[str, Any],
    *,
    prefix: str,
    locality_keys: Sequence[str],
    registry: TopologyRegistry,
    allocation_max_age_s: float = 0.0,
    now: float | None = None,
    budget: DecodeBudget | None = None,
) -> NodeFacts:
    """:class:`NodeFacts` from a full ``v1.Node`` dict (stateless mode)."""
    meta = _str_map(node.get("metadata"))
    return facts_from_parts(
        node_name(node),
        _str_map(meta.get("labels")),
        _str_map(meta.get("annotations")),
        prefix=prefix,
        locality_keys=locality_keys,
        registry=registry,
        allocation_max_age_s=allocation_max_age_s,
        now=now,
        budget=budget,
    )


def node_name(node: Mapping[str, Any]) -> str:
    """``metadata.name`` of a Node dict when it is a string, else ``""`` (never ``str()`` of junk)."""
    name = _str_map(node.get("metadata")).get("name")
    return name if isinstance(name, str) else ""


def broken(name: str, err: BaseException) -> NodeFacts:
    """Facts for a node whose own data made our code fail: it fails open, alone (reason ``internal``).

    The per-node safety net of the service and the cache: one bad object is that
    object's problem, never the request's or the informer's.
    """
    return NodeFacts(name, NodeState.NO_DATA, problem=f"internal error on this node: {type(err).__name__}",
                     fail_reason="internal")
