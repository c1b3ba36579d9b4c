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

The two write targets fail apart. The allocation ConfigMap and the Node are
written independently, each with its own retry timer (``publish_retry_s``), so
a 403 on ConfigMaps never holds back the Node labels and a refused Node PATCH
never holds back allocation changes. A failing ConfigMap shows on the Node as
status ``degraded`` with ``allocation not published: ...`` in the reason; a
failing Node shows in ``/healthz``'s reason; both in
``gputopo_agent_publish_errors_total{target}`` and
``gputopo_agent_publish_failing{target}``. Values of ours that are damaged are
never decoded to be compared, only replaced (see ``desired.merged_value``).

What the node should say is not decided here: :func:`labeler.agent.desired.desired_node`
is a pure function of the hardware state, the allocation, the carrier's failure and
what the Node carries now; this loop decides when to ask it and where to write.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labeler.agent.configmap import AllocationPublisher, CarrierResult
from labeler.agent.desired import Hardware, desired_node
from labeler.agent.health import AgentMetrics
from labeler.agent.patch import Desired, NodeMeta
from labeler.agent.publish import Publisher, PublishResult
from labeler.agent.settings import AgentSettings
from labeler.agent.sources import AllocationSource, ProbeOutcome, Prober
from labeler.topology import allocation, labels
from labeler.topology.errors import NoGpuError, ProbeError, PublishError

__all__ = ["NO_GPU_REASON", "STALL_AFTER_S", "TARGET_CONFIGMAP", "TARGET_NODE", "Agent", "LoopConfig"]

log = logging.getLogger(__name__)

NO_GPU_REASON = "no NVIDIA GPU found"
#: /healthz reports a stalled loop when no step began for this long.
STALL_AFTER_S = 300.0
#: the two write targets, as named in metrics and reasons
TARGET_NODE = "node"
TARGET_CONFIGMAP = "configmap"


@dataclass(frozen=True, kw_only=True)
class LoopConfig:
    """Timing and naming of the loop: a subset of :class:`~labeler.agent.settings.AgentSettings`.

    No field repeats a default of the settings (one settings object per process): build it with
    :meth:`from_settings`, which tests and benchmarks use too, changing only what they vary.
    """

    prefix: str
    probe_interval_s: float
    probe_backoff_max_s: float
    allocation_interval_s: float
    allocation_min_interval_s: float
    allocation_coalesce_s: float
    resync_interval_s: float
    publish_retry_s: float
    #: carry the allocation in the Node annotation ``{prefix}allocation`` (carriers ``annotation``/``both``);
    #: when False the planner leaves it out, so a stale one we own is removed from the Node
    allocation_on_node: bool
    #: re-stamp an unchanged allocation (its ``ts``) this often, so the extender can tell a live agent's
    #: allocation from a dead one's (``ALLOCATION_MAX_AGE`` there); 0 = never
    allocation_refresh_s: float
    #: the loop's own tick while waiting (not a setting: it only bounds how late a due step starts)
    heartbeat_s: float = 5.0

    @classmethod
    def from_settings(cls, settings: AgentSettings, **changes: Any) -> LoopConfig:
        """The loop's view of ``settings``; ``changes`` (field names of this class) replace single values."""
        config = cls(
            prefix=settings.prefix,
            probe_interval_s=settings.probe_interval,
            probe_backoff_max_s=settings.probe_backoff_max,
            allocation_interval_s=settings.allocation_interval,
            allocation_min_interval_s=settings.allocation_min_interval,
            allocation_coalesce_s=settings.allocation_coalesce,
            allocation_refresh_s=settings.allocation_refresh,
            resync_interval_s=settings.resync_interval,
            publish_retry_s=settings.publish_retry,
            allocation_on_node=settings.allocation_carrier in ("annotation", "both"),
        )
        return dataclasses.replace(config, **changes) if changes else config


@dataclass(frozen=True)
class _Pass:
    """What one publish pass did: the combined result, and per target whether it was attempted and succeeded."""

    result: PublishResult
    node: bool
    node_ok: bool
    carrier: bool
    carrier_ok: bool

    @property
    def ok(self) -> bool:
        return self.node_ok and self.carrier_ok


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
        self.hardware = Hardware(None, labels.Status.ERROR, "not probed yet")
        self._published_hw: Hardware | None = None
        self.alloc: allocation.AllocationState | None = None
        self._published_alloc: allocation.AllocationState | None = None
        self._alloc_changed_at: float | None = None
        self._alloc_published_at = -float("inf")
        self._probe_failures = 0
        self.next_probe = now
        self.next_alloc = now
        self.next_resync = now
        #: per target: the last failure (None: the last write succeeded) and when to try again
        self._node_error: str | None = None
        self._alloc_error: str | None = None
        self._node_retry_at: float | None = None
        self._alloc_retry_at: float | None = None
        #: the allocation failure the Node currently shows in its status (re-written when it changes)
        self._shown_alloc_error: str | None = None
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
            self.hardware = Hardware(outcome.topology, status, outcome.degraded)
            self.metrics.set_topology(outcome.topology)
        else:
            self._probe_failures += 1
            base = min(self.config.probe_interval_s, 10.0)
            delay = min(self.config.probe_backoff_max_s, base * 2 ** (self._probe_failures - 1))
            self.next_probe = now + delay
            if isinstance(outcome, NoGpuError):
                self.hardware = Hardware(prev.topology, labels.Status.ERROR, NO_GPU_REASON)
            else:
                # Degraded: last good labels are kept. Without a topology in memory the planner
                # downgrades this to error unless the node still carries labels from an earlier run.
                self.hardware = Hardware(prev.topology, labels.Status.DEGRADED, f"probe failed: {outcome}")
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
        refresh = self._refresh_due(state)
        if self.alloc is not None and state.same_allocation(self.alloc) and not refresh:
            return
        self.alloc = state
        if state.same_allocation(self._published_alloc) and not refresh:
            self._alloc_changed_at = None  # changed and changed back before we wrote: nothing to send
        elif self._alloc_changed_at is None:
            self._alloc_changed_at = now

    def _refresh_due(self, state: allocation.AllocationState) -> bool:
        """The published allocation is unchanged but its ``ts`` is ``allocation_refresh_s`` old: re-stamp it."""
        every, published = self.config.allocation_refresh_s, self._published_alloc
        if not every or published is None or published.observed_at is None or state.observed_at is None:
            return False
        return state.observed_at - published.observed_at >= every

    def _alloc_due(self) -> float | None:
        if self._alloc_changed_at is None:
            return None
        return max(
            self._alloc_changed_at + self.config.allocation_coalesce_s,
            self._alloc_published_at + self.config.allocation_min_interval_s,
        )

    # -- planning -----------------------------------------------------------------
    def _planner(self, hw: Hardware, alloc: allocation.AllocationState | None,
                 alloc_error: str | None = None) -> Callable[[NodeMeta], Desired]:
        """What the publisher plans against the Node it reads: :func:`~labeler.agent.desired.desired_node`."""
        config = self.config

        def plan(current: NodeMeta) -> Desired:
            return desired_node(current, hw, alloc, prefix=config.prefix, allocation_on_node=config.allocation_on_node,
                                allocation_refresh_s=config.allocation_refresh_s, alloc_error=alloc_error)

        return plan

    # -- the loop -----------------------------------------------------------------
    def _alloc_via_node(self) -> bool:
        return self.config.allocation_on_node or self.allocation_publisher is None

    def step(self) -> float:
        """Do whatever is due now; return seconds until something is due again."""
        now = self.clock()
        self.last_step_at = now
        if now >= self.next_probe:
            self._probe(now)
        if now >= self.next_alloc:
            self._poll_allocation(now)
        alloc_due_at = self._alloc_due()
        alloc_due = alloc_due_at is not None and now >= alloc_due_at
        node_wanted = (
            self.hardware != self._published_hw
            or now >= self.next_resync
            or self._node_error is not None
            or (alloc_due and self._alloc_via_node())
        )
        node_due = node_wanted and (self._node_retry_at is None or now >= self._node_retry_at)
        carrier_open = self._alloc_retry_at is None or now >= self._alloc_retry_at
        carrier_due = alloc_due and self.allocation_publisher is not None and carrier_open
        if node_due or carrier_due:
            # An allocation change alone need not read the ~19 KB Node when the allocation is not on it.
            self._publish(now, node=node_due, carrier=carrier_open)
        wake = [self.next_probe, self.next_resync]
        if self.allocation_source is not None and self.hardware.topology is not None:
            wake.append(self.next_alloc)
        if (alloc_due_at := self._alloc_due()) is not None:
            # a pending change waits for the retry timer of the target that carries it (no busy loop)
            gate = self._alloc_retry_at if self.allocation_publisher is not None else self._node_retry_at
            wake.append(alloc_due_at if gate is None else max(alloc_due_at, gate))
        if self._node_error is not None and self._node_retry_at is not None:
            wake.append(self._node_retry_at)
        return max(0.0, min(wake) - self.clock())

    def _write_carrier(self, hw: Hardware, alloc: allocation.AllocationState | None) -> CarrierResult | None:
        """The allocation ConfigMap, when there is one and something to say; records the outcome."""
        if self.allocation_publisher is None or alloc is None or hw.topology is None:
            return None
        try:
            carried = self.allocation_publisher.publish(alloc)
        except PublishError as err:
            self._failed(TARGET_CONFIGMAP, str(err))
            return None
        except Exception as err:  # the client choking on a reply must not kill the agent either
            log.exception("allocation ConfigMap write raised an unexpected error")
            self._failed(TARGET_CONFIGMAP, f"{type(err).__name__}: {err}")
            return None
        for reason in carried.retries:
            self.metrics.retry(reason)
        self._alloc_error = None
        self.metrics.set_failing(TARGET_CONFIGMAP, False)
        return carried

    def _write_node(self, hw: Hardware, alloc: allocation.AllocationState | None) -> PublishResult | None:
        """Read, plan and (if needed) PATCH the Node; records the outcome."""
        shown = self._alloc_error
        try:
            result = self.publisher.publish(self._planner(hw, alloc, shown))
        except PublishError as err:
            self._failed(TARGET_NODE, str(err))
            return None
        except Exception as err:
            log.exception("Node write raised an unexpected error")
            self._failed(TARGET_NODE, f"{type(err).__name__}: {err}")
            return None
        for reason in result.retries:
            self.metrics.retry(reason)
        self._node_error = None
        self._shown_alloc_error = shown
        self.metrics.set_failing(TARGET_NODE, False)
        return result

    def _failed(self, target: str, error: str) -> None:
        if target == TARGET_NODE:
            self._node_error = error
        else:
            self._alloc_error = error
        self.metrics.publish_error(target)
        self.metrics.set_failing(target, True)
        log.error("publish to %s failed: %s; next attempt in %.0fs", target, error, self.config.publish_retry_s)

    def _publish_all(self, hw: Hardware, alloc: allocation.AllocationState | None, *,
                     node: bool = True, carrier: bool = True) -> _Pass:
        """The allocation carrier first (so switching carriers never leaves the extender with neither), then the Node.

        Each target is attempted whatever happened to the other; never raises. ``node=False``:
        only the separate carrier, unless its failure (or recovery) must be shown on the Node.
        The combined outcome is ``patched`` when either write happened.
        """
        carried = self._write_carrier(hw, alloc) if carrier else None
        carrier_ok = not carrier or self.allocation_publisher is None or self._alloc_error is None
        node = node or self._alloc_error != self._shown_alloc_error
        result = self._write_node(hw, alloc) if node else None
        node_ok = not node or result is not None
        if result is None:
            result = PublishResult("unchanged", None, NodeMeta())
        if carried is not None and carried.outcome != "unchanged" and result.outcome == "unchanged":
            result = dataclasses.replace(result, outcome="dry-run" if carried.outcome == "dry-run" else "patched")
        return _Pass(result, node, node_ok, carrier, carrier_ok)

    def _publish(self, now: float, *, node: bool = True, carrier: bool = True) -> PublishResult | None:
        hw, alloc = self.hardware, self.alloc
        done = self._publish_all(hw, alloc, node=node, carrier=carrier)
        retry = now + self.config.publish_retry_s
        if done.carrier:
            self._alloc_retry_at = None if done.carrier_ok else retry
        if done.node:
            self._node_retry_at = None if done.node_ok else retry
            if done.node_ok:
                self._published_hw = hw
                self.next_resync = now + self.config.resync_interval_s
        self.metrics.publish(done.result.outcome if done.ok else "error")
        # The allocation is out when the carrier it goes to took it: the ConfigMap when there is one
        # (a failing Node is retried on its own and carries the allocation then), else the Node.
        if self.allocation_publisher is not None:
            alloc_out = done.carrier and done.carrier_ok
        else:
            alloc_out = done.node and done.node_ok
        if alloc is not None and hw.topology is not None and alloc_out:
            if not alloc.same_allocation(self._published_alloc) and done.result.outcome != "unchanged":
                self._alloc_published_at = now
            self._published_alloc = alloc
            if self.alloc is alloc:
                self._alloc_changed_at = None
        if done.node_ok if done.node else done.carrier_ok:
            self.last_success_at = now
            self.metrics.set_last_success(self.wall_clock())
        if not done.ok:
            return None
        self.last_result = done.result
        patch = done.result.patch
        if done.result.outcome != "unchanged" and done.node and patch is not None:
            log.info("published %s to the node", sorted({**patch.labels, **patch.annotations}))
        return done.result

    def run_once(self) -> PublishResult:
        """Probe, poll allocations, publish once (``--once``); both targets are attempted.

        Raises ``PublishError`` naming every target that failed.
        """
        now = self.clock()
        self._probe(now)
        self._poll_allocation(now)
        done = self._publish_all(self.hardware, self.alloc)
        self.metrics.publish(done.result.outcome if done.ok else "error")
        if not done.ok:
            failed = [f"{t}: {e}" for t, e in ((TARGET_CONFIGMAP, self._alloc_error), (TARGET_NODE, self._node_error))
                      if e is not None]
            raise PublishError("; ".join(failed))
        self.last_result = done.result
        return done.result

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
        failing = "".join(f"; {t} failing: {e}" for t, e in ((TARGET_NODE, self._node_error),
                                                             (TARGET_CONFIGMAP, self._alloc_error)) if e is not None)
        if age > stale_after_s:
            return False, f"last successful sync {age:.0f}s ago{failing}"
        return True, f"ok (status {self.hardware.status.value}, last sync {age:.0f}s ago{failing})"

