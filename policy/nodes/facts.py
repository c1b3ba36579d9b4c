"""What a Node offers a placement decision: its state, wiring, free GPUs and locality labels.

Why a small immutable record (:class:`NodeFacts`) instead of the Node object:
the extender's cached mode keeps one per node for thousands of nodes (memory),
and the request path must touch as little as possible per node (latency).
Which nodes are judged at all follows :mod:`policy.nodes.state` (the one
definition of ours / no data / error / stale, shared with the cluster audit);
decoding is memoised by annotation string in
:class:`~policy.nodes.decode.TopologyRegistry`, so nodes wired alike share one
wiring id, and nodes with equal :attr:`NodeFacts.key` get equal decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labeler.topology import labels, placement
from labeler.topology.model import Topology
from policy.nodes.decode import DecodeBudget, TopologyRegistry
from policy.nodes.state import NodeState, classify

__all__ = [
    "NodeFacts",
    "Tally",
    "apply_pending",
    "broken",
    "facts_from_object",
    "facts_from_parts",
    "node_name",
    "tally",
]


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """Everything a placement decision uses about one node (kept small: cached per node)."""

    name: str
    state: NodeState
    topo_id: int = -1  # the wiring id (TopologyRegistry): equal ids, equal wiring
    topo: Topology | None = None  # the wiring (policy.nodes.decode.wiring), not the published topology
    free_mask: int = 0  # by GPU position in ``topo.gpus`` (the Placer's bit order)
    locality: tuple[str | None, ...] = ()  # values of the configured locality label keys, in order
    topology_class: str | None = None
    problem: str | None = None  # why NO_DATA, for logs and the fail-open metric label
    fail_reason: str | None = None  # the metric label: no_topology | undecodable_topology | ...
    estimated: bool = False  # free set includes our estimate for bound pods the agent has not seen
    #: (topo_id, free_mask): nodes with equal keys get equal answers; precomputed for the hot loop
    key: tuple[int, int] = field(default=(-1, 0), compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", (self.topo_id, self.free_mask))

    @property
    def free_count(self) -> int:
        """Free GPUs: the bits of :attr:`free_mask` (derived, so it cannot drift from the mask)."""
        return self.free_mask.bit_count()


def _str_map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def facts_from_parts(
    name: str,
    node_labels: Mapping[str, Any],
    annotations: Mapping[str, Any],
    *,
    prefix: str,
    locality_keys: Sequence[str],
    registry: TopologyRegistry,
    now: float,
    used_extra: Sequence[tuple[str, int]] = (),
    allocation_max_age_s: float = 0.0,
    budget: DecodeBudget | None = None,
    allocation_configmap: str | None = None,
) -> NodeFacts:
    """Build :class:`NodeFacts` from a node's labels and annotations (rules: :func:`~policy.nodes.state.classify`).

    ``used_extra``: ``(pod key, gpus)`` of pods bound to the node but not yet in
    the agent's allocation (cached mode); their GPUs are taken from the free set
    with the Placer's best choice (see :func:`apply_pending`).
    ``allocation_configmap``: the value of the node's allocation ConfigMap, which
    wins over the ``{prefix}allocation`` annotation. ``allocation_max_age_s`` > 0:
    an allocation whose ``ts`` is older than that at ``now`` (unix seconds: the caller's
    clock, an adapter's ``time.time()``; this layer reads none) makes the node :attr:`NodeState.STALE`.
    """
    locality = tuple(
        (v if isinstance(v := node_labels.get(k), str) else None) for k in locality_keys
    )
    tclass = node_labels.get(prefix + labels.TOPOLOGY_CLASS)
    tclass = tclass if isinstance(tclass, str) else None
    r = classify(
        node_labels,
        annotations,
        prefix=prefix,
        topology=lambda text: registry.topology(text, prefix, budget),
        allocation_decoder=lambda text: registry.allocation(text, budget),
        allocation_configmap=allocation_configmap,
        allocation_max_age_s=allocation_max_age_s,
        now=now,
    )
    topo_id, topo = r.topology if r.topology is not None else (-1, None)
    if r.state is not NodeState.OK:
        p = r.problem
        return NodeFacts(name, r.state, topo_id=topo_id, topo=topo, locality=locality, topology_class=tclass,
                         problem=None if p is None else p.message, fail_reason=None if p is None else p.reason)
    assert topo is not None
    state = r.allocation
    if state is not None:
        known = {g.index: p for p, g in enumerate(topo.gpus)}
        free_mask = 0
        for g in state.free:
            if g in known:
                free_mask |= 1 << known[g]
        seen = set(state.used.values())
    else:
        free_mask, seen = (1 << len(topo.gpus)) - 1, set()  # agent has not published yet: assume all free
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
    them are taken. The agent's next allocation replaces the estimate.
    """
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
    now: float,
    allocation_max_age_s: float = 0.0,
    budget: DecodeBudget | None = None,
) -> NodeFacts:
    """:class:`NodeFacts` from a full ``v1.Node`` dict (the extender's stateless mode)."""
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

    The per-node safety net of the extender's service and cache: one bad object is
    that object's problem, never the request's or the informer's.
    """
    return NodeFacts(name, NodeState.NO_DATA, problem=f"internal error on this node: {type(err).__name__}",
                     fail_reason="internal")


@dataclass(frozen=True, slots=True)
class Tally:
    """Nodes of one request that are not judged: not ours, unknown (no facts), and failing open by reason."""

    not_ours: int
    unknown: int
    fail_open: dict[str, list[str]]  # fail_reason → node names

    @property
    def fail_open_count(self) -> int:
        return sum(len(v) for v in self.fail_open.values())


def tally(facts: Sequence[NodeFacts | None]) -> Tally:
    """Count the nodes a decision passes without judging them (for the adapter's logs and metrics)."""
    not_ours = unknown = 0
    bad: dict[str, list[str]] = {}
    ok, not_ours_state = NodeState.OK, NodeState.NOT_OURS
    for f in facts:
        if f is None:
            unknown += 1
        elif f.state is not ok:
            if f.state is not_ours_state:
                not_ours += 1
            else:
                bad.setdefault(f.fail_reason or "no_data", []).append(f.name)
    return Tally(not_ours, unknown, bad)
