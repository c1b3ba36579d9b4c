"""Section 4 of bench/bench_reliability.py: placement search and cpulist bounds, also on an older tree.

:func:`probe_bounds` runs in a subprocess whose ``sys.path`` puts the tree under test first
(``--before``: an older commit unpacked by ``git archive``).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_server import PROTOCOL, ROOT, Server, _scoring, app_for, settings_for

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


# -- section 4: bounds --------------------------------------------------------------------------------------


def _probe_in(tree: Path) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import reliability_bounds as b; "
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
