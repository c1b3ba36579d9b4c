"""The kube-scheduler extender wire types (``k8s.io/kube-scheduler/extender/v1``).

Why these shapes (see ``shared/extender-protocol/README.md`` §1, §7):

- The Go types carry **no json tags**, so the JSON keys are the Go field names
  (``Pod``, ``NodeNames``, ``FailedNodes``...) and there is **no omitempty**: a
  nil value is an explicit ``null``. Our answers always carry every key.
- Go's ``encoding/json`` matches keys **case-insensitively** on decode (upstream
  ``TestCompatibility`` round-trips ``strings.ToLower(json)``), prefers no
  casing, and lets a later duplicate key overwrite an earlier one. We decode the
  same way (:class:`GoStruct`), and ignore unknown keys like Go does.
- ``Pod``, ``Node`` and ``NodeList`` are k8s API objects with many optional
  fields that change between releases. They are kept as plain dicts (the
  loosest model that preserves every field), because in ``nodeCacheCapable:
  false`` mode the filter answer must echo the passing Node objects unchanged.
  A valid scheduler request therefore never fails validation (no 422).
- Scores are JSON integers clamped to ``0..10``: the scheduler multiplies them
  by ``weight * 10`` and clamps nothing, and rejects ``7.0`` / ``"7"``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pydantic_core
from pydantic import BaseModel, ConfigDict, TypeAdapter, field_validator, model_validator

from policy.scoring.base import MAX_SCORE, clamp

__all__ = [
    "MAX_EXTENDER_PRIORITY",
    "MIN_EXTENDER_PRIORITY",
    "ExtenderArgs",
    "ExtenderBindingArgs",
    "ExtenderBindingResult",
    "ExtenderFilterResult",
    "ExtenderPreemptionArgs",
    "ExtenderPreemptionResult",
    "GoStruct",
    "HostPriority",
    "MetaPod",
    "MetaVictims",
    "NodeList",
    "PriorityEncoder",
    "Victims",
    "clamp_score",
    "encode_filter_result",
    "encode_priorities",
    "go_error_text",
    "host_priority_list",
]

MIN_EXTENDER_PRIORITY = 0
MAX_EXTENDER_PRIORITY = MAX_SCORE  # the protocol's name (extenderv1.MaxExtenderPriority); one definition

KubeObject = dict[str, Any]


def _fold(key: str) -> str:
    """Go's key folding for struct-field matching (close to Unicode simple case folding)."""
    return key.casefold()


class GoStruct(BaseModel):
    """A Go struct without json tags: Go field names, case-insensitive keys, unknown keys ignored.

    Decoding rule (Go ``encoding/json``): every object key, in document order,
    is matched to a field exactly or else case-insensitively; a later key that
    maps to the same field overwrites the earlier one.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    _folded: ClassVar[dict[str, str]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._folded = {_fold(name): name for name in cls.model_fields}

    @model_validator(mode="before")
    @classmethod
    def _go_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data  # let pydantic report the type error
        fields = cls.model_fields
        out: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                continue
            name = key if key in fields else cls._folded.get(_fold(key))
            if name is not None:
                out[name] = value
        return out


class NodeList(BaseModel):
    """``v1.NodeList`` as the scheduler builds it: ``{"metadata": {}, "items": [...]}``.

    Extra keys (``kind``, ``apiVersion``) are kept. ``items`` stay plain dicts.
    """

    model_config = ConfigDict(extra="allow")
    metadata: dict[str, Any] | None = None
    items: list[KubeObject] | None = None


class ExtenderArgs(GoStruct):
    """Filter and prioritize request: ``{"Pod", "Nodes", "NodeNames"}`` (one list is null)."""

    Pod: KubeObject | None = None
    Nodes: NodeList | None = None
    NodeNames: list[str] | None = None


class ExtenderFilterResult(GoStruct):
    """Filter answer. ``NodeNames`` for nodeCacheCapable=true, ``Nodes`` (NodeList) for false."""

    Nodes: NodeList | None = None
    NodeNames: list[str] | None = None
    FailedNodes: dict[str, str] | None = None
    FailedAndUnresolvableNodes: dict[str, str] | None = None
    Error: str = ""


def clamp_score(score: int) -> int:
    """Clamp to ``[MIN_EXTENDER_PRIORITY, MAX_EXTENDER_PRIORITY]`` (the scheduler never does)."""
    return clamp(score)


class HostPriority(GoStruct):
    """One prioritize entry; ``Score`` is an integer clamped to 0..10."""

    Host: str
    Score: int

    @field_validator("Score", mode="after")
    @classmethod
    def _clamp(cls, v: int) -> int:
        return clamp_score(v)


#: The prioritize answer is a **bare JSON array** (``HostPriorityList``), not an object.
host_priority_list: TypeAdapter[list[HostPriority]] = TypeAdapter(list[HostPriority])


class ExtenderBindingArgs(GoStruct):
    PodName: str = ""
    PodNamespace: str = ""
    PodUID: str = ""
    Node: str = ""


class ExtenderBindingResult(GoStruct):
    Error: str = ""


class MetaPod(GoStruct):
    UID: str = ""


class MetaVictims(GoStruct):
    Pods: list[MetaPod] | None = None
    NumPDBViolations: int = 0


class Victims(GoStruct):
    Pods: list[KubeObject] | None = None
    NumPDBViolations: int = 0


class ExtenderPreemptionArgs(GoStruct):
    Pod: KubeObject | None = None
    NodeNameToVictims: dict[str, Victims] | None = None
    NodeNameToMetaVictims: dict[str, MetaVictims] | None = None


class ExtenderPreemptionResult(GoStruct):
    NodeNameToMetaVictims: dict[str, MetaVictims] | None = None


# -- fast encoders --------------------------------------------------------------------------
# The service builds answers as plain dicts/tuples and serialises them once with
# pydantic-core (Rust), instead of building thousands of model instances per
# request. Tests check these produce exactly what the models above produce.


def go_error_text(message: str) -> str:
    """An ``Error`` value safe for ``fmt.Errorf(result.Error)`` (used as a format string).

    ``%`` is doubled so Go prints it literally instead of ``%!v(MISSING)``.
    """
    return message.replace("%", "%%")


def encode_filter_result(
    *,
    nodes: NodeList | dict[str, Any] | None,
    node_names: list[str] | None,
    failed: dict[str, str] | None,
    unresolvable: dict[str, str] | None,
    error: str = "",
) -> bytes:
    """Serialise an ``ExtenderFilterResult`` with all five keys, in Go declaration order."""
    if isinstance(nodes, NodeList):
        nodes = nodes.model_dump(mode="json")
    body = {
        "Nodes": nodes,
        "NodeNames": node_names,
        "FailedNodes": failed,
        "FailedAndUnresolvableNodes": unresolvable,
        "Error": go_error_text(error),
    }
    return pydantic_core.to_json(body)


def encode_priorities(scores: list[tuple[str, int]]) -> bytes:
    """Serialise a ``HostPriorityList``: a bare array of ``{"Host", "Score"}``, scores clamped."""
    return pydantic_core.to_json(
        [{"Host": host, "Score": s if type(s) is int and 0 <= s <= 10 else clamp_score(int(s))} for host, s in scores]
    )


_SCORE_TAIL = tuple(f"{i}}}".encode() for i in range(MAX_EXTENDER_PRIORITY + 1))


class PriorityEncoder:
    """Fast ``HostPriorityList`` encoder: same bytes as :func:`encode_priorities`.

    Why: at 5,000 nodes, building 5,000 dicts per request costs more than
    all scoring together. Each node name's JSON prefix ``{"Host":"<name>","Score":``
    is escaped once and cached (bounded: cleared past ``max_names``), then the
    answer is one ``join`` of cached fragments and the score digits.
    """

    def __init__(self, max_names: int = 1 << 16) -> None:
        self._frag: dict[str, bytes] = {}
        self._max = max_names  # names are at most 253 characters: ~20 MB at most

    def encode(self, hosts: list[str], scores: list[int]) -> bytes:
        if len(hosts) != len(scores):
            raise ValueError("hosts and scores differ in length")
        if scores and (min(scores) < MIN_EXTENDER_PRIORITY or max(scores) > MAX_EXTENDER_PRIORITY):
            scores = [clamp_score(s) for s in scores]
        frag, tail = self._frag, _SCORE_TAIL
        if len(frag) > self._max:
            frag.clear()
        get = frag.get
        parts = []
        for host, score in zip(hosts, scores, strict=True):
            prefix = get(host)
            if prefix is None:
                prefix = b'{"Host":' + pydantic_core.to_json(host) + b',"Score":'
                if len(host) <= 253:  # a node name; anything longer is answered but not kept
                    frag[host] = prefix
            parts.append(prefix + tail[score])
        return b"[" + b",".join(parts) + b"]"
