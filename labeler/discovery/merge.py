"""Merge NVML, `nvidia-smi` and sysfs into one topology, with provenance and conflicts.

Why never silently pick: when sources disagree the node is telling us something
(a BIOS that hides a switch, a card moved to another slot, a VM, a stale paste).
The merged topology uses a documented precedence, and every disagreement becomes a
:class:`Conflict` naming each source's value and the one used.

Precedence (first known value wins):

========================  =====================================================
fact                      order
========================  =====================================================
GPU set and indices       NVML, then nvidia-smi, then sysfs (PCI bus order)
name, UUID                NVML
CPU / NUMA affinity       NVML, nvidia-smi, sysfs (``local_cpulist``/``numa_node``)
GPU↔GPU cell              NVML, nvidia-smi, sysfs (sysfs cannot see NVLink)
GPU↔NIC, NIC↔NIC cells    nvidia-smi, sysfs (NVML does not list NICs)
arch, cc, NVLink version  NVML (nothing else reports them; never derived from the name)
PCIe link of a GPU        NVML, sysfs (``current_link_*``/``max_link_*``)
P2P status per GPU pair   NVML
NIC link rate             sysfs (InfiniBand port rate, else netdev speed)
========================  =====================================================

GPU identity across sources is the normalised PCI bus id. `nvidia-smi topo -m` prints
no bus ids, so its GPU *i* is NVML's GPU *i* (both use the driver's enumeration), or
without NVML, the *i*-th NVIDIA GPU in PCI bus order (the driver's default order).
NICs are matched by device name (``mlx5_3``).

Conflicts are checked on comparable facts only: NVLink counts (NVML vs smi) and the
PCIe level (NVML's common ancestor, smi cells that are not NVLink, the sysfs tree), and
the maximum PCIe generation/width of a GPU (NVML vs sysfs; the current values legitimately
differ between two reads, as the link retrains with load).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from labeler.discovery import nvml as nvml_source
from labeler.discovery import smi as smi_source
from labeler.discovery import sysfs as sysfs_source
from labeler.discovery.facts import Finding, Health, ProbeResult, Severity, normalize_bus_id
from labeler.discovery.sysfs import SysfsFacts
from labeler.topology.errors import NoGpuError
from labeler.topology.links import SELF, Link, LinkLevel
from labeler.topology.model import P2P, Gpu, Nic, PcieLink, Topology
from labeler.topology.serialize import format_cpulist

__all__ = ["Conflict", "MergeResult", "conflict_findings", "merge"]


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two or more sources disagree on one fact."""

    subject: str  # "GPU0-GPU1", "GPU2-NIC0", "GPU3.numa_affinity", "GPU@0000:3b:00.0"
    kind: str  # "nvlink", "pcie-level", "cpu-affinity", "numa-affinity", "gpu-set", "nic-set"
    values: tuple[tuple[str, str], ...]  # (source, value) for each source that said something
    chosen: str
    chosen_from: str

    def describe(self) -> str:
        said = ", ".join(f"{s}={v}" for s, v in self.values)
        return f"{self.subject}: {self.kind} disagrees ({said}); using {self.chosen} from {self.chosen_from}"


@dataclass(frozen=True)
class MergeResult:
    topology: Topology
    conflicts: tuple[Conflict, ...]
    provenance: dict[str, str] = field(compare=False)  # subject → source of the value used
    findings: tuple[Finding, ...] = ()
    sources: tuple[str, ...] = ()


@dataclass
class _G:
    key: str  # normalised bus id, or "idx:N" when no source knew it
    index: int
    from_source: str
    nvml: Gpu | None = None
    smi: Gpu | None = None
    sysfs: Gpu | None = None


def _pcie_token(link: Link | None) -> str | None:
    return None if link is None or link.level in (LinkLevel.SELF, LinkLevel.NVLINK) else link.token


def _fmt(value: frozenset[int] | None) -> str | None:
    return None if value is None else format_cpulist(value)


def merge(
    nvml: ProbeResult | None = None,
    smi: Topology | None = None,
    sysfs: SysfsFacts | None = None,
) -> MergeResult:
    """One topology from whichever sources answered (at least one must have a GPU)."""
    conflicts: list[Conflict] = []
    prov: dict[str, str] = {}
    findings: list[Finding] = list(nvml.findings) if nvml else []
    sources = tuple(
        n
        for n, s in ((nvml_source.SOURCE, nvml), (smi_source.SOURCE, smi), (sysfs_source.SOURCE, sysfs))
        if s is not None
    )

    lost = {h.bus_id for h in (nvml.health if nvml else ()) if h.status is not Health.OK and h.bus_id}
    sys_gpus = [g for g in (sysfs.topology.gpus if sysfs else ()) if g.bus_id not in lost]
    sys_by_bus = {normalize_bus_id(g.bus_id): g for g in sys_gpus if g.bus_id}

    gpus: list[_G] = []
    if nvml is not None:
        for g in nvml.topology.gpus:
            key = normalize_bus_id(g.bus_id) if g.bus_id else f"idx:{g.index}"
            gpus.append(_G(key, g.index, nvml_source.SOURCE, nvml=g, sysfs=sys_by_bus.get(key)))
    elif smi is not None and smi.gpus:
        ordered = sorted(sys_by_bus.items())
        for pos, g in enumerate(smi.gpus):
            bus = normalize_bus_id(g.bus_id) if g.bus_id else (ordered[pos][0] if pos < len(ordered) else None)
            gpus.append(_G(bus or f"idx:{g.index}", g.index, smi_source.SOURCE, sysfs=sys_by_bus.get(bus or "")))
    else:
        for g in sys_gpus:
            gpus.append(_G(normalize_bus_id(g.bus_id or ""), g.index, sysfs_source.SOURCE, sysfs=g))
    if not gpus:
        raise NoGpuError("no source reported an NVIDIA GPU")
    if smi is not None:
        smi_by_index = {g.index: g for g in smi.gpus}
        for entry in gpus:
            entry.smi = smi_by_index.get(entry.index)
        extra = sorted(set(smi_by_index) - {g.index for g in gpus})
        if extra or len(smi.gpus) != len(gpus):
            conflicts.append(
                Conflict(
                    "GPUs",
                    "gpu-set",
                    (
                        (smi_source.SOURCE, ",".join(map(str, sorted(smi_by_index)))),
                        (gpus[0].from_source, ",".join(str(g.index) for g in gpus)),
                    ),
                    ",".join(str(g.index) for g in gpus),
                    gpus[0].from_source,
                )
            )
    known = {g.key for g in gpus}
    for bus in sorted(sys_by_bus):
        if bus not in known and gpus[0].from_source != sysfs_source.SOURCE:
            conflicts.append(
                Conflict(
                    f"GPU@{bus}",
                    "gpu-set",
                    ((sysfs_source.SOURCE, "present"), (gpus[0].from_source, "absent")),
                    "absent",
                    gpus[0].from_source,
                )
            )

    out_gpus = [_merge_gpu(g, conflicts, prov) for g in gpus]
    nic_names, nic_smi, nic_sys = _match_nics(smi, sysfs, conflicts)
    rates = {n.name: n.rate_mbps for n in sysfs.nics} if sysfs else {}
    out_nics = [Nic(column=f"NIC{i}", device=name, rate_mbps=rates.get(name)) for i, name in enumerate(nic_names)]
    p2p: list[list[P2P | None]] = []
    if nvml is not None and nvml.topology.p2p:
        p2p = [
            [None if a is b else nvml.topology.gpu_p2p(a.index, b.index) if a.nvml and b.nvml else None for b in gpus]
            for a in gpus
        ]

    # -- links ---------------------------------------------------------------------------
    n_g = len(gpus)
    labels = [f"GPU{g.index}" for g in gpus] + [f"NIC{i}" for i in range(len(nic_names))]
    rows: list[list[Link | None]] = [[None] * len(labels) for _ in labels]
    for i in range(len(labels)):
        rows[i][i] = SELF
    smi_pos = {g.index: p for p, g in enumerate(smi.gpus)} if smi else {}
    sys_pos = {g.bus_id and normalize_bus_id(g.bus_id): p for p, g in enumerate(sysfs.topology.gpus)} if sysfs else {}

    def smi_ep(i: int) -> int | None:
        if i < n_g:
            return smi_pos.get(gpus[i].index)
        p = nic_smi[i - n_g]
        return None if p is None or smi is None else len(smi.gpus) + p

    def sys_ep(i: int) -> int | None:
        if i < n_g:
            return sys_pos.get(gpus[i].key)
        p = nic_sys[i - n_g]
        return None if p is None or sysfs is None else len(sysfs.topology.gpus) + p

    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            cands: list[tuple[str, Link]] = []
            if i < n_g and j < n_g and nvml is not None:
                nl = nvml.topology.gpu_link(gpus[i].index, gpus[j].index)
                if nl is not None:
                    cands.append((nvml_source.SOURCE, nl))
            si, sj = smi_ep(i), smi_ep(j)
            if smi is not None and si is not None and sj is not None and smi.links[si][sj] is not None:
                cands.append((smi_source.SOURCE, smi.links[si][sj]))  # type: ignore[arg-type]
            yi, yj = sys_ep(i), sys_ep(j)
            if sysfs is not None and yi is not None and yj is not None and sysfs.topology.links[yi][yj] is not None:
                cands.append((sysfs_source.SOURCE, sysfs.topology.links[yi][yj]))  # type: ignore[arg-type]
            if not cands:
                continue
            src, link = cands[0]
            rows[i][j] = rows[j][i] = link
            subject = f"{labels[i]}-{labels[j]}"
            prov[subject] = src
            _link_conflicts(subject, cands, nvml, gpus, i, j, n_g, conflicts)

    topo = Topology.from_rows(out_gpus, out_nics, rows, source="+".join(sources), p2p=p2p)
    findings.extend(conflict_findings(conflicts))
    if sysfs is not None:
        findings.extend(sysfs.findings)
    return MergeResult(topo, tuple(conflicts), prov, tuple(findings), sources)


#: per conflict kind: what the sources disagree on, what a subject is, and what usually causes it
_CONFLICT_CAUSES: dict[str, tuple[str, str, str]] = {
    "nvlink": ("the NVLink count of", "link", "a link that went down between two reads, or a stale saved output"),
    "pcie-level": ("the PCIe level of", "link", "the driver's and the kernel's view of the PCIe tree differ: a "
                   "BIOS or ACS setting, a VM, or a card moved since the saved output"),
    "cpu-affinity": ("the CPU affinity of", "GPU", "BIOS NUMA settings (NPS, SNC) changed, or a VM's virtual NUMA"),
    "numa-affinity": ("the NUMA node of", "GPU", "BIOS NUMA settings (NPS, SNC) changed, or a VM's virtual NUMA"),
    "gpu-set": ("which GPUs exist", "", "a GPU on the bus the driver does not use (fallen off, or bound to vfio)"),
    "nic-set": ("which NICs exist", "", "NICs without RDMA in one source, or named differently"),
    "pcie-link": ("the maximum PCIe link of", "GPU", "the sources read GPU and slot capability differently"),
}


def conflict_findings(conflicts: Sequence[Conflict]) -> list[Finding]:
    """One warning per kind and set of sources (``conflict-<kind>``), naming up to three subjects."""
    groups: dict[tuple[str, tuple[str, ...]], list[Conflict]] = {}
    for c in conflicts:
        groups.setdefault((c.kind, tuple(s for s, _ in c.values)), []).append(c)
    out = []
    for (kind, srcs), group in groups.items():
        what, noun, cause = _CONFLICT_CAUSES.get(kind, (kind, "", "sources disagree"))
        shown = "; ".join(
            f"{c.subject}: " + ", ".join(f"{s}={v}" for s, v in c.values) for c in group[:3]
        ) + ("; …" if len(group) > 3 else "")
        count = f" {len(group)} {noun}{'s' if len(group) > 1 else ''}" if noun else ""
        out.append(Finding(Severity.WARNING, f"conflict-{kind}", (
            f"{_and(srcs)} disagree on {what}{count} ({shown}); using {_used(group[0].chosen_from)}. "
            f"Likely cause: {cause}")))
    return out


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _used(source: str) -> str:
    return "the union of both" if source == "union" else f"{source}'s"


def _link_conflicts(
    subject: str,
    cands: Sequence[tuple[str, Link]],
    nvml: ProbeResult | None,
    gpus: Sequence[_G],
    i: int,
    j: int,
    n_g: int,
    conflicts: list[Conflict],
) -> None:
    chosen_src, chosen = cands[0]
    nv = [(s, str(link.nvlinks) if link.level is LinkLevel.NVLINK else "none") for s, link in cands if s != "sysfs"]
    if len({v for _, v in nv}) > 1:
        conflicts.append(Conflict(subject, "nvlink", tuple(nv), chosen.token, chosen_src))
    pcie: list[tuple[str, str]] = []
    for s, link in cands:
        tok = _pcie_token(link)
        if s == nvml_source.SOURCE and nvml is not None and i < n_g and j < n_g:
            a, b = sorted((gpus[i].index, gpus[j].index))
            tok = nvml.pcie_levels.get((a, b), tok)
        if tok is not None:
            pcie.append((s, tok))
    if len({v for _, v in pcie}) > 1:
        conflicts.append(Conflict(subject, "pcie-level", tuple(pcie), chosen.token, chosen_src))


def _merge_gpu(g: _G, conflicts: list[Conflict], prov: dict[str, str]) -> Gpu:
    label = f"GPU{g.index}"
    named = [(nvml_source.SOURCE, g.nvml), (smi_source.SOURCE, g.smi), (sysfs_source.SOURCE, g.sysfs)]

    def pick(attr: str, kind: str | None) -> frozenset[int] | None:
        vals = [(s, getattr(x, attr)) for s, x in named if x is not None and getattr(x, attr) is not None]
        if not vals:
            return None
        prov[f"{label}.{attr}"] = vals[0][0]
        if kind is not None and len({v for _, v in vals}) > 1:
            shown = tuple((s, _fmt(v) or "") for s, v in vals)
            conflicts.append(Conflict(f"{label}.{attr}", kind, shown, shown[0][1], vals[0][0]))
        return vals[0][1]  # type: ignore[no-any-return]

    cpus = pick("cpu_affinity", "cpu-affinity")
    numa = pick("numa_affinity", "numa-affinity")
    gpu_numa = next((x.gpu_numa_id for _, x in named if x is not None and x.gpu_numa_id is not None), None)
    bus = g.key if not g.key.startswith("idx:") else None
    prov[label] = g.from_source
    return Gpu(
        index=g.index,
        name=g.nvml.name if g.nvml else (g.smi.name if g.smi else None),
        bus_id=bus,
        uuid=g.nvml.uuid if g.nvml else None,
        cpu_affinity=cpus,
        numa_affinity=numa,
        gpu_numa_id=gpu_numa,
        arch=g.nvml.arch if g.nvml else None,
        cc=g.nvml.cc if g.nvml else None,
        nvlink_version=g.nvml.nvlink_version if g.nvml else None,
        pcie=_merge_pcie(label, g, conflicts, prov),
        mig=g.nvml.mig if g.nvml else None,
    )


def _merge_pcie(label: str, g: _G, conflicts: list[Conflict], prov: dict[str, str]) -> PcieLink | None:
    """NVML's link, else sysfs'; a disagreement on the *maximum* generation or width is a conflict."""
    said = [(s, x.pcie) for s, x in ((nvml_source.SOURCE, g.nvml), (sysfs_source.SOURCE, g.sysfs))
            if x is not None and x.pcie is not None]
    if not said:
        return None
    src, chosen = said[0]
    prov[f"{label}.pcie"] = src
    maxima = [(s, f"Gen{link.max_gen} x{link.max_width}") for s, link in said
              if link.max_gen is not None and link.max_width is not None]
    if len({v for _, v in maxima}) > 1:
        conflicts.append(Conflict(f"{label}.pcie", "pcie-link", tuple(maxima), maxima[0][1], maxima[0][0]))
    return chosen


def _match_nics(
    smi: Topology | None, sysfs: SysfsFacts | None, conflicts: list[Conflict]
) -> tuple[list[str], list[int | None], list[int | None]]:
    """NIC names in output order, and each one's position in the smi / sysfs NIC lists."""
    smi_names = [n.device or n.column for n in smi.nics] if smi else []
    sys_names = [n.device or n.column for n in sysfs.topology.nics] if sysfs else []
    if smi and sysfs and smi.nics and all(n.device is None for n in smi.nics) and len(smi.nics) == len(sys_names):
        smi_names = list(sys_names)  # no NIC Legend: columns are in the driver's (= name) order
    names = list(smi_names) + [n for n in sys_names if n not in smi_names]
    if smi is not None and sysfs is not None and smi.nics and set(smi_names) != set(sys_names):
        conflicts.append(
            Conflict(
                "NICs",
                "nic-set",
                ((smi_source.SOURCE, ",".join(smi_names)), (sysfs_source.SOURCE, ",".join(sys_names))),
                ",".join(names),
                "union",
            )
        )
    smi_pos = [smi_names.index(n) if n in smi_names else None for n in names]
    sys_pos = [sys_names.index(n) if n in sys_names else None for n in names]
    return names, smi_pos, sys_pos
