"""kube-scheduler's scoring, checked against the hand-worked cases of kube-scheduler's own unit tests.

Each case names the upstream test (``pkg/scheduler/framework/plugins/noderesources/*_test.go``)
and gives its nodes, requests and expected scores; the arithmetic is in the upstream comments
and repeated here. Units are the upstream ones (the formulas are ratios, so any unit works).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from policy.scoring.weights import EXTENDER_WEIGHT
from simulator.errors import ScenarioError
from simulator.kubesched import (
    DEFAULT_SCHEDULER_CONFIG,
    KUBE_SCHEDULER_DEFAULTS,
    FitScoring,
    ResourceSpec,
    balanced_allocation,
    broken_linear,
    fit_score,
    go_div,
    load_scheduler_config,
    num_feasible_nodes_to_find,
)

CPU_MEM = (ResourceSpec("cpu"), ResourceSpec("memory"))


def _v(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.int64)


# (upstream name, resources, requested [per resource: per node], allocatable, expected)
LEAST = [
    # node1: cpu (4000-3000)*100/4000=25, mem (10000-5000)*100/10000=50 -> 37; node2: 50, 50 -> 50
    ("nothing scheduled, resources requested, differently sized nodes", CPU_MEM,
     [_v(3000, 3000), _v(5000, 5000)], [_v(4000, 6000), _v(10000, 10000)], [37, 50]),
    # cpu 40 both; mem node1 75, node2 50 -> 57, 45
    ("resources requested, pods scheduled with resources", CPU_MEM,
     [_v(6000, 6000), _v(5000, 10000)], [_v(10000, 10000), _v(20000, 20000)], [57, 45]),
    # node2 memory 50000: (50000-10000)*100/50000 = 80 -> (40+80)/2 = 60
    ("resources requested, pods scheduled with resources, differently sized nodes", CPU_MEM,
     [_v(6000, 6000), _v(5000, 10000)], [_v(10000, 10000), _v(20000, 50000)], [57, 60]),
    # cpu 6000 > 4000 -> 0; mem 100 / 50 -> 50, 25
    ("requested resources exceed node capacity", CPU_MEM,
     [_v(6000, 6000), _v(0, 5000)], [_v(4000, 4000), _v(10000, 10000)], [50, 25]),
    # weights memory 2, cpu 1: (25*1 + 50*2)/3 = 41; (50 + 100)/3 = 50
    ("nothing scheduled, resources requested with different weight on CPU and memory", (
        ResourceSpec("memory", 2), ResourceSpec("cpu", 1)),
     [_v(5000, 5000), _v(3000, 3000)], [_v(10000, 10000), _v(4000, 6000)], [41, 50]),
    # the extended resource has allocatable 0 when the pod does not request it: skipped -> (50+50)/2
    ("bypass extended resource if the pod does not request", (*CPU_MEM, ResourceSpec("intel.com/foo")),
     [_v(3000, 3000), _v(5000, 5000), _v(0, 0)], [_v(6000, 6000), _v(10000, 10000), _v(0, 0)], [50, 50]),
]

MOST = [
    ("nothing scheduled, nothing requested", CPU_MEM, [_v(0, 0), _v(0, 0)], [_v(4000, 4000), _v(10000, 10000)], [0, 0]),
    # node1: 75, 50 -> 62; node2: 50, 50 -> 50
    ("nothing scheduled, resources requested, differently sized nodes", CPU_MEM,
     [_v(3000, 3000), _v(5000, 5000)], [_v(4000, 6000), _v(10000, 10000)], [62, 50]),
    # cpu 60 both, mem 0 / 25 -> 30, 42
    ("no resources requested, pods scheduled with resources", CPU_MEM,
     [_v(6000, 6000), _v(0, 5000)], [_v(10000, 10000), _v(20000, 20000)], [30, 42]),
    # node1: 100, 90 -> 95; node2: 50, 100 -> 75
    ("resources requested equal node capacity", CPU_MEM,
     [_v(5000, 5000), _v(9000, 9000)], [_v(5000, 10000), _v(10000, 9000)], [95, 75]),
    # weights memory 2, cpu 1: (75 + 50*2)/3 = 58; 50
    ("nothing scheduled, resources requested, differently sized nodes (weights)", (
        ResourceSpec("memory", 2), ResourceSpec("cpu", 1)),
     [_v(5000, 5000), _v(3000, 3000)], [_v(10000, 10000), _v(4000, 6000)], [58, 50]),
    # requested above capacity counts as capacity: cpu 300/250 -> 100, mem 600/1000 -> 60 -> 80; 40, 20 -> 30
    ("no resources requested, pods scheduled, nonzero request for resource", CPU_MEM,
     [_v(300, 100), _v(600, 200)], [_v(250, 250), _v(1000, 1000)], [80, 30]),
    # honour the extended resource the pod requests: node1 2/4 -> 50, node2 2/10 -> 20 -> 50, 40
    ("honor extended resource if the pod request", (*CPU_MEM, ResourceSpec("intel.com/foo")),
     [_v(3000, 3000), _v(5000, 5000), _v(2, 2)], [_v(6000, 6000), _v(10000, 10000), _v(4, 10)], [50, 40]),
]


@pytest.mark.parametrize(("name", "resources", "req", "cap", "want"), LEAST, ids=[c[0] for c in LEAST])
def test_least_allocated_matches_upstream(name: str, resources: tuple[ResourceSpec, ...], req: list[np.ndarray],
                                          cap: list[np.ndarray], want: list[int]) -> None:
    got = fit_score(FitScoring("LeastAllocated", resources), req, cap)
    assert got.tolist() == want


@pytest.mark.parametrize(("name", "resources", "req", "cap", "want"), MOST, ids=[c[0] for c in MOST])
def test_most_allocated_matches_upstream(name: str, resources: tuple[ResourceSpec, ...], req: list[np.ndarray],
                                         cap: list[np.ndarray], want: list[int]) -> None:
    got = fit_score(FitScoring("MostAllocated", resources), req, cap)
    assert got.tolist() == want


def test_requested_to_capacity_ratio_matches_upstream() -> None:
    # TestRequestedToCapacityRatioScoringStrategy, shape {0:10, 100:0} (scaled x10 to {0:100, 100:0}):
    # node1 cpu 3000/4000 -> util 75 -> 25, mem 5000/10000 -> 50 -> 50; round((25+50)/2) = 38 (half away)
    # node2 cpu 3000/6000 -> 50, mem 50 -> 50
    rtcr = FitScoring("RequestedToCapacityRatio", CPU_MEM, ((0, 10), (100, 0)))
    got = fit_score(rtcr, [_v(3000, 3000), _v(5000, 5000)], [_v(4000, 6000), _v(10000, 10000)])
    assert got.tolist() == [38, 50]
    # TestResourceBinPackingSingleExtended, shape {0:0, 100:1} (x10): 2 of 8 -> util 25 -> 2; 2 of 4 -> 5;
    # 4 of 4 -> 10; resources whose score is 0 are left out of the weighted mean
    foo = FitScoring("RequestedToCapacityRatio", (ResourceSpec("intel.com/foo"),), ((0, 0), (100, 1)))
    assert fit_score(foo, [_v(2, 2)], [_v(8, 4)]).tolist() == [2, 5]
    assert fit_score(foo, [_v(2, 4)], [_v(8, 4)]).tolist() == [2, 10]
    # TestResourceBinPackingMultipleExtended, weights foo 3, bar 5: node1 foo 2/8 -> 2, bar 2/4 -> 5:
    # (2*3 + 5*5)/8 = 3.875 -> 4; node2 foo 2/4 -> 5, bar 2/8 -> 2: (15 + 10)/8 = 3.125 -> 3
    two = FitScoring("RequestedToCapacityRatio", (ResourceSpec("intel.com/foo", 3), ResourceSpec("intel.com/bar", 5)),
                     ((0, 0), (100, 1)))
    assert fit_score(two, [_v(2, 2), _v(2, 2)], [_v(8, 4), _v(4, 8)]).tolist() == [4, 3]


def test_broken_linear_function_matches_upstream() -> None:
    # TestBrokenLinearFunction (helper.BuildBrokenLinearFunction), Go's truncating division
    cases = [
        ([(10, 1), (90, 9)], {-10: 1, 0: 1, 9: 1, 10: 1, 15: 1, 19: 1, 20: 2, 89: 8, 90: 9, 99: 9, 100: 9, 110: 9}),
        ([(0, 2), (40, 10), (100, 0)], {-10: 2, 0: 2, 20: 6, 30: 8, 40: 10, 70: 5, 100: 0, 110: 0}),
        ([(0, 2), (40, 2), (100, 2)], {-10: 2, 0: 2, 20: 2, 30: 2, 40: 2, 70: 2, 100: 2, 110: 2}),
    ]
    for shape, expect in cases:
        p = np.array(list(expect), dtype=np.int64)
        assert broken_linear(shape, p).tolist() == list(expect.values())


def test_go_division_truncates_toward_zero() -> None:
    assert go_div(_v(-7, 7, -7), _v(2, -2, -2)).tolist() == [-3, -3, 3]


BALANCED = [
    # TestNodeResourcesBalancedAllocation: node1 cpu 3000/4000 = .75, mem 5000/10000 = .5: std .125 -> 87;
    # node2 .5/.5 -> 100
    ("nothing scheduled, resources requested, differently sized nodes",
     [_v(3000, 3000), _v(5000, 5000)], [_v(4000, 6000), _v(10000, 10000)], [87, 100]),
    # node1 .6/.25: std .175 -> 82; node2 .6/.5: .05 -> 95
    ("resources requested, pods scheduled with resources",
     [_v(6000, 6000), _v(5000, 10000)], [_v(10000, 10000), _v(20000, 20000)], [82, 95]),
    # node2 memory 50000: .6/.2 -> .2 -> 80
    ("resources requested, pods scheduled with resources, differently sized nodes",
     [_v(6000, 6000), _v(5000, 10000)], [_v(10000, 10000), _v(20000, 50000)], [82, 80]),
    # cpu 6000/6000 = 1: node1 1/0 -> std .5 -> 50; node2 1/.5 -> .25 -> 75
    ("requested resources at node capacity", [_v(6000, 6000), _v(0, 5000)], [_v(6000, 6000), _v(10000, 10000)],
     [50, 75]),
    # three resources: node1 .8571/.125/.5 -> std .3002 -> 70; node2 .8571/.125/.125 -> .345 -> 65
    ("include scalar resource on a node for balanced resource allocation",
     [_v(3000, 3000), _v(5000, 5000), _v(4, 1)], [_v(3500, 3500), _v(40000, 40000), _v(8, 8)], [70, 65]),
    # the pod does not request the scalar resource, so the caller passes allocatable 0 and it is skipped:
    # both nodes .8571/.125 -> std .3661 -> 63
    ("node without the scalar resource should skip the scalar resource",
     [_v(3000, 3000), _v(5000, 5000), _v(0, 0)], [_v(3500, 3500), _v(40000, 40000), _v(0, 0)], [63, 63]),
]


@pytest.mark.parametrize(("name", "req", "cap", "want"), BALANCED, ids=[c[0] for c in BALANCED])
def test_balanced_allocation_matches_upstream(name: str, req: list[np.ndarray], cap: list[np.ndarray],
                                              want: list[int]) -> None:
    assert balanced_allocation(req, cap).tolist() == want


def test_balanced_allocation_per_node_resource_count() -> None:
    # node1 has 3 resources (.5, .5, 1.0): mean 2/3, std sqrt((1/36 + 1/36 + 1/9)/3) = .2357 -> 76;
    # node2 lacks the third: .5/.5 -> std 0 -> 100
    got = balanced_allocation([_v(5, 5), _v(5, 5), _v(8, 0)], [_v(10, 10), _v(10, 10), _v(8, 0)])
    assert got.tolist() == [76, 100]


@pytest.mark.parametrize(("nodes", "pct", "want"), [
    (50, None, 50),  # fewer than 100 nodes: all
    (1213, None, 497),  # adaptive: 50 - 1213/125 = 41 % -> 1213*41/100 = 497
    (5000, None, 500),  # adaptive: 50 - 40 = 10 % -> 500
    (200, 10, 100),  # never below 100
    (6000, 0, 300),  # adaptive floor: max(50 - 48, 5) = 5 % -> 300
    (1213, 100, 1213),
])
def test_num_feasible_nodes_to_find(nodes: int, pct: int | None, want: int) -> None:
    assert num_feasible_nodes_to_find(pct, nodes) == want


def test_the_shipped_configuration_is_read() -> None:
    cfg = load_scheduler_config(DEFAULT_SCHEDULER_CONFIG)
    assert cfg.percentage_of_nodes_to_score == 100
    assert (cfg.fit_weight, cfg.balanced_weight) == (1, 1)
    assert cfg.fit.type == "MostAllocated"
    assert [(r.name, r.weight) for r in cfg.fit.resources] == [("cpu", 1), ("nvidia.com/gpu", 1)]
    assert [r.name for r in cfg.balanced_resources] == ["cpu", "memory", "nvidia.com/gpu"]
    (ext,) = cfg.extenders
    assert (ext.filter_verb, ext.prioritize_verb, ext.weight) == ("filter", "prioritize", EXTENDER_WEIGHT)
    assert ext.managed_resources == ()  # every pod of the profile reaches the extender, CPU-only ones too
    assert ext.is_interested(("cpu", "memory", "nvidia.com/gpu")) and ext.is_interested(("cpu", "memory"))


def test_the_default_policy_is_kube_schedulers_own_defaults() -> None:
    """Not the shipped file: changing what gputopo ships must never move the baseline."""
    d = KUBE_SCHEDULER_DEFAULTS
    # every feasible node scored, as in gputopo's profile: the policies differ in scoring, not in sampling
    assert d.percentage_of_nodes_to_score == 100 and not d.extenders
    assert (d.fit.type, [r.name for r in d.fit.resources]) == ("LeastAllocated", ["cpu", "memory"])
    assert [r.name for r in d.balanced_resources] == ["cpu", "memory"] and (d.fit_weight, d.balanced_weight) == (1, 1)


RAW = """\
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: binpack
    plugins:
      score:
        disabled: [{name: NodeResourcesBalancedAllocation}]
        enabled: [{name: NodeResourcesFit, weight: 3}]
    pluginConfig:
      - name: NodeResourcesFit
        args:
          scoringStrategy:
            type: MostAllocated
            resources: [{name: cpu, weight: 1}, {name: memory, weight: 1}, {name: nvidia.com/gpu, weight: 5}]
"""


def test_a_raw_configuration_with_most_allocated_over_gpus(tmp_path: Path) -> None:
    f = tmp_path / "sched.yaml"
    f.write_text(RAW)
    cfg = load_scheduler_config(f, profile="binpack")
    assert (cfg.fit_weight, cfg.balanced_weight) == (3, 0)
    assert cfg.fit.type == "MostAllocated"
    assert [(r.name, r.weight) for r in cfg.fit.resources] == [("cpu", 1), ("memory", 1), ("nvidia.com/gpu", 5)]
    assert cfg.percentage_of_nodes_to_score is None and cfg.extenders == ()


@pytest.mark.parametrize(("text", "needle"), [
    ("kind: Pod\n", "no KubeSchedulerConfiguration"),
    ("apiVersion: kubescheduler.config.k8s.io/v1beta3\nkind: KubeSchedulerConfiguration\n", "only"),
    (RAW.replace("MostAllocated", "Spread"), "scoringStrategy.type"),
    (RAW.replace("weight: 5", "weight: 500"), "weight"),
    (RAW.replace("type: MostAllocated", "type: RequestedToCapacityRatio"), "shape"),
    ("apiVersion: kubescheduler.config.k8s.io/v1\nkind: KubeSchedulerConfiguration\npercentageOfNodesToScore: 101\n",
     "percentageOfNodesToScore"),
    ("[unclosed", "not YAML"),
])
def test_bad_configurations_are_refused(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ScenarioError, match=needle):
        load_scheduler_config(f)


def test_the_example_configurations_differ_from_the_shipped_one_only_where_they_say() -> None:
    """examples/scheduler/: the alternatives docs/placement.md measures, each one change away from what we ship."""
    from dataclasses import replace

    from simulator.kubesched import FitScoring, ResourceSpec

    examples = Path(__file__).resolve().parents[2] / "examples" / "scheduler"
    shipped = load_scheduler_config(DEFAULT_SCHEDULER_CONFIG)
    (ext,) = shipped.extenders

    def same(name: str, want: object) -> None:
        got = replace(load_scheduler_config(examples / name), source=shipped.source)
        assert got == want, name

    same("weight-5.yaml", replace(shipped, extenders=(replace(ext, weight=5),)))
    same("gpu-pods-only.yaml", replace(shipped, extenders=(replace(ext, managed_resources=("nvidia.com/gpu",)),)))
    same("least-allocated.yaml", replace(shipped, fit=FitScoring(), balanced_resources=(ResourceSpec("cpu"),
                                                                                        ResourceSpec("memory"))))
