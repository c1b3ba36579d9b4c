"""The agent owns its own data: damaged values of ours are overwritten, failures stay apart and show.

Every case runs the real agent loop through the official ``kubernetes`` client
over HTTP against the in-test API server (``fake_kube_api.py``), with a
simulated clock. Each case was written first and failed on the agent before
this change (commit 7e72b74):

* a damaged allocation value in its own ConfigMap (or in the Node annotation
  with ``--allocation-carrier=annotation``) raised out of ``step()``
  (RecursionError, OverflowError) and killed the agent, or was expanded in
  memory (``0-4000000000``: 2.3 GiB) only to be replaced;
* damaged label values of ours on a node whose probe has not succeeded yet
  raised CodecError out of ``step()``;
* a 403 on ConfigMaps stopped the Node PATCH, so the node got no labels at all;
* a failing Node PATCH held every allocation write back until the publish retry.

What "owns" means here: the value is rewritten with the true state in one
write, nothing outside our keys/objects is touched, the agent keeps running,
and the failure shows in ``status``/``status-reason`` and in the metrics.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from agent_support import (
    fake_api_fixture,  # noqa: F401  (provides the fake_api fixture)
    kube_api,
    machine,
)
from fake_kube_api import FakeKubeApi
from test_agent_loop import Clock, Pods, ScriptedProber, run_for

from labeler.agent.configmap import KubeConfigMapPublisher
from labeler.agent.health import AgentMetrics
from labeler.agent.loop import Agent, LoopConfig
from labeler.agent.publish import Backoff, KubeNodePublisher, RetryPolicy
from labeler.agent.settings import AgentSettings
from labeler.topology import allocation, carrier, labels
from labeler.topology.errors import ProbeError

#: the settings' defaults, without the environment (LoopConfig.from_settings: no second copy)
SETTINGS = AgentSettings.model_construct()

P = "gputopo.io/"
NODE = "gpu-node-1"
NS = "gputopo-system"
CM = "gputopo-alloc-gpu-node-1"
ALLOC = P + allocation.ANNOTATION_SUFFIX
CM_PATH = f"/api/v1/namespaces/{NS}/configmaps"
NODE_PATH = f"/api/v1/nodes/{NODE}"
T0 = 1.7e9

#: Values of ``data.allocation`` / ``{prefix}allocation`` that are ours but damaged, by what was wrong.
DAMAGED = {
    "deep-nesting": "[" * 200_000,                                       # RecursionError in json.loads
    "ts-infinity": '{"free":"0-7","ts":1e400,"used":{},"v":1}',           # OverflowError in int()
    "huge-range": '{"free":"0-4000000000","ts":1,"used":{},"v":1}',       # 4e9 ints: 2.3 GiB
    "not-json": "free=0-7",
    "wrong-version": '{"free":"0-7","ts":1,"used":{},"v":99}',
    "used-not-object": '{"free":"0-7","ts":1,"used":[1,2],"v":1}',
    "nan": '{"free":"0-7","ts":NaN,"used":{},"v":1}',
    "empty": "",
    "one-mebibyte": "x" * (1 << 20),
}


def agent_with(api: FakeKubeApi, pods: Pods, which: str, prober: ScriptedProber | None = None,
               **cfg: Any) -> tuple[Agent, Clock]:
    clock = Clock()
    node_pub = KubeNodePublisher(kube_api(api.url), NODE, P, sleep=lambda s: None, rand=lambda: 0.0)
    cm_pub = None
    if which != "annotation":
        retry = RetryPolicy(5, Backoff(0.5, 8.0), sleep=lambda s: None, rand=lambda: 0.5)
        cm_pub = KubeConfigMapPublisher(kube_api(api.url), NODE, NS, retry=retry)
    config = LoopConfig.from_settings(SETTINGS, prefix=P, allocation_on_node=which in ("annotation", "both"), **cfg)
    agent = Agent(config, prober or ScriptedProber(machine("h100-nv18-8nics")), node_pub, pods,
                  metrics=AgentMetrics(), allocation_publisher=cm_pub, clock=clock,
                  wall_clock=lambda: T0 + clock.t)
    return agent, clock


def foreign(meta: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations that are not ours."""
    return ({k: v for k, v in (meta.get("labels") or {}).items() if not k.startswith(P)},
            {k: v for k, v in (meta.get("annotations") or {}).items() if not k.startswith(P)})


def counter(agent: Agent, name: str, **label: str) -> float:
    value = agent.metrics.registry.get_sample_value(name, label)
    return 0.0 if value is None else value


def true_state(agent: Agent) -> str:
    assert agent.alloc is not None
    return allocation.encode(agent.alloc)


def written_paths(api: FakeKubeApi) -> set[str]:
    return {w.path.split("?")[0] for w in api.writes()}


@pytest.mark.parametrize("damage", list(DAMAGED), ids=list(DAMAGED))
def test_damaged_value_in_own_configmap_is_overwritten_not_fatal(fake_api: FakeKubeApi, damage: str) -> None:
    pods = Pods()
    pods.used_map = {3: "ml/train-0"}
    fake_api.put_configmap({
        "metadata": {"name": CM, "namespace": NS, "labels": {"team.example.com/x": "kept"},
                     "annotations": {"team.example.com/note": "kept"}},
        "data": {carrier.DATA_KEY: DAMAGED[damage], "README": "someone else's key, kept"},
    })
    node_before = fake_api.node(NODE)["metadata"]
    agent, clock = agent_with(fake_api, pods, "configmap")
    run_for(agent, clock, 1.0)  # raised out of step() before (deep-nesting, ts-infinity)
    cm = fake_api.configmap(NS, CM)
    assert cm is not None
    assert cm["data"] == {carrier.DATA_KEY: true_state(agent), "README": "someone else's key, kept"}
    assert allocation.decode(cm["data"][carrier.DATA_KEY]).used == {3: "ml/train-0"}
    assert cm["metadata"]["labels"]["team.example.com/x"] == "kept"
    assert cm["metadata"]["annotations"]["team.example.com/note"] == "kept"
    cm_writes = fake_api.writes("configmaps")
    assert [w.method for w in cm_writes] == ["PATCH"]  # one repair, with the true state
    assert written_paths(fake_api) == {f"{CM_PATH}/{CM}", NODE_PATH}  # nothing else was written
    assert foreign(fake_api.node(NODE)["metadata"]) == foreign(node_before)
    assert fake_api.labels(NODE)[P + "status"] == "ok"
    fake_api.reset_log()
    run_for(agent, clock, 3600.0)  # and it stays repaired: no churn
    assert fake_api.writes() == []


@pytest.mark.parametrize("damage", ["deep-nesting", "ts-infinity", "huge-range", "not-json"])
def test_damaged_allocation_annotation_on_the_node_is_overwritten(fake_api: FakeKubeApi, damage: str) -> None:
    fake_api.modify(NODE, lambda n: n["metadata"]["annotations"].update({ALLOC: DAMAGED[damage]}))
    before = fake_api.node(NODE)["metadata"]
    agent, clock = agent_with(fake_api, Pods(), "annotation")
    run_for(agent, clock, 1.0)
    after = fake_api.node(NODE)["metadata"]
    assert after["annotations"][ALLOC] == true_state(agent)
    assert foreign(after) == foreign(before)
    assert len(fake_api.writes("nodes")) == 1 and fake_api.writes("configmaps") == []


def test_huge_range_is_never_expanded(fake_api: FakeKubeApi) -> None:
    """``0-4000000000`` used to be decoded into 4e9 ints (2.3 GiB) just to be compared, then replaced."""
    fake_api.put_configmap({"metadata": {"name": CM, "namespace": NS},
                            "data": {carrier.DATA_KEY: DAMAGED["huge-range"]}})
    agent, clock = agent_with(fake_api, Pods(), "configmap")
    tracemalloc.start()
    try:
        run_for(agent, clock, 1.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert fake_api.configmap(NS, CM)["data"][carrier.DATA_KEY] == true_state(agent)  # type: ignore[index]
    # the whole first sync (probe of a corpus machine, HTTP in both directions, JSON) stays small
    assert peak < 16 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_same_state_with_a_later_timestamp_is_not_rewritten(fake_api: FakeKubeApi) -> None:
    """Comparing canonical strings must still ignore ``ts`` (an agent restart costs no write)."""
    pods = Pods()
    pods.used_map = {0: "a/b"}
    first, clock = agent_with(fake_api, pods, "configmap")
    run_for(first, clock, 1.0)
    value = fake_api.configmap(NS, CM)["data"][carrier.DATA_KEY]  # type: ignore[index]
    fake_api.reset_log()
    second, clock2 = agent_with(fake_api, pods, "configmap")
    clock2.t += 5000
    run_for(second, clock2, 30.0)
    assert fake_api.writes() == []
    assert fake_api.configmap(NS, CM)["data"][carrier.DATA_KEY] == value  # type: ignore[index]


def test_damaged_labels_of_ours_before_any_probe_succeeded(fake_api: FakeKubeApi) -> None:
    """An undecodable label set of ours and a failing probe: status error, the junk removed, no crash."""
    fake_api.modify(NODE, lambda n: n["metadata"]["labels"].update(
        {P + "schema": "v1", P + "gpu-count": "eight", P + "status": "ok", P + "island-nvlink": "4"}))
    before = fake_api.node(NODE)["metadata"]
    prober = ScriptedProber(ProbeError("NVML: driver not loaded"), machine("dgx1-v100"))
    agent, clock = agent_with(fake_api, Pods(), "configmap", prober=prober, probe_interval_s=60.0)
    run_for(agent, clock, 1.0)  # raised CodecError out of step() before
    lab, ann = fake_api.labels(NODE), fake_api.annotations(NODE)
    assert {k: v for k, v in lab.items() if k.startswith(P)} == labels.status_labels(labels.Status.ERROR, prefix=P)
    assert "probe failed: NVML: driver not loaded" in ann[P + "status-reason"]
    assert "damaged" in ann[P + "status-reason"]
    assert foreign(fake_api.node(NODE)["metadata"]) == foreign(before)
    run_for(agent, clock, 30.0)  # the probe recovers (backoff 10 s): the true labels replace everything
    lab = fake_api.labels(NODE)
    assert {k: v for k, v in lab.items() if k.startswith(P)} == labels.encode(machine("dgx1-v100"), prefix=P)
    assert P + "status-reason" not in fake_api.annotations(NODE)


def test_forbidden_configmap_does_not_block_the_node_labels(fake_api: FakeKubeApi) -> None:
    pods = Pods()
    agent, clock = agent_with(fake_api, pods, "configmap", publish_retry_s=30.0)
    fake_api.fail_next(403, times=10_000, methods=("GET", "POST", "PATCH"), path_prefix=CM_PATH)
    run_for(agent, clock, 1.0)
    lab, ann = fake_api.labels(NODE), fake_api.annotations(NODE)
    expected = labels.encode(machine("h100-nv18-8nics"), prefix=P, status=labels.Status.DEGRADED)
    assert {k: v for k, v in lab.items() if k.startswith(P)} == expected
    assert ann[P + "status-reason"].startswith("allocation not published: configmap gputopo-system/"
                                               "gputopo-alloc-gpu-node-1: HTTP 403")
    assert labels.encode_annotations(machine("h100-nv18-8nics"), prefix=P).items() <= ann.items()
    assert counter(agent, "gputopo_agent_publish_errors_total", target="configmap") == 1
    assert counter(agent, "gputopo_agent_publish_errors_total", target="node") == 0
    assert counter(agent, "gputopo_agent_publish_failing", target="configmap") == 1
    assert counter(agent, "gputopo_agent_publish_failing", target="node") == 0
    ok, why = agent.healthy(900.0)
    assert ok and "configmap failing" in why
    node_writes = len(fake_api.writes("nodes"))
    run_for(agent, clock, 300.0)  # retried every 30 s (one ConfigMap GET each), the Node is not rewritten
    assert len(fake_api.writes("nodes")) == node_writes
    cm_gets = [r for r in fake_api.requests if r.method == "GET" and r.path.startswith(CM_PATH)]
    assert 10 <= len(cm_gets) <= 12
    fake_api._failures.clear()  # RBAC fixed
    run_for(agent, clock, 31.0)
    assert fake_api.configmap(NS, CM) is not None
    assert fake_api.labels(NODE)[P + "status"] == "ok" and P + "status-reason" not in fake_api.annotations(NODE)
    assert counter(agent, "gputopo_agent_publish_failing", target="configmap") == 0


def test_failing_node_patch_does_not_hold_back_the_allocation(fake_api: FakeKubeApi) -> None:
    pods = Pods()
    agent, clock = agent_with(fake_api, pods, "configmap", publish_retry_s=30.0,
                              allocation_min_interval_s=10.0, allocation_coalesce_s=1.0)
    fake_api.fail_next(403, times=10_000, methods=("PATCH",), path_prefix="/api/v1/nodes")
    run_for(agent, clock, 1.0)
    assert fake_api.configmap(NS, CM) is not None and fake_api.writes("nodes") == []
    assert counter(agent, "gputopo_agent_publish_failing", target="node") == 1
    assert counter(agent, "gputopo_agent_publish_errors_total", target="node") == 1
    pods.used_map[0] = "ml/a"
    run_for(agent, clock, 12.0)  # min interval 10 s + coalesce 1 s; before: held until the 30 s node retry
    state = allocation.decode(fake_api.configmap(NS, CM)["data"][carrier.DATA_KEY])  # type: ignore[index]
    assert state.used == {0: "ml/a"}
    fake_api._failures.clear()
    run_for(agent, clock, 30.0)
    assert fake_api.labels(NODE)[P + "status"] == "ok"
    assert counter(agent, "gputopo_agent_publish_failing", target="node") == 0


def test_both_carriers_fail_apart(fake_api: FakeKubeApi) -> None:
    """Carrier ``both``: the ConfigMap refused, the Node still gets labels and the allocation annotation."""
    pods = Pods()
    pods.used_map = {5: "ml/x"}
    agent, clock = agent_with(fake_api, pods, "both")
    fake_api.fail_next(403, times=10_000, methods=("GET", "POST", "PATCH"), path_prefix=CM_PATH)
    run_for(agent, clock, 1.0)
    ann = fake_api.annotations(NODE)
    assert allocation.decode(ann[ALLOC]).used == {5: "ml/x"}
    assert fake_api.labels(NODE)[P + "status"] == "degraded"
    assert "allocation not published" in ann[P + "status-reason"]


def test_configmap_refused_keeps_the_old_node_annotation_while_switching(fake_api: FakeKubeApi) -> None:
    """Switching annotation → configmap while ConfigMaps are refused must not leave the extender with neither."""
    pods = Pods()
    pods.used_map = {2: "ml/y"}
    old, clock = agent_with(fake_api, pods, "annotation")
    run_for(old, clock, 1.0)
    kept = fake_api.annotations(NODE)[ALLOC]
    fake_api.fail_next(403, times=10_000, methods=("GET", "POST", "PATCH"), path_prefix=CM_PATH)
    new, clock2 = agent_with(fake_api, pods, "configmap")
    run_for(new, clock2, 1.0)
    assert fake_api.annotations(NODE)[ALLOC] == kept
    fake_api._failures.clear()
    run_for(new, clock2, 31.0)
    assert ALLOC not in fake_api.annotations(NODE) and fake_api.configmap(NS, CM) is not None


def test_run_once_attempts_both_and_reports_the_failure(fake_api: FakeKubeApi) -> None:
    from labeler.topology.errors import PublishError

    agent, _ = agent_with(fake_api, Pods(), "configmap")
    fake_api.fail_next(403, times=10_000, methods=("GET", "POST", "PATCH"), path_prefix=CM_PATH)
    with pytest.raises(PublishError, match="configmap"):
        agent.run_once()
    assert fake_api.labels(NODE)[P + "status"] == "degraded"  # the Node was written all the same


@pytest.mark.parametrize("which", ["annotation", "configmap"])
def test_a_refused_write_with_a_change_pending_does_not_spin(fake_api: FakeKubeApi, which: str) -> None:
    """While a target waits for its retry, the loop sleeps (heartbeat-capped) instead of stepping at once."""
    pods = Pods()
    agent, clock = agent_with(fake_api, pods, which, publish_retry_s=30.0)
    run_for(agent, clock, 1.0)
    path = CM_PATH if which == "configmap" else "/api/v1/nodes"
    fake_api.fail_next(403, times=10_000, methods=("GET", "POST", "PATCH"), path_prefix=path)
    pods.used_map[1] = "ml/z"
    steps = 0
    end = clock.t + 120.0
    while clock.t < end:
        wait = agent.step()
        steps += 1
        assert wait > 0 or steps < 5, f"step() asks to be called again at once (t={clock.t})"
        clock.t = min(end, clock.t + max(min(wait, agent.config.heartbeat_s), 0.001))
    assert steps <= 120 / agent.config.heartbeat_s + 10
