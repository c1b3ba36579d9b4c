"""The Alibaba openb trace (``cluster-trace-gpu-v2023``): node and pod lists, and FGD's replay.

The CSVs are untrusted input: every row is checked (columns present, integers
in range, ``num_gpu``/``gpu_milli`` consistent as the trace README documents)
and a bad row is a :class:`~simulator.errors.TraceError` naming the file and
line, never a guess. Files are read with a size limit.

FGD's replay (``hkust-adsl/kubernetes-scheduler-simulator``, read at ``8f3d641``:
``SetWorkloadPods``, ``SortClusterPods``, ``TunePodsByNodeTotalResource``):
pods sorted by name are shuffled with the run's seed, then pods drawn uniformly
with replacement from the same sorted list are appended until the GPU request
reaches ``tune`` (1.3) × the cluster's GPU capacity; every pod stays (no
departures). FGD's stop test compares the running total plus the drawn pod's
*per-GPU* milli, not its total, against the target (so an 8-GPU draw can
overshoot by up to 7 GPUs); we keep that quirk so the workload matches theirs.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from labeler.topology import limits
from simulator.errors import TraceError
from simulator.model import MILLI, PodSpec

__all__ = [
    "NODE_LIST",
    "SHARED_TRACE_DIR",
    "TRACE_DIR_ENV",
    "TraceNode",
    "TracePod",
    "fgd_workload",
    "find_trace_dir",
    "pod_kind",
    "pod_list_path",
    "read_nodes",
    "read_pods",
    "timed_workload",
    "whole_gpus_only",
]

#: the environment variable naming the trace directory (``cluster-trace-gpu-v2023/csv``) for the tests and benchmarks
TRACE_DIR_ENV = "GPUTOPO_TRACE_DIR"
#: else: where the project's shared data keeps it, relative to the repository root (research-use data: not in the repo)
SHARED_TRACE_DIR = "../shared/traces/alibaba-gpu-v2023"
NODE_LIST = "openb_node_list_gpu_node.csv"
_POD_PREFIX = "openb_pod_list_"
# the limits, with their reasons, are in labeler.topology.limits (docs/reliability.md)
_MAX_BYTES = limits.MAX_TRACE_BYTES
_MAX_ROWS = limits.MAX_TRACE_ROWS
_MAX_CPU_MILLI = limits.MAX_TRACE_CPU_MILLI
_MAX_MEMORY_MIB = limits.MAX_TRACE_MEMORY_MIB
_MAX_GPUS = limits.MAX_GPUS


def find_trace_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """Where the trace tests and benchmarks read the trace: ``$GPUTOPO_TRACE_DIR``, else :data:`SHARED_TRACE_DIR`
    next to the repository (a source checkout); None when neither holds the node list (``gputopo simulate``
    itself always takes ``--trace DIR``)."""
    env = os.environ if env is None else env
    root = Path(__file__).resolve().parents[1]
    candidates = [Path(env[TRACE_DIR_ENV])] if env.get(TRACE_DIR_ENV) else []
    candidates.append(root / SHARED_TRACE_DIR)
    return next((c for c in candidates if (c / NODE_LIST).is_file()), None)


@dataclass(frozen=True, slots=True)
class TraceNode:
    name: str
    cpu_milli: int
    memory_mib: int
    gpus: int
    model: str


@dataclass(frozen=True, slots=True)
class TracePod:
    name: str
    cpu_milli: int
    memory_mib: int
    num_gpu: int
    gpu_milli: int
    gpu_spec: tuple[str, ...]
    creation: float | None
    deletion: float | None


def _read_rows(path: Path, required: Sequence[str]) -> list[tuple[int, dict[str, str]]]:
    try:
        size = path.stat().st_size
    except OSError as err:
        raise TraceError(f"cannot read: {err.strerror or err}", path=str(path)) from None
    if size > _MAX_BYTES:
        raise TraceError(f"file is {size} bytes, more than the {_MAX_BYTES} allowed", path=str(path))
    text = path.read_bytes().decode("utf-8", errors="replace")
    reader = csv.DictReader(io.StringIO(text))
    try:  # the csv module raises its own csv.Error (NUL bytes, a quote left open): a TraceError here
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise TraceError(
                f"missing column(s) {', '.join(missing)} (header: {','.join(header)})", path=str(path), line=1
            )
        rows: list[tuple[int, dict[str, str]]] = []
        for row in reader:
            if len(rows) >= _MAX_ROWS:
                raise TraceError(f"more than {_MAX_ROWS} rows", path=str(path), line=reader.line_num)
            if None in row:
                raise TraceError("more cells than header columns", path=str(path), line=reader.line_num)
            rows.append((reader.line_num, {k: (v or "").strip() for k, v in row.items()}))
    except csv.Error as err:
        raise TraceError(f"not CSV: {err}", path=str(path), line=max(reader.line_num, 1)) from None
    return rows


def _int(row: dict[str, str], col: str, lo: int, hi: int, path: Path, line: int) -> int:
    raw = row.get(col, "")
    try:
        value = int(raw)
    except ValueError:
        raise TraceError(f"{col}={raw!r} is not an integer", path=str(path), line=line) from None
    if not lo <= value <= hi:
        raise TraceError(f"{col}={value} outside {lo}..{hi}", path=str(path), line=line)
    return value


def _time(row: dict[str, str], col: str, path: Path, line: int) -> float | None:
    raw = row.get(col, "")
    if raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise TraceError(f"{col}={raw!r} is not a number", path=str(path), line=line) from None
    if not 0 <= value < 1e12:
        raise TraceError(f"{col}={value} out of range", path=str(path), line=line)
    return value


def read_nodes(path: str | Path) -> list[TraceNode]:
    """An ``openb_node_list_*.csv`` (``sn,cpu_milli,memory_mib,gpu,model``)."""
    p = Path(path)
    out = []
    seen: set[str] = set()
    for line, row in _read_rows(p, ("sn", "cpu_milli", "memory_mib", "gpu", "model")):
        name = row["sn"]
        if not name or name in seen:
            raise TraceError(f"node name {name!r} empty or repeated", path=str(p), line=line)
        seen.add(name)
        gpus = _int(row, "gpu", 0, _MAX_GPUS, p, line)
        model = row["model"]
        if gpus and not model:
            raise TraceError(f"{gpus} GPUs but no model", path=str(p), line=line)
        out.append(TraceNode(name, _int(row, "cpu_milli", 0, _MAX_CPU_MILLI, p, line),
                             _int(row, "memory_mib", 0, _MAX_MEMORY_MIB, p, line), gpus, model))
    return out


def read_pods(path: str | Path) -> list[TracePod]:
    """An ``openb_pod_list_*.csv``; the time, qos and spec columns are optional (multigpu lists lack them)."""
    p = Path(path)
    out = []
    for line, row in _read_rows(p, ("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli")):
        num_gpu = _int(row, "num_gpu", 0, _MAX_GPUS, p, line)
        gpu_milli = _int(row, "gpu_milli", 0, MILLI, p, line)
        if (num_gpu == 0) != (gpu_milli == 0):
            raise TraceError(f"num_gpu={num_gpu} with gpu_milli={gpu_milli}", path=str(p), line=line)
        if num_gpu > 1 and gpu_milli != MILLI:
            raise TraceError(f"a {num_gpu}-GPU pod must use whole GPUs (gpu_milli={gpu_milli})", path=str(p), line=line)
        spec = tuple(s for s in row.get("gpu_spec", "").split("|") if s)
        out.append(
            TracePod(
                name=row["name"] or f"row-{line}",
                cpu_milli=_int(row, "cpu_milli", 0, _MAX_CPU_MILLI, p, line),
                memory_mib=_int(row, "memory_mib", 0, _MAX_MEMORY_MIB, p, line),
                num_gpu=num_gpu,
                gpu_milli=gpu_milli,
                gpu_spec=spec,
                creation=_time(row, "creation_time", p, line),
                deletion=_time(row, "deletion_time", p, line),
            )
        )
    return out


def pod_list_path(trace_dir: str | Path, name: str) -> Path:
    """``default`` → ``DIR/openb_pod_list_default.csv`` (a full file name is accepted too)."""
    base = name.removesuffix(".csv")
    if not base.startswith(_POD_PREFIX):
        base = _POD_PREFIX + base
    return Path(trace_dir) / f"{base}.csv"


def pod_kind(num_gpu: int, gpu_milli: int) -> str:
    """The metrics group of a trace pod: ``cpu``, ``share``, ``1gpu``, ``2gpu``..."""
    if num_gpu == 0:
        return "cpu"
    if gpu_milli < MILLI:
        return "share"
    return f"{num_gpu}gpu"


def whole_gpus_only(pods: Sequence[TracePod]) -> list[TracePod]:
    """The same pods without GPU sharing: a share becomes one whole GPU (what a stock cluster gives it)."""
    return [replace(p, gpu_milli=MILLI) if 0 < p.gpu_milli < MILLI else p for p in pods]


def _spec(p: TracePod, name: str | None = None, arrival: float = 0.0, departure: float | None = None) -> PodSpec:
    return PodSpec(
        name=name or p.name,
        kind=pod_kind(p.num_gpu, p.gpu_milli),
        cpu_milli=p.cpu_milli,
        memory_mib=p.memory_mib,
        num_gpu=p.num_gpu,
        gpu_milli=p.gpu_milli,
        gpu_spec=p.gpu_spec,
        arrival=arrival,
        departure=departure,
    )


def fgd_workload(pods: Sequence[TracePod], capacity_milli: int, seed: int, tune: float = 1.3) -> list[PodSpec]:
    """FGD's replay order: shuffled originals, then uniform draws until ``tune`` × capacity (module docstring)."""
    rng = np.random.default_rng(seed)
    ordered = sorted(pods, key=lambda p: p.name)
    perm = rng.permutation(len(ordered))
    out = [_spec(ordered[i], arrival=float(n)) for n, i in enumerate(perm)]
    total = sum(p.num_gpu * p.gpu_milli for p in ordered)
    target = tune * capacity_milli
    if tune <= 0 or not ordered:
        return out
    if total > target:  # FGD's tuneDownPods: drop random pods until at or under the target
        while total > target and out:
            idx = int(rng.integers(len(out)))
            total -= out.pop(idx).total_milli
        return out
    i = 0
    while True:
        p = ordered[int(rng.integers(len(ordered)))]
        if total + p.gpu_milli > target:  # FGD's test (per-GPU milli; see the module docstring)
            break
        total += p.num_gpu * p.gpu_milli
        out.append(_spec(p, name=f"{p.name}-tuned-{i}", arrival=float(len(out))))
        i += 1
    return out


def timed_workload(pods: Sequence[TracePod]) -> list[PodSpec]:
    """Arrivals at ``creation_time``, departures at ``deletion_time`` (pods without a creation time are skipped)."""
    out = []
    for p in pods:
        if p.creation is None:
            continue
        dep = p.deletion if p.deletion is not None and p.deletion > p.creation else None
        out.append(_spec(p, arrival=p.creation, departure=dep))
    out.sort(key=lambda s: (s.arrival, s.name))
    return out
