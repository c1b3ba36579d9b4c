"""THE paged LIST of every gputopo reader (the extender's informer, ``gputopo audit cluster``).

The API server's chunked list (``limit`` + ``continue``): each page is fetched raw
(``_preload_content=False``: the client's model classes cost far more than the JSON), decoded,
handed on and dropped, so memory holds one page of full objects.

What it handles, once for every caller:

- **an expired continue token** (410 Gone mid-list: etcd compacted the snapshot the token points
  into, typically after ~5 minutes): with ``restarts`` left, it yields ``None`` (drop what this
  list gave so far) and lists again from the start, so the pages a caller keeps are one
  consistent snapshot; without, the 410 :class:`ApiException` goes to the caller (the informer
  relists on its own);
- **page size by bytes** (``page_bytes``): decoding a page is one C call that holds the GIL, so a
  server answering requests beside the list wants pages of about the same *bytes*, not items
  (500 realistic Nodes are 8.7 MB, ~100 ms of decoding). After each page the next ``limit`` is
  set to about ``page_bytes`` worth of the items seen so far, never above ``limit`` nor below 10;
- **the watch cache** (``cached``): the first page asks for ``resourceVersion=0``
  (``NotOlderThan``): served from the API server's memory, lighter on etcd, possibly slightly
  behind; the server may then ignore ``limit``;
- **an answer that is not a JSON object**: :class:`ListDecodeError`, never a partial page.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from kubeio.objects import as_map

__all__ = ["ListDecodeError", "Page", "pages"]

#: the smallest adaptive ``limit`` (a page of huge objects still makes progress)
MIN_ADAPTIVE_LIMIT = 10


class ListDecodeError(RuntimeError):
    """A list answer that is not a JSON object (a broken server or proxy)."""


@dataclass(slots=True)
class Page:
    """One page: its items as decoded (anything JSON), its size, and the list's metadata so far."""

    items: list[Any]
    nbytes: int
    #: the list's resourceVersion (a watch starts from it), at most 64 characters; "" when absent
    resource_version: str
    #: the server's ``remainingItemCount`` after this page, when given (not on every server or page)
    remaining: int | None
    last: bool


def pages(list_fn: Callable[..., Any], *, limit: int, timeout: float, what: str = "list",
          page_bytes: int | None = None, cached: bool = False, restarts: int = 0,
          decode: Callable[[bytes], Any] = json.loads, **query: Any) -> Iterator[Page | None]:
    """The pages of one list of ``list_fn`` (a ``CoreV1Api.list_*`` method) with ``query`` (selectors).

    ``None`` means "the list starts again" (see the module docstring); a caller with
    ``restarts=0`` never sees one.
    """
    left = restarts
    while True:
        try:
            yield from _one_list(list_fn, limit=limit, timeout=timeout, what=what, page_bytes=page_bytes,
                                 cached=cached, decode=decode, query=query)
            return
        except _Expired as expired:
            if left <= 0:
                raise expired.error from None
            left -= 1
            yield None


class _Expired(Exception):
    """The continue token expired mid-list (410): carries the API's error for a caller without restarts."""

    def __init__(self, error: ApiException) -> None:
        super().__init__(str(error))
        self.error = error


def _one_list(list_fn: Callable[..., Any], *, limit: int, timeout: float, what: str, page_bytes: int | None,
              cached: bool, decode: Callable[[bytes], Any], query: dict[str, Any]) -> Iterator[Page]:
    cont: str | None = None
    size, seen_items, seen_bytes = limit, 0, 0
    rv = ""
    while True:
        kwargs: dict[str, Any] = {"limit": size, "_preload_content": False, "_request_timeout": timeout, **query}
        if cont:
            kwargs["_continue"] = cont
        elif cached:
            kwargs["resource_version"] = "0"
            kwargs["resource_version_match"] = "NotOlderThan"
        try:
            resp = list_fn(**kwargs)
        except ApiException as err:
            if err.status == 410 and cont:
                raise _Expired(err) from None
            raise
        try:
            data = resp.data
        finally:
            resp.release_conn()
        try:
            doc = decode(data)
        except ValueError as err:  # json.JSONDecodeError; a caller's decoder raises ValueError too
            raise ListDecodeError(f"{what}: answer is not JSON: {str(err)[:200]}") from None
        if not isinstance(doc, dict):
            raise ListDecodeError(f"{what}: answer is not a JSON object")
        nbytes = len(data)
        del data
        raw = doc.get("items")
        items = raw if isinstance(raw, list) else []
        if page_bytes is not None and items:
            seen_items, seen_bytes = seen_items + len(items), seen_bytes + nbytes
            size = min(limit, max(MIN_ADAPTIVE_LIMIT, page_bytes * seen_items // max(1, seen_bytes)))
        meta = as_map(doc.get("metadata"))
        del doc
        rv = str(meta.get("resourceVersion") or rv)[:64]
        nxt = meta.get("continue")
        cont = nxt if isinstance(nxt, str) and nxt else None
        remaining = meta.get("remainingItemCount")
        remaining = remaining if isinstance(remaining, int) and not isinstance(remaining, bool) \
            and remaining >= 0 else None
        yield Page(items, nbytes, rv, remaining, cont is None)
        del items, raw  # the page is garbage (once the caller drops it) before the next one is fetched
        if cont is None:
            return
        time.sleep(0)  # between pages: threads waiting for the GIL (a server's requests) go first
