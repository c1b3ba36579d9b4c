"""Paths into a JSON document and replacing the value at one: the fuzz tests' way to damage real documents.

Shared by ``tests/topology/test_decoder_fuzz.py`` and ``tests/extender/test_ext_fuzz.py``
(``tests/`` is on ``sys.path`` through its ``conftest.py``).
"""

from __future__ import annotations

from typing import Any


def paths(value: Any, prefix: tuple[Any, ...] = (), *, max_items: int | None = None) -> list[tuple[Any, ...]]:
    """Every path (keys and indices) in ``value``, the root included; lists cut to ``max_items``."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k), max_items=max_items)
    elif isinstance(value, list):
        for i, v in enumerate(value[:max_items]):
            out += paths(v, (*prefix, i), max_items=max_items)
    return out


def replace(doc: Any, path: tuple[Any, ...], new: Any) -> Any:
    """``doc`` with the value at ``path`` replaced by ``new`` (in place; the root path returns ``new``)."""
    if not path:
        return new
    target = doc
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return doc
