"""Scheduling throughput of the real kube-scheduler on 1,000 (and 5,000) GPU nodes, without and with the extender.

Same run, same cluster, same nodes: Node objects (the seven scheduling-scenario classes in
turn) carrying what their agents publish (the agent's own encoders in the create body: 1,000
agent runs would cost more than the measurement), the extender in cached mode. For each side,
N GPU pods (1-, 2- and 4-GPU, default ``preferred`` placement) are created while no scheduler
runs; then kube-scheduler starts with the project's configuration (``baseline``: the same
without the ``extenders`` stanza) and we time, from a watch, the first to the last binding.
pods/s = (N − 1) / that interval; the ratio is with / without. The pods of one side are
force-deleted before the other starts, so both see empty nodes.

N is ``E2E_THROUGHPUT_PODS`` (default 150: CI-sized); the cluster sizes are
``E2E_THROUGHPUT_NODES`` (default ``1000``; comma-separated sizes run in one module, the
fleet growing from one size to the next while the extender keeps running and picks the new
nodes up by its watch). The larger run of docs/e2e.md and docs/performance.md:
``E2E_THROUGHPUT_NODES=1000,5000 E2E_THROUGHPUT_PODS=1000 make e2e E2E_ARGS="-k throughput"``.
Nothing here asserts a speed: the figures are printed and written to
out/e2e-results/throughput.json (one entry per size).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import watch

from .cluster import SCHEDULER_CONFIGMAP, SCHEDULER_NAMESPACE, SCHEDULER_USER, Cluster, metric, requests_of
from .conftest import report
from .fleet import create_nodes, preencoded_node, topology
from .kubebin import REPO
from .procs import wait_for
from .scenario import CLASSES, notebook_pod, quantities_as_strings

SIZES = [int(n) for n in os.environ.get("E2E_THROUGHPUT_NODES", "1000").split(",")]
PODS = int(os.environ.get("E2E_THROUGHPUT_PODS", "150"))
RESULTS = REPO / "out" / "e2e-results"


@pytest.fixture(scope="module")
def fleet(cluster: Cluster) -> Iterator[tuple[Cluster, str, Callable[[int], None], Callable[[], float]]]:
    files = [f for f, _ in CLASSES.values()]
    names = list(CLASSES)
    proc, url = cluster.start_extender(extra=["--log-level=warning"])
    made = 0

    def grow(n: int) -> None:
        nonlocal made
        t0 = time.monotonic()
        create_nodes(cluster, [preencoded_node(f"tp-{names[i % len(names)]}-{i:05d}", topology(files[i % len(files)]))
                               for i in range(made, n)])
        made = max(made, n)
        report(f"throughput: {made} nodes ({time.monotonic() - t0:.1f}s to create)")
        wait_for(f"the extender's cache holds {n} nodes",
                 lambda: metric(url, "gputopo_extender_cache_objects", 'kind="nodes"') >= n, 300, interval_s=1)

    def cpu_seconds() -> float:
        """The extender process's CPU time so far (user + system)."""
        assert proc.popen is not None
        fields = Path(f"/proc/{proc.popen.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    yield cluster, url, grow, cpu_seconds
    cluster.stop(proc.name)


def _extender_work(url: str, cpu_seconds: Callable[[], float]) -> dict[str, float]:
    """Counters of the extender's own work: CPU, server-side seconds and node names per verb."""
    out = {"cpu_s": cpu_seconds()}
    for verb in ("filter", "prioritize"):
        out[f"{verb}_calls"] = metric(url, "gputopo_extender_request_seconds_count", f'verb="{verb}"')
        out[f"{verb}_s"] = metric(url, "gputopo_extender_request_seconds_sum", f'verb="{verb}"')
    out["filter_names"] = metric(url, "gputopo_extender_nodes_total", 'verb="filter"')
    return out


def _work_per_pod(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    d = {k: after[k] - before[k] for k in before}
    per = max(1.0, d["filter_calls"])
    return {"extender_cpu_ms_per_pod": round(d["cpu_s"] / PODS * 1e3, 2),
            "filter_ms_mean": round(d["filter_s"] / per * 1e3, 2),
            "prioritize_ms_mean": round(d["prioritize_s"] / max(1.0, d["prioritize_calls"]) * 1e3, 2),
            "names_per_filter": round(d["filter_names"] / per, 1)}


def _pods(side: str, nodes: int) -> list[dict[str, Any]]:
    out = []
    for i in range(PODS):
        pod = notebook_pod(f"tp-{side}-{i:04d}", namespace=f"tp-{side}-{nodes}", gpus=(1, 2, 4)[i % 3])
        pod["spec"]["containers"][0]["resources"]["requests"] = {"cpu": "1", "memory": "4Gi"}
        out.append(pod)
    return out


def _run(cluster: Cluster, side: str, extender_url: str | None, nodes: int) -> dict[str, Any]:
    ns = f"tp-{side}-{nodes}"
    cluster.ensure_namespace(ns)
    core = cluster.core
    for pod in _pods(side, nodes):
        core.create_namespaced_pod(ns, quantities_as_strings(pod))  # type: ignore[arg-type]
    bound: dict[str, float] = {}
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    stop = threading.Event()

    def watch_bindings() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, ns, resource_version=rv, timeout_seconds=600):
            pod = ev["object"]
            if pod.spec.node_name and pod.metadata.name not in bound:
                bound[pod.metadata.name] = time.monotonic()
            if stop.is_set() or len(bound) == PODS:
                w.stop()

    watcher = threading.Thread(target=watch_bindings, daemon=True)
    watcher.start()
    name = f"kube-scheduler-{side}"
    started = time.monotonic()
    proc = cluster.start_scheduler(extender_url, name=name, baseline=extender_url is None)
    try:
        wait_for(f"{PODS} pods bound ({side})", lambda: len(bound) == PODS, 600, interval_s=0.5, alive=proc.dead)
    finally:
        stop.set()
        cluster.stop(name)
    watcher.join(timeout=10)
    times = sorted(bound.values())
    interval = times[-1] - times[0]
    result = {"side": side, "pods": PODS, "nodes": nodes, "first_to_last_bind_s": round(interval, 2),
              "pods_per_s": round((PODS - 1) / interval, 1), "scheduler_start_to_last_bind_s":
              round(times[-1] - started, 2)}
    core.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
    wait_for(f"{ns} pods deleted", lambda: not core.list_namespaced_pod(ns, limit=1).items, 120)
    return result


@pytest.mark.parametrize("nodes", SIZES)
def test_throughput_with_and_without_the_extender(
        fleet: tuple[Cluster, str, Callable[[int], None], Callable[[], float]], nodes: int) -> None:
    cluster, url, grow, cpu_seconds = fleet
    grow(nodes)
    calls = metric(url, "gputopo_extender_requests_total", 'verb="filter"')
    work0 = _extender_work(url, cpu_seconds)
    without = _run(cluster, "baseline", None, nodes)
    assert metric(url, "gputopo_extender_requests_total", 'verb="filter"') == calls  # baseline: not called
    work1 = _extender_work(url, cpu_seconds)
    without["extender"] = _work_per_pod(work0, work1)  # the informer following the bindings only
    prioritized0 = metric(url, "gputopo_extender_requests_total", 'verb="prioritize"', 'outcome="ok"')
    with_ext = _run(cluster, "extender", url, nodes)
    with_ext["extender"] = _work_per_pod(work1, _extender_work(url, cpu_seconds))
    filtered = metric(url, "gputopo_extender_requests_total", 'verb="filter"', 'outcome="ok"') - calls
    prioritized = metric(url, "gputopo_extender_requests_total", 'verb="prioritize"', 'outcome="ok"') - prioritized0
    assert filtered >= PODS and prioritized >= PODS, (filtered, prioritized)  # every pod went through us
    ratio = with_ext["pods_per_s"] / without["pods_per_s"]
    refused = {k: v for k, v in requests_of(cluster.audit_events(SCHEDULER_USER)).items() if "403" in v}
    assert not refused, refused  # the scheduler's least-privilege RBAC held at 2 x PODS bindings
    cm = cluster.core.read_namespaced_config_map(SCHEDULER_CONFIGMAP, SCHEDULER_NAMESPACE)
    conn = yaml.safe_load((cm.data or {})["config.yaml"]).get("clientConnection", {})
    client = {"qps": conn.get("qps", 50), "burst": conn.get("burst", 100)}  # absent: kube-scheduler's defaults
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "throughput.json"
    try:
        results = json.loads(path.read_text()) if nodes != SIZES[0] else {}
    except (OSError, ValueError):
        results = {}
    results[str(nodes)] = {"without": without, "with": with_ext, "ratio": round(ratio, 3), "client": client}
    path.write_text(json.dumps(results, indent=2))
    report(f"throughput: {PODS} pods on {nodes} nodes, client QPS {client['qps']} burst {client['burst']}: "
           f"without extender {without['pods_per_s']} pods/s, with extender {with_ext['pods_per_s']} pods/s, "
           f"ratio {ratio:.2f}; extender work per pod with it: {with_ext['extender']}, "
           f"without (informer only): {without['extender']}")
    assert without["pods"] == with_ext["pods"] == PODS
