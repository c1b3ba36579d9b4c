"""The decision layer without HTTP: group decisions, verdicts, scores, explanations, the one cache.

Machines are real ``nvidia-smi topo -m`` outputs (``tests/fixtures/topo-corpus``, short names in
``ext_support.CORPUS_FILES``); nodes are built from what an agent publishes (``labels.encode``,
``encode_annotations``, ``allocation.encode``) and read by ``policy.nodes.facts``. Expected values
are worked out by hand from the objective (policy/scoring: 10 − 3 per halving of predicted bandwidth below
the request's best − the island penalty 0/1/2; ranks by √(N'·B)) and the bandwidth table (docs/bandwidth.md).
The hand-worked cases on named machines with their facts are in test_objective.py.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from collections.abc import Iterable

import pytest
from ext_support import PREFIX, corpus

from labeler.topology import allocation, labels
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology
from policy.decision.cache import DecisionCache, Shape, group_key
from policy.decision.decide import Decider
from policy.nodes.decode import TopologyRegistry
from policy.nodes.facts import NodeFacts, facts_from_parts
from policy.nodes.state import NodeState
from policy.scoring import DEFAULT_STRATEGIES, Rule, Scorer, combine, resolve
from policy.siblings import JobRoster
from policy.workload import Intent, JobKey, Kind, Workload

ZONE = "topology.kubernetes.io/zone"
JOB = JobKey("ns", "pytorchjob", "llm")


def workload(k: int, kind: Kind = Kind.MULTI, *, intent: Intent = Intent.PREFERRED,
             max_level: LinkLevel | None = None, job: JobKey | None = None, uid: str = "u0") -> Workload:
    return Workload("ns", f"p-{uid}", uid, k, intent, max_level, kind, job, None, None, ())


class Cluster:
    """Nodes as the agent publishes them, read through one registry (as the extender does)."""

    def __init__(self) -> None:
        self.registry = TopologyRegistry()

    def node(self, name: str, topo: Topology, free: Iterable[int] | None = None, *, zone: str | None = None,
             uuid: str | None = None) -> NodeFacts:
        lab = labels.encode(topo, prefix=PREFIX)
        if zone is not None:
            lab[ZONE] = zone
        ann = labels.encode_annotations(topo, prefix=PREFIX)
        if uuid is not None:  # every real node's annotation differs (GPU UUIDs)
            doc = json.loads(ann[PREFIX + labels.ANNOTATION_TOPOLOGY])
            for i, g in enumerate(doc["gpus"]):
                g["uuid"] = f"GPU-{uuid}-{i}"
            ann[PREFIX + labels.ANNOTATION_TOPOLOGY] = json.dumps(doc)
        if free is not None:
            free_set = frozenset(free)
            used = {g: "other/busy" for g in topo.gpu_indices if g not in free_set}
            ann[PREFIX + allocation.ANNOTATION_SUFFIX] = allocation.encode(allocation.AllocationState(free_set, used))
        f = facts_from_parts(name, lab, ann, prefix=PREFIX, locality_keys=(ZONE,), registry=self.registry,
                             now=0.0)  # no allocation carries a timestamp here: no age, any clock
        assert f.state is NodeState.OK, f.problem
        return f


@pytest.fixture
def cluster() -> Cluster:
    return Cluster()


def decider(strategies: Iterable[str] = DEFAULT_STRATEGIES) -> Decider:
    return Decider(resolve(list(strategies)))


def points(e: object) -> dict[str, int]:
    return {t.name: t.points for t in e.terms}  # type: ignore[attr-defined]


def explain1(dec: Decider, w: Workload, f: NodeFacts, siblings: object = None) -> object:
    (e,) = dec.explain(w, [f], siblings)  # type: ignore[arg-type]
    assert e is not None
    return e


# -- one group, by hand ------------------------------------------------------------------------------------
def test_dgx1_ring_group_decision(cluster: Cluster) -> None:
    """DGX-1 (text only), free {0,1,4,5}, 4-GPU pod: the only free 4-set; its ring 0-1-5-4 runs NV1, NV2, NV1,
    NV2; NVLink generation unknown with ≤ 4 links → 12 GB/s per link (GA102, the slowest), so B = 1 × 12 = 12.
    The pod takes the node's last 4 free GPUs: island penalty 0. Alone in a request it is its own best: 10."""
    f = cluster.node("dgx", corpus("dgx1"), {0, 1, 4, 5})
    dec = decider()
    d = dec.decide(f, Shape.of(workload(4)))
    ev = d.evaluation
    assert ev.placement is not None and ev.placement.gpus == (0, 1, 4, 5) and ev.level is LinkLevel.NVLINK
    g = d.group
    assert (g.rule, g.value, g.penalty, g.free, g.total) == (Rule.MULTI, 12.0, 0, 4, 8)
    assert g.best is not None and g.best.gpus == (0, 1, 4, 5) and g.best.exhaustive
    assert d.verdict.passes and dec.group_score(d, None) == 10 and dec.group_score(d, 24.0) == 7  # ×2 below: −3


def test_required_verdicts_name_the_free_islands(cluster: Cluster) -> None:
    """7 GTX on two PCIe switches (3+4 PIX), GPU 3 busy: 3+3 free behind the switches."""
    gtx = corpus("gtx_pix")
    split = cluster.node("split", gtx, {0, 1, 2, 4, 5, 6})
    whole = cluster.node("whole", gtx)
    dec = decider()
    w = workload(4, intent=Intent.REQUIRED, max_level=LinkLevel.PIX)
    result = dec.filter(w, [split, whole, None])
    assert list(result.passed) == [1, 2]  # the unknown node (None) passes: fail open
    # the reason is the same for every node refused this way (kube-scheduler counts nodes per reason);
    # the detail says why this one: its free GPUs behind each PCIe bridge
    assert result.failed == {"split": "no 4 free GPUs joined through at most a single PCIe bridge"}
    v = dec.decide(split, Shape.of(w)).verdict
    assert v.fails and not v.unresolvable and v.required is LinkLevel.PIX
    assert v.detail == "the free GPUs joined through at most a single PCIe bridge form groups of 3+3"
    # 5 GPUs within one switch: not even the empty board has them → unresolvable, preemption cannot help
    w5 = workload(5, intent=Intent.REQUIRED, max_level=LinkLevel.PXB)
    r5 = dec.filter(w5, [split, whole])
    assert list(r5.passed) == [] and r5.unresolvable == {
        "split": "hardware has no 5 GPUs joined through multiple PCIe bridges, without the PCIe host bridge",
        "whole": "hardware has no 5 GPUs joined through multiple PCIe bridges, without the PCIe host bridge"}
    assert dec.decide(whole, Shape.of(w5)).verdict.detail == (
        "the free GPUs joined through multiple PCIe bridges, without the PCIe host bridge form groups of 4+3; "
        "even with every GPU free, its best 5-GPU set is joined through a PCIe host bridge (typically the CPU) (phb)")


def test_a_board_without_nvlink_is_refused_in_words(cluster: Cluster) -> None:
    """RTX 4090 × 8, every pair across the host (SYS): no NVLink at all, even when idle."""
    rtx = cluster.node("rtx", corpus("rtx4090"))
    w = workload(2, intent=Intent.REQUIRED, max_level=LinkLevel.NVLINK)
    v = decider().decide(rtx, Shape.of(w)).verdict
    assert v.fails and v.unresolvable
    assert v.reason == "hardware has no 2 GPUs joined through a bonded set of NVLinks"
    assert v.detail == ("no two free GPUs are joined through a bonded set of NVLinks; "
                        "even with every GPU free, its best 2-GPU set is joined through the SMP interconnect "
                        "between NUMA nodes (e.g. QPI/UPI) (sys)")


def test_required_without_a_level_means_the_wirings_own_best(cluster: Cluster) -> None:
    dgx = corpus("dgx1")
    nodes = [cluster.node("ring", dgx, {0, 1, 4, 5}), cluster.node("broken", dgx, {0, 1, 6, 7})]
    result = decider().filter(workload(4, intent=Intent.REQUIRED), nodes)
    assert list(result.passed) == [0]
    assert result.failed == {"broken": "no 4 free GPUs joined through a bonded set of NVLinks"}


def test_shape_keeps_only_what_decides() -> None:
    assert Shape.of(workload(4, max_level=LinkLevel.PIX)) == Shape(4, Kind.MULTI)  # preferred: level unused
    assert Shape.of(workload(1, intent=Intent.REQUIRED)) == Shape(1, Kind.MULTI)  # one GPU has no links
    s = Shape.of(workload(4, Kind.DISTRIBUTED, intent=Intent.REQUIRED, max_level=LinkLevel.NVLINK))
    assert s.required and s.max_level is LinkLevel.NVLINK
    assert group_key(3, 0b1011, s) == (3, 0b1011, 4, list(Kind).index(Kind.DISTRIBUTED), 1, int(LinkLevel.NVLINK))


# -- explanations ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("board", "free", "k", "kind", "gpus", "busbw", "score"), [
    # NV12 bridge pair: 12 links × 20 GB/s (generation unknown: the slowest with 12 links) = 240 GB/s; the four
    # pairs tie, the lowest bitmask wins: {0,1}. Alone it is the best (0 off); the board is empty: island 2 → 8
    ("bridge_pairs", None, 2, Kind.MULTI, (0, 1), 240.0, 8),
    # RTX 4090 box, every pair SYS: through host memory across sockets, 6 GB/s (socket link, CPU unknown);
    # all pairs tie → {0,1}; empty board → 8
    ("rtx4090", None, 2, Kind.MULTI, (0, 1), 6.0, 8),
    # H100 NV18 with PIX NICs on GPUs 0, 2, 4, 6, a multi-node rank: every 4-set rings at 18 × 20.6 = 370.8;
    # NIC rates unknown, so every set's network counts 1.25: V = √(1.25 × 370.8) = 21.53 for all, {0,1,2,3}
    # (lowest mask). Its prediction as a rank: NIC0..NIC3 (PIX to GPUs 0 and 2) at 1.25 GB/s each = 5 GB/s.
    # Empty board: island 2 → 8
    ("h100_nv18", None, 4, Kind.DISTRIBUTED, (0, 1, 2, 3), 5.0, 8),
    # DGX-1 cube-mesh, free {0,1,4,5}: ring 0-1-5-4 over NV1 links, 1 × 12 GB/s (generation unknown); fills: 10
    ("dgx1", {0, 1, 4, 5}, 4, Kind.MULTI, (0, 1, 4, 5), 12.0, 10),
])
def test_explain_names_the_set_its_bandwidth_and_every_term(
        cluster: Cluster, board: str, free: set[int] | None, k: int, kind: Kind, gpus: tuple[int, ...],
        busbw: float, score: int) -> None:
    f = cluster.node("n", corpus(board), free)
    dec = decider()
    w = workload(k, kind, job=JOB if kind is Kind.DISTRIBUTED else None)
    e = explain1(dec, w, f)
    assert (e.gpus, e.busbw_gbps, e.score) == (gpus, busbw, score)  # type: ignore[attr-defined]
    assert e.score == dec.scores(w, [f]).scores[0] == combine(e.terms)  # type: ignore[attr-defined]
    assert [t.name for t in e.terms] == ["bandwidth", "island"]  # type: ignore[attr-defined]
    assert json.loads(json.dumps(e.as_dict()))["busbw_gbps"] == busbw  # type: ignore[attr-defined]


def test_explain_a_rank_next_to_its_siblings(cluster: Cluster) -> None:
    """Affinity: 0 off where the node has the siblings' majority zone and class, 1 of 2 keys off elsewhere."""
    topo = corpus("h100_nv18")
    nodes = {n: cluster.node(n, topo, zone=z) for n, z in (("a1", "a"), ("a2", "a"), ("b1", "b"))}
    roster = JobRoster()
    roster.bind(JOB, "u1", "a1")
    roster.bind(JOB, "u2", "b1")
    roster.bind(JOB, "u3", "a2")
    w = workload(4, Kind.DISTRIBUTED, job=JOB, uid="u4")
    sib = roster.siblings(w, nodes.get, 1)
    assert sib is not None and sib.locality == ("a",) and sib.nodes == frozenset({"a1", "a2", "b1"})
    dec = decider()
    # every node: the same V (all empty H100 boards, network unknown), island 2 (empty)
    # a1: zone and class match → affinity 0 → 10 − 0 − 2 = 8
    # b1: zone differs, class matches: round_half_up(2 × 1/2) = 1 → penalties 2 + 1 = 3 (the cap) → 7
    ea, eb = dec.explain(w, [nodes["a1"], nodes["b1"]], sib)
    assert ea is not None and eb is not None
    assert points(ea) == {"bandwidth": 0, "island": -2, "affinity": 0} and ea.score == 8
    assert points(eb) == {"bandwidth": 0, "island": -2, "affinity": -1} and eb.score == 7
    assert dec.scores(w, [nodes["a1"], nodes["b1"]], sib).scores == [8, 7]
    # a partly used node in zone a (6 free: the pod does not fill it): island 1, affinity 0 → 9, ahead of the
    # empty one; one with exactly 4 free: filled, island 0 → 10
    half = cluster.node("a3", topo, {2, 3, 4, 5, 6, 7}, zone="a")
    assert dec.scores(w, [nodes["a1"], nodes["b1"], half], sib).scores == [8, 7, 9]
    fits = cluster.node("a4", topo, {4, 5, 6, 7}, zone="a")
    assert dec.scores(w, [half, fits], sib).scores == [9, 10]
    # without siblings there is no affinity term, and the score is the group's
    (e0,) = dec.explain(w, [nodes["a1"]])
    assert e0 is not None and points(e0) == {"bandwidth": 0, "island": -2} and e0.score == 8


def test_unjudged_nodes_explain_why() -> None:
    dec = decider()
    f = NodeFacts("gone", NodeState.STALE, problem="allocation is 4000s old", fail_reason="stale_allocation")
    e = explain1(dec, workload(4, intent=Intent.REQUIRED), f)
    assert e.verdict.passes and e.score == 0 and e.problem == "allocation is 4000s old" and e.gpus == ()  # type: ignore[attr-defined]
    # a node gputopo does not manage: nothing for GPU pods, fully allocated (10) for a pod without GPUs
    cpu = NodeFacts("cpu-node", NodeState.NOT_OURS)
    assert dec.explain(workload(2), [cpu, None])[0].score == 0  # type: ignore[union-attr]
    assert dec.explain(workload(0), [cpu])[0].score == 10  # type: ignore[union-attr]
    assert dec.explain(workload(0), [None]) == [None]


# -- many nodes, decided once per group --------------------------------------------------------------------
def test_identically_wired_nodes_share_one_decision(cluster: Cluster) -> None:
    """Two nodes with different GPU UUIDs, same board and free set: one wiring, one cached decision."""
    topo = corpus("h100_1nic")
    a, b = cluster.node("a", topo, {0, 1, 2, 3}, uuid="a"), cluster.node("b", topo, {0, 1, 2, 3}, uuid="b")
    c = cluster.node("c", topo, {4, 5, 6, 7}, uuid="c")
    assert a.topo_id == b.topo_id == c.topo_id and a.key == b.key != c.key
    dec = decider()
    shape = Shape.of(workload(2))
    assert dec.decide(a, shape) is dec.decide(b, shape)
    assert len(dec.cache) == 1 and len(dec.cache.contexts) == 1
    dec.scores(workload(2), [a, b, c])
    assert len(dec.cache) == 2


def test_batch_answers_equal_one_node_explanations(cluster: Cluster) -> None:
    """filter/scores over many nodes (with per-request memos) = explain node by node, on four real boards."""
    rng = random.Random(11)
    nodes = []
    for board in ("dgx1", "bridge_pairs", "rtx4090", "h100_nv18", "gtx_pix"):
        topo = corpus(board)
        for i in range(12):
            free = [g for g in topo.gpu_indices if rng.random() < 0.6]
            nodes.append(cluster.node(f"{board}-{i}", topo, free, zone=rng.choice("ab")))
    dec = decider()
    roster = JobRoster()
    roster.bind(JOB, "x", nodes[0].name)
    for k in (0, 1, 2, 3, 4, 8):
        for kind in (Kind.SINGLE if k == 1 else Kind.MULTI, Kind.INFERENCE, Kind.DISTRIBUTED):
            for intent in (Intent.PREFERRED, Intent.REQUIRED):
                w = workload(k, kind, intent=intent, job=JOB if kind is Kind.DISTRIBUTED else None)
                sib = roster.siblings(w, {f.name: f for f in nodes}.get, 1) if dec.needs_siblings(w) else None
                scores = dec.scores(w, nodes, sib).scores
                passed = set(dec.filter(w, nodes).passed)
                for i, e in enumerate(dec.explain(w, nodes, sib)):
                    assert e is not None
                    assert (e.score, e.verdict.passes) == (scores[i], i in passed), (e.node, k, kind, intent)
                    assert not e.terms or e.score == combine(e.terms, Scorer.base(e.rule))


def test_a_broken_group_fails_open_once(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node whose data breaks our code passes and scores 0; each broken group is reported once."""
    dgx, nv = corpus("dgx1"), corpus("h100_nv18")
    nodes = [cluster.node("bad1", dgx), cluster.node("bad2", dgx), cluster.node("ok", nv)]
    dec = decider()
    real = dec.cache.contexts.get

    def get(topo_id: int, topo: Topology) -> object:
        if topo.gpu_link(0, 5).token == "SYS":  # the DGX-1 only
            raise RuntimeError("simulated bug")
        return real(topo_id, topo)

    monkeypatch.setattr(dec.cache.contexts, "get", get)
    w = workload(4, intent=Intent.REQUIRED, max_level=LinkLevel.NVLINK)
    result = dec.filter(w, nodes)
    assert list(result.passed) == [0, 1, 2] and [n for n, _ in result.errors] == ["bad1"]
    scored = dec.scores(w, nodes)
    assert scored.scores[:2] == [0, 0] and scored.scores[2] > 0 and len(scored.errors) == 1


def test_ignore_scores_zero_everywhere(cluster: Cluster) -> None:
    f = cluster.node("n", corpus("dgx1"))
    dec = decider()
    assert dec.scores(workload(4, intent=Intent.IGNORE), [f]).scores == [0]
    assert dec.scores(workload(0, intent=Intent.IGNORE), [f]).scores == [0]
    assert list(dec.filter(workload(4, intent=Intent.IGNORE), [f]).passed) == [0]
    assert len(dec.cache) == 0  # nothing was decided


def test_pods_without_gpus_go_where_gpus_are_allocated(cluster: Cluster) -> None:
    """round_half_up(10 × allocated / 8): idle 0, 1 used → 1.25 → 1, half used 5, 7 used → 8.75 → 9, full 10;
    a node gputopo does not manage 10, an unknown one 0. Absolute: no reference, no island term."""
    dgx = corpus("dgx1")
    nodes: list[NodeFacts | None] = [
        cluster.node("idle", dgx), cluster.node("one", dgx, range(1, 8)), cluster.node("half", dgx, range(4)),
        cluster.node("seven", dgx, [0]), cluster.node("full", dgx, []), NodeFacts("cpu", NodeState.NOT_OURS), None]
    r = decider().scores(workload(0), nodes)
    assert r.scores == [0, 1, 5, 9, 10, 10, 0] and r.rule is Rule.NONGPU and r.reference is None


# -- the cache is bounded by bytes, and its estimate is not below what it holds ------------------------------
def test_cache_estimate_covers_measured_memory(cluster: Cluster) -> None:
    rng = random.Random(3)
    topo = corpus("h100_nv18")
    nodes = [cluster.node(f"n{i}", topo, [g for g in topo.gpu_indices if rng.random() < 0.6]) for i in range(600)]
    dec = decider()
    shape = Shape.of(workload(4, Kind.DISTRIBUTED, intent=Intent.REQUIRED, job=JOB))
    dec.decide(nodes[0], shape)  # the context and the placer exist before measuring
    dec.cache.clear()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for f in nodes:
            dec.decide(f, shape)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(dec.cache) > 100
    assert dec.cache.bytes >= held  # the estimate is conservative


def test_cache_is_bounded(cluster: Cluster) -> None:
    topo = corpus("h100_nv18")
    cache = DecisionCache(max_bytes=40_000)
    dec = Decider(resolve(list(DEFAULT_STRATEGIES)), cache=cache)
    for mask in range(1, 256):
        f = cluster.node("n", topo, [g for g in topo.gpu_indices if mask >> g & 1])
        dec.decide(f, Shape.of(workload(2)))
        assert cache.bytes <= 40_000
    assert 0 < len(cache) < 255
