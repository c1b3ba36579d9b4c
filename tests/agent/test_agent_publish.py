"""The publisher through the REAL kubernetes client, over HTTP, against the in-test API server."""

from __future__ import annotations

import dataclasses

import pytest
from agent_support import (
    MACHINES,
    fake_api_fixture,  # noqa: F401  (provides the fake_api fixture)
    kube_api,
    machine,
)
from fake_kube_api import FakeKubeApi

from labeler.agent.patch import MERGE_PATCH, Desired, NodeMeta
from labeler.agent.publish import Backoff, KubeNodePublisher
from labeler.topology import labels
from labeler.topology.errors import PublishError

P = "gputopo.io/"
NODE = "gpu-node-1"


class Sleeps:
    """Injected sleep: records the delays instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def publisher(api: FakeKubeApi, sleeps: Sleeps, *, attempts: int = 5, rand: float = 0.5) -> KubeNodePublisher:
    return KubeNodePublisher(kube_api(api.url), NODE, P, attempts=attempts, backoff=Backoff(0.5, 8.0),
                             sleep=sleeps, rand=lambda: rand, wall_clock=lambda: 1_700_000_000.0)


def topo_planner(name: str, status: labels.Status = labels.Status.OK):  # type: ignore[no-untyped-def]
    topo = machine(name)
    lab = labels.encode(topo, prefix=P, status=status)
    ann = labels.encode_annotations(topo, prefix=P)
    return lambda current: Desired(lab, ann)


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_first_labelling_then_unchanged_is_zero_writes(fake_api: FakeKubeApi, name: str) -> None:
    sleeps = Sleeps()
    pub = publisher(fake_api, sleeps)
    foreign_before = {k: v for k, v in fake_api.labels(NODE).items() if not k.startswith(P)}
    result = pub.publish(topo_planner(name))
    assert result.outcome == "patched"
    writes = fake_api.writes()
    assert len(writes) == 1 and writes[0].content_type == MERGE_PATCH
    body = writes[0].json()
    assert body["metadata"]["resourceVersion"]  # optimistic concurrency precondition was sent
    want = labels.encode(machine(name), prefix=P)
    got = fake_api.labels(NODE)
    assert {k: v for k, v in got.items() if k.startswith(P)} == want
    assert {k: v for k, v in got.items() if not k.startswith(P)} == foreign_before
    decoded = labels.decode_topology(fake_api.annotations(NODE), prefix=P)
    assert decoded is not None and decoded == dataclasses.replace(machine(name), source="", warnings=())
    fake_api.reset_log()
    assert pub.publish(topo_planner(name)).outcome == "unchanged"
    assert fake_api.writes() == [] and [r.method for r in fake_api.requests] == ["GET"]
    assert sleeps.calls == []


def test_hardware_change_sends_only_changed_keys(fake_api: FakeKubeApi) -> None:
    pub = publisher(fake_api, Sleeps())
    pub.publish(topo_planner("dgx1-v100"))
    fake_api.reset_log()
    pub.publish(topo_planner("aws-p4d"))
    (write,) = fake_api.writes()
    old, new = labels.encode(machine("dgx1-v100"), prefix=P), labels.encode(machine("aws-p4d"), prefix=P)
    changed = {k for k in new if old.get(k) != new[k]}
    assert set(write.json()["metadata"]["labels"]) == changed
    assert set(write.json()["metadata"]["annotations"]) == {P + "topology"}


def test_stale_owned_keys_removed_foreign_kept(fake_api: FakeKubeApi) -> None:
    def plant(node: dict) -> None:  # type: ignore[type-arg]
        node["metadata"]["labels"].update({P + "legacy-key": "1", "team.example.com/owner": "ml"})
        node["metadata"]["annotations"].update({P + "old-annotation": "x", "team.example.com/note": "keep"})

    fake_api.modify(NODE, plant)
    publisher(fake_api, Sleeps()).publish(topo_planner("h100-nv18-8nics"))
    lab, ann = fake_api.labels(NODE), fake_api.annotations(NODE)
    assert P + "legacy-key" not in lab and P + "old-annotation" not in ann
    assert lab["team.example.com/owner"] == "ml" and ann["team.example.com/note"] == "keep"
    assert lab["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    (write,) = fake_api.writes()
    assert write.json()["metadata"]["labels"][P + "legacy-key"] is None


@pytest.mark.parametrize("status", [409, 500, 502, 503])
def test_retryable_errors_then_success(fake_api: FakeKubeApi, status: int) -> None:
    sleeps = Sleeps()
    fake_api.fail_next(status, times=2, methods=("PATCH",))
    result = publisher(fake_api, sleeps).publish(topo_planner("dgx1-v100"))
    assert result.outcome == "patched" and result.attempts == 3
    assert result.retries == (("409",) * 2 if status == 409 else ("5xx",) * 2)
    assert len(fake_api.writes()) == 1
    gets = [r for r in fake_api.requests if r.method == "GET"]
    assert len(gets) == 3  # every retry re-reads and re-plans
    assert sleeps.calls == [0.25 + 0.5 * 0.25, 0.5 + 0.5 * 0.5]  # exponential, with (fixed) jitter


def test_genuine_conflict_replans_from_fresh_state(fake_api: FakeKubeApi) -> None:
    """Another writer changes the node between our GET and PATCH: the server says 409; we re-read."""
    fired = []

    def other_writer(name: str) -> None:
        if not fired:
            fired.append(name)
            fake_api.modify(name, lambda n: n["metadata"]["labels"].update({P + "planted-meanwhile": "1"}))

    fake_api.after_get = other_writer
    result = publisher(fake_api, Sleeps()).publish(topo_planner("dgx-a100-nps4"))
    assert [r.status for r in fake_api.requests if r.method == "PATCH"] == [409, 200]
    assert result.retries == ("409",)
    # the re-plan saw the key planted meanwhile and removed it (it is ours and not desired)
    assert P + "planted-meanwhile" not in fake_api.labels(NODE)
    assert fake_api.writes()[0].json()["metadata"]["labels"][P + "planted-meanwhile"] is None


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("Sat, 14 Nov 2023 22:13:40 GMT", 20.0)])
def test_429_honours_retry_after(fake_api: FakeKubeApi, header: str, expected: float) -> None:
    sleeps = Sleeps()
    fake_api.fail_next(429, times=1, retry_after=header, methods=("PATCH",))
    result = publisher(fake_api, sleeps, rand=0.0).publish(topo_planner("gh200"))
    assert result.outcome == "patched" and result.retries == ("429",)
    assert sleeps.calls == [expected]  # 1_700_000_000 is 22:13:20 GMT: the HTTP-date is 20 s later


def test_429_on_the_get_is_retried_too(fake_api: FakeKubeApi) -> None:
    sleeps = Sleeps()
    fake_api.fail_next(429, times=1, retry_after="3", methods=("GET",))
    assert publisher(fake_api, sleeps, rand=0.0).publish(topo_planner("gh200")).outcome == "patched"
    assert sleeps.calls == [3.0]


def test_gives_up_with_publish_error_after_n_tries(fake_api: FakeKubeApi) -> None:
    sleeps = Sleeps()
    fake_api.fail_next(500, times=10, methods=("PATCH",))
    with pytest.raises(PublishError, match="gave up after 4 attempts: HTTP 500"):
        publisher(fake_api, sleeps, attempts=4).publish(topo_planner("dgx1-v100"))
    assert len([r for r in fake_api.requests if r.method == "PATCH"]) == 4
    assert len(sleeps.calls) == 3 and sleeps.calls == sorted(sleeps.calls)
    assert fake_api.writes() == []


@pytest.mark.parametrize("status", [403, 404, 422])
def test_not_retryable_fails_at_once(fake_api: FakeKubeApi, status: int) -> None:
    sleeps = Sleeps()
    fake_api.fail_next(status, methods=("PATCH",))
    with pytest.raises(PublishError, match=f"HTTP {status}.*not retryable"):
        publisher(fake_api, sleeps).publish(topo_planner("dgx1-v100"))
    assert sleeps.calls == []


def test_unknown_node_is_404_publish_error(fake_api: FakeKubeApi) -> None:
    pub = KubeNodePublisher(kube_api(fake_api.url), "no-such-node", P, sleep=Sleeps())
    with pytest.raises(PublishError, match="HTTP 404"):
        pub.publish(topo_planner("dgx1-v100"))


def test_connection_refused_is_retried_then_publish_error() -> None:
    sleeps = Sleeps()
    with FakeKubeApi() as dead:
        url = dead.url
    pub = KubeNodePublisher(kube_api(url), NODE, P, attempts=3, sleep=sleeps, rand=lambda: 0.0)
    with pytest.raises(PublishError, match="connection error"):
        pub.publish(lambda cur: Desired())
    assert len(sleeps.calls) == 2


def test_server_rejects_invalid_label_with_422(fake_api: FakeKubeApi) -> None:
    """The fake validates like the real server, so an encoding bug cannot hide behind it."""
    with pytest.raises(PublishError, match="HTTP 422"):
        publisher(fake_api, Sleeps()).publish(lambda cur: Desired({P + "bad": "has spaces"}, {}))


def test_read_returns_node_meta(fake_api: FakeKubeApi) -> None:
    meta = publisher(fake_api, Sleeps()).read()
    assert isinstance(meta, NodeMeta) and meta.labels["kubernetes.io/hostname"] == NODE
    assert meta.resource_version == fake_api.node(NODE)["metadata"]["resourceVersion"]
