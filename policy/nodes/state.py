"""A node's state for placement: THE one definition of "ours", "trusted", "no data" and "stale".

Why one module: the extender (both modes), the simulator (through the same
:mod:`policy.nodes.facts`) and ``gputopo audit cluster`` (:mod:`policy.audit.cluster_nodes`)
must agree on which nodes the extender judges, or the audit's "stale" would not mean
"the extender fails open here". Each rule is a small function, and :func:`classify`
applies them in the one order the extender has always used:

1. **not ours**: none of our schema/count labels and no topology annotation (a
   non-GPU node, or the agent has not labelled it yet) → passed through, scored 0;
2. **status** (docs/labels.md "Status"): ``error`` → :attr:`NodeState.ERROR` (the
   agent cannot describe the node now); anything but ``ok``/``degraded``/absent →
   :attr:`NodeState.NO_DATA`. ``degraded`` is used as published on purpose: its
   topology lists the GPUs that work (a lost GPU is left out) or the last good probe;
3. **topology**: the ``{prefix}topology`` annotation missing or refused by its codec
   → :attr:`NodeState.NO_DATA`;
4. **allocation**: the agent's allocation (the ``gputopo-alloc-<node>`` ConfigMap's
   value, which wins, else the ``{prefix}allocation`` annotation) refused →
   :attr:`NodeState.NO_DATA`; none published → used as "all free" (an estimate);
5. **stale**: its ``ts`` older than ``allocation_max_age_s`` (0 = never) →
   :attr:`NodeState.STALE` (the agent re-stamps it every ``allocation_refresh``; an
   older one means the agent is gone or cannot write).

Decoding is passed in as callables, so the extender uses its bounded, memoised
decoders (and a request's decode budget is charged only for what the rules reach)
and the audit uses its own. Every failure becomes data (:class:`Reading`): the
caller decides about logs and metrics.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from labeler.topology import allocation, carrier, labels
from labeler.topology.allocation import AllocationState
from labeler.topology.errors import CodecError

__all__ = [
    "TRUSTED_STATUSES",
    "BudgetExceeded",
    "NodeState",
    "Reading",
    "allocation_text",
    "classify",
    "is_ours",
    "is_stale",
    "status_problem",
]

T = TypeVar("T")


class NodeState(enum.Enum):
    """How much we know about a node."""

    NOT_OURS = "not-ours"  # no gputopo labels/annotation: non-GPU or not labelled yet → pass through
    NO_DATA = "no-data"  # ours, but topology/allocation missing or damaged → fail open
    ERROR = "error"  # the agent says status=error: its labels are not current → fail open
    STALE = "stale"  # the allocation is older than allocation_max_age_s (agent gone?) → fail open
    OK = "ok"


class BudgetExceeded(CodecError):
    """A request's decode budget ran out: the node fails open, its data is not judged damaged."""


#: the statuses whose published data is used; an absent status label is read as ``ok``. A tuple, not a
#: set: a hostile label value may be unhashable (a list), and ``in`` on a tuple only compares
TRUSTED_STATUSES: tuple[str, ...] = (labels.Status.OK.value, labels.Status.DEGRADED.value)


def is_ours(node_labels: Mapping[str, Any], annotations: Mapping[str, Any], prefix: str) -> bool:
    """Does the labeler describe this node (any of our schema/count labels or the annotation)?"""
    return (
        prefix + labels.SCHEMA in node_labels
        or prefix + labels.GPU_COUNT in node_labels
        or prefix + labels.ANNOTATION_TOPOLOGY in annotations
    )


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a node is not judged: its state, the metric label and a message for logs."""

    state: NodeState
    reason: str  # status_error | undecodable_status | no_topology | undecodable_topology | decode_budget | ...
    message: str


def status_problem(status: object, prefix: str) -> Problem | None:
    """``None`` when the agent's status lets us use its data (``ok``, ``degraded`` or no status label).

    >>> status_problem("degraded", "gputopo.io/") is None, status_problem(None, "gputopo.io/") is None
    (True, True)
    >>> status_problem("error", "gputopo.io/").reason, status_problem("x", "gputopo.io/").state.value
    ('status_error', 'no-data')
    """
    if status is None or status in TRUSTED_STATUSES:
        return None
    if status == labels.Status.ERROR.value:
        return Problem(NodeState.ERROR, "status_error",
                       f"{prefix}status=error: the agent cannot describe this node now")
    return Problem(NodeState.NO_DATA, "undecodable_status",
                   f"{prefix}status={str(status)[:63]!r} is not ok|degraded|error")


def is_stale(age_s: float | None, max_age_s: float) -> bool:
    """The extender's staleness rule: an allocation confirmed more than ``max_age_s`` ago (0 = never stale).

    A ``ts`` in the future is not stale here (``age_s`` < 0); the audit flags a skewed clock itself.
    """
    return max_age_s > 0 and age_s is not None and age_s > max_age_s


def allocation_text(annotations: Mapping[str, Any], configmap_value: str | None,
                    prefix: str) -> tuple[str | None, str | None]:
    """The allocation value the node's data says, and its source (``configmap`` | ``annotation`` | None).

    The per-node ConfigMap carrier wins over a (possibly stale) Node annotation; a
    non-string annotation counts as absent.
    """
    if configmap_value is not None:
        return configmap_value, "configmap"
    value = annotations.get(prefix + allocation.ANNOTATION_SUFFIX)
    return (value, "annotation") if isinstance(value, str) else (None, None)


def _carrier(source: str | None, prefix: str) -> str:
    """Where an allocation value came from, as a message names it."""
    if source == "configmap":
        return f"allocation ConfigMap ({carrier.DATA_KEY})"
    return f"{prefix}{allocation.ANNOTATION_SUFFIX} annotation"


@dataclass(frozen=True, slots=True)
class Reading(Generic[T]):
    """What :func:`classify` found: the state, and what was decoded on the way (``None``: not reached)."""

    state: NodeState
    problem: Problem | None = None
    topology: T | None = None
    allocation: AllocationState | None = None
    allocation_source: str | None = None
    age_s: float | None = None


def classify(
    node_labels: Mapping[str, Any],
    annotations: Mapping[str, Any],
    *,
    prefix: str,
    topology: Callable[[str], T],
    allocation_decoder: Callable[[str], AllocationState] = allocation.decode,
    allocation_configmap: str | None = None,
    now: float,
    allocation_max_age_s: float = 0.0,
) -> Reading[T]:
    """Apply the rules of this module, in order (see the module docstring); never raises a ``CodecError``.

    ``topology`` decodes the annotation text into whatever the caller keeps (the
    extender: its ``(wiring id, wiring)``); it and ``allocation_decoder`` signal
    damage with :class:`~labeler.topology.errors.CodecError` (:class:`BudgetExceeded`
    when a request's budget ran out). ``now``: unix seconds, the caller's clock (this pure layer
    reads no clock: the extender and the audit pass ``time.time()``, a test or the simulator its own).
    """
    if not is_ours(node_labels, annotations, prefix):
        return Reading(NodeState.NOT_OURS)
    status = node_labels.get(prefix + labels.STATUS)
    bad = status_problem(status, prefix)
    if bad is not None:
        return Reading(bad.state, bad)
    text = annotations.get(prefix + labels.ANNOTATION_TOPOLOGY)
    if not isinstance(text, str):
        return Reading(NodeState.NO_DATA, Problem(NodeState.NO_DATA, "no_topology",
                                                  f"labelled (status={status}) but no {prefix}topology annotation"))
    try:
        topo = topology(text)
    except CodecError as err:
        reason = "decode_budget" if isinstance(err, BudgetExceeded) else "undecodable_topology"
        return Reading(NodeState.NO_DATA, Problem(NodeState.NO_DATA, reason,
                                                  f"undecodable {prefix}topology annotation: {err}"))
    alloc_text, source = allocation_text(annotations, allocation_configmap, prefix)
    if alloc_text is None:
        return Reading(NodeState.OK, topology=topo)  # not published yet: all free (an estimate)
    try:
        state = allocation_decoder(alloc_text)
    except CodecError as err:
        reason = "decode_budget" if isinstance(err, BudgetExceeded) else "undecodable_allocation"
        return Reading(NodeState.NO_DATA, Problem(NodeState.NO_DATA, reason,
                                                  f"undecodable {_carrier(source, prefix)}: {err}"),
                       topology=topo, allocation_source=source)
    age = None
    if state.observed_at is not None:
        age = now - state.observed_at
    if is_stale(age, allocation_max_age_s):
        msg = (f"allocation is {age:.0f}s old (allocation_max_age_seconds {allocation_max_age_s:g}): "
               "the agent has not confirmed it")
        return Reading(NodeState.STALE, Problem(NodeState.STALE, "stale_allocation", msg), topology=topo,
                       allocation=state, allocation_source=source, age_s=age)
    return Reading(NodeState.OK, topology=topo, allocation=state, allocation_source=source, age_s=age)
