"""HTTP layer: ``POST /filter``, ``POST /prioritize``, ``POST /explain``, ``/healthz``, ``/readyz``, ``/metrics``.

The last three are also served by a second, plain-HTTP app (``app.state.health_app``) that
``gputopo extender`` listens with on ``--metrics-port``: Prometheus and the kubelet's probes
reach them there without reaching the scheduling port, and without its mutual TLS
(docs/security.md, "NetworkPolicy", "TLS").

Why raw bodies instead of FastAPI body models: FastAPI answers a body it cannot
validate with **422**, which kube-scheduler treats as a failed extender for
every pod (protocol README §7.7). The handlers read the bytes themselves
(bounded, see below) and hand them to :class:`~extender.service.Service`,
which decides the answer per the protocol.

A narrow surface (``docs/reliability.md``):

- **concurrency**: at most ``max_concurrent`` filter/prioritize requests are
  handled at once; one more is answered **429** at once, before its body is
  read (an ``ignorable`` extender then lets the scheduler go on topology-blind);
- **body**: ``Content-Length`` above ``max_body_bytes`` is answered **413**
  before reading anything; a chunked body is read incrementally and abandoned
  with 413 as soon as it passes the limit; a body that does not arrive within
  ``body_timeout`` seconds is answered **408**. Both close the connection;
- **off the event loop**: decoding and deciding run in ``worker_threads``
  threads, so a large or cold request never holds the loop that answers
  ``/healthz`` and reads other requests. A warm one (a body under 1 MiB whose every
  node has its answer prepared, :meth:`Service.answer_now`) is answered on the loop:
  C-level passes bounded by the cluster's size, cheaper than the thread hop;
- no answer ever contains a stack trace: unexpected exceptions become a
  generic message (filter: HTTP 200 + ``Error``; prioritize: 500) and are
  logged here. (The service already isolates failures per node.)

``/bind`` and ``/preempt`` are not served (404): our scheduler config sets no
``bindVerb``/``preemptVerb``, and kube-scheduler never calls a verb that is
not configured (protocol README rule 4). A 404 makes a misconfiguration loud.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypedDict

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from extender.explain import EXPLAIN_MAX_NODES, explain
from extender.metrics import Metrics
from extender.server import listen_socket
from extender.service import Answer, Service
from extender.settings import ExtenderSettings
from extender.wire import encode_filter_result

__all__ = ["AppLimits", "create_app", "limits", "listen_socket"]

log = logging.getLogger("gputopo.extender")

JSON = "application/json"


class AppLimits(TypedDict):
    """:func:`create_app`'s limits; :func:`limits` reads them from the one settings object."""

    max_body_bytes: int
    max_concurrent: int
    body_timeout: float
    worker_threads: int


def limits(settings: ExtenderSettings) -> AppLimits:
    """The app's limits for ``settings`` (their defaults depend on the mode: :class:`ExtenderSettings`)."""
    return AppLimits(max_body_bytes=settings.body_limit, max_concurrent=settings.concurrency_limit,
                     body_timeout=settings.body_timeout_seconds, worker_threads=settings.worker_threads)


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise _TooLarge
        except ValueError:
            pass  # let the server's own parser deal with a bad header
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(timeout):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
    return b"".join(chunks)


def _health_routes(app: FastAPI, metrics: Metrics, ready: Callable[[], bool] | None,
                   unsynced_seconds: Callable[[], float] | None) -> None:
    @app.get("/healthz")
    async def healthz() -> Response:
        return Response("ok\n", media_type="text/plain")

    @app.get("/readyz")
    async def readyz() -> Response:
        ok = ready is None or ready()
        metrics.synced.set(1 if ok else 0)
        return Response("ok\n" if ok else "informers not synced, or failing for too long\n",
                        status_code=200 if ok else 503, media_type="text/plain")

    @app.get("/metrics")
    async def metrics_() -> Response:
        if ready is not None:
            metrics.synced.set(1 if ready() else 0)
        if unsynced_seconds is not None:
            metrics.cache_age.set(unsynced_seconds())
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(
    service: Service,
    *,
    max_body_bytes: int,
    max_concurrent: int,
    body_timeout: float,
    worker_threads: int,
    ready: Callable[[], bool] | None = None,
    unsynced_seconds: Callable[[], float] | None = None,
) -> FastAPI:
    """Build the ASGI app around a :class:`Service`.

    The limits have no defaults here: they come from the settings (``**limits(settings)``),
    whose defaults depend on the mode. ``ready``: the readiness check (cached mode:
    informers synced and not stale). ``unsynced_seconds``: for the metric of how long the
    cache has been failing. ``app.state.on_timeout`` counts a connection closed by the
    server for a late request head (:func:`extender.server.serve` hands it to the protocol).
    """
    app = FastAPI(title="gputopo scheduler extender", docs_url=None, redoc_url=None, openapi_url=None)
    metrics = service.metrics
    metrics.synced.set(1 if ready is None or ready() else 0)
    workers = anyio.CapacityLimiter(worker_threads)
    inflight = 0

    async def run(verb: str, request: Request, handler: Callable[[bytes], Answer]) -> Response:
        nonlocal inflight
        if inflight >= max_concurrent:
            metrics.refused.labels(verb, "too_many").inc()
            msg = f"more than {max_concurrent} requests in flight; retry"
            return JSONResponse({"error": msg}, status_code=429, headers={"Retry-After": "1", "Connection": "close"})
        inflight += 1
        metrics.inflight.set(inflight)
        try:
            return await _handle(verb, request, handler)
        finally:
            inflight -= 1
            metrics.inflight.set(inflight)

    async def _handle(verb: str, request: Request, handler: Callable[[bytes], Answer]) -> Response:
        try:
            body = await _read_body(request, max_body_bytes, body_timeout)
        except _TooLarge:
            metrics.requests.labels(verb, "too_large").inc()
            metrics.refused.labels(verb, "too_large").inc()
            log.warning("%s: request body over %d bytes refused (413)", verb, max_body_bytes)
            msg = f"request body larger than {max_body_bytes} bytes"
            return JSONResponse({"error": msg}, status_code=413, headers={"Connection": "close"})
        except TimeoutError:
            metrics.refused.labels(verb, "timeout").inc()
            log.warning("%s: request body not received within %.0fs (408)", verb, body_timeout)
            msg = f"request body not received within {body_timeout:.0f}s"
            return JSONResponse({"error": msg}, status_code=408, headers={"Connection": "close"})
        try:
            answer = service.answer_now(verb, body)  # a warm request: prepared answers only, no thread hop
            if answer is None:
                answer = await anyio.to_thread.run_sync(handler, body, limiter=workers)
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

    @app.post("/explain")
    async def explain_(request: Request) -> Response:
        """Debug: a prioritize body, answered per node with its set, ring, bandwidth and terms (extender/explain.py)."""
        wanted = request.query_params.getlist("node")[:EXPLAIN_MAX_NODES]
        return await run("explain", request, lambda body: explain(service, body, wanted))

    health = FastAPI(title="gputopo scheduler extender: health and metrics", docs_url=None, redoc_url=None,
                     openapi_url=None)
    for target in (app, health):
        _health_routes(target, metrics, ready, unsynced_seconds)
    #: served on its own plain-HTTP port (--metrics-port): probes and Prometheus without the scheduling port
    app.state.health_app = health

    def on_timeout(reason: str) -> None:  # before any verb is known: label "-"
        metrics.refused.labels("-", reason).inc()

    app.state.on_timeout = on_timeout

    return app
