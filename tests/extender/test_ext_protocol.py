"""Replay every payload of the protocol notes over real loopback HTTP and decode the answers.

The answers are checked the way kube-scheduler's ``HTTPExtender`` reads them
(protocol README §2.4, rules 10-12, 19): status 200, every key present with the
Go name, the list matching ``nodeCacheCapable``, NodeNames a subset of the
input, a bare array of integer scores.
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest
from ext_support import PREFIX, PROTOCOL, make_service, serve_service

from extender.cache import ClusterCache
from extender.metrics import Metrics
from extender.wire import (
    ExtenderArgs,
    ExtenderBindingArgs,
    ExtenderBindingResult,
    ExtenderFilterResult,
    ExtenderPreemptionArgs,
    ExtenderPreemptionResult,
    host_priority_list,
)
from labeler.topology import allocation, labels

FILTER_KEYS = {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
REQUESTS = sorted(p.name for p in PROTOCOL.glob("*-request*.json"))


def post(addr: tuple[str, int], path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def go_filter_result(raw: bytes, *, node_cache_capable: bool, input_names: list[str]) -> list[str]:
    """What kube-scheduler's HTTPExtender.Filter makes of an answer (README rule 10)."""
    doc = json.loads(raw)
    assert isinstance(doc, dict)
    assert set(doc) == FILTER_KEYS, f"keys {sorted(doc)}"
    assert isinstance(doc["Error"], str)
    if doc["Error"]:
        raise RuntimeError(doc["Error"])
    for key in ("FailedNodes", "FailedAndUnresolvableNodes"):
        assert doc[key] is None or all(isinstance(k, str) and isinstance(v, str) for k, v in doc[key].items())
    if node_cache_capable and doc["NodeNames"] is not None:
        assert all(isinstance(n, str) for n in doc["NodeNames"])
        missing = [n for n in doc["NodeNames"] if n not in input_names]
        assert not missing, f"claims nodes not in the input: {missing}"
        return list(doc["NodeNames"])
    if doc["Nodes"] is not None:
        assert set(doc["Nodes"]) >= {"metadata", "items"}
        return [n["metadata"]["name"] for n in doc["Nodes"]["items"]]
    return []  # both null: every node filtered out


def go_priorities(raw: bytes) -> list[tuple[str, int]]:
    doc = json.loads(raw)
    assert isinstance(doc, list), "prioritize must answer a bare JSON array"
    out = []
    for entry in doc:
        assert set(entry) == {"Host", "Score"}
        assert isinstance(entry["Host"], str)
        assert type(entry["Score"]) is int and 0 <= entry["Score"] <= 10  # 7.0 or "7" would fail in Go
        out.append((entry["Host"], entry["Score"]))
    return out


def _input_names(doc: dict[str, Any]) -> list[str]:
    if doc.get("NodeNames") is not None:
        return list(doc["NodeNames"])
    return [n["metadata"]["name"] for n in doc["Nodes"]["items"]]


@pytest.fixture(scope="module")
def stateless_addr() -> Any:
    with serve_service(make_service()) as addr:
        yield addr


def test_every_request_payload_is_covered() -> None:
    assert set(REQUESTS) == {
        "bind-request.json", "filter-request-nodenames.json", "filter-request-nodenames.wire.json",
        "filter-request-nodes.json", "preempt-request-metavictims.json", "preempt-request-victims.json",
        "prioritize-request-nodenames.json", "prioritize-request-nodes.json",
    }


@pytest.mark.parametrize("name", REQUESTS)
def test_replay_request_payload(name: str, stateless_addr: tuple[str, int]) -> None:
    raw = (PROTOCOL / name).read_bytes()
    doc = json.loads(raw)
    verb = name.split("-")[0]
    status, answer = post(stateless_addr, f"/{verb}", raw)
    if verb in ("bind", "preempt"):
        # not configured in our scheduler config: kube-scheduler never calls them; a 404 makes a misconfig loud
        assert status == 404
        assert b"Traceback" not in answer
        return
    assert status == 200
    names = _input_names(doc)
    if verb == "filter":
        nodes_mode = doc["Nodes"] is not None
        passed = go_filter_result(answer, node_cache_capable=not nodes_mode, input_names=names)
        out = json.loads(answer)
        if nodes_mode:
            assert out["NodeNames"] is None
            # unlabelled nodes pass through, echoed byte-for-byte as objects
            assert out["Nodes"]["items"] == doc["Nodes"]["items"]
            assert out["Nodes"]["metadata"] == {}
        else:
            assert out["Nodes"] is None and isinstance(out["NodeNames"], list)
        assert passed == names  # stateless + names only, or unlabelled nodes: fail open, pass all
    else:
        scores = go_priorities(answer)
        assert [h for h, _ in scores] == names
        assert all(s == 0 for _, s in scores)  # nodes without our labels: no opinion (0)


def test_response_payloads_decode_and_reencode_identically() -> None:
    for name, model in [
        ("filter-response.json", ExtenderFilterResult),
        ("filter-response-nodes.json", ExtenderFilterResult),
        ("filter-response-unresolvable.json", ExtenderFilterResult),
        ("filter-response-error.json", ExtenderFilterResult),
        ("bind-response.json", ExtenderBindingResult),
        ("bind-response-error.json", ExtenderBindingResult),
        ("preempt-response.json", ExtenderPreemptionResult),
    ]:
        raw = (PROTOCOL / name).read_bytes()
        value = model.model_validate_json(raw)
        assert json.loads(value.model_dump_json()) == json.loads(raw), name
    raw = (PROTOCOL / "prioritize-response.json").read_bytes()
    assert json.loads(host_priority_list.dump_json(host_priority_list.validate_json(raw))) == json.loads(raw)


def test_request_models_decode_every_request() -> None:
    for name in REQUESTS:
        raw = (PROTOCOL / name).read_bytes()
        model = {"bind": ExtenderBindingArgs, "preempt": ExtenderPreemptionArgs}.get(name.split("-")[0], ExtenderArgs)
        value = model.model_validate_json(raw)
        if model is ExtenderArgs:
            assert isinstance(value, ExtenderArgs)
            assert value.Pod is not None and value.Pod["metadata"]["name"] == "resnet50-ddp-worker-1"
            assert (value.Nodes is None) != (value.NodeNames is None)


def test_go_compatibility_lowercase_round_trip() -> None:
    """Upstream TestCompatibility: strings.ToLower(json) decodes to the same value."""
    upstream = (
        '{"Nodes":{"metadata":{},"items":[{"metadata":{"name":"nodename"},"spec":{},"status":{}}]},'
        '"NodeNames":["node1"],"FailedNodes":{"foo":"bar"},"FailedAndUnresolvableNodes":{"baz":"qux"},'
        '"Error":"myerror"}'
    )
    a = ExtenderFilterResult.model_validate_json(upstream)
    b = ExtenderFilterResult.model_validate_json(upstream.lower())
    assert a == b and a.Error == "myerror" and a.FailedNodes == {"foo": "bar"}
    assert json.loads(a.model_dump_json()) == json.loads(upstream)
    hp = host_priority_list.validate_json('[{"host":"myhost","SCORE":1}]')
    assert hp[0].Host == "myhost" and hp[0].Score == 1
    # later duplicate (any casing) wins, like Go; snake_case is ignored like Go
    args = ExtenderArgs.model_validate_json('{"NodeNames":["a"],"nodenames":["b"],"node_names":["c"]}')
    assert args.NodeNames == ["b"]


def test_lowercased_wire_request_is_served(stateless_addr: tuple[str, int]) -> None:
    """kube-scheduler might send any casing: the whole body lower-cased still gets a valid answer."""
    raw = (PROTOCOL / "filter-request-nodes.json").read_bytes().lower()
    status, answer = post(stateless_addr, "/filter", raw)
    assert status == 200
    passed = go_filter_result(answer, node_cache_capable=False, input_names=["gpu-node-a1", "gpu-node-b2"])
    assert passed == ["gpu-node-a1", "gpu-node-b2"]


def test_scores_are_clamped_integers() -> None:
    hp = host_priority_list.validate_python([{"Host": "a", "Score": 50}, {"Host": "b", "Score": -3}])
    assert [h.Score for h in hp] == [10, 0]
    from extender.wire import encode_priorities

    assert json.loads(encode_priorities([("a", 50), ("b", -3), ("c", 7)])) == [
        {"Host": "a", "Score": 10}, {"Host": "b", "Score": 0}, {"Host": "c", "Score": 7}]
    assert encode_priorities([("c", 7)]) == host_priority_list.dump_json(
        host_priority_list.validate_python([{"Host": "c", "Score": 7}]))


def _labelled_payload_nodes() -> list[dict[str, Any]]:
    """The payload's two A100 nodes, labelled by the agent (p4d A100 NV12 board, corpus 013)."""
    topo = _p4d()
    nodes = json.loads((PROTOCOL / "nodelist-2-gpu-nodes.json").read_text())["items"]
    for node, free in zip(nodes, ({0, 1, 2, 3, 4, 5, 6, 7}, {6, 7}), strict=True):
        node["metadata"]["labels"].update(labels.encode(topo, prefix=PREFIX))
        node["metadata"]["annotations"].update(labels.encode_annotations(topo, prefix=PREFIX))
        used = {g: "ml-team/other" for g in range(8) if g not in free}
        state = allocation.AllocationState(frozenset(free), used, 1_700_000_000)
        node["metadata"]["annotations"][PREFIX + "allocation"] = allocation.encode(state)
    return nodes


def _p4d() -> Any:
    from labeler.topology import smi_parser

    path = Path(PROTOCOL).parent / "topo-corpus" / "013_aws-p4d24xl-a100x8-nv12-nonic.txt"
    return smi_parser.parse(path.read_text())


def test_worked_example_cached_mode_over_http() -> None:
    """README §5 scenario in cached mode: a1 fully free, b2 with 2 free GPUs, pod wants 4.

    Filter: both pass (the GPU count is NodeResourcesFit's job; b2 is not dropped by us).
    Prioritize (pod is a PyTorchJob worker → a rank of a multi-node job; no siblings placed yet):
      a1: every 4-set on NV12 rings at 12 × 20 = 240 (generation unknown: the slowest with 12 links); the
          p4d lists no NIC, so its network rests on an assumed fact and counts 1.25: V = √(1.25 × 240) = 17.3,
          the best candidate (0 off); the board is entirely free: island 2 → 10 − 0 − 2 = 8
      b2: 2 free < 4 → 0, and not a candidate for the reference
    """
    nodes = _labelled_payload_nodes()
    service = make_service()
    cache = ClusterCache(prefix=PREFIX, locality_keys=("topology.kubernetes.io/zone",),
                         registry=service.topologies, metrics=Metrics())
    cache.replace_nodes(nodes)
    cache.replace_pods([])

    class Synced:  # a started informer is tested in test_ext_cache; here only its view
        synced = True
        facts = staticmethod(cache.facts)
        siblings = staticmethod(cache.siblings)

    service.view = Synced()
    with serve_service(service) as addr:
        raw = (PROTOCOL / "filter-request-nodenames.wire.json").read_bytes()
        status, answer = post(addr, "/filter", raw)
        assert status == 200
        assert go_filter_result(answer, node_cache_capable=True, input_names=["gpu-node-a1", "gpu-node-b2"]) == [
            "gpu-node-a1", "gpu-node-b2"]
        status, answer = post(addr, "/prioritize", (PROTOCOL / "prioritize-request-nodenames.json").read_bytes())
        assert status == 200
        assert go_priorities(answer) == [("gpu-node-a1", 8), ("gpu-node-b2", 0)]
        # the same request in stateless (Nodes) mode gives the same scores from the objects alone
        doc = json.loads((PROTOCOL / "prioritize-request-nodes.json").read_text())
        doc["Nodes"]["items"] = nodes
        status, answer = post(addr, "/prioritize", json.dumps(doc).encode())
        assert go_priorities(answer) == [("gpu-node-a1", 8), ("gpu-node-b2", 0)]


def test_required_in_nodes_mode_reports_failed_nodes_and_echoes_objects() -> None:
    nodes = _labelled_payload_nodes()
    # b2: free GPUs 6,7 only; a required 2-GPU NVLink pod fits there, a 4-GPU one cannot be checked (count)
    doc = json.loads((PROTOCOL / "filter-request-nodes.json").read_text())
    doc["Pod"]["metadata"]["annotations"] = {PREFIX + "placement": "required", PREFIX + "max-level": "nvlink"}
    doc["Nodes"]["items"] = nodes
    with serve_service(make_service()) as addr:
        status, answer = post(addr, "/filter", json.dumps(doc).encode())
    out = json.loads(answer)
    assert status == 200 and out["Error"] == ""
    assert out["Nodes"]["items"] == nodes  # passing objects unchanged
    assert out["FailedNodes"] == {} and out["FailedAndUnresolvableNodes"] == {}


def test_fast_priority_encoder_matches_the_model_encoding() -> None:
    """PriorityEncoder (the hot path) emits exactly the bytes of the pydantic models' encoding."""
    from extender.wire import PriorityEncoder, encode_priorities

    hosts = ["gpu-a1", 'we"ird\\name', "ünï", "gpu-a1", "x<y>&z"]
    scores = [7, 0, 10, 3, 12]
    enc = PriorityEncoder(max_names=2)
    for _ in range(3):  # cached fragments, and a cleared cache, give the same bytes
        fast = enc.encode(hosts, scores)
        assert fast == encode_priorities(list(zip(hosts, scores, strict=True)))
        model = host_priority_list.dump_json(
            host_priority_list.validate_python([{"Host": h, "Score": s} for h, s in zip(hosts, scores, strict=True)]))
        assert json.loads(fast) == json.loads(model)
    assert enc.encode([], []) == b"[]"
