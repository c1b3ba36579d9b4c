"""The discrete-event loop: arrivals (and departures), one policy, one seed.

Per arrival: the fit filter (same for every policy), the tightest ring level
any feasible node could offer a multi-GPU pod (for the alignment metric), the
policy's node choice, the device model's GPU choice, the bind. A pod that no
node can take, or that kubelet would refuse (device plugin failure), fails
and is not retried (FGD's replay does the same). Departures free exactly what
the pod's binding took.

Per placed pod the record keeps what the metrics need: the ring bottleneck of
the GPUs it got, the best level and the best predicted bandwidth any feasible
node offered at arrival, the predicted ring bandwidth of its GPUs
(:mod:`policy.bandwidth`, the audits' figure), whether the set spans sockets, and the best
prediction of any free set on the node it went to: the device model picked a
worse set when its GPUs predict less (the device-plugin gap, by bandwidth).
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from labeler.topology import numa, placement
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology
from policy import bandwidth
from simulator.gpu_choice import AdmissionError, WholeChoice, choose_share, choose_whole
from simulator.model import PodSpec
from simulator.policies import NodeChooser, fit_filter
from simulator.state import ClusterState

__all__ = ["BW_TOLERANCE", "PodRecord", "RunResult", "run"]

#: two predictions within 0.1 % are equal (they are rounded to 1 MB/s; products of rates are not exact)
BW_TOLERANCE = 0.999

Progress = Callable[[int], None]


@dataclass(slots=True)
class PodRecord:
    name: str
    kind: str
    gpus: int  # whole GPUs (0 for shares and CPU-only pods)
    share: bool
    milli: int  # total milli-GPU requested
    placed: bool = False
    reason: str | None = None  # why it failed: "unschedulable" | "admission"
    node: int = -1
    level: int | None = None  # LinkLevel of the ring bottleneck of the GPUs it got (multi-GPU pods)
    best_level: int | None = None  # tightest level any feasible node offered at arrival
    busbw_gbps: float | None = None
    cross_socket: bool | None = None
    best_busbw_gbps: float | None = None  # the best prediction of a free k-set any feasible node offered at arrival
    node_best_busbw_gbps: float | None = None  # ... on the node it went to (the set gputopo scores there)
    dp_worse: bool | None = None  # the in-node choice predicts less than the node's best free set
    topology: str = ""  # the node's topology (file stem): the machine class


@dataclass(slots=True)
class RunResult:
    policy: str
    seed: int
    records: list[PodRecord]
    arrived_milli: np.ndarray  # cumulative GPU request after each arrival (FGD's "arrived")
    allocated_milli: np.ndarray  # allocated milli-GPU after each arrival
    capacity_milli: int
    seconds: float
    departures: bool
    time_avg_alloc_pct: float | None = None
    extra: dict[str, float] = field(default_factory=dict)


class _Topologies:
    """Per-node topology index and memoised ring facts (by topology, GPU set)."""

    def __init__(self, state: ClusterState) -> None:
        ids: dict[Topology, int] = {}
        self.topos: list[Topology] = []
        idx = []
        for n in state.nodes:
            if n.topo not in ids:
                ids[n.topo] = len(self.topos)
                self.topos.append(n.topo)
            idx.append(ids[n.topo])
        self.index = np.array(idx, dtype=np.int64)
        self.placers = [placement.placer_for(t) for t in self.topos]
        self.numa = [numa.group(t) for t in self.topos]  # for the one "crosses sockets" predicate
        self.names = [t.source.rsplit(".", 1)[0] or f"{len(t.gpus)}-gpu" for t in self.topos]
        self._best: dict[tuple[int, int, int], int | None] = {}
        self._best_bw: dict[tuple[int, int, int], float | None] = {}
        self._set: dict[tuple[int, int], tuple[int, float | None, bool | None, tuple[int, int]]] = {}

    def best_level(self, t: int, free_mask: int, k: int) -> int | None:
        key = (t, free_mask, k)
        if key not in self._best:
            best = self.placers[t].best_mask(free_mask, k)
            self._best[key] = None if best is None else int(best.level)
        return self._best[key]

    def best_busbw(self, t: int, free_mask: int, k: int) -> float | None:
        """The best predicted busbw of a free k-set (memoised)."""
        key = (t, free_mask, k)
        if key not in self._best_bw:
            self._best_bw[key] = bandwidth.best_free_busbw(self.topos[t], free_mask, k)
        return self._best_bw[key]

    def ring(self, t: int, positions: Sequence[int]) -> tuple[int, float | None, bool | None, tuple[int, int]]:
        """(level, busbw, the ring crosses CPU sockets (None: unknown), bottleneck rank) of exactly this GPU set.

        The ring crosses sockets when its bottleneck is SYS and its GPUs sit on more than one NUMA node
        (:func:`labeler.topology.numa.crosses`: NUMA affinity, the links only where it is unknown), as
        ``gputopo audit cluster`` counts it: a SYS ring inside one NUMA node (board 032) is not a
        crossing, nor is an NVLink ring whose GPUs hang off two sockets.
        """
        mask = 0
        for p in positions:
            mask |= 1 << p
        hit = self._set.get((t, mask))
        if hit is None:
            topo = self.topos[t]
            gpus = [topo.gpus[p].index for p in positions]
            ring = bandwidth.ring(topo, gpus)
            assert ring is not None
            link = ring.bottleneck
            cross = False if link.level is not LinkLevel.SYS else numa.crosses(topo, gpus, self.numa[t])
            hit = self._set[(t, mask)] = (int(link.level), bandwidth.expected_busbw(topo, gpus), cross, link.rank)
        return hit


def run(
    nodes_state: ClusterState,
    pods: Sequence[PodSpec],
    chooser: NodeChooser,
    seed: int,
    *,
    whole_choice: WholeChoice,
    departures: bool = False,
    progress: Progress | None = None,
    check_every: int = 0,
) -> RunResult:
    """Replay ``pods`` (in arrival order) with one policy; ``check_every`` > 0 checks the accounting that often."""
    state = nodes_state
    topos = _Topologies(state)
    rng = np.random.default_rng([seed, 1])  # tie-breaking and random choices
    prng = random.Random(seed * 1_000_003 + 7)  # kubelet's device offer order
    model_masks: dict[tuple[str, ...], np.ndarray] = {}
    records: list[PodRecord] = []
    arrived: list[int] = []
    allocated: list[int] = []
    arrived_total = 0
    where: dict[str, tuple[PodSpec, int]] = {}
    events: list[tuple[float, int, int, int]] = []  # (time, 0=departure first | 1=arrival, seq, pod index)
    for i, p in enumerate(pods):
        heapq.heappush(events, (p.arrival, 1, i, i))
    area = 0.0
    last_t = pods[0].arrival if pods else 0.0
    start = time.perf_counter()
    done = 0
    while events:
        t, kind, _, i = heapq.heappop(events)
        if departures:
            area += state.allocated_milli * (t - last_t)
            last_t = t
        pod = pods[i]
        if kind == 0:
            placed = where.pop(pod.name, None)
            if placed is not None:
                state.release(pod.name)
                chooser.released(pod, placed[1])
            continue
        rec = PodRecord(pod.name, pod.kind, pod.whole_gpus, pod.is_share, pod.total_milli)
        records.append(rec)
        arrived_total += pod.total_milli
        feasible = fit_filter(state, pod, model_masks)
        k = pod.whole_gpus
        if k >= 2:
            idx = np.flatnonzero(feasible)
            if idx.size:
                codes = np.unique((topos.index[idx] << 32) | state.free_mask[idx])
                levels = [topos.best_level(int(c >> 32), int(c & 0xFFFFFFFF), k) for c in codes]
                found = [lv for lv in levels if lv is not None]
                rec.best_level = min(found) if found else None
                bws = [topos.best_busbw(int(c >> 32), int(c & 0xFFFFFFFF), k) for c in codes]
                offered = [b for b in bws if b is not None]
                rec.best_busbw_gbps = max(offered) if offered else None
        node = chooser.select(pod, feasible, rng)
        if node is None:
            rec.reason = "unschedulable"
        else:
            try:
                if pod.is_share:
                    row = state.milli_left[node]
                    gpus: tuple[int, ...] = (choose_share(row, pod.gpu_milli, chooser.share_choice, prng),)
                elif k:
                    free = state.free_positions(node)
                    gpus = choose_whole(state.nodes[node].topo, free, k, whole_choice, prng)
                else:
                    gpus = ()
            except AdmissionError:
                rec.reason = "admission"
            else:
                t_i = int(topos.index[node])
                rec.topology = topos.names[t_i]
                if k >= 2:
                    free_before = int(state.free_mask[node])
                    level, bw, cross, _ = topos.ring(t_i, gpus)
                    best = topos.best_busbw(t_i, free_before, k)
                    rec.level, rec.busbw_gbps, rec.cross_socket = level, bw, cross
                    rec.node_best_busbw_gbps = best
                    rec.dp_worse = best is not None and bw is not None and bw < best * BW_TOLERANCE
                state.allocate(pod, node, gpus)
                chooser.bound(pod, node)
                rec.placed, rec.node = True, node
                where[pod.name] = (pod, node)
                if departures and pod.departure is not None:
                    heapq.heappush(events, (pod.departure, 0, len(pods) + i, i))
        arrived.append(arrived_total)
        allocated.append(state.allocated_milli)
        done += 1
        if check_every and done % check_every == 0:
            state.check()
        if progress is not None:
            progress(1)
    seconds = time.perf_counter() - start
    span = last_t - (pods[0].arrival if pods else 0.0)
    avg = None
    if departures and span > 0 and state.capacity_milli:
        avg = 100.0 * area / (span * state.capacity_milli)
    return RunResult(chooser.name, seed, records, np.array(arrived, dtype=np.int64),
                     np.array(allocated, dtype=np.int64), state.capacity_milli, seconds, departures, avg)
