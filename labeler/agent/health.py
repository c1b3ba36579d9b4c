"""``/healthz`` and ``/metrics`` on one small HTTP server thread.

Why a plain ``ThreadingHTTPServer`` and not a web framework: two read-only
endpoints do not justify a dependency, and the agent image stays small. The
metrics live in their own :class:`prometheus_client.CollectorRegistry` (not the
global one) so several agents can coexist in one test process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from labeler.topology import islands
from labeler.topology.labels import Status
from labeler.topology.links import ISLAND_LEVELS
from labeler.topology.model import Topology

__all__ = ["AgentMetrics", "HealthServer"]

HealthCheck = Callable[[], tuple[bool, str]]


class AgentMetrics:
    """Every metric the agent exports (names are ``gputopo_agent_*``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.probe_duration = Histogram(
            "gputopo_agent_probe_duration_seconds",
            "Time to probe the node's hardware topology",
            ["outcome"],
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.publish_total = Counter(
            "gputopo_agent_publish",
            "Publish attempts by outcome (patched, unchanged, dry-run, error)",
            ["outcome"],
            registry=r,
        )
        self.retry_total = Counter(
            "gputopo_agent_publish_retries", "Retried API requests by reason (409, 429, 5xx, connection)",
            ["reason"], registry=r,
        )
        self.last_success = Gauge(
            "gputopo_agent_last_success_timestamp_seconds", "Unix time of the last successful sync", registry=r
        )
        self.gpus = Gauge("gputopo_agent_gpus", "GPUs in the last good topology", registry=r)
        self.nics = Gauge("gputopo_agent_nics", "NICs in the last good topology", registry=r)
        self.islands = Gauge(
            "gputopo_agent_islands", "Number of GPU islands at each link level", ["level"], registry=r
        )
        self.largest_island = Gauge(
            "gputopo_agent_largest_island_gpus", "GPUs in the largest island at each link level", ["level"],
            registry=r,
        )
        self.free_gpus = Gauge("gputopo_agent_free_gpus", "GPUs not assigned to any pod", registry=r)
        self.status = Gauge("gputopo_agent_status", "1 for the node's current label status", ["status"], registry=r)
        self.allocation_errors = Counter(
            "gputopo_agent_allocation_poll_errors", "Failed polls of the kubelet pod-resources API", registry=r
        )
        self.publish_errors = Counter(
            "gputopo_agent_publish_errors", "Failed writes by target (node, configmap); each target fails apart",
            ["target"], registry=r,
        )
        self.publish_failing = Gauge(
            "gputopo_agent_publish_failing", "1 while the last write to this target (node, configmap) failed",
            ["target"], registry=r,
        )
        for target in ("node", "configmap"):  # present from the start, so alerts see 0 rather than nothing
            self.publish_errors.labels(target=target)
            self.publish_failing.labels(target=target).set(0)

    def observe_probe(self, seconds: float, outcome: str) -> None:
        self.probe_duration.labels(outcome=outcome).observe(seconds)

    def publish(self, outcome: str) -> None:
        self.publish_total.labels(outcome=outcome).inc()

    def retry(self, reason: str) -> None:
        self.retry_total.labels(reason=reason).inc()

    def set_last_success(self, unix_time: float) -> None:
        self.last_success.set(unix_time)

    def set_topology(self, topo: Topology) -> None:
        self.gpus.set(len(topo.gpus))
        self.nics.set(len(topo.nics))
        for level, groups in islands.compute(topo).items():
            self.islands.labels(level=level.slug).set(len(groups))
            self.largest_island.labels(level=level.slug).set(max((len(g) for g in groups), default=0))
        for level in ISLAND_LEVELS:  # keep every level present even if compute() skipped one
            self.islands.labels(level=level.slug)

    def set_status(self, status: Status) -> None:
        for s in Status:
            self.status.labels(status=s.value).set(1 if s is status else 0)

    def set_free_gpus(self, n: int) -> None:
        self.free_gpus.set(n)

    def allocation_error(self) -> None:
        self.allocation_errors.inc()

    def publish_error(self, target: str) -> None:
        self.publish_errors.labels(target=target).inc()

    def set_failing(self, target: str, failing: bool) -> None:
        self.publish_failing.labels(target=target).set(1 if failing else 0)


class HealthServer:
    """Serves ``/healthz`` (200/503 + reason) and ``/metrics`` from a daemon thread."""

    def __init__(self, metrics: AgentMetrics, check: HealthCheck, host: str = "0.0.0.0", port: int = 8080) -> None:
        self.metrics = metrics
        self.check = check
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path in ("/healthz", "/readyz"):
                    ok, reason = server.check()
                    self._send(200 if ok else 503, "text/plain; charset=utf-8", (reason + "\n").encode())
                elif path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.metrics.registry))
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # probes every few seconds: keep logs clean
                return

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="gputopo-health", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
