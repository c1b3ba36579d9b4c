"""Reliability figures for docs/reliability.md: hostile bodies, 1,000 concurrent requests, relists, bounds.

Sections (each prints a table; all servers run the production configuration,
``extender.server.uvicorn_config`` + ``extender.app.create_app``, in a forked
process, so the client never shares the server's GIL):

1. **hostile bodies**: random and hostile request bodies (the generator of
   ``tests/extender/test_ext_fuzz.py``, without hypothesis) at ``/filter`` and
   ``/prioritize`` of a stateless and a cached-mode server; answers by status,
   server RSS before/after;
2. **1,000 concurrent**: a cached extender holding 5,000 nodes; 1,000 connections
   each send one request at the same moment, several rounds; answers by status,
   p50/p99/max latency of the 200s, ``/healthz`` latency during the storm and the
   server's RSS after each round, with the default concurrency cap and with a cap
   of 1,024; side by side with a **floor** server that only decodes the same body;
3. **relist**: request latency while the cache relists 5,000 nodes back to back
   (JSON pages decoded, view rebuilt and swapped), against the same requests idle;
4. **bounds**: the 24-GPU NVLink mesh with k = 12, the hardest 16-GPU mesh, and
   decoding one annotation with ``cpu_affinity: "0-1000000"`` (tracemalloc peak).
   ``--before REV`` runs section 4 also against an older commit (``git archive``
   into a temporary directory; the placement search there has no time limit).

Rerun: ``.venv/bin/python bench/bench_reliability.py`` (``--quick``: fewer rounds and bodies).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi import FastAPI, Request  # noqa: E402  (the floor app's annotations must resolve here)
from fastapi.responses import Response  # noqa: E402

PROTOCOL = ROOT / "tests" / "fixtures" / "extender-protocol"


# -- section 4 probes: run in this process or, with --before, in a subprocess on an old tree ----------


def probe_bounds() -> dict[str, Any]:
    """Placement search time/steps and the memory of decoding a huge cpulist; old trees lack some fields."""
    import tracemalloc

    from labeler.topology import labels, serialize
    from labeler.topology.links import SELF, parse_link_token
    from labeler.topology.model import Gpu, Topology
    from labeler.topology.placement import Placer

    def mesh(n: int) -> Topology:
        nv, sys_ = parse_link_token("NV2"), parse_link_token("SYS")
        rows = [[SELF if i == j else (sys_ if abs(i - j) == n // 2 else nv) for j in range(n)] for i in range(n)]
        return Topology.from_rows([Gpu(i) for i in range(n)], [], rows)

    out: dict[str, Any] = {}
    for n, k in ((24, 12), (16, 12)):
        placer = Placer(mesh(n))
        t = time.perf_counter()
        got = placer.best(range(n), k)
        out[f"mesh{n}_k{k}_s"] = time.perf_counter() - t
        out[f"mesh{n}_k{k}_steps"] = getattr(placer, "last_steps", None)
        out[f"mesh{n}_k{k}_exact"] = getattr(got, "exact", True) if got is not None else None
        out[f"mesh{n}_k{k}_bottleneck"] = None if got is None else got.bottleneck.token
    doc = serialize.to_dict(mesh(8))
    doc["gpus"][0]["cpu_affinity"] = "0-1000000"
    raw = {labels.DEFAULT_PREFIX + labels.ANNOTATION_TOPOLOGY: json.dumps(doc)}
    tracemalloc.start()
    t = time.perf_counter()
    try:
        topo = labels.decode_topology(raw)
        out["cpulist_result"] = "decoded" if topo is not None else "none"
    except Exception as err:
        out["cpulist_result"] = f"{type(err).__name__}: {str(err)[-60:]}"
        topo = None
    out["cpulist_s"] = time.perf_counter() - t
    out["cpulist_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
    out["cpulist_held_mib"] = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.stop()
    del topo
    out |= _running_extender_cpulist()
    return out


def _scoring() -> tuple[Any, Any]:
    """``resolve`` and ``DEFAULT_STRATEGIES`` of the tree under test.

    Older trees (``--before``) kept them in the extender; ``extender`` is bound to the tree under
    test, so asking it first never mixes trees (``policy`` may resolve to this tree's).
    """
    try:
        from extender.scoring import DEFAULT_STRATEGIES, resolve  # type: ignore[import-not-found]
    except ImportError:
        from policy.scoring import DEFAULT_STRATEGIES, resolve
    return resolve, DEFAULT_STRATEGIES


def _running_extender_cpulist() -> dict[str, Any]:
    """One 8-GPU node whose every GPU has ``cpu_affinity: "0-1000000"`` (format v1, which old and new code
    read) in one stateless filter request to a running extender: time and the server's RSS before/after."""
    from extender.service import Service, ServiceConfig
    from extender.settings import DEFAULT_LOCALITY_KEYS

    resolve, DEFAULT_STRATEGIES = _scoring()

    gpus = 8
    links = [["X" if i == j else "NV18" for j in range(gpus)] for i in range(gpus)]
    doc = {"v": 1, "gpus": [{"index": i, "cpu_affinity": "0-1000000"} for i in range(gpus)], "nics": [],
           "links": links}
    node = {"metadata": {"name": "gpu-x", "labels": {"gputopo.io/schema": "v1", "gputopo.io/gpu-count": "8"},
                         "annotations": {"gputopo.io/topology": json.dumps(doc)}}}
    pod = json.loads((PROTOCOL / "pod-pytorchjob-worker.json").read_text())
    body = json.dumps({"Pod": pod, "Nodes": {"items": [node]}, "NodeNames": None}).encode()

    def build() -> Any:
        config = ServiceConfig(prefix="gputopo.io/", locality_keys=DEFAULT_LOCALITY_KEYS,
                               scorer=resolve(DEFAULT_STRATEGIES))
        return app_for(Service(config), max_body_bytes=64 << 20)

    with Server(build, settings_for("stateless")) as srv:
        before = srv.rss
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=600)
        t = time.perf_counter()
        conn.request("POST", "/filter", body=body, headers={"Content-Type": "application/json"})
        status = conn.getresponse().status
        took = time.perf_counter() - t
        time.sleep(1)
        return {"served_status": status, "served_s": took, "served_body": len(body), "served_rss": (before, srv.rss)}


# -- servers ----------------------------------------------------------------------------------------------


def _hardened() -> bool:
    """Is the imported ``extender`` a tree with the hardened server (older trees, via --before, are not)?

    Checked by file: the editable install would otherwise resolve a missing
    ``extender.server`` of an older tree to this tree's module.
    """
    import extender

    return (Path(extender.__file__).parent / "server.py").exists()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """``build_app()`` (called in the child) served by uvicorn with the production config, in a forked process."""

    def __init__(self, build_app: Callable[[], Any], settings: Any) -> None:
        from extender.app import listen_socket

        self.sock = listen_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.build_app = build_app
        self.settings = settings
        self.proc: multiprocessing.process.BaseProcess | None = None

    def _serve(self) -> None:
        import logging

        import uvicorn

        logging.disable(logging.CRITICAL)  # the old tree logs tracebacks of its 500s; the table counts them
        if not _hardened():  # an older tree (--before): its own plain uvicorn configuration
            uvicorn.Server(uvicorn.Config(self.build_app(), log_level="critical", lifespan="off")).run(
                sockets=[self.sock])
            return
        from extender.server import settle_heap, uvicorn_config

        config = uvicorn_config(self.build_app(), self.settings)
        settle_heap()  # as `gputopo extender` does before it serves
        config.log_level = "critical"
        uvicorn.Server(config).run(sockets=[self.sock])

    def __enter__(self) -> Server:
        self.proc = multiprocessing.get_context("fork").Process(target=self._serve, daemon=True)
        self.proc.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if get(self.port, "/healthz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start")

    @property
    def rss(self) -> float:
        assert self.proc is not None and self.proc.pid is not None
        return rss_mib(self.proc.pid)

    def __exit__(self, *exc: Any) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.join(10)
        self.sock.close()


def get(port: int, path: str) -> tuple[int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        t = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.perf_counter() - t
    finally:
        conn.close()


def settings_for(mode: str, **overrides: Any) -> Any:
    from extender.settings import load

    return load(mode=mode, log_level="error", **(overrides if _hardened() else {}))


def app_for(service: Any, **options: Any) -> Any:
    """``create_app`` with the options this tree's version accepts (older trees have fewer)."""
    import inspect

    from extender.app import create_app

    accepted = inspect.signature(create_app).parameters
    return create_app(service, **{k: v for k, v in options.items() if k in accepted})


def cached_service(nodes: list[dict[str, Any]], **config: Any) -> Any:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_extender as be

    from extender.service import Service, ServiceConfig

    service = be.make_service(nodes)
    base = service.config
    try:
        cfg = ServiceConfig(base.prefix, base.locality_keys, base.scorer, decode_node_objects=False, **config)
    except TypeError:  # an older tree (--before)
        cfg = ServiceConfig(base.prefix, base.locality_keys, base.scorer)
    out = Service(cfg, metrics=service.metrics)
    out.view, out.topologies, out.contexts = service.view, service.topologies, service.contexts
    return out


# -- section 1: hostile bodies --------------------------------------------------------------------------


def hostile_bodies(n: int, seed: int = 11) -> list[bytes]:
    sys.path[:0] = [str(ROOT / "tests" / "extender"), str(ROOT / "tests")]
    import test_ext_fuzz as fz  # the fuzz test's generator, without hypothesis

    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            out.append(rng.randbytes(rng.randrange(1, 400)))
        elif kind == 1:
            out.append(json.dumps(rng.choice(fz.HOSTILE)).encode())
        else:
            out.append(fz._sample(rng))
    return out


def section_hostile(n: int) -> None:
    from extender.service import Service, ServiceConfig
    from extender.settings import DEFAULT_LOCALITY_KEYS

    resolve, DEFAULT_STRATEGIES = _scoring()

    bodies = hostile_bodies(n)
    print(f"## 1. Hostile bodies ({n} bodies x 2 endpoints x 2 modes, one keep-alive connection each)\n")
    print("| mode | requests | answers by status | 5xx | server RSS before -> after MiB |")
    print("|---|---|---|---|---|")
    for mode in ("stateless", "cached"):
        settings = settings_for(mode)

        def build(mode: str = mode, settings: Any = settings) -> Any:
            if mode == "cached":
                sys.path.insert(0, str(ROOT / "bench"))
                import bench_extender as be

                service = cached_service(be.build_nodes(50))
            else:
                config = ServiceConfig(prefix="gputopo.io/", locality_keys=DEFAULT_LOCALITY_KEYS,
                                       scorer=resolve(DEFAULT_STRATEGIES))
                service = Service(config)
            return app_for(service, max_body_bytes=getattr(settings, "body_limit", 8 << 20),
                           max_concurrent=getattr(settings, "concurrency_limit", 64))

        statuses: Counter[int] = Counter()
        with Server(build, settings) as srv:
            before = srv.rss
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            for body in bodies:
                for verb in ("/filter", "/prioritize"):
                    try:
                        conn.request("POST", verb, body=body, headers={"Content-Type": "application/json"})
                        resp = conn.getresponse()
                        resp.read()
                        statuses[resp.status] += 1
                        if (resp.getheader("Connection") or "").lower() == "close":
                            conn.close()
                            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
                    except (ConnectionError, http.client.HTTPException):
                        statuses[-1] += 1  # connection error (counted as a failure to answer)
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
            conn.close()
            after = srv.rss
        by = ", ".join(f"{'conn error' if s < 0 else s}: {c}" for s, c in sorted(statuses.items()))
        fivexx = sum(c for s, c in statuses.items() if s >= 500 or s < 0)
        print(f"| {mode} | {sum(statuses.values())} | {by} | {fivexx} | {before:.0f} -> {after:.0f} |", flush=True)
    print()


# -- section 2: 1,000 concurrent in-flight requests ------------------------------------------------------


async def _one(port: int, request: bytes) -> tuple[int, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    try:
        t = time.perf_counter()
        writer.write(request)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        return status, time.perf_counter() - t
    except (ConnectionError, asyncio.IncompleteReadError):
        return -1, 0.0
    finally:
        writer.close()


async def _storm(port: int, requests: list[bytes], health_samples: int) -> tuple[list[tuple[int, float]], list[float]]:
    health: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:
        req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        while not done.is_set() and len(health) < health_samples:
            status, dt = await _one(port, req)
            if status == 200:
                health.append(dt)
            await asyncio.sleep(0.01)

    prober = asyncio.create_task(probe())
    results = await asyncio.gather(*(_one(port, r) for r in requests))
    done.set()
    await prober
    return list(results), health


def http_request(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def section_concurrent(n_nodes: int, clients: int, rounds: int) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_extender as be


    nodes = be.build_nodes(n_nodes)
    names = [x["metadata"]["name"] for x in nodes]
    body = be.body(be.pod_obj(), None, names)
    requests = [http_request("/filter" if i % 2 else "/prioritize", body) for i in range(clients)]
    print(f"## 2. {clients} concurrent in-flight requests, cached mode, {n_nodes:,} nodes "
          f"(body {len(body) / 1e3:.0f} KB, half filter, half prioritize; {rounds} rounds)\n")
    print("| server | answers by status (all rounds) | 5xx | 200s p50 / p99 / max ms | /healthz during p50 / max ms | "
          "RSS MiB: start, after each round |")
    print("|---|---|---|---|---|---|")

    def floor_app() -> Any:
        return _floor_app()

    def extender_app(cap: int) -> Callable[[], Any]:
        def build() -> Any:
            service = cached_service(nodes)
            service.filter(body)  # warm, as a running extender is
            service.prioritize(body)
            return app_for(service, max_body_bytes=8 << 20, max_concurrent=cap)
        return build

    configs: list[tuple[str, Callable[[], Any], int]] = [("floor: decode only (same bodies, inline)", floor_app, 0)]
    if _hardened():
        configs += [("extender, default cap (64)", extender_app(64), 64),
                    ("extender, cap 1,024 (all admitted)", extender_app(1024), 1024)]
    else:
        configs += [("extender (this code has no concurrency cap)", extender_app(0), 0)]
    for label, build, _ in configs:
        settings = settings_for("cached", max_connections=4096)
        statuses: Counter[int] = Counter()
        lat: list[float] = []
        health: list[float] = []
        rss = []
        with Server(build, settings) as srv:
            rss.append(srv.rss)
            for _ in range(rounds):
                results, h = asyncio.run(_storm(srv.port, requests, 200))
                health += h
                for status, dt in results:
                    statuses[status] += 1
                    if status == 200:
                        lat.append(dt)
                rss.append(srv.rss)
        by = ", ".join(f"{'conn error' if s < 0 else s}: {c}" for s, c in sorted(statuses.items()))
        fivexx = sum(c for s, c in statuses.items() if s >= 500 or s < 0)
        print(f"| {label} | {by} | {fivexx} | {pct(lat, 50) * 1e3:.1f} / {pct(lat, 99) * 1e3:.1f} / "
              f"{max(lat, default=float('nan')) * 1e3:.1f} | {pct(health, 50) * 1e3:.1f} / "
              f"{max(health, default=float('nan')) * 1e3:.1f} | {', '.join(f'{r:.0f}' for r in rss)} |", flush=True)
    print()


def _floor_app() -> Any:
    """The floor: FastAPI on the same server config, reading the body and decoding it, nothing else."""
    import pydantic_core

    app = FastAPI()

    async def decode_only(request: Request) -> Response:
        pydantic_core.from_json(await request.body(), allow_inf_nan=False)
        return Response(b"[]", media_type="application/json")

    async def healthz() -> Response:
        return Response(b"ok\n")

    app.add_api_route("/filter", decode_only, methods=["POST"])
    app.add_api_route("/prioritize", decode_only, methods=["POST"])
    app.add_api_route("/healthz", healthz, methods=["GET"])
    return app


# -- section 3: relists ------------------------------------------------------------------------------------


def section_relist(n_nodes: int, reps: int, page_size: int) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import bench_extender as be

    nodes = be.build_nodes(n_nodes)
    names = [x["metadata"]["name"] for x in nodes]
    body = be.body(be.pod_obj(), None, names)
    def build() -> Any:
        from extender.cache import ClusterCache

        try:
            from extender.reflector import Reflector
        except ImportError:  # trees before the cache/reflector split (--before)
            from extender.cache import Reflector  # type: ignore[attr-defined,no-redef]

        service = cached_service(nodes)
        cache = ClusterCache(prefix="gputopo.io/", locality_keys=service.config.locality_keys,
                             registry=service.topologies, metrics=service.metrics)
        cache.replace_nodes(nodes)
        cache.replace_pods([])
        service.view = be._Synced(cache)  # type: ignore[assignment]
        service.view.facts = lambda name: cache.facts(name)  # type: ignore[attr-defined]  # follow swaps
        service.filter(body)
        app = app_for(service, max_body_bytes=8 << 20)
        relisting = threading.Event()
        relists = [0]
        durations: list[float] = []

        class Page:
            def __init__(self, data: bytes) -> None:
                self.data = data

            def release_conn(self) -> None:
                pass

        pages: dict[tuple[int, int], bytes] = {}

        def list_nodes(limit: int, _continue: str = "0", **_: Any) -> Page:
            """Pages of the real JSON bytes, as the API server would send them (serialised once, here)."""
            start = int(_continue or 0)
            if (start, limit) not in pages:
                meta: dict[str, Any] = {"resourceVersion": "1"}
                if start + limit < n_nodes:
                    meta["continue"] = str(start + limit)
                pages[start, limit] = json.dumps({"metadata": meta, "items": nodes[start:start + limit]}).encode()
            return Page(pages[start, limit])

        reflector = Reflector("nodes", list_nodes, cache.replace_nodes, cache.node_event,
                              stop=threading.Event(), metrics=service.metrics, page_size=page_size)
        reflector._list()  # serialise the pages once, before anything is measured

        def relist_loop() -> None:
            while True:
                relisting.wait()
                t = time.perf_counter()
                reflector._list()  # the real relist: paged decode, then the view rebuilt and swapped in
                durations.append(time.perf_counter() - t)
                relists[0] += 1

        threading.Thread(target=relist_loop, daemon=True).start()

        @app.post("/bench/relist/{on}")
        async def toggle(on: int) -> Response:
            (relisting.set if on else relisting.clear)()
            mean = sum(durations) / len(durations) if durations else 0.0
            return Response(f"{relists[0]} {mean}".encode())

        return app

    print(f"## 3. Requests during relists of {n_nodes:,} nodes (cached mode, list pages of {page_size}; {reps} "
          "sequential filter requests per phase, one keep-alive connection)\n")
    print("| phase | relists during the phase | filter p50 / p99 / max ms |")
    print("|---|---|---|")
    mean_relist = 0.0
    with Server(build, settings_for("cached")) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)

        def post(path: str, data: bytes = b"") -> tuple[int, bytes]:
            conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()

        for phase, on in (("idle", 0), ("relisting back to back", 1), ("idle again", 0)):
            start = int(post(f"/bench/relist/{on}")[1].split()[0])
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                status, _ = post("/filter", body)
                times.append(time.perf_counter() - t)
                assert status == 200
            end_s, mean_s = post("/bench/relist/0")[1].split()
            end, mean_relist = int(end_s), float(mean_s)
            print(f"| {phase} | {end - start} | {pct(times, 50) * 1e3:.1f} / {pct(times, 99) * 1e3:.1f} / "
                  f"{max(times) * 1e3:.1f} |", flush=True)
        conn.close()
    print(f"\nA relist of {n_nodes:,} nodes took {mean_relist:.2f} s on average (while serving).\n")


# -- section 4: bounds --------------------------------------------------------------------------------------


def _probe_in(tree: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import bench_reliability as b; "
            f"sys.path.insert(0, {str(tree)!r}); print(json.dumps(b.probe_bounds()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=tree,
                         check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def section_bounds(before: str | None) -> None:
    rows = [("this tree", _probe_in(ROOT))]
    if before:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", before], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            rows.insert(0, (f"before ({before})", _probe_in(Path(tmp))))
    print("## 4. Bounds (placement search, cpulist decoding)\n")
    print("| code | 24-GPU mesh k=12: time, steps, exact, bottleneck | 16-GPU mesh k=12: time, steps, exact | "
          "decode cpu_affinity '0-1000000': result, time, tracemalloc peak / held MiB | the same on 8 GPUs in one "
          "stateless request to a running extender: status, time, RSS MiB before -> after |")
    print("|---|---|---|---|---|")
    for label, r in rows:
        rss = r["served_rss"]
        print(f"| {label} | {r['mesh24_k12_s']:.3f} s, {r['mesh24_k12_steps']}, {r['mesh24_k12_exact']}, "
              f"{r['mesh24_k12_bottleneck']} | {r['mesh16_k12_s']:.3f} s, {r['mesh16_k12_steps']}, "
              f"{r['mesh16_k12_exact']} | {r['cpulist_result']}, {r['cpulist_s']:.3f} s, "
              f"{r['cpulist_peak_mib']:.1f} / {r['cpulist_held_mib']:.1f} | {r['served_status']}, "
              f"{r['served_s']:.2f} s ({r['served_body']} B body), {rss[0]:.0f} -> {rss[1]:.0f} |", flush=True)
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer bodies and rounds")
    ap.add_argument("--before", help="also run section 4 on this older commit (e.g. 7e72b74)")
    ap.add_argument("--sections", default="1,2,3,4")
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--page-size", type=int, default=500, help="section 3: the reflector's list page size")
    ap.add_argument("--before-sections", default="4",
                    help="with --before: sections to also run on the older commit (section 4 always compares)")
    ap.add_argument("--code", help=argparse.SUPPRESS)  # import extender/labeler from this tree (used by --before)
    args = ap.parse_args(argv)
    if args.code:  # bind the packages to that tree now: helpers imported later put this tree first again
        sys.path.insert(0, args.code)
        import extender
        import labeler

        assert Path(extender.__file__).parent.parent == Path(args.code), extender.__file__
        assert Path(labeler.__file__).parent.parent == Path(args.code), labeler.__file__
    import logging

    logging.disable(logging.WARNING)
    sections = {int(s) for s in args.sections.split(",")}
    print(f"machine: {platform.machine()} | CPUs: {os.cpu_count()} | Python {platform.python_version()} | "
          f"{platform.platform()} | load average {os.getloadavg()[0]:.1f}\n")
    if 1 in sections:
        section_hostile(200 if args.quick else 1000)
    if 2 in sections:
        section_concurrent(args.nodes, args.clients, 2 if args.quick else 4)
    if 3 in sections:
        section_relist(args.nodes, 50 if args.quick else 300, args.page_size)
    if 4 in sections:
        section_bounds(args.before)
    again = sorted({int(x) for x in args.before_sections.split(",")} & sections - {4})
    if args.before and again:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            print(f"# The same sections on the code of {args.before} (before)\n", flush=True)
            rest = ["--sections", ",".join(map(str, again)), "--code", tmp, "--nodes", str(args.nodes),
                    "--clients", str(args.clients), "--page-size", str(args.page_size)]
            subprocess.run([sys.executable, __file__, *rest, *(["--quick"] if args.quick else [])], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
