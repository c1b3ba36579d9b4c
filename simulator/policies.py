"""The four node-choice policies of one simulator run.

- ``gputopo``: :class:`KubeScheduler` with the configuration's extender served
  by :class:`~simulator.gputopo_policy.GputopoPolicy` (the gputopo extender's
  own filter and prioritize decisions, from the policy layer);
- ``default``: kube-scheduler with its own defaults
  (:data:`~simulator.kubesched.KUBE_SCHEDULER_DEFAULTS`), whatever gputopo ships;
- ``bestfit`` / ``random``: FGD's baselines (:mod:`simulator.baselines`).

A policy only picks the node. Every policy sees the same fit filter
(:func:`fit_filter`, computed by the engine) and the device model picks the
GPUs inside the node.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt

from simulator import baselines
from simulator.gpu_choice import ShareChoice
from simulator.gputopo_policy import GputopoPolicy, Workload
from simulator.kubesched import (
    GPU_RESOURCE,
    MAX_EXTENDER_PRIORITY,
    MAX_NODE_SCORE,
    ExtenderConfig,
    SchedulerConfig,
    balanced_allocation,
    fit_score,
    num_feasible_nodes_to_find,
)
from simulator.model import PodSpec
from simulator.state import ClusterState, nonzero_requests

__all__ = [
    "POLICIES",
    "BestFit",
    "KubeScheduler",
    "NodeChooser",
    "RandomFit",
    "fit_filter",
    "pick_max",
    "pod_resources",
]

POLICIES: tuple[str, ...] = ("gputopo", "default", "bestfit", "random")

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def pod_resources(pod: PodSpec) -> tuple[str, ...]:
    """Resource names the pod requests (what an extender's ``managedResources`` is matched against)."""
    names = ["cpu", "memory"]
    if pod.whole_gpus:
        names.append(GPU_RESOURCE)
    return tuple(names)


def fit_filter(state: ClusterState, pod: PodSpec, model_masks: dict[tuple[str, ...], BoolArray]) -> BoolArray:
    """NodeResourcesFit (CPU, memory) + the GPU request (FGD's Open-Gpu-Share rule) + the pod's GPU models."""
    ok: BoolArray = (state.cpu_cap - state.cpu_req >= pod.cpu_milli) & (state.mem_cap - state.mem_req >= pod.memory_mib)
    if pod.whole_gpus:
        ok &= state.full_free >= pod.whole_gpus
    elif pod.num_gpu:
        ok &= state.max_left >= pod.gpu_milli
    if pod.gpu_spec:
        mask = model_masks.get(pod.gpu_spec)
        if mask is None:
            allowed = set(pod.gpu_spec)
            mask = model_masks[pod.gpu_spec] = np.array([n.model in allowed for n in state.nodes], dtype=bool)
        ok &= mask
    return ok


def pick_max(idx: IntArray, total: IntArray, rng: np.random.Generator) -> int:
    """selectHost: the highest total; ties uniformly at random."""
    best = np.flatnonzero(total == total.max())
    return int(idx[best[int(rng.integers(best.size))] if best.size > 1 else best[0]])


class NodeChooser(Protocol):
    name: str
    share_choice: ShareChoice

    def select(self, pod: PodSpec, feasible: BoolArray, rng: np.random.Generator) -> int | None: ...

    def bound(self, pod: PodSpec, node: int) -> None: ...

    def released(self, pod: PodSpec, node: int) -> None: ...


class KubeScheduler:
    """kube-scheduler's cycle for one pod (see :mod:`simulator.kubesched`), optionally with the gputopo extender."""

    share_choice: ShareChoice = "best"

    def __init__(
        self,
        name: str,
        config: SchedulerConfig,
        state: ClusterState,
        extender: GputopoPolicy | None,
        *,
        group_extender: bool = True,
    ) -> None:
        if extender is not None and not config.extenders:
            raise ValueError(f"{config.source}: the scheduler configuration registers no extender")
        self.name = name
        self.config = config if extender is not None else config.without_extenders()
        self.state = state
        self.extender = extender
        self.ext_config: ExtenderConfig | None = self.config.extenders[0] if extender is not None else None
        self.next_start = 0
        self.group_extender = group_extender  # False: ask the extender about every node (the benchmark's floor)
        self.names = [n.name for n in state.nodes]
        self._workloads: dict[str, Workload] = {}
        self.topo_group = np.zeros(len(state), dtype=np.int64)
        if extender is not None:
            groups: dict[tuple[object, ...], int] = {}
            for i, node in enumerate(state.nodes):
                f = extender.add_node(node.name, node.topo, node.labels)
                key = (f.topo_id, f.locality, f.topology_class)
                self.topo_group[i] = groups.setdefault(key, len(groups))

    # -- the scheduling cycle ---------------------------------------------------------------
    def _candidates(self, feasible: BoolArray) -> IntArray:
        n = feasible.shape[0]
        to_find = num_feasible_nodes_to_find(self.config.percentage_of_nodes_to_score, n)
        if to_find >= n:
            return np.flatnonzero(feasible).astype(np.int64)
        order = (self.next_start + np.arange(n)) % n
        hits = np.flatnonzero(feasible[order])
        if hits.size >= to_find:
            hits = hits[:to_find]
            processed = int(hits[-1]) + 1
        else:
            processed = n
        self.next_start = (self.next_start + processed) % n
        found: IntArray = order[hits].astype(np.int64)
        return found

    def _extender_groups(self, idx: IntArray) -> tuple[IntArray, IntArray]:
        """Representatives of nodes with equal (topology, locality, free GPUs) and the map back.

        The extender's answer for a node depends only on those (and the pod), so
        asking once per group and fanning the answer out is exact (tested).
        """
        if not self.group_extender:
            return idx, np.arange(idx.size)
        codes = (self.topo_group[idx] << 32) | self.state.free_mask[idx]
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        return idx[first], inverse.reshape(-1)

    def select(self, pod: PodSpec, feasible: BoolArray, rng: np.random.Generator) -> int | None:
        idx = self._candidates(feasible)
        ext, cfg = self.extender, self.ext_config
        interested = ext is not None and cfg is not None and cfg.is_interested(pod_resources(pod))
        reps = inverse = None
        if interested and ext is not None and cfg is not None and cfg.filter_verb and idx.size:
            reps, inverse = self._extender_groups(idx)
            verdict = np.array(ext.filter(self._workload(pod), [self.names[i] for i in reps]), dtype=bool)
            keep = verdict[inverse]
            idx = idx[keep]
            reps = inverse = None
        if idx.size == 0:
            return None
        if idx.size == 1:
            return int(idx[0])
        total = self._resource_scores(pod, idx)
        if interested and ext is not None and cfg is not None and cfg.prioritize_verb:
            reps, inverse = self._extender_groups(idx)
            w = self._workload(pod)
            rep_scores = np.array(ext.scores(w, [self.names[i] for i in reps]), dtype=np.int64)
            total = total + rep_scores[inverse] * cfg.weight * (MAX_NODE_SCORE // MAX_EXTENDER_PRIORITY)
        return pick_max(idx, total, rng)

    def _workload(self, pod: PodSpec) -> Workload:
        assert self.extender is not None
        w = self._workloads.get(pod.name)
        if w is None:
            w = self._workloads[pod.name] = self.extender.workload(pod)
        return w

    def _vectors(
        self, pod: PodSpec, idx: IntArray, names: tuple[str, ...], nonzero: bool
    ) -> tuple[list[IntArray], list[IntArray]]:
        s = self.state
        cpu_nz, mem_nz = nonzero_requests(pod)
        req, cap = [], []
        zero = np.zeros(idx.size, dtype=np.int64)
        for r in names:
            if r == "cpu":
                cap.append(s.cpu_cap[idx])
                req.append(s.cpu_nz[idx] + cpu_nz if nonzero else s.cpu_req[idx] + pod.cpu_milli)
            elif r == "memory":
                cap.append(s.mem_cap[idx])
                req.append(s.mem_nz[idx] + mem_nz if nonzero else s.mem_req[idx] + pod.memory_mib)
            elif r == GPU_RESOURCE and pod.whole_gpus:
                cap.append(s.gpu_cap[idx])
                req.append(s.gpu_req[idx] + pod.whole_gpus)
            else:  # not modelled, or an extended resource the pod does not request: skipped
                cap.append(zero)
                req.append(zero)
        return req, cap

    def _resource_scores(self, pod: PodSpec, idx: IntArray) -> IntArray:
        cfg = self.config
        total = np.zeros(idx.size, dtype=np.int64)
        if cfg.fit_weight:
            names = tuple(r.name for r in cfg.fit.resources)
            req, cap = self._vectors(pod, idx, names, nonzero=True)
            total += cfg.fit_weight * fit_score(cfg.fit, req, cap)
        if cfg.balanced_weight:
            names = tuple(r.name for r in cfg.balanced_resources)
            asks = {"cpu": pod.cpu_milli, "memory": pod.memory_mib, GPU_RESOURCE: pod.whole_gpus}
            if any(asks.get(n, 0) for n in names):  # a best-effort pod: PreScore returns Skip
                req, cap = self._vectors(pod, idx, names, nonzero=False)
                total += cfg.balanced_weight * balanced_allocation(req, cap)
        return total

    # -- bookkeeping --------------------------------------------------------------------------
    def bound(self, pod: PodSpec, node: int) -> None:
        if self.extender is None:
            return
        self.extender.set_free(self.names[node], int(self.state.free_mask[node]))
        if pod.whole_gpus:
            w = self._workload(pod)
            self.extender.bind(w, self.names[node])

    def released(self, pod: PodSpec, node: int) -> None:
        if self.extender is None:
            return
        self.extender.set_free(self.names[node], int(self.state.free_mask[node]))
        w = self._workloads.pop(pod.name, None)
        if w is not None:
            self.extender.unbind(w)


class BestFit:
    """FGD's BestFit score plugin (weight 1000, the only score plugin)."""

    name = "bestfit"
    share_choice: ShareChoice = "best"

    def __init__(self, state: ClusterState) -> None:
        self.state = state

    def select(self, pod: PodSpec, feasible: BoolArray, rng: np.random.Generator) -> int | None:
        idx = np.flatnonzero(feasible)
        if idx.size <= 1:
            return int(idx[0]) if idx.size else None
        s = self.state
        cpu_nz, _ = nonzero_requests(pod)
        raw = baselines.best_fit_scores(s.cpu_cap[idx] - s.cpu_req[idx], s.milli_total_left[idx], cpu_nz,
                                        pod.num_gpu * pod.gpu_milli)
        return pick_max(idx, baselines.normalize(raw), rng)

    def bound(self, pod: PodSpec, node: int) -> None:
        pass

    def released(self, pod: PodSpec, node: int) -> None:
        pass


class RandomFit:
    """FGD's Random score plugin: one feasible node uniformly at random."""

    name = "random"
    share_choice: ShareChoice = "random"

    def __init__(self, state: ClusterState) -> None:
        self.state = state

    def select(self, pod: PodSpec, feasible: BoolArray, rng: np.random.Generator) -> int | None:
        idx = np.flatnonzero(feasible)
        if idx.size == 0:
            return None
        return int(idx[int(rng.integers(idx.size))])

    def bound(self, pod: PodSpec, node: int) -> None:
        pass

    def released(self, pod: PodSpec, node: int) -> None:
        pass

