"""From pod records to the numbers people compare: per run, per pod kind, and means over seeds.

- ``unallocated_gpu_pct``: FGD's metric. After each arrival, the allocation
  rate is allocated milli-GPU / capacity; the arrived rate is the cumulative
  GPU request of all arrived pods (placed or not) / capacity, rounded to a
  whole percent. The value is 100 − the mean allocation rate over the
  arrivals whose arrived rate rounds to 100 % (if none, those within ±1 %),
  as ``experiments/analysis/merge_alloc_discrete.py`` computes it. Not
  defined with departures (``None``).
- ``aligned_pct``: of the placed multi-GPU pods, the share whose GPUs form a
  ring at the tightest link level any feasible node could have offered when
  the pod arrived.
- ``bw_aligned_pct``: of the placed multi-GPU pods, the share whose GPUs predict
  at least the best bandwidth any free set of any feasible node offered when
  the pod arrived (within 0.1 %): aligned by the bandwidth model rather than by
  link level (an NV1 ring on a DGX-1 is "NVLink" but 12× slower than an
  NVSwitch board's).
- ``cross_socket_pct``: of the placed multi-GPU pods (but those whose NUMA
  grouping is unknown), the share whose ring crosses CPU sockets: a SYS
  bottleneck and GPUs on more than one NUMA node
  (:func:`labeler.topology.numa.crosses`), as ``gputopo audit cluster`` counts
  it; a SYS ring inside one NUMA node does not count.
- ``busbw_gbps``: mean predicted ring bandwidth of the placed multi-GPU pods
  (:func:`policy.bandwidth.expected_busbw`); ``busbw_per_gpu_gbps``: the
  same weighted by the pods' GPUs (what a GPU of a multi-GPU pod gets).
- ``failed_pods``: pods no node could take, or that kubelet would refuse (the
  whole run, up to 130 % of capacity arrived); ``failed_before_full``: those
  that failed while the arrived GPU request was still within capacity.
- ``dp_worse_pct``: of the placed multi-GPU pods, the share whose GPUs (the
  in-node choice: the device plugin) predict less bandwidth than the best free
  set on that node, the set gputopo scores (the device-plugin gap);
  ``dp_gap_by_topology`` gives it per machine class with the mean ratio of
  what such pods got to what the best set predicts.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from simulator.engine import PodRecord, RunResult

__all__ = ["HEADLINE", "aggregate", "run_metrics", "unallocated_at_full"]

HEADLINE: tuple[str, ...] = (
    "unallocated_gpu_pct",
    "aligned_pct",
    "bw_aligned_pct",
    "cross_socket_pct",
    "busbw_gbps",
    "busbw_per_gpu_gbps",
    "failed_pods",
    "failed_before_full",
    "dp_worse_pct",
)


_KIND_KEYS = ("pods", "placed", "failed_pods", "aligned_pct", "bw_aligned_pct", "cross_socket_pct", "busbw_gbps",
              "busbw_per_gpu_gbps", "dp_worse_pct")
_BW_TOLERANCE = 0.999  # engine.BW_TOLERANCE


def unallocated_at_full(arrived: np.ndarray, allocated: np.ndarray, capacity: int) -> float | None:
    """FGD's unallocated-GPU % at arrived = 100 % of capacity (module docstring)."""
    if capacity <= 0 or arrived.size == 0:
        return None
    arr = np.round(arrived / capacity * 100.0)
    alloc = np.round(allocated / capacity * 100.0, 2)
    at = alloc[arr == 100]
    if at.size == 0:
        at = alloc[(arr >= 99) & (arr <= 101)]
    if at.size == 0:
        return None
    return round(100.0 - float(round(float(at.mean()), 2)), 4)


def _pct(num: int, den: int) -> float | None:
    return None if den == 0 else 100.0 * num / den


def _group(records: Iterable[PodRecord]) -> dict[str, Any]:
    recs = list(records)
    multi = [r for r in recs if r.placed and r.gpus >= 2]
    aligned = sum(1 for r in multi if r.level is not None and r.best_level is not None and r.level <= r.best_level)
    bws = [r.busbw_gbps for r in multi if r.busbw_gbps is not None]
    judged = [(r.busbw_gbps, r.best_busbw_gbps) for r in multi
              if r.busbw_gbps is not None and r.best_busbw_gbps is not None]
    bw_aligned = sum(1 for got, best in judged if got >= best * _BW_TOLERANCE)
    weighted = [(r.gpus, r.busbw_gbps) for r in multi if r.busbw_gbps is not None]
    gpus = sum(g for g, _ in weighted)
    return {
        "pods": len(recs),
        "placed": sum(r.placed for r in recs),
        "failed_pods": sum(not r.placed for r in recs),
        "multi_gpu_placed": len(multi),
        "aligned_pct": _pct(aligned, len(multi)),
        "bw_aligned_pct": _pct(bw_aligned, len(judged)),
        "cross_socket_pct": _pct(sum(1 for r in multi if r.cross_socket),
                                 sum(1 for r in multi if r.cross_socket is not None)),
        "busbw_gbps": statistics.fmean(bws) if bws else None,
        "busbw_per_gpu_gbps": sum(g * b for g, b in weighted) / gpus if gpus else None,
        "dp_worse_pct": _pct(sum(1 for r in multi if r.dp_worse), len(multi)),
    }


def dp_gap_by_topology(records: Iterable[PodRecord]) -> dict[str, dict[str, float | int | None]]:
    """Per machine class: placed multi-GPU pods, the % whose GPUs predict less than the node's best free set,
    and the mean ratio got / best among those (the device-plugin gap where it happens)."""
    rows: dict[str, list[PodRecord]] = {}
    for r in records:
        if r.placed and r.gpus >= 2 and r.busbw_gbps is not None and r.node_best_busbw_gbps:
            rows.setdefault(r.topology, []).append(r)
    out: dict[str, dict[str, float | int | None]] = {}
    for topo, recs in sorted(rows.items()):
        worse = [r for r in recs if r.dp_worse]
        out[topo] = {
            "pods": len(recs),
            "worse": len(worse),
            "worse_pct": _pct(len(worse), len(recs)),
            "ratio_when_worse": statistics.fmean(r.busbw_gbps / r.node_best_busbw_gbps  # type: ignore[operator]
                                                 for r in worse) if worse else None,
        }
    return out


def run_metrics(result: RunResult) -> dict[str, Any]:
    """Every metric of one run, overall and per pod kind."""
    out = _group(result.records)
    out["unallocated_gpu_pct"] = None
    if not result.departures:
        out["unallocated_gpu_pct"] = unallocated_at_full(result.arrived_milli, result.allocated_milli,
                                                         result.capacity_milli)
    out["allocated_gpu_pct_end"] = 100.0 * float(result.allocated_milli[-1]) / result.capacity_milli if len(
        result.allocated_milli) else 0.0
    out["time_avg_allocated_gpu_pct"] = result.time_avg_alloc_pct
    out["admission_failures"] = sum(1 for r in result.records if r.reason == "admission")
    within = result.arrived_milli <= result.capacity_milli
    out["failed_before_full"] = None if result.departures else sum(
        1 for r, ok in zip(result.records, within, strict=True) if ok and not r.placed)
    kinds = sorted({r.kind for r in result.records})
    out["by_kind"] = {k: _group(r for r in result.records if r.kind == k) for k in kinds}
    out["dp_gap_by_topology"] = dp_gap_by_topology(result.records)
    out["seconds"] = result.seconds
    out["seed"] = result.seed
    return out


def _mean(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.fmean(vals) if vals else None


def _std(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.stdev(vals) if len(vals) > 1 else (0.0 if vals else None)


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Means (and standard deviations) over seeds of one policy's runs."""
    keys = [*HEADLINE, "allocated_gpu_pct_end", "time_avg_allocated_gpu_pct", "admission_failures", "pods", "placed",
            "multi_gpu_placed"]
    out: dict[str, Any] = {k: _mean([r.get(k) for r in runs]) for k in keys}
    out["std"] = {k: _std([r.get(k) for r in runs]) for k in HEADLINE}
    kinds = sorted({k for r in runs for k in r["by_kind"]})
    out["by_kind"] = {
        kind: {k: _mean([r["by_kind"][kind].get(k) for r in runs if kind in r["by_kind"]])
               for k in _KIND_KEYS}
        for kind in kinds
    }
    gaps: dict[str, dict[str, float]] = {}
    for r in runs:
        for topo, row in r.get("dp_gap_by_topology", {}).items():
            acc = gaps.setdefault(topo, {"pods": 0.0, "worse": 0.0, "ratio_sum": 0.0})
            acc["pods"] += row["pods"]
            acc["worse"] += row["worse"]
            acc["ratio_sum"] += (row["ratio_when_worse"] or 0.0) * row["worse"]
    out["dp_gap_by_topology"] = {
        topo: {"pods_per_seed": a["pods"] / len(runs), "worse_pct": _pct(int(a["worse"]), int(a["pods"])),
               "ratio_when_worse": a["ratio_sum"] / a["worse"] if a["worse"] else None}
        for topo, a in sorted(gaps.items())
    }
    out["seeds"] = [r["seed"] for r in runs]
    out["seconds"] = sum(r["seconds"] for r in runs)
    out["per_seed"] = [{k: r.get(k) for k in (*HEADLINE, "seed", "seconds")} for r in runs]
    return out
