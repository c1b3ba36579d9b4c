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
    p.add_argument("--max-body-bytes", type=int, help="refuse larger request bodies with 413 (default 64 MiB)")
    p.add_argument("--kubeconfig", help="kubeconfig file for cached mode (default: in-cluster config)")
    p.add_argument("--resync-seconds", type=float, help="cached mode: full relist period (default 600)")
    p.add_argument("--watch-timeout-seconds", type=int, help="cached mode: server-side watch timeout (default 300)")
    p.add_argument("--page-size", type=int, help="cached mode: list page size (default 500)")
    p.add_argument("--sync-timeout-seconds", type=float,
                   help="cached mode: wait this long for the first list before serving (default 60)")
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

    ``core_v1``: a ``kubernetes.client.CoreV1Api``; built from ``--kubeconfig``
    or the in-cluster config when not given.
    """
    from extender.app import create_app
    from extender.metrics import Metrics
    from extender.scoring import resolve
    from extender.service import Service, ServiceConfig

    metrics = Metrics()
    config = ServiceConfig(
        prefix=settings.prefix,
        locality_keys=tuple(settings.locality_keys),
        scorer=resolve(settings.strategies),
        resource=settings.resource,
        allocation_max_age_s=settings.allocation_max_age_seconds,
    )
    if settings.mode == "stateless":
        service = Service(config, metrics=metrics)
        return create_app(service, max_body_bytes=settings.max_body_bytes), None
    from extender.cache import ClusterCache

    service = Service(config, metrics=metrics)
    cache = ClusterCache(prefix=settings.prefix, locality_keys=settings.locality_keys,
                         registry=service.topologies, metrics=metrics, resource=settings.resource,
                         allocation_namespace=settings.allocation_namespace,
                         allocation_max_age_s=settings.allocation_max_age_seconds)
    service.view = cache
    if core_v1 is None:
        from kubernetes import client
        from kubernetes import config as kconfig

        if settings.kubeconfig:
            kconfig.load_kube_config(config_file=settings.kubeconfig)
        else:
            kconfig.load_incluster_config()
        core_v1 = client.CoreV1Api()
    cache.start(core_v1, page_size=settings.page_size, watch_timeout_seconds=settings.watch_timeout_seconds,
                resync_seconds=settings.resync_seconds)
    if not cache.wait_synced(settings.sync_timeout_seconds):
        log.warning("informers not synced after %.0fs; serving (fail open) and /readyz stays 503",
                    settings.sync_timeout_seconds)
    app = create_app(service, max_body_bytes=settings.max_body_bytes, ready=lambda: cache.synced)
    return app, cache


def main(argv: list[str]) -> int:
    """Entry point for ``gputopo extender ...``; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = load(
            host=args.host,
            port=args.port,
            mode=args.mode,
            prefix=args.prefix,
            strategies=_flatten(args.strategies),
            locality_keys=_flatten(args.locality_keys),
            resource=args.resource,
            max_body_bytes=args.max_body_bytes,
            kubeconfig=args.kubeconfig,
            resync_seconds=args.resync_seconds,
            watch_timeout_seconds=args.watch_timeout_seconds,
            page_size=args.page_size,
            sync_timeout_seconds=args.sync_timeout_seconds,
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
    import uvicorn

    from extender.app import listen_socket

    try:
        sock = listen_socket(settings.host, settings.port)
        log.info("gputopo extender (%s mode) listening on %s:%d", settings.mode, *sock.getsockname()[:2])
        server = uvicorn.Server(uvicorn.Config(app, log_level=settings.log_level, access_log=False))
        server.run(sockets=[sock])
    finally:
        if cache is not None:
            cache.stop()
    return 0
