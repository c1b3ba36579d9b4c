"""The agent's fault cases, measured: what it sends, what it writes, what it leaves alone.

Runs the real agent loop (simulated clock, the official ``kubernetes`` client over
HTTP) against the in-test API server for each fault in docs/reliability.md
("Agent and admission policy") and prints one Markdown table row per case:
requests by verb, accepted writes per object, foreign keys changed (labels and
annotations not under the prefix on the Node, anything but ``data.allocation``
and our metadata on the ConfigMap), the Node's status afterwards, the
``gputopo_agent_publish_errors_total`` counters, whether ``step()`` raised, and
the peak of Python allocations during the case (tracemalloc: the whole process,
so it includes the in-test server's and the client's buffers).

    .venv/bin/python bench/agent_faults.py
"""

from __future__ import annotations

import sys
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "agent"))

from agent_support import kube_api, machine  # noqa: E402
from fake_kube_api import FakeKubeApi, realistic_gpu_node  # noqa: E402
from test_agent_loop import Clock, Pods, ScriptedProber  # noqa: E402

from labeler.agent.configmap import KubeConfigMapPublisher  # noqa: E402
from labeler.agent.health import AgentMetrics  # noqa: E402
from labeler.agent.loop import Agent, LoopConfig  # noqa: E402
from labeler.agent.publish import Backoff, KubeNodePublisher, RetryPolicy  # noqa: E402
from labeler.agent.settings import AgentSettings  # noqa: E402
from labeler.topology.errors import ProbeError  # noqa: E402

#: the settings' defaults, without the environment (LoopConfig.from_settings: no second copy)
SETTINGS = AgentSettings.model_construct()

NODE, NS, P = "gpu-node-1", "gputopo-system", "gputopo.io/"
CM = "gputopo-alloc-gpu-node-1"
CM_PATH = f"/api/v1/namespaces/{NS}/configmaps"


def foreign_node(api: FakeKubeApi) -> dict[str, Any]:
    meta = api.node(NODE)["metadata"]
    return {f: {k: v for k, v in (meta.get(f) or {}).items() if not k.startswith(P)} for f in ("labels", "annotations")}


def foreign_cm(api: FakeKubeApi) -> dict[str, Any]:
    cm = api.configmap(NS, CM) or {}
    meta = cm.get("metadata", {})
    return {"data": {k: v for k, v in (cm.get("data") or {}).items() if k != "allocation"},
            "labels": {k: v for k, v in (meta.get("labels") or {}).items()
                       if k not in ("app.kubernetes.io/managed-by", "gputopo.io/node")},
            "annotations": dict(meta.get("annotations") or {})}


def run_case(name: str, setup: Callable[[FakeKubeApi, Pods], None], *, which: str = "configmap",
             prober: ScriptedProber | None = None, seconds: float = 600.0,
             during: Callable[[FakeKubeApi, Pods, Agent, Clock], None] | None = None) -> str:
    api = FakeKubeApi()
    api.add_node(realistic_gpu_node(NODE))
    pods = Pods()
    api.put_configmap({"metadata": {"name": CM, "namespace": NS, "labels": {"team.example.com/x": "kept"}},
                       "data": {"allocation": '{"free":"0-7","ts":1,"used":{},"v":1}', "README": "kept"}})
    setup(api, pods)
    before_node, before_cm = foreign_node(api), foreign_cm(api)
    raised = "no"
    with api:
        clock = Clock()
        cm_pub = None if which == "annotation" else KubeConfigMapPublisher(
            kube_api(api.url), NODE, NS, retry=RetryPolicy(5, Backoff(0.5, 8.0), sleep=lambda s: None))
        metrics = AgentMetrics()
        config = LoopConfig.from_settings(SETTINGS, prefix=P, allocation_on_node=which != "configmap",
                                          probe_interval_s=60.0)
        agent = Agent(config,
                      prober or ScriptedProber(machine("h100-nv18-8nics")),
                      KubeNodePublisher(kube_api(api.url), NODE, P, sleep=lambda s: None), pods, metrics=metrics,
                      allocation_publisher=cm_pub, clock=clock, wall_clock=lambda: 1.7e9 + clock.t)
        tracemalloc.start()
        try:
            end = clock.t + seconds
            while clock.t < end:
                if during is not None:
                    during(api, pods, agent, clock)
                wait = agent.step()
                clock.t = min(end, clock.t + max(min(wait, agent.config.heartbeat_s), 0.001))
        except BaseException as err:  # what a crash would have been
            raised = type(err).__name__
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    verbs = Counter(r.method for r in api.requests)
    writes = Counter("cm" if "/configmaps" in w.path else "node" for w in api.writes())
    changed = (foreign_node(api) != before_node) + (foreign_cm(api) != before_cm)
    status = api.labels(NODE).get(P + "status", "-")
    reason = api.annotations(NODE).get(P + "status-reason", "")
    errors = {t: metrics.registry.get_sample_value("gputopo_agent_publish_errors_total", {"target": t}) or 0.0
              for t in ("node", "configmap")}
    return (f"| {name} | {verbs['GET']}/{verbs['POST']}/{verbs['PATCH']} | {writes['node']} | {writes['cm']} | "
            f"{changed} | {status}{' (' + reason[:60] + ')' if reason else ''} | "
            f"{errors['node']:.0f}/{errors['configmap']:.0f} | {raised} | {peak / 2**20:.1f} |")


def damaged(value: str) -> Callable[[FakeKubeApi, Pods], None]:
    return lambda api, pods: api.modify_configmap(NS, CM, lambda cm: cm["data"].update({"allocation": value}))


def forbid(path: str, methods: tuple[str, ...]) -> Callable[[FakeKubeApi, Pods], None]:
    return lambda api, pods: api.fail_next(403, times=10**6, methods=methods, path_prefix=path)


def churn(api: FakeKubeApi, pods: Pods, agent: Agent, clock: Clock) -> None:
    pods.used_map = {i: f"ml/job-{i}" for i in range(int((clock.t - 1000.0) // 120) % 8)}


def main() -> None:
    print("| case (10 simulated minutes) | GET/POST/PATCH | Node writes | ConfigMap writes | objects with "
          "foreign keys changed | Node status afterwards | publish errors node/configmap | step() raised | "
          "peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(run_case("baseline: intact ConfigMap", lambda api, pods: None))
    print(run_case("ConfigMap value nested 200,000 deep", damaged("[" * 200_000)))
    print(run_case("ConfigMap value ts=1e400", damaged('{"free":"0-7","ts":1e400,"used":{},"v":1}')))
    print(run_case("ConfigMap value free=0-4000000000", damaged('{"free":"0-4000000000","ts":1,"used":{},"v":1}')))
    print(run_case("Node annotation nested 200,000 deep (carrier annotation)",
                   lambda api, pods: api.modify(NODE, lambda n: n["metadata"]["annotations"].update(
                       {P + "allocation": "[" * 200_000})), which="annotation"))
    print(run_case("our labels damaged, probe failing until 10 s",
                   lambda api, pods: api.modify(NODE, lambda n: n["metadata"]["labels"].update(
                       {P + "schema": "v1", P + "gpu-count": "eight"})),
                   prober=ScriptedProber(ProbeError("NVML: driver not loaded"), machine("h100-nv18-8nics"))))
    print(run_case("403 on every ConfigMap request, allocation churn", forbid(CM_PATH, ("GET", "POST", "PATCH")),
                   during=churn))
    print(run_case("403 on every Node PATCH, allocation churn", forbid("/api/v1/nodes", ("PATCH",)), during=churn))


if __name__ == "__main__":
    main()
