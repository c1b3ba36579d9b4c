"""The FGD paper's topology-blind baselines, as its simulator scores them.

Read from ``hkust-adsl/kubernetes-scheduler-simulator`` (``8f3d641``),
``pkg/simulator/plugin/best_fit_score.go``, ``random_score.go``,
``plugin_utils.go`` (``NormalizeScore``) and ``open_gpu_share.go`` (GPU choice).
Their runs disable every default score plugin and enable one of these at
weight 1000, so the node with the highest normalised score wins and ties go
to kube-scheduler's random pick.

- **BestFit**: ``Σ_i w_i (free_i − request_i) / maxSpec_i`` over (CPU milli,
  GPU milli) with weights 0.5/0.5 and maxSpec 128,000 / 8,000, scaled to
  ``int64((1 − s) × 100)``, then min-max normalised to 0..100 with integer
  division. Free CPU is allocatable − requested (plain requests); the pod's
  CPU is its non-zero request; free GPU is the node's total milli-GPU left.
- **Random**: one feasible node chosen uniformly (its PreScore picks it, Score
  gives it 100 and the rest 0).

GPU choice inside the node (``allocateGpuIdBasedOn*``): a share goes to the
tightest GPU that fits (BestFit, lowest index among equals) or to a uniformly
random one that fits (Random); whole GPUs are the lowest-index fully free ones.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from simulator.kubesched import MAX_NODE_SCORE, go_div

__all__ = ["MAX_SPEC_CPU", "MAX_SPEC_GPU", "best_fit_scores", "normalize"]

MAX_SPEC_CPU = 128_000  # gpushareutils.MaxSpecCpu (milli-CPU)
MAX_SPEC_GPU = 8_000  # gpushareutils.MaxSpecGpu (milli-GPU)

IntArray = npt.NDArray[np.int64]


def best_fit_scores(cpu_left: IntArray, milli_left: IntArray, pod_cpu_nz: int, pod_milli: int) -> IntArray:
    """Raw BestFit score per node (before normalisation); higher is a tighter fit."""
    s = (cpu_left - pod_cpu_nz) / MAX_SPEC_CPU * 0.5 + (milli_left - pod_milli) / MAX_SPEC_GPU * 0.5
    return np.trunc((1.0 - s) * MAX_NODE_SCORE).astype(np.int64)


def normalize(scores: IntArray) -> IntArray:
    """FGD's ``NormalizeScore``: min-max to 0..100 with Go's integer division; all equal → 0."""
    if scores.size == 0:
        return scores
    lo, hi = int(scores.min()), int(scores.max())
    if hi == lo:
        return np.zeros_like(scores)
    return go_div((scores - lo) * MAX_NODE_SCORE, hi - lo)
