"""Decoding a node's annotations once: topology text → (wiring id, wiring), allocation text → state.

Why memoise by annotation *string*: identical machines publish identical
annotations, so 5,000 nodes of one hardware type decode one topology once and
share one wiring id, one placement context and one set of group decisions
(:mod:`policy.decision`). Why keep only the *wiring* (:func:`wiring`): names, bus
ids, UUIDs, CPU affinity and NIC device names differ between identical machines
(every node's annotation is unique once UUIDs are in it); what a placement
decision reads is the link matrix and the facts the bandwidth model reads, which
identical machines share.

Every cache here is bounded by estimated bytes and by entries
(:class:`~labeler.topology.bytecache.ByteCache`). A stateless request may decode
at most :data:`REQUEST_DECODE_CHARS` characters that no cache holds yet
(:class:`DecodeBudget`); past it the remaining nodes fail open.
"""

from __future__ import annotations

import threading

from labeler.topology import allocation, labels
from labeler.topology.bytecache import ByteCache
from labeler.topology.errors import CodecError
from labeler.topology.model import Gpu, Nic, Topology
from policy.nodes.state import BudgetExceeded

__all__ = ["REQUEST_DECODE_CHARS", "BudgetExceeded", "DecodeBudget", "TopologyRegistry", "wiring"]


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


#: per stateless request: characters of not-yet-cached annotations decoded (5,000 real nodes with
#: unique annotations are ~15 MB)
REQUEST_DECODE_CHARS = 32 << 20


def wiring(topo: Topology) -> Topology:
    """The part of a topology placement and bandwidth depend on, without what differs per machine.

    Kept: GPU indices, the link matrix, the P2P matrix, and the facts the bandwidth
    model reads (:mod:`labeler.topology.bandwidth`: architecture, compute capability,
    NVLink version, PCIe link, the GPU memory's NUMA node (Grace: NVLink-C2C to the CPU);
    NIC link rate). Dropped: names, bus ids, UUIDs, CPU/NUMA
    affinity, MIG mode and NIC device names (NICs become ``NIC0``, ``NIC1``... by
    position). Nodes wired alike share one value, one id and one
    :class:`~policy.decision.evaluation.TopoContext`, and a node costs no more memory
    than its matrix.
    """
    return Topology(
        tuple(Gpu(g.index, gpu_numa_id=g.gpu_numa_id, arch=g.arch, cc=g.cc, nvlink_version=g.nvlink_version,
                  pcie=g.pcie) for g in topo.gpus),
        tuple(Nic(f"NIC{i}", rate_mbps=n.rate_mbps) for i, n in enumerate(topo.nics)),
        topo.links,
        p2p=topo.p2p,
    )


def _wiring_bytes(topo: Topology) -> int:
    n = len(topo.gpus) + len(topo.nics)
    return 1_000 + n * (n * 8 + 120) + (len(topo.gpus) ** 2 * 8 if topo.p2p else 0)


class TopologyRegistry:
    """Decoded annotations by string, as ``(wiring id, wiring)``; allocation states by string.

    Three caches, each bounded by estimated bytes and by entries
    (:class:`~labeler.topology.bytecache.ByteCache`): annotation text → wiring id
    (a 5,000-node cluster with unique annotations fits), wiring → id (one per
    kind of machine), allocation text → state (one per node). A wiring id is
    never reused, so decision keys that include it cannot alias after eviction.
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
        return self._by_text.put(text, self.wiring_id(topo), len(text) + 200)

    def wiring_id(self, topo: Topology) -> tuple[int, Topology]:
        """``(id, wiring)`` of a decoded topology: equal wirings get one id (the simulator's direct path)."""
        shape = wiring(topo)
        entry = self._wirings.get(shape)
        if entry is None:
            with self._lock:
                entry = (self._next_id, shape)
                self._next_id += 1
            entry = self._wirings.put(shape, entry, _wiring_bytes(shape))
        return entry

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
