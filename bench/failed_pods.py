"""Why pods fail before the cluster is full: a diagnostic over one simulator run per policy.

    .venv/bin/python bench/failed_pods.py [--pod-list multigpu50] [--whole-gpus] [--seeds 42,43] [--cores 96]

For each policy (the same runs as ``gputopo simulate``), until the arrived GPU request reaches the
cluster's capacity (the point FGD's unallocated % is read at): the pods that no node could take, by
kind; for the 8-GPU ones, how many asked for more than ``--cores`` CPU cores (more than the
96-core G2 boards have), and whether some node had 8 free GPUs but too little CPU; the pods that
were the first on an entirely free 8-GPU node with more than ``--cores`` cores, by kind; and the entirely
free 8-GPU nodes left at the 100 % point, by GPU model. docs/placement.md ("Targets missed") quotes it.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from simulator import engine, fleet, runner, trace  # noqa: E402
from simulator.cli import parse_seeds  # noqa: E402
from simulator.kubesched import load_scheduler_config  # noqa: E402
from simulator.model import PodSpec  # noqa: E402
from simulator.state import ClusterState  # noqa: E402


def diagnose(setup: runner.Setup, policy: str, seed: int, cores: int) -> dict[str, object]:
    pods = setup.workload(seed)
    state = ClusterState(setup.nodes)
    inner = runner.make_chooser(policy, state, load_scheduler_config())
    capacity = int(state.gpu_cap.sum()) * 1000
    arrived = 0
    failed: collections.Counter[str] = collections.Counter()
    first_on_big: collections.Counter[str] = collections.Counter()
    at_full: dict[str, object] = {}
    big = (state.cpu_cap > cores * 1000) & (state.gpu_cap == 8)  # the 8-GPU boards only such pods fit on

    class Watch:
        name = inner.name
        share_choice = getattr(inner, "share_choice", None)

        def select(self, pod: PodSpec, feasible: np.ndarray, rng: object) -> int | None:
            nonlocal arrived
            arrived += pod.total_milli
            before = arrived <= capacity
            empty = state.full_free == state.gpu_cap
            n = inner.select(pod, feasible, rng)  # type: ignore[arg-type]
            if before and n is None:
                failed[pod.kind] += 1
                if pod.whole_gpus == 8:
                    failed["8gpu asking > cores"] += int(pod.cpu_milli > cores * 1000)
                    gpus_ok = state.full_free >= 8
                    cpu_ok = state.cpu_cap - state.cpu_req >= pod.cpu_milli
                    failed["8gpu: 8 free GPUs somewhere, CPU short there"] += int(gpus_ok.any()
                                                                                 and not (gpus_ok & cpu_ok).any())
            if before and n is not None and big[n] and empty[n]:
                first_on_big[pod.kind] += 1
            if not before and not at_full:
                whole = (state.gpu_cap == 8) & (state.full_free == 8)
                at_full.update({"entirely free 8-GPU nodes": collections.Counter(
                    state.nodes[i].model for i in np.flatnonzero(whole))})
            return n

        def bound(self, pod: PodSpec, node: int) -> None:
            inner.bound(pod, node)

        def released(self, pod: PodSpec, node: int) -> None:
            inner.released(pod, node)

    engine.run(state, pods, Watch(), seed, whole_choice="device-plugin", departures=False)  # type: ignore[arg-type]
    return {"failed before full": dict(failed),
            f"first on an empty 8-GPU node with > {cores} cores": dict(first_on_big),
            **{k: dict(v) for k, v in at_full.items()}}  # type: ignore[call-overload]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace", type=Path, default=None)
    ap.add_argument("--pod-list", default="multigpu50")
    ap.add_argument("--whole-gpus", action="store_true")
    ap.add_argument("--seeds", type=parse_seeds, default=[42, 43])
    ap.add_argument("--cores", type=int, default=96)
    ap.add_argument("--policies", default="gputopo,default,bestfit")
    a = ap.parse_args()
    where = a.trace or trace.find_trace_dir()
    if where is None:
        print("the openb trace is absent: --trace DIR or $GPUTOPO_TRACE_DIR", file=sys.stderr)
        return 2
    setup = runner.trace_setup(where, a.pod_list, fleet.search_path(), sharing=not a.whole_gpus)
    big = collections.Counter((n.model, n.cpu_milli // 1000) for n in setup.nodes
                              if n.cpu_milli > a.cores * 1000 and n.gpus == 8)
    print(f"{a.pod_list}{' --whole-gpus' if a.whole_gpus else ''}: 8-GPU nodes with > {a.cores} cores: {dict(big)}")
    for seed in a.seeds:
        for policy in a.policies.split(","):
            print(f"seed {seed} {policy}: {diagnose(setup, policy, seed, a.cores)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
