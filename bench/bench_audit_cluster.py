"""`gputopo audit cluster` at 5,000 nodes, side by side with a floor that only lists the same objects.

Cluster: ``tests/cli/cluster_fixture.scaled_cluster``: GPU nodes cycling through the 283 GPU
nodes of the test cluster (L40S, HGX H100, A100 bridge pairs; stale, error, damaged, odd, busy,
unlabelled), each a full realistic Node object (kubelet status, 50 images, managedFields, GFD
labels: ~17 KB of JSON), an allocation ConfigMap per labelled node, 10 running pods per node (what
daemonsets and workloads put there) and one pending 4-GPU pod per 100 nodes.

Server: ``tests/extender/fake_apiserver.FakeApiServer`` (paged LIST, label and field selectors,
every object encoded to JSON once) in a forked child process, so that the server and the
client each have a core and the client's timings are not stretched by the server's GIL.

What is timed, alternating in every repetition, with the same client, page size and queries:

- ``floor``: the three lists the audit makes (nodes in pages, our ConfigMaps by label selector,
  unscheduled pending pods by field selector), each page fetched raw with the official client
  and ``json.loads``-ed, nothing else, with the cyclic GC paused as the audit pauses it
  (``gputopo.cluster_reader.paused_gc``), so the floor is the cheapest way to read the same bytes;
- ``audit --json``: ``gputopo audit cluster --json`` in-process (``gputopo.audit_cluster.main``),
  stdout to /dev/null: listing, reducing, analysis and the JSON document;
- ``audit (tables)``: the same with the text report and ``--nodes all`` (a line per GPU node);
- ``all pods``: listing every pod instead (what the audit would pay for reading running pods;
  it does not: the allocations name them).

Rerun: ``.venv/bin/python bench/bench_audit_cluster.py`` (``--nodes 5000 --reps 3``; about 3 minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for sub in ("cli", "agent", "extender"):
    sys.path.insert(0, str(ROOT / "tests" / sub))

from cluster_fixture import kubeconfig, scaled_cluster  # noqa: E402
from fake_apiserver import FakeApiServer  # noqa: E402

from gputopo import audit_cluster  # noqa: E402
from gputopo.cluster_reader import PENDING_SELECTOR, paused_gc  # noqa: E402
from labeler.topology import carrier  # noqa: E402
from policy.audit.cluster_audit import audit  # noqa: E402
from policy.audit.cluster_nodes import AuditConfig  # noqa: E402


def serve(nodes: int, pods_per_node: int, conn: Any) -> None:
    """Child process: build the cluster, serve it, report the URL and the object counts, wait."""
    api = FakeApiServer()
    cluster = scaled_cluster(time.time(), nodes, pods_per_node=pods_per_node)
    cluster.load(api)
    counts = {k: len(v) for k, v in api.objects.items()}
    for kind, objs in api.objects.items():  # encode every object now, not during the first timed list
        for key in objs:
            api.encoded(kind, key)
    del cluster
    api.start()
    conn.send((api.url, counts))
    conn.recv()  # until the parent is done
    api.stop()


def floor(core_v1: Any, page: int, *, all_pods: bool = False) -> int:
    """List exactly what the audit lists, json.loads every page, keep nothing; returns bytes read."""
    with paused_gc():
        return _floor(core_v1, page, all_pods=all_pods)


def _floor(core_v1: Any, page: int, *, all_pods: bool) -> int:
    total = 0

    def pages(fn: Callable[..., Any], **query: Any) -> None:
        nonlocal total
        cont = None
        while True:
            kw: dict[str, Any] = {"limit": page, "_preload_content": False, **query}
            if cont:
                kw["_continue"] = cont
            resp = fn(**kw)
            raw = resp.data
            resp.release_conn()
            total += len(raw)
            cont = json.loads(raw)["metadata"].get("continue")
            if not cont:
                return

    pages(core_v1.list_node)
    pages(lambda **kw: core_v1.list_namespaced_config_map(carrier.DEFAULT_NAMESPACE, **kw),
          label_selector=carrier.SELECTOR)
    if all_pods:
        pages(core_v1.list_pod_for_all_namespaces)
    else:
        pages(core_v1.list_pod_for_all_namespaces, field_selector=PENDING_SELECTOR)
    return total


def run_cli(args: list[str]) -> None:
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        rc = audit_cluster.main(args)
    if rc not in (0, 5):
        raise SystemExit(f"audit exited {rc}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods-per-node", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--page-size", type=int, default=500)
    args = ap.parse_args()
    os.environ["COLUMNS"] = "200"
    t0 = time.perf_counter()
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.get_context("fork").Process(target=serve, args=(args.nodes, args.pods_per_node, child))
    proc.start()
    url, counts = parent.recv()
    print(f"cluster: {counts['nodes']} nodes, {counts['configmaps']} ConfigMaps, {counts['pods']} pods "
          f"(built and served in {time.perf_counter() - t0:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        kc = str(kubeconfig(Path(tmp) / "config", url))
        settings = audit_cluster.load(kubeconfig=kc)
        core_v1 = audit_cluster._core_api(settings)
        common = ["--kubeconfig", kc, "--no-progress", "--page-size", str(args.page_size)]
        cases: dict[str, Callable[[], Any]] = {
            "floor (list the same objects)": lambda: floor(core_v1, args.page_size),
            "audit --json": lambda: run_cli([*common, "--json"]),
            "audit (tables, --nodes all)": lambda: run_cli([*common, "--nodes", "all"]),
            "all pods (not listed by the audit)": lambda: floor(core_v1, args.page_size, all_pods=True),
        }
        listed = floor(core_v1, args.page_size)  # warm-up: connections, imports
        run_cli([*common, "--json"])
        times: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.reps):
            for name, fn in cases.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        # where the audit's time goes (one instrumented run: the same calls main() makes)
        from gputopo.cluster_reader import read_cluster

        t = time.perf_counter()
        with paused_gc():
            result = read_cluster(core_v1, prefix=settings.prefix, resource=settings.resource,
                                  namespace=settings.allocation_namespace,
                                  label_keys=frozenset(settings.pool_keys) | frozenset(settings.type_keys),
                                  page_size=args.page_size)
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        with paused_gc():
            report = audit(result.nodes, result.pending, AuditConfig(
                now=time.time(), allocation_max_age_s=settings.allocation_max_age_seconds,
                allocation_refresh_s=settings.allocation_refresh_seconds))
        t_analyse = time.perf_counter() - t
        t = time.perf_counter()
        doc = json.dumps(report.to_dict())
        t_json = time.perf_counter() - t
        buf = io.StringIO()
        from rich.console import Console

        from gputopo.audit_cluster_text import render

        t = time.perf_counter()
        render(report, Console(file=buf, width=200, highlight=False), nodes="all")
        t_text = time.perf_counter() - t
    parent.send("stop")
    proc.join(30)
    floor_med = statistics.median(times["floor (list the same objects)"])
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"page size {args.page_size}, {args.reps} repetitions, alternating")
    print(f"listed by the audit: {listed / 1e6:.1f} MB of JSON")
    print("| what | median s | min s | x floor (median) |")
    print("|---|---|---|---|")
    for name, xs in times.items():
        print(f"| {name} | {statistics.median(xs):.2f} | {min(xs):.2f} | {statistics.median(xs) / floor_med:.2f} |")
    s = report.to_dict()["summary"]
    print(f"one instrumented run: read (list + reduce) {t_read:.2f} s, analysis {t_analyse:.2f} s, "
          f"JSON document {t_json:.2f} s ({len(doc) / 1e6:.1f} MB), "
          f"tables {t_text:.2f} s ({len(buf.getvalue()) / 1e6:.1f} MB)")
    print(f"audit: {s['gpu_nodes']} GPU nodes, {s['classes']} classes, findings {s['findings']}, "
          f"stranded GPUs {s['stranded_gpus']}, pods spanning islands {s['pods_spanning_islands']}")


if __name__ == "__main__":
    main()
