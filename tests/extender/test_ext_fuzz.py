"""Fuzzing both endpoints over real loopback HTTP: no 5xx, no exception escapes, memory stays bounded.

Bodies are random bytes, random JSON, and the protocol's real requests (both
list shapes) with one field replaced by a hostile value: deep nesting,
400-digit numbers, ``1e400``, ``NaN``, huge strings, wrong types, and Node
objects whose gputopo annotations are damaged in the same ways. Both a
stateless and a cached-mode app (names looked up in a fixed, synced view) are
hit through one keep-alive connection each, as kube-scheduler does. Memory:
``tracemalloc`` follows the server threads (same process); the peak of any
one request and the growth over the whole run are bounded.

schemathesis is not used: the handlers read raw bytes on purpose (a body model
would make FastAPI answer 422, see :mod:`extender.app`), so the generated
OpenAPI has no request schema to derive cases from; the strategies below are
the schema, written from the protocol.
"""

from __future__ import annotations

import copy
import http.client
import json
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from ext_support import PREFIX, PROTOCOL, corpus, make_service, node_object, serve_service
from hostile_json import paths, replace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ext_hostile import FixedView

from extender.service import Service, ServiceConfig
from labeler.topology import allocation, labels
from policy.nodes.facts import facts_from_object

REQUESTS = [json.loads((PROTOCOL / f).read_text()) for f in (
    "filter-request-nodenames.json", "filter-request-nodes.json",
    "prioritize-request-nodenames.json", "prioritize-request-nodes.json")]
HOSTILE: list[Any] = [
    "[" * 3000, "9" * 400, 10**400, 1e308, "1e400", "NaN", -1, True, None, "", "x" * 200_000, {"a": [{}]},
    ["X"] * 500, "\x00\ud800", "0-1000000", "required", "nvlink",
]
leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12),
                 st.sampled_from(HOSTILE))
json_value = st.recursive(leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                    max_size=4), max_leaves=16)
BOARD = corpus("h100_nv18")
NAMES = ["gpu-node-a1", "gpu-node-b2"]
PEAK_MIB = 64  # per request, server side (the largest hostile body here is ~200 KB)
GROWTH_MIB = 48  # over the whole run: bounded caches, nothing per-request kept


PATHS = [(i, p) for i, r in enumerate(REQUESTS) for p in paths(r, max_items=3)]


def gputopo_node(name: str, damage: Any, where: str) -> dict[str, Any]:
    node = node_object(name, BOARD, free=range(4))
    ann = node["metadata"]["annotations"]
    if where == "topology":
        doc = json.loads(ann[PREFIX + labels.ANNOTATION_TOPOLOGY])
        doc["gpus"][1]["cpu_affinity"] = damage
        ann[PREFIX + labels.ANNOTATION_TOPOLOGY] = json.dumps(doc)
    elif where == "allocation":
        ann[PREFIX + allocation.ANNOTATION_SUFFIX] = damage if isinstance(damage, str) else json.dumps(damage)
    else:
        ann[PREFIX + labels.ANNOTATION_TOPOLOGY] = damage if isinstance(damage, str) else json.dumps(damage)
    return node


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=400))
    if kind == 1:
        return json.dumps(draw(json_value)).encode()
    if kind == 2:
        i, path = draw(st.sampled_from(PATHS))
        doc = replace(copy.deepcopy(REQUESTS[i]), path, draw(json_value))
        raw = json.dumps(doc, allow_nan=True).encode()
        if draw(st.booleans()):
            raw = raw.replace(b'"1e400"', b"1e400").replace(b'"NaN"', b"NaN")  # as JSON numbers/literals
        return raw
    nodes = [gputopo_node(n, draw(json_value), draw(st.sampled_from(["topology", "allocation", "whole"])))
             for n in NAMES]
    pod = copy.deepcopy(REQUESTS[0]["Pod"])
    pod["metadata"]["annotations"] = {PREFIX + "placement": draw(st.sampled_from(["required", "preferred"]))}
    return json.dumps({"Pod": pod, "Nodes": {"items": nodes}, "NodeNames": None}).encode()


def cached_mode_service() -> Service:
    base = make_service()
    service = Service(ServiceConfig(base.config.prefix, base.config.locality_keys, base.config.scorer,
                                    decode_node_objects=False), metrics=base.metrics)
    facts = {n: facts_from_object(node_object(n, BOARD, free=range(i * 4, 8)), prefix=PREFIX, locality_keys=(),
                                  registry=service.topologies, now=time.time()) for i, n in enumerate(NAMES)}
    service.view = FixedView(facts)
    return service


class Client:
    """One keep-alive connection per server, reopened only when the server closed it (413 answers)."""

    def __init__(self, addr: tuple[str, int]) -> None:
        self.addr = addr
        self.conn = http.client.HTTPConnection(*addr, timeout=30)

    def post(self, path: str, body: bytes) -> int:
        for attempt in range(2):
            try:
                self.conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.status == 200 and path == "/filter":
                    assert set(json.loads(data)) == {"Nodes", "NodeNames", "FailedNodes",
                                                     "FailedAndUnresolvableNodes", "Error"}
                if resp.getheader("Connection", "").lower() == "close":
                    self.reopen()
                return resp.status
            except (ConnectionError, http.client.HTTPException):
                if attempt:
                    raise
                self.reopen()
        raise AssertionError("unreachable")

    def reopen(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection(*self.addr, timeout=30)


@pytest.fixture(scope="module")
def clients() -> Iterator[dict[str, Client]]:
    with serve_service(make_service(), max_body_bytes=1 << 20) as stateless, \
            serve_service(cached_mode_service(), max_body_bytes=1 << 20) as cached:
        yield {"stateless": Client(stateless), "cached": Client(cached)}


@settings(max_examples=250, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(body=bodies())
def test_hostile_bodies_over_http_never_get_a_5xx(clients: dict[str, Client], body: bytes) -> None:
    for mode, client in clients.items():
        for verb in ("/filter", "/prioritize"):
            status = client.post(verb, body)
            assert status < 500, (mode, verb, status, body[:200])
            assert status in ((200,) if verb == "/filter" else (200, 400)), status


def test_memory_stays_bounded_under_hostile_bodies(clients: dict[str, Client]) -> None:
    """The same kinds of bodies again, under tracemalloc: per-request peak and whole-run growth."""
    import random

    rng = random.Random(7)
    samples = [_sample(rng) for _ in range(60)]
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        worst = 0.0
        for body in samples:
            tracemalloc.reset_peak()
            for client in clients.values():
                for verb in ("/filter", "/prioritize"):
                    assert client.post(verb, body) < 500
            worst = max(worst, (tracemalloc.get_traced_memory()[1] - baseline) / 2**20)
        growth = (tracemalloc.get_traced_memory()[0] - baseline) / 2**20
    finally:
        tracemalloc.stop()
    assert worst < PEAK_MIB, worst
    assert growth < GROWTH_MIB, growth


def _sample(rng: Any) -> bytes:
    """Hostile bodies without hypothesis (tracemalloc would follow its own bookkeeping)."""
    value = rng.choice(HOSTILE)
    i = rng.randrange(len(REQUESTS))
    path = rng.choice(paths(REQUESTS[i], max_items=3))
    if rng.random() < 0.5:
        nodes = [gputopo_node(n, rng.choice(HOSTILE), rng.choice(["topology", "allocation", "whole"]))
                 for n in NAMES]
        return json.dumps({"Pod": REQUESTS[0]["Pod"], "Nodes": {"items": nodes}, "NodeNames": None}).encode()
    return json.dumps(replace(copy.deepcopy(REQUESTS[i]), path, value), allow_nan=True).encode()
