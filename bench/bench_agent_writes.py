"""API write volume of the agent: steady state and under pod churn, per carrier.

Runs the REAL agent loop (``labeler.agent.loop.Agent``) with the REAL kubernetes
client (``KubeNodePublisher``) over HTTP against the in-test API server
(``tests/agent/fake_kube_api.py``), with a simulated clock, so a simulated day
takes seconds. The node is an 8-GPU H100 machine from the topology corpus and a
realistic Node object (kubelet status, 50 images, GFD labels, managedFields).

Churn: a simulated kubelet whose pods arrive as a Poisson process and live an
exponentially distributed time; a pod that does not fit is turned away (the
scheduler would place it elsewhere). Offered load is 0.9 of the node's GPUs.

Each scenario runs with the allocation carrier ``annotation`` (the Node's
``{prefix}allocation``) and, for the default rate limit, with ``configmap`` (the
default: ``gputopo-alloc-<node>`` written by ``KubeConfigMapPublisher`` through the
same in-test server).

Measured (from the requests the server recorded): accepted Node PATCHes and
ConfigMap writes (POST/PATCH) per node per hour, write body bytes, the size of
the written object as the server returned it (what each watcher of that kind
receives per update), GETs per hour, and staleness (time from an allocation
change in the kubelet to the write that carries it).

Derived, not run through the agent: the watch fan-out of each carrier for a
given cluster size, with object sizes computed from real client models
including a ``managedFields`` entry the in-test server does not add (and a
Lease for comparison).

    .venv/bin/python bench/bench_agent_writes.py            # full table (simulated 24 h per scenario)
    .venv/bin/python bench/bench_agent_writes.py --hours 2  # quicker
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_support import MACHINES, corpus_path, kube_api  # noqa: E402
from fake_kube_api import FakeKubeApi, realistic_gpu_node  # noqa: E402
from kubernetes import client as k8s  # noqa: E402

from labeler.agent.configmap import CarrierResult, KubeConfigMapPublisher  # noqa: E402
from labeler.agent.loop import Agent, LoopConfig  # noqa: E402
from labeler.agent.publish import KubeNodePublisher, Planner, PublishResult, RetryPolicy  # noqa: E402
from labeler.agent.settings import AgentSettings  # noqa: E402
from labeler.agent.sources import ProbeOutcome  # noqa: E402
from labeler.topology import allocation, smi_parser  # noqa: E402
from labeler.topology.model import Topology  # noqa: E402

#: the settings' defaults, without the environment (LoopConfig.from_settings: no second copy)
SETTINGS = AgentSettings.model_construct()

NODE = "gpu-node-1"
P = "gputopo.io/"
#: Whole-GPU pod sizes in the Alibaba openb default trace (3986 pods: 3911 x1, 16 x2, 15 x4, 44 x8).
TRACE_SIZES = ((1, 3911), (2, 16), (4, 15), (8, 44))


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@dataclass
class SimKubelet:
    """Pods with GPUs on one node, driven by a Poisson arrival process; also the AllocationSource."""

    gpus: int
    mean_life_s: float
    sizes: tuple[tuple[int, int], ...]
    load: float
    rng: random.Random
    used_map: dict[int, str] = field(default_factory=dict)
    changes: list[float] = field(default_factory=list)
    _ends: list[tuple[float, str]] = field(default_factory=list)
    _next_arrival: float = 0.0
    _n: int = 0

    def __post_init__(self) -> None:
        mean_size = sum(s * w for s, w in self.sizes) / sum(w for _, w in self.sizes)
        self.rate = self.load * self.gpus / (mean_size * self.mean_life_s)  # pods per second
        self._next_arrival = self.rng.expovariate(self.rate) if self.rate > 0 else float("inf")

    def advance(self, t: float) -> None:
        """Apply every pod start/stop up to time ``t``."""
        while True:
            end = self._ends[0][0] if self._ends else float("inf")
            if min(end, self._next_arrival) > t:
                return
            if end <= self._next_arrival:
                when, pod = heapq.heappop(self._ends)
                for g in [g for g, p in self.used_map.items() if p == pod]:
                    del self.used_map[g]
                self.changes.append(when)
            else:
                when = self._next_arrival
                self._next_arrival += self.rng.expovariate(self.rate)
                size = self.rng.choices([s for s, _ in self.sizes], [w for _, w in self.sizes])[0]
                free = [g for g in range(self.gpus) if g not in self.used_map]
                if len(free) >= size:
                    self._n += 1
                    pod = f"ml/job-{self._n}"
                    for g in free[:size]:
                        self.used_map[g] = pod
                    heapq.heappush(self._ends, (when + self.rng.expovariate(1 / self.mean_life_s), pod))
                    self.changes.append(when)

    def used(self, topology: Topology) -> Mapping[int, str]:
        return dict(self.used_map)


@dataclass
class Static:
    topo: Topology

    def probe(self) -> ProbeOutcome:
        return ProbeOutcome(self.topo)


@dataclass
class TimedPublisher:
    """Wraps the real publisher to note the simulated time of each accepted write."""

    inner: KubeNodePublisher
    clock: Clock
    write_times: list[float] = field(default_factory=list)

    def publish(self, planner: Planner) -> PublishResult:
        result = self.inner.publish(planner)
        if result.outcome == "patched":
            self.write_times.append(self.clock.t)
        return result


@dataclass
class TimedConfigMapPublisher:
    """The same for the ConfigMap carrier."""

    inner: KubeConfigMapPublisher
    clock: Clock
    write_times: list[float] = field(default_factory=list)

    def publish(self, state: allocation.AllocationState) -> CarrierResult:
        result = self.inner.publish(state)
        if result.outcome != "unchanged":
            self.write_times.append(self.clock.t)
        return result


@dataclass
class Figures:
    name: str
    carrier: str
    hours: float
    writes: int  # accepted Node PATCHes
    cm_writes: int  # accepted ConfigMap POST/PATCH
    gets: int
    patch_bytes: list[int]
    node_bytes: list[int]
    cm_body_bytes: list[int]
    cm_bytes: list[int]
    alloc_bytes: int
    staleness: list[float]
    changes: int

    @property
    def writes_per_hour(self) -> float:
        """Allocation-carrying writes per node per hour, whichever the carrier."""
        return (self.writes if self.carrier == "annotation" else self.cm_writes) / self.hours


def run(name: str, hours: float, *, churn: SimKubelet | None, min_interval: float, coalesce: float = 1.0,
        poll: float = 5.0, seed_warmup_s: float = 600.0, carrier: str = "annotation") -> Figures:
    """One scenario: warm up (initial labelling + churn reaching steady state), then measure ``hours``."""
    topo = smi_parser.parse(corpus_path(MACHINES["h100-nv18-8nics"]).read_text(), source="051")
    clock = Clock()
    with FakeKubeApi() as api:
        api.add_node(realistic_gpu_node(NODE))
        pub = TimedPublisher(KubeNodePublisher(kube_api(api.url), NODE, P, sleep=lambda s: None), clock)
        # refresh off: these rows measure what pod churn costs; the heartbeat adds 3600/refresh writes/h (agent.md)
        cfg = LoopConfig.from_settings(SETTINGS, prefix=P, allocation_interval_s=poll,
                                       allocation_min_interval_s=min_interval, allocation_coalesce_s=coalesce,
                                       allocation_on_node=carrier != "configmap", allocation_refresh_s=0.0)
        cm_pub = None
        if carrier == "configmap":
            writer = KubeConfigMapPublisher(kube_api(api.url), NODE, "gputopo-system",
                                            retry=RetryPolicy(sleep=lambda s: None))
            cm_pub = TimedConfigMapPublisher(writer, clock)
        if churn is None:  # steady: six long-running pods hold six GPUs, nothing starts or stops
            churn = SimKubelet(8, 1800, ((1, 1),), 0.0, random.Random(0), {g: f"ml/steady-{g}" for g in range(6)})
        source = churn
        agent = Agent(cfg, Static(topo), pub, source, allocation_publisher=cm_pub, clock=clock,
                      wall_clock=lambda: 1.7e9 + clock.t)

        def advance(until: float) -> None:
            while clock.t < until:
                source.advance(clock.t)
                wait = agent.step()
                nxt = min(until, clock.t + max(min(wait, cfg.heartbeat_s), 0.001))
                clock.t = nxt

        advance(seed_warmup_s)
        api.reset_log()
        pub.write_times.clear()
        if cm_pub is not None:
            cm_pub.write_times.clear()
        start = clock.t
        changes_before = len(source.changes)
        advance(start + hours * 3600)
        writes = api.writes("nodes")
        cm_writes = api.writes("configmaps")
        stale = []
        times = pub.write_times if cm_pub is None else cm_pub.write_times
        for c in source.changes[changes_before:]:
            later = [w for w in times if w >= c]
            if later:
                stale.append(later[0] - c)
        alloc_value = api.annotations(NODE).get(P + allocation.ANNOTATION_SUFFIX, "")
        if cm_pub is not None:
            stored = api.configmap("gputopo-system", cm_pub.inner.name) or {}
            alloc_value = stored.get("data", {}).get("allocation", "")
        return Figures(name, carrier, hours, len(writes), len(cm_writes),
                       sum(1 for r in api.requests if r.method == "GET"),
                       [len(w.body) for w in writes], [w.response_bytes for w in writes],
                       [len(w.body) for w in cm_writes], [w.response_bytes for w in cm_writes], len(alloc_value),
                       stale, len(source.changes) - changes_before)


def object_bytes(obj: object) -> int:
    """Serialized size of a client model, as the API server would send it (compact JSON)."""
    data = k8s.ApiClient().sanitize_for_serialization(obj)
    return len(json.dumps(data, separators=(",", ":")))


def carrier_sizes(alloc_value: str) -> dict[str, int]:
    meta = dict(name=f"gputopo-alloc-{NODE}", namespace="gputopo-system", resource_version="123456789",
                uid="6f1c2d3e-0000-4000-8000-000000000002", creation_timestamp="2026-11-01T00:00:00Z",
                labels={"app.kubernetes.io/managed-by": "gputopo", "gputopo.io/node": NODE},
                owner_references=[k8s.V1OwnerReference(api_version="v1", kind="Node", name=NODE,
                                                       uid="6f1c2d3e-0000-4000-8000-000000000001")],
                managed_fields=[k8s.V1ManagedFieldsEntry(manager="gputopo-agent", operation="Update",
                                                         api_version="v1", time="2026-11-23T12:00:00Z",
                                                         fields_type="FieldsV1",
                                                         fields_v1={"f:data": {"f:allocation": {}}})])
    cm = k8s.V1ConfigMap(api_version="v1", kind="ConfigMap", metadata=k8s.V1ObjectMeta(**meta),
                         data={"allocation": alloc_value})
    lease_meta = dict(meta, annotations={P + "allocation": alloc_value})
    lease = k8s.V1Lease(api_version="coordination.k8s.io/v1", kind="Lease",
                        metadata=k8s.V1ObjectMeta(**lease_meta),
                        spec=k8s.V1LeaseSpec(holder_identity=NODE, lease_duration_seconds=40,
                                             renew_time="2026-11-23T12:00:00.000000Z"))
    return {"configmap": object_bytes(cm), "lease": object_bytes(lease)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=float, default=24.0, help="simulated hours per scenario (24)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--nodes", type=int, nargs="*", default=[100, 1000], help="cluster sizes for fan-out")
    ap.add_argument("--watchers", type=int, default=6,
                    help="cluster-wide Node watchers besides per-node agents (scheduler, controller-manager, "
                         "extender, autoscaler, kube-state-metrics, monitoring)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows: list[Figures] = []
    rows.append(run("steady: no pod changes", args.hours, churn=None, min_interval=10))
    rows.append(run("steady: no pod changes", args.hours, churn=None, min_interval=10, carrier="configmap"))
    scenarios = [
        ("churn: 1-GPU pods, life 30 min", 1800.0, ((1, 1),)),
        ("churn: trace size mix, life 30 min", 1800.0, TRACE_SIZES),
        ("churn: 1-GPU pods, life 9 min", 540.0, ((1, 1),)),
    ]
    for label, life, sizes in scenarios:
        for mi in (0.0, 10.0, 30.0):
            sim = SimKubelet(8, life, sizes, 0.9, random.Random(args.seed))
            rows.append(run(f"{label}; min interval {mi:.0f} s", args.hours, churn=sim, min_interval=mi))
            if mi == 10.0:  # the default rate limit, with the default carrier
                sim = SimKubelet(8, life, sizes, 0.9, random.Random(args.seed))
                rows.append(run(f"{label}; min interval {mi:.0f} s", args.hours, churn=sim, min_interval=mi,
                                carrier="configmap"))
    print(f"# gputopo agent API write volume (simulated {args.hours:g} h per scenario, "
          f"{time.perf_counter() - t0:.1f} s wall)\n")
    print("| scenario | carrier | kubelet changes/h | Node PATCH/node/h | ConfigMap writes/node/h | GET/node/h "
          "| write body B (mean) | object B per write (mean) | staleness s (mean / p95) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in rows:
        stale = (f"{statistics.mean(f.staleness):.1f} / {sorted(f.staleness)[int(0.95 * (len(f.staleness) - 1))]:.1f}"
                 if f.staleness else "n/a")
        body, obj = (f.patch_bytes, f.node_bytes) if f.carrier == "annotation" else (f.cm_body_bytes, f.cm_bytes)
        pb = f"{statistics.mean(body):.0f}" if body else "-"
        nb = f"{statistics.mean(obj):.0f}" if obj else "-"
        print(f"| {f.name} | {f.carrier} | {f.changes / f.hours:.1f} | {f.writes / f.hours:.2f} | "
              f"{f.cm_writes / f.hours:.2f} | {f.gets / f.hours:.1f} | {pb} | {nb} | {stale} |")
    ref = next(r for r in rows if r.name.startswith("churn: 1-GPU pods, life 30 min; min interval 10")
               and r.carrier == "annotation")
    ref_cm = next(r for r in rows if r.name == ref.name and r.carrier == "configmap")
    sizes = carrier_sizes("x" * ref.alloc_bytes)
    node_b = statistics.mean(ref.node_bytes)
    print(f"\n## Fan-out for the reference scenario ({ref.name}: {ref.writes_per_hour:.1f} writes/node/h)\n")
    print(f"Object sent to each watcher per write: Node {node_b:.0f} B; ConfigMap {sizes['configmap']} B "
          f"(model incl. managedFields; {statistics.mean(ref_cm.cm_bytes):.0f} B as the in-test server stored it, "
          f"{ref_cm.writes_per_hour:.1f} writes/node/h measured); Lease {sizes['lease']} B "
          f"(allocation value {ref.alloc_bytes} B).\n")
    print("| nodes | carrier | watchers of each write | watch bytes/h, cluster | etcd write bytes/h, cluster |")
    print("|---|---|---|---|---|")
    for n in args.nodes:
        writes_h = ref.writes_per_hour * n
        for carrier, size, watchers, note in (
            ("Node annotation", node_b, args.watchers, f"{args.watchers} cluster-wide"),
            ("Node annotation", node_b, args.watchers + n, f"{args.watchers} + {n} per-node (CNI-style)"),
            ("ConfigMap", sizes["configmap"], 1, "1 (extender)"),
            ("Lease", sizes["lease"], 1, "1 (extender)"),
        ):
            print(f"| {n} | {carrier} | {note} | {_human(writes_h * size * watchers)} | {_human(writes_h * size)} |")
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


if __name__ == "__main__":
    raise SystemExit(main())
