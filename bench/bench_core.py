"""Benchmark the pure core: parse time and placement-math throughput.

Prints figures; asserts nothing (speed is measured here, never inside unit tests).
Run: `make bench` or `.venv/bin/python bench/bench_core.py`. Results: docs/performance.md.
"""

from __future__ import annotations

import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "topology"))

import factories  # noqa: E402

from labeler.topology import smi_parser  # noqa: E402
from labeler.topology.placement import Placer  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "topo-corpus"


def bench_parse() -> None:
    files = sorted(CORPUS.glob("*.txt"), key=lambda p: p.stat().st_size, reverse=True)
    largest = files[0]
    text = largest.read_text()
    runs = []
    for _ in range(200):
        t0 = time.perf_counter()
        smi_parser.parse(text)
        runs.append(time.perf_counter() - t0)
    print(
        f"parse largest corpus file {largest.name} ({len(text)} bytes): "
        f"median {statistics.median(runs) * 1e3:.3f} ms, p99 {sorted(runs)[197] * 1e3:.3f} ms"
    )
    t0 = time.perf_counter()
    ok = err = 0
    for f in files:
        try:
            smi_parser.parse(f.read_text())
            ok += 1
        except Exception:
            err += 1
    print(
        f"parse whole corpus ({len(files)} files, {ok} parsed, {err} errors): {(time.perf_counter() - t0) * 1e3:.1f} ms"
    )


def bench_placement(name: str, topo_factory, n: int, calls: int = 20000) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(42)
    queries = []
    for _ in range(calls):
        free = [g for g in range(n) if rng.random() < 0.6]
        k = rng.choice([1, 2, 4, 8])
        queries.append((free, k))
    distinct = len({(tuple(f), k) for f, k in queries})
    # cold: a fresh placer, every distinct free-set computed once (cache misses dominate)
    placer = Placer(topo_factory())
    t0 = time.perf_counter()
    for free, k in queries:
        placer.best(free, k)
    cold = time.perf_counter() - t0
    # warm: the same queries again, answered from the bitmask memo
    t0 = time.perf_counter()
    for free, k in queries:
        placer.best(free, k)
    warm = time.perf_counter() - t0
    # uncached: every call solves from scratch (worst case, distinct free sets every call)
    sample = queries[:2000]
    t0 = time.perf_counter()
    for free, k in sample:
        Placer._solve(placer, placer.mask(free), k)
    raw = time.perf_counter() - t0
    print(
        f"placement {name:<28} {n:>2} GPUs: uncached {len(sample) / raw:>9,.0f} calls/s | "
        f"first pass {calls / cold:>9,.0f} calls/s ({distinct} distinct) | cached {calls / warm:>10,.0f} calls/s"
    )


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu'}")
    bench_parse()
    bench_placement("dgx1-v100 (cube-mesh)", factories.dgx1_v100, 8)
    bench_placement("l40s-class 4 switches", factories.pcie_8x_4switch_2socket, 8)
    bench_placement("hgx-h100 nvswitch", factories.hgx_h100_nv18, 8)
    bench_placement("16x nvswitch", factories.nvswitch_16x, 16)
    bench_placement("16x pcie 8 switches", factories.pcie_16x_8switch, 16)


if __name__ == "__main__":
    main()
