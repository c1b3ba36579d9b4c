"""Bounded decoding: JSON with size and depth limits, cpulists with id limits, one error type.

Why a module of its own: every decoder of the core (the topology annotation,
the allocation value, and the later format versions) must enforce the same
limits (:mod:`labeler.topology.limits`) the same way, and must turn every
failure into :class:`~labeler.topology.errors.CodecError`. Python's own
decoders fail in many ways a caller does not expect: ``json.loads`` raises
``RecursionError`` on deep nesting and ``ValueError`` on a 5,000-digit number,
``int()`` on ``float("inf")`` raises ``OverflowError``, a huge range raises
``MemoryError``. :func:`guard` maps all of them to ``CodecError`` and
:func:`loads` refuses what is too large or too deep *before* parsing, so no
recursive code ever sees hostile depth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import accumulate
from typing import Any

from labeler.topology import limits
from labeler.topology.errors import CodecError

__all__ = ["check_str", "cpulist", "guard", "json_depth", "loads"]

# A JSON string literal (escapes included), written as an unrolled loop so long strings stay linear.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


@contextmanager
def guard(what: str) -> Iterator[None]:
    """Turn whatever a decoding step raises into :class:`CodecError` naming ``what``.

    >>> with guard("example"):
    ...     int(float("inf"))
    Traceback (most recent call last):
    ...
    labeler.topology.errors.CodecError: example: OverflowError: cannot convert float infinity to integer
    """
    try:
        yield
    except CodecError:
        raise
    except (RecursionError, MemoryError) as err:  # never from hostile depth (checked first); a last resort
        raise CodecError(f"{what}: {type(err).__name__}") from None
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError) as err:
        raise CodecError(f"{what}: {type(err).__name__}: {str(err)[:200]}") from None


def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in ``text``, ignoring brackets inside strings (linear time).

    >>> json_depth('{"a": [1, [2, "]]]"]], "b": {}}')
    3
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_DELTA.__getitem__, brackets)), default=0)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(value: object, *, what: str, max_chars: int, max_depth: int = limits.MAX_JSON_DEPTH) -> Any:
    """``json.loads`` of a string with a size and a depth limit; ``NaN``/``Infinity`` refused.

    >>> loads('{"v": 1}', what="doc", max_chars=100)
    {'v': 1}
    >>> loads("[" * 50 + "]" * 50, what="doc", max_chars=100)
    Traceback (most recent call last):
    ...
    labeler.topology.errors.CodecError: doc: JSON nested 50 deep, over the limit of 16
    """
    if not isinstance(value, str):
        raise CodecError(f"{what}: expected a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise CodecError(f"{what}: {len(value)} characters, over the limit of {max_chars}")
    depth = json_depth(value)
    if depth > max_depth:
        raise CodecError(f"{what}: JSON nested {depth} deep, over the limit of {max_depth}")
    with guard(f"{what} is not JSON"):
        return json.loads(value, parse_constant=_no_constant)


def check_str(value: object, *, what: str, max_chars: int = limits.MAX_STRING_CHARS) -> str:
    """``value`` when it is a string of at most ``max_chars`` characters, else :class:`CodecError`."""
    if not isinstance(value, str):
        raise CodecError(f"{what}: expected a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise CodecError(f"{what}: {len(value)} characters, over the limit of {max_chars}")
    return value


def cpulist(text: str, *, max_id: int = limits.MAX_CPU_ID, max_ids: int | None = None) -> frozenset[int]:
    """A Linux cpulist (``"0-3,8,10-11"``) as a set, every id ≤ ``max_id``; ``ValueError`` otherwise.

    ``max_ids`` caps how many ids the list may expand to (default: ``max_id + 1``,
    which a list without duplicates cannot exceed), so repeated ranges
    (``0-8191,0-8191,…``) cannot turn a short text into a long loop.

    >>> sorted(cpulist("0-2,7"))
    [0, 1, 2, 7]
    >>> cpulist("0-1000000")
    Traceback (most recent call last):
    ...
    ValueError: cpulist id 1000000 above the limit of 8191
    """
    budget = max_id + 1 if max_ids is None else max_ids
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = _RANGE.fullmatch(part)
        if not m:
            raise ValueError(f"not a cpulist element: {part[:40]!r}")
        lo_s, hi_s = m.group(1), m.group(2) or m.group(1)
        if max(len(lo_s), len(hi_s)) > len(str(max_id)):  # never int() a 5,000-digit string
            raise ValueError(f"cpulist id {max(lo_s, hi_s, key=len)[:12]} above the limit of {max_id}")
        lo, hi = int(lo_s), int(hi_s)
        if hi < lo:
            raise ValueError(f"descending range {part!r}")
        if hi > max_id:
            raise ValueError(f"cpulist id {hi} above the limit of {max_id}")
        budget -= hi - lo + 1
        if budget < 0:
            raise ValueError("cpulist expands to more ids than the limit allows")
        out.update(range(lo, hi + 1))
    return frozenset(out)
