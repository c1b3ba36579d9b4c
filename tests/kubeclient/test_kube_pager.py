"""kubeio.pager: the one paged LIST, through the real ``kubernetes`` client over HTTP.

Against the in-test API server (``fake_apiserver.py``: pages by ``limit``/``continue``, answers
an expired continue token with 410 as kube-apiserver does once etcd compacted the snapshot).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fake_apiserver import FakeApiServer
from kubernetes.client.exceptions import ApiException
from test_kube_client import write_kubeconfig

from kubeio import client as kube_client
from kubeio import pager


def node(i: int, pad: int = 0) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": f"n{i:03d}", "labels": {"pad": "x" * pad} if pad else {}}}


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    api = FakeApiServer().start()
    try:
        yield api
    finally:
        api.stop()


def core(api_url: str, tmp_path: Path) -> Any:
    return kube_client.core_api(write_kubeconfig(tmp_path / "kc", {"t": api_url}, "t"))


def names(pages: list[pager.Page | None]) -> list[str]:
    """The listed names in order, pages joined."""
    return [o["metadata"]["name"] for p in pages if p is not None for o in p.items]


def test_pages_follow_continue_tokens_and_count_what_is_left(server: FakeApiServer, tmp_path: Path) -> None:
    for i in range(25):
        server.put("nodes", node(i))
    got = list(pager.pages(core(server.url, tmp_path).list_node, limit=10, timeout=5))
    assert [len(p.items) for p in got if p is not None] == [10, 10, 5]
    # remainingItemCount: none on the last page, as kube-apiserver answers
    assert [(p.remaining, p.last) for p in got if p is not None] == [(15, False), (5, False), (None, True)]
    assert all(p is not None and p.resource_version == str(server.rv) for p in got)
    assert names(got) == [f"n{i:03d}" for i in range(25)]


@pytest.mark.parametrize("restarts", [0, 1])
def test_an_expired_continue_token_restarts_once_or_reaches_the_caller(server: FakeApiServer, tmp_path: Path,
                                                                       restarts: int) -> None:
    for i in range(25):
        server.put("nodes", node(i))
    server.expire_continue = 1
    it = pager.pages(core(server.url, tmp_path).list_node, limit=10, timeout=5, restarts=restarts)
    if restarts == 0:
        first = next(it)
        assert first is not None and len(first.items) == 10
        with pytest.raises(ApiException) as info:
            next(it)
        assert info.value.status == 410
        return
    got = list(it)
    # page 1, then None (drop it), then the whole list again from the start: each node once after the None
    assert [None if p is None else len(p.items) for p in got] == [10, None, 10, 10, 5]
    assert names(got[2:]) == [f"n{i:03d}" for i in range(25)]


def test_a_second_expiry_beyond_the_restarts_reaches_the_caller(server: FakeApiServer, tmp_path: Path) -> None:
    for i in range(25):
        server.put("nodes", node(i))
    server.expire_continue = 2
    with pytest.raises(ApiException):
        list(pager.pages(core(server.url, tmp_path).list_node, limit=10, timeout=5, restarts=1))


def test_page_size_adapts_to_bytes(server: FakeApiServer, tmp_path: Path) -> None:
    for i in range(200):
        server.put("nodes", node(i, pad=1000))  # ~1.1 KB of JSON each
    per_item = len(json.dumps(server.objects["nodes"]["/n000"]))
    # a budget of ~40 items' bytes: after the first page of 100, pages hold just under 40 items
    got = [p for p in pager.pages(core(server.url, tmp_path).list_node, limit=100, timeout=5,
                                  page_bytes=40 * per_item) if p is not None]
    sizes = [len(p.items) for p in got]
    assert sizes[0] == 100 and sum(sizes) == 200
    assert all(35 <= s <= 40 for s in sizes[1:-1]), sizes
    # a budget below ten items' bytes still moves ten at a time
    got = [p for p in pager.pages(core(server.url, tmp_path).list_node, limit=100, timeout=5,
                                  page_bytes=per_item) if p is not None]
    assert [len(p.items) for p in got][1:3] == [10, 10]


def test_cached_list_asks_the_watch_cache(server: FakeApiServer, tmp_path: Path) -> None:
    for i in range(25):
        server.put("nodes", node(i))
    server.requests.clear()
    got = list(pager.pages(core(server.url, tmp_path).list_node, limit=10, timeout=5, cached=True))
    assert [len(p.items) for p in got if p is not None] == [25]  # the cache answers in one page
    (req,) = server.requests
    assert "resourceVersion=0" in req and "resourceVersionMatch=NotOlderThan" in req


class _Garbage(BaseHTTPRequestHandler):
    body = b"<html>proxy error</html>"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(("body", "message"), [(b"<html>proxy error</html>", "not JSON"),
                                                (b'["a", "list"]', "not a JSON object")])
def test_an_answer_that_is_not_a_json_object_is_one_error(tmp_path: Path, body: bytes, message: str) -> None:
    handler = type("H", (_Garbage,), {"body": body})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        api = core(f"http://127.0.0.1:{httpd.server_address[1]}", tmp_path)
        with pytest.raises(pager.ListDecodeError, match=f"nodes list: answer is {message}"):
            list(pager.pages(api.list_node, limit=10, timeout=5, what="nodes list"))
    finally:
        httpd.shutdown()
        httpd.server_close()
