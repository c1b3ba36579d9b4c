"""Probe this machine: NVML, `nvidia-smi` and sysfs, merged. Used by ``gputopo audit`` with no FILE.

Why every source is optional: images differ (no pynvml, no nvidia-smi binary, /sys
not mounted), and one missing source must not hide what the others know. What is
*not* optional is a working driver: with neither NVML nor `nvidia-smi` answering there
is no GPU the node can use, so :class:`NoGpuError` is raised with one clear line that
says what each source found (the CLI prints it and exits non-zero, no traceback).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from labeler.discovery import merge as merge_mod
from labeler.discovery import nvml as nvml_source
from labeler.discovery import smi as smi_source
from labeler.discovery import sysfs as sysfs_source
from labeler.discovery.facts import Finding, Health, ProbeResult, Severity
from labeler.discovery.merge import MergeResult
from labeler.discovery.smi import Runner, subprocess_runner
from labeler.discovery.sysfs import SysfsFacts
from labeler.topology.errors import NoGpuError, ProbeError, SourceUnavailable, TopologyParseError
from labeler.topology.model import Topology

__all__ = ["NodeFacts", "probe_local", "probe_local_topology", "render_report"]


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

    Provenance (which sources answered), expected states (PCIe below its maximum
    generation at idle, MIG mode, a source that is simply not installed) are
    *information*; a degraded probe, a failing source and an unusable GPU are
    warnings/errors. P2P, PCIe width training and conflicts between sources are
    facts of the merged topology and reported from it (:mod:`labeler.topology.report`).
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
        low = [f"GPU{st.gpu}" for st in nv.pcie if st.gen_below_max and not st.width_downtrained]
        if low:
            out.append(Finding(Severity.INFO, "pcie-gen-below-max", (
                f"PCIe below max generation (normal at idle): {', '.join(low)}")))
        if nv.p2p and all(p.read == "OK" and p.write == "OK" for p in nv.p2p):
            out.append(Finding(Severity.INFO, "p2p-ok", f"P2P read/write OK for all {len(nv.p2p)} GPU pairs"))
        for m in nv.mig:
            if m.current or m.pending:
                state = "enabled" if m.current else "disabled"
                change = " (change pending reset)" if m.current != m.pending else ""
                out.append(Finding(Severity.INFO, "mig", (
                    f"GPU{m.gpu} MIG {state}{change}, {len(m.mig_uuids)} MIG device(s)"), m.gpu))
    out.extend(f for f in facts.merged.findings if f.code.startswith("numa") and f.severity is Severity.INFO)
    return out
