"""The HTTP edge: malformed, truncated and oversized bodies, health, metrics, no tracebacks.

Choices under test (protocol README §2.4, rules 9 and 18):
- filter, undecodable body → HTTP 200 with ``Error`` set (kube-scheduler logs our text);
- prioritize, undecodable body → HTTP 400 (scores are dropped either way; a bare array has no Error);
- body over ``max_body_bytes`` → 413 before reading it (Content-Length) or as soon as the chunked
  stream passes the limit;
- the server keeps serving afterwards.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from ext_support import PROTOCOL, corpus, filter_body, make_service, node_object, pod, serve_service

from extender.service import Service

WIRE = (PROTOCOL / "filter-request-nodenames.wire.json").read_bytes()
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[tuple[str, int], Service]]:
    service = make_service()
    with serve_service(service, max_body_bytes=LIMIT) as addr:
        yield addr, service


def request(addr: tuple[str, int], method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {}, encode_chunked=not isinstance(body, bytes | None))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def assert_filter_error(status: int, raw: bytes, fragment: str) -> None:
    assert status == 200
    doc = json.loads(raw)
    assert set(doc) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    assert doc["Nodes"] is None and doc["NodeNames"] is None
    assert fragment in doc["Error"]
    assert "Traceback" not in doc["Error"] and 'File "' not in doc["Error"]


BAD_BODIES = [
    ("empty", b"", "empty request body"),
    ("not-json", b"hello", "not JSON"),
    ("truncated", WIRE[: len(WIRE) // 2], "not JSON"),
    ("array", b"[1,2,3]", "must be a JSON object"),
    ("wrong-type", b'{"Pod":{},"Nodes":null,"NodeNames":"gpu-node-a1"}', "NodeNames"),
    ("items-not-objects", b'{"Pod":{},"Nodes":{"items":[1]},"NodeNames":null}', "Nodes.items"),
    ("invalid-utf8", b'{"Pod":{"metadata":{"name":"\xff"}}}', "not JSON"),
    ("deep-nesting", b"[" * 100_000 + b"]" * 100_000, "not JSON"),
]


@pytest.mark.parametrize(("case", "body", "fragment"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_bodies(case: str, body: bytes, fragment: str, server: tuple[tuple[str, int], Service]) -> None:
    addr, _ = server
    status, raw = request(addr, "POST", "/filter", body, {"Content-Type": "application/json"})
    if case == "deep-nesting":
        # over the 64 KiB limit of this server → refused before parsing
        assert status == 413
    else:
        assert_filter_error(status, raw, fragment)
        status, raw = request(addr, "POST", "/prioritize", body, {"Content-Type": "application/json"})
        assert status == 400
        assert fragment in json.loads(raw)["error"]
    # and the server is still fine
    status, raw = request(addr, "POST", "/filter", WIRE)
    assert status == 200 and json.loads(raw)["Error"] == ""


def test_deep_nesting_within_limit_is_a_clean_error() -> None:
    body = b"[" * 20_000 + b"]" * 20_000
    with serve_service(make_service()) as addr:
        status, raw = request(addr, "POST", "/filter", body)
        assert_filter_error(status, raw, "not JSON")


def test_oversized_content_length_is_refused_without_reading(server: tuple[tuple[str, int], Service]) -> None:
    """Declare 1 GiB, send nothing: the answer must come back at once (413), not wait for the body."""
    addr, service = server
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(b"POST /filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1073741824\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 413")
    assert service.metrics.registry.get_sample_value(
        "gputopo_extender_requests_total", {"verb": "filter", "outcome": "too_large"}) >= 1


def test_oversized_chunked_body_is_refused(server: tuple[tuple[str, int], Service]) -> None:
    """A chunked body without Content-Length is cut off with 413 once it passes the limit.

    The client sends 8 KiB chunks and stops as soon as an answer is readable (a client that
    keeps writing after the server closed would get a reset instead of the 413).
    """
    import select

    addr, _ = server
    sent = 0
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(b"POST /prioritize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        answer = b""
        for _ in range(64):  # up to 512 KiB, 8x the limit
            s.sendall(b"2000\r\n" + b" " * 8192 + b"\r\n")
            sent += 8192
            if select.select([s], [], [], 0.05)[0]:
                break
        else:
            s.sendall(b"0\r\n\r\n")
        while chunk := s.recv(65536):  # the server closes after a 413 ("connection: close")
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert b"larger than" in answer
    assert LIMIT < sent < 8 * LIMIT  # refused soon after the limit, not after the whole body
    status, _ = request(addr, "POST", "/prioritize", WIRE)
    assert status == 200


def test_body_at_the_limit_is_accepted() -> None:
    nodes = [node_object(f"n{i}", corpus("h100_1nic")) for i in range(3)]
    body = filter_body(pod(2), nodes)
    with serve_service(make_service(), max_body_bytes=len(body)) as addr:
        status, raw = request(addr, "POST", "/filter", body)
        assert status == 200 and len(json.loads(raw)["Nodes"]["items"]) == 3
        status, _ = request(addr, "POST", "/filter", body + b" ")
        assert status == 413


def test_internal_errors_never_leak_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    service = make_service()

    def boom(_: bytes) -> Any:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(service, "filter", boom)
    monkeypatch.setattr(service, "prioritize", boom)
    with serve_service(service) as addr:
        status, raw = request(addr, "POST", "/filter", WIRE)
        assert_filter_error(status, raw, "gputopo extender internal error")
        assert b"secret" not in raw
        status, raw = request(addr, "POST", "/prioritize", WIRE)
        assert status == 500 and b"secret" not in raw and b"Traceback" not in raw


def test_error_text_is_safe_as_a_go_format_string(server: tuple[tuple[str, int], Service]) -> None:
    addr, _ = server
    status, raw = request(addr, "POST", "/filter", b'{"NodeNames": 5%}')
    doc = json.loads(raw)
    assert status == 200 and doc["Error"]
    assert "%" not in doc["Error"].replace("%%", "")


def test_health_ready_metrics_and_unconfigured_verbs(server: tuple[tuple[str, int], Service]) -> None:
    addr, _ = server
    assert request(addr, "GET", "/healthz")[0] == 200
    assert request(addr, "GET", "/readyz")[0] == 200  # stateless: always ready
    request(addr, "POST", "/filter", WIRE)
    status, raw = request(addr, "GET", "/metrics")
    text = raw.decode()
    assert status == 200
    assert 'gputopo_extender_requests_total{outcome="ok",verb="filter"}' in text
    assert "gputopo_extender_request_seconds_bucket" in text
    for verb in ("bind", "preempt"):
        body = (PROTOCOL / f"{verb}-request.json").read_bytes() if verb == "bind" else WIRE
        assert request(addr, "POST", f"/{verb}", body)[0] == 404
    assert request(addr, "GET", "/filter")[0] == 405


def test_readyz_follows_the_ready_callback() -> None:
    state = {"ok": False}
    with serve_service(make_service(), ready=lambda: state["ok"]) as addr:
        assert request(addr, "GET", "/readyz")[0] == 503
        state["ok"] = True
        assert request(addr, "GET", "/readyz")[0] == 200


def test_large_nodelist_over_http_round_trips() -> None:
    """500 labelled nodes (≈1.5 MB, handled off the event loop): every object echoed unchanged."""
    topo = corpus("h100_nv18")
    nodes = [node_object(f"gpu-{i:03d}", topo, free=set(range(i % 9))) for i in range(500)]
    body = filter_body(pod(4, annotations={"gputopo.io/placement": "required"}), nodes)
    with serve_service(make_service()) as addr:
        status, raw = request(addr, "POST", "/filter", body)
    doc = json.loads(raw)
    assert status == 200 and doc["Error"] == ""
    # free counts 0..8: with < 4 free the count is NodeResourcesFit's call (pass); ≥ 4 free always NV18
    assert len(doc["Nodes"]["items"]) == 500
    assert doc["Nodes"]["items"] == nodes


def test_small_requests_do_not_wait_for_delayed_acks() -> None:
    """Regression guard for listen_socket's TCP_NODELAY: without it each answer took ≥ 40 ms."""
    import statistics
    import time

    with serve_service(make_service()) as addr:
        conn = http.client.HTTPConnection(*addr, timeout=30)
        conn.connect()
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # like Go's net/http
        times = []
        for _ in range(9):
            t = time.perf_counter()
            conn.request("POST", "/filter", body=WIRE, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            times.append(time.perf_counter() - t)
        conn.close()
    assert statistics.median(times) < 0.030, times
