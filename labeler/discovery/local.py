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
from labeler.discovery.facts import Health, ProbeResult, Severity
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


def render_report(facts: NodeFacts) -> list[str]:
    """Short human lines about what the matrix does not show. Empty list: nothing to say."""
    lines: list[str] = []
    used = ", ".join(facts.merged.sources)
    lines.append(f"sources: {used}" + (" (DEGRADED)" if facts.degraded else ""))
    for name, msg in facts.source_errors.items():
        lines.append(f"source {name} {msg}")
    nv = facts.nvml
    if nv is not None:
        for h in nv.health:
            if h.status is not Health.OK:
                where = f" at {h.bus_id}" if h.bus_id else ""
                lines.append(f"GPU{h.index}{where} is {h.status.value}: {h.detail} (left out of the topology)")
        for st in nv.pcie:
            if st.width_downtrained:
                lines.append(
                    f"GPU{st.gpu} PCIe trained down: x{st.curr_width} of x{st.max_width}, "
                    f"Gen{st.curr_gen} of Gen{st.max_gen}"
                )
        if any(st.gen_below_max and not st.width_downtrained for st in nv.pcie):
            low = [f"GPU{st.gpu}" for st in nv.pcie if st.gen_below_max and not st.width_downtrained]
            lines.append(f"PCIe below max generation (normal at idle): {', '.join(low)}")
        bad = [p for p in nv.p2p if p.read != "OK" or p.write != "OK"]
        if nv.p2p:
            if bad:
                pairs = ", ".join(f"GPU{p.a}-GPU{p.b} read={p.read} write={p.write}" for p in bad[:8])
                more = f" (+{len(bad) - 8} more)" if len(bad) > 8 else ""
                lines.append(f"P2P not available for {len(bad)} of {len(nv.p2p)} GPU pairs: {pairs}{more}")
            else:
                lines.append(f"P2P read/write OK for all {len(nv.p2p)} GPU pairs")
        for m in nv.mig:
            if m.current or m.pending:
                state = "enabled" if m.current else "disabled"
                change = " (change pending reset)" if m.current != m.pending else ""
                lines.append(f"GPU{m.gpu} MIG {state}{change}, {len(m.mig_uuids)} MIG device(s)")
    for c in facts.merged.conflicts:
        lines.append(f"conflict: {c.describe()}")
    for f in facts.merged.findings:
        if f.code.startswith("numa") and f.severity is Severity.INFO:
            lines.append(f.message)
    return lines
