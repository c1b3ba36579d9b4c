"""Predicted NCCL ring bandwidth of a GPU set: the ONE place the simulator turns GPU sets into GB/s.

Why one function: everything in the simulator that reports bandwidth calls
:func:`ring_busbw_gbps`, which is the project's bandwidth model,
:func:`labeler.topology.busbw.busbw_gbps` (the one table with its sources,
``docs/bandwidth.md``): the predicted all-reduce ring busbw of exactly this set, from
NVLink generation and link count, PCIe generation and width, P2P, host-memory and
socket paths, unknown facts at conservative values.

:func:`ring_bottleneck` is the worst link of the best ring through exactly this set
(:meth:`labeler.topology.placement.Placer.best` with the set as the free GPUs), which
the simulator uses for its link-level metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

from labeler.topology import busbw, placement
from labeler.topology.links import Link
from labeler.topology.model import Topology

__all__ = ["ring_bottleneck", "ring_busbw_gbps"]


def ring_bottleneck(topo: Topology, gpu_indices: Sequence[int]) -> Link | None:
    """The worst hop of the best ring through exactly these GPUs (None for fewer than 2)."""
    if len(gpu_indices) < 2:
        return None
    best = placement.placer_for(topo).best(gpu_indices, len(gpu_indices))
    return None if best is None else best.bottleneck


def ring_busbw_gbps(topo: Topology, gpu_indices: Sequence[int]) -> float | None:
    """Predicted ring bus bandwidth in GB/s (None for fewer than 2 GPUs: no ring)."""
    return busbw.busbw_gbps(topo, gpu_indices)
