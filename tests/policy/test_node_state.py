"""One definition of a node's state: the extender's facts and the cluster audit agree on every case.

Each case is a real node as an agent publishes it (an L40S board from the cluster fixture: labels
from ``labels.encode``, the topology annotation, the allocation ConfigMap or annotation), then
damaged or aged the way the field does it. The expected state is read from the rules in
``policy/nodes/state.py`` (docs/labels.md "Status"), not from the code's output.
"""

from __future__ import annotations

import pytest
from cluster_fixture import L40S, PREFIX

from labeler.topology import allocation, labels
from policy.audit.cluster_nodes import AuditConfig, Decoder, NodeInput, view_node
from policy.nodes.decode import TopologyRegistry
from policy.nodes.facts import facts_from_parts
from policy.nodes.state import NodeState, allocation_text, classify, is_stale, status_problem

NOW = 1_800_000_000.0
MAX_AGE = 1800.0
ALLOC_KEY = PREFIX + allocation.ANNOTATION_SUFFIX
TOPO_KEY = PREFIX + labels.ANNOTATION_TOPOLOGY


def published(*, ts: float | None = NOW - 30, status: labels.Status = labels.Status.OK,
              carrier: str = "configmap") -> tuple[dict[str, str], dict[str, str], str | None]:
    """(labels, annotations, ConfigMap value) of a healthy node, all 8 GPUs free."""
    lab = dict(labels.encode(L40S, prefix=PREFIX, status=status))
    ann = dict(labels.encode_annotations(L40S, prefix=PREFIX))
    value = allocation.encode(allocation.AllocationState(frozenset(L40S.gpu_indices), {},
                                                         None if ts is None else int(ts)))
    if carrier == "annotation":
        ann[ALLOC_KEY] = value
        return lab, ann, None
    return lab, ann, value if carrier == "configmap" else None


Node = tuple[dict[str, str], dict[str, str], str | None]


def edited(node: Node, *, lab: dict[str, str | None] | None = None, ann: dict[str, str | None] | None = None,
           cm: str | bool | None = True) -> Node:
    """``node`` with labels/annotations set (``None`` removes) and the ConfigMap value replaced (unless True)."""
    out_lab, out_ann, value = dict(node[0]), dict(node[1]), node[2]
    for store, edits in ((out_lab, lab or {}), (out_ann, ann or {})):
        for k, v in edits.items():
            if v is None:
                store.pop(k, None)
            else:
                store[k] = v
    return out_lab, out_ann, value if cm is True else (cm or None)


HEALTHY = published()
OURS = {k: None for k in labels.encode(L40S, prefix=PREFIX)}
# (case, node, extender state, fail-open reason)
CASES: list[tuple[str, Node, NodeState, str | None]] = [
    ("healthy", HEALTHY, NodeState.OK, None),
    ("degraded is used as published", published(status=labels.Status.DEGRADED), NodeState.OK, None),
    ("status error", published(status=labels.Status.ERROR), NodeState.ERROR, "status_error"),
    ("allocation on the Node annotation", published(carrier="annotation"), NodeState.OK, None),
    ("no allocation published: all free, an estimate", published(carrier="none"), NodeState.OK, None),
    ("unstamped allocation is trusted", published(ts=None), NodeState.OK, None),
    ("stale allocation", published(ts=NOW - MAX_AGE - 1), NodeState.STALE, "stale_allocation"),
    ("just within the age", published(ts=NOW - MAX_AGE), NodeState.OK, None),
    ("a ts from the future is not stale", published(ts=NOW + 3 * MAX_AGE), NodeState.OK, None),
    ("junk status", edited(HEALTHY, lab={PREFIX + "status": "[/bold]"}), NodeState.NO_DATA, "undecodable_status"),
    ("no status label reads as ok", edited(HEALTHY, lab={PREFIX + "status": None}), NodeState.OK, None),
    ("no topology annotation", edited(HEALTHY, ann={TOPO_KEY: None}), NodeState.NO_DATA, "no_topology"),
    ("topology cut", edited(HEALTHY, ann={TOPO_KEY: '{"v": 2, "gpus": ['}), NodeState.NO_DATA,
     "undecodable_topology"),
    ("allocation damaged", edited(HEALTHY, cm='{"free": "0-4000000000"'), NodeState.NO_DATA,
     "undecodable_allocation"),
    ("not ours", edited(HEALTHY, lab=OURS, ann={TOPO_KEY: None}), NodeState.NOT_OURS, None),
]


@pytest.mark.parametrize(("name", "node", "expected", "reason"), CASES, ids=[c[0] for c in CASES])
def test_extender_and_audit_read_a_node_alike(name: str, node: Node, expected: NodeState, reason: str | None) -> None:
    lab, ann, cm = node
    facts = facts_from_parts("n", lab, ann, prefix=PREFIX, locality_keys=(), registry=TopologyRegistry(),
                             allocation_max_age_s=MAX_AGE, now=NOW, allocation_configmap=cm)
    assert (facts.state, facts.fail_reason) == (expected, reason)
    cfg = AuditConfig(now=NOW, allocation_max_age_s=MAX_AGE, allocation_refresh_s=600.0)
    view, _ = view_node(NodeInput("n", lab, ann, 8, allocation_configmap=cm), cfg, Decoder(PREFIX))
    assert view.node_state is expected
    # usable = judged on current data and countable: an allocation published and not from the future
    countable = cm is not None or ALLOC_KEY in ann
    assert view.usable is (expected is NodeState.OK and countable and "future" not in name)


def test_the_rules_one_by_one() -> None:
    assert status_problem("ok", PREFIX) is None and status_problem(None, PREFIX) is None
    assert status_problem(["ok"], PREFIX) is not None  # an unhashable label value: refused, not a TypeError
    assert not is_stale(None, MAX_AGE) and not is_stale(10**9, 0) and is_stale(MAX_AGE + 1, MAX_AGE)
    assert allocation_text({ALLOC_KEY: "a"}, "cm", PREFIX) == ("cm", "configmap")
    assert allocation_text({ALLOC_KEY: "a"}, None, PREFIX) == ("a", "annotation")
    assert allocation_text({ALLOC_KEY: 5}, None, PREFIX) == (None, None)


def test_classify_decodes_only_what_the_rules_reach() -> None:
    """A node with status=error costs no decoding (a stateless request's budget is not charged for it)."""
    lab, ann, cm = published(status=labels.Status.ERROR)
    seen: list[str] = []

    def topology(text: str) -> str:
        seen.append(text)
        return "decoded"

    r = classify(lab, ann, prefix=PREFIX, topology=topology, allocation_configmap=cm, now=NOW)
    assert r.state is NodeState.ERROR and seen == [] and r.topology is None
    lab, ann, cm = published(ts=NOW - 100)
    r = classify(lab, ann, prefix=PREFIX, topology=topology, allocation_configmap=cm, now=NOW)
    assert r.state is NodeState.OK and r.topology == "decoded" and r.allocation_source == "configmap"
    assert r.age_s == 100 and r.allocation is not None and r.allocation.free == frozenset(L40S.gpu_indices)


@pytest.mark.parametrize(("carrier", "names"), [("configmap", "allocation ConfigMap"),
                                                ("annotation", f"{ALLOC_KEY} annotation")])
def test_an_undecodable_allocation_names_the_carrier_it_came_from(carrier: str, names: str) -> None:
    lab, ann, cm = published(carrier=carrier)
    if carrier == "configmap":
        cm = '{"free": "0-4000000000"'
    else:
        ann = {**ann, ALLOC_KEY: '{"free": "0-4000000000"'}
    facts = facts_from_parts("n", lab, ann, prefix=PREFIX, locality_keys=(), registry=TopologyRegistry(),
                             allocation_max_age_s=MAX_AGE, now=NOW, allocation_configmap=cm)
    assert facts.fail_reason == "undecodable_allocation"
    assert facts.problem is not None and facts.problem.startswith(f"undecodable {names}")
