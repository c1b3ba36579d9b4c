"""Naming of the per-node allocation ConfigMap, shared by the agent (writer) and the extender (reader).

Why a ConfigMap at all: the Node annotation ``{prefix}allocation`` makes every
allocation change rewrite and rebroadcast the whole ~19 KB Node object to every
cluster-wide Node watcher; a small ConfigMap in the gputopo namespace reaches
only the extender (measurements: ``docs/agent.md``, "The allocation carrier").
Why a pure module here: both sides must derive the same name, labels and
node mapping, and the extender may not import the agent (import-linter).

Names and label values have hard limits that node names do not respect:

* a ConfigMap name is a DNS subdomain of at most 253 characters, and
  ``gputopo-alloc-`` + a 253-character node name is longer: such names are cut
  and end in ``-`` + 10 hex digits of the node name's SHA-256, so distinct
  nodes still get distinct names;
* a label value is at most 63 characters: for longer node names the
  ``gputopo.io/node`` label holds ``h-`` + 40 hex digits of the SHA-256 and the
  full name goes into the ``gputopo.io/node`` *annotation*, which readers
  prefer when present.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CONFIGMAP_PREFIX",
    "DATA_KEY",
    "DEFAULT_NAMESPACE",
    "MANAGED_BY_LABEL",
    "MANAGED_BY_VALUE",
    "NODE_KEY",
    "SELECTOR",
    "claimed_node",
    "configmap_name",
    "node_label_value",
    "node_of",
]

CONFIGMAP_PREFIX = "gputopo-alloc-"
DEFAULT_NAMESPACE = "gputopo-system"
DATA_KEY = "allocation"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "gputopo"
#: label (and, for node names over 63 characters, annotation) naming the node a ConfigMap describes
NODE_KEY = "gputopo.io/node"
#: the label selector the extender lists and watches with
SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"

_NAME_MAX = 253
_LABEL_VALUE_MAX = 63


def _digest(node: str, n: int) -> str:
    return hashlib.sha256(node.encode()).hexdigest()[:n]


def configmap_name(node: str) -> str:
    """The ConfigMap holding ``node``'s allocation: ``gputopo-alloc-<node>``, cut + hashed past 253 chars.

    >>> configmap_name("gpu-node-1")
    'gputopo-alloc-gpu-node-1'
    >>> long = "a" * 253
    >>> name = configmap_name(long)
    >>> len(name), name.startswith("gputopo-alloc-aaa"), name == configmap_name(long)
    (253, True, True)
    >>> name != configmap_name("b" + long[1:])
    True
    """
    name = CONFIGMAP_PREFIX + node
    if len(name) <= _NAME_MAX:
        return name
    suffix = "-" + _digest(node, 10)
    head = name[: _NAME_MAX - len(suffix)].rstrip("-.")  # a DNS subdomain must not end in '-' or '.'
    return head + suffix


def node_label_value(node: str) -> str:
    """The ``gputopo.io/node`` label value: the node name, or ``h-<sha256[:40]>`` when it exceeds 63 chars.

    >>> node_label_value("gpu-node-1"), len(node_label_value("n" * 64))
    ('gpu-node-1', 42)
    """
    if len(node) <= _LABEL_VALUE_MAX:
        return node
    return "h-" + _digest(node, 40)


def node_of(configmap: Mapping[str, Any]) -> str | None:
    """The node a ConfigMap dict describes: the ``gputopo.io/node`` annotation, else the label.

    >>> node_of({"metadata": {"labels": {NODE_KEY: "n1"}}}), node_of({"metadata": {}})
    ('n1', None)
    """
    meta = configmap.get("metadata")
    if not isinstance(meta, Mapping):
        return None
    for field in ("annotations", "labels"):
        values = meta.get(field)
        if isinstance(values, Mapping) and isinstance(v := values.get(NODE_KEY), str) and v:
            return v
    return None


def claimed_node(configmap: Mapping[str, Any]) -> str | None:
    """The node a ConfigMap speaks for, only when its *name* says the same; else ``None``.

    Why the name decides: an agent may write only its own ConfigMap, whose name
    is derived from its node (``configmap_name``; the admission policy in
    ``manifests/`` binds it to the node in the agent's token), while labels and
    annotations are whatever that agent wrote. So a ConfigMap whose label or
    annotation names another node than its name does (an agent speaking for a
    neighbour, or a copy) is refused, as is one whose ``gputopo.io/node`` label
    disagrees with the annotation.

    >>> good = {"metadata": {"name": "gputopo-alloc-n1", "labels": {NODE_KEY: "n1"}}}
    >>> claimed_node(good)
    'n1'
    >>> claimed_node({"metadata": {"name": "gputopo-alloc-n1", "labels": {NODE_KEY: "n2"}}}) is None
    True
    """
    node = node_of(configmap)
    meta = configmap.get("metadata")
    if node is None or not isinstance(meta, Mapping) or meta.get("name") != configmap_name(node):
        return None
    labels = meta.get("labels")
    label = labels.get(NODE_KEY) if isinstance(labels, Mapping) else None
    if label is not None and label != node_label_value(node):
        return None
    return node
