"""The audit report: everything gputopo concludes about one topology, as data.

Why a pure builder: ``gputopo audit`` prints it for people (rich tables) and as
JSON for machines, and tests check the data, not the rendering. The JSON keys
``islands``, ``gpu_nic``, ``labels`` and ``annotations`` are a stable contract
(see ``docs/audit.md``).
"""

from __future__ import annotations

from typing import Any

from labeler.topology import islands, labels, nic_locality, serialize
from labeler.topology.links import ISLAND_LEVELS, LinkLevel
from labeler.topology.model import Topology
from labeler.topology.placement import placer_for

__all__ = ["build", "findings"]


def _gpu_set(gpus: list[int]) -> str:
    return "GPU" + ",".join(str(g) for g in gpus)


def findings(topo: Topology) -> list[str]:
    """Warnings a platform engineer should read before trusting this node for multi-GPU jobs."""
    out: list[str] = list(topo.warnings)
    numa_islands = islands.components(topo, LinkLevel.NODE)
    for i, a in enumerate(numa_islands):
        for b in numa_islands[i + 1 :]:
            sys_pairs = [
                (x, y)
                for x in a
                for y in b
                if (link := topo.gpu_link(x, y)) is not None and link.level is LinkLevel.SYS
            ]
            if not sys_pairs:
                continue
            if len(a) == 1 and len(b) == 1:
                out.append(f"GPU{a[0]}↔GPU{b[0]} cross sockets (SYS)")
            else:
                out.append(
                    f"{_gpu_set(a)} ↔ {_gpu_set(b)} cross sockets (SYS): a ring spanning both runs at "
                    "socket-interconnect speed"
                )
    gpu_numa = {g.numa_node for g in topo.gpus}
    pairs = [link for _, _, link in topo.gpu_pairs()]
    all_sys = all(p is not None and p.level is LinkLevel.SYS for p in pairs)
    if len(topo.gpus) > 1 and all_sys and len(gpu_numa) == 1 and None not in gpu_numa:
        out.append(
            "every GPU pair is SYS although all GPUs sit on one NUMA node: probably a VM or a host "
            "that hides the PCIe layout; P2P is unlikely"
        )
    unknown = sum(1 for p in pairs if p is None)
    if unknown:
        out.append(f"{unknown} GPU pair link(s) unknown (damaged or truncated input)")
    for island in islands.components(topo, LinkLevel.NVLINK):
        if len(island) < 3:
            continue
        missing = [
            (x, y)
            for x in island
            for y in island
            if x < y and (lk := topo.gpu_link(x, y)) is not None and lk.level is not LinkLevel.NVLINK
        ]
        if missing:
            out.append(
                f"NVLink island {_gpu_set(island)} is not all-to-all ({len(missing)} pairs without NVLink, e.g. "
                f"GPU{missing[0][0]}↔GPU{missing[0][1]}): only some GPU sets ring over NVLink"
            )
    loc = nic_locality.compute(topo)
    far = [g for g, gl in loc.items() if gl.level is not None and gl.level > nic_locality.GPUDIRECT_MAX_LEVEL]
    if far and len(far) < len(loc):
        out.append(f"{_gpu_set(far)} have no NIC within their PCIe switch (no GPUDirect RDMA at PXB or better)")
    elif far:
        out.append("no GPU has a NIC within its PCIe switch: multi-node traffic goes through host memory")
    for pos, nic in enumerate(topo.nics):
        levels = [topo.gpu_nic_link(g.index, pos) for g in topo.gpus]
        if topo.gpus and all(lk is not None and lk.level is LinkLevel.SYS for lk in levels):
            out.append(f"NIC {nic.name} is SYS to every GPU")
    return out


def build(
    topo: Topology, *, prefix: str = labels.DEFAULT_PREFIX, status: labels.Status = labels.Status.OK
) -> dict[str, Any]:
    """The full audit as a JSON-ready dict."""
    isl = islands.compute(topo)
    loc = nic_locality.compute(topo)
    placer = placer_for(topo)
    best: dict[str, Any] = {}
    for k in range(1, len(topo.gpus) + 1):
        placement = placer.best(topo.gpu_indices, k)
        if placement is not None:
            best[str(k)] = {
                "gpus": list(placement.gpus),
                "ring": list(placement.ring),
                "bottleneck": placement.bottleneck.token,
            }
    return {
        "source": topo.source,
        "gpu_count": len(topo.gpus),
        "nic_count": len(topo.nics),
        "islands": {level.slug: isl[level] for level in ISLAND_LEVELS},
        "gpu_nic": {
            str(g): {"level": None if gl.level is None else gl.level.token, "nics": list(gl.nics)}
            for g, gl in sorted(loc.items())
        },
        "best_placement": best,
        "warnings": findings(topo),
        "labels": labels.encode(topo, prefix=prefix, status=status),
        "annotations": labels.encode_annotations(topo, prefix=prefix),
        "topology": serialize.to_dict(topo),
    }
