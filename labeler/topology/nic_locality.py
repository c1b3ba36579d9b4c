"""NIC locality: which NIC is closest to each GPU (GPUDirect RDMA).

For multi-node NCCL the path from a GPU to its NIC matters as much as GPU↔GPU
links: at PIX/PXB the NIC reads GPU memory through the PCIe switch (GPUDirect
RDMA at full rate); at PHB and beyond traffic crosses the CPU's root complex
and NCCL (by default, ``NCCL_NET_GDR_LEVEL``) falls back to staging in host memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology

__all__ = ["GPUDIRECT_MAX_LEVEL", "GpuNicLocality", "compute", "gpudirect", "locality_class"]

#: The worst GPU↔NIC level at which we call a GPU "GPUDirect RDMA capable".
GPUDIRECT_MAX_LEVEL = LinkLevel.PXB


@dataclass(frozen=True, slots=True)
class GpuNicLocality:
    """The best level from one GPU to any NIC, and the NICs at that level (sorted names)."""

    level: LinkLevel | None
    nics: tuple[str, ...]


def compute(topo: Topology) -> dict[int, GpuNicLocality]:
    """Per GPU index, its nearest NICs. Empty when the node lists no NICs.

    A GPU whose links to every NIC are unknown gets ``level=None``.
    """
    if not topo.nics:
        return {}
    out: dict[int, GpuNicLocality] = {}
    for gpu in topo.gpus:
        best: LinkLevel | None = None
        names: list[str] = []
        for pos, nic in enumerate(topo.nics):
            link = topo.gpu_nic_link(gpu.index, pos)
            if link is None:
                continue
            if best is None or link.level < best:
                best, names = link.level, [nic.name]
            elif link.level == best:
                names.append(nic.name)
        out[gpu.index] = GpuNicLocality(best, tuple(sorted(names)))
    return out


def locality_class(topo: Topology) -> LinkLevel | None:
    """The worst, over GPUs, of each GPU's best NIC level; ``None`` without NICs.

    A node is only as good for multi-node jobs as its worst-placed GPU, because
    a job's ring waits for its slowest rank.
    """
    per_gpu = compute(topo)
    if not per_gpu:
        return None
    levels = [loc.level for loc in per_gpu.values()]
    if any(level is None for level in levels):
        return None
    return max(level for level in levels if level is not None)


def gpudirect(topo: Topology) -> bool:
    """True when every GPU has a NIC at PXB or better."""
    worst = locality_class(topo)
    return worst is not None and worst <= GPUDIRECT_MAX_LEVEL
