"""The agent's status label and the allocation's age, as the extender reads them.

Contract (docs/labels.md "Status", docs/extender.md): ``error`` or an allocation
older than ``allocation_max_age_seconds`` → fail open for that node (filter passes
it with a logged reason, prioritize gives 0, ``gputopo_extender_fail_open_total``
counts it by reason); ``degraded`` is scored like ``ok`` (its topology lists the GPUs
that work). Nodes: corpus 051 (HGX H100, NV18 all-to-all), all 8 GPUs free.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from ext_support import PREFIX, corpus, filter_body, node_object, pod

from extender.metrics import Metrics
from extender.service import Service, ServiceConfig
from extender.settings import DEFAULT_LOCALITY_KEYS, load
from policy.scoring import resolve

MAX_AGE = 1800.0
NOW = int(time.time())


def service(max_age: float = MAX_AGE) -> Service:
    config = ServiceConfig(prefix=PREFIX, locality_keys=DEFAULT_LOCALITY_KEYS, scorer=resolve(["bandwidth", "island"]),
                           allocation_max_age_s=max_age)
    return Service(config, metrics=Metrics())


def nodes() -> list[dict[str, Any]]:
    topo = corpus("h100_nv18")
    return [
        node_object("ok", topo, free=range(8), observed_at=NOW - 60),
        node_object("degraded", topo, free=range(8), observed_at=NOW - 60,
                    extra_labels={PREFIX + "status": "degraded"}),
        node_object("error", topo, free=range(8), observed_at=NOW - 60, extra_labels={PREFIX + "status": "error"}),
        node_object("stale", topo, free=range(8), observed_at=NOW - 2 * 3600),
        node_object("junk-status", topo, free=range(8), observed_at=NOW - 60,
                    extra_labels={PREFIX + "status": "banana"}),
    ]


def fail_open(svc: Service, reason: str) -> float:
    return svc.metrics.registry.get_sample_value("gputopo_extender_fail_open_total", {"reason": reason}) or 0.0


def test_prioritize_gives_zero_to_error_stale_and_junk_and_scores_degraded_like_ok() -> None:
    svc = service()
    body = filter_body(pod(2), nodes())
    answer = svc.prioritize(body)
    scores = {e["Host"]: e["Score"] for e in json.loads(answer.body)}
    # ok and degraded: an NV18 pair, 370.8 GB/s, the request's best (0 off); entirely free boards: island 2 -> 8
    assert scores == {"ok": 8, "degraded": 8, "error": 0, "stale": 0, "junk-status": 0}
    assert (fail_open(svc, "status_error"), fail_open(svc, "stale_allocation")) == (1.0, 1.0)
    assert fail_open(svc, "undecodable_status") == 1.0


def test_filter_passes_them_with_a_logged_reason(caplog: pytest.LogCaptureFixture) -> None:
    svc = service()
    # a required 8-GPU pod; every node could host it, but error/stale ones pass without being evaluated
    required = pod(8, annotations={PREFIX + "placement": "required"})
    with caplog.at_level(logging.WARNING, logger="gputopo.extender"):
        answer = svc.filter(filter_body(required, nodes()))
    doc = json.loads(answer.body)
    assert [n["metadata"]["name"] for n in doc["Nodes"]["items"]] == ["ok", "degraded", "error", "stale", "junk-status"]
    assert doc["FailedNodes"] == {} and doc["FailedAndUnresolvableNodes"] == {}
    text = caplog.text
    assert "fail open (status_error), e.g. error" in text and "fail open (stale_allocation), e.g. stale" in text


def test_error_node_is_not_judged_on_its_kept_topology() -> None:
    """An error node whose kept labels say 8 free GPUs but whose allocation says none free still passes."""
    svc = service()
    topo = corpus("h100_nv18")
    busy_error = node_object("error", topo, free=[], observed_at=NOW - 60, extra_labels={PREFIX + "status": "error"})
    busy_ok = node_object("ok", topo, free=[], observed_at=NOW - 60)
    required = pod(4, annotations={PREFIX + "placement": "required"})
    doc = json.loads(svc.filter(filter_body(required, [busy_error, busy_ok])).body)
    assert [n["metadata"]["name"] for n in doc["Nodes"]["items"]] == ["error", "ok"]  # count is kube-scheduler's


def test_max_age_zero_turns_the_age_check_off() -> None:
    svc = service(max_age=0)
    scores = {e["Host"]: e["Score"] for e in json.loads(svc.prioritize(filter_body(pod(2), nodes())).body)}
    assert scores["stale"] == 8 and fail_open(svc, "stale_allocation") == 0.0


def test_allocation_without_a_timestamp_is_not_judged_stale() -> None:
    svc = service()
    node = node_object("no-ts", corpus("h100_nv18"), free=range(8), observed_at=None)
    scores = {e["Host"]: e["Score"] for e in json.loads(svc.prioritize(filter_body(pod(2), [node])).body)}
    assert scores == {"no-ts": 8}


def test_one_setting_with_a_documented_default() -> None:
    assert load().allocation_max_age_seconds == 1800.0
    assert load(allocation_max_age_seconds=0).allocation_max_age_seconds == 0.0
