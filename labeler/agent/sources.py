"""The two inputs of the agent, as small injected interfaces.

Why protocols: the agent loop must be testable (and benchmarkable) without a
GPU or a kubelet. The real implementations (NVML / nvidia-smi / sysfs probing
and the kubelet pod-resources client, in :mod:`labeler.discovery`) are adapted
to these shapes in :mod:`labeler.agent.factory`; tests pass fakes that raise
the same errors the real sources raise.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from labeler.topology.model import Topology

__all__ = ["AllocationSource", "FileProber", "ProbeOutcome", "Prober"]


@dataclass(frozen=True)
class ProbeOutcome:
    """A probed topology; ``degraded`` explains why it is only partly trustworthy.

    A degraded outcome (e.g. a GPU fell off the bus, so the topology lists only
    the healthy ones) is still published, with status ``degraded`` and the
    reason as the status-reason annotation.
    """

    topology: Topology
    degraded: str | None = None


class Prober(Protocol):
    """Probes the node's hardware.

    Raises :class:`~labeler.topology.errors.NoGpuError` when there is no NVIDIA
    GPU or driver, :class:`~labeler.topology.errors.ProbeError` for any other
    failure; never anything else on purpose.
    """

    def probe(self) -> ProbeOutcome: ...


class AllocationSource(Protocol):
    """Which GPUs (by index) are assigned to which pod (``namespace/name``).

    Receives the current topology so device IDs (GPU or MIG UUIDs) can be mapped
    back to indices. Raises :class:`~labeler.topology.errors.ProbeError` (or
    ``SourceUnavailable``) when the kubelet cannot be asked.
    """

    def used(self, topology: Topology) -> Mapping[int, str]: ...


@dataclass(frozen=True)
class FileProber:
    """Reads a saved ``nvidia-smi topo -m`` output; for ``--topology-file`` (demos, dry runs, tests).

    The file is re-read on every probe, so editing it is a hardware change.
    """

    path: Path

    def probe(self) -> ProbeOutcome:
        from labeler.topology import smi_parser  # the parser is only needed in this mode
        from labeler.topology.errors import ProbeError, TopologyParseError

        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            raise ProbeError(f"cannot read topology file {self.path}: {err.strerror or err}") from err
        try:
            return ProbeOutcome(smi_parser.parse(text, source=str(self.path)))
        except TopologyParseError as err:
            raise ProbeError(f"topology file {self.path}: {err}") from err
