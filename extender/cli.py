"""``gputopo extender``: parse flags, validate settings, start informers and the HTTP server.

The lead's ``gputopo/cli.py`` calls :func:`main` with the arguments after
``extender``. ``--check-config`` validates and prints the effective settings
without starting anything (used by tests and handy in CI).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from typing import Any

from extender.settings import ExtenderSettings, load
from labeler.topology.errors import ConfigError

__all__ = ["build", "main"]

log = logging.getLogger("gputopo.extender")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gputopo extender",
        description="kube-scheduler HTTP extender: topology-aware filter/prioritize for nvidia.com/gpu pods. "
        "Every flag also reads from GPUTOPO_EXTENDER_<NAME> (e.g. GPUTOPO_EXTENDER_MODE=stateless).",
    )
    p.add_argument("--host", help="listen address (default 0.0.0.0)")
    p.add_argument("--port", type=int, help="listen port (default 8888; 0 picks a free port)")
    p.add_argument("--metrics-port", type=int,
                   help="plain-HTTP port of /metrics, /healthz, /readyz (default 8889; 0 picks a free port; "
                   "-1: none, served on --port only)")
    p.add_argument("--mode", choices=["stateless", "cached"],
                   help="stateless: nodeCacheCapable=false, read Node objects from requests; "
                   "cached: nodeCacheCapable=true, list+watch Nodes, Pods and allocation ConfigMaps (default)")
    p.add_argument("--prefix", help="label/annotation prefix (default gputopo.io/)")
    p.add_argument("--strategy", dest="strategies", action="append",
                   help="scoring strategy to enable, repeatable or comma-separated "
                   "(level, fit, pack, nic, affinity; default all)")
    p.add_argument("--locality-key", dest="locality_keys", action="append",
                   help="node label that groups nodes for job affinity, repeatable "
                   "(default topology.kubernetes.io/zone, topology.gputopo.io/rack, nvidia.com/gpu.clique)")
    p.add_argument("--resource", help="extended resource name (default nvidia.com/gpu)")
    p.add_argument("--max-body-bytes", type=int,
                   help="refuse larger request bodies with 413 (default 64 MiB stateless, 8 MiB cached)")
    p.add_argument("--max-concurrent-requests", type=int,
                   help="filter/prioritize requests handled at once; more get 429 (default 4 stateless, 64 cached)")
    p.add_argument("--max-connections", type=int, help="open connections; requests beyond get 503 (default 4096)")
    p.add_argument("--worker-threads", type=int, help="threads that run filter/prioritize off the event loop (2)")
    p.add_argument("--http", choices=["httptools", "h11"],
                   help="HTTP/1.1 parser: httptools (C, default) or h11 (pure Python); docs/performance.md")
    p.add_argument("--loop", choices=["uvloop", "asyncio"], help="event loop: uvloop (default) or asyncio")
    p.add_argument("--header-timeout-seconds", type=float,
                   help="close a connection whose request head is not complete in this time (default 10)")
    p.add_argument("--body-timeout-seconds", type=float, help="answer 408 to a body not received in time (30)")
    p.add_argument("--idle-timeout-seconds", type=float, help="close idle keep-alive connections after (120)")
    p.add_argument("--accept-node-objects", action="store_const", const=True, default=None,
                   help="cached mode: decode the labels/annotations of Node objects in Nodes requests "
                   "(default: look them up by name in the informer cache)")
    p.add_argument("--tls-cert-file", help="serve HTTPS with this PEM certificate (chain)")
    p.add_argument("--tls-key-file", help="the PEM private key of --tls-cert-file")
    p.add_argument("--tls-client-ca-file",
                   help="require client certificates signed by this PEM CA bundle (mutual TLS)")
    p.add_argument("--kubeconfig", help="kubeconfig file for cached mode (default: $KUBECONFIG or ~/.kube/config, else "
                   "the in-cluster service account)")
    p.add_argument("--resync-seconds", type=float, help="cached mode: full relist period (default 600)")
    p.add_argument("--watch-timeout-seconds", type=int, help="cached mode: server-side watch timeout (default 300)")
    p.add_argument("--page-size", type=int, help="cached mode: list page size (default 500)")
    p.add_argument("--sync-timeout-seconds", type=float,
                   help="cached mode: warn when the first list takes longer (default 60; the server "
                   "listens at once, /readyz is 503 until then)")
    p.add_argument("--stale-seconds", type=float,
                   help="cached mode: /readyz turns 503 when an informer has been failing this long (default 120)")
    p.add_argument("--backoff-seconds", type=float,
                   help="cached mode: first retry delay of a failing list/watch, doubling with jitter (default 1)")
    p.add_argument("--max-backoff-seconds", type=float, help="cached mode: the largest retry delay (default 30)")
    p.add_argument("--allocation-namespace",
                   help="cached mode: namespace of the agents' allocation ConfigMaps (default gputopo-system)")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--check-config", action="store_true", help="validate settings, print them as JSON and exit")
    return p


def _flatten(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    return [part.strip() for v in values for part in v.split(",") if part.strip()]


def build(settings: ExtenderSettings, core_v1: Any | None = None) -> tuple[Any, Any]:
    """The ASGI app and (cached mode) the started :class:`~extender.cache.ClusterCache`.

    Nothing here waits for the informers: the server listens at once, ``/healthz``
    answers from the start and ``/readyz`` turns 200 after the first sync.
    ``core_v1``: a ``kubernetes.client.CoreV1Api``; when not given, built by :mod:`kubeio.client`
    (``--kubeconfig``, else ``$KUBECONFIG`` or ``~/.kube/config``, else the in-cluster service account).
    """
    from extender.app import create_app, limits
    from extender.metrics import Metrics
    from extender.service import Service, ServiceConfig
    from policy.scoring import resolve

    metrics = Metrics()
    config = ServiceConfig(
        prefix=settings.prefix,
        locality_keys=tuple(settings.locality_keys),
        scorer=resolve(settings.strategies),
        resource=settings.resource,
        allocation_max_age_s=settings.allocation_max_age_seconds,
        decode_node_objects=settings.mode == "stateless" or settings.accept_node_objects,
    )
    service = Service(config, metrics=metrics)
    if settings.mode == "stateless":
        return create_app(service, **limits(settings)), None
    from extender.cache import ClusterCache

    cache = ClusterCache(prefix=settings.prefix, locality_keys=settings.locality_keys,
                         registry=service.topologies, metrics=metrics, resource=settings.resource,
                         allocation_namespace=settings.allocation_namespace,
                         allocation_max_age_s=settings.allocation_max_age_seconds)
    service.view = cache
    if core_v1 is None:
        from kubeio.client import core_api

        core_v1 = core_api(settings.kubeconfig)  # the order of every gputopo process; urllib3 retries off
    cache.start(core_v1, page_size=settings.page_size, watch_timeout_seconds=settings.watch_timeout_seconds,
                resync_seconds=settings.resync_seconds, backoff_seconds=settings.backoff_seconds,
                max_backoff_seconds=settings.max_backoff_seconds)
    _warn_if_not_synced(cache, settings.sync_timeout_seconds)
    app = create_app(service, ready=lambda: cache.ready(settings.stale_seconds),
                     unsynced_seconds=cache.unsynced_seconds, **limits(settings))
    return app, cache


def _warn_if_not_synced(cache: Any, after: float) -> None:
    def check() -> None:
        if not cache.synced:
            log.warning("informers not synced after %.0fs; passing every node (fail open), /readyz stays 503", after)

    timer = threading.Timer(after, check)
    timer.daemon = True
    timer.start()


def main(argv: list[str]) -> int:
    """Entry point for ``gputopo extender ...``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = load(
            host=args.host,
            port=args.port,
            metrics_port=args.metrics_port,
            mode=args.mode,
            prefix=args.prefix,
            strategies=_flatten(args.strategies),
            locality_keys=_flatten(args.locality_keys),
            resource=args.resource,
            max_body_bytes=args.max_body_bytes,
            max_concurrent_requests=args.max_concurrent_requests,
            max_connections=args.max_connections,
            worker_threads=args.worker_threads,
            http=args.http,
            loop=args.loop,
            header_timeout_seconds=args.header_timeout_seconds,
            body_timeout_seconds=args.body_timeout_seconds,
            idle_timeout_seconds=args.idle_timeout_seconds,
            accept_node_objects=args.accept_node_objects,
            tls_cert_file=args.tls_cert_file,
            tls_key_file=args.tls_key_file,
            tls_client_ca_file=args.tls_client_ca_file,
            kubeconfig=args.kubeconfig,
            resync_seconds=args.resync_seconds,
            watch_timeout_seconds=args.watch_timeout_seconds,
            page_size=args.page_size,
            sync_timeout_seconds=args.sync_timeout_seconds,
            stale_seconds=args.stale_seconds,
            backoff_seconds=args.backoff_seconds,
            max_backoff_seconds=args.max_backoff_seconds,
            allocation_namespace=args.allocation_namespace,
            log_level=args.log_level,
        )
    except ConfigError as err:
        print(f"gputopo extender: {err}", file=sys.stderr)
        return 2
    if args.check_config:
        print(json.dumps(settings.model_dump(), indent=2, sort_keys=True))
        return 0
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app, cache = build(settings)
    except ConfigError as err:
        print(f"gputopo extender: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # kubeconfig/in-cluster config problems are start-up errors, not crashes
        print(f"gputopo extender: cannot start: {err}", file=sys.stderr)
        return 1
    from extender.server import listen_socket, serve, settle_heap

    try:
        settle_heap()
        sock = listen_socket(settings.host, settings.port)
        metrics_sock = None if settings.metrics_port < 0 else listen_socket(settings.host, settings.metrics_port)
        log.info("gputopo extender (%s mode) listening on %s:%d (%s)%s", settings.mode, *sock.getsockname()[:2],
                 "https, client certificates required" if settings.tls_client_ca_file else
                 "https" if settings.tls else "http",
                 "" if metrics_sock is None else
                 f"; /metrics, /healthz, /readyz on {metrics_sock.getsockname()[1]} (http)")
        serve(app, sock, settings, metrics_sock, on_timeout=app.state.on_timeout)
    finally:
        if cache is not None:
            cache.stop()
    return 0
