"""Every prioritize score can be explained: ``POST /explain`` over real loopback HTTP, the debug log line, the metrics.

Nodes are real corpus topologies (text only, see test_ext_scoring.py for the values): an H100 NV18 board with
its last two GPUs free (V = 370.8, fills the node: 10), an empty one (370.8, island 2: 8) and the RTX 4090
all-SYS box (6 GB/s: 3·log2(370.8 / 6) = 17.85 → 18 off: 0), for a 2-GPU pod.
"""

from __future__ import annotations

import http.client
import json
import logging
from typing import Any

import pytest
from ext_support import corpus, filter_body, make_service, node_object, pod, serve_service

NODES = [
    ("last-two", "h100_1nic", {3, 6}),
    ("empty", "h100_1nic", None),
    ("rtx", "rtx4090", None),
]


def nodes() -> list[dict[str, Any]]:
    return [node_object(n, corpus(t), free=f) for n, t, f in NODES] + [node_object("cpu", None)]


def post(addr: tuple[str, int], path: str, body: bytes) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(*addr, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_explain_answers_prioritize_term_by_term_over_http() -> None:
    body = filter_body(pod(2), nodes())
    service = make_service()
    with serve_service(service) as addr:
        status, prio = post(addr, "/prioritize", body)
        assert status == 200
        status, doc = post(addr, "/explain", body)
    assert status == 200
    assert {e["Host"]: e["Score"] for e in prio} == {"last-two": 10, "empty": 8, "rtx": 0, "cpu": 0}
    assert (doc["gpus"], doc["rule"], doc["reference"]) == (2, "multi-gpu", 370.8)
    by = {n["node"]: n for n in doc["nodes"]}
    assert {n: e["score"] for n, e in by.items()} == {"last-two": 10, "empty": 8, "rtx": 0, "cpu": 0}
    last = by["last-two"]
    assert last["gpus"] == [3, 6] and last["ring"] == [3, 6] and last["busbw_gbps"] == 370.8
    assert [(t["term"], t["points"]) for t in last["terms"]] == [("bandwidth", 0), ("island", 0)]
    rtx = by["rtx"]
    bw = rtx["terms"][0]
    assert (bw["term"], bw["points"], bw["value_gbps"], bw["best_gbps"]) == ("bandwidth", -18, 6.0, 370.8)
    assert rtx["bandwidth"]["bottleneck"]["where"] == "GPU0↔GPU1 SYS"
    assert by["cpu"]["state"] == "not-ours" and by["cpu"]["terms"] == []


def test_explain_in_full_only_the_nodes_asked_for() -> None:
    body = filter_body(pod(2), nodes())
    with serve_service(make_service()) as addr:
        status, doc = post(addr, "/explain?node=rtx", body)
    assert status == 200
    full = [n["node"] for n in doc["nodes"] if "terms" in n]
    assert full == ["rtx"] and [n["score"] for n in doc["nodes"]] == [10, 8, 0, 0]  # the reference is still 370.8


def test_explain_refuses_what_prioritize_refuses() -> None:
    with serve_service(make_service()) as addr:
        status, doc = post(addr, "/explain", b"{not json")
    assert status == 400 and "not JSON" in doc["error"]


def test_a_debug_log_line_per_node(caplog: pytest.LogCaptureFixture) -> None:
    service = make_service()
    with caplog.at_level(logging.DEBUG, logger="gputopo.extender"):
        service.prioritize(filter_body(pod(2), nodes()))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("prioritize ")]
    assert len(lines) == 4
    rtx = next(line for line in lines if "node=rtx " in line)
    assert "score=0 rule=multi-gpu set=0,1 busbw=6.0 value=6.0 best=370.8 bandwidth=-18 island=-2" in rtx


def test_score_metrics_count_every_score_by_rule() -> None:
    service = make_service()
    service.prioritize(filter_body(pod(2), nodes()))
    service.prioritize(filter_body(pod(0), nodes()))  # no whole GPU: 0 allocated on the GPU nodes, 10 elsewhere
    reg = service.metrics.registry

    def count(rule: str, score: int) -> float:
        return reg.get_sample_value("gputopo_extender_scores_total", {"rule": rule, "score": str(score)}) or 0.0

    assert [count("multi-gpu", s) for s in (10, 8, 0)] == [1.0, 1.0, 2.0]
    assert count("no-whole-gpu", 10) == 1.0 and count("no-whole-gpu", 8) == 1.0 and count("no-whole-gpu", 0) == 2.0
    assert reg.get_sample_value("gputopo_extender_best_busbw_gbps_count", {"rule": "multi-gpu"}) == 1.0
    assert reg.get_sample_value("gputopo_extender_best_busbw_gbps_bucket", {"rule": "multi-gpu", "le": "384.0"}) == 1.0


def test_explain_is_served_on_the_scheduling_port_only() -> None:
    """The metrics port admits scrapers (NetworkPolicy): an explanation costs a prioritize, so it is not there."""
    from ext_support import app_of

    app = app_of(make_service())
    paths = {getattr(r, "path", None) for r in app.routes}
    health = {getattr(r, "path", None) for r in app.state.health_app.routes}
    assert "/explain" in paths and "/explain" not in health and "/prioritize" not in health
