"""What a pod got: its GPUs' island, ring, predicted bandwidth, NICs and CPU alignment.

Pure analysis for ``gputopo audit pod`` (the I/O — environment, files, the probe, the
Kubernetes API, ``sched_getaffinity`` — lives in :mod:`gputopo.audit_pod`). Every
topology question is answered by the core: islands by :mod:`labeler.topology.islands`,
the ring by :mod:`labeler.topology.placement` through :func:`policy.bandwidth.ring`, the
bandwidth by :func:`policy.bandwidth.expected_busbw`, NICs by
:mod:`labeler.topology.nic_locality`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from labeler.topology import islands, nic_locality, numa
from labeler.topology.findings import Finding, Severity
from labeler.topology.links import ISLAND_LEVELS, LEVEL_MEANING, Link, LinkLevel
from labeler.topology.model import Topology
from labeler.topology.placement import Placement, placer_for
from labeler.topology.serialize import format_cpulist
from policy.audit.device_list import MigDevice, Resolution
from policy.bandwidth import expected_busbw, ring

__all__ = [
    "Alignment",
    "CpuAlignment",
    "Gate",
    "PodAudit",
    "analyse",
    "cpu_alignment",
    "gate",
    "to_dict",
]


class Alignment(enum.StrEnum):
    ALIGNED = "aligned"  # every GPU has CPUs of its own NUMA node in the mask, and no CPU is remote to all
    PARTIAL = "partial"  # every GPU has local CPUs, but some CPUs of the mask are local to none of the GPUs
    MISALIGNED = "misaligned"  # some GPU has no local CPU in the mask: its host traffic crosses the socket
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class CpuAlignment:
    status: Alignment
    process_cpus: frozenset[int] | None
    local: tuple[tuple[int, int, int], ...] = ()  # (gpu, CPUs of the mask local to it, CPUs local to it)
    remote: int = 0  # CPUs of the mask local to none of the GPUs
    process_numa: tuple[int, ...] = ()  # NUMA nodes of the mask, where the topology tells
    message: str = ""


@dataclass(frozen=True, slots=True)
class PodAudit:
    gpus: tuple[int, ...]  # topology indices, in the process's CUDA order
    mig: tuple[MigDevice, ...]
    island_level: LinkLevel | None  # tightest level at which all the GPUs share one node island
    placement: Placement | None  # the best ring through exactly these GPUs
    expected_busbw: float | None
    best: Placement | None  # the tightest set of as many GPUs anywhere on the node
    best_busbw: float | None
    nics: tuple[tuple[int, LinkLevel | None, tuple[str, ...]], ...]
    cpu: CpuAlignment
    known: bool
    findings: tuple[Finding, ...]

    @property
    def bottleneck(self) -> Link | None:
        return None if self.placement is None or len(self.gpus) < 2 else self.placement.bottleneck


class Gate(enum.StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"  # the GPUs or their ring could not be determined
    NOT_APPLICABLE = "n/a"  # fewer than two GPUs: no ring


def _island_level(topo: Topology, gpus: Sequence[int]) -> LinkLevel | None:
    want = set(gpus)
    for level in ISLAND_LEVELS:
        if any(want <= set(group) for group in islands.components(topo, level)):
            return level
    return None


def cpu_alignment(topo: Topology, gpus: Sequence[int], cpus: frozenset[int] | None) -> CpuAlignment:
    """Compare the process's CPU mask with the GPUs' CPU affinity (their NUMA node's CPUs).

    >>> from labeler.topology import smi_parser
    >>> t = smi_parser.parse("GPU0 GPU1 CPU Affinity\\nGPU0 X SYS 0-3\\nGPU1 SYS X 4-7\\n")
    >>> cpu_alignment(t, [0, 1], frozenset({0, 1, 4, 5})).status.value
    'aligned'
    >>> cpu_alignment(t, [0, 1], frozenset({0, 1})).status.value
    'misaligned'
    """
    if cpus is None:
        return CpuAlignment(Alignment.UNKNOWN, None, message="the process's CPU mask is not known")
    known = [g for g in gpus if topo.gpu(g).cpu_affinity is not None]
    if not known:
        return CpuAlignment(Alignment.UNKNOWN, cpus, message="the topology gives no CPU affinity for these GPUs")
    numa_of: dict[int, int] = {}
    for dev in topo.gpus:
        if dev.cpu_affinity is not None and dev.numa_node is not None:
            numa_of.update(dict.fromkeys(dev.cpu_affinity, dev.numa_node))
    local: list[tuple[int, int, int]] = []
    near: set[int] = set()
    for g in known:
        aff = topo.gpu(g).cpu_affinity
        assert aff is not None
        local.append((g, len(cpus & aff), len(aff)))
        near |= aff
    remote = len(cpus - near)
    process_numa = tuple(sorted({numa_of[c] for c in cpus if c in numa_of}))
    starved = [g for g, n, _ in local if n == 0]
    if starved:
        status = Alignment.MISALIGNED
        msg = (f"{_gpus(starved)}: no CPU of the GPU's own NUMA node is in this process's mask; host-device copies "
               "and NCCL's proxy threads cross the socket")
    elif remote:
        status = Alignment.PARTIAL
        msg = f"{remote} of the process's {len(cpus)} CPUs are local to none of its GPUs"
    else:
        status = Alignment.ALIGNED
        msg = "every GPU has CPUs of its own NUMA node in the process's mask, and every CPU is near a GPU"
    if len(known) < len(gpus):
        msg += f" ({len(gpus) - len(known)} GPU(s) without known affinity)"
    return CpuAlignment(status, cpus, tuple(local), remote, process_numa, msg)


def _gpus(gpus: Sequence[int]) -> str:
    return "GPU" + ",".join(str(g) for g in gpus)


def _bottleneck_finding(topo: Topology, gpus: Sequence[int], bn: Link) -> Finding:
    """The ring's worst hop; a SYS hop is told apart by NUMA affinity (:func:`labeler.topology.numa.crosses`).

    ``socket-crossing`` only where the GPUs sit on different NUMA nodes; a SYS hop between GPUs
    of one NUMA node is ``sys-within-numa`` (the node finding of the same name says why), and
    with the grouping unknown it stays a plain ``ring-bottleneck``.
    """
    sev = Severity.WARNING if bn.level >= LinkLevel.PHB else Severity.INFO
    if bn.level is LinkLevel.SYS:
        crossing = numa.crosses(topo, gpus)
        if crossing:
            return Finding(sev, "socket-crossing", f"the ring's worst hop is {bn.token} and the GPUs sit on "
                                                   f"different NUMA nodes: traffic traverses {LEVEL_MEANING[bn.level]}")
        if crossing is False:
            return Finding(sev, "sys-within-numa", f"the ring's worst hop is {bn.token} although the GPUs share "
                                                   "one NUMA node: the socket is split into NUMA domains the OS "
                                                   "does not show, a hypervisor hides the PCIe tree, or P2P is "
                                                   "disabled between them; expect host-memory bandwidth")
        return Finding(sev, "ring-bottleneck", f"the ring's worst hop is {bn.token} (NUMA affinity unknown): "
                                               f"traffic traverses {LEVEL_MEANING[bn.level]}")
    return Finding(sev, "ring-bottleneck", f"the ring's worst hop is {bn.token}: traffic traverses "
                                           f"{LEVEL_MEANING[bn.level]}")


def analyse(topo: Topology, resolution: Resolution, cpus: frozenset[int] | None) -> PodAudit:
    """The audit of the GPUs ``resolution`` names on ``topo``, for a process with CPU mask ``cpus``."""
    gpus = tuple(g for g in resolution.gpus if g in topo.gpu_indices)
    findings: list[Finding] = [
        Finding(Severity.WARNING if not resolution.known else Severity.INFO, "device-list", note)
        for note in resolution.notes
    ]
    distinct = sorted(set(gpus))
    placement = ring(topo, distinct) if len(distinct) >= 2 else None
    busbw = expected_busbw(topo, distinct)
    best = placer_for(topo).best(topo.gpu_indices, len(distinct)) if len(distinct) >= 2 else None
    best_busbw = expected_busbw(topo, best.gpus) if best is not None else None
    level = _island_level(topo, distinct) if len(distinct) >= 2 else None
    if not distinct:
        findings.append(Finding(Severity.INFO, "no-gpu", "this process uses no GPU"))
    elif len(distinct) == 1:
        findings.append(Finding(Severity.INFO, "single-gpu", f"one GPU ({_gpus(distinct)}): no collective ring"))
    elif placement is None:
        findings.append(Finding(Severity.WARNING, "ring-unknown",
                                f"no ring over known links closes through {_gpus(distinct)} (damaged topology?)"))
    else:
        bn = placement.bottleneck
        findings.append(_bottleneck_finding(topo, distinct, bn))
        if best is not None and best.bottleneck.rank < bn.rank:
            findings.append(Finding(
                Severity.INFO, "tighter-set-exists",
                f"this node has a tighter {len(distinct)}-GPU set: {_gpus(best.gpus)} rings at {best.bottleneck.token}"
                + (f" (~{best_busbw:g} GB/s)" if best_busbw is not None else "")
                + "; it may be held by other pods"))
    loc = nic_locality.compute(topo)
    nics = tuple((g, loc[g].level, loc[g].nics) for g in distinct if g in loc)
    far = [g for g, lvl, _ in nics if lvl is not None and lvl > nic_locality.GPUDIRECT_MAX_LEVEL]
    if far:
        findings.append(Finding(Severity.WARNING, "nic-not-local",
                                f"{_gpus(far)}: no NIC within the GPU's PCIe switch; multi-node traffic from there "
                                "cannot use GPUDirect RDMA at full rate"))
    cpu = cpu_alignment(topo, distinct, cpus)
    if cpu.status is Alignment.MISALIGNED:
        findings.append(Finding(Severity.WARNING, "cpu-misaligned", cpu.message))
    elif cpu.status is Alignment.PARTIAL:
        findings.append(Finding(Severity.INFO, "cpu-partial", cpu.message))
    return PodAudit(gpus, resolution.mig, level, placement, busbw, best, best_busbw, nics, cpu, resolution.known,
                    tuple(findings))


def gate(audit: PodAudit, fail_on: LinkLevel) -> Gate:
    """``--fail-on``: FAIL when the ring's worst hop is at ``fail_on`` or worse.

    Fewer than two GPUs have no ring (NOT_APPLICABLE); GPUs that could not be mapped, or
    a ring that does not close over known links, are UNKNOWN (the CLI fails closed).
    """
    if not audit.known:
        return Gate.UNKNOWN
    if len(set(audit.gpus)) < 2:
        return Gate.NOT_APPLICABLE
    if audit.placement is None:
        return Gate.UNKNOWN
    return Gate.FAIL if audit.placement.bottleneck.level >= fail_on else Gate.PASS


def _placement(p: Placement | None) -> dict[str, Any] | None:
    if p is None:
        return None
    return {"gpus": list(p.gpus), "ring": list(p.ring), "bottleneck": p.bottleneck.token}


def to_dict(audit: PodAudit) -> dict[str, Any]:
    """The JSON contract of ``gputopo audit pod --json`` (docs/audit.md)."""
    cpu = audit.cpu
    return {
        "gpus": list(audit.gpus),
        "mig": [{"device": m.name, "gpu": m.gpu} for m in audit.mig],
        "known": audit.known,
        "island_level": None if audit.island_level is None else audit.island_level.slug,
        "ring": _placement(audit.placement) if len(set(audit.gpus)) >= 2 else None,
        "expected_busbw_gbps": audit.expected_busbw,
        "tightest_on_node": _placement(audit.best),
        "tightest_on_node_busbw_gbps": audit.best_busbw,
        "nics": {str(g): {"level": None if lvl is None else lvl.token, "nics": list(n)} for g, lvl, n in audit.nics},
        "cpu": {
            "alignment": cpu.status.value,
            "process_cpus": None if cpu.process_cpus is None else format_cpulist(cpu.process_cpus),
            "process_numa": list(cpu.process_numa),
            "per_gpu": {str(g): {"local_in_mask": n, "local": total} for g, n, total in cpu.local},
            "remote": cpu.remote,
            "message": cpu.message,
        },
        "findings": [f.as_dict() for f in audit.findings],
    }
