"""The audit report: everything gputopo concludes about one topology, as data.

Why a pure builder: ``gputopo audit`` prints it for people (rich tables) and as
JSON for machines, and tests check the data, not the rendering. The JSON keys
``islands``, ``numa``, ``gpu_nic``, ``labels``, ``annotations``, ``warnings``,
``info``, ``findings`` and ``bandwidth`` are a stable contract (see ``docs/audit.md``).

Findings are grouped **per cause**: one line per pair of GPU groups (NUMA groups,
P2P islands), never one per GPU pair, so an 8-GPU all-SYS box says two things,
not 28. "Cross NUMA nodes" is said only where the GPUs' NUMA affinity differs;
SYS *inside* one NUMA node is its own finding (a socket split into NPS/SNC
domains, a VM that hides the PCIe tree, P2P/ACS settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from labeler.topology import busbw, islands, labels, nic_locality, node_findings, numa, serialize
from labeler.topology.findings import Finding, Severity, gpu_set, pairs_text
from labeler.topology.links import ISLAND_LEVELS, LinkLevel
from labeler.topology.model import Topology
from labeler.topology.placement import placer_for

__all__ = ["all_findings", "bandwidth", "bandwidth_table", "build", "findings", "gpu_set"]

WARN, INFO = Severity.WARNING, Severity.INFO
#: codes a probe finding replaces (the probe saw the cause the matrix only implies)
SUPERSEDED_BY_PROBE = frozenset({"nvlink-down", "mig-enabled"})


def _where(groups: numa.NumaGroups, x: int, topo: Topology) -> str:
    """How a NUMA group is named: its NUMA node(s), else the CPU list its affinity shares."""
    nodes = groups.nodes[x]
    if nodes is not None:
        return "NUMA " + serialize.format_cpulist(nodes)
    assert groups.groups is not None
    cpus = topo.gpu(groups.groups[x][0]).cpu_affinity
    return "CPUs " + serialize.format_cpulist(cpus) if cpus else "NUMA ?"


_pairs = pairs_text


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
    out.extend(node_findings.findings(topo))
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


def all_findings(topo: Topology, extra: Sequence[Finding] = ()) -> list[Finding]:
    """The topology's findings, then the probe's (``extra``).

    Where the probe says something the topology also implies (same ``code``, e.g.
    ``nvlink-down`` from NVML's per-link state and from the matrix), the probe's
    finding replaces the topology's: it has the better evidence.
    """
    probed = {f.code for f in extra}
    return [*(f for f in findings(topo) if f.code not in probed or f.code not in SUPERSEDED_BY_PROBE), *extra]


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
    found = all_findings(topo, extra)
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
        "bandwidth": bandwidth(topo),
        "warnings": [f.message for f in found if f.is_warning],
        "info": [f.message for f in found if not f.is_warning],
        "findings": [f.as_dict() for f in found],
        "labels": labels.encode(topo, prefix=prefix, status=status),
        "annotations": labels.encode_annotations(topo, prefix=prefix),
        "topology": serialize.to_dict(topo),
    }


def _predicted(model: busbw.BandwidthModel, gpus: Sequence[int]) -> dict[str, Any]:
    alone = model.predict(gpus)
    ranked = model.predict(gpus, multi_node=True)
    assert alone is not None and ranked is not None and ranked.network is not None  # two or more GPUs
    return {
        **alone.as_dict(),
        "multi_node": {
            "busbw_gbps": ranked.gbps,
            "bottleneck": ranked.bottleneck.as_dict(),
            "network": ranked.network.as_dict(),
            "assumed": list(ranked.assumed),
        },
    }


def bandwidth(topo: Topology) -> dict[str, Any]:
    """Predicted NCCL ring bus bandwidth per island and per best k-GPU set (``docs/bandwidth.md``).

    Islands: every distinct GPU set of two or more that is an island at some level, under the
    tightest level it is one at. Best sets: the placer's choice for k = 2, 4, 8 … and the whole
    node. Each entry carries the single-node prediction and, under ``multi_node``, what one
    rank of a multi-node job on that set gets (capped by the network path).
    """
    model = busbw.model_for(topo)
    placer = placer_for(topo)
    per_level = islands.compute(topo)
    seen: set[tuple[int, ...]] = set()
    island_rows: list[dict[str, Any]] = []
    for level in ISLAND_LEVELS:
        for group in per_level[level]:
            key = tuple(group)
            if len(group) < 2 or key in seen:
                continue
            seen.add(key)
            island_rows.append({"level": level.slug, **_predicted(model, group)})
    n = len(topo.gpus)
    ks = sorted({1 << i for i in range(1, n.bit_length()) if 1 << i <= n} | ({n} if n >= 2 else set()))
    best: dict[str, Any] = {}
    for k in ks:
        placement = placer.best(topo.gpu_indices, k)
        if placement is not None:
            best[str(k)] = _predicted(model, placement.gpus)
    entries = [*island_rows, *best.values()]
    assumed = [a for e in entries for a in (*e["assumed"], *e["multi_node"]["assumed"])]
    return {
        "unit": "GB/s per GPU and direction (nccl-tests all_reduce busbw, ring)",
        "islands": island_rows,
        "best": best,
        "assumed": list(dict.fromkeys(assumed)),
    }


def bandwidth_table(section: dict[str, Any]) -> tuple[list[str], list[list[str]], list[str]]:
    """:func:`bandwidth` for people: header, one row per island and best set, and the reasons.

    The reasons are listed once each, naming the rows they apply to, so an 8-GPU board whose
    islands share one bottleneck says it once.
    """
    head = ["set", "GPUs", "ring", "busbw", "bottleneck", "multi-node rank"]
    rows: list[list[str]] = []
    reasons: dict[str, list[str]] = {}
    entries = [(f"island {e['level']}", e) for e in section["islands"]]
    entries += [(f"best k={k}", e) for k, e in section["best"].items()]
    for name, e in entries:
        b, m = e["bottleneck"], e["multi_node"]
        net = m["bottleneck"]["kind"] == "network"
        rows.append([
            name,
            gpu_set(e["gpus"]),
            "→".join(map(str, e["ring"])),
            f"{e['busbw_gbps']:g}",
            b["where"],
            f"{m['busbw_gbps']:g}" + (" (network)" if net else ""),
        ])
        label = f"{name} {gpu_set(e['gpus'])}"
        reasons.setdefault(f"{b['where']}: {b['why']}", []).append(label)
        if net:
            reasons.setdefault(f"multi-node: {m['bottleneck']['why']}", []).append(label)
    notes = [f"{why} [{', '.join(names)}]" for why, names in reasons.items()]
    return head, rows, notes
