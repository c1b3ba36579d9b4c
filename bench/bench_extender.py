"""Extender latency and throughput: filter + prioritize at 500 and 5,000 nodes, both modes.

What is measured (server-side unless said otherwise):

- ``floor``: ``json.loads`` of the very same request body — the cost of merely
  reading what kube-scheduler sends; the goal is extender ≤ 2x floor;
- ``filter`` / ``prioritize``: :meth:`extender.service.Service.filter` /
  ``prioritize`` on the raw body (decode, decide, encode), exactly what the
  HTTP handlers call;
- ``http``: the same requests over loopback HTTP to uvicorn in a forked
  server process (client-side round trip, one keep-alive connection with
  ``TCP_NODELAY`` like Go's net/http), so framework overhead is visible.

Cluster: nodes cycle through real corpus topologies (NV18 boards, DGX-1,
NVLink bridge pairs, PCIe switches, all-SYS), each with a seeded random
allocation; the pod is a 4-GPU PyTorchJob worker with ``placement: required``
(worst case: every node is evaluated in filter and scored in prioritize).
Numbers are warm (memo caches filled by a first pass); the cold first pass is
reported separately.

Rerun: ``.venv/bin/python bench/bench_extender.py`` (``--quick`` for fewer repetitions).
``--before REF`` measures each cell on the code of git ``REF`` and on this tree in turn
(each in a fresh process, ``--rounds`` alternations), and prints them side by side.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import multiprocessing
import platform
import random
import socket
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if "--code" in sys.argv:  # measure the packages of another tree (used by --before): bind them first
    sys.path.insert(0, sys.argv[sys.argv.index("--code") + 1])

import pydantic_core  # noqa: E402
import uvicorn  # noqa: E402

from extender.app import create_app, listen_socket  # noqa: E402
from extender.cache import ClusterCache  # noqa: E402
from extender.metrics import Metrics  # noqa: E402
from extender.service import Service, ServiceConfig  # noqa: E402
from extender.settings import DEFAULT_LOCALITY_KEYS  # noqa: E402
from labeler.topology import allocation, labels, smi_parser  # noqa: E402

try:  # trees before the policy layer kept the strategies in the extender (``extender`` is the tree under test)
    from extender.scoring import DEFAULT_STRATEGIES, resolve  # type: ignore[import-not-found]
except ImportError:
    from policy.scoring import DEFAULT_STRATEGIES, resolve

CORPUS = ROOT / "tests" / "fixtures" / "topo-corpus"
PROTOCOL = ROOT / "tests" / "fixtures" / "extender-protocol"
TOPOLOGIES = [
    "051_h100x8-nv18-8nics-dualport-pix-pairs.txt",
    "005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt",
    "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt",
    "035_gtx1070x6-1080x1-7gpu-pix-phb-oldfmt.txt",
    "032_rtx4090x8-allsys-2nics-tabs.txt",
    "123_h100sxm5x8-nv18-1nic-tabs-4space-indented-header-no-leading-tab.txt",
]
PREFIX = labels.DEFAULT_PREFIX


def build_nodes(n: int, seed: int = 7) -> list[dict[str, Any]]:
    """``n`` realistic Node objects (the payload node's status, images...) with our labels."""
    rng = random.Random(seed)
    template = json.loads((PROTOCOL / "nodelist-2-gpu-nodes.json").read_text())["items"][0]
    topos = [smi_parser.parse((CORPUS / f).read_text()) for f in TOPOLOGIES]
    enc = [(t, labels.encode(t, prefix=PREFIX), labels.encode_annotations(t, prefix=PREFIX)) for t in topos]
    nodes = []
    for i in range(n):
        topo, lab, ann = enc[i % len(enc)]
        free = frozenset(g for g in topo.gpu_indices if rng.random() < 0.6)
        used = {g: f"ns/pod-{i}-{g}" for g in topo.gpu_indices if g not in free}
        node = json.loads(json.dumps(template))
        meta = node["metadata"]
        meta["name"] = f"gpu-{i:05d}"
        meta["labels"].update(lab)
        meta["labels"]["topology.kubernetes.io/zone"] = f"z{i % 4}"
        meta["annotations"].update(ann)
        meta["annotations"][PREFIX + "allocation"] = allocation.encode(
            allocation.AllocationState(free, used, 1_700_000_000))
        nodes.append(node)
    return nodes


def pod_obj() -> dict[str, Any]:
    p = json.loads((PROTOCOL / "pod-pytorchjob-worker.json").read_text())
    p["metadata"]["annotations"] = {PREFIX + labels.POD_PLACEMENT: "required",
                                    PREFIX + labels.POD_MAX_LEVEL: "nvlink"}
    return p


def body(pod: dict[str, Any], nodes: list[dict[str, Any]] | None, names: list[str] | None) -> bytes:
    nl = None if nodes is None else {"metadata": {}, "items": nodes}
    return json.dumps({"Pod": pod, "Nodes": nl, "NodeNames": names}, separators=(",", ":")).encode()


def timeit(fn: Callable[[], Any], reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


class _Synced:
    """A synced view over a ClusterCache fed directly (the informer itself is tested elsewhere)."""

    synced = True

    def __init__(self, cache: ClusterCache) -> None:
        self.facts = cache.facts
        self.siblings = cache.siblings


def make_service(cached_nodes: list[dict[str, Any]] | None) -> Service:
    config = ServiceConfig(prefix=PREFIX, locality_keys=DEFAULT_LOCALITY_KEYS, scorer=resolve(DEFAULT_STRATEGIES))
    service = Service(config, metrics=Metrics())
    if cached_nodes is not None:
        cache = ClusterCache(prefix=PREFIX, locality_keys=DEFAULT_LOCALITY_KEYS, registry=service.topologies,
                             metrics=service.metrics)
        cache.replace_nodes(cached_nodes)
        cache.replace_pods([])
        service.view = _Synced(cache)  # type: ignore[assignment]
    return service


def _app(service: Service) -> Any:
    """This tree's app with the limits older trees had as defaults (64 MiB, 64 in flight; ``--before`` runs those)."""
    import extender.app as app_module

    if not hasattr(app_module, "limits"):
        return create_app(service)  # an older tree: its own defaults
    from extender.settings import load

    return create_app(service, **{**app_module.limits(load(mode="stateless")), "max_concurrent": 64})


class ForkedServer:
    """An ASGI app served by uvicorn in a forked child process, ready when ``/healthz`` answers 200.

    The client must not share the server's GIL (a client thread in the same
    process would inflate the round trip); kube-scheduler is another process too.
    """

    start_timeout = 30.0

    def __init__(self, app: Any) -> None:
        self.sock = listen_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.app = app
        self.proc: multiprocessing.process.BaseProcess | None = None

    def _serve(self) -> None:
        server = uvicorn.Server(uvicorn.Config(self.app, log_level="error", lifespan="off"))
        server.run(sockets=[self.sock])

    def __enter__(self) -> Self:
        self.proc = multiprocessing.get_context("fork").Process(target=self._serve, daemon=True)
        self.proc.start()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.05)
            finally:
                conn.close()
        return self

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.join(10)
        self.sock.close()


class Server(ForkedServer):
    """The extender's app around ``service`` (uvicorn's plain configuration)."""

    def __init__(self, service: Service) -> None:
        super().__init__(_app(service))


def http_times(port: int, path: str, data: bytes, reps: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    # like Go's net/http (kube-scheduler), disable Nagle: otherwise a body sent after the headers waits
    # for the server's delayed ACK (~40 ms on Linux loopback) and the figure measures TCP, not us
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        out.append(time.perf_counter() - t)
        assert resp.status == 200
    conn.close()
    return out


def run(n: int, mode: str, reps: int, http_reps: int) -> dict[str, Any]:
    nodes = build_nodes(n)
    pod = pod_obj()
    names = [x["metadata"]["name"] for x in nodes]
    cached = mode == "cached"
    service = make_service(nodes if cached else None)
    data = body(pod, None, names) if cached else body(pod, nodes, None)
    # the heap as the server has it after start-up (extender.server.settle_heap): without this, whether a
    # full collection over the test's own node objects lands inside the cold pass is a coin toss (~50 ms)
    gc.collect()
    gc.freeze()
    t0 = time.perf_counter()
    first = service.filter(data)
    cold_filter = time.perf_counter() - t0
    t0 = time.perf_counter()
    service.prioritize(data)
    cold_prio = time.perf_counter() - t0
    assert json.loads(first.body)["Error"] == ""
    floor = timeit(lambda: json.loads(data), reps)
    floor_pc = timeit(lambda: pydantic_core.from_json(data), reps)
    filt = timeit(lambda: service.filter(data), reps)
    prio = timeit(lambda: service.prioritize(data), reps)
    row: dict[str, Any] = {
        "nodes": n, "mode": mode, "body_bytes": len(data),
        "floor_p50": pct(floor, 50), "floor_p99": pct(floor, 99), "floor_pc_p50": pct(floor_pc, 50),
        "filter_p50": pct(filt, 50), "filter_p99": pct(filt, 99),
        "prio_p50": pct(prio, 50), "prio_p99": pct(prio, 99),
        "cold_filter": cold_filter, "cold_prio": cold_prio,
        "throughput": 1 / statistics.mean(f + p for f, p in zip(filt, prio, strict=True)),
    }
    with Server(service) as srv:
        hf = http_times(srv.port, "/filter", data, http_reps)
        hp = http_times(srv.port, "/prioritize", data, http_reps)
    row |= {"http_filter_p50": pct(hf, 50), "http_filter_p99": pct(hf, 99),
            "http_prio_p50": pct(hp, 50), "http_prio_p99": pct(hp, 99)}
    gc.unfreeze()
    return row


def ms(x: float) -> str:
    return f"{x * 1000:.2f}"


def _reps(n: int, mode: str, quick: bool) -> tuple[int, int]:
    big = n >= 5000 and mode == "stateless"
    reps = (5 if big else 30) if quick else (20 if big else 200)
    return reps, max(3, reps // 4)


def _side_by_side(ref: str, sizes: list[int], quick: bool, rounds: int) -> int:
    """Each cell on ``ref``'s code and on this tree, alternately, each run in a fresh process."""
    import subprocess
    import tempfile

    cols = ("floor_p50", "filter_p50", "filter_p99", "prio_p50", "prio_p99", "cold_filter", "cold_prio",
            "http_filter_p50", "http_prio_p50")
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
        print(f"before = {ref}, after = this tree; {rounds} alternation(s) per cell, p50 of the runs' p50s\n")
        print("| nodes | mode | code | floor p50 ms | filter p50/p99 ms | prioritize p50/p99 ms | "
              "cold filter+prio ms | HTTP filter p50 ms | HTTP prioritize p50 ms |")
        print("|---|---|---|---|---|---|---|---|---|")
        for n in sizes:
            for mode in ("stateless", "cached"):
                runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
                for _ in range(rounds):
                    for code, extra in (("before", ["--code", tmp]), ("after", [])):
                        out = subprocess.run([sys.executable, __file__, "--cell", f"{n},{mode}", *extra,
                                              *(["--quick"] if quick else [])], capture_output=True, text=True,
                                             check=True)
                        runs[code].append(json.loads(out.stdout.strip().splitlines()[-1]))
                for code in ("before", "after"):
                    m = {c: statistics.median(r[c] for r in runs[code]) for c in cols}
                    print(f"| {n} | {mode} | {code} | {ms(m['floor_p50'])} | {ms(m['filter_p50'])}/"
                          f"{ms(m['filter_p99'])} | {ms(m['prio_p50'])}/{ms(m['prio_p99'])} | "
                          f"{ms(m['cold_filter'] + m['cold_prio'])} | {ms(m['http_filter_p50'])} | "
                          f"{ms(m['http_prio_p50'])} |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    ap.add_argument("--sizes", default="500,5000")
    ap.add_argument("--before", metavar="REF", help="also measure git REF's code, cell by cell, side by side")
    ap.add_argument("--rounds", type=int, default=2, help="with --before: alternations per cell")
    ap.add_argument("--cell", help=argparse.SUPPRESS)  # "N,MODE": one cell, one JSON line (used by --before)
    ap.add_argument("--code", help=argparse.SUPPRESS)  # the tree whose packages are measured (read at import)
    args = ap.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.cell:
        n_text, mode = args.cell.split(",")
        reps, http_reps = _reps(int(n_text), mode, args.quick)
        print(json.dumps(run(int(n_text), mode, reps, http_reps)))
        return 0
    if args.before:
        return _side_by_side(args.before, sizes, args.quick, args.rounds)
    print(f"machine: {platform.machine()} {platform.processor() or ''} | CPUs: {__import__('os').cpu_count()} | "
          f"Python {platform.python_version()} | {platform.platform()}")
    print()
    print("| nodes | mode | body | floor json.loads p50/p99 ms | (pydantic-core parse p50) | filter p50/p99 ms | "
          "prioritize p50/p99 ms | worst of filter, prioritize / floor (p50) | cold filter+prio ms | "
          "filter+prio req/s | HTTP filter p50/p99 ms | HTTP prioritize p50/p99 ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        for mode in ("stateless", "cached"):
            reps, http_reps = _reps(n, mode, args.quick)
            r = run(n, mode, reps, http_reps)
            ratio = max(r["filter_p50"], r["prio_p50"]) / r["floor_p50"]
            print(f"| {n} | {mode} | {r['body_bytes'] / 1e6:.2f} MB | {ms(r['floor_p50'])}/{ms(r['floor_p99'])} | "
                  f"({ms(r['floor_pc_p50'])}) | "
                  f"{ms(r['filter_p50'])}/{ms(r['filter_p99'])} | {ms(r['prio_p50'])}/{ms(r['prio_p99'])} | "
                  f"{ratio:.2f}x | {ms(r['cold_filter'] + r['cold_prio'])} | "
                  f"{r['throughput']:.1f} | {ms(r['http_filter_p50'])}/{ms(r['http_filter_p99'])} | "
                  f"{ms(r['http_prio_p50'])}/{ms(r['http_prio_p99'])} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
