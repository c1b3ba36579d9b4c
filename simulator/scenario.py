"""A synthetic scenario file: the fleet (real topologies × counts, CPU, memory) and the workload mix.

YAML, validated here (a bad value is a :class:`~simulator.errors.ScenarioError`
naming the field). The bundled default is ``simulator/scenarios/demo.yaml``::

    name: demo
    fleet:
      - {topology: 005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt, count: 8, cpu: 48, memory: 512Gi, model: V100}
    workload:
      target_gpu_pct: 130
      pytorchjob: {weight: 1, workers: [2, 4], gpus_per_worker: [2, 4, 8], cpu_per_gpu: 5, memory_gib_per_gpu: 48}
      vllm: {weight: 1, tp: {1: 4, 2: 3, 4: 2, 8: 1}, cpu_per_gpu: 4, memory_gib_per_gpu: 32}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labeler.topology import limits
from simulator.errors import ScenarioError
from simulator.fleet import load_topology
from simulator.model import NodeSpec
from simulator.synthetic import JobMix, ServeMix, SyntheticWorkload

__all__ = ["DEMO_SCENARIO", "Scenario", "load_scenario", "parse_memory_mib"]

DEMO_SCENARIO = Path(__file__).parent / "scenarios" / "demo.yaml"
_MAX_NODES = limits.MAX_SCENARIO_NODES  # labeler.topology.limits, with the reason
_MEM = re.compile(r"^(\d+)(Mi|Gi|Ti)?$")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    nodes: tuple[NodeSpec, ...]
    workload: SyntheticWorkload
    source: str


def parse_memory_mib(value: Any, where: str) -> int:
    """``512Gi`` / ``1Ti`` / ``4096Mi`` / a plain MiB integer."""
    m = _MEM.match(str(value).strip())
    if not m:
        raise ScenarioError(f"{where}: memory {value!r} is not <n>Mi|Gi|Ti")
    n = int(m.group(1))
    return n * {None: 1, "Mi": 1, "Gi": 1024, "Ti": 1024 * 1024}[m.group(2)]


def _num(doc: Mapping[str, Any], key: str, where: str, default: float, lo: float, hi: float) -> float:
    v = doc.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise ScenarioError(f"{where}.{key}: {v!r} is not a number in {lo}..{hi}")
    return float(v)


def _ints(doc: Mapping[str, Any], key: str, where: str, default: Sequence[int]) -> tuple[int, ...]:
    v = doc.get(key, list(default))
    if not isinstance(v, list) or not v or not all(isinstance(x, int) and 1 <= x <= 64 for x in v):
        raise ScenarioError(f"{where}.{key}: {v!r} is not a list of integers 1..64")
    return tuple(v)


def _workload(doc: Any) -> SyntheticWorkload:
    if not isinstance(doc, dict):
        raise ScenarioError("workload: must be a mapping")
    jobs = serve = None
    if (j := doc.get("pytorchjob")) is not None:
        if not isinstance(j, dict):
            raise ScenarioError("workload.pytorchjob: must be a mapping")
        jobs = JobMix(_num(j, "weight", "workload.pytorchjob", 1, 0, 1e6),
                      _ints(j, "workers", "workload.pytorchjob", (2, 4)),
                      _ints(j, "gpus_per_worker", "workload.pytorchjob", (2, 4, 8)),
                      _num(j, "cpu_per_gpu", "workload.pytorchjob", 5, 0, 1024),
                      _num(j, "memory_gib_per_gpu", "workload.pytorchjob", 48, 0, 1 << 16))
    if (v := doc.get("vllm")) is not None:
        if not isinstance(v, dict):
            raise ScenarioError("workload.vllm: must be a mapping")
        tp = v.get("tp", {1: 1, 2: 1, 4: 1, 8: 1})
        if not isinstance(tp, dict) or not tp or not all(
            isinstance(k, int) and 1 <= k <= 64 and isinstance(w, int | float) and w >= 0 for k, w in tp.items()
        ) or sum(tp.values()) <= 0:
            raise ScenarioError(f"workload.vllm.tp: {tp!r} is not a mapping of TP size to weight")
        serve = ServeMix(_num(v, "weight", "workload.vllm", 1, 0, 1e6), {int(k): float(w) for k, w in tp.items()},
                         _num(v, "cpu_per_gpu", "workload.vllm", 4, 0, 1024),
                         _num(v, "memory_gib_per_gpu", "workload.vllm", 32, 0, 1 << 16))
    if jobs is None and serve is None:
        raise ScenarioError("workload: needs pytorchjob and/or vllm")
    return SyntheticWorkload(
        jobs=jobs,
        serve=serve,
        target_gpu_pct=_num(doc, "target_gpu_pct", "workload", 130, 1, 1000),
        required_share=_num(doc, "required_share", "workload", 0, 0, 1),
        load=_num(doc, "load", "workload", 0.9, 0.01, 10),
        mean_lifetime_s=_num(doc, "mean_lifetime_s", "workload", 3600, 1, 1e9),
    )


def load_scenario(path: str | Path, search: Sequence[Path]) -> Scenario:
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ScenarioError(f"scenario {p}: {err}") from None
    if not isinstance(doc, dict):
        raise ScenarioError(f"scenario {p}: must be a mapping with fleet and workload")
    fleet = doc.get("fleet")
    if not isinstance(fleet, list) or not fleet:
        raise ScenarioError(f"scenario {p}: fleet must be a non-empty list")
    nodes: list[NodeSpec] = []
    for i, entry in enumerate(fleet):
        where = f"fleet[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("topology"), str):
            raise ScenarioError(f"{where}: needs a topology file name")
        topo = load_topology(entry["topology"], search)
        count = entry.get("count", 1)
        if not isinstance(count, int) or not 1 <= count <= _MAX_NODES:
            raise ScenarioError(f"{where}.count: {count!r} is not 1..{_MAX_NODES}")
        cpu = _num(entry, "cpu", where, 64, 1, 100_000)
        mem = parse_memory_mib(entry.get("memory", "512Gi"), where)
        model = str(entry.get("model", Path(entry["topology"]).stem))
        extra = entry.get("labels") or {}
        if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
            raise ScenarioError(f"{where}.labels: must map strings to strings")
        stem = Path(entry["topology"]).stem.split("_")[0]
        for n in range(count):
            nodes.append(NodeSpec(f"{stem}-{i}-{n:03d}", topo, int(cpu * 1000), mem, model, dict(extra)))
        if len(nodes) > _MAX_NODES:
            raise ScenarioError(f"scenario {p}: more than {_MAX_NODES} nodes")
    return Scenario(
        name=str(doc.get("name", p.stem)),
        description=str(doc.get("description", "")),
        nodes=tuple(nodes),
        workload=_workload(doc.get("workload")),
        source=str(p),
    )
