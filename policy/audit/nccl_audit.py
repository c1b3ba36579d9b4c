"""Is a measured ``all_reduce_perf`` result the hardware or the placement?

Pure analysis for ``gputopo audit nccl`` over a parsed log (:mod:`policy.audit.nccl_log`) and,
when known, the node's topology: which GPUs the run used, the peak bus bandwidth it
measured, what :func:`policy.bandwidth.expected_busbw` predicts for that GPU set, and the
likely causes of a shortfall. Causes that need facts the topology does not carry yet (P2P
capability, PCIe link width) are reported only when the log itself shows them: ``via SHM``
means the GPUs did not talk peer-to-peer, ``NCCL_P2P_LEVEL set by environment to LOC``
means P2P was switched off, ``via NET/Socket`` means no RDMA, a network hop without
``GDRDMA`` means no GPUDirect RDMA.

Verdict bands (judgement, not measurement): the expectation is the bandwidth model's ring
(``docs/bandwidth.md``), NCCL's own ceiling where the facts are known and conservative where
they are not; the measured rows of ``shared/research/nccl-bandwidth.md`` land between about
0.6x and 1.3x of it (far above only where the CPU is unknown):
measured/expected below :data:`FAR_BELOW` is flagged, below :data:`BELOW` is reported.
"""

from __future__ import annotations

import enum
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labeler.topology import nic_locality, numa
from labeler.topology.findings import Finding, Severity
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology
from labeler.topology.placement import Placement, placer_for
from policy.audit.nccl_log import NcclLog, Section, Transport
from policy.bandwidth import expected_busbw, ring

__all__ = ["BELOW", "FAR_BELOW", "RunAudit", "Verdict", "analyse", "to_dict"]

#: measured peak / expected below this: "far below" (flagged; `audit nccl` exits 5)
FAR_BELOW = 0.5
#: below this (and not far below): "below"
BELOW = 0.8
#: above this: the model underestimates this hardware
ABOVE = 1.25
#: rows slower than this (GB/s algbw) carry too few digits for the busbw/algbw check
_MIN_ALGBW_FOR_RATIO = 1.0
_ALL_REDUCE = ("all_reduce_perf", "all_reduce_perf_mpi")


class Verdict(enum.StrEnum):
    FAR_BELOW = "far-below"
    BELOW = "below"
    AS_EXPECTED = "as-expected"
    ABOVE = "above"
    NO_EXPECTATION = "no-expectation"
    NO_RESULTS = "no-results"


@dataclass
class RunAudit:
    """The audit of one all-reduce section of a log (or of the log's NCCL lines alone)."""

    test: str | None
    ranks: int | None
    hosts: tuple[str, ...]
    gpu_names: tuple[str, ...]
    peak_busbw: float | None
    peak_size: int | None
    avg_busbw: float | None
    host: str | None  # the host whose GPUs were mapped onto the topology
    gpus: tuple[int, ...] | None  # topology indices of that host's ranks
    mapping: str  # how the GPUs were identified
    placement: Placement | None
    expected: float | None
    expected_note: str
    best: Placement | None
    best_expected: float | None
    verdict: Verdict
    ratio: float | None
    transports: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def _busbw_factor(n: int) -> float:
    return 2.0 * (n - 1) / n


def _ratio(section: Section) -> float | None:
    pairs = [(r.out_of_place.algbw, r.out_of_place.busbw) for r in section.rows
             if r.out_of_place.algbw >= _MIN_ALGBW_FOR_RATIO]
    pairs += [(r.in_place.algbw, r.in_place.busbw) for r in section.rows if r.in_place.algbw >= _MIN_ALGBW_FOR_RATIO]
    if not pairs:
        return None
    return statistics.median(b / a for a, b in pairs)


def _is_all_reduce(section: Section) -> bool:
    if section.test is not None:
        return section.test in _ALL_REDUCE
    r = _ratio(section)
    return bool(section.rows) and any(row.redop not in (None, "none") for row in section.rows) and (
        r is None or r >= 0.99
    )


def _bus_key(text: str | None) -> tuple[int | None, int, int] | None:
    """(domain, bus, device) of "0000:b4:00", "0000:b4:00.0", "b4:00.0"; (None, bus, 0) of "0x16"."""
    if not text:
        return None
    t = text.strip().lower()
    m = re.fullmatch(r"0x([0-9a-f]{1,2})", t)
    if m:
        return None, int(m.group(1), 16), 0
    m = re.fullmatch(r"(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})(?:\.[0-7])?", t)
    if m:
        return int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16)
    return None


def _by_bus(topo: Topology, bus: str | None) -> int | None:
    want = _bus_key(bus)
    if want is None:
        return None
    hits = []
    for g in topo.gpus:
        have = _bus_key(g.bus_id)
        if have is None:
            continue
        if (want[0] is None and have[1] == want[1]) or want == have:
            hits.append(g.index)
    return hits[0] if len(hits) == 1 else None


def _map_gpus(log: NcclLog, section: Section | None, topo: Topology, host: str | None,
              given: Sequence[int] | None) -> tuple[tuple[int, ...] | None, str, list[Finding]]:
    notes: list[Finding] = []
    ranks = sorted((r for r in section.ranks if r.host == host), key=lambda r: r.rank) if section else []
    if given is not None:
        bad = [g for g in given if g not in topo.gpu_indices]
        if bad:
            return None, "given", [Finding(Severity.ERROR, "gpus-unknown",
                                           f"--gpus names GPU(s) {bad} the topology does not have")]
        if ranks and len(set(given)) != len(ranks):
            notes.append(Finding(Severity.WARNING, "gpus-count", f"--gpus names {len(set(given))} GPU(s) but the "
                                 f"log shows {len(ranks)} rank(s) on {host}"))
        return tuple(given), "given with --gpus", notes
    if ranks:
        by_bus = [_by_bus(topo, r.bus) for r in ranks]
        if all(g is not None for g in by_bus) and len(set(by_bus)) == len(by_bus):
            return tuple(g for g in by_bus if g is not None), "PCI bus id of each rank", notes
        nvml = {c.rank: c.nvml_dev for c in log.comms if c.host == host and c.nvml_dev is not None}
        if all(r.rank in nvml for r in ranks):
            gpus = tuple(nvml[r.rank] for r in ranks)
            method = "NCCL's nvmlDev of each rank"
        else:
            gpus = tuple(r.device for r in ranks)
            method = "CUDA device index of each rank (assumes no CUDA_VISIBLE_DEVICES and PCI order)"
    else:
        devices = sorted({h.device for h in log.hops if h.host == host})
        if not devices:
            return None, "none", notes
        gpus = tuple(devices)
        method = "CUDA devices of the NCCL lines (assumes no CUDA_VISIBLE_DEVICES and PCI order)"
    missing = [g for g in gpus if g not in topo.gpu_indices]
    if missing or len(set(gpus)) != len(gpus):
        notes.append(Finding(Severity.WARNING, "gpus-unmapped", f"the run's devices {list(gpus)} do not map onto "
                             f"this topology's GPUs {list(topo.gpu_indices)}; pass --gpus"))
        return None, method, notes
    return gpus, method, notes


def _transport_findings(log: NcclLog, multi_host: bool) -> tuple[dict[str, int], list[Finding]]:
    out: list[Finding] = []
    pairs: dict[str, set[tuple[str, int, int]]] = {}
    for h in log.hops:
        pairs.setdefault(h.transport.value, set()).add((h.host, h.src, h.dst))
    counts = {k: len(v) for k, v in sorted(pairs.items())}
    intra = counts.get(Transport.P2P.value, 0) + counts.get(Transport.SHM.value, 0)
    if counts.get(Transport.SHM.value):
        out.append(Finding(Severity.WARNING, "no-p2p-shm",
                           f"{counts[Transport.SHM.value]} of {intra} intra-node ring connections go through host "
                           "shared memory (via SHM): no GPU peer-to-peer between those GPUs (unsupported, blocked by "
                           "ACS/IOMMU, or disabled)"))
    level = log.env.get("NCCL_P2P_LEVEL", "").upper()
    if log.env.get("NCCL_P2P_DISABLE") == "1" or level in ("LOC", "0"):
        what = "NCCL_P2P_DISABLE=1" if log.env.get("NCCL_P2P_DISABLE") == "1" else f"NCCL_P2P_LEVEL={level}"
        out.append(Finding(Severity.WARNING, "p2p-disabled-env", f"peer-to-peer is switched off by the environment "
                           f"({what}): intra-node traffic is staged through host memory"))
    net = [h for h in log.hops if h.transport is Transport.NET]
    sockets = [h for h in net if h.detail.upper().startswith("NET/SOCKET")]
    if sockets or (multi_host and "Socket" in log.networks and not any("IB" in n for n in log.networks)):
        out.append(Finding(Severity.WARNING, "net-socket", "inter-node traffic uses TCP sockets (NET/Socket), not "
                           "RDMA: expect a small fraction of the NIC rate; check NCCL_IB_DISABLE, NCCL_IB_HCA and the "
                           "RDMA driver"))
    rdma = [h for h in net if not h.detail.upper().startswith("NET/SOCKET")]
    if rdma and not any(h.gdr for h in rdma):
        out.append(Finding(Severity.INFO, "no-gdr", "network hops carry no GDRDMA flag: GPUDirect RDMA is not used "
                           "(NIC too far from the GPU, nvidia-peermem missing, or NCCL_NET_GDR_LEVEL)"))
    elif log.gdr is False and multi_host:
        out.append(Finding(Severity.INFO, "no-gdr", "NCCL reports GDR 0: GPUDirect RDMA is not used"))
    if log.long_lines:
        out.append(Finding(Severity.INFO, "long-lines", f"{log.long_lines} line(s) over the length limit were skipped"))
    return counts, out


def _nic_findings(log: NcclLog, topo: Topology, host: str | None, gpus: Sequence[int]) -> list[Finding]:
    """Network hops whose GPU has no NIC within its PCIe switch (GPUDirect RDMA needs PXB or better)."""
    loc = nic_locality.compute(topo)
    if not loc:
        return []
    devices = {h.device for h in log.hops if h.transport is Transport.NET and h.host == host}
    far = sorted(g for g in devices if g in gpus and g in loc and (lvl := loc[g].level) is not None
                 and lvl > nic_locality.GPUDIRECT_MAX_LEVEL)
    if not far:
        return []
    return [Finding(Severity.WARNING, "nic-not-local",
                    f"GPU{','.join(map(str, far))}: sends over the network with no NIC within the GPU's PCIe switch "
                    "(topology): the traffic crosses the CPU, no GPUDirect RDMA at full rate")]


def _section_findings(section: Section, log: NcclLog, nranks: int | None) -> list[Finding]:
    out: list[Finding] = []
    if section.validation_ok is False:
        out.append(Finding(Severity.ERROR, "validation-failed", f"{section.out_of_bounds} out-of-bounds values: the "
                           "results are wrong, so their bandwidth is meaningless"))
    r = _ratio(section)
    if r is not None and nranks:
        want = _busbw_factor(nranks)
        if abs(r - want) > 0.02 * want + 0.01:
            out.append(Finding(Severity.WARNING, "ratio-mismatch", f"busbw/algbw is {r:.3f}, but all_reduce over "
                               f"{nranks} ranks gives {want:.3f}: not an all_reduce_perf table, or ranks missing"))
    rows = section.rows
    if len(rows) >= 2 and rows[-1].busbw == max(x.busbw for x in rows) and rows[-1].busbw > 1.05 * rows[-2].busbw:
        out.append(Finding(Severity.INFO, "not-plateaued", f"busbw still rises at the largest size "
                           f"({rows[-1].size} B): the peak underestimates the link; sweep larger (-e)"))
    if log.damaged_rows:
        out.append(Finding(Severity.INFO, "damaged-rows", f"{log.damaged_rows} result line(s) were cut or damaged "
                           "and skipped"))
    return out


def _ratio_ranks(section: Section) -> int | None:
    """The rank count whose all-reduce factor 2(n-1)/n matches the table's busbw/algbw (within 0.5%)."""
    r = _ratio(section)
    if r is None or not 1.0 < r < 1.999:
        return None
    n = round(2.0 / (2.0 - r))
    return n if abs(_busbw_factor(n) - r) <= 0.005 * r else None


def _ranks(section: Section | None, log: NcclLog) -> tuple[int | None, list[Finding]]:
    """Rank count: the rank lines, NCCL's nranks, or busbw/algbw; with a note when the rank lines are cut."""
    listed = len({r.rank for r in section.ranks}) if section is not None and section.ranks else None
    inferred = _ratio_ranks(section) if section is not None else None
    if listed is not None and inferred is not None and inferred > listed:
        return inferred, [Finding(Severity.INFO, "ranks-cut", f"the log lists {listed} rank line(s), but busbw/algbw "
                                  f"matches all_reduce over {inferred} ranks: the rank list is cut")]
    if listed is not None:
        return listed, []
    sizes = {c.nranks for c in log.comms}
    if len(sizes) == 1:
        return sizes.pop(), []
    return inferred, []


def _verdict(measured: float | None, expected: float | None) -> tuple[Verdict, float | None]:
    if measured is None:
        return Verdict.NO_RESULTS, None
    if expected is None or expected <= 0:
        return Verdict.NO_EXPECTATION, None
    ratio = measured / expected
    if ratio < FAR_BELOW:
        return Verdict.FAR_BELOW, ratio
    if ratio < BELOW:
        return Verdict.BELOW, ratio
    if ratio > ABOVE:
        return Verdict.ABOVE, ratio
    return Verdict.AS_EXPECTED, ratio


def _gpus_text(gpus: Sequence[int]) -> str:
    return "GPU" + ",".join(str(g) for g in gpus)


def _audit(log: NcclLog, section: Section | None, topo: Topology | None, given: Sequence[int] | None) -> RunAudit:
    hosts = section.hosts if section is not None and section.ranks else tuple(dict.fromkeys(h.host for h in log.hops))
    nranks, rank_notes = _ranks(section, log)
    listed = len({r.rank for r in section.ranks}) if section is not None else 0
    # more ranks than rank lines: the list is cut, so other hosts may be missing from it
    multi_host = len(hosts) > 1 or (nranks is not None and listed > 0 and nranks > listed)
    peak = section.peak if section is not None else None
    findings: list[Finding] = list(rank_notes)
    counts, tfind = _transport_findings(log, multi_host)
    host = hosts[0] if hosts else None
    gpus: tuple[int, ...] | None = None
    mapping = "no topology given"
    placement = best = None
    expected = best_expected = None
    note = "no topology: pass --topology FILE (and --gpus) to compare with the model"
    if topo is not None:
        gpus, mapping, mfind = _map_gpus(log, section, topo, host, given)
        findings.extend(mfind)
        if gpus is not None and len(set(gpus)) >= 2:
            placement = ring(topo, gpus)
            bound = expected_busbw(topo, gpus)
            best = placer_for(topo).best(topo.gpu_indices, len(set(gpus)))
            best_expected = expected_busbw(topo, best.gpus) if best is not None else None
            if multi_host:
                note = ("multi-host run: the network path is not modelled yet; the intra-node ring over "
                        f"{host}'s GPUs alone would allow {bound:g} GB/s (an upper bound)" if bound is not None
                        else "multi-host run; no intra-node ring closes over known links")
            else:
                expected = bound
                note = ("predicted by the bandwidth model (policy.bandwidth.expected_busbw)" if bound is not None
                        else "no ring over known links closes through these GPUs")
            if placement is not None:
                bn = placement.bottleneck
                if bn.level is LinkLevel.SYS:
                    crossing = numa.crosses(topo, gpus)  # by NUMA affinity: a SYS hop inside one node is not
                    code, where = (("socket-crossing", "span CPU sockets") if crossing
                                   else ("sys-within-numa", "share one NUMA node") if crossing is False
                                   else ("ring-bottleneck", "have unknown NUMA affinity"))
                    findings.append(Finding(Severity.WARNING, code, f"{_gpus_text(gpus)} {where}: the ring's "
                                            f"worst hop is SYS (~{bound:g} GB/s in the model)"))
                elif bn.level in (LinkLevel.PHB, LinkLevel.NODE):
                    findings.append(Finding(Severity.INFO, "host-bridge", f"the ring's worst hop is {bn.token}: "
                                            "traffic between these GPUs goes through the CPU's PCIe root complex"))
                if best is not None and best.bottleneck.rank < bn.rank:
                    findings.append(Finding(
                        Severity.INFO, "tighter-set-exists",
                        f"placement: {_gpus_text(best.gpus)} would ring at {best.bottleneck.token}"
                        + (f" (~{best_expected:g} GB/s)" if best_expected is not None else "")
                        + f" instead of {bn.token}"))
            findings.extend(_nic_findings(log, topo, host, gpus))
        elif gpus is not None:
            note = "fewer than two GPUs on the host: no ring"
    measured = peak.busbw if peak is not None else None
    verdict, ratio = _verdict(measured, expected)
    if verdict is Verdict.FAR_BELOW and not log.hops and not log.env:
        findings.append(Finding(Severity.INFO, "no-transport-lines", "the log has no NCCL INFO lines: rerun with "
                                "NCCL_DEBUG=INFO to see whether the ring uses P2P, SHM or the network"))
    if verdict is Verdict.ABOVE:
        findings.append(Finding(Severity.INFO, "above-model", "the run beats the bandwidth model: it "
                                "underestimates this hardware (unknown facts taken low, NVLS, a fast socket link)"))
    if section is not None:
        findings.extend(_section_findings(section, log, nranks))
    findings.extend(tfind)
    names = tuple(dict.fromkeys(r.name for r in section.ranks)) if section is not None else ()
    return RunAudit(
        test=section.test if section is not None else None, ranks=nranks, hosts=hosts, gpu_names=names,
        peak_busbw=measured, peak_size=peak.size if peak is not None else None,
        avg_busbw=section.avg_busbw if section is not None else None, host=host, gpus=gpus, mapping=mapping,
        placement=placement, expected=expected, expected_note=note, best=best, best_expected=best_expected,
        verdict=verdict, ratio=ratio, transports=counts, findings=findings,
    )


def analyse(log: NcclLog, topo: Topology | None = None, gpus: Sequence[int] | None = None) -> tuple[
        list[RunAudit], list[Finding]]:
    """Audit every all-reduce section of ``log``; the second value holds log-wide findings.

    A log with NCCL lines but no result table gets one audit of its NCCL lines alone.
    """
    general: list[Finding] = []
    chosen = [s for s in log.sections if _is_all_reduce(s)]
    skipped = [s for s in log.sections if s not in chosen]
    if skipped:
        names = sorted({s.test or "unnamed" for s in skipped})
        general.append(Finding(Severity.INFO, "other-tests", f"{len(skipped)} section(s) of other tests skipped: "
                               f"{', '.join(names)}"))
    solo = [s for s in chosen if len({r.rank for r in s.ranks}) == 1]
    if len(solo) >= 2 and len({s.ranks[0].host for s in solo}) > 1:
        general.append(Finding(Severity.ERROR, "separate-runs", f"{len(solo)} one-rank runs on different hosts: the "
                               "processes did not form one communicator (nccl-tests built without MPI=1?)"))
    runs = [_audit(log, s, topo, gpus) for s in chosen if s not in solo]
    if not runs and solo:
        runs = [_audit(log, solo[0], topo, gpus)]
        runs[0].findings.append(Finding(Severity.INFO, "single-rank", "one rank: all_reduce moves no data between "
                                        "GPUs, so its bus bandwidth says nothing about the links"))
    elif not runs and (log.hops or log.rings or log.env or log.networks or log.comms):
        runs = [_audit(log, None, topo, gpus)]
    return runs, general


def _placement(p: Placement | None) -> dict[str, Any] | None:
    return None if p is None else {"gpus": list(p.gpus), "ring": list(p.ring), "bottleneck": p.bottleneck.token}


def to_dict(runs: Sequence[RunAudit], general: Sequence[Finding]) -> dict[str, Any]:
    """The JSON contract of ``gputopo audit nccl --json`` (docs/audit.md)."""
    return {
        "runs": [
            {
                "test": r.test, "ranks": r.ranks, "hosts": list(r.hosts), "gpu_names": list(r.gpu_names),
                "peak_busbw_gbps": r.peak_busbw, "peak_size_bytes": r.peak_size, "avg_busbw_gbps": r.avg_busbw,
                "host": r.host, "gpus": None if r.gpus is None else list(r.gpus), "gpu_mapping": r.mapping,
                "ring": _placement(r.placement), "expected_busbw_gbps": r.expected, "expected_note": r.expected_note,
                "tightest_on_node": _placement(r.best), "tightest_on_node_busbw_gbps": r.best_expected,
                "verdict": r.verdict.value, "measured_over_expected": r.ratio, "transports": r.transports,
                "findings": [f.as_dict() for f in r.findings],
            }
            for r in runs
        ],
        "findings": [f.as_dict() for f in general],
    }
