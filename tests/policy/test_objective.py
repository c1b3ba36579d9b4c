"""The placement objective on named machines, every expected number worked out by hand.

Machines: corpus topologies (``tests/fixtures/topo-corpus``) and the bandwidth tests' builders
(``tests/topology/bw_machines.py``), with the facts a probe would report for that GPU model. Nodes are
built from what the agent publishes (labels, annotations, allocation) and read by ``policy.nodes``, as
the extender reads them. Values come from the bandwidth table (docs/bandwidth.md: NCCL's effective
rates) and the objective (docs/extender.md, "Prioritize"):

- k ≥ 2: score = clamp(10 − round_half_up(3·log2(V*/V)) − P), V = predicted busbw B of the node's best
  free k-set, V* = the best V among the request's candidates, P = 0 (fills the node) / 1 (partly used) /
  2 (entirely free);
- a rank of a multi-node job: V = √(N'·B), N' = the network-capped prediction N when every fact of the
  network path is reported, else 1.25 GB/s;
- k = 1: score = clamp(10 − round_half_up(3·(c − c_min))), c = log2 of the best free pair's B (0 without a pair);
- no whole GPU: round_half_up(10 × allocated / total).

``round_half_up`` is ⌊x + ½ + 1e-9⌋ (an exact half rounds up).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import bw_machines as m
import numpy as np
import pytest

from labeler.topology import allocation, labels
from labeler.topology.model import P2P, Topology
from policy.decision.cache import Shape
from policy.decision.decide import Decider
from policy.nodes.decode import TopologyRegistry
from policy.nodes.facts import NodeFacts, facts_from_parts
from policy.nodes.state import NodeState
from policy.scoring import DEFAULT_STRATEGIES, Rule, combine, resolve
from policy.scoring.base import round_half_up
from policy.workload import Intent, JobKey, Kind, Workload
from simulator.kubesched import FitScoring, ResourceSpec, balanced_allocation, fit_score

PREFIX = "gputopo.io/"
JOB = JobKey("ns", "pytorchjob", "train")
_REGISTRY = TopologyRegistry()


def node(name: str, topo: Topology, free: Iterable[int] | None = None) -> NodeFacts:
    """A node as its agent publishes it (``free``: GPU indices fully free; None: all)."""
    ann = labels.encode_annotations(topo, prefix=PREFIX)
    if free is not None:
        fs = frozenset(free)
        used = {g: "other/busy" for g in topo.gpu_indices if g not in fs}
        ann[PREFIX + allocation.ANNOTATION_SUFFIX] = allocation.encode(allocation.AllocationState(fs, used))
    f = facts_from_parts(name, labels.encode(topo, prefix=PREFIX), ann, prefix=PREFIX, locality_keys=(),
                         registry=_REGISTRY, now=0.0)  # no allocation timestamp: age not judged
    assert f.state is NodeState.OK, f.problem
    return f


def pod(k: int, *, rank: bool = False) -> Workload:
    kind = Kind.DISTRIBUTED if rank else (Kind.MULTI if k >= 2 else Kind.SINGLE)
    return Workload("ns", "p", "uid-p", k, Intent.PREFERRED, None, kind, JOB if rank else None, None, None, ())


def scores(w: Workload, nodes: list[NodeFacts | None]) -> list[int]:
    return Decider(resolve(list(DEFAULT_STRATEGIES))).scores(w, nodes).scores


GB200 = m.with_facts(m.corpus("038"), m.BLACKWELL)
BOX4090 = m.rtx4090_pix_box()
DGX1 = m.with_facts(m.corpus("005"), m.VOLTA, m.GEN3_X16, p2p=P2P.OK)
P4D = m.with_facts(m.corpus("013"), m.AMPERE_GA100, m.GEN4_X16, p2p=P2P.OK)
BRIDGES = m.with_facts(m.corpus("027"), m.AMPERE_GA100, m.GEN4_X16, p2p=P2P.OK)
PIX_PAIR = m.pcie_pair(m.GEN4_X16)


def test_rounding_takes_exact_halves_up() -> None:
    assert round_half_up(3 * math.log2(math.sqrt(8))) == 5  # 4.5, computed 4.499999999999999
    assert (round_half_up(9.966), round_half_up(10.75), round_half_up(2.49)) == (10, 11, 2)


# 1 ----------------------------------------------------------------------------------------------------------
def test_gb200_tray_beats_a_4gpu_pix_rtx4090_box() -> None:
    """k = 4, each pod fills its node (P = 0).

    GB200 (corpus 038, Blackwell): NV18 between all four GPUs: B = 18 × 40.1 = 721.8. The 4090 box: four GPUs
    under one PCIe switch, P2P not supported (GeForce): all four ring streams through the switch uplink, the
    slowest GPU link below it Gen4 x16 = 24: B = 24 / 4 = 6. 3·log2(721.8 / 6) = 3 × 6.910 = 20.73 → 21 off:
    GB200 10, box 0. From text alone (no facts) NV18 is valued at the slower generation with 18 links,
    NVLink 4: 18 × 20.6 = 370.8; 3·log2(370.8 / 6) = 17.85 → 18 off: still 10 against 0.
    """
    assert scores(pod(4), [node("gb200", GB200), node("box", BOX4090)]) == [10, 0]
    assert scores(pod(4), [node("gb200-text", m.corpus("038")), node("box", BOX4090)]) == [10, 0]


def test_gb200_tray_beats_the_box_as_a_rank() -> None:
    """The same nodes for a rank of a multi-node job.

    GB200: the set is the whole tray, so every NIC is reached with GPUDirect RDMA over C2C; but the NIC rates are
    not reported (assumed 10 Gb/s each): the network counts 1.25. V = √(1.25 × 721.8) = √902.25 = 30.04.
    Box: one 100 Gb/s NIC PIX to the GPUs, GPUDirect: 12.5 GB/s, within a Gen4 x16 link; every fact reported, so
    N = min(ring 6, 12.5) = 6 and V = √(6 × 6) = 6. 3·log2(30.04 / 6) = 3 × 2.324 = 6.97 → 7 off: 10 and 3.
    """
    dec = Decider(resolve(list(DEFAULT_STRATEGIES)))
    w = pod(4, rank=True)
    nodes: list[NodeFacts | None] = [node("gb200", GB200), node("box", BOX4090)]
    assert dec.scores(w, nodes).scores == [10, 3]
    e_gb, e_box = dec.explain(w, nodes)
    assert e_gb is not None and e_box is not None
    assert e_gb.value == pytest.approx(math.sqrt(1.25 * 721.8)) and e_box.value == pytest.approx(6.0)
    assert e_gb.bandwidth is not None and e_gb.bandwidth.network is not None
    assert len(e_gb.bandwidth.network.gpudirect) == 8 and e_gb.bandwidth.network.gbps == 10.0  # 8 × 1.25


# 2 ----------------------------------------------------------------------------------------------------------
def test_nvswitch_quad_beats_a_dgx1_nv1_ring() -> None:
    """k = 4, both 8-GPU nodes entirely free (P = 2).

    p4d (corpus 013, A100): NVSwitch, NV12 each: B = 12 × 20 = 240. DGX-1 (corpus 005, V100): every 4-GPU cycle
    of the hybrid cube-mesh uses an NV1 edge: B = 1 × 20 = 20. 3·log2(240 / 20) = 3 × 3.585 = 10.75 → 11 off:
    p4d 10 − 0 − 2 = 8, DGX-1 10 − 11 − 2 → 0. With the DGX-1 half used (free {4..7}, P = 0) it is still 0.
    """
    assert scores(pod(4), [node("p4d", P4D), node("dgx1", DGX1)]) == [8, 0]
    assert scores(pod(4), [node("p4d", P4D), node("dgx1", DGX1, {4, 5, 6, 7})]) == [8, 0]


# 3 ----------------------------------------------------------------------------------------------------------
def test_nv12_pair_beats_a_pix_pair_and_ties_do_not_spread() -> None:
    """k = 2. Corpus 027 (A100, NVLink-bridged pairs) entirely free: B = 12 × 20 = 240, P = 2: 8. A PIX pair with
    P2P, Gen4 x16, both free, filled exactly: B = 24, 3·log2(10) = 9.97 → 10 off: 0. A second 027 with GPUs 0–3
    used: the same 240, P = 1: 9, above the empty one (ties between empty and partly used go to the used node).
    """
    assert scores(pod(2), [node("a", BRIDGES), node("pix", PIX_PAIR)]) == [8, 0]
    assert scores(pod(2), [node("a", BRIDGES), node("b", BRIDGES, {4, 5, 6, 7}), node("pix", PIX_PAIR)]) == [8, 9, 0]


# 4 ----------------------------------------------------------------------------------------------------------
def test_a_rank_is_capped_by_its_nic() -> None:
    """k = 8 on HGX H100 boards (B = 18 × 20.6 = 370.8), each pod fills its node (P = 0).

    - one 400 Gb/s NIC PIX to GPU0: 50 GB/s, held to GPU0's Gen5 x16 = 48: N = 48, V = √(48 × 370.8) = 133.41: 10
    - one 100 Gb/s NIC PIX: N = 12.5, V = √(12.5 × 370.8) = 68.08; 3·log2(133.41 / 68.08) = 3 × 0.970 = 2.91 → 3: 7
    - 100 Gb/s NIC SYS to every GPU: staged across the socket link of an unknown CPU (assumed): N' = 1.25,
      V = √(1.25 × 370.8) = 21.53; 3·log2(133.41 / 21.53) = 3 × 2.631 = 7.89 → 8: 2
    - NIC rate unknown: N' = 1.25, the same: 2
    As single-node 8-GPU pods all four rings are 370.8: 10 each (a NIC is a cap for ranks, never a bonus).
    """
    boxes = [m.hgx_h100_one_nic("PIX", 400_000), m.hgx_h100_one_nic("PIX", 100_000),
             m.hgx_h100_one_nic("SYS", 100_000), m.hgx_h100_one_nic("PIX", None)]
    nodes: list[NodeFacts | None] = [node(f"h{i}", t) for i, t in enumerate(boxes)]
    assert scores(pod(8, rank=True), nodes) == [10, 7, 2, 2]
    assert scores(pod(8), nodes) == [10, 10, 10, 10]


# 5 ----------------------------------------------------------------------------------------------------------
def test_a_1gpu_pod_does_not_override_cpu_fit() -> None:
    """Corpus 027 (A100), 96 cores, 384 GiB, 8 GPUs in NVLink pairs 0-1, 2-3, 4-5, 6-7; pod: 1 GPU, 4 cores, 16 GiB.

    Node B: GPUs 0–4 used (free {5, 6, 7}; 90 cores, 192 GiB requested); node C idle. Both have a free NV12 pair
    (6-7 on B): c = log2 240 = 7.907 on both, so both score 10 and the scheduler's resource scoring decides.
    With node D among the candidates (free {7} only, its partner 6 used: no pair, c = 0): c_min = 0; B and C lose
    round_half_up(3 × 7.907 = 23.72) = 24 → 0, D keeps 10: the lone GPU goes first, nothing is stranded.
    """
    b, c, d = node("B", BRIDGES, {5, 6, 7}), node("C", BRIDGES), node("D", BRIDGES, {7})
    assert scores(pod(1), [b, c]) == [10, 10]
    assert scores(pod(1), [b, c, d]) == [0, 0, 10]


def test_the_shipped_resource_scoring_decides_case_5() -> None:
    """With the extender neutral (10 and 10), kube-scheduler's own plugins choose (Go integer arithmetic).

    MostAllocated over cpu and nvidia.com/gpu, after the pod: B cpu 94/96 → 97, gpu 6/8 → 75: (97 + 75) / 2 = 86;
    C cpu 4/96 → 4, gpu 1/8 → 12: 8. Balanced over cpu, memory, gpu: B (.979, .542, .750), std .1787 → 82;
    C (.0417, .0417, .125), std .0393 → 96. B 168 against C 104: B, and 2 GPUs with 2 free cores remain there.
    """
    cap = [np.array([96_000, 96_000]), np.array([384 * 1024, 384 * 1024]), np.array([8, 8])]
    req = [np.array([94_000, 4_000]), np.array([(192 + 16) * 1024, 16 * 1024]), np.array([6, 1])]
    most = FitScoring("MostAllocated", (ResourceSpec("cpu"), ResourceSpec("nvidia.com/gpu")))
    assert fit_score(most, [req[0], req[2]], [cap[0], cap[2]]).tolist() == [86, 8]
    assert balanced_allocation(req, cap).tolist() == [82, 96]


# 6 ----------------------------------------------------------------------------------------------------------
def test_cpu_only_pods_go_where_gpus_are_allocated() -> None:
    """A node gputopo does not manage (no GPU) 10; C idle 0; a 027 with 4 of 8 used 5; all 8 used 10."""
    nodes: list[NodeFacts | None] = [NodeFacts("cpu-node", NodeState.NOT_OURS), node("C", BRIDGES),
                                     node("H", BRIDGES, {4, 5, 6, 7}), node("F", BRIDGES, ())]
    assert scores(pod(0), nodes) == [10, 0, 5, 10]


# 7 ----------------------------------------------------------------------------------------------------------
def test_the_set_is_chosen_by_bandwidth_not_by_level() -> None:
    """Corpus 035 (GTX 1070 ×6 + 1080, text only, P2P unknown: staged through host memory), k = 4.

    GPUs 0–2 behind one PCIe switch, 3–6 behind another, the switches joined at PHB. The Placer's tightest set
    {3,4,5,6} (all PIX) sends four streams through one uplink: 12 / 4 = 3. Two GPUs per switch ({0,1,3,4}) send two
    streams through each: 12 / 2 = 6, the best: the score is about that set.
    """
    f = node("gtx", m.corpus("035"))
    dec = Decider(resolve(list(DEFAULT_STRATEGIES)))
    d = dec.decide(f, Shape.of(pod(4)))
    assert d.evaluation.placement is not None and d.evaluation.placement.gpus == (3, 4, 5, 6)
    assert d.group.best is not None and d.group.best.gpus == (0, 1, 3, 4) and d.group.value == 6.0
    (e,) = dec.explain(pod(4), [f])
    assert e is not None and e.busbw_gbps == 6.0 and e.gpus == (0, 1, 3, 4)


# the request's edges -------------------------------------------------------------------------------------------
def test_unjudged_nodes_score_zero_and_do_not_set_the_reference() -> None:
    """A node without data, one failing open, and a p4d (B = 240) with one free GPU score 0 for a 2-GPU pod and
    are not V*: the empty 027's NV12 pair (240) is the best candidate, P = 2: 8. (For 4 GPUs the same 027
    predicts 24: two NV12 pairs joined at NODE, through host memory at Gen4 x16.)"""
    stale = NodeFacts("stale", NodeState.STALE, problem="old", fail_reason="stale_allocation")
    nodes: list[NodeFacts | None] = [None, stale, node("one-free", P4D, {0}), node("a", BRIDGES)]
    r = Decider(resolve(list(DEFAULT_STRATEGIES))).scores(pod(2), nodes)
    assert r.scores == [0, 0, 0, 8] and r.reference == 240.0 and r.rule is Rule.MULTI
    assert Decider(resolve(list(DEFAULT_STRATEGIES))).scores(pod(4), [node("a", BRIDGES)]).reference == 24.0


def test_a_request_where_every_candidate_ties_scores_them_all_alike() -> None:
    nodes: list[NodeFacts | None] = [node(f"n{i}", BRIDGES, {0, 1, 2, 3}) for i in range(3)]
    assert scores(pod(4), nodes) == [10, 10, 10]  # equal V, each filled: nothing to prefer
    assert scores(pod(1), nodes) == [10, 10, 10]


def test_every_explanation_adds_up() -> None:
    dec = Decider(resolve(list(DEFAULT_STRATEGIES)))
    nodes: list[NodeFacts | None] = [node("a", BRIDGES), node("b", BRIDGES, {4, 5, 6, 7}), node("pix", PIX_PAIR),
                                     node("gb", GB200), node("dgx", DGX1, {0, 1, 2, 3, 6})]
    for w in (pod(0), pod(1), pod(2), pod(4), pod(2, rank=True), pod(4, rank=True)):
        got = dec.scores(w, nodes).scores
        for e, s in zip(dec.explain(w, nodes), got, strict=True):
            assert e is not None and e.score == s
            assert not e.terms or combine(e.terms, 0 if e.rule is Rule.NONGPU else 10) == s
