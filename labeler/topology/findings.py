"""Findings: what a person should know about a node, each with a severity and a stable code.

Why one record for every producer: the topology report (:mod:`labeler.topology.report`),
the discovery sources (NVML health, PCIe training, conflicts between sources) and the
audit CLI all say things about one node. One type lets the audit sort them into
*warnings* (act on it) and *information* (provenance, expected states) and lets
machines match on ``code`` instead of message text.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from labeler.topology.serialize import format_cpulist

__all__ = ["Finding", "Severity", "gpu_set", "pairs_text"]


class Severity(enum.StrEnum):
    INFO = "info"  # provenance, expected states ("sources: nvml, sysfs", PCIe Gen1 at idle)
    WARNING = "warning"  # placement or bandwidth is worse than the hardware could give
    ERROR = "error"  # a GPU is unusable (lost, reset required)


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a person should know about the node, with a stable machine code."""

    severity: Severity
    code: str  # e.g. "cross-numa", "sys-within-numa", "pcie-width-downtrained", "gpu-lost", "conflict-nvlink"
    message: str
    gpu: int | None = None

    @property
    def is_warning(self) -> bool:
        return self.severity is not Severity.INFO

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"severity": self.severity.value, "code": self.code, "message": self.message}
        if self.gpu is not None:
            out["gpu"] = self.gpu
        return out


def gpu_set(gpus: Iterable[int]) -> str:
    """``GPU0-3``, ``GPU0,2,5``, ``GPU4``: a set of GPUs in cpulist notation, as findings name them.

    >>> gpu_set([0, 1, 2, 3]), gpu_set([0, 2, 5]), gpu_set([4]), gpu_set([0, 1, 4, 5, 6])
    ('GPU0-3', 'GPU0,2,5', 'GPU4', 'GPU0-1,4-6')
    """
    return "GPU" + format_cpulist(set(gpus))


def pairs_text(n: int) -> str:
    """``1 GPU pair``, ``6 GPU pairs``."""
    return f"{n} GPU pair" + ("" if n == 1 else "s")
