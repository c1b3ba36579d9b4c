"""The synthetic workload: PyTorchJob workers and vLLM servers over real 8-GPU boards.

Submissions are drawn by weight from a mix: a **PyTorchJob** of ``W`` workers
with ``G`` GPUs each (multi-node data parallel, no gang scheduling: the
workers arrive one after another and are placed independently, as the stock
scheduler does), or a **vLLM** server with tensor parallelism ``TP`` (one pod,
``TP`` GPUs). Draws continue until the GPU request reaches ``target_gpu_pct``
of the fleet's GPUs (130 %, like FGD's "tune 1.3"), so the 100 %-arrived point
of the unallocated-GPU metric is inside the run.

With departures, submissions arrive as a Poisson process and each pod lives
an exponential time; the arrival rate is set so that the offered GPU load is
``load`` × capacity. Everything is drawn from one seeded generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from simulator.model import MILLI, PodSpec

__all__ = ["JobMix", "ServeMix", "SyntheticWorkload", "generate"]

_GIB = 1024


@dataclass(frozen=True, slots=True)
class JobMix:
    """PyTorchJob submissions: workers × GPUs per worker, drawn uniformly from the lists."""

    weight: float
    workers: tuple[int, ...] = (2, 4)
    gpus_per_worker: tuple[int, ...] = (2, 4, 8)
    cpu_per_gpu: float = 5.0
    memory_gib_per_gpu: float = 48.0


@dataclass(frozen=True, slots=True)
class ServeMix:
    """vLLM submissions: tensor-parallel size drawn by the given weights."""

    weight: float
    tp_weights: Mapping[int, float]
    cpu_per_gpu: float = 4.0
    memory_gib_per_gpu: float = 32.0


@dataclass(frozen=True, slots=True)
class SyntheticWorkload:
    jobs: JobMix | None
    serve: ServeMix | None
    target_gpu_pct: float = 130.0
    required_share: float = 0.0  # share of multi-GPU pods annotated gputopo.io/placement=required
    load: float = 0.9  # departures mode: offered GPU load / capacity
    mean_lifetime_s: float = 3600.0


def _pick(rng: np.random.Generator, values: Sequence[int], weights: Sequence[float] | None = None) -> int:
    if weights is None:
        return int(values[int(rng.integers(len(values)))])
    w = np.asarray(weights, dtype=float)
    return int(values[int(rng.choice(len(values), p=w / w.sum()))])


def _submission(mix: SyntheticWorkload, rng: np.random.Generator, n: int) -> list[PodSpec]:
    kinds: list[JobMix | ServeMix] = [m for m in (mix.jobs, mix.serve) if m is not None and m.weight > 0]
    which = kinds[_pick(rng, list(range(len(kinds))), [k.weight for k in kinds])]
    if isinstance(which, JobMix):
        workers = _pick(rng, which.workers)
        g = _pick(rng, which.gpus_per_worker)
        required = bool(rng.random() < mix.required_share)
        job = f"job-{n:05d}"
        return [
            PodSpec(
                name=f"{job}-worker-{r}",
                kind=f"train-{g}gpu",
                cpu_milli=int(which.cpu_per_gpu * g * 1000),
                memory_mib=int(which.memory_gib_per_gpu * g * _GIB),
                num_gpu=g,
                gpu_milli=MILLI,
                job=job,
                replica=r,
                required=required and g > 1,
            )
            for r in range(workers)
        ]
    tps = sorted(which.tp_weights)
    tp = _pick(rng, tps, [which.tp_weights[t] for t in tps])
    return [
        PodSpec(
            name=f"vllm-{n:05d}",
            kind=f"vllm-tp{tp}",
            cpu_milli=int(which.cpu_per_gpu * tp * 1000),
            memory_mib=int(which.memory_gib_per_gpu * tp * _GIB),
            num_gpu=tp,
            gpu_milli=MILLI,
            tensor_parallel=tp,
            required=bool(rng.random() < mix.required_share) and tp > 1,
        )
    ]


def generate(mix: SyntheticWorkload, capacity_gpus: int, seed: int, *, departures: bool = False) -> list[PodSpec]:
    """Pods in arrival order (arrival times set; departure times only with ``departures``)."""
    if mix.jobs is None and mix.serve is None:
        raise ValueError("the synthetic mix has neither jobs nor servers")
    rng = np.random.default_rng(seed)
    target = mix.target_gpu_pct / 100 * capacity_gpus
    units: list[list[PodSpec]] = []
    total = 0
    while total < target:
        unit = _submission(mix, rng, len(units))
        units.append(unit)
        total += sum(p.num_gpu for p in unit)
    pods: list[PodSpec] = []
    if not departures:
        for unit in units:
            pods.extend(replace(p, arrival=float(len(pods) + i)) for i, p in enumerate(unit))
        return pods
    mean_gpus = total / len(units)
    rate = mix.load * capacity_gpus / (mean_gpus * mix.mean_lifetime_s)  # submissions per second
    t = 0.0
    for unit in units:
        t += float(rng.exponential(1.0 / rate))
        for p in unit:
            life = float(rng.exponential(mix.mean_lifetime_s))
            pods.append(replace(p, arrival=t, departure=t + life))
    return pods
