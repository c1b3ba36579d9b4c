"""HTTP layer: ``POST /filter``, ``POST /prioritize``, ``/healthz``, ``/readyz``, ``/metrics``.

Why raw bodies instead of FastAPI body models: FastAPI answers a body it cannot
validate with **422**, which kube-scheduler treats as a failed extender for
every pod (protocol README §7.7). The handlers read the bytes themselves
(bounded, see below) and hand them to :class:`~extender.service.Service`,
which decides the answer per the protocol.

Body limit: ``Content-Length`` above ``max_body_bytes`` is answered **413**
before reading anything; a chunked body is read incrementally and abandoned
with 413 as soon as it passes the limit, so memory stays bounded. No answer
ever contains a stack trace: unexpected exceptions become a generic message
(filter: HTTP 200 + ``Error``; prioritize: 500) and are logged here.

``/bind`` and ``/preempt`` are not served (404): our scheduler config sets no
``bindVerb``/``preemptVerb``, and kube-scheduler never calls a verb that is
not configured (protocol README rule 4). A 404 makes a misconfiguration loud.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from extender.service import Answer, Service
from extender.wire import encode_filter_result

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app", "listen_socket"]

log = logging.getLogger("gputopo.extender")

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
JSON = "application/json"


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP listening socket whose accepted connections get ``TCP_NODELAY``.

    Why: asyncio sets ``TCP_NODELAY`` on accepted sockets only when the
    listener's ``proto`` is ``IPPROTO_TCP``; a plain ``socket.socket()`` (what
    uvicorn binds by default) has proto 0, so uvicorn's two writes per answer
    (headers, then body) meet Nagle's algorithm and the client's delayed ACK:
    +40 ms per request on Linux (measured, see docs/performance.md). Creating
    the listener with ``IPPROTO_TCP`` fixes that for every accepted connection.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _TooLarge
        except ValueError:
            pass  # let the server's own parser deal with a bad header
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    service: Service,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ready: Callable[[], bool] | None = None,
    offload_bytes: int = 1024 * 1024,
) -> FastAPI:
    """Build the ASGI app around a :class:`Service`.

    ``ready``: the readiness check (cached mode: informers synced).
    ``offload_bytes``: bodies larger than this are handled in a worker thread
    so a 15 MB NodeList does not stall ``/healthz`` on the event loop; small
    bodies (cached mode) are handled inline, which is faster.
    """
    app = FastAPI(title="gputopo scheduler extender", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = service.metrics
    metrics.synced.set(1 if ready is None or ready() else 0)

    async def run(verb: str, request: Request, handler: Callable[[bytes], Answer]) -> Response:
        try:
            body = await _read_body(request, max_body_bytes)
        except _TooLarge:
            metrics.requests.labels(verb, "too_large").inc()
            log.warning("%s: request body over %d bytes refused (413)", verb, max_body_bytes)
            msg = f"request body larger than {max_body_bytes} bytes"
            return JSONResponse({"error": msg}, status_code=413, headers={"Connection": "close"})
        try:
            answer = await run_in_threadpool(handler, body) if len(body) > offload_bytes else handler(body)
        except Exception:  # the scheduler must never see a traceback
            log.exception("%s: internal error", verb)
            metrics.requests.labels(verb, "error").inc()
            if verb == "filter":
                err = encode_filter_result(
                    nodes=None, node_names=None, failed=None, unresolvable=None, error="gputopo extender internal error"
                )
                return Response(err, status_code=200, media_type=JSON)
            return JSONResponse({"error": "gputopo extender internal error"}, status_code=500)
        return Response(answer.body, status_code=answer.status, media_type=JSON)

    @app.post("/filter")
    async def filter_(request: Request) -> Response:
        return await run("filter", request, service.filter)

    @app.post("/prioritize")
    async def prioritize(request: Request) -> Response:
        return await run("prioritize", request, service.prioritize)

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        ok = ready is None or ready()
        metrics.synced.set(1 if ok else 0)
        return Response("ok\n" if ok else "informers not synced\n", status_code=200 if ok else 503,
                        media_type="text/plain")

    @app.get("/metrics")
    async def metrics_() -> Response:
        if ready is not None:
            metrics.synced.set(1 if ready() else 0)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
