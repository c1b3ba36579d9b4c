"""The extender fails; GPU pods keep scheduling (``ignorable: true``), none is lost.

Same 42-node fleet as the scheduling scenario, stand-in kubelet running in the
background. With the extender stopped, the scheduler's calls fail (connection refused)
and, the extender being ignorable, it schedules with its own plugins: topology-blind,
but the pods run. Restarting the extender in the middle of a stream of pods loses none:
every pod is bound exactly once, and the new extender answers again once ready (its HTTP
port opens after the informers synced; ``/readyz`` and the ``cache_synced`` gauge say so).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from .cluster import Cluster, metric
from .procs import wait_for
from .scenario import Scenario, notebook_pod, start_scenario, vllm_pod

STREAM = 30  # 1-GPU pods, one every 0.25 s


@pytest.fixture(scope="module")
def scenario(cluster: Cluster) -> Iterator[Scenario]:
    s = start_scenario(cluster)
    s.standin.start()
    try:
        yield s
    finally:
        s.standin.stop()
    assert not s.standin.errors, s.standin.errors[:3]


def _bound(s: Scenario, keys: list[str]) -> dict[str, str]:
    out = {}
    for key in keys:
        node = s.node_of(key)
        if node:
            out[key] = node
    return out


def test_extender_down_pods_still_schedule(scenario: Scenario) -> None:
    port = scenario.extender_url.rsplit(":", 1)[1]
    scenario.cluster.stop("extender")
    keys = [scenario.create(notebook_pod(f"while-down-{i}")) for i in range(3)]
    # `required` is the extender's to enforce: with the extender down the pod is placed topology-blind
    keys.append(scenario.create(vllm_pod("llama-70b-tp2-6d5f7c9b8-down0")))
    wait_for("pods bound with the extender down", lambda: len(_bound(scenario, keys)) == len(keys), 60,
             alive=scenario.scheduler.dead)
    log = scenario.scheduler.log.read_text(errors="replace")
    assert f"127.0.0.1:{port}" in log and "connection refused" in log
    wait_for("stand-in allocated them", lambda: all(k in scenario.standin.allocations for k in keys), 30)


def test_extender_restart_mid_stream_loses_no_pod(scenario: Scenario) -> None:
    port = int(scenario.extender_url.rsplit(":", 1)[1])
    if scenario.extender.dead():
        scenario.extender, _ = scenario.cluster.start_extender(port=port)
    keys: list[str] = []

    def stream() -> None:
        for i in range(STREAM):
            keys.append(scenario.create(notebook_pod(f"stream-{i:02d}")))
            time.sleep(0.25)

    creator = threading.Thread(target=stream)
    creator.start()
    wait_for("a third of the stream", lambda: len(keys) >= STREAM // 3, 30)
    scenario.cluster.stop("extender")
    time.sleep(1.0)  # a few pods arrive while it is down
    proc, url = scenario.cluster.start_extender(port=port)  # same URL as in the scheduler's configuration
    scenario.extender = proc
    restarted_at = len(keys)
    assert urllib.request.urlopen(f"{url}/readyz", timeout=5).status == 200
    assert metric(url, "gputopo_extender_cache_synced") == 1
    creator.join(timeout=60)
    assert len(keys) == STREAM
    wait_for("every streamed pod bound", lambda: len(_bound(scenario, keys)) == STREAM, 90,
             alive=scenario.scheduler.dead)
    wait_for("stand-in allocated every pod", lambda: all(k in scenario.standin.allocations for k in keys), 30)
    # each pod was bound once: one Scheduled event per pod, and GPUs never handed out twice
    for key in keys:
        assert len(list(scenario.events(key, "Scheduled"))) == 1, key
    seen: set[tuple[str, int]] = set()
    for a in scenario.standin.allocations.values():
        for g in a.gpus:
            assert (a.node, g) not in seen
            seen.add((a.node, g))
    # the restarted extender took part: the scheduler called its filter for the later pods
    assert restarted_at < STREAM, "the stream ended before the extender was back; make it longer"
    assert metric(url, "gputopo_extender_requests_total", 'verb="filter"', 'outcome="ok"') >= 1
