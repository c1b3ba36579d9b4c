"""Hostile requests and hostile Node data over real loopback HTTP: clear answers, no 5xx, bounded memory.

The "Why" cases of issue #8 that live in the request path, each of which failed
before the fix:

- a GPU quantity of ``1e400`` or 400 nines, or ``env: 5`` in a container, gave
  HTTP 500 (prioritize) or a generic internal error (filter) for every node;
- JSON ``NaN``/``Infinity`` in a body was decoded as a float;
- a Node annotation ``cpu_affinity: "0-1000000"`` in a ~5 KB body built
  hundreds of MB; the cached extender decoded full Node objects at all;
- unique annotations (every real node's UUIDs differ) grew memory per request;
- a heavy request ran on the event loop, blocking ``/healthz``.
"""

from __future__ import annotations

import copy
import http.client
import json
import threading
import time
import tracemalloc
from typing import Any

import pytest
from ext_support import PREFIX, app_of, corpus, filter_body, make_service, node_object, pod, serve_service

from extender.service import Answer, Service, ServiceConfig
from labeler.topology import labels
from policy.nodes.facts import NodeFacts, facts_from_object
from policy.nodes.state import NodeState

REQUIRED = {PREFIX + "placement": "required"}
BOARD = corpus("h100_nv18")


def post(addr: tuple[str, int], path: str, body: bytes, timeout: float = 30) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*addr, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def nodes_body(pod_obj: dict[str, Any], nodes: list[dict[str, Any]]) -> bytes:
    return filter_body(pod_obj, nodes)


def gpu_pod(quantity: Any) -> dict[str, Any]:
    p = pod(2, annotations=REQUIRED)
    p["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": quantity}}
    return p


EDGE_PODS = [
    ("quantity 1e400 (string)", gpu_pod("1e400")),
    ("quantity 400 nines (string)", gpu_pod("9" * 400)),
    ("quantity 1e400 (JSON number)", None),  # built as raw bytes below: json.dumps cannot write it
    ("quantity 400 nines (JSON number)", gpu_pod(int("9" * 400))),
    ("env: 5", None),
    ("containers: {}", None),
]


def edge_body(case: str, names: list[str]) -> bytes:
    if case == "quantity 1e400 (JSON number)":
        return filter_body(gpu_pod(7777), names=names).replace(b"7777", b"1e400")
    if case == "env: 5":
        p = pod(4, annotations=REQUIRED, labels_={"training.kubeflow.org/job-name": "j"})
        p["spec"]["containers"][0]["env"] = 5
        return filter_body(p, names=names)
    if case == "containers: {}":
        p = pod(4, annotations=REQUIRED)
        p["spec"]["containers"] = {"a": 1}
        return filter_body(p, names=names)
    found = dict(EDGE_PODS)[case]
    assert found is not None
    return filter_body(found, names=names)


class FixedView:
    """A synced ClusterView over fixed nodes (what the cache would hold)."""

    def __init__(self, facts: dict[str, NodeFacts]) -> None:
        self._facts = facts
        self.synced = True

    def facts(self, name: str) -> NodeFacts | None:
        return self._facts.get(name)

    def siblings(self, workload: Any) -> None:
        return None


def cached_service(nodes: list[dict[str, Any]], **config: Any) -> Service:
    service = make_service()
    if config:
        base = service.config
        service = Service(ServiceConfig(base.prefix, base.locality_keys, base.scorer, **config),
                          metrics=service.metrics)
    facts = {n["metadata"]["name"]: facts_from_object(n, prefix=PREFIX, locality_keys=(), registry=service.topologies,
                                                      now=time.time())
             for n in nodes}
    service.view = FixedView(facts)
    return service


@pytest.mark.parametrize("case", [c[0] for c in EDGE_PODS])
def test_edge_values_get_a_clear_answer_not_a_5xx(case: str) -> None:
    """Before: HTTP 500 from prioritize and 'internal error' from filter."""
    nodes = [node_object("gpu-a", BOARD, free=range(8)), node_object("gpu-b", BOARD, free={0, 1})]
    service = cached_service(nodes)
    body = edge_body(case, ["gpu-a", "gpu-b"])
    with serve_service(service) as addr:
        status, out = post(addr, "/filter", body)
        assert status == 200
        assert out["Error"] == "" and out["NodeNames"] == ["gpu-a", "gpu-b"]  # nothing this pod can be judged on
        status, scores = post(addr, "/prioritize", body)
        assert status == 200 and [s["Host"] for s in scores] == ["gpu-a", "gpu-b"]
    assert service.metrics.registry.get_sample_value("gputopo_extender_requests_total",
                                                      {"verb": "filter", "outcome": "error"}) is None


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_not_json(literal: bytes) -> None:
    body = filter_body(gpu_pod(7777), names=["gpu-a"]).replace(b"7777", literal)
    with serve_service(make_service()) as addr:
        status, out = post(addr, "/filter", body)
        assert status == 200 and "NaN and Infinity are not JSON" in out["Error"]
        status, out = post(addr, "/prioritize", body)
        assert status == 400 and "NaN and Infinity are not JSON" in out["error"]


def hostile_node(name: str, cpus: str = "0-1000000") -> dict[str, Any]:
    node = node_object(name, BOARD, free=range(8))
    key = PREFIX + labels.ANNOTATION_TOPOLOGY
    doc = json.loads(node["metadata"]["annotations"][key])
    for gpu in doc["gpus"]:
        gpu["cpu_affinity"] = cpus
    node["metadata"]["annotations"][key] = json.dumps(doc)
    return node


def test_a_huge_cpu_range_in_a_node_costs_nothing_and_fails_open() -> None:
    """Before: three such ~5 KB bodies pushed the extender's RSS by +1.5 GiB."""
    service = make_service()
    nodes = [hostile_node("gpu-x"), node_object("gpu-ok", BOARD, free=range(8))]
    body = nodes_body(pod(4, annotations=REQUIRED), nodes)
    tracemalloc.start()
    try:
        answer = service.filter(body)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert peak < 20, peak
    out = json.loads(answer.body)
    assert [n["metadata"]["name"] for n in out["Nodes"]["items"]] == ["gpu-x", "gpu-ok"]
    assert service.metrics.registry.get_sample_value("gputopo_extender_fail_open_total",
                                                      {"reason": "undecodable_topology"}) == 1


def test_cached_mode_does_not_decode_node_objects() -> None:
    """Nodes request to a cached extender: names are looked up in the cache, the objects echoed, not decoded."""
    cache_nodes = [node_object("gpu-a", BOARD, free=range(8)), node_object("gpu-b", BOARD, free={0, 1, 2})]
    service = cached_service(cache_nodes, decode_node_objects=False)
    sent = [hostile_node("gpu-a"), hostile_node("gpu-b", "0-7")]  # what the request claims, ignored
    before = len(service.topologies)
    out = json.loads(service.filter(nodes_body(pod(4, annotations=REQUIRED), sent)).body)
    # gpu-a (8 free, NV18) passes; gpu-b has 3 free < 4: the count is NodeResourcesFit's call, passes
    assert [n["metadata"]["name"] for n in out["Nodes"]["items"]] == ["gpu-a", "gpu-b"]
    assert out["Nodes"]["items"] == sent  # echoed unchanged
    assert len(service.topologies) == before  # nothing decoded from the request
    assert service.metrics.registry.get_sample_value("gputopo_extender_node_objects_ignored_total") == 2
    scores = json.loads(service.prioritize(nodes_body(pod(4), sent)).body)
    assert scores[1]["Score"] == 0 and scores[0]["Score"] > 0  # from the cache: gpu-b has < 4 free


def test_unique_annotations_share_one_context() -> None:
    """Every real node's annotation differs (UUIDs); nodes wired alike share one decoded wiring."""
    service = make_service()
    key = PREFIX + labels.ANNOTATION_TOPOLOGY

    def unique(i: int) -> dict[str, Any]:
        node = node_object(f"gpu-{i}", BOARD, free=range(8))
        doc = json.loads(node["metadata"]["annotations"][key])
        for g, gpu in enumerate(doc["gpus"]):
            gpu["uuid"] = f"GPU-{i:08d}-{g:04d}"
        node["metadata"]["annotations"][key] = json.dumps(doc)
        return node

    for batch in range(3):
        body = nodes_body(pod(4), [unique(batch * 100 + i) for i in range(100)])
        assert service.prioritize(body).status == 200
    assert len(service.topologies) == 300  # 300 distinct annotation strings ...
    assert len(service.contexts) == 1  # ... one wiring, one placement context
    assert service.topologies.bytes < 2 << 20


def test_one_broken_node_does_not_fail_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node whose data makes our code fail (simulated) fails open alone; the others are judged."""
    service = make_service()
    good = node_object("gpu-ok", BOARD, free={0})
    bad = node_object("gpu-bad", corpus("dgx1"), free=range(8))
    real = type(service.contexts).get

    def get(self: Any, topo_id: int, topo: Any) -> Any:
        if len(topo.gpus) == 8 and topo.gpu_link(0, 5).token == "SYS":  # DGX-1 only
            raise RuntimeError("simulated bug")
        return real(self, topo_id, topo)

    monkeypatch.setattr(type(service.contexts), "get", get)
    body = nodes_body(pod(4, annotations=REQUIRED), [bad, good])
    out = json.loads(service.filter(body).body)
    assert out["Error"] == "" and [n["metadata"]["name"] for n in out["Nodes"]["items"]] == ["gpu-bad", "gpu-ok"]
    scores = json.loads(service.prioritize(body).body)
    assert scores == [{"Host": "gpu-bad", "Score": 0}, {"Host": "gpu-ok", "Score": 0}]
    assert service.metrics.registry.get_sample_value("gputopo_extender_fail_open_total", {"reason": "internal"}) == 2


def test_a_slow_request_does_not_block_healthz() -> None:
    """Handlers run off the event loop: /healthz answers while a filter is still being worked on.

    Before: bodies under 1 MiB were handled on the loop, so this deadlocked until the client timeout.
    """
    release = threading.Event()
    started = threading.Event()

    class Slow(Service):
        def filter(self, body: bytes) -> Answer:
            started.set()
            release.wait(20)
            return super().filter(body)

    base = make_service()
    service = Slow(base.config, metrics=base.metrics)
    results: list[int] = []
    with serve_service(service) as addr:
        t = threading.Thread(target=lambda: results.append(post(addr, "/filter", filter_body(pod(1), names=[]))[0]))
        t.start()
        assert started.wait(10)
        conn = http.client.HTTPConnection(*addr, timeout=5)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        conn.close()
        release.set()
        t.join(20)
    assert results == [200]


def test_24_gpu_mesh_request_answers() -> None:
    """A 24-GPU NVLink mesh asked for 12 GPUs: before, 80 s of search on the event loop."""
    from labeler.topology import serialize
    from labeler.topology.links import SELF, parse_link_token
    from labeler.topology.model import Gpu, Topology

    nv, sys_ = parse_link_token("NV2"), parse_link_token("SYS")
    rows = [[SELF if i == j else (sys_ if abs(i - j) == 12 else nv) for j in range(24)] for i in range(24)]
    topo = Topology.from_rows([Gpu(i) for i in range(24)], [], rows)
    node = node_object("mesh", None)
    node["metadata"]["labels"][PREFIX + labels.SCHEMA] = labels.SCHEMA_VERSION
    node["metadata"]["annotations"][PREFIX + labels.ANNOTATION_TOPOLOGY] = json.dumps(serialize.to_dict(topo))
    service = make_service()
    out = json.loads(service.filter(nodes_body(pod(12, annotations={**REQUIRED, PREFIX + "max-level": "nvlink"}),
                                               [node])).body)
    assert [n["metadata"]["name"] for n in out["Nodes"]["items"]] == ["mesh"]  # an NVLink ring of 12 exists


def test_app_answers_429_beyond_the_concurrency_cap() -> None:
    release = threading.Event()
    inside = threading.Semaphore(0)

    class Blocking(Service):
        def filter(self, body: bytes) -> Answer:
            inside.release()
            release.wait(20)
            return super().filter(body)

    base = make_service()
    service = Blocking(base.config, metrics=base.metrics)
    statuses: list[int] = []
    body = filter_body(pod(1), names=[])
    from ext_support import serve

    with serve(app_of(service, max_concurrent=2, worker_threads=2)) as addr:
        threads = [threading.Thread(target=lambda: statuses.append(post(addr, "/filter", body)[0])) for _ in range(2)]
        for t in threads:
            t.start()
        assert inside.acquire(timeout=10) and inside.acquire(timeout=10)  # two in flight
        status, out = post(addr, "/filter", body)
        assert status == 429 and "in flight" in out["error"]
        release.set()
        for t in threads:
            t.join(20)
        assert post(addr, "/filter", body)[0] == 200
    assert statuses == [200, 200]
    assert service.metrics.registry.get_sample_value("gputopo_extender_refused_total",
                                                      {"verb": "filter", "reason": "too_many"}) == 1


def test_stateless_decode_budget_fails_open_past_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import extender.service as service_module

    service = make_service()
    nodes = []
    for i in range(3):  # three distinct annotation strings (padding), one wiring, one allocation string
        node = node_object(f"gpu-{i}", BOARD, free=range(8))
        ann = node["metadata"]["annotations"]
        ann[PREFIX + labels.ANNOTATION_TOPOLOGY] = ann[PREFIX + labels.ANNOTATION_TOPOLOGY][:-1] + " " * i + "}"
        nodes.append(copy.deepcopy(node))
    ann = nodes[0]["metadata"]["annotations"]
    one_node = len(ann[PREFIX + labels.ANNOTATION_TOPOLOGY]) + len(ann[PREFIX + "allocation"])
    monkeypatch.setattr(service_module, "REQUEST_DECODE_CHARS", one_node + 1)  # room for one node's strings
    service.filter(nodes_body(pod(4), nodes))
    reg = service.metrics.registry
    assert reg.get_sample_value("gputopo_extender_fail_open_total", {"reason": "decode_budget"}) == 2
    # what was decoded stays cached: the next request decodes only what is new
    service.filter(nodes_body(pod(4), nodes))
    assert reg.get_sample_value("gputopo_extender_fail_open_total", {"reason": "decode_budget"}) == 3
    assert all(f.state is NodeState.OK for f in [facts_from_object(nodes[0], prefix=PREFIX, locality_keys=(),
                                                                   registry=service.topologies, now=time.time())])


def test_long_host_names_are_answered_but_not_cached() -> None:
    service = make_service()
    long_name = "n" * 100_000
    out = json.loads(service.prioritize(filter_body(pod(2), names=[long_name, "gpu-a"])).body)
    assert [s["Host"] for s in out] == [long_name, "gpu-a"]
    assert long_name not in service._priorities._frag and "gpu-a" in service._priorities._frag


def test_contexts_are_bounded_by_bytes() -> None:
    from labeler.topology.links import SELF, parse_link_token
    from labeler.topology.model import Gpu, Topology
    from policy.decision.cache import ContextRegistry

    reg = ContextRegistry(max_bytes=20 << 20)
    for n in range(2, 60):
        topo = Topology.from_rows([Gpu(i) for i in range(n)], [],
                                  [[SELF if i == j else parse_link_token("PIX") for j in range(n)] for i in range(n)])
        reg.get(n, topo)
        assert reg._by_id.bytes <= 20 << 20
    assert len(reg) < 58
