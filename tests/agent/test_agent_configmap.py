"""The allocation ConfigMap carrier through the REAL kubernetes client against the in-test API server.

Covers the publisher on its own (create, zero writes when unchanged, one patch
per change, 404 → create, 409 from a stale resourceVersion and from a racing
create, retries, long node names) and the agent loop with each carrier
(``configmap``, ``annotation``, ``both``, and a switch from annotation to
configmap that removes our stale Node annotation and nothing else).
"""

from __future__ import annotations

import json

import pytest
from agent_support import (
    fake_api_fixture,  # noqa: F401  (provides the fake_api fixture)
    kube_api,
    machine,
)
from fake_kube_api import FakeKubeApi, realistic_gpu_node
from test_agent_loop import Clock, Pods, ScriptedProber, run_for

from labeler.agent import cli
from labeler.agent.configmap import KubeConfigMapPublisher
from labeler.agent.health import AgentMetrics
from labeler.agent.loop import Agent, LoopConfig
from labeler.agent.patch import MERGE_PATCH
from labeler.agent.publish import Backoff, KubeNodePublisher, RetryPolicy
from labeler.agent.settings import AgentSettings, load
from labeler.topology import allocation, carrier
from labeler.topology.errors import ConfigError, PublishError

#: the settings' defaults, without the environment (LoopConfig.from_settings: no second copy)
SETTINGS = AgentSettings.model_construct()

P = "gputopo.io/"
NODE = "gpu-node-1"
NS = "gputopo-system"
CM = "gputopo-alloc-gpu-node-1"
ALLOC = P + allocation.ANNOTATION_SUFFIX
CM_PATH = f"/api/v1/namespaces/{NS}/configmaps"


def state(free: set[int], used: dict[int, str] | None = None, ts: int = 1_700_000_000) -> allocation.AllocationState:
    return allocation.AllocationState(frozenset(free), dict(used or {}), ts)


def cm_publisher(api: FakeKubeApi, node: str = NODE, sleeps: list[float] | None = None,
                 attempts: int = 5) -> KubeConfigMapPublisher:
    retry = RetryPolicy(attempts, Backoff(0.5, 8.0), sleep=(sleeps if sleeps is not None else []).append,
                        rand=lambda: 0.5)
    return KubeConfigMapPublisher(kube_api(api.url), node, NS, retry=retry)


def cm_state(api: FakeKubeApi, name: str = CM) -> allocation.AllocationState:
    cm = api.configmap(NS, name)
    assert cm is not None, f"configmap {name} missing"
    return allocation.decode(cm["data"][carrier.DATA_KEY])


def test_first_publish_creates_the_configmap_owned_by_the_node(fake_api: FakeKubeApi) -> None:
    s = state({0, 1, 2, 5}, {3: "ml/a", 4: "ml/a", 6: "ml/b", 7: "ml/b"})
    result = cm_publisher(fake_api).publish(s)
    assert result.outcome == "created" and result.attempts == 1
    assert [(r.method, r.path.split("?")[0], r.status) for r in fake_api.requests] == [
        ("GET", f"{CM_PATH}/{CM}", 404), ("GET", f"/api/v1/nodes/{NODE}", 200), ("POST", CM_PATH, 201)]
    cm = fake_api.configmap(NS, CM)
    assert cm is not None
    meta = cm["metadata"]
    assert meta["labels"] == {"app.kubernetes.io/managed-by": "gputopo", "gputopo.io/node": NODE}
    assert "annotations" not in meta
    node_uid = fake_api.node(NODE)["metadata"]["uid"]
    assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Node", "name": NODE, "uid": node_uid}]
    assert cm["data"] == {"allocation": allocation.encode(s)}
    assert cm_state(fake_api) == s
    assert fake_api.annotations(NODE).get(ALLOC) is None  # the Node is not written at all


def test_unchanged_is_zero_writes_and_change_is_one_patch(fake_api: FakeKubeApi) -> None:
    pub = cm_publisher(fake_api)
    pub.publish(state({0, 1}, {2: "a/b"}))
    fake_api.reset_log()
    # same free/used sets observed later: only the timestamp differs → no write, the stored ts is kept
    assert pub.publish(state({0, 1}, {2: "a/b"}, ts=1_700_000_999)).outcome == "unchanged"
    assert fake_api.writes() == [] and [r.method for r in fake_api.requests] == ["GET"]
    assert cm_state(fake_api).observed_at == 1_700_000_000
    rv = fake_api.configmap(NS, CM)["metadata"]["resourceVersion"]  # type: ignore[index]
    fake_api.reset_log()
    assert pub.publish(state({0}, {1: "x/y", 2: "a/b"}, ts=1_700_001_000)).outcome == "patched"
    (write,) = fake_api.writes()
    assert write.method == "PATCH" and write.content_type == MERGE_PATCH
    assert write.json() == {"metadata": {"resourceVersion": rv},
                            "data": {"allocation": allocation.encode(state({0}, {1: "x/y", 2: "a/b"}, 1_700_001_000))}}
    assert [r.method for r in fake_api.requests] == ["GET", "PATCH"]  # no Node GET: the owner is already set


def test_deleted_configmap_is_recreated(fake_api: FakeKubeApi) -> None:
    pub = cm_publisher(fake_api)
    pub.publish(state({0, 1}))
    del fake_api.configmaps[(NS, CM)]  # someone deleted it (or the Node was recreated and GC took it)
    fake_api.reset_log()
    assert pub.publish(state({0, 1})).outcome == "created"
    assert [r.method for r in fake_api.writes()] == ["POST"]
    assert cm_state(fake_api).free == frozenset({0, 1})


def test_conflict_on_patch_refetches_and_replans(fake_api: FakeKubeApi) -> None:
    pub = cm_publisher(fake_api)
    pub.publish(state({0, 1, 2}))
    fired: list[str] = []

    def other_writer(ns: str, name: str) -> None:
        if not fired:
            fired.append(name)
            fake_api.modify_configmap(ns, name, lambda cm: cm["metadata"].setdefault("annotations", {})
                                      .update({"team.example.com/note": "x"}))

    fake_api.after_configmap_get = other_writer
    sleeps: list[float] = []
    pub = cm_publisher(fake_api, sleeps=sleeps)
    fake_api.reset_log()
    result = pub.publish(state({0}))
    assert result.outcome == "patched" and result.retries == ("409",) and len(sleeps) == 1
    assert [(r.method, r.status) for r in fake_api.requests] == [("GET", 200), ("PATCH", 409), ("GET", 200),
                                                                 ("PATCH", 200)]
    cm = fake_api.configmap(NS, CM)
    assert cm is not None and cm["metadata"]["annotations"] == {"team.example.com/note": "x"}  # foreign key kept
    assert cm_state(fake_api).free == frozenset({0})


def test_racing_create_gets_already_exists_then_patches(fake_api: FakeKubeApi) -> None:
    """GET says 404, another agent instance creates it, our POST gets 409 AlreadyExists: re-read, patch."""
    original = fake_api.after_get

    def racer(name: str) -> None:  # fires on the Node GET made for the owner reference, i.e. before our POST
        if fake_api.configmap(NS, CM) is None:
            fake_api.put_configmap({"metadata": {"name": CM, "namespace": NS, "labels": {"x": "y"}},
                                    "data": {"allocation": allocation.encode(state({7}))}})

    fake_api.after_get = racer
    result = cm_publisher(fake_api).publish(state({0, 1}))
    fake_api.after_get = original
    assert result.outcome == "patched" and result.retries == ("409",)
    posts = [r for r in fake_api.requests if r.method == "POST"]
    assert [p.status for p in posts] == [409] and posts[0].json()["metadata"]["name"] == CM
    cm = fake_api.configmap(NS, CM)
    assert cm is not None and cm_state(fake_api).free == frozenset({0, 1})
    # the racer's ConfigMap had neither our labels nor the owner: both repaired, its foreign label kept
    assert cm["metadata"]["labels"] == {"x": "y", "app.kubernetes.io/managed-by": "gputopo", "gputopo.io/node": NODE}
    assert [o["kind"] for o in cm["metadata"]["ownerReferences"]] == ["Node"]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_retryable_errors_use_the_shared_retry_policy(fake_api: FakeKubeApi, status: int) -> None:
    sleeps: list[float] = []
    fake_api.fail_next(status, times=2, methods=("POST",), path_prefix=CM_PATH)
    result = cm_publisher(fake_api, sleeps=sleeps).publish(state({0}))
    assert result.outcome == "created" and result.attempts == 3
    assert result.retries == (("429",) if status == 429 else ("5xx",)) * 2
    assert sleeps == [0.25 + 0.5 * 0.25, 0.5 + 0.5 * 0.5]


def test_gives_up_and_forbidden_is_not_retried(fake_api: FakeKubeApi) -> None:
    fake_api.fail_next(500, times=3, methods=("GET",), path_prefix=CM_PATH)
    with pytest.raises(PublishError, match=r"configmap gputopo-system/gputopo-alloc-gpu-node-1: gave up after 3"):
        cm_publisher(fake_api, attempts=3).publish(state({0}))
    fake_api.fail_next(403, methods=("POST",), path_prefix=CM_PATH)
    sleeps: list[float] = []
    with pytest.raises(PublishError, match=r"HTTP 403.*not retryable"):
        cm_publisher(fake_api, sleeps=sleeps).publish(state({0}))
    assert sleeps == [] and fake_api.configmap(NS, CM) is None


@pytest.mark.parametrize("length", [63, 64, 239, 253])
def test_long_node_names_give_valid_names_and_labels(length: int) -> None:
    """The in-test server validates names (≤253, DNS subdomain) and label values (≤63) like the real one."""
    node = ("n" * (length - 2) + "-1")[:length]
    with FakeKubeApi() as api:
        api.add_node(realistic_gpu_node(node))
        assert cm_publisher(api, node=node).publish(state({0})).outcome == "created"
        (name,) = [n for (_, n) in api.configmaps]
        assert name == carrier.configmap_name(node) and len(name) <= 253
        cm = api.configmap(NS, name)
        assert cm is not None and carrier.node_of(cm) == node
        label = cm["metadata"]["labels"][carrier.NODE_KEY]
        assert (label == node) == (length <= 63) and len(label) <= 63
        assert ("annotations" in cm["metadata"]) == (length > 63)
        api.reset_log()
        assert cm_publisher(api, node=node).publish(state({0})).outcome == "unchanged"


# -- the loop with each carrier ---------------------------------------------------------------------------
def carrier_agent(api: FakeKubeApi, pods: Pods, which: str) -> tuple[Agent, Clock]:
    clock = Clock()
    pub = KubeNodePublisher(kube_api(api.url), NODE, P, sleep=lambda s: None, rand=lambda: 0.0)
    cm_pub = None if which == "annotation" else cm_publisher(api)
    config = LoopConfig.from_settings(SETTINGS, prefix=P, allocation_on_node=which in ("annotation", "both"))
    agent = Agent(config, ScriptedProber(machine("h100-nv18-8nics")), pub, pods, metrics=AgentMetrics(),
                  allocation_publisher=cm_pub, clock=clock, wall_clock=lambda: 1.7e9 + clock.t)
    return agent, clock


def churn(agent: Agent, clock: Clock, pods: Pods) -> None:
    """Two allocation changes, far enough apart to be two writes."""
    pods.used_map[0] = "ml/a"
    run_for(agent, clock, 30.0)
    pods.used_map[1] = "ml/b"
    run_for(agent, clock, 30.0)


def test_configmap_carrier_loop_never_writes_the_node_for_allocations(fake_api: FakeKubeApi) -> None:
    pods = Pods()
    agent, clock = carrier_agent(fake_api, pods, "configmap")
    run_for(agent, clock, 1.0)
    assert [r.path.split("?")[0] for r in fake_api.writes()] == [CM_PATH, f"/api/v1/nodes/{NODE}"]
    assert ALLOC not in fake_api.annotations(NODE)
    assert cm_state(fake_api).free == frozenset(range(8))
    fake_api.reset_log()
    churn(agent, clock, pods)
    assert fake_api.writes("nodes") == []
    assert [r.method for r in fake_api.writes("configmaps")] == ["PATCH", "PATCH"]
    # an allocation change alone does not even read the (large) Node: one ConfigMap GET + PATCH each
    assert [(r.method, "/configmaps/" in r.path) for r in fake_api.requests] == [("GET", True), ("PATCH", True)] * 2
    assert cm_state(fake_api).used == {0: "ml/a", 1: "ml/b"}
    fake_api.reset_log()
    run_for(agent, clock, 3600.0)  # steady: resync GETs only
    assert fake_api.writes() == []
    assert agent.metrics.publish_total.labels("patched")._value.get() == 3


def test_annotation_carrier_still_works(fake_api: FakeKubeApi) -> None:
    pods = Pods()
    agent, clock = carrier_agent(fake_api, pods, "annotation")
    run_for(agent, clock, 1.0)
    churn(agent, clock, pods)
    assert allocation.decode(fake_api.annotations(NODE)[ALLOC]).used == {0: "ml/a", 1: "ml/b"}
    assert not any("/configmaps" in r.path for r in fake_api.requests) and fake_api.configmaps == {}


def test_both_carriers_write_both(fake_api: FakeKubeApi) -> None:
    pods = Pods()
    agent, clock = carrier_agent(fake_api, pods, "both")
    run_for(agent, clock, 1.0)
    fake_api.reset_log()
    churn(agent, clock, pods)
    assert len(fake_api.writes("nodes")) == 2 and len(fake_api.writes("configmaps")) == 2
    on_node = fake_api.annotations(NODE)[ALLOC]
    assert allocation.decode(on_node) == cm_state(fake_api)
    assert fake_api.configmap(NS, CM)["data"]["allocation"] == on_node  # type: ignore[index]


def test_switch_from_annotation_to_configmap_removes_only_our_stale_annotation(fake_api: FakeKubeApi) -> None:
    pods = Pods()
    pods.used_map = {5: "ml/x"}
    old, clock = carrier_agent(fake_api, pods, "annotation")
    run_for(old, clock, 1.0)
    fake_api.modify(NODE, lambda n: n["metadata"]["annotations"].update({"team.example.com/allocation": "theirs"}))
    before = fake_api.node(NODE)["metadata"]
    assert ALLOC in before["annotations"]
    fake_api.reset_log()
    new, clock2 = carrier_agent(fake_api, pods, "configmap")  # the DaemonSet rolled out with the new carrier
    run_for(new, clock2, 1.0)
    # the ConfigMap is written first, so the extender is never left with neither carrier
    assert [r.path.split("?")[0] for r in fake_api.writes()] == [CM_PATH, f"/api/v1/nodes/{NODE}"]
    (node_write,) = fake_api.writes("nodes")
    assert node_write.json()["metadata"] == {"annotations": {ALLOC: None},
                                             "resourceVersion": before["resourceVersion"]}
    after = fake_api.node(NODE)["metadata"]
    assert ALLOC not in after["annotations"]
    assert {k: v for k, v in after["annotations"].items()} == {
        k: v for k, v in before["annotations"].items() if k != ALLOC}
    assert after["labels"] == before["labels"]
    assert cm_state(fake_api).used == {5: "ml/x"}


def test_publish_error_on_the_configmap_is_retried_by_the_loop(fake_api: FakeKubeApi) -> None:
    pods = Pods()
    agent, clock = carrier_agent(fake_api, pods, "configmap")
    fake_api.fail_next(503, times=5, methods=("POST",), path_prefix=CM_PATH)
    run_for(agent, clock, 1.0)
    assert fake_api.configmap(NS, CM) is None
    assert agent.metrics.publish_total.labels("error")._value.get() == 1
    # the Node is written all the same (it does not wait for the ConfigMap) and says why it is degraded
    assert fake_api.labels(NODE)[P + "status"] == "degraded"
    assert "allocation not published" in fake_api.annotations(NODE)[P + "status-reason"]
    run_for(agent, clock, 31.0)  # publish_retry_s
    assert cm_state(fake_api).free == frozenset(range(8)) and agent.last_success_at is not None
    assert fake_api.labels(NODE)[P + "status"] == "ok" and P + "status-reason" not in fake_api.annotations(NODE)


# -- settings and CLI ---------------------------------------------------------------------------------------
def test_settings_default_to_configmap_and_read_the_downward_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "n1")
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    s = load()
    assert (s.allocation_carrier, s.pod_namespace) == ("configmap", "gputopo-system")
    assert cli.loop_config(s).allocation_on_node is False
    monkeypatch.setenv("POD_NAMESPACE", "gpu-ops")
    monkeypatch.setenv("GPUTOPO_ALLOCATION_CARRIER", "both")
    s = load()
    assert (s.allocation_carrier, s.pod_namespace, cli.loop_config(s).allocation_on_node) == ("both", "gpu-ops", True)
    assert load({"allocation_carrier": "annotation"}).allocation_carrier == "annotation"
    monkeypatch.setenv("GPUTOPO_ALLOCATION_CARRIER", "lease")
    with pytest.raises(ConfigError, match="allocation_carrier"):
        load()


def test_cli_flag_and_dry_run_print_the_configmap(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.build_parser().parse_args(["--allocation-carrier", "both"]).allocation_carrier == "both"
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["--allocation-carrier", "etcd"])
    settings = load({"node_name": NODE, "dry_run": True, "allocation_carrier": "configmap"})
    pub = cli._allocation_publisher(settings)
    assert pub is not None
    assert pub.publish(state({0, 1}, {2: "a/b"})).outcome == "dry-run"
    assert pub.publish(state({0, 1}, {2: "a/b"}, ts=1_700_000_500)).outcome == "unchanged"
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line) == {"configMap": f"{NS}/{CM}",
                                "data": {"allocation": allocation.encode(state({0, 1}, {2: "a/b"}))}}
    assert cli._allocation_publisher(load({"node_name": NODE, "allocation_carrier": "annotation"})) is None
    assert cli._allocation_publisher(load({"node_name": NODE, "allocation": False})) is None
