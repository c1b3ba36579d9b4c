"""One list+watch loop per resource kind with the official ``kubernetes`` client (the informer's reflector).

Why our own small reflector instead of ``kubernetes.watch.Watch``: Watch's
built-in 410 handling re-watches from the *same* expired resourceVersion (and
its ``deserialize=False`` path reads a key that raw events do not have). The
informer contract we need is the client-go one:

1. LIST (paged, ``limit``/``continue``) → replace the store → remember the
   list's ``resourceVersion``;
2. WATCH from it (``allowWatchBookmarks``, server ``timeoutSeconds``), apply
   ADDED/MODIFIED/DELETED, advance the resourceVersion (BOOKMARKs too);
3. watch timeout → watch again from the last resourceVersion;
   ``410 Gone`` (an ERROR event or an HTTP 410) → relist;
   any other error → back off, relist;
4. every ``resync_seconds`` → relist (periodic resync repairs any drift).

Lists stream page by page into the store's ``on_replace`` (only its small
records outlive a page), with the garbage collector's automatic passes held
off meanwhile (:func:`no_gc_passes`). Failing lists/watches, and watches that
end at once, back off exponentially with jitter (``backoff_seconds`` doubling
up to ``max_backoff_seconds``). Each reflector records since when it has been
failing; the store turns that into readiness. What the store keeps, and how a
damaged object stays that object's problem, is :mod:`extender.cache`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from extender.metrics import Metrics
from kubeio import pager
from labeler.topology.gcpause import paused_gc

__all__ = ["ListFn", "Reflector", "no_gc_passes"]

log = logging.getLogger("gputopo.extender.cache")

ListFn = Callable[..., Any]


#: a list page's target size: ~10 ms of decoding on the dev VM (see Reflector._items)
PAGE_BYTES = 1 << 20

_decode = msgspec.json.Decoder().decode


def _decode_page(data: bytes) -> Any:
    """msgspec's decoder, failing as the pager expects (``ValueError``)."""
    try:
        return _decode(data)
    except msgspec.DecodeError as err:
        raise ValueError(str(err)) from None


class _Gone(Exception):
    """The watch's resourceVersion expired (410): relist."""


class Reflector:
    """One list+watch loop for one resource kind, feeding ``on_replace``/``on_event``."""

    def __init__(
        self,
        kind: str,
        list_fn: ListFn,
        on_replace: Callable[[Iterable[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        *,
        stop: threading.Event,
        metrics: Metrics,
        page_size: int = 500,
        watch_timeout_seconds: int = 300,
        resync_seconds: float = 600.0,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        min_watch_seconds: float = 1.0,
        request_timeout_seconds: float = 30.0,
    ) -> None:
        self.kind = kind
        self._list_fn = list_fn
        self._on_replace = on_replace
        self._on_event = on_event
        self._stop = stop
        self._metrics = metrics
        self._page = page_size
        self._watch_timeout = watch_timeout_seconds
        self._resync = resync_seconds
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._min_watch = min_watch_seconds
        self._req_timeout = request_timeout_seconds
        self.synced = threading.Event()
        self.lists = 0
        self.watches = 0
        #: monotonic time since which lists/watches have been failing (None: in sync)
        self.failing_since: float | None = None
        self._resp: Any = None  # the open watch response, so `interrupt` can cut it

    def interrupt(self) -> None:
        """Cut the open watch from another thread (stop without waiting for the watch timeout)."""
        resp = self._resp
        if resp is not None:
            shutdown = getattr(resp, "shutdown", None)  # urllib3 >= 2.3: unblocks a read in progress
            try:
                if shutdown is not None:
                    shutdown()
                else:
                    resp.close()
            except Exception as err:  # best effort: the loop also checks the stop event
                log.debug("%s: interrupting the watch failed: %s", self.kind, err)

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: ``backoff · 2^(attempt-1)``, capped, times 0.5-1.0."""
        base: float = min(self._max_backoff, self._backoff * 2.0 ** min(attempt - 1, 30))
        return base * random.uniform(0.5, 1.0)

    def _failing(self) -> None:
        if self.failing_since is None:
            self.failing_since = time.monotonic()

    def run(self) -> None:
        failures = 0  # consecutive failed lists/watches (and 410s right after a list)
        while not self._stop.is_set():
            listed_at = time.monotonic()
            try:
                rv = self._list()
                deadline = time.monotonic() + self._resync
                short = 0  # consecutive watches that ended at once with nothing in them
                while not self._stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._metrics.watch_restarts.labels(self.kind, "resync").inc()
                        break
                    timeout = max(1, min(self._watch_timeout, int(left)))
                    started = time.monotonic()
                    rv, events = self._watch(rv, timeout)
                    failures = 0
                    if events == 0 and time.monotonic() - started < min(self._min_watch, timeout / 2):
                        short += 1
                        self._metrics.watch_restarts.labels(self.kind, "short").inc()
                        self._stop.wait(self.delay(short))
                    else:
                        short = 0
                        self._metrics.watch_restarts.labels(self.kind, "timeout").inc()
            except _Gone:
                log.info("%s watch: resourceVersion expired (410 Gone); relisting", self.kind)
                self._metrics.watch_restarts.labels(self.kind, "gone").inc()
                if time.monotonic() - listed_at < self._min_watch:  # 410 right after a list: back off too
                    failures += 1
                    self._stop.wait(self.delay(failures))
            except Exception as err:  # network, API or stream errors: back off and relist
                if self._stop.is_set():
                    break
                self._failing()
                failures += 1
                wait = self.delay(failures)
                log.warning("%s list/watch failed: %s; relisting in %.1fs", self.kind, str(err)[:300], wait)
                self._metrics.watch_restarts.labels(self.kind, "error").inc()
                self._stop.wait(wait)

    def _list(self) -> str:
        """One paged LIST, streamed: each page is decoded and handed on, then dropped.

        ``on_replace`` consumes the items as they come (only its small records
        outlive a page), so a 5,000-node relist never holds 5,000 decoded Node
        objects at once (~150 MB, and the garbage collector's full passes over
        them held the GIL for ~300 ms each). A failure mid-way propagates out
        of ``on_replace`` before it has changed anything.
        """
        state = {"rv": ""}
        with no_gc_passes():
            self._on_replace(self._items(state))  # never raises for one object's sake (see ClusterCache)
        rv = state["rv"]
        self.lists += 1
        self.failing_since = None
        self.synced.set()
        return rv

    def _items(self, state: dict[str, str]) -> Iterator[dict[str, Any]]:
        """The list's items, page by page (:func:`kubeio.pager.pages`, every reader's pager).

        Pages are sized by bytes (:data:`PAGE_BYTES`, never above ``page_size``): decoding a
        page is one C call that holds the GIL, and answers wait behind it. 500 realistic Nodes
        (~17 KB of JSON each, images and managedFields) are 8.7 MB: ~100 ms of ``json.loads``
        (measured: a relist delayed answers by up to 132 ms, docs/performance.md); pages are
        decoded with msgspec (about twice as fast as ``json``). A continue token that expires
        mid-list (410) is :class:`_Gone`: relist from the start, as after a watch's 410.
        """
        pages = pager.pages(self._list_fn, limit=self._page, timeout=self._req_timeout, what=f"{self.kind} list",
                            page_bytes=PAGE_BYTES, decode=_decode_page)
        try:
            for page in pages:
                if page is None:  # not with restarts=0; kept for the type
                    continue
                state["rv"] = page.resource_version or state["rv"]
                items = page.items
                del page
                yield from (item for item in items if isinstance(item, dict))
                del items  # this page is garbage before the next one is fetched
        except ApiException as err:
            if err.status == 410:
                raise _Gone from err
            raise

    def _watch(self, rv: str, timeout: int) -> tuple[str, int]:
        """Watch from ``rv`` until the server ends it; return the last resourceVersion and the event count."""
        try:
            resp = self._list_fn(
                watch=True,
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout,
                _preload_content=False,
                _request_timeout=(self._req_timeout, timeout + self._req_timeout),
            )
        except ApiException as err:
            if err.status == 410:
                raise _Gone from err
            raise
        self._resp = resp
        self.watches += 1
        self.failing_since = None  # the API server answered: we are in sync from here on
        events = 0
        try:
            if self._stop.is_set():  # stop() came while the request was being made
                return rv, events
            for line in iter_resp_lines(resp):
                if self._stop.is_set():
                    break
                if not line:
                    continue
                event = json.loads(line)  # a stream that is not JSON lines is broken: relist (backoff)
                obj = event.get("object") if isinstance(event, dict) else None
                if not isinstance(obj, dict):
                    self._metrics.bad_objects.labels(self.kind, "bad_event").inc()
                    continue
                etype = event.get("type")
                events += 1
                if etype == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise RuntimeError(f"watch error {str(obj.get('code'))[:8]}: {str(obj.get('message'))[:200]}")
                meta = obj.get("metadata")
                new_rv = meta.get("resourceVersion") if isinstance(meta, dict) else None
                if etype in ("ADDED", "MODIFIED", "DELETED"):
                    self._on_event(etype, obj)  # never raises for one object's sake (see ClusterCache)
                if new_rv:
                    rv = str(new_rv)[:64]
        finally:
            self._resp = None
            resp.close()
            resp.release_conn()
        return rv, events


#: the one GC pause of every reader (labeler.topology.gcpause), under the name this module always had
no_gc_passes = paused_gc
