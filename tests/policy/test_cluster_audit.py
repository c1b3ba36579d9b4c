"""The cluster audit's analysis without a cluster: node decoding, freshness, pools, pods, stranded GPUs, nccl-tests.

Machines are real ``nvidia-smi topo -m`` outputs (``tests/cli/cluster_fixture.py``): an L40S
board with four PCIe switches of two GPUs (PIX pairs 0-1, 2-3, 4-5, 6-7; NODE inside a socket,
SYS across), HGX H100 (NV18 everywhere) and an A100 PCIe board with NVLink bridge pairs. Every
expected value below is read off those matrices by hand.
"""

from __future__ import annotations

import string

import pytest
from cluster_fixture import A100, FIXTURES, H100, L40S, L40S_ODD, PREFIX, _parse, alloc
from hypothesis import given, settings
from hypothesis import strategies as st

from labeler.topology import allocation, labels
from labeler.topology.findings import Severity
from labeler.topology.links import LinkLevel
from policy.audit.cluster_audit import PendingPod, audit
from policy.audit.cluster_gpus import Topologies, nccl_suggestion, pod_spans, stranded
from policy.audit.cluster_nodes import AuditConfig, Decoder, Freshness, NodeInput, view_node

NOW = 1_800_000_000.0
CFG = AuditConfig(now=NOW, allocation_max_age_s=1800.0, allocation_refresh_s=600.0)
POOL = {"eks.amazonaws.com/nodegroup": "l40s", "node.kubernetes.io/instance-type": "g6e.48xlarge"}


def labelled(name: str, topo=L40S, *, free=None, used=None, ts: float | None = NOW - 30, extra=None,
             status=labels.Status.OK, capacity: int | None = 8, carrier: str = "configmap", **kw) -> NodeInput:
    lab = {**POOL, **labels.encode(topo, prefix=PREFIX, status=status), **(extra or {})}
    ann = dict(labels.encode_annotations(topo, prefix=PREFIX))
    used = dict(used or {})
    free_set = frozenset(topo.gpu_indices) - used.keys() if free is None else frozenset(free)
    value = allocation.encode(allocation.AllocationState(free_set, used, None if ts is None else int(ts)))
    if carrier == "annotation":
        ann[PREFIX + "allocation"] = value
        return NodeInput(name, lab, ann, capacity, **kw)
    return NodeInput(name, lab, ann, capacity, allocation_configmap=value if carrier == "configmap" else None, **kw)


def codes(inp: NodeInput, cfg: AuditConfig = CFG) -> list[tuple[str, str]]:
    _, found = view_node(inp, cfg, Decoder(PREFIX))
    assert all(f.nodes == (inp.name,) and f.message.startswith(inp.name + ": ") for f in found)
    return sorted((f.severity.value, f.code) for f in found)


# -- one node ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("case", "inp", "expected"), [
    ("healthy L40S", labelled("n"), []),
    ("CPU node", NodeInput("n", {"node.kubernetes.io/instance-type": "m7i.8xlarge"}), []),
    ("GPU capacity, no labels", NodeInput("n", {}, {}, 8), [("warning", "unlabelled")]),
    ("GFD count only", NodeInput("n", {"nvidia.com/gpu.count": "4"}), [("warning", "unlabelled")]),
    ("GFD count 0 is not a GPU node", NodeInput("n", {"nvidia.com/gpu.count": "0"}), []),
    ("capacity unreadable: the resource is advertised", NodeInput("n", {}, {}, -1),
     [("warning", "undecodable-capacity"), ("warning", "unlabelled")]),
    ("status error keeps labels", labelled("n", status=labels.Status.ERROR), [("error", "status-error")]),
    ("status degraded", labelled("n", status=labels.Status.DEGRADED), [("warning", "status-degraded")]),
    ("status junk", labelled("n", extra={PREFIX + "status": "[/bold]"}),
     [("warning", "undecodable-status")]),
    ("schema from the future", labelled("n", extra={PREFIX + "schema": "v9"}), [("warning", "undecodable-labels")]),
    ("gpu-count not a number", labelled("n", extra={PREFIX + "gpu-count": "eight"}),
     [("warning", "undecodable-labels")]),
    ("class label edited", labelled("n", extra={PREFIX + "topology-class": "0000000000"}),
     [("warning", "class-mismatch")]),
    ("no device plugin", labelled("n", capacity=None), [("warning", "capacity-differs")]),
    ("time-slicing capacity", labelled("n", capacity=32), [("info", "capacity-differs")]),
    ("allocation on the Node annotation", labelled("n", carrier="annotation"), []),
    ("no allocation anywhere", labelled("n", carrier="none"), [("warning", "no-allocation")]),
    ("allocation names GPU 9", labelled("n", free=[0, 1, 9]), [("warning", "allocation-mismatch")]),
    ("unstamped allocation (v1 agent)", labelled("n", ts=None), []),
])
def test_view_node_findings(case: str, inp: NodeInput, expected: list[tuple[str, str]]) -> None:
    assert codes(inp) == sorted(expected), case


def test_damaged_annotations_are_that_nodes_problem() -> None:
    bad_topo = labelled("n")
    ann = {**bad_topo.annotations, PREFIX + "topology": '{"v":2,"gpus":[{"index":0'}
    inp = NodeInput("n", bad_topo.labels, ann, 8, allocation_configmap="not json")
    view, found = view_node(inp, CFG, Decoder(PREFIX))
    assert sorted(f.code for f in found) == ["undecodable-allocation", "undecodable-topology"]
    assert view.topo is None and view.state is None and not view.usable
    assert view.topology_class == labels.encode(L40S)[PREFIX + "topology-class"]  # the label still groups it


def test_the_configmap_wins_over_the_node_annotation() -> None:
    inp = labelled("n", carrier="annotation", used={0: "old/pod"})
    newer = alloc(L40S, NOW - 5)
    view, _ = view_node(NodeInput("n", inp.labels, inp.annotations, 8, allocation_configmap=newer), CFG,
                        Decoder(PREFIX))
    assert view.allocation_source == "configmap" and view.state is not None and not view.state.used


@pytest.mark.parametrize(("age", "max_age", "freshness", "code"), [
    (30, 1800, Freshness.FRESH, None),
    (1800, 1800, Freshness.FRESH, None),  # the extender's rule is "older than": exactly max_age is fresh
    (1801, 1800, Freshness.STALE, "stale-allocation"),
    (10 * 86400, 0, Freshness.FRESH, None),  # allocation_max_age_seconds=0: never stale (extender too)
    (-1000, 1800, Freshness.FRESH, None),  # a little clock skew
    (-1801, 1800, Freshness.FUTURE, "allocation-from-future"),
])
def test_freshness_follows_the_extenders_rule(age: float, max_age: float, freshness: Freshness,
                                               code: str | None) -> None:
    cfg = AuditConfig(now=NOW, allocation_max_age_s=max_age, allocation_refresh_s=600.0)
    view, found = view_node(labelled("n", ts=NOW - age), cfg, Decoder(PREFIX))
    assert view.freshness is freshness
    assert [f.code for f in found] == ([] if code is None else [code])
    assert view.usable is (freshness is Freshness.FRESH)


def test_identical_annotations_are_decoded_once() -> None:
    decoder = Decoder(PREFIX)
    for i in range(50):
        view_node(labelled(f"n{i}"), CFG, decoder)
    view_node(labelled("h", H100), CFG, decoder)
    assert len(decoder) == 2


# -- pods spanning islands ------------------------------------------------------------------------------
# 032 (RTX 4090 x8): every pair SYS; NUMA affinity 0 for GPU0-3, 1 for GPU4-7
RTX4090 = _parse(FIXTURES / "topo-corpus" / "032_rtx4090x8-allsys-2nics-tabs.txt", "NVIDIA GeForce RTX 4090")


@pytest.mark.parametrize(("topo", "gpus", "level", "best", "spans", "crosses"), [
    (L40S, [0, 1], LinkLevel.PIX, LinkLevel.PIX, False, False),  # one switch
    (L40S, [0, 2], LinkLevel.NODE, LinkLevel.PIX, True, False),  # two switches of socket 0; a PIX pair existed
    (L40S, [0, 1, 4, 5], LinkLevel.SYS, LinkLevel.NODE, True, True),  # two per socket; 0-3 stays in socket 0
    (L40S, list(range(8)), LinkLevel.SYS, LinkLevel.SYS, False, True),  # all 8: no way around the socket link
    (H100, [0, 4], LinkLevel.NVLINK, LinkLevel.NVLINK, False, False),  # NVSwitch: no PCIe on the ring
    (A100, [0, 1], LinkLevel.NVLINK, LinkLevel.NVLINK, False, False),  # a bridge pair
    (A100, [1, 2], LinkLevel.NODE, LinkLevel.NVLINK, True, False),  # two bridges' halves
    (RTX4090, [0, 1], LinkLevel.SYS, LinkLevel.SYS, False, False),  # SYS, but one NUMA node: no crossing
    (RTX4090, [3, 4], LinkLevel.SYS, LinkLevel.SYS, False, True),  # NUMA 0 and 1 (avoidable: 0,1 share one)
])
def test_pod_level_against_the_nodes_best(topo, gpus, level, best, spans, crosses) -> None:
    view, _ = view_node(labelled("n", topo, used={g: "ml/p" for g in gpus}), CFG, Decoder(PREFIX))
    (span,) = pod_spans([view], Topologies())
    assert (span.pod, span.gpus, span.level, span.best) == ("ml/p", tuple(gpus), level, best)
    assert (span.spans, span.crosses_sockets) == (spans, crosses)
    assert span.sys_within_numa is (level is LinkLevel.SYS and not crosses)


def test_a_sys_ring_inside_one_numa_node_is_its_own_finding() -> None:
    # 032: pod a holds GPUs 0,1 (both NUMA 0), pod b GPUs 3,4 (NUMA 0 and 1); every ring is SYS
    report = audit([labelled("rtx", RTX4090, used={0: "ml/a", 1: "ml/a", 3: "ml/b", 4: "ml/b"})], [], CFG)
    codes = {(f.code, f.pod, f.severity) for f in report.findings if f.pod}
    # b crosses though GPUs 0-3 share NUMA 0: avoidable, a warning; a stays in one node: information only
    assert codes == {("pod-crosses-sockets", "ml/b", Severity.WARNING), ("pod-sys-within-numa", "ml/a", Severity.INFO)}
    summary = report.to_dict()["summary"]
    assert (summary["pods_crossing_sockets"], summary["pods_sys_within_numa"]) == (1, 1)


def test_single_gpu_pods_and_unusable_nodes_have_no_span() -> None:
    one, _ = view_node(labelled("a", used={0: "ml/one"}), CFG, Decoder(PREFIX))
    stale, _ = view_node(labelled("b", used={0: "ml/x", 4: "ml/x"}, ts=NOW - 7200), CFG, Decoder(PREFIX))
    assert pod_spans([one, stale], Topologies()) == []


# -- stranded GPUs (docs/audit.md, "Stranded GPUs") ------------------------------------------------------
@pytest.mark.parametrize(("case", "topo", "free", "sizes", "expected"), [
    ("2-GPU pods, one free GPU per socket: no PIX pair", L40S, [0, 4], [2], [0, 4]),
    ("2-GPU pods, a free PIX pair and a lone GPU", L40S, [0, 1, 2], [2], [2]),
    ("1-GPU pods use anything", L40S, [0, 4], [1, 2], []),
    ("too few free for any size: count, not topology", L40S, [0, 2, 4], [4], []),
    ("4-GPU pods, 2+2 across sockets", L40S, [0, 1, 4, 5], [4], [0, 1, 4, 5]),
    ("4-GPU pods, socket 1 whole", L40S, [0, 4, 5, 6, 7], [4], [0]),
    ("8-GPU pods on a partly used node: count, not topology", L40S, [0, 1, 2, 3], [8], []),
    ("sizes above the node's GPU count are ignored", L40S, [0, 4], [2, 16], [0, 4]),
    ("NVSwitch strands nothing", H100, [0, 3, 5, 6], [4], []),
    ("bridge pairs: 2-GPU pods want a pair", A100, [0, 2, 4, 5], [2], [0, 2]),
])
def test_stranded(case: str, topo, free: list[int], sizes: list[int], expected: list[int]) -> None:
    used = {g: "x/busy" for g in topo.gpu_indices if g not in free}
    view, _ = view_node(labelled("n", topo, used=used), CFG, Decoder(PREFIX))
    result = stranded(view, sizes, Topologies())
    assert (list(result.stranded) if result else []) == expected, case


# -- nccl-tests node ------------------------------------------------------------------------------------
def test_nccl_node_is_the_freshest_healthy_idle_schedulable_one() -> None:
    views = [view_node(inp, CFG, Decoder(PREFIX))[0] for inp in [
        labelled("a-busy", used={0: "ml/p"}, ts=NOW - 1),
        labelled("b-cordoned", ts=NOW - 2, unschedulable=True),
        labelled("c-degraded", ts=NOW - 2, status=labels.Status.DEGRADED),
        labelled("d-unstamped", ts=None),
        labelled("e-older", ts=NOW - 300),
        labelled("f-fresh", ts=NOW - 20),
        labelled("g-fresh", ts=NOW - 20),
    ]]
    s = nccl_suggestion(views)
    assert s is not None and (s.node, s.gpus) == ("f-fresh", 8)
    assert s.command == "NCCL_DEBUG=INFO all_reduce_perf -b 8 -e 1G -f 2 -g 8"
    assert nccl_suggestion(views[:4]) is None


# -- pools and the whole analysis -----------------------------------------------------------------------
def test_odd_one_out_and_split_pool() -> None:
    nodes = [labelled(f"l{i}") for i in range(5)] + [labelled("odd", L40S_ODD)]
    split = {"karpenter.sh/nodepool": "mixed", "node.kubernetes.io/instance-type": "x"}
    nodes += [NodeInput(f"m{i}", {**n.labels, **split}, n.annotations, 8, allocation_configmap=n.allocation_configmap)
              for i, n in enumerate([labelled("_", L40S), labelled("_", H100)])]
    # no pool and no type: unrelated machines are not compared
    bare = [labelled("_", t) for t in (L40S, H100)]
    nodes += [NodeInput(f"bare{i}", {k: v for k, v in n.labels.items() if k.startswith(PREFIX)}, n.annotations, 8,
                        allocation_configmap=n.allocation_configmap) for i, n in enumerate(bare)]
    report = audit(nodes, [], CFG)
    found = {(f.code, f.nodes) for f in report.findings if f.code in ("odd-one-out", "pool-split")}
    assert found == {("odd-one-out", ("odd",)), ("pool-split", ("m0", "m1"))}
    odd = next(f for f in report.findings if f.code == "odd-one-out")
    assert "1 of 6 nodes has class" in odd.message and "shape-pcie-switch 2-2-2-1-1 vs 2-2-2-2" in odd.message
    pool = next(p for p in report.pools if p.pool == "eks.amazonaws.com/nodegroup=l40s")
    assert pool.majority == labels.encode(L40S)[PREFIX + "topology-class"] and pool.odd == ["odd"]


def test_demanded_sizes_pending_first_then_running_then_given() -> None:
    nodes = [labelled("a", used={0: "ml/one"}), labelled("b", used={0: "ml/two", 1: "ml/two"})]
    pending = [PendingPod("ml/w", 4), PendingPod("ml/cpu", 0)]
    assert (audit(nodes, pending, CFG).sizes, audit(nodes, pending, CFG).sizes_source) == ((4,), "pending")
    assert (audit(nodes, [], CFG).sizes, audit(nodes, [], CFG).sizes_source) == ((1, 2), "running")
    given_cfg = AuditConfig(now=NOW, allocation_max_age_s=1800, allocation_refresh_s=600, sizes=(8, 2, 2))
    assert audit(nodes, pending, given_cfg).sizes == (2, 8)
    assert audit([], [], CFG).sizes_source == "none"


def test_stranded_severity_follows_where_sizes_came_from() -> None:
    node = labelled("a", used={g: "x/busy" for g in (1, 2, 3, 5, 6, 7)})  # free 0 and 4: one per socket
    pend = audit([node], [PendingPod("ml/w", 2)], CFG)
    assert [(f.code, f.severity) for f in pend.findings if f.code == "stranded"] == [("stranded", Severity.WARNING)]
    assert "at pix (this node's best for 2 GPUs) the free GPUs form islands of 1-1" in pend.findings[0].message
    typical = audit([node, labelled("b", used={0: "ml/p", 1: "ml/p"})], [], CFG)
    assert [(f.code, f.nodes, f.severity) for f in typical.findings if f.code == "stranded"] == [
        ("stranded", ("a",), Severity.INFO)]


def test_json_document_shape() -> None:
    doc = audit([labelled("a", used={0: "ml/p", 4: "ml/p"})], [PendingPod("ml/w", 2)], CFG).to_dict()
    assert set(doc) == {"summary", "settings", "nodes", "pools", "classes", "pods", "stranded", "nccl", "findings"}
    (node,) = doc["nodes"]
    assert node["shapes"] == {"nvlink": "1-1-1-1-1-1-1-1", "pcie-switch": "2-2-2-2", "host-bridge": "2-2-2-2",
                              "numa": "4-4"}
    assert node["allocation"]["freshness"] == "fresh" and node["allocation"]["used"] == {"0": "ml/p", "4": "ml/p"}
    assert doc["pods"] == [{"pod": "ml/p", "node": "a", "gpus": [0, 4], "level": "sys", "ring_bottleneck": "SYS",
                            "best_level": "pix", "spans_islands": True, "crosses_sockets": True}]
    assert doc["summary"]["findings"] == {"info": 1, "warning": 2, "error": 0}  # crossing + stranded; no nccl node
    assert {f["code"] for f in doc["findings"]} == {"pod-crosses-sockets", "stranded", "no-nccl-candidate"}


# -- hostile input -------------------------------------------------------------------------------------
_text = st.text(alphabet=string.printable + "é✓[]{}\"\\", max_size=40)
_ours = st.sampled_from([PREFIX + k for k in labels.LABEL_KEYS])


@settings(max_examples=200, deadline=None)
@given(
    lab=st.dictionaries(st.one_of(_ours, _text), _text, max_size=8),
    ann=st.dictionaries(st.sampled_from([PREFIX + "topology", PREFIX + "allocation", PREFIX + "status-reason"]),
                        st.one_of(_text, st.just('{"v":2,"gpus":[],"links":[]}'), st.just('{"v":1,"free":"0-3"}'))),
    cm=st.one_of(st.none(), _text, st.just('{"v":1,"free":"0-9","used":{"3":"a/b"}}')),
    cap=st.one_of(st.none(), st.integers(-1, 64)),
)
def test_no_node_content_breaks_the_audit(lab, ann, cm, cap) -> None:
    report = audit([NodeInput("hostile", lab, ann, cap, allocation_configmap=cm), labelled("good")],
                   [PendingPod("ml/w", 2)], CFG)
    assert all(f.nodes for f in report.findings)
    assert all(set(f.nodes) <= {"hostile", "good"} for f in report.findings)
    report.to_dict()
