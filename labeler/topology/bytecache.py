"""A cache bounded by bytes as well as by entries.

Why not ``functools.lru_cache`` or an entry-counted dict: the values gputopo
memoises (decoded topologies, placers with their own memo, allocation states)
differ in size by three orders of magnitude, so "512 entries" says nothing
about memory: 512 small topologies are a megabyte, 512 hostile ones were
hundreds. Each entry here carries a cost estimate in bytes (see the ``cost``
helpers next to each user), and inserting evicts the oldest entries until both
limits hold. An entry costing more than the whole budget is not kept at all.

Reads take no lock (a dict lookup is atomic in CPython), so the extender's hot
path pays nothing; writes take one. Eviction is by insertion order, not by use:
a hit does not reorder, which keeps reads lock-free. A hot entry that is
evicted is rebuilt once, at the cost of one decode.

:class:`Memo` is the per-object answer memo inside those cached values (a placer's
placements, a bandwidth model's predictions, a wiring's set searches): bounded by
entries, cleared whole when full, so the value's :meth:`cost_bytes` can promise a
ceiling to the :class:`ByteCache` that holds it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["MISS", "ByteCache", "Memo"]

K = TypeVar("K")
V = TypeVar("V")


#: what :meth:`Memo.get` returns for a key it does not hold (``None`` is a valid answer)
MISS: object = object()


class Memo(Generic[K, V]):
    """A memo of at most ``max_entries`` answers, cleared whole when full (thread-safe).

    Reads are a bound ``dict.get`` (no lock, no extra call layer: the hot paths call it per
    group); writes take a lock. A race can only compute the same answer twice. Clearing
    whole instead of evicting one keeps the bound without bookkeeping on the read path.

    >>> m: Memo[int, str | None] = Memo(2)
    >>> m.put(1, None), m.get(1, MISS), m.get(2, MISS) is MISS
    (None, None, True)
    >>> m.put(2, "b"), m.put(3, "c"), len(m)  # full at the third: cleared, then stored
    ('b', 'c', 1)
    """

    __slots__ = ("_data", "_lock", "get", "max_entries")

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: dict[K, V] = {}
        self._lock = threading.Lock()
        self.get = self._data.get  # bound once: a read is one C call

    def put(self, key: K, value: V) -> V:
        with self._lock:
            if len(self._data) >= self.max_entries:
                self._data.clear()
            self._data[key] = value
        return value

    def __len__(self) -> int:
        return len(self._data)


class ByteCache(Generic[K, V]):
    """Insertion-ordered cache with ``max_entries`` and ``max_bytes`` limits (thread-safe).

    >>> c: ByteCache[str, str] = ByteCache(max_bytes=10, max_entries=100)
    >>> c.put("a", "x", 6), c.put("b", "y", 6), c.get("a"), c.get("b"), c.bytes
    ('x', 'y', None, 'y', 6)
    >>> c.get_or_build("c", str.upper, len), c.get_or_build("c", str.lower, len), c.get("b")
    ('C', 'C', 'y')
    """

    def __init__(self, *, max_bytes: int, max_entries: int) -> None:
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        hit = self._data.get(key)
        return None if hit is None else hit[0]

    def put(self, key: K, value: V, cost: int) -> V:
        """Store ``value`` (unless it alone exceeds the budget); return what the cache now holds for ``key``."""
        if cost > self.max_bytes:
            return value
        with self._lock:
            old = self._data.get(key)
            if old is not None:  # another thread stored it meanwhile: keep one copy
                return old[0]
            self._data[key] = (value, cost)
            self._bytes += cost
            while self._bytes > self.max_bytes or len(self._data) > self.max_entries:
                _, (_, gone) = self._data.popitem(last=False)
                self._bytes -= gone
        return value

    def get_or_build(self, key: K, build: Callable[[K], V], cost: Callable[[V], int]) -> V:
        """The value for ``key``, built (outside the lock) and stored on a miss: the per-topology objects' cache."""
        hit = self.get(key)
        if hit is not None:
            return hit
        value = build(key)
        return self.put(key, value, cost(value))

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0

    @property
    def bytes(self) -> int:
        """The estimated bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._data)
