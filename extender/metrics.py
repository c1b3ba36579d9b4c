"""Prometheus metrics of the extender, on a registry per app instance.

Why a registry per instance: tests start several apps in one process, and the
global default registry refuses duplicate metric names. ``/metrics`` serves
this registry only.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: the best candidate's predicted busbw of a request (GB/s): ×2 steps from a PCIe pair's 3 to a GB200 tray's 722
_BUSBW_BUCKETS = (1.5, 3.0, 6.0, 12.0, 24.0, 48.0, 96.0, 192.0, 384.0, 768.0)


class Metrics:
    """All extender metrics (names are ``gputopo_extender_*``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gputopo_extender_requests_total",
            "Extender requests by verb and outcome (ok, error, too_large).",
            ["verb", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "gputopo_extender_request_seconds",
            "Server-side handling time of one request (decode, decide, encode).",
            ["verb"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.nodes = Counter(
            "gputopo_extender_nodes_total",
            "Nodes seen by verb and result (passed, failed, unresolvable, not_ours, fail_open).",
            ["verb", "result"],
            registry=r,
        )
        self.fail_open = Counter(
            "gputopo_extender_fail_open_total",
            "Nodes passed or scored neutrally because our data was missing or damaged, by reason.",
            ["reason"],
            registry=r,
        )
        self.pod_problems = Counter(
            "gputopo_extender_pod_annotation_problems_total",
            "Pods whose gputopo annotations were invalid (treated as preferred).",
            registry=r,
        )
        self.cache_objects = Gauge(
            "gputopo_extender_cache_objects",
            "Objects held by the cached mode's informers.",
            ["kind"],
            registry=r,
        )
        self.watch_restarts = Counter(
            "gputopo_extender_watch_restarts_total",
            "Informer relists and re-watches by kind and reason (gone, error, resync, timeout).",
            ["kind", "reason"],
            registry=r,
        )
        self.node_objects_ignored = Counter(
            "gputopo_extender_node_objects_ignored_total",
            "Node objects in Nodes requests to the cached extender that were looked up by name, not decoded.",
            registry=r,
        )
        self.bad_objects = Counter(
            "gputopo_extender_bad_objects_total",
            "Informer objects (nodes, pods, configmaps) whose data made us skip or fail open on them, by reason.",
            ["kind", "reason"],
            registry=r,
        )
        self.refused = Counter(
            "gputopo_extender_refused_total",
            "Requests refused before handling: too_many (429), too_large (413), timeout (408), by verb; "
            "header: a connection closed for a late request head (verb \"-\").",
            ["verb", "reason"],
            registry=r,
        )
        self.inexact = Counter(
            "gputopo_extender_inexact_placements_total",
            "Nodes answered from a placement found after the exact search's budget ran out (a greedy ring, "
            "Placement.exact false; only components of more than 16 GPUs), by verb.",
            ["verb"],
            registry=r,
        )
        self.inflight = Gauge(
            "gputopo_extender_inflight_requests",
            "Filter/prioritize requests being handled now.",
            registry=r,
        )
        self.cache_age = Gauge(
            "gputopo_extender_cache_unsynced_seconds",
            "Seconds since the informer that has been failing longest last synced (0 when all are in sync).",
            registry=r,
        )
        self.synced = Gauge(
            "gputopo_extender_cache_synced",
            "1 once the cached mode's informers completed their first list (always 1 when stateless).",
            registry=r,
        )
        self.scores = Counter(
            "gputopo_extender_scores_total",
            "Prioritize scores given, by the rule that scored the pod (multi-gpu, rank, one-gpu, no-whole-gpu, "
            "none) and the score 0..10: a histogram with one bucket per score.",
            ["rule", "score"],
            registry=r,
        )
        self.best_busbw = Histogram(
            "gputopo_extender_best_busbw_gbps",
            "Per prioritize request for a multi-GPU pod or rank: the best candidate's predicted NCCL bus bandwidth "
            "(V*, GB/s; a rank's counts its network path), by rule.",
            ["rule"],
            buckets=_BUSBW_BUCKETS,
            registry=r,
        )
        self._score_children: dict[tuple[str, int], Counter] = {}

    def observe_scores(self, rule: str, counts: Mapping[int, int], reference: float | None) -> None:
        """Count one request's scores (``counts``: score → nodes given it) and its best candidate's busbw."""
        for value, n in counts.items():
            if n:
                key = (rule, max(0, min(10, value)))
                child = self._score_children.get(key)
                if child is None:
                    child = self._score_children.setdefault(key, self.scores.labels(rule, str(key[1])))
                child.inc(n)
        if reference is not None and rule in ("multi-gpu", "rank"):
            self.best_busbw.labels(rule).observe(reference)
