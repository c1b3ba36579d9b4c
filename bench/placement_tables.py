"""Every table of docs/placement.md, "The objective": the same runs, all four policies, the alternatives.

    .venv/bin/python bench/placement_tables.py [--seeds 42..51] [--trace DIR] [--before DIR] [--fresh]

Runs ``gputopo simulate``'s runner in process, one configuration at a time, on the bundled synthetic mix
and, when the Alibaba openb trace is found (``--trace``, else ``simulator.trace.find_trace_dir()``), on its
default and multigpu50 lists with GPU sharing and with whole GPUs. Each run's JSON (the ``--json`` object of
the same ``gputopo simulate`` command, printed next to each table) is kept in ``out/placement/`` and
reused unless ``--fresh``. ``--before DIR``: a source tree of an older commit (``git archive REF | tar -x -C
DIR``) whose gputopo policy is run the same way, as a "gputopo before" row. Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policy.scoring import DEFAULT_STRATEGIES  # noqa: E402
from simulator import fleet, report, runner, trace  # noqa: E402
from simulator.cli import parse_seeds  # noqa: E402
from simulator.kubesched import DEFAULT_SCHEDULER_CONFIG, load_scheduler_config  # noqa: E402
from simulator.policies import POLICIES  # noqa: E402
from simulator.scenario import DEMO_SCENARIO, load_scenario  # noqa: E402

EXAMPLES = ROOT / "examples" / "scheduler"
TRACE_DIR = "../shared/traces/alibaba-gpu-v2023"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    pod_list: str | None  # None: the synthetic mix
    sharing: bool = True

    def flags(self) -> str:
        if self.pod_list is None:
            return ""
        return f" --trace {TRACE_DIR} --pod-list {self.pod_list}" + ("" if self.sharing else " --whole-gpus")


WORKLOADS = (
    Workload("synthetic", "synthetic mix (PyTorchJob + vLLM on seven real 8-GPU boards)", None),
    Workload("default-share", "openb default list, GPU sharing", "default"),
    Workload("default-whole", "openb default list, whole GPUs", "default", sharing=False),
    Workload("mg50-share", "openb multigpu50 list, GPU sharing", "multigpu50"),
    Workload("mg50-whole", "openb multigpu50 list, whole GPUs", "multigpu50", sharing=False),
)


@dataclass(frozen=True)
class Variant:
    key: str
    title: str
    policies: tuple[str, ...] = ("gputopo",)
    config: str | None = None  # examples/scheduler/<file>; None: the shipped one
    without: tuple[str, ...] = ()  # strategies switched off
    gpu_choice: str = "device-plugin"

    def strategies(self) -> list[str]:
        return [s for s in DEFAULT_STRATEGIES if s not in self.without]

    def flags(self) -> str:
        out = "" if self.policies == tuple(POLICIES) else f" --policies {','.join(self.policies)}"
        if self.config:
            out += f" --scheduler-config examples/scheduler/{self.config}"
        if self.without:
            out += f" --strategy {','.join(self.strategies())}"
        if self.gpu_choice != "device-plugin":
            out += f" --gpu-choice {self.gpu_choice}"
        return out


SHIPPED = Variant("shipped", "as shipped", tuple(POLICIES))
BLIND = Variant("blind", "a topology-blind device plugin", ("gputopo", "default"), gpu_choice="blind")
ALTERNATIVES = (
    Variant("no-island", "no island term", without=("island",)),
    Variant("abstain-1gpu", "1-GPU pods: no score (abstain)", without=("free_value",)),
    Variant("gpu-pods-only", "only GPU pods reach the extender (managedResources nvidia.com/gpu)",
            config="gpu-pods-only.yaml"),
    Variant("least-allocated", "kube-scheduler's default scoring (LeastAllocated)", config="least-allocated.yaml"),
    Variant("least-allocated-no-island", "LeastAllocated, no island term", config="least-allocated.yaml",
            without=("island",)),
    Variant("weight-5", "extender weight 5", config="weight-5.yaml"),
)


def run(w: Workload, v: Variant, seeds: list[int], trace_dir: Path | None, out: Path, fresh: bool) -> dict[str, Any]:
    path = out / f"{v.key}.{w.key}.json"
    if path.is_file() and not fresh:
        doc: dict[str, Any] = json.loads(path.read_text())
        if doc["scenario"]["seeds"] == seeds:
            return doc
    cfg = load_scheduler_config(EXAMPLES / v.config if v.config else DEFAULT_SCHEDULER_CONFIG)
    search = fleet.search_path()
    if w.pod_list is None:
        setup = runner.synthetic_setup(load_scenario(DEMO_SCENARIO, search))
    else:
        assert trace_dir is not None
        setup = runner.trace_setup(trace_dir, w.pod_list, search, sharing=w.sharing)
    started = time.perf_counter()
    res = runner.simulate(setup, policies=list(v.policies), seeds=seeds, config=cfg,
                          whole_choice=v.gpu_choice, strategies=v.strategies())  # type: ignore[arg-type]
    doc = report.jsonable(res)
    path.write_text(json.dumps(doc))
    print(f"  ran {v.key} on {w.key}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return doc


def run_before(tree: Path, w: Workload, seeds: list[int], trace_dir: Path | None, out: Path, fresh: bool
               ) -> dict[str, Any]:
    """The gputopo policy of an older source tree, through its own CLI (its shipped configuration)."""
    path = out / f"before.{w.key}.json"
    if path.is_file() and not fresh:
        doc: dict[str, Any] = json.loads(path.read_text())
        if doc["scenario"]["seeds"] == seeds:
            return doc
    args = ["simulate", "--policies", "gputopo", "--seeds", ",".join(map(str, seeds)), "--json", "--no-progress"]
    if w.pod_list is not None:
        assert trace_dir is not None
        args += ["--trace", str(trace_dir), "--pod-list", w.pod_list] + ([] if w.sharing else ["--whole-gpus"])
    code = "import sys; from gputopo.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=tree, check=True, capture_output=True,
                          text=True)
    path.write_text(done.stdout)
    return dict(json.loads(done.stdout))


# -- rendering ----------------------------------------------------------------------------------------------------
COLS = (*report.COLUMNS, ("dp_worse_pct", "in-node worse %", False))


def cell(m: dict[str, Any], key: str, sd: bool = True) -> str:
    v = m.get(key)
    if v is None:
        return "–"
    s = m.get("std", {}).get(key)
    return f"{v:.2f}" + (f" ± {s:.2f}" if sd and s is not None else "")


def main_table(w: Workload, shipped: dict[str, Any], before: dict[str, Any] | None, seeds: str) -> str:
    lines = [f"**{w.title}** (`gputopo simulate{w.flags()} --seeds {seeds}`)", "",
             "| policy | " + " | ".join(t for _, t, _ in COLS) + " |", "|---|" + "---:|" * len(COLS)]
    rows = list(shipped["policies"].items())
    if before is not None:
        rows.insert(1, ("gputopo before", before["policies"]["gputopo"]))
    for name, m in rows:
        shown = f"**{name}**" if name == "gputopo" else name
        # an older tree counts x-socket by any SYS pair, not by NUMA (numa.crosses): not comparable, not shown
        lines.append(f"| {shown} | " + " | ".join("–" if name == "gputopo before" and k == "cross_socket_pct"
                                                  else cell(m, k) for k, _, _ in COLS) + " |")
    return "\n".join(lines) + "\n"


def by_kind(w: Workload, shipped: dict[str, Any], seeds: str) -> str:
    """Per pod kind: aligned % / bw-aligned % / ring GB/s / failed pods per seed, for every policy."""
    pols = list(shipped["policies"])
    kinds = shipped["policies"][pols[0]]["by_kind"]
    lines = [f"Per pod kind, {w.title} (`gputopo simulate{w.flags()} --seeds {seeds} --by-kind`; aligned % / "
             "bw-aligned % / ring GB/s / failed pods per seed):", "",
             "| kind | pods/seed | " + " | ".join(pols) + " |", "|---|---:|" + "---|" * len(pols)]

    def num(v: Any, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    for kind, row in kinds.items():
        cells = []
        for pol in pols:
            k = shipped["policies"][pol]["by_kind"].get(kind, {})
            cells.append(" / ".join((num(k.get("aligned_pct"), ".0f"), num(k.get("bw_aligned_pct"), ".0f"),
                                     num(k.get("busbw_gbps"), ".0f"), num(k.get("failed_pods"), ".1f"))))
        lines.append(f"| {kind} | {row['pods']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def targets(results: dict[str, dict[str, Any]]) -> str:
    lines = ["| workload | aligned % (≥ 95) | unalloc. − BestFit (≤ +1 point) | other targets | met |",
             "|---|---:|---:|---|---|"]
    for w in WORKLOADS:
        if w.key not in results:
            continue
        p = results[w.key]["policies"]
        g, b, d = p["gputopo"], p["bestfit"], p["default"]
        gap = g["unallocated_gpu_pct"] - b["unallocated_gpu_pct"]
        ok = g["aligned_pct"] >= 95 and gap <= 1
        other = "–"
        if w.pod_list is None:
            others = [k for k in ("default", "bestfit", "random")]
            best_other = max(p[k]["busbw_per_gpu_gbps"] for k in others)
            plus = g["aligned_pct"] - d["aligned_pct"]
            plus_bw = g["bw_aligned_pct"] - d["bw_aligned_pct"]
            other = (f"aligned − default **{plus:+.1f}** (≥ +30; bw-aligned {plus_bw:+.1f}); GB/s per GPU "
                     f"{g['busbw_per_gpu_gbps']:.1f} vs best other {best_other:.1f}")
            ok = ok and plus >= 30 and g["busbw_per_gpu_gbps"] > best_other
        lines.append(f"| {w.title} | {g['aligned_pct']:.2f} | {gap:+.2f} | {other} | {'yes' if ok else '**no**'} |")
    return "\n".join(lines) + "\n"


def alternatives(results: dict[str, dict[str, dict[str, Any]]], keys: Sequence[str]) -> str:
    trace_keys = [w for w in WORKLOADS if w.key in keys and w.pod_list is not None]
    head = ["variant", "`gputopo simulate` flags", *(f"unalloc. % {w.key}" for w in WORKLOADS if w.key in keys),
            "synthetic aligned %", "synthetic bw-aligned %", "synthetic GB/s per GPU"]
    if trace_keys:
        head.append("traces: lowest aligned %")
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for v in (SHIPPED, *ALTERNATIVES):
        r = results[v.key]
        g = {k: r[k]["policies"]["gputopo"] for k in keys}
        cells = [v.title, f"`{v.flags().strip() or '(none)'}`" if v is not SHIPPED else "(none)"]
        cells += [cell(g[w.key], "unallocated_gpu_pct", sd=False) for w in WORKLOADS if w.key in keys]
        cells += [cell(g["synthetic"], k, sd=False) for k in ("aligned_pct", "bw_aligned_pct", "busbw_per_gpu_gbps")]
        if trace_keys:
            cells.append(f"{min(g[w.key]['aligned_pct'] for w in trace_keys):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def dp_gap(shipped: dict[str, dict[str, Any]], blind: dict[str, dict[str, Any]]) -> str:
    lines = ["| workload | gputopo: NVIDIA plugin | default: NVIDIA plugin | gputopo: blind plugin | default: blind "
             "plugin | where (gputopo, blind plugin: % of that machine's multi-GPU pods, got/scored) |",
             "|---|---:|---:|---:|---:|---|"]
    for w in WORKLOADS:
        if w.key not in shipped:
            continue
        s, b = shipped[w.key]["policies"], blind[w.key]["policies"]
        where = [f"{t[:3]} {row['worse_pct']:.1f} % ({row['ratio_when_worse']:.2f}×)"
                 for t, row in b["gputopo"]["dp_gap_by_topology"].items() if row["worse_pct"]]
        lines.append(f"| {w.key} | {cell(s['gputopo'], 'dp_worse_pct')} | {cell(s['default'], 'dp_worse_pct')} | "
                     f"{cell(b['gputopo'], 'dp_worse_pct')} | {cell(b['default'], 'dp_worse_pct')} | "
                     f"{', '.join(where) or '–'} |")
    nvidia = [(w.key, t, row) for w in WORKLOADS if w.key in shipped
              for p in ("gputopo", "default")
              for t, row in shipped[w.key]["policies"][p]["dp_gap_by_topology"].items() if row["worse_pct"]
              if p == "default"]
    extra = "".join(f"\n- default on {k}: {t[:3]} {row['worse_pct']:.1f} % of its multi-GPU pods "
                    f"({row['ratio_when_worse']:.2f}× the scored set)" for k, t, row in nvidia)
    return "\n".join(lines) + "\n" + (extra + "\n" if extra else "")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=parse_seeds, default=list(range(42, 52)))
    ap.add_argument("--trace", type=Path, default=None)
    ap.add_argument("--before", type=Path, default=None, help="source tree of an older commit (a 'before' row)")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "placement")
    ap.add_argument("--fresh", action="store_true", help="rerun even where a cached result exists")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    trace_dir = a.trace or trace.find_trace_dir()
    keys = [w.key for w in WORKLOADS if w.pod_list is None or trace_dir is not None]
    seeds = a.seeds
    shown = f"{seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for v in (SHIPPED, BLIND, *ALTERNATIVES):
        results[v.key] = {w.key: run(w, v, seeds, trace_dir, a.out, a.fresh) for w in WORKLOADS if w.key in keys}
    before = ({w.key: run_before(a.before, w, seeds, trace_dir, a.out, a.fresh) for w in WORKLOADS if w.key in keys}
              if a.before else {})
    print("## Main tables\n")
    for w in WORKLOADS:
        if w.key in keys:
            print(main_table(w, results["shipped"][w.key], before.get(w.key), shown))
            if w.key in ("synthetic", "mg50-whole"):
                print(by_kind(w, results["shipped"][w.key], shown))
    print("## Targets\n")
    print(targets(results["shipped"]))
    print("## Alternatives (gputopo policy only)\n")
    print(alternatives(results, keys))
    print("## Device-plugin gap (in-node worse %)\n")
    print(dp_gap(results["shipped"], results["blind"]))
    print(f"run seconds: {sum(r['run_seconds'] for v in results.values() for r in v.values()):.0f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
