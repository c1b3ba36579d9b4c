"""Section 3 of bench/bench_reliability.py: request latency while the cache relists."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fastapi.responses import Response  # the route annotations must resolve in this module
from reliability_server import ROOT, Server, app_for, cached_service, pct, settings_for

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
