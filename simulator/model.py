"""What the simulator places and where: pods and nodes as small immutable records.

Why the FGD representation of GPU requests (``num_gpu`` × ``gpu_milli``): the
Alibaba openb trace and the FGD simulator express GPU sharing that way, and the
credibility check compares against their numbers. A whole-GPU pod asks for
``num_gpu`` GPUs at 1000 milli each; a sharing pod asks for one GPU at
``gpu_milli < 1000``; a CPU-only pod asks for none.

How a pod reaches Kubernetes in the model (``docs/placement.md``): whole-GPU
pods request ``nvidia.com/gpu: num_gpu`` (so the gputopo extender, whose
``managedResources`` is ``nvidia.com/gpu``, is consulted); sharing pods request
a GPU-share resource instead (Alibaba's gpushare scheme, as FGD models it), so
the extender is not consulted for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from labeler.topology.model import Topology

__all__ = ["MILLI", "NodeSpec", "PodSpec"]

#: milli-GPU in one GPU (FGD's unit for GPU sharing)
MILLI = 1000


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of the fleet: its real topology and its allocatable CPU and memory."""

    name: str
    topo: Topology
    cpu_milli: int
    memory_mib: int
    model: str = ""  # GPU model ("G2", "V100M32", "H100"...): what a pod's gpu_spec selects on
    labels: Mapping[str, str] = field(default_factory=dict)  # extra node labels (zone, rack)

    @property
    def gpus(self) -> int:
        return len(self.topo.gpus)


@dataclass(frozen=True, slots=True)
class PodSpec:
    """One pod to place, with when it arrives and (optionally) when it leaves."""

    name: str
    kind: str  # the metrics group: "1gpu", "share", "train-4gpu", "vllm-tp2"...
    cpu_milli: int
    memory_mib: int
    num_gpu: int = 0
    gpu_milli: int = 0  # per GPU: 1000 for whole GPUs, < 1000 for a share, 0 without GPU
    gpu_spec: tuple[str, ...] = ()  # allowed GPU models; empty = any
    job: str | None = None  # PyTorchJob name (workers of one job share it)
    replica: int | None = None  # worker index within the job
    tensor_parallel: int | None = None  # vLLM TP size (inference pods)
    required: bool = False  # gputopo.io/placement=required
    arrival: float = 0.0
    departure: float | None = None  # None: stays until the end

    def __post_init__(self) -> None:
        if self.cpu_milli < 0 or self.memory_mib < 0 or self.num_gpu < 0:
            raise ValueError(f"pod {self.name}: negative request")
        if self.num_gpu == 0 and self.gpu_milli != 0:
            raise ValueError(f"pod {self.name}: gpu_milli without num_gpu")
        if self.num_gpu > 0 and not 0 < self.gpu_milli <= MILLI:
            raise ValueError(f"pod {self.name}: gpu_milli must be 1..{MILLI} with num_gpu > 0")
        if self.num_gpu > 1 and self.gpu_milli != MILLI:
            raise ValueError(f"pod {self.name}: a GPU share is one GPU (num_gpu=1)")

    @property
    def is_share(self) -> bool:
        """A fraction of one GPU (GPU sharing)."""
        return self.num_gpu == 1 and self.gpu_milli < MILLI

    @property
    def whole_gpus(self) -> int:
        """GPUs requested as ``nvidia.com/gpu`` (0 for sharing and CPU-only pods)."""
        return self.num_gpu if self.gpu_milli == MILLI else 0

    @property
    def total_milli(self) -> int:
        return self.num_gpu * self.gpu_milli
