"""A model of kube-scheduler's node choice for GPU pods, configured from a KubeSchedulerConfiguration.

Read from kube-scheduler's source (``pkg/scheduler/framework/plugins/noderesources``:
``resource_allocation.go``, ``least_allocated.go``, ``most_allocated.go``,
``requested_to_capacity_ratio.go``, ``balanced_allocation.go``;
``pkg/scheduler/schedule_one.go``; ``apis/config/v1`` defaults), v1.31 era.
Integer arithmetic follows Go's (truncating division), so scores match the
upstream unit tests' hand-worked values (``tests/simulator/test_kubesched.py``).

What is modelled, per pod:

1. **Filter** (vectors over nodes): NodeResourcesFit on CPU and memory, the GPU
   request (whole GPUs free, or one GPU with the share left: FGD's
   Open-Gpu-Share model), and the pod's GPU-model list.
2. ``percentageOfNodesToScore``: the scheduler stops after finding
   ``numFeasibleNodesToFind`` feasible nodes, scanning from where the previous
   cycle stopped (``nextStartNodeIndex``).
3. **Extender filter** for pods the extender is interested in (``managedResources``).
4. One feasible node: taken without scoring (as ``schedulePod`` does).
5. **Score**: NodeResourcesFit (LeastAllocated / MostAllocated /
   RequestedToCapacityRatio with its resources and weights) and
   NodeResourcesBalancedAllocation, each × its plugin weight, plus each
   extender's 0..10 × weight × 10. The other default score plugins
   (TaintToleration, NodeAffinity, PodTopologySpread, InterPodAffinity,
   ImageLocality) give every node the same score in the simulated cluster (no
   taints, affinities, spread constraints or images), so they cannot change
   the choice and are left out.
6. **selectHost**: the highest total; ties broken uniformly at random (seeded).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml

from policy.scoring.base import MAX_SCORE
from simulator.errors import ScenarioError

__all__ = [
    "DEFAULT_SCHEDULER_CONFIG",
    "GPU_RESOURCE",
    "KUBE_SCHEDULER_DEFAULTS",
    "MAX_EXTENDER_PRIORITY",
    "MAX_NODE_SCORE",
    "ExtenderConfig",
    "FitScoring",
    "ResourceSpec",
    "SchedulerConfig",
    "balanced_allocation",
    "broken_linear",
    "fit_score",
    "go_div",
    "load_scheduler_config",
    "num_feasible_nodes_to_find",
]

IntArray = npt.NDArray[np.int64]

MAX_NODE_SCORE = 100  # framework.MaxNodeScore
MAX_EXTENDER_PRIORITY = MAX_SCORE  # extenderv1.MaxExtenderPriority: the policy's one definition
MAX_CUSTOM_PRIORITY_SCORE = 10  # config.MaxCustomPriorityScore (RequestedToCapacityRatio shape scores)
MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5
GPU_RESOURCE = "nvidia.com/gpu"
#: the scheduler configuration gputopo ships (a ConfigMap holding config.yaml); read by path so a move is one line
DEFAULT_SCHEDULER_CONFIG = Path(__file__).resolve().parent.parent / "manifests" / "scheduler" / "configmap.yaml"

Strategy = Literal["LeastAllocated", "MostAllocated", "RequestedToCapacityRatio"]
_STRATEGIES: tuple[Strategy, ...] = ("LeastAllocated", "MostAllocated", "RequestedToCapacityRatio")
_FIT = "NodeResourcesFit"
_BALANCED = "NodeResourcesBalancedAllocation"
#: v1 default score plugins and weights (apis/config/v1/default_plugins.go)
_DEFAULT_SCORE_WEIGHTS: dict[str, int] = {
    "TaintToleration": 3,
    "NodeAffinity": 2,
    _FIT: 1,
    "PodTopologySpread": 2,
    "InterPodAffinity": 2,
    _BALANCED: 1,
    "ImageLocality": 1,
}


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    name: str
    weight: int = 1


@dataclass(frozen=True, slots=True)
class FitScoring:
    """NodeResourcesFitArgs.scoringStrategy; ``shape`` as (utilization 0..100, score 0..10) points."""

    type: Strategy = "LeastAllocated"
    resources: tuple[ResourceSpec, ...] = (ResourceSpec("cpu"), ResourceSpec("memory"))
    shape: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ExtenderConfig:
    url_prefix: str
    filter_verb: str = ""
    prioritize_verb: str = ""
    weight: int = 1
    managed_resources: tuple[str, ...] = ()
    ignorable: bool = False

    def is_interested(self, resources: Sequence[str]) -> bool:
        """``HTTPExtender.IsInterested``: no managed resources means every pod."""
        return not self.managed_resources or any(r in self.managed_resources for r in resources)


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """The parts of one scheduler profile that decide where a GPU pod goes."""

    source: str = "<defaults>"
    profile: str = "default-scheduler"
    percentage_of_nodes_to_score: int | None = None  # None/0: adaptive
    fit_weight: int = 1
    balanced_weight: int = 1
    fit: FitScoring = field(default_factory=FitScoring)
    balanced_resources: tuple[ResourceSpec, ...] = (ResourceSpec("cpu"), ResourceSpec("memory"))
    extenders: tuple[ExtenderConfig, ...] = ()

    def without_extenders(self) -> SchedulerConfig:
        return replace(self, extenders=())


#: kube-scheduler's own scoring (the v1 API defaults: NodeResourcesFit LeastAllocated over cpu and memory,
#: BalancedAllocation over cpu and memory, weights 1), with percentageOfNodesToScore 100 as gputopo's profile sets it,
#: so that the policies differ in how they score, not in which nodes they sample: the `default` policy. Frozen
#: here, not read from the shipped file, so that changing what gputopo ships never moves the baseline.
KUBE_SCHEDULER_DEFAULTS = SchedulerConfig(
    source="kube-scheduler defaults (kubescheduler.config.k8s.io/v1), percentageOfNodesToScore 100",
    percentage_of_nodes_to_score=100)


# -- arithmetic ---------------------------------------------------------------------------
def go_div(a: IntArray, b: IntArray | int) -> IntArray:
    """Go's int64 division (truncates toward zero); ``b`` must be non-zero where used."""
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (np.asarray(b) < 0), -q, q).astype(np.int64)


def broken_linear(shape: Sequence[tuple[int, int]], p: IntArray) -> IntArray:
    """``helper.BuildBrokenLinearFunction``: shape[0] below, shape[-1] above, linear between (Go division)."""
    out = np.full(p.shape, shape[-1][1], dtype=np.int64)
    done = np.zeros(p.shape, dtype=bool)
    for i, (x, y) in enumerate(shape):
        hit = ~done & (p <= x)
        if i == 0:
            out[hit] = y
        else:
            x0, y0 = shape[i - 1]
            out[hit] = y0 + go_div((y - y0) * (p[hit] - x0), x - x0)
        done |= hit
    return out


def num_feasible_nodes_to_find(percentage: int | None, all_nodes: int) -> int:
    """``numFeasibleNodesToFind``: adaptive (50 % − nodes/125, at least 5 %) when unset, never below 100 nodes."""
    if all_nodes < MIN_FEASIBLE_NODES_TO_FIND:
        return all_nodes
    pct = percentage or 0
    if pct == 0:
        pct = max(50 - all_nodes // 125, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    n = all_nodes * pct // 100
    return max(n, MIN_FEASIBLE_NODES_TO_FIND)


def fit_score(scoring: FitScoring, requested: Sequence[IntArray], allocatable: Sequence[IntArray]) -> IntArray:
    """NodeResourcesFit's score per node; ``requested[i]``/``allocatable[i]`` follow ``scoring.resources``.

    An entry with allocatable 0 (the node lacks the resource, or the pod does
    not request an extended resource) is skipped, as ``resourceAllocationScorer.score`` does.
    """
    n = allocatable[0].shape[0] if allocatable else 0
    num = np.zeros(n, dtype=np.int64)
    den = np.zeros(n, dtype=np.int64)
    if scoring.type == "RequestedToCapacityRatio":
        shape = [(u, s * (MAX_NODE_SCORE // MAX_CUSTOM_PRIORITY_SCORE)) for u, s in scoring.shape]
        for spec, req, cap in zip(scoring.resources, requested, allocatable, strict=True):
            present = cap != 0
            safe = np.where(present, cap, 1)
            util = np.where(present & (req <= cap), req * 100 // safe, 100)
            s = broken_linear(shape, util)
            use = present & (s > 0)
            num += np.where(use, s * spec.weight, 0)
            den += np.where(use, spec.weight, 0)
        # math.Round of a non-negative ratio: half away from zero
        ratio = num / np.where(den == 0, 1, den)
        return np.where(den == 0, 0, np.floor(ratio + 0.5)).astype(np.int64)
    for spec, req, cap in zip(scoring.resources, requested, allocatable, strict=True):
        present = cap != 0
        safe = np.where(present, cap, 1)
        if scoring.type == "LeastAllocated":
            s = np.where(req > cap, 0, (cap - req) * MAX_NODE_SCORE // safe)
        else:  # MostAllocated: requested above capacity counts as capacity
            s = np.minimum(req, cap) * MAX_NODE_SCORE // safe
        num += np.where(present, s * spec.weight, 0)
        den += np.where(present, spec.weight, 0)
    return np.where(den == 0, 0, num // np.where(den == 0, 1, den)).astype(np.int64)


def balanced_allocation(requested: Sequence[IntArray], allocatable: Sequence[IntArray]) -> IntArray:
    """NodeResourcesBalancedAllocation: ``(1 − std of the requested/allocatable fractions) × 100``, truncated."""
    if not allocatable:
        return np.zeros(0, dtype=np.int64)
    fr = []
    present = []
    for req, cap in zip(requested, allocatable, strict=True):
        p = cap != 0
        fr.append(np.minimum(np.where(p, req / np.where(p, cap, 1), 0.0), 1.0))
        present.append(p)
    f = np.array(fr)  # resources × nodes
    m = np.array(present)
    count = m.sum(axis=0)
    std = np.zeros(f.shape[1])
    two = count == 2
    if two.any():
        # the two present fractions: |a - b| / 2
        idx = np.argsort(~m, axis=0, kind="stable")[:2]
        a = np.take_along_axis(f, idx[:1], axis=0)[0]
        b = np.take_along_axis(f, idx[1:2], axis=0)[0]
        std = np.where(two, np.abs((a - b) / 2), std)
    many = count > 2
    if many.any():
        mean = np.where(m, f, 0).sum(axis=0) / np.where(count == 0, 1, count)
        var = np.where(m, (f - mean) ** 2, 0).sum(axis=0) / np.where(count == 0, 1, count)
        std = np.where(many, np.sqrt(var), std)
    return ((1 - std) * MAX_NODE_SCORE).astype(np.int64)


# -- configuration --------------------------------------------------------------------------
def _resources(raw: Any, where: str) -> tuple[ResourceSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(f"{where}: resources must be a non-empty list of {{name, weight}}")
    out = []
    for r in raw:
        if not isinstance(r, dict) or not isinstance(r.get("name"), str):
            raise ScenarioError(f"{where}: resource {r!r} has no name")
        w = r.get("weight", 1)
        if not isinstance(w, int) or not 1 <= w <= 100:
            raise ScenarioError(f"{where}: resource {r['name']} weight {w!r} is not 1..100")
        out.append(ResourceSpec(r["name"], w))
    return tuple(out)


def _plugin_args(profile: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for pc in profile.get("pluginConfig") or []:
        if isinstance(pc, dict) and pc.get("name") == name:
            args = pc.get("args") or {}
            return args if isinstance(args, dict) else {}
    return {}


def _score_weights(profile: Mapping[str, Any]) -> dict[str, int]:
    weights = dict(_DEFAULT_SCORE_WEIGHTS)
    plugins = profile.get("plugins") or {}
    for point in ("multiPoint", "score"):
        section = plugins.get(point) or {}
        for d in section.get("disabled") or []:
            name = d.get("name") if isinstance(d, dict) else None
            if name == "*":
                weights.clear()
            elif isinstance(name, str):
                weights.pop(name, None)
        for e in section.get("enabled") or []:
            if not isinstance(e, dict) or not isinstance(e.get("name"), str):
                continue
            w = e.get("weight") or _DEFAULT_SCORE_WEIGHTS.get(e["name"], 1)
            weights[e["name"]] = int(w)
    return weights


def _fit_scoring(profile: Mapping[str, Any]) -> FitScoring:
    strategy = _plugin_args(profile, _FIT).get("scoringStrategy") or {}
    if not isinstance(strategy, dict):
        raise ScenarioError("NodeResourcesFit scoringStrategy must be a mapping")
    kind = strategy.get("type", "LeastAllocated")
    if kind not in _STRATEGIES:
        raise ScenarioError(f"NodeResourcesFit scoringStrategy.type {kind!r} is not one of {', '.join(_STRATEGIES)}")
    resources = FitScoring().resources
    if "resources" in strategy:
        resources = _resources(strategy["resources"], "NodeResourcesFit scoringStrategy")
    shape: tuple[tuple[int, int], ...] = ()
    if kind == "RequestedToCapacityRatio":
        raw = (strategy.get("requestedToCapacityRatio") or {}).get("shape")
        if not isinstance(raw, list) or not raw:
            raise ScenarioError("RequestedToCapacityRatio needs requestedToCapacityRatio.shape")
        pts = []
        for p in raw:
            u, s = (p.get("utilization"), p.get("score")) if isinstance(p, dict) else (None, None)
            if not isinstance(u, int) or not isinstance(s, int) or not 0 <= u <= 100 or not 0 <= s <= 10:
                raise ScenarioError(f"shape point {p!r}: utilization 0..100 and score 0..10 required")
            pts.append((u, s))
        if any(b[0] <= a[0] for a, b in itertools.pairwise(pts)):
            raise ScenarioError("shape utilization values must increase")
        shape = tuple(pts)
    return FitScoring(kind, resources, shape)


def _extenders(doc: Mapping[str, Any]) -> tuple[ExtenderConfig, ...]:
    out = []
    for e in doc.get("extenders") or []:
        if not isinstance(e, dict) or not isinstance(e.get("urlPrefix"), str):
            raise ScenarioError(f"extender {e!r} has no urlPrefix")
        managed = tuple(
            m["name"] for m in e.get("managedResources") or [] if isinstance(m, dict) and isinstance(m.get("name"), str)
        )
        weight = e.get("weight") or 1
        if not isinstance(weight, int) or weight < 1:
            raise ScenarioError(f"extender {e['urlPrefix']}: weight {weight!r} must be a positive integer")
        out.append(ExtenderConfig(e["urlPrefix"], str(e.get("filterVerb") or ""), str(e.get("prioritizeVerb") or ""),
                                  weight, managed, bool(e.get("ignorable", False))))
    return tuple(out)


def _document(text: str, source: str) -> Mapping[str, Any]:
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        raise ScenarioError(f"{source}: not YAML: {err}") from None
    for d in docs:
        if isinstance(d, dict) and d.get("kind") == "KubeSchedulerConfiguration":
            return d
        if isinstance(d, dict) and d.get("kind") == "ConfigMap":
            for value in (d.get("data") or {}).values():
                inner = yaml.safe_load(value) if isinstance(value, str) else None
                if isinstance(inner, dict) and inner.get("kind") == "KubeSchedulerConfiguration":
                    return inner
    raise ScenarioError(f"{source}: no KubeSchedulerConfiguration (raw, or inside a ConfigMap's data)")


def load_scheduler_config(
    path: str | Path = DEFAULT_SCHEDULER_CONFIG, *, profile: str | None = None
) -> SchedulerConfig:
    """Read a KubeSchedulerConfiguration (``kubescheduler.config.k8s.io/v1``), raw or inside a ConfigMap."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ScenarioError(
            f"cannot read scheduler configuration {p}: {err.strerror or err} "
            "(give one with --scheduler-config or GPUTOPO_SIMULATE_SCHEDULER_CONFIG)"
        ) from None
    doc = _document(text, str(p))
    api = str(doc.get("apiVersion", ""))
    if api != "kubescheduler.config.k8s.io/v1":
        raise ScenarioError(f"{p}: apiVersion {api!r}; only kubescheduler.config.k8s.io/v1 is modelled")
    profiles = [x for x in doc.get("profiles") or [{}] if isinstance(x, dict)] or [{}]
    chosen = profiles[0]
    if profile is not None:
        named = [x for x in profiles if x.get("schedulerName", "default-scheduler") == profile]
        if not named:
            raise ScenarioError(f"{p}: no profile with schedulerName {profile!r}")
        chosen = named[0]
    pct = chosen.get("percentageOfNodesToScore", doc.get("percentageOfNodesToScore"))
    if pct is not None and (not isinstance(pct, int) or not 0 <= pct <= 100):
        raise ScenarioError(f"{p}: percentageOfNodesToScore {pct!r} is not 0..100")
    weights = _score_weights(chosen)
    bal_args = _plugin_args(chosen, _BALANCED)
    balanced = SchedulerConfig().balanced_resources
    if "resources" in bal_args:
        balanced = _resources(bal_args["resources"], _BALANCED)
    return SchedulerConfig(
        source=str(p),
        profile=str(chosen.get("schedulerName", "default-scheduler")),
        percentage_of_nodes_to_score=pct,
        fit_weight=weights.get(_FIT, 0),
        balanced_weight=weights.get(_BALANCED, 0),
        fit=_fit_scoring(chosen),
        balanced_resources=balanced,
        extenders=_extenders(doc),
    )
