"""One simulator invocation: a fleet, a workload per seed, every policy on each, metrics and means.

Every policy of a seed replays the *same* pod list on its own copy of the
cluster, so the differences between policies are differences of placement.
The result is the stable machine interface of ``gputopo simulate --json``
(``docs/placement.md``): ``policies`` maps each policy to its means over seeds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policy.scoring import DEFAULT_STRATEGIES
from simulator import engine, metrics, synthetic, trace
from simulator.fleet import load_fleet_map, trace_fleet
from simulator.gpu_choice import WholeChoice
from simulator.gputopo_policy import GputopoPolicy
from simulator.kubesched import KUBE_SCHEDULER_DEFAULTS, SchedulerConfig
from simulator.model import MILLI, NodeSpec, PodSpec
from simulator.policies import POLICIES, BestFit, KubeScheduler, NodeChooser, RandomFit
from simulator.scenario import Scenario
from simulator.state import ClusterState

__all__ = ["SCHEMA", "Setup", "simulate", "synthetic_setup", "trace_setup"]

SCHEMA = "gputopo.simulate/v1"
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Setup:
    """What to simulate: the nodes and, per seed, the pods in arrival order."""

    nodes: tuple[NodeSpec, ...]
    workload: Callable[[int], list[PodSpec]]
    departures: bool
    describe: dict[str, Any] = field(default_factory=dict)


def synthetic_setup(scenario: Scenario, *, departures: bool = False) -> Setup:
    gpus = sum(n.gpus for n in scenario.nodes)
    return Setup(
        nodes=scenario.nodes,
        workload=lambda seed: synthetic.generate(scenario.workload, gpus, seed, departures=departures),
        departures=departures,
        describe={"workload": "synthetic", "scenario": scenario.name, "source": scenario.source},
    )


def trace_setup(
    trace_dir: str | Path,
    pod_list: str,
    search: Sequence[Path],
    *,
    fleet_map: str | Path | None = None,
    tune: float = 1.3,
    departures: bool = False,
    sharing: bool = True,
) -> Setup:
    nodes = tuple(trace_fleet(trace.read_nodes(Path(trace_dir) / trace.NODE_LIST), search,
                              load_fleet_map(fleet_map) if fleet_map else None))
    path = trace.pod_list_path(trace_dir, pod_list)
    pods = trace.read_pods(path)
    if not sharing:
        pods = trace.whole_gpus_only(pods)
    capacity = sum(n.gpus for n in nodes) * MILLI
    describe = {"workload": "trace", "pod_list": path.stem, "gpu_sharing": sharing}
    if departures:
        timed = trace.timed_workload(pods)
        return Setup(nodes, lambda seed: timed, True, {**describe, "mode": "departures (creation/deletion times)"})
    return Setup(nodes, lambda seed: trace.fgd_workload(pods, capacity, seed, tune), False,
                 {**describe, "mode": f"FGD replay, tune {tune}"})


def make_chooser(policy: str, state: ClusterState, config: SchedulerConfig,
                 strategies: Sequence[str] = DEFAULT_STRATEGIES) -> NodeChooser:
    if policy == "gputopo":
        return KubeScheduler("gputopo", config, state, GputopoPolicy(strategies=strategies))
    if policy == "default":
        return KubeScheduler("default", KUBE_SCHEDULER_DEFAULTS, state, None)
    if policy == "bestfit":
        return BestFit(state)
    if policy == "random":
        return RandomFit(state)
    raise ValueError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")


def simulate(
    setup: Setup,
    *,
    policies: Sequence[str],
    seeds: Sequence[int],
    config: SchedulerConfig,
    whole_choice: WholeChoice,
    progress: Callable[[int], Progress] | None = None,
    check_every: int = 0,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
) -> dict[str, Any]:
    """Run every (seed, policy); ``progress(total)`` returns the per-pod advance callback.

    ``strategies``: the extender's scoring terms for the gputopo policy (``--strategy``, as the extender's flag).
    """
    started = time.perf_counter()
    workloads = {seed: setup.workload(seed) for seed in seeds}
    total = sum(len(p) for p in workloads.values()) * len(policies)
    tick = progress(total) if progress is not None else None
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in policies}
    for seed in seeds:
        pods = workloads[seed]
        for policy in policies:
            state = ClusterState(setup.nodes)
            chooser = make_chooser(policy, state, config, strategies)
            result = engine.run(state, pods, chooser, seed, whole_choice=whole_choice, departures=setup.departures,
                                progress=tick, check_every=check_every)
            runs[policy].append(metrics.run_metrics(result))
    gpus = sum(n.gpus for n in setup.nodes)
    return {
        "schema": SCHEMA,
        "scenario": {
            **setup.describe,
            "nodes": len(setup.nodes),
            "gpus": gpus,
            "pods_per_seed": {str(s): len(p) for s, p in workloads.items()},
            "seeds": list(seeds),
            "departures": setup.departures,
            "scheduler_config": config.source,
            "scheduler_profile": config.profile,
            "default_scheduler": KUBE_SCHEDULER_DEFAULTS.source,
            "gpu_choice": whole_choice,
            "strategies": list(strategies),
        },
        "policies": {p: metrics.aggregate(r) for p, r in runs.items()},
        "run_seconds": round(time.perf_counter() - started, 3),
    }
