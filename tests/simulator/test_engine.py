"""The event loop and the policies: hand-worked placements, accounting over whole runs, reproducibility."""

from __future__ import annotations

import copy
import dataclasses
import random
from typing import Any

import factories
import numpy as np
import pytest

from simulator import engine, metrics, runner
from simulator.fleet import search_path
from simulator.gpu_choice import AdmissionError, choose_share, choose_whole
from simulator.gputopo_policy import GputopoPolicy
from simulator.kubesched import KUBE_SCHEDULER_DEFAULTS, SchedulerConfig, load_scheduler_config
from simulator.model import NodeSpec, PodSpec
from simulator.policies import BestFit, KubeScheduler, RandomFit
from simulator.scenario import DEMO_SCENARIO, load_scenario
from simulator.state import ClusterState

TIB = 1024 * 1024


def _two_boards() -> list[NodeSpec]:
    """An NVLink-pairs server (256 CPUs) and an all-SYS RTX 4090 server (512 CPUs), 1 TiB each."""
    return [
        NodeSpec("pairs", factories.nvlink_bridge_pairs_8x(), 256_000, TIB, "A100-PCIe"),
        NodeSpec("rtx", factories.rtx4090_8x_allsys(), 512_000, TIB, "RTX-4090"),
    ]


POD2 = PodSpec("p2", "2gpu", 8000, 16 * 1024, num_gpu=2, gpu_milli=1000)


def test_gputopo_takes_the_nvlink_pair_where_the_default_scheduler_spreads() -> None:
    cfg = load_scheduler_config()
    # default (kube-scheduler's defaults): LeastAllocated cpu 96 vs 98 (8000 of 256000 / 512000), memory 98 both
    # -> 97 vs 98; BalancedAllocation 99 (cpu .031, mem .016) vs 100 -> rtx wins 198 to 196.
    state = ClusterState(_two_boards())
    res = engine.run(state, [POD2], KubeScheduler("default", KUBE_SCHEDULER_DEFAULTS, state, None), 1,
                     whole_choice="device-plugin")
    (rec,) = res.records
    assert rec.node == 1 and rec.best_level == 1 and rec.level == 6  # NVLink offered, SYS taken
    assert rec.cross_socket is True and rec.busbw_gbps == 6.0
    assert rec.best_busbw_gbps == 240.0 and rec.node_best_busbw_gbps == 6.0  # offered 240, every rtx pair 6
    # gputopo, shipped configuration: MostAllocated cpu+gpu: pairs (3 + 25)/2 = 14, rtx (1 + 25)/2 = 13;
    # Balanced cpu, memory, gpu: pairs (.031, .016, .25) std .107 -> 89, rtx (.016, .016, .25) std .110 -> 88.
    # The extender: best pair NV12 = 240 (V*) on the empty pairs board, island penalty 2 -> 8; rtx pairs are
    # SYS, 6 GB/s: 3 x log2(240/6) = 15.97 -> 16 points off -> 0. x weight 10 x 10: 800 vs 0.
    state = ClusterState(_two_boards())
    res = engine.run(state, [POD2], KubeScheduler("gputopo", cfg, state, GputopoPolicy()), 1,
                     whole_choice="device-plugin")
    (rec,) = res.records
    assert rec.node == 0 and rec.level == 1 and rec.cross_socket is False
    assert rec.busbw_gbps == 240.0  # NV12, generation unknown: the slowest with 12 links, 12 x 20 (docs/bandwidth.md)
    assert state.bindings["p2"].gpus in {(0, 1), (2, 3), (4, 5), (6, 7)}


def test_metrics_of_the_hand_worked_runs() -> None:
    cfg = load_scheduler_config()
    out = {}
    for name in ("gputopo", "default"):
        state = ClusterState(_two_boards())
        chooser = (KubeScheduler(name, cfg, state, GputopoPolicy()) if name == "gputopo"
                   else KubeScheduler(name, KUBE_SCHEDULER_DEFAULTS, state, None))
        out[name] = metrics.run_metrics(engine.run(state, [POD2], chooser, 1, whole_choice="device-plugin"))
    assert out["gputopo"]["aligned_pct"] == 100.0 and out["default"]["aligned_pct"] == 0.0
    assert out["gputopo"]["bw_aligned_pct"] == 100.0 and out["default"]["bw_aligned_pct"] == 0.0
    assert out["gputopo"]["busbw_per_gpu_gbps"] == 240.0 and out["default"]["busbw_per_gpu_gbps"] == 6.0
    assert out["gputopo"]["cross_socket_pct"] == 0.0 and out["default"]["cross_socket_pct"] == 100.0
    assert out["gputopo"]["by_kind"]["2gpu"]["placed"] == 1


def test_percentage_of_nodes_to_score_scans_from_where_it_stopped() -> None:
    topo = factories.rtx4090_8x_allsys()
    nodes = [NodeSpec(f"n{i}", topo, 8000, 1024, "x") for i in range(200)]
    state = ClusterState(nodes)
    ks = KubeScheduler("default", SchedulerConfig(percentage_of_nodes_to_score=50), state, None)
    feasible = np.ones(200, dtype=bool)
    assert ks._candidates(feasible).tolist() == list(range(100))  # 200 * 50 % = 100 nodes
    assert ks._candidates(feasible).tolist() == list(range(100, 200))
    feasible[::2] = False  # only odd nodes fit: 100 of them, found after scanning all 200
    assert ks._candidates(feasible).tolist() == list(range(1, 200, 2))
    assert ks.next_start == 0


def test_grouped_extender_scores_equal_per_node_scores() -> None:
    sc = load_scenario(DEMO_SCENARIO, search_path())
    state = ClusterState(sc.nodes)
    ext = GputopoPolicy()
    ks = KubeScheduler("gputopo", load_scheduler_config(), state, ext)
    rnd = random.Random(5)
    for i in range(len(state)):  # put every node in some state
        free = state.free_positions(i)
        k = rnd.choice([0, 1, 2, 3, 5])
        gpus = tuple(sorted(rnd.sample(free, k)))
        pod = PodSpec(f"x{i}", "x", 1000, 1024, num_gpu=k, gpu_milli=1000 if k else 0)
        state.allocate(pod, i, gpus)
        ks.bound(pod, i)
    idx = np.arange(len(state), dtype=np.int64)
    reps, inverse = ks._extender_groups(idx)
    assert len(reps) < len(state)
    for k in (1, 2, 4):
        w = ext.workload(PodSpec(f"q{k}", "q", 1000, 1024, num_gpu=k, gpu_milli=1000))
        grouped = np.array(ext.scores(w, [ks.names[i] for i in reps]))[inverse]
        assert grouped.tolist() == ext.scores(w, ks.names)


def _small_setup(departures: bool) -> runner.Setup:
    sc = load_scenario(DEMO_SCENARIO, search_path())
    sc = dataclasses.replace(sc, nodes=sc.nodes[::8])  # 14 nodes, 2 of each board
    return runner.synthetic_setup(sc, departures=departures)


@pytest.mark.parametrize("departures", [False, True])
def test_every_policy_keeps_the_books_straight(departures: bool) -> None:
    setup = _small_setup(departures)
    pods = setup.workload(3)
    for policy in ("gputopo", "default", "bestfit", "random"):
        state = ClusterState(setup.nodes)
        chooser = runner.make_chooser(policy, state, load_scheduler_config())
        res = engine.run(state, pods, chooser, 3, whole_choice="device-plugin", departures=departures, check_every=1)
        state.check()
        placed = {r.name for r in res.records if r.placed}
        if departures:  # every pod left: everything it took is back
            assert not state.bindings and state.allocated_milli == 0
            assert (state.full_free == state.gpu_cap).all() and (state.cpu_req == 0).all()
            assert res.time_avg_alloc_pct is not None and 0 < res.time_avg_alloc_pct < 100
        else:
            assert set(state.bindings) == placed
            assert state.allocated_milli == sum(r.milli for r in res.records if r.placed)


def _strip(result: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(result)
    out.pop("run_seconds")
    for m in out["policies"].values():
        m.pop("seconds")
        for s in m["per_seed"]:
            s.pop("seconds")
    return out


def test_seeded_runs_are_reproducible() -> None:
    setup = _small_setup(False)
    cfg = load_scheduler_config()
    a = runner.simulate(setup, policies=["gputopo", "random"], seeds=[7, 8], config=cfg, whole_choice="device-plugin")
    b = runner.simulate(setup, policies=["gputopo", "random"], seeds=[7, 8], config=cfg, whole_choice="device-plugin")
    assert _strip(a) == _strip(b)
    c = runner.simulate(setup, policies=["gputopo", "random"], seeds=[9], config=cfg, whole_choice="device-plugin")
    assert _strip(c)["policies"] != _strip(a)["policies"]


def test_fgd_baselines_pick_as_their_scores_say() -> None:
    # two identical 2-GPU nodes, one half used: BestFit packs onto it, Random may take either
    topo = factories.from_tokens(["X SYS", "SYS X"])
    nodes = [NodeSpec("a", topo, 64_000, 262_144, "T4"), NodeSpec("b", topo, 64_000, 262_144, "T4")]
    state = ClusterState(nodes)
    state.allocate(PodSpec("old", "1gpu", 8000, 1024, num_gpu=1, gpu_milli=1000), 1, (0,))
    pod = PodSpec("new", "1gpu", 8000, 1024, num_gpu=1, gpu_milli=1000)
    feasible = np.ones(2, dtype=bool)
    rng = np.random.default_rng(0)
    # BestFit raw: a: 1 - ((64000-8000)/128000*.5 + (2000-1000)/8000*.5) = .71875 -> 71;
    # b: 1 - ((56000-8000)/128000*.5 + 0) = .8125 -> 81 -> normalised 0 and 100
    assert BestFit(state).select(pod, feasible, rng) == 1
    picks = {RandomFit(state).select(pod, feasible, rng) for _ in range(50)}
    assert picks == {0, 1}


def test_in_node_gpu_choices() -> None:
    row = np.array([1000, 300, 500, 300, -1, -1], dtype=np.int64)
    assert choose_share(row, 250, "best", random.Random(0)) == 1  # tightest, lowest index among equals
    assert {choose_share(row, 250, "random", random.Random(s)) for s in range(40)} == {0, 1, 2, 3}
    with pytest.raises(AdmissionError):
        choose_share(row, 1001, "best", random.Random(0))
    pairs = factories.nvlink_bridge_pairs_8x()
    assert choose_whole(pairs, [1, 2, 3, 5, 7], 2, "first-free", random.Random(0)) == (1, 2)
    for s in range(20):  # the device plugin's best effort takes the one whole NVLink pair left
        assert choose_whole(pairs, [1, 2, 3, 5, 7], 2, "device-plugin", random.Random(s)) == (2, 3)
    with pytest.raises(AdmissionError):
        choose_whole(pairs, [1, 2], 3, "device-plugin", random.Random(0))


def test_x_socket_is_numa_not_a_sys_link() -> None:
    """Board 032 (8x RTX 4090): every GPU pair is SYS, but GPUs 0-3 are on NUMA node 0 and 4-7 on node 1 (the
    matrix's NUMA affinity). A pair on one node does not cross sockets (review item 2); one across the nodes does."""
    from pathlib import Path

    from labeler.topology import smi_parser
    from labeler.topology.links import LinkLevel

    corpus = Path(__file__).resolve().parents[1] / "fixtures" / "topo-corpus"
    (path,) = corpus.glob("032_*")
    topo = smi_parser.parse(path.read_text(encoding="utf-8"), source=path.name)
    topos = engine._Topologies(ClusterState([NodeSpec("rtx", topo, 512_000, TIB, "RTX-4090")]))
    level_same, _, cross_same, _ = topos.ring(0, [0, 1])
    level_far, _, cross_far, _ = topos.ring(0, [0, 4])
    assert level_same == level_far == int(LinkLevel.SYS)
    assert cross_same is False and cross_far is True


def test_an_nvlink_ring_over_two_numa_nodes_does_not_cross_sockets() -> None:
    """Only a ring with a SYS hop across NUMA nodes crosses sockets (as audit cluster counts it).

    NVLink pairs (corpus 027's block; NUMA 0 for GPUs 0-3, 1 for 4-7): {0, 1} is one NV12 pair, no crossing;
    {0, 1, 4, 5} rings through SYS hops between the two nodes: crossing. The all-NV18 board (no affinity given):
    an NVLink ring never crosses, whatever the grouping."""
    from labeler.topology.links import LinkLevel

    topos = engine._Topologies(ClusterState(_two_boards()))
    level, _, cross, _ = topos.ring(0, [0, 1])
    assert level == int(LinkLevel.NVLINK) and cross is False
    level, _, cross, _ = topos.ring(0, [0, 1, 4, 5])
    assert level == int(LinkLevel.SYS) and cross is True
    h100 = engine._Topologies(ClusterState([NodeSpec("h", factories.hgx_h100_nv18(), 256_000, TIB, "H100")]))
    assert h100.ring(0, list(range(8)))[2] is False
