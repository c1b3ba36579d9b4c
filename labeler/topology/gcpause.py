"""The cyclic garbage collector paused while a block builds only acyclic data: ONE helper for every reader.

Why: decoding a large JSON page allocates millions of objects, which triggers full
collections; each pass over a big heap holds the GIL for 60-300 ms (docs/reliability.md) and
doubled the time to read 2,000 nodes (docs/performance.md). Decoded JSON and the small records
made from it hold no reference cycles, so reference counting frees each page as soon as it is
dropped; the collector would only walk the growing heap again and again. Used by the extender's
informer (three reflector threads list at once) and by ``gputopo audit cluster``.

Re-entrant and thread-safe: automatic collection resumes, as it was, when the last block in
progress (in any thread) ends.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["paused_gc"]

_lock = threading.Lock()
_users = 0
_was_enabled = False


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """No automatic collector passes inside the block (reference counting still frees)."""
    global _users, _was_enabled
    with _lock:
        if _users == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _was_enabled:
                gc.enable()
