"""The agent's desired state: what a probe result, a status and an allocation imply for the node. Pure.

Why a pure function: *what* the node should say is where the agent's failure
policy lives (keep the last good labels through a failed probe, drop damaged
ones, show a failing allocation carrier in the status, never let the allocation
vanish while its carrier fails), and it must be testable without a cluster or a
GPU. The loop (:mod:`labeler.agent.loop`) decides *when*; this module decides
*what*; :func:`labeler.agent.patch.plan_patch` turns it into the smallest merge
patch against what the Node carries; the publishers do the I/O. import-linter
keeps this module and ``patch.py`` free of Kubernetes, NVML, gRPC and the
agent's I/O modules.

- :func:`desired_node`: the owned labels and annotations the Node should carry
  (:class:`~labeler.agent.patch.Desired`), from :class:`Hardware` (the last probe's
  topology, status and reason), the allocation, the carrier's failure and what
  the Node carries now (kept labels of an earlier run, the allocation value).
- :func:`merged_value`: the allocation value to publish (keeps the current one
  when it already says the same, so its ``ts`` does not churn writes).
- :func:`configmap_metadata`: the labels and annotations of the node's allocation
  ConfigMap (naming from :mod:`labeler.topology.carrier`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from labeler.agent.patch import Desired, NodeMeta
from labeler.topology import allocation, carrier, labels
from labeler.topology.errors import CodecError
from labeler.topology.model import Topology

__all__ = ["ERROR_CHARS", "Hardware", "configmap_metadata", "desired_node", "merged_value"]

#: a failure's text in status-reason (the whole reason is cut at 1024 by the codec)
ERROR_CHARS = 300


@dataclass(frozen=True)
class Hardware:
    """What the hardware part of the node should say (compared to detect change).

    ``topology``: the last good probe's (``None``: never probed successfully in this
    process); ``status``/``reason``: the latest probe's outcome.
    """

    topology: Topology | None
    status: labels.Status
    reason: str | None


def desired_node(
    current: NodeMeta,
    hw: Hardware,
    alloc: allocation.AllocationState | None,
    *,
    prefix: str,
    allocation_on_node: bool = True,
    allocation_refresh_s: float = 0.0,
    alloc_error: str | None = None,
) -> Desired:
    """The owned labels and annotations the Node should carry now.

    Rules (docs/agent.md, docs/labels.md "Status"):

    - a topology in hand: labels and annotations encode it with ``hw.status``;
    - none yet (never probed successfully in this process): keep what a previous run
      published, with ``hw.status`` (``error`` when those labels do not describe a node,
      and dropped altogether when they are damaged), under the schema they were written in;
    - ``alloc_error`` (the allocation ConfigMap cannot be written) with a topology: an ``ok``
      node shows ``degraded``, and the reason says why;
    - ``status-reason`` carries every reason, only when the status is not ``ok``;
    - the allocation annotation (``allocation_on_node``, carriers ``annotation``/``both``) is
      :func:`merged_value` of the one on the Node; without a topology the one on the Node is
      kept. When the allocation is not carried on the Node it is not desired (so a stale one
      of ours is removed), unless the separate carrier is failing: then the old annotation is
      all the extender has, and it stays.
    """
    status_label_keys = set(labels.status_labels(labels.Status.OK, prefix=prefix))
    reason_keys = set(labels.status_annotations("", prefix=prefix))
    alloc_key = prefix + allocation.ANNOTATION_SUFFIX
    reasons = [hw.reason] if hw.reason is not None else []
    if hw.topology is not None:
        status = hw.status
        lab = labels.encode(hw.topology, prefix=prefix, status=status)
        ann = labels.encode_annotations(hw.topology, prefix=prefix)
    else:
        # Never probed successfully in this process: keep what a previous run published,
        # unless it is damaged, in which case nothing of it is true and it goes.
        lab = {k: v for k, v in current.labels.items() if labels.owns(k, prefix=prefix)}
        ann = {
            k: v
            for k, v in current.annotations.items()
            if labels.owns(k, prefix=prefix) and k not in reason_keys and k != alloc_key
        }
        try:
            described = labels.decode_labels(dict(current.labels), prefix=prefix) is not None
        except CodecError as err:
            described = False
            lab, ann = {}, {}
            reasons.append(f"damaged gputopo labels removed ({err})")
        status = hw.status if described else labels.Status.ERROR
        kept_schema = lab.get(prefix + labels.SCHEMA)
        for k in status_label_keys:
            lab.pop(k, None)
        lab.update(labels.status_labels(status, prefix=prefix))
        if described and kept_schema is not None:  # kept labels keep the schema they were written in
            lab[prefix + labels.SCHEMA] = kept_schema
    if alloc_error is not None and hw.topology is not None:
        if status is labels.Status.OK:
            status = labels.Status.DEGRADED
            lab.update(labels.status_labels(status, prefix=prefix))
        reasons.append(f"allocation not published: {alloc_error[:ERROR_CHARS]}")
    if reasons and status is not labels.Status.OK:
        ann.update(labels.status_annotations("; ".join(reasons), prefix=prefix))
    on_node = current.annotations.get(alloc_key)
    if allocation_on_node:
        if alloc is not None and hw.topology is not None:
            ann[alloc_key] = merged_value(on_node, alloc, allocation_refresh_s)
        elif on_node is not None:
            ann[alloc_key] = on_node
    elif alloc_error is not None and on_node is not None and hw.topology is not None:
        ann[alloc_key] = on_node
    return Desired(lab, ann)


def merged_value(current: str | None, state: allocation.AllocationState, refresh_s: float = 0.0) -> str:
    """Keep ``current`` when it already says the same (its ``ts`` must not churn writes), unless its
    ``ts`` is ``refresh_s`` older than ``state``'s (the agent's heartbeat for the extender; 0 = never).

    Why a string comparison and not a decode: the value is ours and is about to be
    replaced when it differs, so there is nothing to learn from decoding it, and a
    damaged one (``0-4000000000``, deep nesting, ``1e400``) must cost no more than
    reading it. ``current`` is kept only when it is exactly the canonical encoding of
    ``state`` with some ``ts`` of at most 19 digits; anything else (damaged, or an older
    spelling of the same state) is replaced by ``allocation.encode(state)`` in one write.

    >>> s = allocation.AllocationState(frozenset({0}), {}, 5)
    >>> merged_value('{"free":"0","ts":1,"used":{},"v":1}', s), merged_value(None, s)
    ('{"free":"0","ts":1,"used":{},"v":1}', '{"free":"0","ts":5,"used":{},"v":1}')
    >>> merged_value('{"free":"0-4000000000","ts":1,"used":{},"v":1}', s)
    '{"free":"0","ts":5,"used":{},"v":1}'
    >>> merged_value('{"free":"0","ts":1,"used":{},"v":1}', s, refresh_s=4)
    '{"free":"0","ts":5,"used":{},"v":1}'
    """
    if current is not None:
        ts = _canonical_ts(current, state)
        fresh = not refresh_s or state.observed_at is None or (ts is not None and state.observed_at - ts < refresh_s)
        if ts is not None and fresh:
            return current
    return allocation.encode(state)


_TS = re.compile(r"[0-9]{1,19}")


def _canonical_ts(current: str, state: allocation.AllocationState) -> int | None:
    """The ``ts`` of ``current`` when it is the canonical encoding of ``state``'s free/used sets, else ``None``.

    The canonical form sorts keys, so ``ts`` sits between ``free`` (a cpulist: no quotes)
    and ``used``: split our own encoding there and compare both sides as strings.
    """
    ours = allocation.encode(dataclasses.replace(state, observed_at=0))
    head, sep, tail = ours.partition('"ts":0')
    if not sep or len(current) > len(ours) + 19 or not (current.startswith(head) and current.endswith(tail)):
        return None
    digits = current[len(head) + 5: len(current) - len(tail)]
    return int(digits) if _TS.fullmatch(digits) else None


def configmap_metadata(node: str) -> tuple[dict[str, str], dict[str, str]]:
    """Labels and annotations our allocation ConfigMap for ``node`` carries (see :mod:`labeler.topology.carrier`)."""
    cm_labels = {carrier.MANAGED_BY_LABEL: carrier.MANAGED_BY_VALUE, carrier.NODE_KEY: carrier.node_label_value(node)}
    annotations = {carrier.NODE_KEY: node} if carrier.node_label_value(node) != node else {}
    return cm_labels, annotations
