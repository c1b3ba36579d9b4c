"""Pure planning of the one Node PATCH the agent sends.

Why a pure function: deciding *what* to write (which keys are ours, which are
stale, whether anything changed at all) is where the correctness lives, and it
must be testable without a cluster. The publisher only reads the Node, calls
:func:`plan_patch` and sends the result.

Rules, all enforced here:

* we only add, change or remove keys we own (``labels.owns(key, prefix=...)``);
  a foreign key is never in the patch, whatever ``desired`` says;
* an owned key present on the node but absent from ``desired`` is stale and is
  removed (JSON merge patch ``null``, RFC 7386);
* nothing changed → ``None``, and the caller sends no request at all;
* the patch carries the ``metadata.resourceVersion`` we planned against, so the
  API server rejects it with 409 if the node changed in between (optimistic
  concurrency; the publisher then re-reads and re-plans).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from labeler.topology import labels as topo_labels

__all__ = ["MERGE_PATCH", "Desired", "NodeMeta", "Patch", "plan_patch"]

#: The content type of every write: RFC 7386 JSON merge patch (see docs/agent.md).
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class NodeMeta:
    """The parts of a Node the agent reads: labels, annotations, resourceVersion."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str | None = None


@dataclass(frozen=True)
class Desired:
    """The owned labels and annotations the node should carry, nothing else."""

    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Patch:
    """A planned merge patch: ``None`` values delete a key."""

    labels: Mapping[str, str | None]
    annotations: Mapping[str, str | None]
    resource_version: str | None = None

    def body(self) -> dict[str, Any]:
        """The JSON merge-patch document (only non-empty maps are included)."""
        meta: dict[str, Any] = {}
        if self.labels:
            meta["labels"] = dict(sorted(self.labels.items()))
        if self.annotations:
            meta["annotations"] = dict(sorted(self.annotations.items()))
        if self.resource_version is not None:
            meta["resourceVersion"] = self.resource_version
        return {"metadata": meta}

    def to_json(self) -> str:
        """Compact JSON, exactly the bytes sent on the wire."""
        return json.dumps(self.body(), separators=(",", ":"), sort_keys=True)

    def apply_to(self, current: NodeMeta) -> NodeMeta:
        """What the node's metadata becomes after this patch (used by ``--dry-run``)."""
        return NodeMeta(_merge(current.labels, self.labels), _merge(current.annotations, self.annotations), None)


def _merge(current: Mapping[str, str], patch: Mapping[str, str | None]) -> dict[str, str]:
    out = dict(current)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _diff(current: Mapping[str, str], desired: Mapping[str, str], prefix: str) -> dict[str, str | None]:
    for key in desired:
        if not topo_labels.owns(key, prefix=prefix):
            # A bug upstream, not a runtime condition: refuse rather than touch a foreign key.
            raise ValueError(f"desired key {key!r} is not under our prefix {prefix!r}")
    out: dict[str, str | None] = {}
    for key, value in desired.items():
        if current.get(key) != value:
            out[key] = value
    for key in current:
        if topo_labels.owns(key, prefix=prefix) and key not in desired:
            out[key] = None
    return out


def plan_patch(
    current: NodeMeta, desired: Desired | tuple[Mapping[str, str], Mapping[str, str]], prefix: str
) -> Patch | None:
    """The smallest merge patch that makes our keys on ``current`` equal ``desired``.

    >>> cur = NodeMeta({"a.io/x": "1", "gputopo.io/old": "1"}, {}, "7")
    >>> plan_patch(cur, ({"gputopo.io/gpu-count": "8"}, {}), "gputopo.io/").body()
    {'metadata': {'labels': {'gputopo.io/gpu-count': '8', 'gputopo.io/old': None}, 'resourceVersion': '7'}}
    >>> plan_patch(cur, ({"gputopo.io/old": "1"}, {}), "gputopo.io/") is None
    True
    """
    if not isinstance(desired, Desired):
        desired = Desired(desired[0], desired[1])
    labels = _diff(current.labels, desired.labels, prefix)
    annotations = _diff(current.annotations, desired.annotations, prefix)
    if not labels and not annotations:
        return None
    return Patch(labels, annotations, current.resource_version)
