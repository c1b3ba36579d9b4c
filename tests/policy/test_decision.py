"""The decision layer without HTTP: group decisions, verdicts, scores, explanations, the one cache.

Machines are real ``nvidia-smi topo -m`` outputs (``tests/fixtures/topo-corpus``, short names in
``ext_support.CORPUS_FILES``); nodes are built from what an agent publishes (``labels.encode``,
``encode_annotations``, ``allocation.encode``) and read by ``policy.nodes.facts``. Expected values
are worked out by hand from the weights table (policy/scoring/__init__.py: level 8 / fit 2 for a
multi-GPU pod; 6 / 1 / nic 2 / affinity 2 for a multi-node rank) and the bandwidth table
(docs/bandwidth.md).
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
from policy.scoring import DEFAULT_STRATEGIES, combine, resolve
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


def terms(e: object) -> dict[str, tuple[int, int | None]]:
    return {t.name: (t.weight, t.score) for t in e.terms}  # type: ignore[attr-defined]


# -- one group, by hand ------------------------------------------------------------------------------------
def test_dgx1_ring_group_decision(cluster: Cluster) -> None:
    """DGX-1, free {0,1,4,5}, 4-GPU pod: ring 0-1-5-4 is all NVLink → level 10; fit 4/4 → 10; (80+20)/10 = 10."""
    f = cluster.node("dgx", corpus("dgx1"), {0, 1, 4, 5})
    d = decider().decide(f, Shape.of(workload(4)))
    ev = d.evaluation
    assert ev.placement is not None and ev.placement.gpus == (0, 1, 4, 5) and ev.level is LinkLevel.NVLINK
    assert d.verdict.passes and d.partial == (100, 10) and d.score == 10
    assert {t.name: (t.weight, t.score) for t in d.terms} == {
        "level": (8, 10), "fit": (2, 10), "pack": (0, None), "nic": (0, None)}


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
    # NV12 bridge pair: 12 links × 20 GB/s (generation unknown: the slowest with 12 links) = 240 GB/s
    ("bridge_pairs", None, 2, Kind.MULTI, (0, 1), 240.0, 10),
    # RTX 4090 box, every pair SYS: through host memory across sockets, 6 GB/s (socket link, CPU unknown)
    ("rtx4090", None, 2, Kind.MULTI, (0, 1), 6.0, 1),
    # H100 NV18 with two PIX NICs on GPUs 0 and 2, a multi-node rank: the NV18 ring is capped by the
    # network: NIC0..NIC3 at an unknown rate (10 Gb/s assumed = 1.25 GB/s each) → 4 × 1.25 = 5 GB/s.
    # score: level 10 ×6, fit 4/8 → 5 ×1, nic 2 of 4 GPUs → 5 ×2, affinity abstains: (60+5+10)/9 → 8
    ("h100_nv18", None, 4, Kind.DISTRIBUTED, (0, 1, 2, 3), 5.0, 8),
    # DGX-1 cube-mesh, free {0,1,4,5}: ring 0-1-5-4 over NV1 links, 1 × 12 GB/s (generation unknown)
    ("dgx1", {0, 1, 4, 5}, 4, Kind.MULTI, (0, 1, 4, 5), 12.0, 10),
])
def test_explain_names_the_set_its_bandwidth_and_every_term(
        cluster: Cluster, board: str, free: set[int] | None, k: int, kind: Kind, gpus: tuple[int, ...],
        busbw: float, score: int) -> None:
    f = cluster.node("n", corpus(board), free)
    dec = decider()
    w = workload(k, kind, job=JOB if kind is Kind.DISTRIBUTED else None)
    e = dec.explain(w, f)
    assert (e.gpus, e.busbw_gbps, e.score) == (gpus, busbw, score)
    assert e.score == dec.scores(w, [f]).scores[0] == combine(e.terms)
    assert [t.name for t in e.terms] == list(DEFAULT_STRATEGIES)  # every strategy, weight 0 ones too
    assert json.loads(json.dumps(e.as_dict()))["busbw_gbps"] == busbw


def test_explain_a_rank_next_to_its_siblings(cluster: Cluster) -> None:
    """Affinity 10 when the node's zone is the siblings' majority zone, 0 when not; the rest as above."""
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
    # zone a: affinity zone matches and the class matches → 10; (60 + 5 + 10 + 20)/11 = 8.6 → 9
    ea, eb = dec.explain(w, nodes["a1"], sib), dec.explain(w, nodes["b1"], sib)
    assert terms(ea)["affinity"] == (2, 10) and ea.score == 9
    # zone b: zone differs, class matches → 5; (60 + 5 + 10 + 10)/11 = 7.7 → 8
    assert terms(eb)["affinity"] == (2, 5) and eb.score == 8
    assert dec.scores(w, [nodes["a1"], nodes["b1"]], sib).scores == [9, 8]
    # without siblings the per-node term is listed, abstaining, and the score is the shared one
    e0 = dec.explain(w, nodes["a1"])
    assert terms(e0)["affinity"] == (2, None) and e0.score == 8


def test_unjudged_nodes_explain_why() -> None:
    dec = decider()
    f = NodeFacts("gone", NodeState.STALE, problem="allocation is 4000s old", fail_reason="stale_allocation")
    e = dec.explain(workload(4, intent=Intent.REQUIRED), f)
    assert e.verdict.passes and e.score == 0 and e.problem == "allocation is 4000s old" and e.gpus == ()


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
    for k in (1, 2, 3, 4, 8):
        for kind in (Kind.SINGLE if k == 1 else Kind.MULTI, Kind.INFERENCE, Kind.DISTRIBUTED):
            for intent in (Intent.PREFERRED, Intent.REQUIRED):
                w = workload(k, kind, intent=intent, job=JOB if kind is Kind.DISTRIBUTED else None)
                sib = roster.siblings(w, {f.name: f for f in nodes}.get, 1) if dec.needs_siblings(w) else None
                scores = dec.scores(w, nodes, sib).scores
                passed = set(dec.filter(w, nodes).passed)
                for i, f in enumerate(nodes):
                    e = dec.explain(w, f, sib)
                    assert (e.score, e.verdict.passes) == (scores[i], i in passed), (f.name, k, kind, intent)


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


def test_no_gpus_and_ignore_score_zero_everywhere(cluster: Cluster) -> None:
    f = cluster.node("n", corpus("dgx1"))
    dec = decider()
    assert dec.scores(workload(0), [f]).scores == [0]
    assert dec.scores(workload(4, intent=Intent.IGNORE), [f]).scores == [0]
    assert list(dec.filter(workload(4, intent=Intent.IGNORE), [f]).passed) == [0]
    assert len(dec.cache) == 0  # nothing was decided


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
