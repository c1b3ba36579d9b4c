"""Tolerant reading of raw API objects (decoded JSON): a missing or mistyped field is an absent one.

Why: the informer, the audit's reader and the pager all walk objects that anything with write
access may have shaped; ``obj["metadata"]["labels"]`` would raise on the first odd one. One helper
instead of a private copy in each reader.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["as_map"]

_EMPTY: Mapping[str, Any] = {}


def as_map(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a JSON object, else an empty mapping (never ``None``, never raises).

    >>> as_map({"a": 1}), dict(as_map(None)), dict(as_map(["not", "an", "object"]))
    ({'a': 1}, {}, {})
    """
    return value if isinstance(value, dict) else _EMPTY
