"""The agent loop: probe → model → labels/annotations → publish, on a schedule.

Why a ``step()`` that does whatever is due and returns when to come back:
the same code runs in the DaemonSet (``run`` waits on a stop event between
steps, so SIGTERM ends it at once), in ``--once`` mode, and in the write-volume
benchmark, which drives it with a simulated clock against a real HTTP API
server. Nothing in here sleeps.

Three cadences:

* hardware probe every ``probe_interval_s`` (backoff on failure, so a node
  without GPUs is re-probed slowly instead of crash-looping);
* allocation poll every ``allocation_interval_s`` (cheap, local gRPC call);
  a change is published at most once per ``allocation_min_interval_s`` and
  only after ``allocation_coalesce_s`` of quiet, so bursts become one write;
* resync every ``resync_interval_s``: one GET that re-plans, which repairs our
  keys if someone edited them, and costs no write when all is well.

The allocation goes to the Node annotation (``LoopConfig.allocation_on_node``),
to a separate carrier (``allocation_publisher``: the per-node ConfigMap), or both;
the separate carrier is written first, and an allocation change alone does not
read the Node when the allocation is not on it.

Failure policy: a failed probe never wipes labels. The last good topology is
kept with status ``degraded`` (or ``error`` when there is none, or no GPU at
all) and a ``status-reason`` annotation.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from labeler.agent.configmap import AllocationPublisher, merged_value
from labeler.agent.health import AgentMetrics
from labeler.agent.patch import Desired, NodeMeta
from labeler.agent.publish import Publisher, PublishResult
from labeler.agent.sources import AllocationSource, ProbeOutcome, Prober
from labeler.topology import allocation, labels
from labeler.topology.errors import NoGpuError, ProbeError, PublishError
from labeler.topology.model import Topology

__all__ = ["NO_GPU_REASON", "STALL_AFTER_S", "Agent", "LoopConfig"]

log = logging.getLogger(__name__)

NO_GPU_REASON = "no NVIDIA GPU found"
#: /healthz reports a stalled loop when no step began for this long.
STALL_AFTER_S = 300.0


@dataclass(frozen=True)
class LoopConfig:
    """Timing and naming of the loop (a subset of :class:`~labeler.agent.settings.AgentSettings`)."""

    prefix: str = labels.DEFAULT_PREFIX
    probe_interval_s: float = 60.0
    probe_backoff_max_s: float = 600.0
    allocation_interval_s: float = 5.0
    allocation_min_interval_s: float = 10.0
    allocation_coalesce_s: float = 1.0
    resync_interval_s: float = 300.0
    publish_retry_s: float = 30.0
    heartbeat_s: float = 5.0
    #: carry the allocation in the Node annotation ``{prefix}allocation`` (carriers ``annotation``/``both``);
    #: when False the planner leaves it out, so a stale one we own is removed from the Node
    allocation_on_node: bool = True


@dataclass(frozen=True)
class _Hardware:
    """What the hardware part of the node should say (compared to detect change)."""

    topology: Topology | None
    status: labels.Status
    reason: str | None


class Agent:
    """One node's agent. Not thread-safe: one thread calls ``step``/``run``."""

    def __init__(
        self,
        config: LoopConfig,
        prober: Prober,
        publisher: Publisher,
        allocation_source: AllocationSource | None = None,
        *,
        metrics: AgentMetrics | None = None,
        allocation_publisher: AllocationPublisher | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.prober = prober
        self.publisher = publisher
        self.allocation_source = allocation_source
        #: the separate carrier (ConfigMap) for carriers ``configmap``/``both``; written before the Node
        self.allocation_publisher = allocation_publisher
        self.metrics = metrics or AgentMetrics()
        self.clock = clock
        self.wall_clock = wall_clock
        now = clock()
        self.hardware = _Hardware(None, labels.Status.ERROR, "not probed yet")
        self._published_hw: _Hardware | None = None
        self.alloc: allocation.AllocationState | None = None
        self._published_alloc: allocation.AllocationState | None = None
        self._alloc_changed_at: float | None = None
        self._alloc_published_at = -float("inf")
        self._probe_failures = 0
        self.next_probe = now
        self.next_alloc = now
        self.next_resync = now
        self._retry_at: float | None = None
        self.started_at = now
        self.last_step_at = now
        self.last_success_at: float | None = None
        self.last_result: PublishResult | None = None

    # -- probing ------------------------------------------------------------------
    def _probe(self, now: float) -> None:
        start = time.perf_counter()
        outcome: ProbeOutcome | ProbeError
        try:
            outcome = self.prober.probe()
            result = "degraded" if outcome.degraded else "ok"
        except NoGpuError as err:
            outcome, result = err, "no-gpu"
        except ProbeError as err:
            outcome, result = err, "error"
        except Exception as err:  # a source library raising something unwrapped is still a probe failure
            log.exception("probe raised an unexpected error")
            outcome, result = ProbeError(f"{type(err).__name__}: {err}"), "error"
        self.metrics.observe_probe(time.perf_counter() - start, result)
        prev = self.hardware
        if isinstance(outcome, ProbeOutcome):
            self._probe_failures = 0
            self.next_probe = now + self.config.probe_interval_s
            status = labels.Status.DEGRADED if outcome.degraded else labels.Status.OK
            if outcome.topology != prev.topology:
                self.next_alloc = now  # recompute the free set against the new GPU list right away
            self.hardware = _Hardware(outcome.topology, status, outcome.degraded)
            self.metrics.set_topology(outcome.topology)
        else:
            self._probe_failures += 1
            base = min(self.config.probe_interval_s, 10.0)
            delay = min(self.config.probe_backoff_max_s, base * 2 ** (self._probe_failures - 1))
            self.next_probe = now + delay
            if isinstance(outcome, NoGpuError):
                self.hardware = _Hardware(prev.topology, labels.Status.ERROR, NO_GPU_REASON)
            else:
                # Degraded: last good labels are kept. Without a topology in memory the planner
                # downgrades this to error unless the node still carries labels from an earlier run.
                self.hardware = _Hardware(prev.topology, labels.Status.DEGRADED, f"probe failed: {outcome}")
            log.warning("probe failed (%s); keeping last good labels, next probe in %.0fs", outcome, delay)
        self.metrics.set_status(self.hardware.status)

    # -- allocation ---------------------------------------------------------------
    def _poll_allocation(self, now: float) -> None:
        self.next_alloc = now + self.config.allocation_interval_s
        topo = self.hardware.topology
        if self.allocation_source is None or topo is None:
            return
        try:
            used = dict(self.allocation_source.used(topo))
        except ProbeError as err:
            # Keep the last published value: dropping it would tell the extender "all free".
            self.metrics.allocation_error()
            log.warning("allocation poll failed (%s); keeping the last published allocation", err)
            return
        free = frozenset(topo.gpu_indices) - used.keys()
        state = allocation.AllocationState(free, used, int(self.wall_clock()))
        self.metrics.set_free_gpus(len(free))
        if self.alloc is not None and state.same_allocation(self.alloc):
            return
        self.alloc = state
        if state.same_allocation(self._published_alloc):
            self._alloc_changed_at = None  # changed and changed back before we wrote: nothing to send
        elif self._alloc_changed_at is None:
            self._alloc_changed_at = now

    def _alloc_due(self) -> float | None:
        if self._alloc_changed_at is None:
            return None
        return max(
            self._alloc_changed_at + self.config.allocation_coalesce_s,
            self._alloc_published_at + self.config.allocation_min_interval_s,
        )

    # -- planning -----------------------------------------------------------------
    def _planner(self, hw: _Hardware, alloc: allocation.AllocationState | None) -> Callable[[NodeMeta], Desired]:
        prefix = self.config.prefix
        status_label_keys = set(labels.status_labels(labels.Status.OK, prefix=prefix))
        reason_keys = set(labels.status_annotations("", prefix=prefix))
        alloc_key = prefix + allocation.ANNOTATION_SUFFIX

        def plan(current: NodeMeta) -> Desired:
            if hw.topology is not None:
                status = hw.status
                lab = labels.encode(hw.topology, prefix=prefix, status=status)
                ann = labels.encode_annotations(hw.topology, prefix=prefix)
            else:
                # Never probed successfully in this process: keep what a previous run published.
                lab = {k: v for k, v in current.labels.items() if labels.owns(k, prefix=prefix)}
                ann = {
                    k: v
                    for k, v in current.annotations.items()
                    if labels.owns(k, prefix=prefix) and k not in reason_keys and k != alloc_key
                }
                described = labels.decode_labels(dict(current.labels), prefix=prefix) is not None
                status = hw.status if described else labels.Status.ERROR
                for k in status_label_keys:
                    lab.pop(k, None)
                lab.update(labels.status_labels(status, prefix=prefix))
            if hw.reason is not None and status is not labels.Status.OK:
                ann.update(labels.status_annotations(hw.reason, prefix=prefix))
            # When the allocation is not carried on the Node it is simply not desired,
            # so plan_patch removes a stale annotation we own.
            if self.config.allocation_on_node:
                on_node = current.annotations.get(alloc_key)
                if alloc is not None and hw.topology is not None:
                    ann[alloc_key] = merged_value(on_node, alloc)
                elif on_node is not None:
                    ann[alloc_key] = on_node
            return Desired(lab, ann)

        return plan

    # -- the loop -----------------------------------------------------------------
    def step(self) -> float:
        """Do whatever is due now; return seconds until something is due again."""
        now = self.clock()
        self.last_step_at = now
        if now >= self.next_probe:
            self._probe(now)
        if now >= self.next_alloc:
            self._poll_allocation(now)
        hw_changed = self.hardware != self._published_hw
        alloc_due = self._alloc_due()
        node_due = (
            hw_changed
            or now >= self.next_resync
            or (self._retry_at is not None and now >= self._retry_at)
        )
        due = node_due or (alloc_due is not None and now >= alloc_due)
        if due and (self._retry_at is None or now >= self._retry_at):
            # An allocation change alone need not read the ~19 KB Node when the allocation is not on it.
            self._publish(now, node=node_due or self.config.allocation_on_node or self.allocation_publisher is None)
        wake = [self.next_probe, self.next_resync]
        if self.allocation_source is not None and self.hardware.topology is not None:
            wake.append(self.next_alloc)
        if (alloc_due := self._alloc_due()) is not None:
            wake.append(alloc_due)
        if self._retry_at is not None:
            wake.append(self._retry_at)
        return max(0.0, min(wake) - self.clock())

    def _publish_all(self, hw: _Hardware, alloc: allocation.AllocationState | None, *,
                     node: bool = True) -> PublishResult:
        """The allocation carrier first (so switching carriers never leaves the extender with neither), then the Node.

        ``node=False``: only the separate carrier (an allocation change with the allocation off the Node).
        The returned outcome is ``patched`` when either write happened. Raises ``PublishError``.
        """
        carried = None
        if self.allocation_publisher is not None and alloc is not None and hw.topology is not None:
            carried = self.allocation_publisher.publish(alloc)
            for reason in carried.retries:
                self.metrics.retry(reason)
        if not node:
            outcome = "unchanged" if carried is None or carried.outcome == "unchanged" else "patched"
            if carried is not None and carried.outcome == "dry-run":
                outcome = "dry-run"
            return PublishResult(outcome, None, NodeMeta())
        result = self.publisher.publish(self._planner(hw, alloc))
        if carried is not None and carried.outcome != "unchanged" and result.outcome == "unchanged":
            result = dataclasses.replace(result, outcome="patched" if carried.outcome != "dry-run" else "dry-run")
        return result

    def _publish(self, now: float, *, node: bool = True) -> PublishResult | None:
        hw, alloc = self.hardware, self.alloc
        try:
            result = self._publish_all(hw, alloc, node=node)
        except PublishError as err:
            self.metrics.publish("error")
            self._retry_at = now + self.config.publish_retry_s
            log.error("publish failed: %s; next attempt in %.0fs", err, self.config.publish_retry_s)
            return None
        for reason in result.retries:
            self.metrics.retry(reason)
        self.metrics.publish(result.outcome)
        self._retry_at = None
        if node:
            self._published_hw = hw
            self.next_resync = now + self.config.resync_interval_s
        if alloc is not None and hw.topology is not None:
            if not alloc.same_allocation(self._published_alloc) and result.outcome != "unchanged":
                self._alloc_published_at = now
            self._published_alloc = alloc
            if self.alloc is alloc:
                self._alloc_changed_at = None
        self.last_success_at = now
        self.metrics.set_last_success(self.wall_clock())
        self.last_result = result
        if result.outcome != "unchanged" and node:
            log.info("published %s to the node", sorted({**result.patch.labels, **result.patch.annotations})
                     if result.patch else [])
        return result

    def run_once(self) -> PublishResult:
        """Probe, poll allocations, publish once (``--once``). Raises ``PublishError``."""
        now = self.clock()
        self._probe(now)
        self._poll_allocation(now)
        result = self._publish_all(self.hardware, self.alloc)
        self.metrics.publish(result.outcome)
        self.last_result = result
        return result

    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set (SIGTERM); waits are capped so /healthz sees a heartbeat."""
        while not stop.is_set():
            wait = self.step()
            stop.wait(min(wait, self.config.heartbeat_s))

    def healthy(self, stale_after_s: float, now: float | None = None) -> tuple[bool, str]:
        """Alive (recent heartbeat) and synced recently; the reason for /healthz."""
        now = self.clock() if now is None else now
        # A publish with retries and timeouts can legitimately hold the loop for a minute or two.
        if now - self.last_step_at > max(3 * self.config.heartbeat_s, STALL_AFTER_S):
            return False, f"loop stalled: last step {now - self.last_step_at:.0f}s ago"
        if self.last_success_at is None:
            age = now - self.started_at
            if age > stale_after_s:
                return False, f"no successful sync in {age:.0f}s since start"
            return True, "starting"
        age = now - self.last_success_at
        if age > stale_after_s:
            return False, f"last successful sync {age:.0f}s ago"
        return True, f"ok (status {self.hardware.status.value}, last sync {age:.0f}s ago)"

