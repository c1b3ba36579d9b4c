"""Predicted NCCL ring bandwidth of a GPU set: the ONE place the simulator turns GPU sets into GB/s.

Why one function: everything in the simulator that reports bandwidth calls
:func:`ring_busbw_gbps`, which is the project's bandwidth model,
:func:`labeler.topology.busbw.busbw_gbps` (the one table with its sources,
``docs/bandwidth.md``): the predicted all-reduce ring busbw of exactly this set, from
NVLink generation and link count, PCIe generation and width, P2P, host-memory and
socket paths, unknown facts at conservative values.

:func:`ring_bottleneck` is the worst link of the best ring through exactly this set
(:meth:`labeler.topology.placement.Placer.best` with the set as the free GPUs), which
the simulator uses for its link-level metrics. :func:`best_free_busbw_gbps` is the
highest prediction of any free k-set of a node (every subset of an up-to-8-GPU node;
:func:`labeler.topology.set_search.search` beyond): what the bandwidth-aligned and the
device-plugin-gap metrics compare against. It is a definition, not the objective: the
metrics do not call the policy layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from labeler.topology import busbw, placement, set_search
from labeler.topology.links import Link
from labeler.topology.model import Topology

__all__ = ["best_free_busbw_gbps", "ring_bottleneck", "ring_busbw_gbps"]


def ring_bottleneck(topo: Topology, gpu_indices: Sequence[int]) -> Link | None:
    """The worst hop of the best ring through exactly these GPUs (None for fewer than 2)."""
    if len(gpu_indices) < 2:
        return None
    best = placement.placer_for(topo).best(gpu_indices, len(gpu_indices))
    return None if best is None else best.bottleneck


def ring_busbw_gbps(topo: Topology, gpu_indices: Sequence[int]) -> float | None:
    """Predicted ring bus bandwidth in GB/s (None for fewer than 2 GPUs: no ring)."""
    return busbw.busbw_gbps(topo, gpu_indices)


def best_free_busbw_gbps(topo: Topology, free_mask: int, k: int) -> float | None:
    """The highest predicted ring busbw of any k-set of the free GPUs (positions in ``free_mask``); None if < k free."""
    model = busbw.model_for(topo)

    def value(mask: int) -> tuple[float]:
        q = model.predict_mask(mask)
        return (0.0 if q is None else q.gbps,)

    start = None
    pl = placement.placer_for(topo)
    if len(topo.gpus) > 8 and free_mask.bit_count() >= k:
        best = pl.best_mask(free_mask, k)
        start = None if best is None else pl.mask(best.gpus)
    found = set_search.search(free_mask, k, value, start)
    return None if found is None else found.value[0]
