"""The device-plugin gap over every free state of the corpus machines: how often the GPUs kubelet hands out
predict less than the set gputopo scored.

    .venv/bin/python bench/dp_gap.py [--orders 8] [--seed 1]

gputopo scores a node by its best free k-set by predicted NCCL busbw (docs/extender.md, "Prioritize");
kubelet and the device plugin then pick the k GPUs (``policy.device_plugin``: NVIDIA's device plugin,
go-gpuallocator's best effort, over kubelet's unordered offer). For every corpus machine with 2..8 GPUs,
every free set F and every pod size k in {2, 3, 4, 6} with k < |F| (with |F| = k there is no choice), the
pick is made under ``--orders`` random offer orders and its prediction (``policy.bandwidth``) compared with
the scored set's (``policy.bandwidth.best_free_busbw``); worse means below 0.999 × (predictions are rounded
to 1 MB/s). Also: a topology-blind plugin (no GetPreferredAllocation) and kubelet refusing the pod (the
device plugin's padded-set crash). Every (F, k, order) weighs the same: the gap over all states a node can be
in, not over the states a workload produces (``gputopo simulate``'s "in-node worse %" column gives those).
docs/placement.md, "The device-plugin gap", shows the output.
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labeler.topology import smi_parser  # noqa: E402
from labeler.topology.errors import TopologyParseError  # noqa: E402
from labeler.topology.model import Topology  # noqa: E402
from policy import bandwidth, device_plugin  # noqa: E402

CORPUS = ROOT / "tests" / "fixtures" / "topo-corpus"
SIZES = (2, 3, 4, 6)
WORSE = 0.999


def machine(topo: Topology, orders: int, rng: random.Random) -> tuple[dict[str, float], dict[int, list[int]]]:
    """Counts for one machine (cases, best effort worse than scored and the sum of got/scored then, blind worse,
    refused) and per pod size k: [cases, worse, refused]."""
    n, idx = len(topo.gpus), topo.gpu_indices
    out = {"cases": 0, "worse": 0, "ratio": 0.0, "blind": 0, "refused": 0}
    by_k: dict[int, list[int]] = {}
    for k in (s for s in SIZES if s < n):
        for r in range(k + 1, n + 1):
            for free in itertools.combinations(range(n), r):
                scored = bandwidth.best_free_busbw(topo, sum(1 << p for p in free), k)
                assert scored is not None
                avail = [idx[p] for p in free]
                row = by_k.setdefault(k, [0, 0, 0])
                for _ in range(orders):
                    seed = rng.random()
                    out["cases"] += 1
                    row[0] += 1
                    try:
                        got = device_plugin.choose(topo, avail, k, rng=random.Random(seed))
                    except device_plugin.DeviceAdmissionError:
                        out["refused"] += 1
                        row[2] += 1
                        continue
                    g = bandwidth.expected_busbw(topo, got) or 0.0
                    if g < scored * WORSE:
                        out["worse"] += 1
                        out["ratio"] += g / scored
                        row[1] += 1
                    blind = device_plugin.choose(topo, avail, k, policy=device_plugin.BLIND, rng=random.Random(seed))
                    out["blind"] += (bandwidth.expected_busbw(topo, blind) or 0.0) < scored * WORSE
    return out, by_k


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=8, help="random offer orders per (free set, k) (default: 8)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rows: list[str] = []
    quiet: list[str] = []
    total = {"cases": 0, "worse": 0, "blind": 0, "refused": 0}
    for f in sorted(CORPUS.glob("*.txt")):
        try:
            topo = smi_parser.parse(f.read_text(encoding="utf-8", errors="replace"), source=f.name)
        except TopologyParseError:
            continue
        if not 2 <= len(topo.gpus) <= 8:
            continue
        c, by_k = machine(topo, a.orders, random.Random(a.seed))
        if not c["cases"]:  # two GPUs: a pod of 2 takes both, no choice
            continue
        for key in total:
            total[key] += int(c[key])
        if not (c["worse"] or c["refused"]):
            quiet.append(f"{f.stem[:3]} ({100 * c['blind'] / c['cases']:.0f} %)")
            continue
        cases = c["cases"]
        worst = max(by_k.items(), key=lambda kv: (kv[1][1] + kv[1][2]) / kv[1][0])
        k, (kc, kw, kr) = worst
        ratio = f"{c['ratio'] / c['worse']:.2f}×" if c["worse"] else "–"
        rows.append(f"| {f.stem[:52]} | {len(topo.gpus)} | {cases} | {100 * c['worse'] / cases:.1f} | {ratio} | "
                    f"{100 * c['blind'] / cases:.1f} | {100 * c['refused'] / cases:.2f} | "
                    f"k={k}: {100 * kw / kc:.1f} % worse, {100 * kr / kc:.1f} % refused |")
    print("| machine | GPUs | cases | best effort < scored set % | got / scored when worse | blind < scored % "
          "| kubelet refuses % | worst pod size |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    c = total["cases"]
    print(f"| **all {len(rows) + len(quiet)} machines** | | {c} | {100 * total['worse'] / c:.2f} | | "
          f"{100 * total['blind'] / c:.1f} | {100 * total['refused'] / c:.2f} | |")
    print(f"\nNever worse, never refused ({len(quiet)}; blind < scored % in brackets): {', '.join(quiet)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
