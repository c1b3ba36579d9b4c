"""Kubernetes name rules and list parsing for settings: ONE copy for the agent, the extender and the audits.

Why here: the three processes read the same kinds of values (a namespace, a node name, label keys,
comma-separated lists from one environment variable), and a rule written three times drifts; the
settings classes call these from their validators. Plain functions that raise ``ValueError``, which
pydantic reports with the field's name. No I/O, no ``kubernetes`` import.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from labeler.topology import labels

__all__ = ["label_keys", "namespace", "node_name", "split_commas"]

#: RFC 1123 label (a namespace name): lower-case alphanumerics and '-', at most 63 characters
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
#: RFC 1123 subdomain (a node name): dot-separated labels, at most 253 characters
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def split_commas(value: object) -> object:
    """``"a, b,,c"`` → ``["a", "b", "c"]`` (an environment variable or a flag); other values unchanged.

    >>> split_commas(" gpu.pool , cloud.google.com/gke-nodepool,")
    ['gpu.pool', 'cloud.google.com/gke-nodepool']
    """
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    return value


def namespace(value: str) -> str:
    """A namespace name (a DNS label), surrounding spaces removed; ``ValueError`` otherwise.

    >>> namespace(" gputopo-system ")
    'gputopo-system'
    """
    value = value.strip()
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError("not a valid namespace name (a DNS label: a-z, 0-9, '-', at most 63 characters)")
    return value


def node_name(value: str) -> str:
    """A node name (a DNS subdomain), surrounding spaces removed; ``ValueError`` otherwise."""
    value = value.strip()
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError("not a valid node name (a DNS subdomain)")
    return value


def label_keys(keys: Sequence[str]) -> list[str]:
    """Every key a valid label key (``prefix/name``); ``ValueError`` naming the bad ones."""
    bad = [k for k in keys if not labels.is_valid_label_key(k)]
    if bad:
        raise ValueError(f"not valid label keys: {bad}")
    return list(keys)
