"""Simulator speed: time per scheduled pod for each policy, side by side with a floor.

What is measured, on one replay (same pods, same fleet, one process):

- ``floor``: the engine with a chooser that takes the first feasible node: the fit filter,
  the alignment bookkeeping and the bind, without any scoring;
- ``random``, ``bestfit``: FGD's baselines (vectorised scores);
- ``default``: the kube-scheduler model (NodeResourcesFit + BalancedAllocation);
- ``gputopo``: the same plus the extender's filter and prioritize through the seam, asked once
  per group of nodes with equal (topology, locality, free GPUs) — and ``gputopo-ungrouped``,
  which asks about every node, to show what grouping saves.

Workload: the openb default list in FGD's replay (seed 42) when the trace is present
(``$GPUTOPO_TRACE_DIR`` or ``../shared/traces/alibaba-gpu-v2023``), else the bundled synthetic
scenario with its fleet repeated 10x. Rerun: ``.venv/bin/python bench/bench_simulate.py``
(``--pods N`` to replay only the first N pods).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from simulator import engine, fleet, runner, trace  # noqa: E402
from simulator.gputopo_policy import GputopoPolicy  # noqa: E402
from simulator.kubesched import load_scheduler_config  # noqa: E402
from simulator.model import PodSpec  # noqa: E402
from simulator.policies import KubeScheduler, NodeChooser  # noqa: E402
from simulator.scenario import DEMO_SCENARIO, load_scenario  # noqa: E402
from simulator.state import ClusterState  # noqa: E402


class FirstFit:
    name = "floor"
    share_choice = "best"

    def select(self, pod: PodSpec, feasible: np.ndarray, rng: np.random.Generator) -> int | None:
        idx = np.flatnonzero(feasible)
        return int(idx[0]) if idx.size else None

    def bound(self, pod: PodSpec, node: int) -> None:
        pass

    def released(self, pod: PodSpec, node: int) -> None:
        pass


def _setup() -> tuple[str, runner.Setup]:
    found = trace.find_trace_dir()
    if found is not None:
        return "openb default (FGD replay, seed 42)", runner.trace_setup(found, "default", fleet.search_path())
    sc = load_scenario(DEMO_SCENARIO, fleet.search_path())
    big = sc.__class__(sc.name, sc.description, tuple(
        n.__class__(f"{n.name}-{r}", n.topo, n.cpu_milli, n.memory_mib, n.model, n.labels)
        for r in range(10) for n in sc.nodes), sc.workload, sc.source)
    return "synthetic demo x10 (trace absent)", runner.synthetic_setup(big)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pods", type=int, default=0, help="replay only the first N pods (0: all)")
    args = ap.parse_args()
    what, setup = _setup()
    pods = setup.workload(42)
    if args.pods:
        pods = pods[: args.pods]
    cfg = load_scheduler_config()
    print(f"{what}: {len(setup.nodes)} nodes, {len(pods)} pods; python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs")
    rows = []

    def make(name: str, state: ClusterState) -> NodeChooser:
        if name == "floor":
            return FirstFit()  # type: ignore[return-value]
        if name == "gputopo-ungrouped":
            return KubeScheduler("gputopo", cfg, state, GputopoPolicy(), group_extender=False)
        return runner.make_chooser(name, state, cfg)

    floor_us = None
    for name in ("floor", "random", "bestfit", "default", "gputopo", "gputopo-ungrouped"):
        state = ClusterState(setup.nodes)
        t0 = time.perf_counter()
        chooser = make(name, state)
        setup_s = time.perf_counter() - t0
        res = engine.run(state, pods, chooser, 42, whole_choice="device-plugin")
        us = res.seconds / len(pods) * 1e6
        floor_us = floor_us or us
        rows.append((name, setup_s, res.seconds, us, us / floor_us))
    print(f"{'policy':<18} {'setup s':>8} {'replay s':>9} {'µs/pod':>8} {'x floor':>8}")
    for name, s, r, us, x in rows:
        print(f"{name:<18} {s:>8.2f} {r:>9.2f} {us:>8.0f} {x:>8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
