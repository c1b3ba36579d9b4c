"""The scheduling cycle as kube-scheduler drives it, against the extender and a decode-only floor, side by side.

kube-scheduler (``nodeCacheCapable: true``) sends, per pod, on one keep-alive connection:
``POST /filter`` with every feasible node's name, then ``POST /prioritize`` with the names that
passed. This benchmark does exactly that, over loopback HTTP, against two servers built on the
**same stack** (uvicorn, the same protocol class and event loop, FastAPI) each in its own
forked process:

- ``extender``: the cached-mode extender (:func:`extender.app.create_app` around a
  :class:`~extender.service.Service` whose informer cache holds the cluster), the production
  server configuration (:func:`extender.server.uvicorn_config`);
- ``floor``: a FastAPI app that reads and decodes the very same bodies (the extender's own
  request decoder) and answers a constant: what merely *receiving* kube-scheduler's calls costs.

Both get the same bytes: the filter body with all names, the prioritize body with the names the
extender passed. Rounds alternate floor and extender (the machine is shared and noisy); figures
are the medians over rounds of each round's p50/p99. Per cycle: wall time at the client
(send, read the whole answer), pods/s = 1 / mean cycle, and the server process's CPU time
(user + system from ``/proc``) divided by the cycles it served.

Below each row, the same bodies in the bench's own process without HTTP: the decode alone and the
warm answer (``Service.answer_now``: decode, look up, join the prepared bytes), medians.

Pods: a 4-GPU PyTorchJob worker with ``placement: required`` and ``max-level: nvlink`` (filter
judges every node), ``nosib`` = the first rank of its job, ``sib`` = a later rank whose job
already has a rank bound (prioritize reads the job-affinity strategy per node).

Cluster: ``bench_extender.build_nodes`` (six real corpus boards, seeded random allocations, ~60 %
free, zones z0..z3).

Rerun: ``.venv/bin/python bench/bench_cycle.py`` (500, 5,000 and 10,000 nodes; about 3 minutes);
``--sizes``, ``--cycles``, ``--rounds``; ``--http h11|httptools``, ``--loop asyncio|uvloop`` to
compare stacks (both servers change together).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import platform
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import uvicorn  # noqa: E402
from bench_extender import PREFIX, ForkedServer, build_nodes, pod_obj  # noqa: E402
from fastapi import FastAPI, Request  # noqa: E402
from fastapi.responses import Response  # noqa: E402

from extender import settings as ext_settings  # noqa: E402
from extender.app import create_app, limits  # noqa: E402
from extender.cache import ClusterCache  # noqa: E402
from extender.metrics import Metrics  # noqa: E402
from extender.server import settle_heap, uvicorn_config  # noqa: E402
from extender.service import Service, ServiceConfig, decode_args  # noqa: E402
from policy.scoring import DEFAULT_STRATEGIES, resolve  # noqa: E402
from policy.siblings import DEFAULT_LOCALITY_KEYS  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


class _Listed:
    """A reflector that has listed (the cache is fed directly here; the informer is tested elsewhere)."""

    def __init__(self) -> None:
        self.synced = threading.Event()
        self.synced.set()
        self.failing_since = None


def sibling_pod(pod: dict[str, Any], node: str) -> dict[str, Any]:
    """Rank 0 of the same PyTorchJob, bound to ``node`` (what the pod informer would have seen)."""
    sib = json.loads(json.dumps(pod))
    meta = sib["metadata"]
    meta["name"] = meta["name"].rsplit("-", 1)[0] + "-0"
    meta["uid"] = "0" * 8 + meta["uid"][8:]
    meta["labels"]["training.kubeflow.org/replica-index"] = "0"
    sib["spec"]["nodeName"] = node
    sib["status"] = {"phase": "Running"}
    return sib


def make_service(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> Service:
    config = ServiceConfig(prefix=PREFIX, locality_keys=DEFAULT_LOCALITY_KEYS, scorer=resolve(DEFAULT_STRATEGIES),
                           decode_node_objects=False)
    service = Service(config, metrics=Metrics())
    cache = ClusterCache(prefix=PREFIX, locality_keys=DEFAULT_LOCALITY_KEYS, registry=service.topologies,
                         metrics=service.metrics)
    cache.replace_nodes(nodes)
    cache.replace_pods(pods)
    cache.replace_configmaps([])
    cache.reflectors = [_Listed()]  # type: ignore[list-item]
    service.view = cache
    return service


def floor_app() -> FastAPI:
    """Same stack, nothing but reading and decoding the body (the extender's own decoder)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/filter")
    async def filter_(request: Request) -> Response:
        decode_args(await request.body())
        return Response(b'{"Nodes":null,"NodeNames":[],"FailedNodes":{},"FailedAndUnresolvableNodes":{},"Error":""}',
                        media_type="application/json")

    @app.post("/prioritize")
    async def prioritize(request: Request) -> Response:
        decode_args(await request.body())
        return Response(b"[]", media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(b"ok\n")

    return app


class Server(ForkedServer):
    """One app in a forked process on the production uvicorn configuration."""

    start_timeout = 60.0

    def __init__(self, app: Any, settings: ext_settings.ExtenderSettings) -> None:
        super().__init__(app)
        self.settings = settings

    def _serve(self) -> None:
        logging.disable(logging.WARNING)
        settle_heap()
        server = uvicorn.Server(uvicorn_config(self.app, self.settings))
        server.run(sockets=[self.sock])

    def cpu_seconds(self) -> float:
        assert self.proc is not None and self.proc.pid is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK


def cycles(port: int, filter_body: bytes, prio_body: bytes, n: int, check: Callable[[bytes, bytes], None] | None
           ) -> tuple[list[float], int, int]:
    """``n`` filter + prioritize cycles on one keep-alive connection; (times, filter answer bytes, prio bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as Go's net/http does
    hdr = {"Content-Type": "application/json"}
    out = []
    fa = pa = b""
    for _ in range(n):
        t = time.perf_counter()
        conn.request("POST", "/filter", body=filter_body, headers=hdr)
        r = conn.getresponse()
        fa = r.read()
        conn.request("POST", "/prioritize", body=prio_body, headers=hdr)
        r2 = conn.getresponse()
        pa = r2.read()
        out.append(time.perf_counter() - t)
        if r.status != 200 or r2.status != 200:
            raise RuntimeError(f"HTTP {r.status} / {r2.status}")
    conn.close()
    if check is not None:
        check(fa, pa)
    return out, len(fa), len(pa)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def run_size(n: int, n_cycles: int, rounds: int, settings: ext_settings.ExtenderSettings) -> list[dict[str, Any]]:
    nodes = build_nodes(n)
    names = [x["metadata"]["name"] for x in nodes]
    pod = pod_obj()
    sib = sibling_pod(pod, names[1])
    rows = []
    for kind, pods in (("nosib", []), ("sib", [sib])):
        service = make_service(nodes, pods)
        fbody = json.dumps({"Pod": pod, "Nodes": None, "NodeNames": names}, separators=(",", ":")).encode()
        first = json.loads(service.filter(fbody).body)
        assert first["Error"] == "", first["Error"]
        passed = first["NodeNames"]
        pbody = json.dumps({"Pod": pod, "Nodes": None, "NodeNames": passed}, separators=(",", ":")).encode()
        scores = json.loads(service.prioritize(pbody).body)
        assert len(scores) == len(passed)
        want_f, want_p = service.filter(fbody).body, service.prioritize(pbody).body

        def check(fa: bytes, pa: bytes, want_f: bytes = want_f, want_p: bytes = want_p) -> None:
            assert fa == want_f and pa == want_p, "answers over HTTP differ from the service's"

        res: dict[str, list[dict[str, float]]] = {"floor": [], "extender": []}
        sizes: dict[str, tuple[int, int]] = {}
        for _ in range(rounds):
            for side in ("floor", "extender"):
                app = floor_app() if side == "floor" else create_app(service, **limits(settings))
                with Server(app, settings) as srv:
                    cycles(srv.port, fbody, pbody, 5, None)  # warm: connection, caches
                    c0 = srv.cpu_seconds()
                    times, fa, pa = cycles(srv.port, fbody, pbody, n_cycles, check if side == "extender" else None)
                    cpu = (srv.cpu_seconds() - c0) / n_cycles
                sizes[side] = (fa, pa)
                res[side].append({"p50": pct(times, 50), "p99": pct(times, 99), "mean": statistics.mean(times),
                                  "cpu": cpu})
        row: dict[str, Any] = {"nodes": n, "pod": kind, "filter_body": len(fbody), "prio_body": len(pbody),
                               "passed": len(passed), "answer_bytes": sizes["extender"]}
        for side in ("floor", "extender"):
            for k in ("p50", "p99", "mean", "cpu"):
                row[f"{side}_{k}"] = statistics.median(r[k] for r in res[side])
            row[f"{side}_pods_s"] = 1 / row[f"{side}_mean"]
        row["ratio"] = row["extender_p50"] / row["floor_p50"]
        row["in_process"] = in_process(service, fbody, pbody, n_cycles)
        rows.append(row)
        print_row(row)
    return rows


def in_process(service: Service, fbody: bytes, pbody: bytes, n: int) -> dict[str, float]:
    """Where the server's time goes, without HTTP: medians (ms) of decoding each body and of answering it.

    ``Service.answer_now`` is what the app runs on the event loop for a warm request (decode
    included); the decode alone is the floor's work.
    """
    def median_ms(f: Callable[[], object]) -> float:
        xs = []
        for _ in range(n):
            t = time.perf_counter()
            f()
            xs.append(time.perf_counter() - t)
        return statistics.median(xs) * 1e3

    assert service.answer_now("filter", fbody) is not None and service.answer_now("prioritize", pbody) is not None
    return {"decode_filter": median_ms(lambda: decode_args(fbody)),
            "answer_filter": median_ms(lambda: service.answer_now("filter", fbody)),
            "decode_prioritize": median_ms(lambda: decode_args(pbody)),
            "answer_prioritize": median_ms(lambda: service.answer_now("prioritize", pbody))}


HEADER = ("| nodes | pod | filter body / answer | prioritize body / answer | floor p50/p99 ms | floor pods/s | "
          "floor CPU ms/cycle | extender p50/p99 ms | extender pods/s | extender CPU ms/cycle | p50 / floor |")


def print_row(r: dict[str, Any]) -> None:
    fa, pa = r["answer_bytes"]
    print(f"| {r['nodes']} | {r['pod']} | {r['filter_body'] / 1e3:.0f} KB / {fa / 1e3:.0f} KB | "
          f"{r['prio_body'] / 1e3:.0f} KB / {pa / 1e3:.0f} KB | "
          f"{r['floor_p50'] * 1e3:.2f}/{r['floor_p99'] * 1e3:.2f} | {r['floor_pods_s']:.0f} | "
          f"{r['floor_cpu'] * 1e3:.2f} | {r['extender_p50'] * 1e3:.2f}/{r['extender_p99'] * 1e3:.2f} | "
          f"{r['extender_pods_s']:.0f} | {r['extender_cpu'] * 1e3:.2f} | {r['ratio']:.2f}x |", flush=True)
    ip = r["in_process"]
    print(f"|   | in process, ms p50 | decode {ip['decode_filter']:.3f}, answer {ip['answer_filter']:.3f} | "
          f"decode {ip['decode_prioritize']:.3f}, answer {ip['answer_prioritize']:.3f} |||||||", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="500,5000,10000")
    ap.add_argument("--cycles", type=int, default=200, help="cycles per round and side")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of floor and extender")
    ap.add_argument("--http", choices=["h11", "httptools"], default=None, help="HTTP protocol (default: settings)")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default=None, help="event loop (default: settings)")
    ap.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    over: dict[str, Any] = {}
    if args.http:
        over["http"] = args.http
    if args.loop:
        over["loop"] = args.loop
    settings = ext_settings.load(**over)
    stack = f"uvicorn {uvicorn.__version__}, {getattr(settings, 'http', 'h11')}, {getattr(settings, 'loop', 'asyncio')}"
    print(f"machine: {platform.machine()} | CPUs: {os.cpu_count()} | Python {platform.python_version()} | "
          f"{platform.platform()} | load {os.getloadavg()[0]:.1f} | stack: {stack}")
    print(f"{args.rounds} rounds x {args.cycles} cycles per side; medians over rounds\n")
    print(HEADER)
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        rows += run_size(n, args.cycles, args.rounds, settings)
    if args.json:
        Path(args.json).write_text(json.dumps({"stack": stack, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
