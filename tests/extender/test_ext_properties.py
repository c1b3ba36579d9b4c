"""Property tests: whatever a request holds, answers keep the protocol's shape and invariants."""

from __future__ import annotations

import json
from typing import Any

from ext_support import PREFIX, corpus, make_service, node_object, pod
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labeler.topology import allocation

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 20), st.text(max_size=8))
json_value = st.recursive(json_leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                         st.dictionaries(st.text(max_size=6), c, max_size=3)),
                          max_leaves=10)
TOPOS = [corpus(n) for n in ("dgx1", "bridge_pairs", "gtx_pix", "h100_nv18", "rtx4090")]
SERVICE = make_service()
LEVELS = ["nvlink", "pix", "pxb", "phb", "node", "sys", "bogus"]


@st.composite
def nodes(draw: Any) -> list[dict[str, Any]]:
    out = []
    for i in range(draw(st.integers(0, 8))):
        choice = draw(st.integers(0, 3))
        if choice == 0:
            out.append(node_object(f"n{i}", None))
            continue
        topo = TOPOS[draw(st.integers(0, len(TOPOS) - 1))]
        free = draw(st.sets(st.sampled_from(list(topo.gpu_indices))))
        node = node_object(f"n{i}", topo, free=free)
        ann = node["metadata"]["annotations"]
        if choice == 2:  # damage something
            key = draw(st.sampled_from([PREFIX + "topology", PREFIX + allocation.ANNOTATION_SUFFIX]))
            ann[key] = draw(st.text(max_size=20))
        if choice == 3:
            node["metadata"]["extra"] = draw(json_value)
        out.append(node)
    return out


@st.composite
def pods(draw: Any) -> dict[str, Any]:
    p = pod(draw(st.integers(0, 9)), annotations={
        PREFIX + "placement": draw(st.sampled_from(["required", "preferred", "ignore", "REQUIRED", "x"])),
        PREFIX + "max-level": draw(st.sampled_from(LEVELS)),
    })
    if draw(st.booleans()):
        p["metadata"]["labels"] = {"training.kubeflow.org/job-name": "j"}
    p["spec"]["extra"] = draw(json_value)
    return p


def recase(key: str, upper: bool) -> str:
    return key.upper() if upper else key.lower()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pods(), nodes(), st.booleans(), st.booleans())
def test_answers_keep_shape_and_partition(p: dict[str, Any], ns: list[dict[str, Any]], names_mode: bool,
                                          upper: bool) -> None:
    names = [n["metadata"]["name"] for n in ns]
    body = {recase("Pod", upper): p, recase("Nodes", upper): None if names_mode else {"metadata": {}, "items": ns},
            recase("NodeNames", upper): names if names_mode else None}
    raw = json.dumps(body).encode()
    f = SERVICE.filter(raw)
    assert f.status == 200
    out = json.loads(f.body)
    assert set(out) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    assert out["Error"] == ""
    if names_mode:
        assert out["Nodes"] is None
        passed = out["NodeNames"]  # stateless service: fail open, all pass
        assert passed == names
    else:
        assert out["NodeNames"] is None
        passed = [n["metadata"]["name"] for n in out["Nodes"]["items"]]
        by_name = {n["metadata"]["name"]: n for n in ns}
        assert all(n == by_name[n["metadata"]["name"]] for n in out["Nodes"]["items"])  # unmodified
    failed, unres = set(out["FailedNodes"]), set(out["FailedAndUnresolvableNodes"])
    assert not (failed & unres) and not (set(passed) & (failed | unres))
    assert set(passed) | failed | unres == set(names)  # every node accounted for, none silently dropped
    pr = SERVICE.prioritize(raw)
    assert pr.status == 200
    scores = json.loads(pr.body)
    assert [s["Host"] for s in scores] == names
    assert all(type(s["Score"]) is int and 0 <= s["Score"] <= 10 for s in scores)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | json_value.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    f = SERVICE.filter(raw)
    assert f.status == 200 and set(json.loads(f.body)) == {
        "Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    p = SERVICE.prioritize(raw)
    assert p.status in (200, 400)
    json.loads(p.body)
