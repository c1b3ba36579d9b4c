"""The prepared-fragment path (extender.answers) answers exactly what the reference path answers.

The reference path is the service without the informer's answer tables: ``Decider.filter`` /
``Decider.scores`` per node and the answer encoded by :mod:`extender.wire`. Both are run on the
same cache, the same requests (random clusters of real corpus boards with random allocations,
nodes that are not ours, damaged annotations, unknown names, job siblings), and must give the
same bytes; duplicate names compare by meaning (Go keeps one key of an object). Then the cache
changes (a node's allocation, a relist) and the answers follow.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from ext_support import PREFIX, corpus, filter_body, make_service, node_object, pod
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extender.answering import answer_filter, answer_prioritize
from extender.answers import AnswerTable, AnswerTables
from extender.cache import ClusterCache
from extender.service import Service
from labeler.topology.links import LinkLevel
from policy import workload as wl
from policy.decision.cache import Shape

ZONE = "topology.kubernetes.io/zone"
BOARDS = ["dgx1", "bridge_pairs", "rtx4090", "gtx_pix", "h100_nv18", "vmware_pairs"]
TOPOS = {b: corpus(b) for b in BOARDS}
JOB = {"training.kubeflow.org/job-name": "llm", "training.kubeflow.org/replica-type": "worker"}


class _Listed:
    def __init__(self) -> None:
        self.synced = threading.Event()
        self.synced.set()
        self.failing_since = None


class _ReferenceView:
    """The same cache seen without its answer tables: the service takes the reference path."""

    def __init__(self, cache: ClusterCache) -> None:
        self.cache = cache
        self.synced = True

    def facts(self, name: str) -> Any:
        return self.cache.facts(name)

    def siblings(self, workload: Any) -> Any:
        return self.cache.siblings(workload)


def _services(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> tuple[Service, Service, ClusterCache]:
    fast = make_service(locality_keys=[ZONE])
    cache = ClusterCache(prefix=PREFIX, locality_keys=[ZONE], registry=fast.topologies, metrics=fast.metrics)
    cache.replace_nodes(nodes)
    cache.replace_pods(pods)
    cache.reflectors = [_Listed()]  # type: ignore[list-item]
    fast.view = cache
    ref = make_service(locality_keys=[ZONE])
    ref.view = _ReferenceView(cache)
    ref.topologies = fast.topologies
    assert isinstance(cache.answers, AnswerTables)
    return fast, ref, cache


@st.composite
def clusters(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 24))
    nodes = []
    for i in range(n):
        kind = draw(st.sampled_from([*BOARDS, *BOARDS, "not_ours", "damaged"]))
        zone = {ZONE: draw(st.sampled_from(["z0", "z1"]))}
        if kind == "not_ours":
            nodes.append(node_object(f"n{i}", None, extra_labels=zone))
        elif kind == "damaged":
            nodes.append(node_object(f"n{i}", TOPOS["dgx1"], extra_labels=zone,
                                     annotations={PREFIX + "topology": "{not json"}))
        else:
            topo = TOPOS[kind]
            free = draw(st.sets(st.sampled_from(sorted(topo.gpu_indices))))
            nodes.append(node_object(f"n{i}", topo, free=free, extra_labels=zone))
    return nodes


def _pod(draw: Any) -> dict[str, Any]:
    gpus = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 8, 9]))
    ann: dict[str, str] = {}
    placement = draw(st.sampled_from([None, "required", "ignore"]))
    if placement:
        ann[PREFIX + "placement"] = placement
    level = draw(st.sampled_from([None, *[lv.slug for lv in (LinkLevel.NVLINK, LinkLevel.PIX, LinkLevel.PXB,
                                                               LinkLevel.NODE)]]))
    if level:
        ann[PREFIX + "max-level"] = level
    job = draw(st.booleans())
    return pod(gpus, annotations=ann, labels_={**JOB, "training.kubeflow.org/replica-index": "1"} if job else {},
               name="rank-1", uid="uid-rank-1")


def _same(a: bytes, b: bytes, names: list[str]) -> None:
    if len(set(names)) == len(names):
        assert a == b
    else:  # duplicate names: same meaning for Go's decoder (one key per object)
        assert json.loads(a) == json.loads(b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=clusters(), data=st.data())
def test_fast_path_answers_like_the_reference(nodes: list[dict[str, Any]], data: st.DataObject) -> None:
    names = [n["metadata"]["name"] for n in nodes]
    sib_node = data.draw(st.sampled_from(names))
    sibling = pod(4, labels_={**JOB, "training.kubeflow.org/replica-index": "0"}, name="rank-0",
                  uid="uid-rank-0", node_name=sib_node)
    fast, ref, _ = _services(nodes, data.draw(st.sampled_from([[], [sibling]])))
    for _ in range(3):
        p = _pod(data.draw)
        asked = data.draw(st.lists(st.sampled_from([*names, "unknown-1"]), max_size=30))
        body = filter_body(p, names=asked)
        for verb in ("filter", "prioritize"):
            a, b = getattr(fast, verb)(body), getattr(ref, verb)(body)
            assert a.status == b.status
            _same(a.body, b.body, asked)
            # asked again: the prepared answers give the same bytes
            _same(getattr(fast, verb)(body).body, b.body, asked)


def test_answers_follow_the_cache() -> None:
    """A node's allocation changes, then a relist: the prepared answers are dropped for what changed only."""
    dgx = TOPOS["dgx1"]
    nodes = [node_object("a", dgx, free={0, 1, 2, 3}), node_object("b", dgx, free={0, 1, 6, 7})]
    fast, ref, cache = _services(nodes, [])
    req = pod(4, annotations={PREFIX + "placement": "required", PREFIX + "max-level": "nvlink"})
    body = filter_body(req, names=["a", "b"])
    assert json.loads(fast.filter(body).body)["NodeNames"] == ["a"]  # 0-3: an NVLink ring; 0,1,6,7: two pairs
    cache.node_event("MODIFIED", node_object("b", dgx, free={4, 5, 6, 7}))
    assert fast.filter(body).body == ref.filter(body).body
    assert json.loads(fast.filter(body).body)["NodeNames"] == ["a", "b"]
    kept = set(cache.answers.names())
    cache.replace_nodes([node_object("a", dgx, free={0, 1, 2, 3}), node_object("b", dgx, free={0, 6})])
    assert "a" in cache.answers.names() and "b" not in cache.answers.names() and kept == {"a", "b"}
    out = json.loads(fast.filter(body).body)
    assert out["NodeNames"] == ["a", "b"]  # b has 2 free GPUs: the count is NodeResourcesFit's call
    assert fast.prioritize(body).body == ref.prioritize(body).body
    cache.node_event("DELETED", node_object("a", dgx))
    assert fast.filter(body).body == ref.filter(body).body


def test_a_sibling_rank_scores_by_locality_in_few_steps() -> None:
    """300 nodes in 3 zones, a placed rank in z1: nodes in z1 score above their twins elsewhere."""
    h100 = TOPOS["h100_nv18"]
    nodes = [node_object(f"g{i:03d}", h100, free=set(range(8)) if i % 2 else {0, 1, 2, 3},
                         extra_labels={ZONE: f"z{i % 3}"}) for i in range(300)]
    sibling = pod(4, labels_={**JOB, "training.kubeflow.org/replica-index": "0"}, name="rank-0",
                  uid="uid-rank-0", node_name="g001")
    fast, ref, _ = _services(nodes, [sibling])
    rank = pod(4, labels_={**JOB, "training.kubeflow.org/replica-index": "1"}, name="rank-1", uid="uid-rank-1")
    body = filter_body(rank, names=[n["metadata"]["name"] for n in nodes])
    calls = 0
    node_score = fast.decider.node_score

    def counted(*a: Any, **k: Any) -> int:
        nonlocal calls
        calls += 1
        return node_score(*a, **k)

    fast.decider.node_score = counted  # type: ignore[method-assign]
    got = {h["Host"]: h["Score"] for h in json.loads(fast.prioritize(body).body)}
    # two kinds of free set × three zones, and g001 whose free set the bound rank-0 changed (estimated): seven
    # distinct (group, locality) keys, not 300 nodes
    assert calls == 7
    assert fast.prioritize(body).body == ref.prioritize(body).body
    # every 4-set rings at 18 × 20.6 (text only) and no NIC rate is known: V is the same everywhere, so the
    # penalties decide. g001 (z1, rank-0's 4 GPUs taken: the pod fills it) 10; g007 (z1, all free: island 2) 8;
    # g003 (z0, all free: island 2, zone differs from the siblings' on one of two keys: 1) 7; g006 (z0, 4 free) 9
    assert (got["g001"], got["g007"], got["g003"], got["g006"]) == (10, 8, 7, 9)


def test_scores_follow_each_requests_reference() -> None:
    """A score is measured against the request's best candidate: the same node scores differently in two requests.

    A 2-GPU pod; an H100 NV18 board (pair: 18 × 20.6 = 370.8) and a DGX-1 (best free pair NV2: 2 × 12 = 24),
    both entirely free (island 2). With the H100 among the candidates the DGX-1 is 3·log2(370.8 / 24) = 11.8 → 12
    points below: 0; alone, it is the best: 10 − 2 = 8. Requests alternate, then repeat (the table adopts a
    reference met twice in a row and answers it from its kept fragments); every answer is the reference path's.
    """
    nodes = [node_object("h100", TOPOS["h100_nv18"]), node_object("dgx", TOPOS["dgx1"])]
    fast, ref, cache = _services(nodes, [])
    both, alone = filter_body(pod(2), names=["h100", "dgx"]), filter_body(pod(2), names=["dgx"])
    want = {both: [{"Host": "h100", "Score": 8}, {"Host": "dgx", "Score": 0}], alone: [{"Host": "dgx", "Score": 8}]}
    for body in (both, alone, both, alone, alone, alone, both, both, both, alone):
        got = fast.prioritize(body).body
        assert got == ref.prioritize(body).body and json.loads(got) == want[body]
    (table,) = [t for t in cache.answers._tables.values() if t.shape is not None and t.shape.gpus == 2]
    assert table.scored_ref == 370.8  # adopted at the second of the three "both" in a row
    # the score metric counts what the prepared path served: five "both" (an 8 and a 0) and five "alone" (an 8)
    reg = fast.metrics.registry
    assert reg.get_sample_value("gputopo_extender_scores_total", {"rule": "multi-gpu", "score": "8"}) == 10.0
    assert reg.get_sample_value("gputopo_extender_scores_total", {"rule": "multi-gpu", "score": "0"}) == 5.0
    assert reg.get_sample_value("gputopo_extender_best_busbw_gbps_count", {"rule": "multi-gpu"}) == 10.0
    # /explain is never answered from the prepared fragments (it is not a scheduler verb)
    assert fast.answer_now("explain", both) is None and fast.answer_now("prioritize", both) is not None


# -- the two ways of reading a table (extender.answering): columns when every name is kept, else per answer ----------
RANK0 = pod(4, labels_={**JOB, "training.kubeflow.org/replica-index": "0"}, name="rank-0", uid="uid-rank-0",
            node_name="dgx-b")
REQUIRED = {PREFIX + "placement": "required", PREFIX + "max-level": "nvlink"}


def _mixed_cluster() -> list[dict[str, Any]]:
    """DGX-1s with various free sets, an H100 NVSwitch board, an RTX 4090 box, a node not ours, a damaged one."""
    dgx, h100, rtx = TOPOS["dgx1"], TOPOS["h100_nv18"], TOPOS["rtx4090"]
    return [
        node_object("dgx-a", dgx, free={0, 1, 2, 3}, extra_labels={ZONE: "z0"}),  # an NVLink quad
        node_object("dgx-b", dgx, free={0, 1, 6, 7}, extra_labels={ZONE: "z1"}),  # two pairs: no NVLink 4-set
        node_object("dgx-c", dgx, free=set(range(8)), extra_labels={ZONE: "z1"}),
        node_object("dgx-d", dgx, free={0, 5}, extra_labels={ZONE: "z0"}),  # 2 free: fewer than asked
        node_object("h100", h100, free=set(range(8)), extra_labels={ZONE: "z1"}),
        node_object("rtx", rtx, free={0, 1, 2, 3}, extra_labels={ZONE: "z0"}),  # no NVLink at all: unresolvable
        node_object("cpu-1", None, extra_labels={ZONE: "z0"}),  # not ours
        node_object("bad", TOPOS["dgx1"], annotations={PREFIX + "topology": "{not json"}),  # fails open
    ]


def _table(fast: Service, cache: ClusterCache, p: dict[str, Any]) -> tuple[AnswerTable, Any]:
    w = wl.parse(p, prefix=PREFIX)
    siblings = cache.siblings(w) if fast.decider.needs_siblings(w) else None
    return cache.answers.table(Shape.of(w), fast.decider), siblings


CASES = [  # (case, pod, the rank-0 of its job is bound)
    ("4 GPUs on NVLink, required: refusals and unresolvables", pod(4, annotations=REQUIRED), False),
    ("4 GPUs, preferred: every node passes, scores differ", pod(4), False),
    ("1 GPU: the best free pair", pod(1), False),
    ("a later rank of a PyTorchJob: per-node job affinity", pod(4, labels_={
        **JOB, "training.kubeflow.org/replica-index": "1"}, name="rank-1", uid="uid-rank-1"), True),
]


@pytest.mark.parametrize(("case", "p", "placed"), CASES, ids=[c[0] for c in CASES])
def test_the_columns_answer_what_the_general_path_answers(case: str, p: dict[str, Any], placed: bool) -> None:
    """First request: every name is new, the general path answers and keeps them; later ones read the columns.

    Prioritize reads the columns once the table has adopted the request's reference (met twice in a
    row: its kept fragments are finished for it); a rank with placed siblings as soon as its names
    are kept (its scores are per request). Every answer is the reference path's, byte for byte.
    """
    fast, ref, cache = _services(_mixed_cluster(), [RANK0] if placed else [])
    names = [n["metadata"]["name"] for n in _mixed_cluster()]
    body = filter_body(p, names=names)
    table, siblings = _table(fast, cache, p)
    paths = []
    for _ in range(3):
        f = answer_filter(names, table)
        pr = answer_prioritize(names, table, siblings)
        assert f.body == ref.filter(body).body and pr.body == ref.prioritize(body).body
        paths.append((f.columns, pr.columns))
    # filter: nothing kept at first. Prioritize (same shape, same table) finds filter's names kept; a rank
    # reads the columns at once, other pods once the reference is adopted (at the second request)
    assert paths == [(False, placed), (True, placed), (True, True)]
    # the node that is not ours and the damaged one (it fails open) are told apart, on both paths
    assert {r: u.count for r, u in f.unjudged.items()} == {"not_ours": 1, "undecodable_topology": 1}


def test_a_dropped_node_s_row_is_reused_and_answers_stay_right() -> None:
    """The cache changes one node (its row is freed), a new node takes that row: the columns follow."""
    dgx = TOPOS["dgx1"]
    nodes = [node_object("a", dgx, free={0, 1, 2, 3}), node_object("b", dgx, free={0, 1, 6, 7})]
    fast, ref, cache = _services(nodes, [])
    p = pod(4, annotations=REQUIRED)
    table, _ = _table(fast, cache, p)
    assert answer_filter(["a", "b"], table).columns is False
    assert table.rows == {"a": 0, "b": 1}
    cache.node_event("MODIFIED", node_object("a", dgx, free={0, 1, 6, 7}))  # a: no NVLink 4-set any more
    cache.node_event("ADDED", node_object("c", dgx, free={4, 5, 6, 7}))
    out = answer_filter(["c", "b"], table)  # c is new: the general path keeps it, in a's freed row
    assert out.columns is False and table.rows == {"b": 1, "c": 0}
    for asked in (["c", "b"], ["a", "b", "c"], ["b", "c", "a"]):
        answer_filter(asked, table)
        out = answer_filter(asked, table)
        assert out.columns and out.body == ref.filter(filter_body(p, names=asked)).body
    assert json.loads(out.body)["NodeNames"] == ["c"]


class _ChangesMidRead(list[bytes]):
    """A column whose first read lets the informer change a node, as another thread would meanwhile."""

    def __init__(self, column: list[bytes], change: Any) -> None:
        super().__init__(column)
        self.change = change

    def __getitem__(self, i: Any) -> Any:
        if self.change is not None:
            change, self.change = self.change, None
            change()
        return super().__getitem__(i)


def test_a_table_changed_while_its_columns_are_read_is_answered_by_the_general_path() -> None:
    dgx = TOPOS["dgx1"]
    nodes = [node_object(n, dgx, free={0, 1, 2, 3}) for n in ("a", "b", "c")]
    fast, ref, cache = _services(nodes, [])
    p = pod(4, annotations=REQUIRED)
    table, _ = _table(fast, cache, p)
    answer_filter(["a", "b", "c"], table)
    assert answer_filter(["a", "b", "c"], table).columns
    table.col_passed = _ChangesMidRead(table.col_passed, lambda: cache.node_event(
        "MODIFIED", node_object("b", dgx, free={0, 1, 6, 7})))
    out = answer_filter(["a", "b", "c"], table)
    assert out.columns is False  # the version moved under the read
    assert json.loads(out.body)["NodeNames"] == ["a", "c"]  # the answer is the new state's
    assert out.body == ref.filter(filter_body(p, names=["a", "b", "c"])).body
