"""Predicted NCCL ring bandwidth of a GPU set: the ONE place the simulator turns links into GB/s.

Why one function: the project's bandwidth model is today the per-level table
:data:`labeler.topology.links.LEVEL_BANDWIDTH_GBPS` (``Link.bandwidth_gbps``,
sources in ``shared/research/nccl-bandwidth.md``); a physical model replaces it
in the placement-objective issue. Everything in the simulator that reports
bandwidth calls :func:`ring_busbw_gbps`, so swapping the model is one edit here.

A ring's speed is set by its slowest hop (NCCL), so the prediction is the
bandwidth of the bottleneck link of the best ring through exactly this set
(:meth:`labeler.topology.placement.Placer.best` with the set as the free GPUs).
"""

from __future__ import annotations

from collections.abc import Sequence

from labeler.topology import placement
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
    link = ring_bottleneck(topo, gpu_indices)
    return None if link is None else link.bandwidth_gbps
