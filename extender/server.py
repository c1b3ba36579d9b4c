"""The HTTP server around the app: uvicorn with a request-head deadline, connection limits and optional TLS.

Why not plain ``uvicorn.run``: uvicorn's h11 protocol has a keep-alive timeout
but no deadline for a request *head*, so a client that opens connections and
trickles header bytes (or sends nothing) holds them for ever.
:class:`GuardedH11Protocol` arms a timer when a connection opens and whenever
a new request starts arriving, and closes the connection if the head is not
complete in ``header_timeout`` seconds. The body deadline is the app's
(:mod:`extender.app`, answered 408), the idle deadline is uvicorn's
``timeout_keep_alive``, the head size is h11's 16 KiB limit (400 beyond), and
``limit_concurrency`` answers 503 on connections beyond ``max_connections``.

TLS (optional): ``--tls-cert-file``/``--tls-key-file`` serve HTTPS; with
``--tls-client-ca-file`` every client must present a certificate signed by that
CA (mutual TLS). Python's defaults apply: TLS 1.2 or newer, no compression.
Certificates are read at start-up; a rotated certificate needs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # optional: httptools (llhttp, C); the extender falls back to h11 where it is not installed
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency, but keep h11 working without it
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

from extender.settings import ExtenderSettings

__all__ = ["GuardedH11Protocol", "guarded_protocol", "listen_socket", "metrics_config", "serve", "settle_heap",
           "uvicorn_config"]

log = logging.getLogger("gputopo.extender")


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


class _HeadDeadline:
    """The request-head deadline both guarded protocols share: a timer, the close, the count.

    A mixin placed before uvicorn's protocol class, whose ``loop``, ``transport`` and
    ``client`` it uses.
    """

    header_timeout: ClassVar[float] = 10.0
    #: called with "header" when a connection is closed for a late head (the app counts it)
    on_timeout: ClassVar[Callable[[str], None] | None] = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    client: Any
    _head_timer: asyncio.TimerHandle | None

    def _arm_head(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_late)

    def _disarm_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            log.info("closing a connection from %s: no complete request head in %.0fs", self.client,
                     self.header_timeout)
            hook = type(self).on_timeout
            if hook is not None:
                hook("header")
            self.transport.close()


class GuardedH11Protocol(_HeadDeadline, H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer = None
        self._head_cycle: object = None

    def _arm_head(self) -> None:
        if self._head_timer is None:
            self._head_cycle = self.cycle
        super()._arm_head()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head()  # a new connection must send a request head in time

    def data_received(self, data: bytes) -> None:
        if self.cycle is None or self.cycle.response_complete:
            self._arm_head()  # bytes of a new request: its head must complete in time
        super().data_received(data)
        if self.cycle is not None and self.cycle is not self._head_cycle:
            self._disarm_head()  # a new request's head was parsed

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head()
        super().connection_lost(exc)


#: the largest request head (line + headers) accepted: h11's own default, applied to httptools too
MAX_HEAD_BYTES = 16 * 1024


class HeadTooLarge(Exception):
    """A request head over :data:`MAX_HEAD_BYTES` (httptools answers it 400 and closes the connection)."""


if HttpToolsProtocol is not None:

    class GuardedHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        """uvicorn's httptools protocol with the head deadline of :class:`GuardedH11Protocol` and h11's head limit.

        llhttp itself bounds neither; uvicorn collects every header it is given. A head still
        incomplete ``header_timeout`` seconds after the connection opened or the request began
        closes the connection; a head over :data:`MAX_HEAD_BYTES` is answered 400 (an exception
        in a parser callback is the parser's error) and the connection closed, as h11 does.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._head_timer = None
            self._head_bytes = 0  # parsed head bytes (URL and headers) of the current request
            self._head_raw = 0  # raw bytes received while the head is incomplete

        def _disarm_head(self) -> None:
            self._head_raw = 0
            super()._disarm_head()

        def _count(self, n: int) -> None:
            self._head_bytes += n
            if self._head_bytes > MAX_HEAD_BYTES:
                raise HeadTooLarge(f"request head over {MAX_HEAD_BYTES} bytes")

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head()

        def data_received(self, data: bytes) -> None:
            if self.cycle is None or self.cycle.response_complete:
                self._arm_head()  # bytes of a new request (or of a first one): its head must complete in time
            super().data_received(data)
            if self._head_timer is not None and not self.transport.is_closing():
                # the head is still incomplete: llhttp holds a header value until it ends, so count raw bytes
                self._head_raw += len(data)
                if self._head_raw > MAX_HEAD_BYTES:
                    self.send_400_response("Request head too large.")

        def on_message_begin(self) -> None:
            self._head_bytes = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._disarm_head()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_head()
            super().connection_lost(exc)


def guarded_protocol(header_timeout: float, on_timeout: Callable[[str], None] | None = None,
                     http: str = "h11") -> type[Any]:
    """The guarded protocol class for ``http`` ("h11" or "httptools") with these settings (uvicorn instantiates it)."""
    attrs = {"header_timeout": header_timeout, "on_timeout": staticmethod(on_timeout) if on_timeout else None}
    if http == "httptools" and HttpToolsProtocol is not None:
        return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), attrs)
    return type("GuardedH11Protocol", (GuardedH11Protocol,), attrs)


def settle_heap() -> None:
    """Collect once, then move everything alive into the collector's permanent generation.

    Called after start-up (modules, app, settings: ~70,000 tracked objects, most
    of them the ``kubernetes`` client's classes). A full collection scans every
    tracked object and holds the GIL while it does: ~60-80 ms per pass on the
    dev VM with those objects, ~5 ms without (docs/reliability.md). Start-up
    objects live as long as the process, so they need no scanning; what they
    reference is still freed by reference counting.
    """
    gc.collect()
    gc.freeze()


def uvicorn_config(app: Any, settings: ExtenderSettings, *,
                   on_timeout: Callable[[str], None] | None = None) -> uvicorn.Config:
    """The uvicorn configuration for ``settings``: protocol, limits, timeouts, TLS."""
    tls: dict[str, Any] = {}
    if settings.tls:
        tls = {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file}
        if settings.tls_client_ca_file is not None:
            tls |= {"ssl_ca_certs": settings.tls_client_ca_file, "ssl_cert_reqs": ssl.CERT_REQUIRED}
    return _config(app, settings, on_timeout, settings.max_connections, **tls)


def metrics_config(app: Any, settings: ExtenderSettings, *,
                   on_timeout: Callable[[str], None] | None = None) -> uvicorn.Config:
    """The plain-HTTP server of ``/metrics``, ``/healthz``, ``/readyz`` (``--metrics-port``): no TLS, 64 connections."""
    return _config(app, settings, on_timeout, 64)  # probes and a few scrapers


def _config(app: Any, settings: ExtenderSettings, on_timeout: Callable[[str], None] | None,
            limit_concurrency: int, **tls: Any) -> uvicorn.Config:
    """What both servers share: the guarded protocol, the loop, logging, keep-alive."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(settings.header_timeout_seconds, on_timeout, settings.http),
        loop=settings.loop,
        log_level=settings.log_level,
        access_log=False,
        lifespan="off",
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=int(settings.idle_timeout_seconds),
        **tls,
    )


class _SideServer(uvicorn.Server):
    """A second server in the same event loop: it installs no signal handlers (the main server's stop stops it)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def serve(app: Any, sock: socket.socket, settings: ExtenderSettings, metrics_sock: socket.socket | None, *,
          on_timeout: Callable[[str], None] | None = None) -> None:
    """Run the scheduling server on ``sock`` and, when given, the health/metrics app on ``metrics_sock`` (one loop).

    ``on_timeout``: called with ``"header"`` for each connection either server closes for a late
    request head (``create_app`` gives ``app.state.on_timeout``, which counts it).
    """
    main = uvicorn.Server(uvicorn_config(app, settings, on_timeout=on_timeout))
    if metrics_sock is None:
        main.run(sockets=[sock])
        return
    side = _SideServer(metrics_config(app.state.health_app, settings, on_timeout=on_timeout))

    async def both() -> None:
        task = asyncio.create_task(side.serve(sockets=[metrics_sock]))
        try:
            await main.serve(sockets=[sock])
        finally:
            side.should_exit = True
            await task

    with asyncio.Runner(loop_factory=main.config.get_loop_factory()) as runner:
        runner.run(both())
