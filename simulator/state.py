"""The cluster's allocations as numpy arrays, with the accounting invariants checked.

Why arrays: kube-scheduler scores every feasible node for every pod; with
~1,200 nodes and ~10,000 pods per run the per-node work must be vectorised.
Each node row holds allocatable and requested CPU/memory (both the plain sums
and kube-scheduler's *non-zero* sums, which count a missing request as 100m CPU
and 200 MiB), whole GPUs requested (the ``nvidia.com/gpu`` scalar), and
milli-GPU left per GPU (FGD's model of GPU sharing: a whole-GPU pod needs GPUs
with all 1000 milli left; a share needs one GPU with enough left).

GPUs are addressed by *position* in ``topo.gpus`` (the Placer's and the
extender's bit order); ``free_mask`` has a bit per fully free GPU.

Every allocation is recorded as a :class:`Binding`; releasing gives back
exactly what the binding took. :meth:`ClusterState.check` recomputes every
aggregate from the bindings and raises on any difference (tests call it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from simulator.model import MILLI, NodeSpec, PodSpec

__all__ = ["DEFAULT_MEMORY_MIB", "DEFAULT_MILLI_CPU", "Binding", "ClusterState", "nonzero_requests"]

#: kube-scheduler's defaults for a container without a request (pkg/scheduler/util: DefaultMilliCPURequest,
#: DefaultMemoryRequest = 200 MB as 200*1024*1024 bytes), used by NodeResourcesFit's scoring.
DEFAULT_MILLI_CPU = 100
DEFAULT_MEMORY_MIB = 200


def nonzero_requests(pod: PodSpec) -> tuple[int, int]:
    """(CPU milli, memory MiB) with kube-scheduler's non-zero defaults (one container per pod)."""
    return (pod.cpu_milli or DEFAULT_MILLI_CPU, pod.memory_mib or DEFAULT_MEMORY_MIB)


@dataclass(frozen=True, slots=True)
class Binding:
    """What one pod took on one node."""

    pod: str
    node: int
    gpus: tuple[int, ...]  # positions
    milli: int  # per GPU
    cpu: int
    mem: int
    cpu_nz: int
    mem_nz: int
    whole: int  # GPUs counted as the nvidia.com/gpu scalar


class ClusterState:
    """Allocatable and requested resources per node (vectors) and the bindings behind them."""

    def __init__(self, nodes: Sequence[NodeSpec]) -> None:
        if not nodes:
            raise ValueError("a cluster needs at least one node")
        self.nodes = tuple(nodes)
        n = len(nodes)
        self.max_gpus = max(1, max(s.gpus for s in nodes))
        self.cpu_cap = np.array([s.cpu_milli for s in nodes], dtype=np.int64)
        self.mem_cap = np.array([s.memory_mib for s in nodes], dtype=np.int64)
        self.gpu_cap = np.array([s.gpus for s in nodes], dtype=np.int64)
        self.cpu_req = np.zeros(n, dtype=np.int64)
        self.mem_req = np.zeros(n, dtype=np.int64)
        self.cpu_nz = np.zeros(n, dtype=np.int64)
        self.mem_nz = np.zeros(n, dtype=np.int64)
        self.gpu_req = np.zeros(n, dtype=np.int64)
        self.milli_left = np.full((n, self.max_gpus), -1, dtype=np.int64)
        for i, s in enumerate(nodes):
            self.milli_left[i, : s.gpus] = MILLI
        self.full_free = self.gpu_cap.copy()
        self.max_left = np.where(self.gpu_cap > 0, MILLI, -1).astype(np.int64)
        self.milli_total_left = self.gpu_cap * MILLI
        self.free_mask = np.array([(1 << s.gpus) - 1 for s in nodes], dtype=np.int64)
        self.capacity_milli = int(self.gpu_cap.sum()) * MILLI
        self.allocated_milli = 0
        self.bindings: dict[str, Binding] = {}

    def __len__(self) -> int:
        return len(self.nodes)

    # -- changes ----------------------------------------------------------------------------
    def allocate(self, pod: PodSpec, node: int, gpus: Sequence[int]) -> Binding:
        """Bind ``pod`` to ``node`` on GPU positions ``gpus``; raises if anything does not fit."""
        if pod.name in self.bindings:
            raise ValueError(f"pod {pod.name} is already bound")
        gpus = tuple(int(g) for g in gpus)
        if len(gpus) != pod.num_gpu or len(set(gpus)) != len(gpus):
            raise ValueError(f"pod {pod.name} needs {pod.num_gpu} distinct GPUs, got {gpus}")
        cpu_nz, mem_nz = nonzero_requests(pod)
        if self.cpu_req[node] + pod.cpu_milli > self.cpu_cap[node]:
            raise ValueError(f"pod {pod.name}: CPU does not fit on node {node}")
        if self.mem_req[node] + pod.memory_mib > self.mem_cap[node]:
            raise ValueError(f"pod {pod.name}: memory does not fit on node {node}")
        row = self.milli_left[node]
        for g in gpus:
            if not 0 <= g < self.nodes[node].gpus:
                raise ValueError(f"pod {pod.name}: GPU position {g} does not exist on node {node}")
            if row[g] < pod.gpu_milli or (pod.gpu_milli == MILLI and row[g] != MILLI):
                raise ValueError(f"pod {pod.name}: GPU {g} of node {node} has {row[g]} milli left")
        b = Binding(pod.name, node, gpus, pod.gpu_milli, pod.cpu_milli, pod.memory_mib, cpu_nz, mem_nz,
                    pod.whole_gpus)
        self._apply(b, +1)
        self.bindings[pod.name] = b
        return b

    def release(self, pod_name: str) -> Binding:
        """Give back exactly what the pod's binding took."""
        b = self.bindings.pop(pod_name)
        self._apply(b, -1)
        return b

    def _apply(self, b: Binding, sign: int) -> None:
        i = b.node
        self.cpu_req[i] += sign * b.cpu
        self.mem_req[i] += sign * b.mem
        self.cpu_nz[i] += sign * b.cpu_nz
        self.mem_nz[i] += sign * b.mem_nz
        self.gpu_req[i] += sign * b.whole
        if b.gpus:
            for g in b.gpus:
                self.milli_left[i, g] -= sign * b.milli
            self.allocated_milli += sign * b.milli * len(b.gpus)
            self._refresh_gpus(i)

    def _refresh_gpus(self, i: int) -> None:
        row = self.milli_left[i, : self.nodes[i].gpus]
        full = row == MILLI
        self.full_free[i] = int(full.sum())
        self.max_left[i] = int(row.max()) if row.size else -1
        self.milli_total_left[i] = int(row.sum())
        mask = 0
        for p in np.flatnonzero(full):
            mask |= 1 << int(p)
        self.free_mask[i] = mask

    # -- views ------------------------------------------------------------------------------
    def free_positions(self, i: int) -> list[int]:
        """Fully free GPU positions of node ``i``, ascending."""
        return [int(p) for p in np.flatnonzero(self.milli_left[i, : self.nodes[i].gpus] == MILLI)]

    # -- invariants -------------------------------------------------------------------------
    def check(self) -> None:
        """Recompute every aggregate from the bindings; AssertionError on any difference."""
        n = len(self.nodes)
        cpu = np.zeros(n, dtype=np.int64)
        mem = np.zeros(n, dtype=np.int64)
        cpu_nz = np.zeros(n, dtype=np.int64)
        mem_nz = np.zeros(n, dtype=np.int64)
        whole = np.zeros(n, dtype=np.int64)
        used = np.zeros_like(self.milli_left)
        total = 0
        for b in self.bindings.values():
            cpu[b.node] += b.cpu
            mem[b.node] += b.mem
            cpu_nz[b.node] += b.cpu_nz
            mem_nz[b.node] += b.mem_nz
            whole[b.node] += b.whole
            for g in b.gpus:
                used[b.node, g] += b.milli
                if b.milli == MILLI and used[b.node, g] != MILLI:
                    raise AssertionError(f"GPU {g} of node {b.node} given whole to {b.pod} and shared with others")
            total += b.milli * len(b.gpus)
        for name, got, want in (("cpu", self.cpu_req, cpu), ("memory", self.mem_req, mem),
                                ("cpu non-zero", self.cpu_nz, cpu_nz), ("memory non-zero", self.mem_nz, mem_nz),
                                ("nvidia.com/gpu", self.gpu_req, whole)):
            if not np.array_equal(got, want):
                raise AssertionError(f"{name} requested differs from the bindings' sum")
        if (cpu > self.cpu_cap).any() or (mem > self.mem_cap).any():
            raise AssertionError("CPU or memory over-committed")
        for i, s in enumerate(self.nodes):
            row = self.milli_left[i]
            if not np.array_equal(row[: s.gpus], MILLI - used[i, : s.gpus]):
                raise AssertionError(f"node {i}: milli-GPU left differs from the bindings")
            if (row[: s.gpus] < 0).any():
                raise AssertionError(f"node {i}: a GPU is allocated beyond 1000 milli")
            if (row[s.gpus :] != -1).any() or (used[i, s.gpus :] != 0).any():
                raise AssertionError(f"node {i}: a GPU position beyond the node's GPUs is in use")
        if total != self.allocated_milli or self.allocated_milli > self.capacity_milli:
            raise AssertionError("allocated milli-GPU differs from the bindings or exceeds capacity")
        cap = self.gpu_cap * MILLI
        if not np.array_equal(self.milli_total_left, cap - used.sum(axis=1)):
            raise AssertionError("milli-GPU left per node differs from the bindings")
