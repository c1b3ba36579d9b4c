"""The audit report: everything gputopo concludes about one topology, as data.

Why a pure builder: ``gputopo audit`` prints it for people (rich tables) and as
JSON for machines, and tests check the data, not the rendering. The JSON keys
``islands``, ``numa``, ``gpu_nic``, ``labels``, ``annotations``, ``warnings``,
``info`` and ``findings`` are a stable contract (see ``docs/audit.md``).

Findings are grouped **per cause**: one line per pair of GPU groups (NUMA groups,
P2P islands), never one per GPU pair, so an 8-GPU all-SYS box says two things,
not 28. "Cross NUMA nodes" is said only where the GPUs' NUMA affinity differs;
SYS *inside* one NUMA node is its own finding (a socket split into NPS/SNC
domains, a VM that hides the PCIe tree, P2P/ACS settings).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from labeler.topology import islands, labels, nic_locality, numa, serialize
from labeler.topology.findings import Finding, Severity
from labeler.topology.links import ISLAND_LEVELS, LinkLevel
from labeler.topology.model import Topology
from labeler.topology.placement import placer_for

__all__ = ["build", "findings", "gpu_set"]

WARN, INFO = Severity.WARNING, Severity.INFO


def gpu_set(gpus: Iterable[int]) -> str:
    """``GPU0-3``, ``GPU0,2,5``, ``GPU4``: a set of GPUs in cpulist notation.

    >>> gpu_set([0, 1, 2, 3]), gpu_set([0, 2, 5]), gpu_set([4]), gpu_set([0, 1, 4, 5, 6])
    ('GPU0-3', 'GPU0,2,5', 'GPU4', 'GPU0-1,4-6')
    """
    return "GPU" + serialize.format_cpulist(set(gpus))


def _where(groups: numa.NumaGroups, x: int, topo: Topology) -> str:
    """How a NUMA group is named: its NUMA node(s), else the CPU list its affinity shares."""
    nodes = groups.nodes[x]
    if nodes is not None:
        return "NUMA " + serialize.format_cpulist(nodes)
    assert groups.groups is not None
    cpus = topo.gpu(groups.groups[x][0]).cpu_affinity
    return "CPUs " + serialize.format_cpulist(cpus) if cpus else "NUMA ?"


def _pairs(n: int) -> str:
    return f"{n} GPU pair" + ("" if n == 1 else "s")


def _pairs_at(topo: Topology, a: Sequence[int], b: Sequence[int], level: LinkLevel) -> int:
    return sum(1 for x in a for y in b if (lk := topo.gpu_link(x, y)) is not None and lk.level is level)


def _numa_findings(topo: Topology, groups: numa.NumaGroups) -> list[Finding]:
    out: list[Finding] = []
    if groups.basis is numa.Basis.UNKNOWN:
        out.append(Finding(WARN, "numa-unknown", (
            f"NUMA placement of {gpu_set(groups.from_links)} unknown: no NUMA/CPU affinity, and the PCIe links "
            "(NVLink hides them) do not settle it; numa-shape and island-numa are not published")))
        return out
    assert groups.groups is not None
    if groups.basis is numa.Basis.LINKS:
        out.append(Finding(INFO, "numa-from-links", (
            f"NUMA affinity of {gpu_set(groups.from_links)} unknown: their NUMA group comes from PCIe link levels "
            "(NODE or better = same node, SYS = another); label numa-basis=links")))
    keyed = [not (set(g) & set(groups.from_links)) for g in groups.groups]
    crossing: list[tuple[int, int, int]] = []
    for x, a in enumerate(groups.groups):
        for y in range(x + 1, len(groups.groups)):
            b = groups.groups[y]
            sys_pairs = _pairs_at(topo, a, b, LinkLevel.SYS)
            if sys_pairs:
                crossing.append((x, y, sys_pairs))
            close = [
                (p, q) for p in a for q in b
                if (lk := topo.gpu_link(p, q)) is not None and LinkLevel.PIX <= lk.level <= LinkLevel.NODE
            ]
            if close and keyed[x] and keyed[y]:
                p, q = close[0]
                out.append(Finding(WARN, "numa-contradiction", (
                    f"{gpu_set(a)} ({_where(groups, x, topo)}) ↔ {gpu_set(b)} ({_where(groups, y, topo)}): "
                    f"{_pairs(len(close))} at {topo.gpu_link(p, q)} (within one NUMA node) although the NUMA "
                    f"affinity differs, e.g. GPU{p}↔GPU{q}: the affinity or the matrix is wrong")))
    n_groups = len(groups.groups)
    all_pairs = n_groups > 2 and len(crossing) == n_groups * (n_groups - 1) // 2 and all(keyed)
    if all_pairs:
        total = sum(c for _, _, c in crossing)
        names = ", ".join(f"{gpu_set(g)} ({_where(groups, i, topo)})" for i, g in enumerate(groups.groups))
        out.append(Finding(WARN, "cross-numa", (
            f"{n_groups} NUMA groups, SYS between each pair ({_pairs(total)}): {names}; a ring spanning two "
            "groups runs at socket-interconnect speed")))
    else:
        for x, y, count in crossing:
            a, b = groups.groups[x], groups.groups[y]
            if keyed[x] and keyed[y]:
                out.append(Finding(WARN, "cross-numa", (
                    f"{gpu_set(a)} ({_where(groups, x, topo)}) ↔ {gpu_set(b)} ({_where(groups, y, topo)}) "
                    f"cross NUMA nodes (SYS, {_pairs(count)}): a ring spanning both runs at socket-interconnect "
                    "speed")))
            else:
                out.append(Finding(WARN, "sys-between-groups", (
                    f"{gpu_set(a)} ↔ {gpu_set(b)}: SYS on {_pairs(count)} (NUMA affinity unknown; a ring "
                    "spanning both runs at socket-interconnect speed)")))
    for x, g in enumerate(groups.groups):
        if not keyed[x] or len(g) < 2:
            continue
        total = len(g) * (len(g) - 1) // 2
        sys_pairs = _pairs_at(topo, g, g, LinkLevel.SYS) // 2
        if not sys_pairs:
            continue
        parts = islands.components(topo, LinkLevel.NODE, among=frozenset(g))
        pieces = " ".join("{" + ",".join(map(str, p)) + "}" for p in parts)
        out.append(Finding(WARN, "sys-within-numa", (
            f"{gpu_set(g)} share {_where(groups, x, topo)} but {sys_pairs} of their {_pairs(total)} are SYS "
            f"(between {pieces}): the socket is split into NUMA domains the OS does not show (AMD NPS, Intel SNC), "
            "a hypervisor hides the PCIe tree, or P2P is disabled between them; expect host-memory bandwidth")))
    return out


def _p2p_findings(topo: Topology) -> list[Finding]:
    if not topo.p2p:
        return []
    bad: dict[str, list[tuple[int, int]]] = {}
    pairs = 0
    for i, ga in enumerate(topo.gpus):
        for j in range(i + 1, len(topo.gpus)):
            status = topo.p2p[i][j]
            if status is None:
                continue
            pairs += 1
            if not status.works:
                bad.setdefault(status.value, []).append((ga.index, topo.gpus[j].index))
    out: list[Finding] = []
    # islands of GPUs with working P2P among them: unavailable pairs are named per island pair
    groups = _p2p_islands(topo)
    where = {g: k for k, grp in enumerate(groups) for g in grp}
    for code, bad_pairs in sorted(bad.items()):
        if len(bad_pairs) == pairs:
            out.append(Finding(WARN, "p2p-unavailable", (
                f"P2P unavailable between every GPU pair (NVML: {code}): GPU↔GPU traffic is staged through host "
                "memory")))
            continue
        by_pair: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for a, b in bad_pairs:
            x, y = sorted((where[a], where[b]))
            by_pair.setdefault((x, y), []).append((a, b))
        for (x, y), among in sorted(by_pair.items()):
            if len(among) <= 2:
                scope = "for " + ", ".join(f"GPU{a}↔GPU{b}" for a, b in among)
            elif x != y:
                scope = f"between {gpu_set(groups[x])} and {gpu_set(groups[y])} ({_pairs(len(among))})"
            else:
                scope = f"for {_pairs(len(among))} inside {gpu_set(groups[x])}"
            out.append(Finding(WARN, "p2p-unavailable", f"P2P unavailable {scope} (NVML: {code})"))
    return out


def _p2p_islands(topo: Topology) -> list[list[int]]:
    parent = {g.index: g.index for g in topo.gpus}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, ga in enumerate(topo.gpus):
        for j in range(i + 1, len(topo.gpus)):
            status = topo.p2p[i][j]
            if status is not None and status.works:
                ra, rb = find(ga.index), find(topo.gpus[j].index)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for g in topo.gpus:
        groups.setdefault(find(g.index), []).append(g.index)
    return sorted(groups.values(), key=lambda grp: grp[0])


def _pcie_findings(topo: Topology) -> list[Finding]:
    down: dict[tuple[int, int], list[int]] = {}
    for g in topo.gpus:
        if g.pcie is not None and g.pcie.width_downtrained:
            assert g.pcie.width is not None and g.pcie.max_width is not None
            down.setdefault((g.pcie.width, g.pcie.max_width), []).append(g.index)
    return [
        Finding(WARN, "pcie-width-downtrained", (
            f"{gpu_set(gpus)}: PCIe link trained at x{width} of x{max_width}: reseat the card or check the riser/slot"))
        for (width, max_width), gpus in sorted(down.items())
    ]


def findings(topo: Topology) -> list[Finding]:
    """What a platform engineer should read before trusting this node for multi-GPU jobs, grouped per cause."""
    out: list[Finding] = [Finding(WARN, "input", w) for w in topo.warnings]
    out.extend(_numa_findings(topo, numa.group(topo)))
    pairs = [link for _, _, link in topo.gpu_pairs()]
    unknown = sum(1 for p in pairs if p is None)
    if unknown:
        out.append(Finding(WARN, "unknown-links", f"{unknown} GPU pair link(s) unknown (damaged or truncated input)"))
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
            out.append(Finding(WARN, "nvlink-not-all-to-all", (
                f"NVLink island {gpu_set(island)} is not all-to-all ({len(missing)} pairs without NVLink, e.g. "
                f"GPU{missing[0][0]}↔GPU{missing[0][1]}): only some GPU sets ring over NVLink")))
    out.extend(_p2p_findings(topo))
    out.extend(_pcie_findings(topo))
    loc = nic_locality.compute(topo)
    far = [g for g, gl in loc.items() if gl.level is not None and gl.level > nic_locality.GPUDIRECT_MAX_LEVEL]
    if far and len(far) < len(loc):
        out.append(Finding(WARN, "no-local-nic", (
            f"{gpu_set(far)} have no NIC within their PCIe switch (no GPUDirect RDMA at PXB or better)")))
    elif far:
        out.append(Finding(WARN, "no-local-nic", (
            "no GPU has a NIC within its PCIe switch: multi-node traffic goes through host memory")))
    far_nics = [
        nic.name
        for pos, nic in enumerate(topo.nics)
        if topo.gpus
        and all((lk := topo.gpu_nic_link(g.index, pos)) is not None and lk.level is LinkLevel.SYS for g in topo.gpus)
    ]
    if far_nics:
        out.append(Finding(WARN, "nic-far", f"NIC {', '.join(far_nics)} SYS to every GPU"))
    return out


def build(
    topo: Topology,
    *,
    prefix: str = labels.DEFAULT_PREFIX,
    status: labels.Status = labels.Status.OK,
    extra: Sequence[Finding] = (),
) -> dict[str, Any]:
    """The full audit as a JSON-ready dict; ``extra``: findings of the probe (sources, health, MIG)."""
    isl = islands.compute(topo)
    loc = nic_locality.compute(topo)
    groups = numa.group(topo)
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
    found = [*findings(topo), *extra]
    return {
        "source": topo.source,
        "gpu_count": len(topo.gpus),
        "nic_count": len(topo.nics),
        "islands": {level.slug: isl[level] for level in ISLAND_LEVELS},
        "numa": {
            "basis": groups.basis.value,
            "groups": None if groups.groups is None else [list(g) for g in groups.groups],
            "nodes": [None if n is None else serialize.format_cpulist(n) for n in groups.nodes],
        },
        "gpu_nic": {
            str(g): {"level": None if gl.level is None else gl.level.token, "nics": list(gl.nics)}
            for g, gl in sorted(loc.items())
        },
        "best_placement": best,
        "warnings": [f.message for f in found if f.is_warning],
        "info": [f.message for f in found if not f.is_warning],
        "findings": [f.as_dict() for f in found],
        "labels": labels.encode(topo, prefix=prefix, status=status),
        "annotations": labels.encode_annotations(topo, prefix=prefix),
        "topology": serialize.to_dict(topo),
    }
