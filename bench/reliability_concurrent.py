"""Section 2 of bench/bench_reliability.py: 1,000 concurrent requests against a floor."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastapi import FastAPI, Request
from fastapi.responses import Response
from reliability_server import (
    ROOT,
    Server,
    _hardened,
    app_for,
    cached_service,
    http_request,
    pct,
    settings_for,
)

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
