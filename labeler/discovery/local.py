"""Probe this machine: NVML, `nvidia-smi` and sysfs, merged. Used by ``gputopo audit`` with no FILE.

Why every source is optional: images differ (no pynvml, no nvidia-smi binary, /sys
not mounted), and one missing source must not hide what the others know. What is
*not* optional is a working driver: with neither NVML nor `nvidia-smi` answering there
is no GPU the node can use, so :class:`NoGpuError` is raised with one clear line that
says what each source found (the CLI prints it and exits non-zero, no traceback).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labeler.discovery import merge as merge_mod
from labeler.discovery import nvml as nvml_source
from labeler.discovery import smi as smi_source
from labeler.discovery import sysfs as sysfs_source
from labeler.discovery.facts import Finding, Health, NvLinkState, ProbeResult, Severity
from labeler.discovery.merge import MergeResult
from labeler.discovery.smi import Runner, subprocess_runner
from labeler.discovery.sysfs import SysfsFacts
from labeler.topology.errors import NoGpuError, ProbeError, SourceUnavailable, TopologyParseError
from labeler.topology.findings import gpu_set
from labeler.topology.model import Topology

__all__ = ["NodeFacts", "nvlink_state_findings", "probe_local", "probe_local_topology", "render_report"]


@dataclass(frozen=True)
class NodeFacts:
    """Everything one local probe learned: merged topology, per-source results, failures."""

    merged: MergeResult
    nvml: ProbeResult | None
    smi: Topology | None
    sysfs: SysfsFacts | None
    source_errors: dict[str, str] = field(default_factory=dict)

    @property
    def topology(self) -> Topology:
        return self.merged.topology

    @property
    def degraded(self) -> bool:
        """A GPU is lost/erroring, or a present source failed (absent sources are fine)."""
        if self.nvml is not None and self.nvml.degraded:
            return True
        return any(not msg.startswith("unavailable:") for msg in self.source_errors.values())


def probe_local(
    *,
    nvml_module: nvml_source.NvmlApi | None = None,
    runner: Runner = subprocess_runner,
    sysfs_root: str | os.PathLike[str] = "/",
    smi_timeout: float = smi_source.DEFAULT_TIMEOUT_S,
    use: tuple[str, ...] = (nvml_source.SOURCE, smi_source.SOURCE, sysfs_source.SOURCE),
) -> NodeFacts:
    """Run each source in ``use``, merge what answered. Raises :class:`NoGpuError`."""
    errors: dict[str, str] = {}
    nv: ProbeResult | None = None
    smi: Topology | None = None
    sysfs: SysfsFacts | None = None

    def note(name: str, err: Exception) -> None:
        kind = "unavailable" if isinstance(err, SourceUnavailable | NoGpuError) else "failed"
        msg = str(err)
        for prefix in (f"{name}: ", f"{name.upper()}: "):
            msg = msg.removeprefix(prefix)
        errors[name] = f"{kind}: {msg}"

    if nvml_source.SOURCE in use:
        try:
            nv = nvml_source.probe(nvml_module)
        except ProbeError as err:
            note(nvml_source.SOURCE, err)
    if smi_source.SOURCE in use:
        try:
            smi = smi_source.probe(runner, timeout=smi_timeout)
        except (ProbeError, TopologyParseError) as err:
            note(smi_source.SOURCE, err)
    if sysfs_source.SOURCE in use:
        try:
            sysfs = sysfs_source.probe(sysfs_root)
        except ProbeError as err:
            note(sysfs_source.SOURCE, err)

    if nv is None and (smi is None or not smi.gpus):
        seen = len(sysfs.gpus) if sysfs is not None else 0
        said = "; ".join(f"{k}: {v}" for k, v in errors.items())
        if seen:
            raise NoGpuError(f"{seen} NVIDIA GPU(s) on the PCI bus but no working driver ({said})")
        raise NoGpuError(f"no NVIDIA GPU found on this machine ({said or 'no source enabled'})")
    merged = merge_mod.merge(nv, smi, sysfs)
    return NodeFacts(merged, nv, smi, sysfs, errors)


def probe_local_topology(**kwargs: Any) -> Topology:
    """Just the merged topology of this machine (see :func:`probe_local`)."""
    return probe_local(**kwargs).topology


def render_report(facts: NodeFacts) -> list[Finding]:
    """What the probe knows beyond the merged topology, as findings (the audit adds them to its report).

    Provenance (which sources answered) and a source that is simply not installed are
    *information*; a degraded probe, a failing source, an unusable GPU, NVLinks down
    (NVML's per-link state), a pending MIG change and disagreements between sources
    (``conflict-<kind>``) are warnings/errors. P2P, PCIe training and MIG mode are facts
    of the merged topology and reported from it (:mod:`labeler.topology.node_findings`).
    """
    out: list[Finding] = [Finding(Severity.INFO, "sources", f"sources: {', '.join(facts.merged.sources)}")]
    if facts.degraded:
        out.append(Finding(Severity.WARNING, "degraded", "probe DEGRADED: a GPU is unusable or a source failed"))
    for name, msg in facts.source_errors.items():
        unavailable = msg.startswith("unavailable:")
        out.append(Finding(Severity.INFO if unavailable else Severity.WARNING, "source", f"source {name} {msg}"))
    nv = facts.nvml
    if nv is not None:
        for h in nv.health:
            if h.status is not Health.OK:
                where = f" at {h.bus_id}" if h.bus_id else ""
                out.append(Finding(Severity.ERROR, f"gpu-{h.status.value}", (
                    f"GPU{h.index}{where} is {h.status.value}: {h.detail} (left out of the topology)"), h.index))
        if nv.p2p and all(p.read == "OK" and p.write == "OK" for p in nv.p2p):
            out.append(Finding(Severity.INFO, "p2p-ok", f"P2P read/write OK for all {len(nv.p2p)} GPU pairs"))
        out.extend(nvlink_state_findings(nv.nvlink, facts.topology))
        for m in nv.mig:
            if m.current != m.pending:
                now, then = ("enabled", "disabled") if m.current else ("disabled", "enabled")
                out.append(Finding(Severity.WARNING, "mig-pending", (
                    f"GPU{m.gpu}: MIG mode change pending a GPU reset (MIG {now} now, {then} after the reset): "
                    "what the node serves changes at the next reset"), m.gpu))
    out.extend(f for f in facts.merged.findings if f.code.startswith("conflict-"))
    out.extend(f for f in facts.merged.findings if f.code.startswith("numa") and f.severity is Severity.INFO)
    return out


def nvlink_state_findings(states: Sequence[NvLinkState], topo: Topology) -> list[Finding]:
    """NVLinks down, judged against GPUs of the same model (NVML's per-link state; ``nvlink-down``).

    A link NVML reports as present but inactive is down when another GPU of the same
    model has more links active (on a board every GPU is wired alike). When no GPU of a
    model has any link active, that is a setup, not a fault: no bridge fitted on PCIe
    cards, or (NVSwitch boards) the fabric manager is not running (``nvlink-inactive``).
    """
    names = {g.index: g.name for g in topo.gpus}
    by_model: dict[str | None, list[NvLinkState]] = {}
    for st in states:
        by_model.setdefault(names.get(st.gpu), []).append(st)
    out: list[Finding] = []
    for model, group in by_model.items():
        most = max(len(st.active) for st in group)
        if most == 0:
            present = max(len(st.inactive) for st in group)
            out.append(Finding(Severity.INFO, "nvlink-inactive", (
                f"{gpu_set(st.gpu for st in group)}: NVLink present ({present} links each) but none active: no "
                "NVLink bridge fitted (PCIe cards), or on an NVSwitch board the fabric manager is not running")))
            continue
        low: dict[int, list[NvLinkState]] = {}
        for st in group:
            if st.inactive and len(st.active) < most:
                low.setdefault(len(st.active), []).append(st)
        others = gpu_set(st.gpu for st in group if len(st.active) == most)
        for n, sts in sorted(low.items()):
            down = "; ".join(f"GPU{st.gpu} link{'s' if len(st.inactive) > 1 else ''} "
                             f"{', '.join(map(str, st.inactive))}" for st in sts)
            cut = " (cut off the NVLink fabric: its traffic falls back to PCIe)" if n == 0 else ""
            out.append(Finding(Severity.WARNING, "nvlink-down", (
                f"{gpu_set(st.gpu for st in sts)}: {n} of {most} NVLinks active where {others} "
                f"({model or 'same model'}) have {most}; down: {down}{cut}. Rings through them lose bandwidth: "
                "check with `nvidia-smi nvlink -s` and the field diagnostic")))
    return out
