"""Cached mode reads the allocation from the agents' ConfigMaps, falling back to the Node annotation.

Through the real ``kubernetes`` client against the in-test API server, which
serves LIST/WATCH of ``/api/v1/namespaces/{ns}/configmaps`` with a label
selector. Hand-worked case, strategy ``island`` only (``10 − P``: P = 2 on an
entirely free node, 1 on a partly used one, 0 when the pod takes its last free
GPUs; 051 board, 8 GPUs): a 2-GPU pod scores 8 on a fully free node, 9 with 4
free, 10 with 2 free, and 0 with 1 free (fewer than it asks for).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
from ext_support import PREFIX, corpus, filter_body, make_service, node_object, pod
from fake_apiserver import FakeApiServer
from test_ext_cache import core_v1, free_count, stop, wait_for

from extender.cache import ClusterCache
from extender.service import Service
from labeler.topology import allocation, carrier
from policy.nodes.state import NodeState

NS = "gputopo-system"


def alloc_configmap(node: str, free: set[int], used: dict[int, str] | None = None, *, namespace: str = NS,
                    managed: bool = True, ts: int = 1_700_000_100) -> dict[str, Any]:
    """A ConfigMap as the agent writes it (names and labels from labeler.topology.carrier)."""
    label_value = carrier.node_label_value(node)
    labels = {carrier.NODE_KEY: label_value}
    if managed:
        labels[carrier.MANAGED_BY_LABEL] = carrier.MANAGED_BY_VALUE
    meta: dict[str, Any] = {"name": carrier.configmap_name(node), "namespace": namespace, "labels": labels,
                            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": "u"}]}
    if label_value != node:
        meta["annotations"] = {carrier.NODE_KEY: node}
    state = allocation.AllocationState(frozenset(free), dict(used or {}), ts)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {carrier.DATA_KEY: allocation.encode(state)}}


Cluster = tuple[FakeApiServer, ClusterCache, Service]


def start_cluster(api: FakeApiServer, namespace: str = NS) -> tuple[ClusterCache, Service]:
    service = make_service(strategies=["island"], locality_keys=[])
    cache = ClusterCache(prefix=PREFIX, locality_keys=[], registry=service.topologies, metrics=service.metrics,
                         allocation_namespace=namespace)
    service.view = cache
    cache.start(core_v1(api.url), watch_timeout_seconds=5, resync_seconds=3600, backoff_seconds=0.05)
    assert cache.wait_synced(10)
    return cache, service


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    api = FakeApiServer().start()
    board = corpus("h100_nv18")
    # both nodes' annotations say "all 8 free"; gpu-a's ConfigMap says only 4-7 are free
    api.put("nodes", node_object("gpu-a", board, free=set(range(8))))
    api.put("nodes", node_object("gpu-b", board, free=set(range(8))))
    api.put("configmaps", alloc_configmap("gpu-a", {4, 5, 6, 7}, {0: "ml/x", 1: "ml/x", 2: "ml/y", 3: "ml/y"}))
    cache, service = start_cluster(api)
    try:
        yield api, cache, service
    finally:
        stop(cache, api)


def scores(service: Service, gpus: int = 2) -> dict[str, int]:
    out = json.loads(service.prioritize(filter_body(pod(gpus), names=["gpu-a", "gpu-b"])).body)
    return {e["Host"]: e["Score"] for e in out}


def test_configmap_allocation_changes_the_prioritize_answer(cluster: Cluster) -> None:
    api, cache, service = cluster
    assert free_count(cache, "gpu-a") == 4 and free_count(cache, "gpu-b") == 8
    assert scores(service) == {"gpu-a": 9, "gpu-b": 8}  # 4 free: partly used; 8 free: entirely free
    # the agent publishes a change through the ConfigMap only (watch MODIFIED)
    api.put("configmaps", alloc_configmap("gpu-a", {0, 1}, {g: "ml/z" for g in range(2, 8)}))
    wait_for(lambda: free_count(cache, "gpu-a") == 2)
    assert scores(service) == {"gpu-a": 10, "gpu-b": 8}
    # a ConfigMap appears for gpu-b (watch ADDED)
    api.put("configmaps", alloc_configmap("gpu-b", {6, 7}, {g: "ml/w" for g in range(6)}))
    wait_for(lambda: free_count(cache, "gpu-b") == 2)
    assert scores(service) == {"gpu-a": 10, "gpu-b": 10}
    assert service.metrics.registry.get_sample_value("gputopo_extender_cache_objects", {"kind": "configmaps"}) == 2


def test_configmap_preferred_over_a_stale_annotation_and_deletion_falls_back(cluster: Cluster) -> None:
    api, cache, service = cluster
    board = corpus("h100_nv18")
    # the Node still carries an old annotation from an earlier carrier: only GPU 0 free (a 2-GPU pod: too few → 0)
    stale = node_object("gpu-a", board, free={0})
    api.put("nodes", stale)
    alloc_key = PREFIX + allocation.ANNOTATION_SUFFIX
    wait_for(lambda: cache._nodes["gpu-a"].annotations.get(alloc_key) == stale["metadata"]["annotations"][alloc_key])
    assert free_count(cache, "gpu-a") == 4
    assert scores(service)["gpu-a"] == 9  # the ConfigMap's {4,5,6,7}, not the annotation's {0}
    api.delete("configmaps", alloc_configmap("gpu-a", set()))
    wait_for(lambda: free_count(cache, "gpu-a") == 1)  # back to the Node annotation
    assert scores(service)["gpu-a"] == 0
    assert service.metrics.registry.get_sample_value("gputopo_extender_cache_objects", {"kind": "configmaps"}) == 0


def test_configmap_watch_410_relists(cluster: Cluster) -> None:
    api, cache, service = cluster
    (cm_reflector,) = [r for r in cache.reflectors if r.kind == "configmaps"]
    lists_before = cm_reflector.lists
    api.compact()
    api.put("configmaps", alloc_configmap("gpu-a", {7}, {g: "ml/q" for g in range(7)}))
    api.compact()  # that MODIFIED event is lost with the history: only a relist can see it
    api.kick()
    wait_for(lambda: cm_reflector.lists > lists_before)
    wait_for(lambda: free_count(cache, "gpu-a") == 1)
    gone = service.metrics.registry.get_sample_value(
        "gputopo_extender_watch_restarts_total", {"kind": "configmaps", "reason": "gone"})
    assert gone is not None and gone >= 1
    api.put("configmaps", alloc_configmap("gpu-a", {6, 7}, {g: "ml/q" for g in range(6)}))
    wait_for(lambda: free_count(cache, "gpu-a") == 2)  # and the watch after the relist works


def test_only_labelled_configmaps_in_the_namespace_are_read() -> None:
    api = FakeApiServer().start()
    board = corpus("h100_nv18")
    for n in ("gpu-a", "gpu-b", "gpu-c"):
        api.put("nodes", node_object(n, board, free=set(range(8))))
    api.put("configmaps", alloc_configmap("gpu-a", {0}, namespace="other"))
    api.put("configmaps", alloc_configmap("gpu-b", {0}, namespace="other", managed=False))
    api.put("configmaps", alloc_configmap("gpu-c", {0, 1, 2}, namespace=NS))  # not the configured namespace
    cache, _ = start_cluster(api, namespace="other")
    try:
        assert free_count(cache, "gpu-a") == 1
        assert free_count(cache, "gpu-b") == 8  # right namespace, but not labelled managed-by=gputopo
        assert free_count(cache, "gpu-c") == 8  # ours, but in another namespace
        cm_reqs = [parse_qs(r.split(" ", 2)[2]) for r in api.requests if " configmaps " in r]
        assert cm_reqs and all(q["labelSelector"] == ["app.kubernetes.io/managed-by=gputopo"] for q in cm_reqs)
    finally:
        stop(cache, api)


def test_long_node_name_maps_through_the_annotation() -> None:
    name = "gpu-" + "x" * 70 + ".example.com"
    api = FakeApiServer().start()
    api.put("nodes", node_object(name, corpus("h100_nv18"), free=set(range(8))))
    cm = alloc_configmap(name, {0, 1, 2})
    assert cm["metadata"]["labels"][carrier.NODE_KEY] != name  # the label holds a hash
    api.put("configmaps", cm)
    cache, _ = start_cluster(api)
    try:
        assert free_count(cache, name) == 3
    finally:
        stop(cache, api)


def test_cli_build_watches_the_configured_namespace() -> None:
    from extender.cli import build
    from extender.settings import load

    api = FakeApiServer().start()
    api.put("nodes", node_object("gpu-a", corpus("h100_nv18"), free=set(range(8))))
    api.put("configmaps", alloc_configmap("gpu-a", {0, 1}, namespace="gpu-ops", ts=int(time.time()) - 60))
    # the agent re-stamps its allocation every 600 s: one 2 hours old means the agent is gone (max age 1800 s)
    api.put("nodes", node_object("gpu-b", corpus("h100_nv18"), free=set(range(8))))
    api.put("configmaps", alloc_configmap("gpu-b", {0, 1}, namespace="gpu-ops", ts=int(time.time()) - 7200))
    settings = load(mode="cached", sync_timeout_seconds=10, watch_timeout_seconds=2, allocation_namespace="gpu-ops")
    _, cache = build(settings, core_v1(api.url))
    try:
        assert cache is not None and cache.wait_synced(10) and free_count(cache, "gpu-a") == 2
        stale = cache.facts("gpu-b")
        assert stale is not None and stale.state is NodeState.STALE and stale.fail_reason == "stale_allocation"
    finally:
        stop(cache, api)
