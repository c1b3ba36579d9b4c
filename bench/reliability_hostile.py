"""Section 1 of bench/bench_reliability.py: random and hostile bodies at /filter and /prioritize."""

from __future__ import annotations

import http.client
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_server import ROOT, Server, _scoring, app_for, cached_service, settings_for

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
