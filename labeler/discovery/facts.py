"""Facts a probe learns beyond the link matrix, and the per-source result type.

Why a separate record instead of more fields on :class:`Topology`: the topology is the
shared, serialised contract (labels, annotations, the extender) and must stay small and
stable. Health, PCIe link training, P2P capability, MIG mode and provenance are what a
person auditing a node wants to see, and what the agent uses to decide between
``ok`` and ``degraded``; they live here, next to the topology they describe.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from labeler.topology.findings import Finding, Severity
from labeler.topology.model import Topology

__all__ = [
    "Finding",
    "GpuHealth",
    "Health",
    "MigState",
    "NvLinkState",
    "P2PStatus",
    "PcieLinkState",
    "ProbeResult",
    "Severity",
    "normalize_bus_id",
]


class Health(enum.StrEnum):
    """Per-GPU health as far as discovery can tell (not a replacement for DCGM)."""

    OK = "ok"
    LOST = "lost"  # NVML_ERROR_GPU_IS_LOST: fell off the bus (Xid 79 and friends)
    UNKNOWN_ERROR = "unknown-error"  # NVML_ERROR_UNKNOWN: driver could not say
    RESET_REQUIRED = "reset-required"  # NVML_ERROR_RESET_REQUIRED


@dataclass(frozen=True, slots=True)
class GpuHealth:
    index: int
    bus_id: str | None
    status: Health
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PcieLinkState:
    """Current vs maximum PCIe link of one GPU.

    Width is the reliable signal: a x16 slot that trained at x8 stays at x8. The
    *generation* legitimately drops at idle (GPUs run the link at Gen1 to save power
    and retrain under load), so a lower current generation alone is only ``info``.
    """

    gpu: int
    curr_gen: int | None
    max_gen: int | None
    curr_width: int | None
    max_width: int | None

    @property
    def width_downtrained(self) -> bool:
        return self.curr_width is not None and self.max_width is not None and self.curr_width < self.max_width

    @property
    def gen_below_max(self) -> bool:
        return self.curr_gen is not None and self.max_gen is not None and self.curr_gen < self.max_gen


@dataclass(frozen=True, slots=True)
class P2PStatus:
    """Peer-to-peer capability of one GPU pair, in `nvidia-smi topo -p2p` spelling.

    ``OK`` supported, ``CNS`` chipset not supported, ``GNS`` GPU not supported,
    ``TNS`` topology not supported, ``DIS`` disabled by regkey, ``NS`` not supported,
    ``U`` unknown. ``PIX`` in the matrix does not imply ``OK`` here (consumer GPUs,
    some VMs), which is why this is reported separately.
    """

    a: int
    b: int
    read: str
    write: str
    nvlink: str


@dataclass(frozen=True, slots=True)
class MigState:
    gpu: int
    current: bool
    pending: bool
    mig_uuids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NvLinkState:
    """One GPU's NVLinks as NVML reports them: link numbers active, and present but inactive.

    ``nvmlDeviceGetNvLinkState`` answers ``NVML_FEATURE_ENABLED`` for an active link,
    ``NVML_FEATURE_DISABLED`` for a link the GPU has but that is down (no bridge, a
    failed link, the fabric not up), and an error for a link number the GPU does not have.
    """

    gpu: int
    active: tuple[int, ...]
    inactive: tuple[int, ...]


_BDF = re.compile(r"^(?:([0-9a-fA-F]{1,8}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$")


def normalize_bus_id(bus_id: str) -> str:
    """One spelling for a PCI address: ``dddd:bb:dd.f`` lower case.

    NVML prints an 8-digit domain upper case (``00000000:3B:00.0``), sysfs and
    lspci a 4-digit one (``0000:3b:00.0``); some tools omit the domain.

    >>> normalize_bus_id("00000000:3B:00.0")
    '0000:3b:00.0'
    >>> normalize_bus_id("3b:00.0")
    '0000:3b:00.0'
    """
    m = _BDF.match(bus_id.strip())
    if not m:
        raise ValueError(f"not a PCI bus id: {bus_id!r}")
    domain = int(m.group(1) or "0", 16)
    return f"{domain:04x}:{int(m.group(2), 16):02x}:{int(m.group(3), 16):02x}.{m.group(4)}"


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one source (usually NVML) learned: a topology plus the extra facts.

    ``topology`` holds only healthy GPUs: a lost GPU cannot be placed on, and its
    links are unknowable. Lost GPUs are listed in ``health`` and ``findings``.
    ``pcie_levels`` keeps the PCIe-only level per GPU pair (by index) even where the
    matrix shows NVLink, so merge can cross-check it against the PCIe tree.
    """

    source: str
    topology: Topology
    health: tuple[GpuHealth, ...] = ()
    pcie: tuple[PcieLinkState, ...] = ()
    p2p: tuple[P2PStatus, ...] = ()
    mig: tuple[MigState, ...] = ()
    nvlink: tuple[NvLinkState, ...] = ()
    findings: tuple[Finding, ...] = ()
    pcie_levels: dict[tuple[int, int], str] = field(default_factory=dict, compare=False, hash=False)
    driver_version: str | None = None

    @property
    def degraded(self) -> bool:
        return any(h.status is not Health.OK for h in self.health)

    def uuid_to_index(self) -> dict[str, int]:
        """GPU and MIG UUIDs → GPU index, for mapping kubelet device IDs back to GPUs."""
        out = {g.uuid: g.index for g in self.topology.gpus if g.uuid}
        for m in self.mig:
            for u in m.mig_uuids:
                out[u] = m.gpu
        return out
