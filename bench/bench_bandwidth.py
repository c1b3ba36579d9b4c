"""Benchmark the bandwidth model beside its floor, the placer's ring search, in one run.

The extender will ask for one prediction per (node topology, free set, k); the floor is
what it already pays for that question today: ``Placer.best`` on the same set. "memo miss"
clears the model's memo and the (process-wide) placer's memo before every call, so each
call solves, ring search included; the per-topology pair values stay warm, as they would
in a process that has seen the node before. "memo hit" answers from the model's memo.
Prints figures; asserts nothing. Run: `.venv/bin/python bench/bench_bandwidth.py`.
Results: docs/bandwidth.md ("Speed").
"""

from __future__ import annotations

import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "topology"))

import bw_machines as m  # noqa: E402
import factories  # noqa: E402

from labeler.topology.busbw import BandwidthModel  # noqa: E402
from labeler.topology.model import P2P, Topology  # noqa: E402
from labeler.topology.placement import Placer, placer_for  # noqa: E402


def _median_us(fn: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs) * 1e6


def bench(name: str, topo: Topology, calls: int = 300) -> None:
    rng = random.Random(7)
    n = len(topo.gpus)
    sets = []
    for _ in range(calls):
        k = rng.choice([k for k in (2, 4, 8, 16) if k <= n])
        sets.append(sorted(rng.sample(range(n), k)))
    placer = Placer(topo)
    model = BandwidthModel(topo)

    def floor() -> None:
        for s in sets:
            placer._cache.clear()
            placer.best(s, len(s))

    shared = placer_for(topo)

    def uncached() -> None:
        for s in sets:
            model._cache.clear()
            shared._cache.clear()
            assert model.predict(s) is not None

    def uncached_multi() -> None:
        for s in sets:
            model._cache.clear()
            shared._cache.clear()
            model.predict(s, multi_node=True)

    def cached() -> None:
        for s in sets:
            model.predict(s)

    def build() -> None:
        BandwidthModel(topo)

    cached()  # fill the memo
    per = 1.0 / calls
    miss, miss_multi = _median_us(uncached, 7) * per, _median_us(uncached_multi, 7) * per
    print(
        f"{name:<34} {n:>2} GPUs: floor placer.best {_median_us(floor, 7) * per:7.1f} us | "
        f"predict memo miss {miss:7.1f} us | multi-node {miss_multi:7.1f} us | "
        f"memo hit {_median_us(cached, 7) * per:5.2f} us | new model {_median_us(build, 50):6.1f} us"
    )


def main() -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu'}")
    bench("hgx-h100 nvswitch (facts)", m.with_facts(factories.hgx_h100_nv18(), m.HOPPER, m.GEN5_X16, p2p=P2P.OK))
    bench("dgx1-v100 cube-mesh (facts)", m.with_facts(factories.dgx1_v100(), m.VOLTA, m.GEN3_X16, p2p=P2P.OK))
    bench("l40s-class 4 switches + 4 NICs", m.with_facts(factories.pcie_8x_4switch_2socket(), m.ADA, m.GEN4_X16,
                                                          p2p=P2P.OK, nic_mbps=200_000))
    bench("rtx-3090 bridge pairs, 2 sockets", m.with_facts(factories.nvlink_bridge_pairs_8x(), m.AMPERE_GA102,
                                                           m.GEN4_X16, p2p=P2P.OK))
    bench("16x nvswitch (text only)", factories.nvswitch_16x())
    bench("16x pcie 8 switches (text only)", factories.pcie_16x_8switch())


if __name__ == "__main__":
    main()
