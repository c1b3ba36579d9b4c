"""``gputopo agent``: the DaemonSet entrypoint.

Flags override ``GPUTOPO_*`` environment variables, which override defaults
(see :mod:`labeler.agent.settings`). Exit codes: 0 clean exit (SIGTERM, or
``--once`` published), 1 ``--once`` could not publish, 2 bad settings or
wiring (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from labeler.agent import factory
from labeler.agent.configmap import AllocationPublisher, DryRunConfigMapPublisher, KubeConfigMapPublisher
from labeler.agent.health import AgentMetrics, HealthServer
from labeler.agent.loop import Agent, LoopConfig
from labeler.agent.publish import Backoff, DryRunPublisher, KubeNodePublisher, Publisher, RetryPolicy
from labeler.agent.settings import AgentSettings, load
from labeler.topology.errors import ConfigError, PublishError

__all__ = ["build_parser", "main"]

log = logging.getLogger("gputopo.agent")

_EPILOG = """\
environment: every option is also read from GPUTOPO_<OPTION> (e.g. GPUTOPO_PROBE_INTERVAL=120);
the node name from NODE_NAME (downward API). Flags win over the environment.

examples:
  gputopo agent --once --dry-run --topology-file topo.txt --node-name n1   # show the patch, write nothing
  gputopo agent                                                          # in the DaemonSet
"""


def build_parser() -> argparse.ArgumentParser:
    """Every flag defaults to "not given" so the environment is only overridden on purpose."""
    p = argparse.ArgumentParser(
        prog="gputopo agent",
        description="Probe this node's GPU topology, publish it as node labels/annotations, "
        "and keep the GPU allocation annotation current.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        argument_default=argparse.SUPPRESS,
    )
    a = p.add_argument
    a("--node-name", dest="node_name", help="node to label (default: $NODE_NAME)")
    a("--prefix", help="label/annotation key prefix (default gputopo.io/)")
    a("--once", action="store_true", help="probe, publish once, exit")
    a("--dry-run", dest="dry_run", action="store_true", help="print planned patches as JSON, never write")
    a("--topology-file", dest="topology_file", metavar="FILE", help="saved `nvidia-smi topo -m` instead of probing")
    a("--kubeconfig", metavar="FILE", help="kubeconfig (default: in-cluster service account)")
    a("--probe-interval", dest="probe_interval", type=float, metavar="S", help="hardware re-probe period (60)")
    a("--probe-backoff-max", dest="probe_backoff_max", type=float, metavar="S", help="max wait after failed probes")
    a("--no-allocation", dest="allocation", action="store_false", help="do not publish the GPU allocation")
    a("--allocation-carrier", dest="allocation_carrier", choices=["configmap", "annotation", "both"],
      help="allocation carrier: per-node ConfigMap (default), Node annotation (stateless extender), or both")
    a("--pod-namespace", dest="pod_namespace", metavar="NS",
      help="namespace of the allocation ConfigMap (default: $POD_NAMESPACE, else gputopo-system)")
    a("--allocation-interval", dest="allocation_interval", type=float, metavar="S", help="pod-resources poll (5)")
    a("--allocation-min-interval", dest="allocation_min_interval", type=float, metavar="S",
      help="min time between allocation writes (10)")
    a("--allocation-coalesce", dest="allocation_coalesce", type=float, metavar="S", help="burst folding window (1)")
    a("--allocation-refresh", dest="allocation_refresh", type=float, metavar="S",
      help="re-stamp an unchanged allocation this often, so the extender sees it is fresh (600, 0=never)")
    a("--resync-interval", dest="resync_interval", type=float, metavar="S", help="GET + re-plan period (300)")
    a("--publish-attempts", dest="publish_attempts", type=int, metavar="N", help="tries per publish (5)")
    a("--request-timeout", dest="request_timeout", type=float, metavar="S", help="per-request timeout (10)")
    a("--podresources-socket", dest="podresources_socket", metavar="PATH", help="kubelet pod-resources socket")
    a("--sysfs-root", dest="sysfs_root", metavar="DIR", help="where host /sys is mounted, minus /sys (/)")
    a("--health-host", dest="health_host", metavar="ADDR", help="bind address of /healthz and /metrics")
    a("--health-port", dest="health_port", type=int, metavar="PORT", help="/healthz + /metrics port (8080, 0=off)")
    a("--log-level", dest="log_level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR")
    return p


def _allocation_publisher(settings: AgentSettings) -> AllocationPublisher | None:
    """The ConfigMap writer for carriers ``configmap``/``both`` (``None``: annotation only, or allocation off)."""
    if not settings.allocation or settings.allocation_carrier == "annotation":
        return None
    if settings.dry_run:
        return DryRunConfigMapPublisher(settings.node_name or "unknown-node", settings.pod_namespace,
                                        refresh_s=settings.allocation_refresh)
    retry = RetryPolicy(settings.publish_attempts, Backoff(settings.backoff_base, settings.backoff_max))
    return KubeConfigMapPublisher(factory.core_api(settings), settings.node_name, settings.pod_namespace,
                                  retry=retry, request_timeout_s=settings.request_timeout,
                                  refresh_s=settings.allocation_refresh)


def _publisher(settings: AgentSettings) -> Publisher:
    if settings.dry_run:
        reader = None
        if not settings.node_name:
            print("gputopo agent: dry-run: no node name; planning against an empty node", file=sys.stderr)
        else:
            try:
                kube = KubeNodePublisher(factory.core_api(settings), settings.node_name, settings.prefix,
                                         attempts=1, request_timeout_s=settings.request_timeout)
                reader = kube.read
            except ConfigError as err:
                print(f"gputopo agent: dry-run: {err}; planning against an empty node", file=sys.stderr)
        return DryRunPublisher(settings.prefix, reader)
    return KubeNodePublisher(
        factory.core_api(settings),
        settings.node_name,
        settings.prefix,
        attempts=settings.publish_attempts,
        backoff=Backoff(settings.backoff_base, settings.backoff_max),
        request_timeout_s=settings.request_timeout,
    )


def loop_config(settings: AgentSettings) -> LoopConfig:
    return LoopConfig.from_settings(settings)


def main(argv: Sequence[str]) -> int:
    """Run the agent; returns the process exit code."""
    ns = build_parser().parse_args(list(argv))
    overrides: dict[str, Any] = vars(ns)
    try:
        settings = load(overrides)
        logging.basicConfig(
            level=settings.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        prober = factory.build_prober(settings)
        alloc = factory.build_allocation_source(settings, prober)
        publisher = _publisher(settings)
        alloc_publisher = _allocation_publisher(settings) if alloc is not None else None
    except ConfigError as err:
        print(f"gputopo agent: error: {err}", file=sys.stderr)
        return 2
    metrics = AgentMetrics()
    agent = Agent(loop_config(settings), prober, publisher, alloc, metrics=metrics,
                  allocation_publisher=alloc_publisher)
    if settings.once:
        try:
            result = agent.run_once()
        except PublishError as err:
            print(f"gputopo agent: error: {err}", file=sys.stderr)
            return 1
        status = result.node.labels.get(settings.prefix + "status", "?")
        reason = result.node.annotations.get(settings.prefix + "status-reason")
        print(f"gputopo agent: {result.outcome}; node status {status}" + (f" ({reason})" if reason else ""),
              file=sys.stderr)
        return 0
    stop = threading.Event()
    _install_signal_handlers(stop)
    server = None
    if settings.health_port:
        try:
            server = HealthServer(metrics, lambda: agent.healthy(settings.health_stale_after),
                                  settings.health_host, settings.health_port).start()
        except OSError as err:
            print(f"gputopo agent: error: cannot serve health on port {settings.health_port}: {err}", file=sys.stderr)
            return 2
    log.info("agent started for node %s (prefix %s, allocation carrier %s)", settings.node_name, settings.prefix,
             settings.allocation_carrier if settings.allocation else "off")
    try:
        agent.run(stop)
    finally:
        if server is not None:
            server.stop()
    log.info("agent stopped")
    return 0


def _install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set ``stop``; the loop notices within one wait (it waits on the event)."""

    def handler(signum: int, frame: object) -> None:
        stop.set()

    try:
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (embedded use): the caller owns signals
        pass


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
