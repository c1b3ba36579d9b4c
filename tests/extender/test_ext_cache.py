"""Cached mode against an in-test API server, through the real ``kubernetes`` client over HTTP.

Covers: paged LIST, WATCH events (ADDED/MODIFIED/DELETED), 410 Gone as a watch
ERROR event and as an HTTP status → relist, periodic resync, bound-pod
accounting (pods not yet in the agent's allocation annotation), job siblings
for affinity scoring, and a full filter/prioritize over HTTP with NodeNames.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ext_support import PREFIX, app_of, corpus, filter_body, make_service, node_object, pod, serve_service
from fake_apiserver import FakeApiServer
from kubernetes import client

from extender.cache import ClusterCache
from extender.service import Service
from policy.nodes.state import NodeState

ZONE = "topology.kubernetes.io/zone"


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def core_v1(url: str) -> client.CoreV1Api:
    cfg = client.Configuration()
    cfg.host = url
    return client.CoreV1Api(client.ApiClient(cfg))


@pytest.fixture
def cluster() -> Iterator[tuple[FakeApiServer, ClusterCache, Service]]:
    api = FakeApiServer().start()
    board = corpus("h100_nv18")
    api.put("nodes", node_object("gpu-a", board, free=set(range(8)), extra_labels={ZONE: "z1"}))
    api.put("nodes", node_object("gpu-b", board, free={4, 5, 6, 7}, extra_labels={ZONE: "z2"}))
    api.put("nodes", node_object("cpu-1", None))
    # a pod bound to gpu-a that the agent has not reported yet (not in gpu-a's allocation `used`)
    api.put("pods", pod(2, name="fresh", node_name="gpu-a") | {"metadata": {
        "name": "fresh", "namespace": "ml", "uid": "u-fresh", "creationTimestamp": "2025-01-01T00:00:00Z"}})
    # a non-GPU pod and a finished GPU pod: not kept
    cpu_pod = pod(0, name="web", node_name="cpu-1")
    api.put("pods", cpu_pod)
    done = pod(4, name="done", node_name="gpu-a")
    done["status"] = {"phase": "Succeeded"}
    api.put("pods", done)
    service = make_service(locality_keys=[ZONE])
    cache = ClusterCache(prefix=PREFIX, locality_keys=[ZONE], registry=service.topologies, metrics=service.metrics)
    service.view = cache
    cache.start(core_v1(api.url), page_size=1, watch_timeout_seconds=5, resync_seconds=3600, backoff_seconds=0.05)
    assert cache.wait_synced(10)
    try:
        yield api, cache, service
    finally:
        stop(cache, api)


def stop(cache: ClusterCache, api: FakeApiServer) -> None:
    """ClusterCache.stop must end the reflector threads promptly, even mid-watch."""
    t = time.monotonic()
    cache.stop(timeout=5)
    assert not any(th.is_alive() for th in cache._threads)
    assert time.monotonic() - t < 3  # watches are 5 s long: they were cut, not waited out
    api.stop()


def free_count(cache: ClusterCache, name: str) -> int | None:
    f = cache.facts(name)
    return None if f is None else f.free_count


def test_initial_paged_list_and_pending_pod_accounting(cluster: Any) -> None:
    api, cache, _ = cluster
    pages = [r for r in api.requests if r.startswith("list nodes")]
    assert len(pages) == 3  # 3 nodes, page size 1: paged with continue tokens
    assert "limit=1" in pages[0] and "continue=1" in pages[1] and "continue=2" in pages[2]
    assert cache.synced
    a = cache.facts("gpu-a")
    assert a is not None and a.state is NodeState.OK
    # 8 free per the annotation, minus the 2 of the bound pod the agent has not seen → 6 (estimate)
    assert a.free_count == 6 and a.estimated
    assert free_count(cache, "gpu-b") == 4
    cpu = cache.facts("cpu-1")
    assert cpu is not None and cpu.state is NodeState.NOT_OURS
    # only GPU pods bound to a node and not finished are kept
    assert cache.metrics.registry.get_sample_value("gputopo_extender_cache_objects", {"kind": "pods"}) == 1


def test_watch_events_update_the_view(cluster: Any) -> None:
    api, cache, _ = cluster
    board = corpus("h100_nv18")
    api.put("nodes", node_object("gpu-c", board, free={0, 1}))
    wait_for(lambda: free_count(cache, "gpu-c") == 2)
    # the agent catches up: the fresh pod now appears in gpu-a's allocation → no more estimate
    used = {0: "ml/fresh", 1: "ml/fresh"}
    api.put("nodes", node_object("gpu-a", board, free=set(range(2, 8)), used=used, extra_labels={ZONE: "z1"}))
    wait_for(lambda: (f := cache.facts("gpu-a")) is not None and not f.estimated and f.free_count == 6)
    # a new bound pod on gpu-b, then its deletion
    new = pod(2, name="new", node_name="gpu-b", uid="u-new")
    api.put("pods", new)
    wait_for(lambda: free_count(cache, "gpu-b") == 2)
    api.delete("pods", new)
    wait_for(lambda: free_count(cache, "gpu-b") == 4)
    api.delete("nodes", node_object("gpu-c", None))
    wait_for(lambda: cache.facts("gpu-c") is None)


@pytest.mark.parametrize("as_http", [False, True], ids=["error-event", "http-410"])
def test_410_gone_relists(cluster: Any, as_http: bool) -> None:
    api, cache, service = cluster
    lists_before = [r.lists for r in cache.reflectors]
    api.gone_as_http = as_http
    api.compact()
    # while the watches are cut, the world changes; these events are lost with the compaction
    # (one critical section: an open nodes watch must not deliver gpu-late first, or its
    # resourceVersion would equal the compaction point and no 410 would follow)
    with api.cond:
        api.put("nodes", node_object("gpu-late", corpus("h100_1nic"), free={0, 1, 2}))
        api.compact()
    api.kick()
    wait_for(lambda: all(r.lists > n for r, n in zip(cache.reflectors, lists_before, strict=True)))
    wait_for(lambda: free_count(cache, "gpu-late") == 3)
    gone = service.metrics.registry.get_sample_value(
        "gputopo_extender_watch_restarts_total", {"kind": "nodes", "reason": "gone"})
    assert gone is not None and gone >= 1
    # and the watch after the relist works again
    api.put("nodes", node_object("gpu-after", corpus("h100_1nic"), free={0}))
    wait_for(lambda: free_count(cache, "gpu-after") == 1)


def test_periodic_resync_relists() -> None:
    api = FakeApiServer().start()
    api.put("nodes", node_object("gpu-a", corpus("h100_1nic")))
    service = make_service()
    cache = ClusterCache(prefix=PREFIX, locality_keys=[], registry=service.topologies, metrics=service.metrics)
    try:
        cache.start(core_v1(api.url), watch_timeout_seconds=1, resync_seconds=0.5, backoff_seconds=0.05)
        assert cache.wait_synced(10)
        wait_for(lambda: all(r.lists >= 2 for r in cache.reflectors), timeout=15)
    finally:
        stop(cache, api)


def test_not_synced_fails_open() -> None:
    """Before the first list, a NodeNames request passes every node and /readyz is 503."""
    service = make_service()
    cache = ClusterCache(prefix=PREFIX, locality_keys=[], registry=service.topologies, metrics=service.metrics)
    service.view = cache
    body = filter_body(pod(4, annotations={PREFIX + "placement": "required"}), names=["a", "b"])
    out = json.loads(service.filter(body).body)
    assert out["NodeNames"] == ["a", "b"] and out["Error"] == ""
    assert service.metrics.registry.get_sample_value("gputopo_extender_fail_open_total", {"reason": "not_synced"}) == 2
    with serve_service(service, ready=lambda: cache.synced) as addr:
        conn = http.client.HTTPConnection(*addr)
        conn.request("GET", "/readyz")
        assert conn.getresponse().status == 503


def _post(addr: tuple[str, int], path: str, body: bytes) -> Any:
    conn = http.client.HTTPConnection(*addr, timeout=30)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    return json.loads(resp.read())


def test_cached_filter_and_prioritize_over_http_with_siblings(cluster: Any) -> None:
    """A PyTorchJob with worker-0 already on gpu-a (zone z1); worker-1 asks for 4 GPUs.

    A rank (051 boards, text only: every 4-set rings at 18 × 20.6 = 370.8; NIC rates unknown, so every
    set's network counts 1.25 and V = √(1.25 × 370.8) = 21.5 everywhere: 0 off for bandwidth).
    gpu-a: 8 free - 2 (fresh, estimated) - 4 (worker-0, estimated) = 2 free → < 4 → score 0
    gpu-b: free {4,5,6,7}: the pod fills it, island 0; affinity: zone z2 vs the siblings' z1, topology
           class equal → 1 of 2 keys → round_half_up(2 × 1/2) = 1 → 10 − 0 − 1 = 9
    gpu-z1: same board fully free in zone z1: island 2, affinity 0 → 8
    cpu-1: not ours → 0
    """
    api, cache, service = cluster
    board = corpus("h100_nv18")
    api.put("nodes", node_object("gpu-z1", board, free=set(range(8)), extra_labels={ZONE: "z1"}))
    job = {"training.kubeflow.org/job-name": "llm", "training.kubeflow.org/replica-type": "worker"}
    w0 = pod(4, name="llm-worker-0", uid="u-w0", node_name="gpu-a",
             labels_=job | {"training.kubeflow.org/replica-index": "0"})
    w0["metadata"]["namespace"] = "ml"
    w0["metadata"]["creationTimestamp"] = "2025-01-02T00:00:00Z"
    api.put("pods", w0)
    wait_for(lambda: free_count(cache, "gpu-a") == 2 and cache.facts("gpu-z1") is not None)
    w1 = pod(4, name="llm-worker-1", uid="u-w1", labels_=job | {"training.kubeflow.org/replica-index": "1"})
    w1["metadata"]["namespace"] = "ml"
    names = ["gpu-a", "gpu-b", "gpu-z1", "cpu-1", "ghost"]
    with serve_service(service, ready=lambda: cache.synced) as addr:
        scores = _post(addr, "/prioritize", filter_body(w1, names=names))
        assert scores == [{"Host": "gpu-a", "Score": 0}, {"Host": "gpu-b", "Score": 9},
                          {"Host": "gpu-z1", "Score": 8}, {"Host": "cpu-1", "Score": 0},
                          {"Host": "ghost", "Score": 0}]
        required = dict(w1)
        required["metadata"] = dict(w1["metadata"], annotations={PREFIX + "placement": "required",
                                                                  PREFIX + "max-level": "nvlink"})
        out = _post(addr, "/filter", filter_body(required, names=names))
        # count shortfall (gpu-a) and unknown nodes (ghost) pass; NV18 everywhere else
        assert out["NodeNames"] == names and out["Nodes"] is None and out["FailedNodes"] == {}
    assert service.metrics.registry.get_sample_value("gputopo_extender_fail_open_total",
                                                     {"reason": "unknown_node"}) >= 1


def test_cli_build_cached_mode_against_the_fake_api() -> None:
    """`extender.cli.build` wires settings → informers → app (no kubeconfig: a client is passed in)."""
    from extender.cli import build
    from extender.settings import load

    api = FakeApiServer().start()
    api.put("nodes", node_object("gpu-a", corpus("h100_1nic")))
    app, cache = build(load(mode="cached", sync_timeout_seconds=10, watch_timeout_seconds=2), core_v1(api.url))
    try:
        assert cache is not None and cache.wait_synced(10)  # build() does not wait: the server listens at once
        with serve_service_app(app) as addr:
            out = _post(addr, "/filter", filter_body(pod(2), names=["gpu-a"]))
            assert out["NodeNames"] == ["gpu-a"]
    finally:
        stop(cache, api)


def serve_service_app(app: Any) -> Any:
    from ext_support import serve

    return serve(app)


def test_create_app_is_importable_without_cache() -> None:
    assert app_of(make_service()) is not None
