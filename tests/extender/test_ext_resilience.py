"""The cached extender against damaged objects and a misbehaving API server (real client, real HTTP).

Each test reproduces a "Why" case of issue #8 that failed before the fix:

- a deeply nested JSON value in one node's ``topology`` annotation or in one
  allocation ConfigMap raised ``RecursionError`` in the cache refresh: the
  informer relisted every second for ever, other nodes' changes stopped
  applying, and a restarted extender never became ready;
- an agent could write an allocation ConfigMap that speaks for another node;
- the extender waited up to 60 s for the first sync before it listened;
- a watch that ends at once was retried ~2,900 times per second, failing lists
  every ``backoff_seconds`` without growth;
- the synced flag was never cleared, so a stale cache reported ready;
- a relist mutated the live view in place (a request could see half of it).
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ext_support import PREFIX, app_of, corpus, filter_body, make_service, node_object, pod, serve
from fake_apiserver import FakeApiServer
from test_ext_alloc_configmap import NS, alloc_configmap
from test_ext_cache import core_v1, free_count, stop, wait_for

from extender.cache import ClusterCache
from extender.service import Service
from labeler.topology import carrier, labels
from policy.nodes.state import NodeState

BOARD = corpus("h100_nv18")
ALL_DOWN = {"nodes": 500, "pods": 500, "configmaps": 500}  # an API server down behind its load balancer
DEEP = "[" * 100_000 + "]" * 100_000


def damaged_nodes() -> list[dict[str, Any]]:
    nested = node_object("gpu-nested", BOARD, free=range(8))
    nested["metadata"]["annotations"][PREFIX + labels.ANNOTATION_TOPOLOGY] = '{"v":1,"gpus":' + DEEP + "}"
    huge = node_object("gpu-range", BOARD, free=range(8))
    key = PREFIX + labels.ANNOTATION_TOPOLOGY
    doc = json.loads(huge["metadata"]["annotations"][key])
    doc["gpus"][0]["cpu_affinity"] = "0-1000000"
    huge["metadata"]["annotations"][key] = json.dumps(doc)
    odd = node_object("gpu-odd", BOARD, free=range(8))
    odd["metadata"]["labels"] = {"x": ["not", "a", "string"]}  # not what the API server allows; still one node
    return [nested, huge, odd]


def damaged_configmap() -> dict[str, Any]:
    cm = alloc_configmap("gpu-cm", {0, 1})
    cm["data"][carrier.DATA_KEY] = '{"v":1,"free":"0","used":' + DEEP + "}"
    return cm


def start(api: FakeApiServer, **options: Any) -> tuple[ClusterCache, Service]:
    service = make_service(strategies=["island"], locality_keys=[])
    cache = ClusterCache(prefix=PREFIX, locality_keys=[], registry=service.topologies, metrics=service.metrics,
                         allocation_namespace=NS)
    service.view = cache
    opts: dict[str, Any] = {"watch_timeout_seconds": 5, "resync_seconds": 3600, "backoff_seconds": 0.05}
    cache.start(core_v1(api.url), **(opts | options))
    return cache, service


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    server.put("nodes", node_object("gpu-good", BOARD, free=range(8)))
    server.put("nodes", node_object("gpu-cm", BOARD, free=range(8)))
    for node in damaged_nodes():
        server.put("nodes", node)
    server.put("configmaps", damaged_configmap())
    weird = pod(2, name="weird", node_name="gpu-good")
    weird["spec"]["containers"].append({"resources": {"limits": {"nvidia.com/gpu": "1e400"}}, "env": 5})
    weird["spec"]["initContainers"] = 7
    server.put("pods", weird)
    yield server
    server.stop()


def bad(service: Service, kind: str, reason: str) -> float:
    return service.metrics.registry.get_sample_value("gputopo_extender_bad_objects_total",
                                                     {"kind": kind, "reason": reason}) or 0.0


def test_damaged_objects_fail_open_alone_and_a_restart_becomes_ready(api: FakeApiServer) -> None:
    for restart in range(2):  # the second cache is a restarted extender meeting the same damage
        cache, service = start(api)
        try:
            assert cache.wait_synced(10), f"not ready after start #{restart + 1}"
            good = cache.facts("gpu-good")
            # free per the annotation (8, then 4 after the first round's update) minus the weird pod's 2
            assert good is not None and good.state is NodeState.OK and good.free_count == (6, 2)[restart]
            for name in ("gpu-nested", "gpu-range"):
                f = cache.facts(name)
                assert f is not None and f.state is NodeState.NO_DATA and f.fail_reason == "undecodable_topology"
            odd = cache.facts("gpu-odd")
            assert odd is not None and odd.state is NodeState.OK
            cm = cache.facts("gpu-cm")
            assert cm is not None and cm.fail_reason == "undecodable_allocation"
            assert bad(service, "nodes", "undecodable_topology") >= 2
            # other nodes' changes still apply, and no informer relists in a loop
            api.put("nodes", node_object("gpu-good", BOARD, free=range(4 + 2 * restart)))
            wait_for(lambda c=cache, want=2 + 2 * restart: free_count(c, "gpu-good") == want)
            time.sleep(1.0)
            assert [r.lists for r in cache.reflectors] == [1, 1, 1]
            # requests for the damaged nodes pass them (fail open) and score them 0
            body = filter_body(pod(2, annotations={PREFIX + "placement": "required"}),
                               names=["gpu-good", "gpu-nested", "gpu-range", "gpu-cm"])
            out = json.loads(service.filter(body).body)
            assert out["NodeNames"] == ["gpu-good", "gpu-nested", "gpu-range", "gpu-cm"]
            scores = json.loads(service.prioritize(body).body)
            assert [s["Score"] for s in scores][1:] == [0, 0, 0]
        finally:
            cache.stop()


def test_a_configmap_speaking_for_another_node_is_ignored() -> None:
    api = FakeApiServer().start()
    api.put("nodes", node_object("gpu-a", BOARD, free=range(8)))
    api.put("nodes", node_object("gpu-b", BOARD, free=range(8)))
    forged = alloc_configmap("gpu-a", {0})  # says gpu-a has 1 free GPU ...
    forged["metadata"]["name"] = carrier.configmap_name("gpu-b")  # ... but is gpu-b's agent's ConfigMap
    api.put("configmaps", forged)
    cache, service = start(api)
    try:
        assert cache.wait_synced(10)
        assert free_count(cache, "gpu-a") == 8 and free_count(cache, "gpu-b") == 8  # the forged value is not used
        assert bad(service, "configmaps", "foreign_node") == 1
        api.put("configmaps", alloc_configmap("gpu-b", {0, 1, 2}))  # gpu-b's agent writes its own truth
        wait_for(lambda: free_count(cache, "gpu-b") == 3)
        assert free_count(cache, "gpu-a") == 8
    finally:
        stop(cache, api)


def watch_requests(api: FakeApiServer) -> int:
    return api.count("watch")


def test_watches_that_end_at_once_back_off() -> None:
    """Before: ~2,900 watch requests per second and informer."""
    api = FakeApiServer().start()
    api.put("nodes", node_object("gpu-a", BOARD, free=range(8)))
    cache, _ = start(api, max_backoff_seconds=5.0)
    try:
        assert cache.wait_synced(10)
        api.watch_ends_at_once = True
        api.kick()
        before = watch_requests(api)
        time.sleep(1.5)
        # 3 informers, delays 0.05·2^n·[0.5, 1]: at most ~6 each in 1.5 s
        assert watch_requests(api) - before <= 30
        api.watch_ends_at_once = False
        api.kick()
        api.put("nodes", node_object("gpu-b", BOARD, free={0}))
        wait_for(lambda: free_count(cache, "gpu-b") == 1)
    finally:
        stop(cache, api)


def test_failing_lists_back_off_exponentially_and_recover() -> None:
    api = FakeApiServer().start()
    api.put("nodes", node_object("gpu-a", BOARD, free=range(8)))
    cache, _ = start(api, max_backoff_seconds=5.0)
    try:
        assert cache.wait_synced(10)
        api.refuse.update(ALL_DOWN)
        api.kick()
        before = len(api.requests)
        time.sleep(1.5)
        assert len(api.requests) - before <= 30  # fixed 0.05 s retries were 90 in 1.5 s
        api.refuse.clear()
        api.put("nodes", node_object("gpu-b", BOARD, free={0}))
        wait_for(lambda: free_count(cache, "gpu-b") == 1, timeout=20)
    finally:
        stop(cache, api)


def get(addr: tuple[str, int], path: str) -> int:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_stale_cache_is_not_ready_and_recovers() -> None:
    """Before: once synced, /readyz stayed 200 whatever happened to the informers."""
    api = FakeApiServer().start()
    api.put("nodes", node_object("gpu-a", BOARD, free=range(8)))
    cache, service = start(api, max_backoff_seconds=0.2)
    app = app_of(service, ready=lambda: cache.ready(0.3), unsynced_seconds=cache.unsynced_seconds)
    try:
        with serve(app) as addr:
            wait_for(lambda: get(addr, "/readyz") == 200)
            api.refuse.update(ALL_DOWN)
            api.kick()
            wait_for(lambda: get(addr, "/readyz") == 503)
            assert cache.unsynced_seconds() > 0.3
            assert get(addr, "/healthz") == 200  # alive, just not ready
            api.refuse.clear()
            wait_for(lambda: get(addr, "/readyz") == 200, timeout=20)
    finally:
        stop(cache, api)


def test_the_server_listens_before_the_first_sync() -> None:
    """Before: build() waited for the first sync (60 s by default) before the server could listen."""
    from extender.cli import build
    from extender.settings import load

    api = FakeApiServer().start()
    api.put("nodes", node_object("gpu-a", BOARD, free=range(8)))
    api.refuse.update(ALL_DOWN)
    built: list[Any] = []
    t = threading.Thread(target=lambda: built.append(build(
        load(mode="cached", sync_timeout_seconds=3600, backoff_seconds=0.05, max_backoff_seconds=0.2),
        core_v1(api.url))))
    t.start()
    t.join(30)
    assert not t.is_alive() and built, "build() blocked on the first sync"
    app, cache = built[0]
    try:
        with serve(app) as addr:
            assert get(addr, "/healthz") == 200
            assert get(addr, "/readyz") == 503
            api.refuse.clear()
            wait_for(lambda: get(addr, "/readyz") == 200, timeout=20)
    finally:
        stop(cache, api)


def test_a_relist_swaps_a_new_view_in() -> None:
    """A request holds the view it started with; a relist builds a new one beside it."""
    api = FakeApiServer().start()
    api.put("nodes", node_object("gpu-a", BOARD, free=range(8)))
    cache, _ = start(api)
    try:
        assert cache.wait_synced(10)
        during_request = cache.entry  # what a request in flight reads (extender.answers)
        cache.replace_nodes([node_object("gpu-a", BOARD, free={0})])
        old_entry, new = during_request("gpu-a"), cache.facts("gpu-a")
        assert old_entry is not None and new is not None
        old = old_entry.facts
        assert old is not None
        assert (old.free_count, new.free_count) == (8, 1)
    finally:
        stop(cache, api)


class _Page:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def release_conn(self) -> None:
        pass


def test_a_list_failing_mid_way_changes_nothing_and_gc_resumes() -> None:
    """Lists stream page by page; a failure on page 2 leaves the previous view whole."""
    import gc

    from extender.reflector import Reflector

    service = make_service()
    cache = ClusterCache(prefix=PREFIX, locality_keys=[], registry=service.topologies, metrics=service.metrics)
    cache.replace_nodes([node_object("gpu-old", BOARD, free=range(8))])
    calls = []

    def list_nodes(limit: int, _continue: str = "", **_: Any) -> _Page:
        calls.append(_continue)
        if _continue:
            assert not gc.isenabled()  # no collector passes while a list streams in
            raise ConnectionError("API server went away")
        page = {"metadata": {"resourceVersion": "5", "continue": "1"}, "items": [node_object("gpu-new", BOARD)]}
        return _Page(json.dumps(page).encode())

    reflector = Reflector("nodes", list_nodes, cache.replace_nodes, cache.node_event, stop=threading.Event(),
                          metrics=service.metrics, page_size=1)
    assert gc.isenabled()
    with pytest.raises(ConnectionError):
        reflector._list()
    assert calls == ["", "1"] and gc.isenabled()
    assert cache.facts("gpu-old") is not None and cache.facts("gpu-new") is None


def test_only_bound_pods_that_have_not_ended_are_listed_and_watched() -> None:
    """The API server selects the pods (bound, phase not Succeeded/Failed); an ending pod leaves as DELETED."""
    api = FakeApiServer().start()
    api.put("nodes", node_object("gpu-a", BOARD, free=range(8)))
    running = pod(2, name="running", node_name="gpu-a")
    done = pod(2, name="done", node_name="gpu-a")
    done["status"] = {"phase": "Succeeded"}
    waiting = pod(2, name="waiting")  # not bound yet: the scheduler's, not ours
    for p in (running, done, waiting):
        p["metadata"]["namespace"] = "ml"
        api.put("pods", p)
    cache, _ = start(api)
    try:
        assert cache.wait_synced(10)
        pod_requests = [r for r in api.requests if r.startswith(("list pods", "watch pods"))]
        assert pod_requests and all("fieldSelector=spec.nodeName%21%3D%2Cstatus.phase%21%3DSucceeded%2C"
                                    "status.phase%21%3DFailed" in r for r in pod_requests), pod_requests
        assert {r.key for r in cache._pods.values()} == {"ml/running"}
        assert free_count(cache, "gpu-a") == 6  # the running pod's 2 GPUs (estimated: the agent has not seen it)
        ended = json.loads(json.dumps(running))
        ended["status"] = {"phase": "Succeeded"}
        api.put("pods", ended)  # leaves the selection: the watch sends DELETED
        wait_for(lambda: not cache._pods, 10)
        assert free_count(cache, "gpu-a") == 8
    finally:
        stop(cache, api)
