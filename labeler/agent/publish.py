"""Publishing: read the Node, plan, send ONE merge PATCH, retry what is retryable.

Why merge patch (``application/merge-patch+json``) and not strategic merge:
labels and annotations are plain string maps, where both behave the same; JSON
merge patch is a standard (RFC 7386) with one simple rule (``null`` deletes),
works for every resource kind, and is what our in-test API server implements
byte for byte. The body carries ``metadata.resourceVersion``, which the API
server treats as a precondition: if the node changed after our GET (another
agent instance during a rolling update, a person editing our labels) we get a
409 and re-plan from a fresh read instead of deleting keys we never saw.

Retries: 409 (re-read, re-plan), 429 (honour ``Retry-After``), 5xx and
connection errors, with exponential backoff and jitter; every retry starts from
a fresh GET, so a write that succeeded but whose answer was lost is detected as
"nothing to do". Anything else (403, 404, 422) is not going to get better by
retrying and raises :class:`PublishError` at once. ``sleep`` and ``rand`` are
injected so tests and the benchmark never wait in real time. The policy lives in
:class:`RetryPolicy`, which the allocation ConfigMap writer
(:mod:`labeler.agent.configmap`) uses too, so both carriers retry alike.
"""

from __future__ import annotations

import email.utils
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, TypeVar

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from labeler.agent.patch import MERGE_PATCH, Desired, NodeMeta, Patch, plan_patch
from labeler.topology.errors import PublishError

__all__ = [
    "Backoff",
    "DryRunPublisher",
    "KubeNodePublisher",
    "Planner",
    "PublishResult",
    "Publisher",
    "RetryPolicy",
]

log = logging.getLogger(__name__)

#: Computes the desired owned keys from what the node carries now (re-run after every re-read).
Planner = Callable[[NodeMeta], Desired]

_RETRY_AFTER_CAP_S = 60.0  # longer waits are left to the loop's own retry (PUBLISH_RETRY)


@dataclass(frozen=True)
class PublishResult:
    """``patched``: one PATCH was accepted; ``unchanged``: no request was needed."""

    outcome: str
    patch: Patch | None
    node: NodeMeta
    attempts: int = 1
    retries: tuple[str, ...] = ()  # reason of each retry: "409", "429", "5xx", "connection"


class Publisher(Protocol):
    """What the agent loop needs from a publisher (the real one or ``--dry-run``)."""

    def publish(self, planner: Planner) -> PublishResult: ...


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with equal jitter: half the step is fixed, half random."""

    base_s: float = 0.5
    max_s: float = 30.0

    def delay(self, attempt: int, rand: Callable[[], float]) -> float:
        """Delay before retry number ``attempt`` (1-based).

        >>> Backoff(1.0, 8.0).delay(3, lambda: 0.0), Backoff(1.0, 8.0).delay(9, lambda: 1.0)
        (2.0, 8.0)
        """
        step = min(self.max_s, self.base_s * 2.0 ** (attempt - 1))
        return step / 2 + rand() * step / 2


def _node_meta(node: Any) -> NodeMeta:
    meta = node.metadata
    return NodeMeta(dict(meta.labels or {}), dict(meta.annotations or {}), meta.resource_version)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    >>> parse_retry_after("7", 0.0), parse_retry_after(None, 0.0), parse_retry_after("soon", 0.0)
    (7.0, None, None)
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass
class KubeNodePublisher:
    """Publishes to one Node through the official ``kubernetes`` client."""

    api: k8s.CoreV1Api
    node_name: str
    prefix: str
    attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    request_timeout_s: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    wall_clock: Callable[[], float] = time.time

    def read(self) -> NodeMeta:
        """GET the node (labels, annotations, resourceVersion)."""
        node = self.api.read_node(self.node_name, _request_timeout=self.request_timeout_s)
        return _node_meta(node)

    def publish(self, planner: Planner) -> PublishResult:
        """Read, plan, PATCH once; retry retryable failures from a fresh read."""

        def attempt() -> tuple[str, Patch | None, NodeMeta]:
            current = self.read()
            patch = plan_patch(current, planner(current), self.prefix)
            if patch is None:
                return "unchanged", None, current
            node = self.api.patch_node(
                self.node_name,
                patch.body(),
                _content_type=MERGE_PATCH,
                _request_timeout=self.request_timeout_s,
            )
            return "patched", patch, _node_meta(node)

        (outcome, patch, meta), attempts, retries = self.retry_policy().run(f"node {self.node_name}", attempt)
        return PublishResult(outcome, patch, meta, attempts, retries)

    def retry_policy(self) -> RetryPolicy:
        """The retry policy of this publisher, shared with the allocation ConfigMap writer."""
        return RetryPolicy(self.attempts, self.backoff, self.sleep, self.rand, self.wall_clock)


T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How every write of the agent is retried (Node PATCH and allocation ConfigMap alike).

    One implementation, so both carriers obey the same rules: 409 (the caller's
    ``attempt`` re-reads and re-plans), 429 (``Retry-After``), 5xx and connection
    errors with exponential backoff and jitter; anything else raises
    :class:`PublishError` at once; after ``attempts`` tries, :class:`PublishError`.
    """

    attempts: int = 5
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random
    wall_clock: Callable[[], float] = time.time

    def run(self, what: str, attempt: Callable[[], T]) -> tuple[T, int, tuple[str, ...]]:
        """``(attempt()'s value, attempts made, retry reasons)``; every try calls ``attempt`` afresh."""
        retries: list[str] = []
        last_error = "no attempt made"
        for n in range(1, self.attempts + 1):
            try:
                return attempt(), n, tuple(retries)
            except ApiException as err:
                status = int(err.status or 0)
                reason, delay = self.classify(status, err, n)
                last_error = f"HTTP {status} {err.reason or ''}".strip()
                if reason is None:
                    raise PublishError(f"{what}: {last_error}: not retryable") from err
            except (urllib3.exceptions.HTTPError, OSError) as err:
                reason, delay = "connection", self.backoff.delay(n, self.rand)
                last_error = f"connection error: {err}"
            if n == self.attempts:
                break
            retries.append(reason)
            log.warning("publish to %s failed (%s); retry %d in %.2fs", what, last_error, n, delay)
            self.sleep(delay)
        raise PublishError(f"{what}: gave up after {self.attempts} attempts: {last_error}")

    def classify(self, status: int, err: ApiException, attempt: int) -> tuple[str | None, float]:
        """Retry reason and delay for an HTTP error; reason ``None`` = do not retry."""
        backoff = self.backoff.delay(attempt, self.rand)
        if status == 409:
            return "409", backoff
        if status == 429:
            headers = err.headers or {}
            after = parse_retry_after(headers.get("Retry-After"), self.wall_clock())
            if after is None:
                return "429", backoff
            # Honour the server's figure; add a little jitter so a fleet does not return in lockstep.
            return "429", min(after, _RETRY_AFTER_CAP_S) + self.rand() * self.backoff.base_s
        if 500 <= status <= 599:
            return "5xx", backoff
        return None, 0.0


@dataclass
class DryRunPublisher:
    """``--dry-run``: print each planned patch as JSON and never write.

    It plans against the node as read (``reader``), or an empty node when the
    API cannot be read, and then remembers the patched state so a long-running
    dry run prints only changes.
    """

    prefix: str
    reader: Callable[[], NodeMeta] | None = None
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    _state: NodeMeta | None = None

    def publish(self, planner: Planner) -> PublishResult:
        if self._state is None:
            self._state = NodeMeta()
            if self.reader is not None:
                try:
                    self._state = self.reader()
                except Exception as err:  # dry-run must work without API access
                    print(f"gputopo agent: dry-run: cannot read node ({err}); planning against an empty node",
                          file=sys.stderr)
        current = self._state
        patch = plan_patch(current, planner(current), self.prefix)
        doc: dict[str, Any] = {"patch": None if patch is None else patch.body(), "contentType": MERGE_PATCH}
        print(json.dumps(doc, sort_keys=True), file=self.out, flush=True)
        if patch is None:
            return PublishResult("unchanged", None, current)
        self._state = patch.apply_to(current)
        return PublishResult("dry-run", patch, self._state)
