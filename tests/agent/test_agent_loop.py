"""The agent loop with a simulated clock, real kubernetes client, in-test API server."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from agent_support import (
    fake_api_fixture,  # noqa: F401  (provides the fake_api fixture)
    kube_api,
    machine,
)
from fake_kube_api import FakeKubeApi

from labeler.agent.health import AgentMetrics
from labeler.agent.loop import NO_GPU_REASON, Agent, LoopConfig
from labeler.agent.publish import KubeNodePublisher
from labeler.agent.settings import AgentSettings
from labeler.agent.sources import ProbeOutcome
from labeler.topology import allocation, labels
from labeler.topology.errors import NoGpuError, ProbeError, SourceUnavailable
from labeler.topology.model import Topology

#: the settings' defaults, without the environment (LoopConfig.from_settings: no second copy); these
#: tests read the allocation back from the Node, so it travels in the annotation
SETTINGS = AgentSettings.model_construct(allocation_carrier="annotation")

P = "gputopo.io/"
NODE = "gpu-node-1"
ALLOC = P + allocation.ANNOTATION_SUFFIX


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class ScriptedProber:
    """Returns/raises what the test says; the last entry repeats."""

    def __init__(self, *script: Topology | Exception | ProbeOutcome) -> None:
        self.script = list(script)
        self.calls = 0

    def probe(self) -> ProbeOutcome:
        item = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(item, Exception):
            raise item
        return item if isinstance(item, ProbeOutcome) else ProbeOutcome(item)


class Pods:
    """Fake kubelet: GPU index → pod, mutable by the test."""

    def __init__(self) -> None:
        self.used_map: dict[int, str] = {}
        self.error: Exception | None = None

    def used(self, topology: Topology) -> Mapping[int, str]:
        if self.error is not None:
            raise self.error
        return dict(self.used_map)


def make_agent(api: FakeKubeApi, prober: ScriptedProber, pods: Pods | None = None, **cfg: float) -> tuple[Agent, Clock]:
    clock = Clock()
    pub = KubeNodePublisher(kube_api(api.url), NODE, P, sleep=lambda s: None, rand=lambda: 0.0)
    config = LoopConfig.from_settings(SETTINGS, prefix=P, **cfg)  # type: ignore[arg-type]
    agent = Agent(config, prober, pub, pods, metrics=AgentMetrics(), clock=clock, wall_clock=lambda: 1.7e9 + clock.t)
    return agent, clock


def run_for(agent: Agent, clock: Clock, seconds: float) -> None:
    end = clock.t + seconds
    while clock.t < end:
        wait = agent.step()  # like Agent.run: waits are capped at the heartbeat
        clock.t = min(end, clock.t + max(min(wait, agent.config.heartbeat_s), 0.001))


def owned(d: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in d.items() if k.startswith(P)}


@pytest.mark.parametrize("name", ["dgx1-v100", "h100-nv18-8nics", "rtx4090x8-allsys"])
def test_steady_state_is_zero_writes(fake_api: FakeKubeApi, name: str) -> None:
    """With the allocation heartbeat off, nothing changes and nothing is written."""
    agent, clock = make_agent(fake_api, ScriptedProber(machine(name)), Pods(), allocation_refresh_s=0.0)
    run_for(agent, clock, 1.0)
    assert len(fake_api.writes()) == 1
    lab, ann = fake_api.labels(NODE), fake_api.annotations(NODE)
    assert owned(lab) == labels.encode(machine(name), prefix=P)
    state = allocation.decode(ann[ALLOC])
    assert state.free == frozenset(machine(name).gpu_indices) and state.used == {}
    fake_api.reset_log()
    run_for(agent, clock, 3600.0)
    assert fake_api.writes() == []
    gets = [r for r in fake_api.requests if r.method == "GET"]
    assert len(gets) == 12  # one resync GET per 300 s, no writes


def test_steady_state_writes_only_the_allocation_heartbeat(fake_api: FakeKubeApi) -> None:
    """Default refresh (600 s): an idle node re-stamps its unchanged allocation 6 times an hour, nothing else."""
    pods = Pods()
    pods.used_map = {2: "ml/train-0"}
    agent, clock = make_agent(fake_api, ScriptedProber(machine("aws-p4d")), pods)
    run_for(agent, clock, 1.0)
    first = allocation.decode(fake_api.annotations(NODE)[ALLOC])
    fake_api.reset_log()
    run_for(agent, clock, 3600.0)
    writes = fake_api.writes()
    assert len(writes) == 6
    stamps = []
    for w in writes:
        meta = w.json()["metadata"]
        assert "labels" not in meta and set(meta["annotations"]) == {ALLOC}  # only the allocation, re-stamped
        state = allocation.decode(meta["annotations"][ALLOC])
        assert state.same_allocation(first)
        stamps.append(state.observed_at)
    assert [b - a for a, b in zip([first.observed_at, *stamps], stamps, strict=False)] == [600] * 6


def test_probe_failure_keeps_last_good_labels_and_sets_status(fake_api: FakeKubeApi) -> None:
    topo = machine("dgx-a100-nps4")
    prober = ScriptedProber(topo, ProbeError("NVML: driver/library version mismatch"), topo)
    agent, clock = make_agent(fake_api, prober, probe_interval_s=60.0)
    run_for(agent, clock, 1.0)
    good = owned(fake_api.labels(NODE))
    run_for(agent, clock, 60.0)  # second probe fails
    lab, ann = fake_api.labels(NODE), fake_api.annotations(NODE)
    assert lab[P + "status"] == "degraded"
    assert {k: v for k, v in owned(lab).items() if k != P + "status"} == {
        k: v for k, v in good.items() if k != P + "status"}
    assert "driver/library version mismatch" in ann[P + "status-reason"]
    assert labels.decode_topology(ann, prefix=P) is not None  # topology annotation kept
    (write,) = fake_api.writes()[1:]
    assert set(write.json()["metadata"]["labels"]) == {P + "status"}
    run_for(agent, clock, 30.0)  # retried with backoff (10 s), succeeds: back to ok, reason removed
    assert fake_api.labels(NODE)[P + "status"] == "ok" and P + "status-reason" not in fake_api.annotations(NODE)


def test_no_gpu_is_error_status_no_crash_and_backoff(fake_api: FakeKubeApi) -> None:
    prober = ScriptedProber(NoGpuError("no NVIDIA GPU found on this machine"))
    agent, clock = make_agent(fake_api, prober, probe_interval_s=60.0, probe_backoff_max_s=600.0)
    run_for(agent, clock, 3600.0)
    lab, ann = fake_api.labels(NODE), fake_api.annotations(NODE)
    assert owned(lab) == labels.status_labels(labels.Status.ERROR, prefix=P)
    assert ann[P + "status-reason"] == NO_GPU_REASON
    assert len(fake_api.writes()) == 1
    # 10, 20, 40, 80, 160, 320, 600, 600... seconds between probes: 11 probes in the hour, not 60
    assert prober.calls == 11
    assert agent.healthy(900.0)[0]  # the agent itself is healthy: it publishes the error status


def test_restart_with_failing_probe_keeps_previous_labels(fake_api: FakeKubeApi) -> None:
    topo = machine("h100-nv18-8nics")
    first, clock = make_agent(fake_api, ScriptedProber(topo), Pods())
    run_for(first, clock, 1.0)
    before = owned(fake_api.labels(NODE)), owned(fake_api.annotations(NODE))
    second, clock2 = make_agent(fake_api, ScriptedProber(ProbeError("nvidia-smi timed out")), Pods())
    run_for(second, clock2, 1.0)
    lab, ann = owned(fake_api.labels(NODE)), owned(fake_api.annotations(NODE))
    assert lab == {**before[0], P + "status": "degraded"}
    assert ann == {**before[1], P + "status-reason": "probe failed: nvidia-smi timed out"}
    third, clock3 = make_agent(fake_api, ScriptedProber(NoGpuError("gone")), Pods())
    run_for(third, clock3, 1.0)
    assert fake_api.labels(NODE)[P + "status"] == "error"
    assert fake_api.labels(NODE)[P + "gpu-count"] == "8"  # labels are never wiped


def test_labels_kept_from_an_older_agent_keep_their_schema(fake_api: FakeKubeApi) -> None:
    """A v1 label set kept through a failing probe must not be relabelled v2: its values mean v1 things."""
    v1 = {P + "schema": "v1", P + "status": "ok", P + "gpu-count": "8", P + "nvlink": "true",
          P + "island-nvlink": "8", P + "island-pcie-switch": "8", P + "island-host-bridge": "8",
          P + "island-numa": "8", P + "numa-shape": "8", P + "nic-count": "0", P + "nic-locality": "none",
          P + "gpudirect": "false", P + "topology-class": "0123456789"}
    fake_api.modify(NODE, lambda node: node["metadata"].setdefault("labels", {}).update(v1))
    agent, clock = make_agent(fake_api, ScriptedProber(ProbeError("NVML: driver/library version mismatch")))
    run_for(agent, clock, 1.0)
    lab = owned(fake_api.labels(NODE))
    assert lab == {**v1, P + "status": "degraded"}


def test_hardware_change_writes_only_changed_keys(fake_api: FakeKubeApi) -> None:
    prober = ScriptedProber(machine("dgx1-v100"), machine("nv12-bridge-pairs"))
    agent, clock = make_agent(fake_api, prober, probe_interval_s=60.0)
    run_for(agent, clock, 61.0)
    assert len(fake_api.writes()) == 2
    old, new = labels.encode(machine("dgx1-v100"), prefix=P), labels.encode(machine("nv12-bridge-pairs"), prefix=P)
    assert set(fake_api.writes()[1].json()["metadata"]["labels"]) == {k for k in new if old[k] != new[k]}


def test_degraded_probe_is_published_as_degraded(fake_api: FakeKubeApi) -> None:
    out = ProbeOutcome(machine("aws-p4d"), degraded="GPU3 lost")
    agent, clock = make_agent(fake_api, ScriptedProber(out))
    run_for(agent, clock, 1.0)
    assert fake_api.labels(NODE)[P + "status"] == "degraded"
    assert fake_api.annotations(NODE)[P + "status-reason"] == "GPU3 lost"


def test_allocation_changes_are_coalesced_and_rate_limited(fake_api: FakeKubeApi) -> None:
    pods = Pods()
    agent, clock = make_agent(fake_api, ScriptedProber(machine("h100-nv18-8nics")), pods,
                              allocation_interval_s=5.0, allocation_min_interval_s=30.0, allocation_coalesce_s=1.0)
    run_for(agent, clock, 40.0)  # initial write, then quiet for longer than the min interval
    fake_api.reset_log()
    for i in range(4):  # four pods start 5 s apart: one write for the first, one for the other three
        pods.used_map.update({2 * i: f"ml/job-{i}", 2 * i + 1: f"ml/job-{i}"})
        run_for(agent, clock, 5.0)
    run_for(agent, clock, 60.0)
    writes = fake_api.writes()
    assert len(writes) == 2
    assert all(set(w.json()["metadata"]) == {"annotations", "resourceVersion"} for w in writes)
    state = allocation.decode(fake_api.annotations(NODE)[ALLOC])
    assert state.free == frozenset() and state.used[7] == "ml/job-3"


def test_allocation_change_then_revert_before_write_costs_nothing(fake_api: FakeKubeApi) -> None:
    pods = Pods()
    agent, clock = make_agent(fake_api, ScriptedProber(machine("aws-p4d")), pods,
                              allocation_interval_s=2.0, allocation_min_interval_s=30.0, allocation_coalesce_s=5.0)
    run_for(agent, clock, 1.0)
    pods.used_map[0] = "ns/short"
    run_for(agent, clock, 20.0)  # first change goes out once the window allows (write 2)
    pods.used_map.clear()
    run_for(agent, clock, 2.5)
    pods.used_map[0] = "ns/short"  # back to what was published before the min interval elapsed
    run_for(agent, clock, 120.0)
    assert len(fake_api.writes()) == 2


def test_same_allocation_observed_later_does_not_rewrite(fake_api: FakeKubeApi) -> None:
    """The annotation's timestamp must not cause a write when only the time moved."""
    pods = Pods()
    pods.used_map = {1: "a/b"}
    agent, clock = make_agent(fake_api, ScriptedProber(machine("aws-p4d")), pods)
    run_for(agent, clock, 1.0)
    first = fake_api.annotations(NODE)[ALLOC]
    fresh, clock2 = make_agent(fake_api, ScriptedProber(machine("aws-p4d")), pods)  # restart, later clock
    clock2.t += 500
    run_for(fresh, clock2, 30.0)
    assert fake_api.annotations(NODE)[ALLOC] == first and len(fake_api.writes()) == 1


def test_allocation_source_failure_keeps_last_value(fake_api: FakeKubeApi) -> None:
    pods = Pods()
    pods.used_map = {0: "x/y"}
    agent, clock = make_agent(fake_api, ScriptedProber(machine("aws-p4d")), pods)
    run_for(agent, clock, 1.0)
    kept = fake_api.annotations(NODE)[ALLOC]
    pods.error = SourceUnavailable("pod-resources: connect: permission denied")
    run_for(agent, clock, 400.0)
    assert fake_api.annotations(NODE)[ALLOC] == kept and len(fake_api.writes()) == 1
    assert agent.metrics.allocation_errors._value.get() > 0


def test_resync_repairs_our_keys_edited_by_someone_else(fake_api: FakeKubeApi) -> None:
    agent, clock = make_agent(fake_api, ScriptedProber(machine("gh200")))
    run_for(agent, clock, 1.0)
    fake_api.modify(NODE, lambda n: n["metadata"]["labels"].pop(P + "gpu-count"))
    run_for(agent, clock, 301.0)
    assert fake_api.labels(NODE)[P + "gpu-count"] == "1"
    assert len(fake_api.writes()) == 2


def test_publish_error_is_retried_later_and_health_reflects_it(fake_api: FakeKubeApi) -> None:
    agent, clock = make_agent(fake_api, ScriptedProber(machine("gh200")), publish_retry_s=30.0,
                              resync_interval_s=300.0)
    fake_api.fail_next(503, times=5, methods=("PATCH",))
    run_for(agent, clock, 1.0)
    assert fake_api.writes() == [] and agent.last_success_at is None
    assert agent.healthy(900.0) == (True, "starting")
    run_for(agent, clock, 31.0)
    assert len(fake_api.writes()) == 1 and agent.healthy(900.0)[0]
    fake_api.fail_next(500, times=10_000)
    run_for(agent, clock, 1300.0)
    ok, why = agent.healthy(900.0)
    assert not ok and "last successful sync" in why


def test_run_once_publishes_and_returns(fake_api: FakeKubeApi) -> None:
    agent, _ = make_agent(fake_api, ScriptedProber(machine("dgx1-v100")), Pods())
    result = agent.run_once()
    assert result.outcome == "patched" and len(fake_api.writes()) == 1
    assert ALLOC in fake_api.annotations(NODE)


def test_stalled_loop_fails_health_over_http(fake_api: FakeKubeApi) -> None:
    """/healthz answers 503 with the reason once the loop stops stepping."""
    import urllib.error
    import urllib.request

    from labeler.agent.health import HealthServer
    from labeler.agent.loop import STALL_AFTER_S

    agent, clock = make_agent(fake_api, ScriptedProber(machine("gh200")))
    run_for(agent, clock, 1.0)
    server = HealthServer(agent.metrics, lambda: agent.healthy(900.0), "127.0.0.1", 0).start()
    try:
        url = f"http://127.0.0.1:{server.port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as r:
            assert r.status == 200 and r.read().startswith(b"ok (status ok")
        clock.t += STALL_AFTER_S + 1  # nobody calls step() any more
        with pytest.raises(urllib.error.HTTPError) as exc:
            urllib.request.urlopen(url, timeout=2)
        assert exc.value.code == 503 and b"loop stalled" in exc.value.read()
    finally:
        server.stop()
