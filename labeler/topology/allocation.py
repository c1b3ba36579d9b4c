"""Allocation state: which GPUs of a node are free, as the agent publishes it.

Why a separate codec: the labeler agent reads allocations from the kubelet
pod-resources API and publishes them; the extender only reads them. Both must
agree on one small, versioned value. By default the agent writes it as
``data.allocation`` of a per-node ConfigMap ``gputopo-alloc-<node>`` (see
:mod:`labeler.topology.carrier`), which only the cached extender watches and which
costs the cluster ~1 % of the watch traffic of a Node update (``docs/agent.md``).
With ``--allocation-carrier=annotation`` or ``both`` the same string is also the
Node annotation ``{prefix}allocation``, which the stateless extender mode, seeing
only the Node objects in the request, needs and the cached mode falls back to.

The value is compact JSON: ``{"v":1,"free":"0-3,6","used":{"4":"ns/pod"},"ts":1700000000}``.
``ts`` (unix seconds) is when the agent observed the state, so the extender can
tell which bound pods are newer than it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from labeler.topology import bounded, limits
from labeler.topology.errors import CodecError
from labeler.topology.serialize import format_cpulist, parse_cpulist

__all__ = ["ANNOTATION_SUFFIX", "AllocationState", "decode", "encode"]

ANNOTATION_SUFFIX = "allocation"
_VERSION = 1


@dataclass(frozen=True)
class AllocationState:
    """Free GPU indices, used GPU index → ``namespace/pod``, and when this was observed."""

    free: frozenset[int]
    used: dict[int, str] = field(default_factory=dict)
    observed_at: int | None = None

    def same_allocation(self, other: AllocationState | None) -> bool:
        """Equal free/used sets, ignoring when they were observed (publish only on change)."""
        return other is not None and self.free == other.free and self.used == other.used


def encode(state: AllocationState) -> str:
    """Compact canonical JSON (sorted keys), so equal states give equal strings.

    >>> encode(AllocationState(frozenset({0, 1, 2, 5}), {3: "ml/train-0"}, 1700000000))
    '{"free":"0-2,5","ts":1700000000,"used":{"3":"ml/train-0"},"v":1}'
    """
    doc: dict[str, Any] = {
        "v": _VERSION,
        "free": format_cpulist(state.free),
        "used": {str(k): v for k, v in sorted(state.used.items())},
    }
    if state.observed_at is not None:
        doc["ts"] = int(state.observed_at)
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def decode(value: str) -> AllocationState:
    """Inverse of :func:`encode`; :class:`CodecError` for anything else or over a limit.

    Limits (:mod:`labeler.topology.limits`): the value's size and JSON depth,
    GPU indices up to ``MAX_GPU_INDEX``, at most ``MAX_GPUS`` used entries,
    pod keys up to ``MAX_POD_KEY_CHARS``, a non-negative integer ``ts``.
    """
    doc = bounded.loads(value, what="allocation", max_chars=limits.MAX_ALLOCATION_JSON_CHARS)
    with bounded.guard("malformed allocation"):
        if not isinstance(doc, dict) or doc.get("v") != _VERSION:
            raise CodecError(f"unsupported allocation format: {value[:80]!r}")
        used_raw = doc.get("used", {})
        if not isinstance(used_raw, dict):
            raise CodecError("allocation 'used' must be an object")
        if len(used_raw) > limits.MAX_GPUS:
            raise CodecError(f"allocation 'used' names {len(used_raw)} GPUs, over the limit of {limits.MAX_GPUS}")
        free_raw = bounded.check_str(doc["free"], what="allocation 'free'", max_chars=limits.MAX_ALLOCATION_JSON_CHARS)
        free = parse_cpulist(free_raw, max_id=limits.MAX_GPU_INDEX)
        used = {_gpu_key(k): bounded.check_str(v, what="allocation pod key", max_chars=limits.MAX_POD_KEY_CHARS)
                for k, v in used_raw.items()}
        if free & used.keys():
            raise CodecError(f"GPUs both free and used: {sorted(free & used.keys())}")
        ts = doc.get("ts")
        if ts is not None and (type(ts) is not int or not 0 <= ts < 1 << 63):
            raise CodecError(f"allocation 'ts' must be unix seconds, got {str(ts)[:30]!r}")
        return AllocationState(free, used, ts)


def _gpu_key(key: str) -> int:
    if not (key.isascii() and key.isdigit() and len(key) <= 4) or int(key) > limits.MAX_GPU_INDEX:
        raise CodecError(f"allocation 'used' key {key[:20]!r} is not a GPU index")
    return int(key)
