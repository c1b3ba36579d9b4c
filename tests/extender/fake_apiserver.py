"""A tiny, real HTTP kube-apiserver stand-in for Nodes and Pods: LIST (paged) and WATCH (chunked).

It speaks what the official ``kubernetes`` client expects on the wire:

- ``GET /api/v1/nodes?limit=N&continue=T`` → a ``NodeList`` page with
  ``metadata.resourceVersion`` and ``metadata.continue``;
- ``GET /api/v1/nodes?watch=true&resourceVersion=R&timeoutSeconds=S`` → HTTP/1.1
  chunked stream of JSON lines ``{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR, "object": …}``
  for every change after R; when R is older than the compaction point it sends
  the apiserver's ``ERROR`` event with a ``Status`` of code 410 ("too old resource
  version"), or, with ``gone_as_http=True``, answers HTTP 410 to the watch request;
- the same for ``/api/v1/pods``, ``/api/v1/namespaces/{ns}/pods`` and
  ``/api/v1/namespaces/{ns}/configmaps`` (only that namespace's objects), all honouring
  an equality ``labelSelector`` (``k=v,k2=v2``) on LIST and WATCH;
- LIST also honours a ``fieldSelector`` of ``=``/``==``/``!=`` terms (``status.phase=Pending,
  spec.nodeName=``; an absent field reads as ``""``) on exactly the field labels kube-apiserver
  supports for the kind (:data:`FIELD_LABELS`), and answers any other label with the API
  server's 400; sets ``remainingItemCount`` on a page of an unfiltered list; and, as the API
  server does from its watch cache, answers ``resourceVersion=0`` with every object in one page;
- a filtered page (label or field selector) that fills ``limit`` carries a ``continue`` token
  whenever any object, matching or not, follows its last item, so the next page can be empty:
  the API server pages through etcd keys, not through matches (docs/e2e.md, "What the real
  programs showed");
- ``refuse[kind] = code`` answers every request for that kind with that HTTP status
  (403 for an RBAC refusal); ``expire_continue = n`` answers the next n LISTs that carry a
  ``continue`` token with 410 ``Expired``, as the API server does once the token's
  snapshot is compacted.

``kick()`` ends every open watch (as an apiserver restart or an idle timeout would).
``watch_ends_at_once = True`` ends every watch right after its headers (what a proxy
with a short idle timeout does).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

KINDS = {"/api/v1/nodes": ("nodes", "NodeList"), "/api/v1/pods": ("pods", "PodList")}
_NAMESPACED = re.compile(r"/api/v1/namespaces/([^/]+)/(configmaps|pods)")
#: the field labels kube-apiserver v1.37 accepts in a fieldSelector, per kind (asked of the real one)
FIELD_LABELS = {
    "nodes": frozenset({"metadata.name", "spec.unschedulable"}),
    "pods": frozenset({"metadata.name", "metadata.namespace", "spec.nodeName", "spec.restartPolicy",
                       "spec.schedulerName", "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
                       "status.podIP", "status.podIPs", "status.nominatedNodeName"}),
    "configmaps": frozenset({"metadata.name", "metadata.namespace"}),
}


def _matches(obj: dict[str, Any], namespace: str | None, selector: dict[str, str]) -> bool:
    meta = obj.get("metadata") or {}
    if namespace is not None and meta.get("namespace") != namespace:
        return False
    labels = meta.get("labels") or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _field(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return "" if cur is None else str(cur)


def _field_terms(kind: str, text: str | None) -> list[tuple[str, bool, str]] | str:
    """``(path, negated, value)`` per term, or the API server's 400 message for the selector."""
    terms = []
    for term in (text or "").split(","):
        if not term.strip():
            continue
        if "=" not in term:
            return f"invalid selector: '{text}'; can't understand '{term}'"
        neg = "!=" in term
        path, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        path = path.strip()
        if path not in FIELD_LABELS[kind]:
            if kind == "configmaps":  # the generic registry's wording
                return f'"{path}" is not a known field selector: only "metadata.name", "metadata.namespace"'
            return f"field label not supported: {path}"
        terms.append((path, neg, value.strip()))
    return terms


def _field_matches(obj: dict[str, Any], terms: list[tuple[str, bool, str]]) -> bool:
    return all((_field(obj, path) == value) != neg for path, neg, value in terms)


Event = tuple[int, str, dict[str, Any], "dict[str, Any] | None"]


def _selected(events: list[Event], ns: str | None, sel: dict[str, str],
              terms: list[tuple[str, bool, str]]) -> list[Event]:
    """A watch's events under a label/field selector, as kube-apiserver's watch filter sends them.

    An object that starts to match is ADDED, one that stops matching is DELETED (its new state),
    one that matches before and after is MODIFIED; changes of objects outside the selection are
    not sent (k8s.io/apiserver, the cacher's watch filter).
    """
    def match(o: dict[str, Any] | None) -> bool:
        return o is not None and _matches(o, ns, sel) and _field_matches(o, terms)

    out: list[Event] = []
    for rv, etype, obj, prev in events:
        if etype == "DELETED":
            if match(obj):
                out.append((rv, etype, obj, prev))
            continue
        now, before = match(obj), etype == "MODIFIED" and match(prev)
        if now and before:
            out.append((rv, "MODIFIED", obj, prev))
        elif now:
            out.append((rv, "ADDED", obj, prev))
        elif before:
            out.append((rv, "DELETED", obj, prev))
    return out


def _selector(text: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if part.strip():
            k, _, v = part.partition("=")
            out[k.strip()] = v.strip()
    return out


class FakeApiServer:
    def __init__(self) -> None:
        self.rv = 100
        self.objects: dict[str, dict[str, dict[str, Any]]] = {"nodes": {}, "pods": {}, "configmaps": {}}
        self.events: dict[str, list[Event]] = {"nodes": [], "pods": [], "configmaps": []}
        self.compacted = 0
        self.generation = 0  # bumped by kick()
        self.gone_as_http = False
        self.watch_ends_at_once = False
        self.cond = threading.Condition()
        self.requests: list[str] = []
        self.refuse: dict[str, int] = {}  # kind -> HTTP status answered to every request for it
        self.expire_continue = 0  # the next n LISTs with a continue token get 410 Expired
        #: each stored object's JSON, encoded once (objects are replaced, never changed in place)
        self._encoded: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeApiServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- state changes ---------------------------------------------------------------------
    @staticmethod
    def _key(obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{meta.get('namespace', '')}/{meta['name']}"

    def put(self, kind: str, obj: dict[str, Any]) -> None:
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            key = self._key(obj)
            prev = self.objects[kind].get(key)
            etype = "MODIFIED" if prev is not None else "ADDED"
            self.objects[kind][key] = obj
            self.events[kind].append((self.rv, etype, obj, prev))
            self.cond.notify_all()

    def delete(self, kind: str, obj: dict[str, Any]) -> None:
        with self.cond:
            self.rv += 1
            old = self.objects[kind].pop(self._key(obj))
            old = copy.deepcopy(old)
            old["metadata"]["resourceVersion"] = str(self.rv)
            self.events[kind].append((self.rv, "DELETED", old, old))
            self.cond.notify_all()

    def compact(self) -> None:
        """Forget history: watches from an older resourceVersion get 410 Gone."""
        with self.cond:
            self.compacted = self.rv
            for kind in self.events:
                self.events[kind] = []

    def encoded(self, kind: str, key: str) -> bytes:
        """The stored object's JSON bytes, encoded once per stored object."""
        obj = self.objects[kind][key]
        hit = self._encoded.get(f"{kind}\0{key}")
        if hit is None or hit[0] is not obj:
            hit = (obj, json.dumps(obj).encode())
            self._encoded[f"{kind}\0{key}"] = hit
        return hit[1]

    def kick(self) -> None:
        with self.cond:
            self.generation += 1
            self.cond.notify_all()

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.requests if r.startswith(prefix))

    # -- HTTP ------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                q = {k: v[-1] for k, v in parse_qs(url.query).items()}
                ns: str | None = None
                if (m := _NAMESPACED.fullmatch(url.path)) is not None:
                    ns, kind = m.group(1), m.group(2)
                    list_kind = {"configmaps": "ConfigMapList", "pods": "PodList"}[kind]
                elif url.path in KINDS:
                    kind, list_kind = KINDS[url.path]
                else:
                    self._json(404, {"kind": "Status", "code": 404})
                    return
                sel = _selector(q.get("labelSelector"))
                watch = q.get("watch") in ("true", "1", "True")
                api.requests.append(f"{'watch' if watch else 'list'} {kind} {url.query}")
                if kind in api.refuse:
                    code = api.refuse[kind]
                    self._json(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                                      "reason": "Forbidden" if code == 403 else "", "message": f"{kind} refused"})
                    return
                if watch:
                    wterms = _field_terms(kind, q.get("fieldSelector"))
                    if isinstance(wterms, str):
                        self._json(400, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400,
                                         "reason": "BadRequest", "message": wterms})
                        return
                    self._watch(kind, int(q.get("resourceVersion") or 0), float(q.get("timeoutSeconds") or 30),
                                ns, sel, wterms)
                elif q.get("continue") and api.expire_continue > 0:
                    api.expire_continue -= 1
                    self._json(410, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                                     "reason": "Expired", "message": "The provided continue parameter is too old"})
                elif isinstance(terms := _field_terms(kind, q.get("fieldSelector")), str):
                    self._json(400, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400,
                                     "reason": "BadRequest", "message": terms})
                else:
                    limit = 0 if q.get("resourceVersion") == "0" else int(q.get("limit") or 0)
                    self._list(kind, list_kind, limit, q.get("continue"), ns, sel, terms)

            def _list(self, kind: str, list_kind: str, limit: int, cont: str | None, ns: str | None,
                      sel: dict[str, str], terms: list[tuple[str, bool, str]]) -> None:
                with api.cond:
                    # like etcd: walk every key of the kind (and namespace) in order, keep the matches;
                    # the continue token is the position after the last key looked at
                    keys = sorted(k for k, o in api.objects[kind].items() if _matches(o, ns, {}))
                    start = int(cont) if cont else 0
                    items: list[bytes] = []
                    end = start
                    while end < len(keys) and (limit <= 0 or len(items) < limit):
                        obj = api.objects[kind][keys[end]]
                        if _matches(obj, ns, sel) and _field_matches(obj, terms):
                            items.append(api.encoded(kind, keys[end]))
                        end += 1
                    meta: dict[str, Any] = {"resourceVersion": str(api.rv)}
                    if end < len(keys):
                        meta["continue"] = str(end)
                        if not sel and not terms:
                            meta["remainingItemCount"] = len(keys) - end
                head = json.dumps({"kind": list_kind, "apiVersion": "v1", "metadata": meta})[:-1].encode()
                body = head + b',"items":[' + b",".join(items) + b"]}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _watch(self, kind: str, since: int, timeout: float, ns: str | None, sel: dict[str, str],
                       terms: list[tuple[str, bool, str]]) -> None:
                with api.cond:
                    gone = since < api.compacted
                    gen = api.generation
                if gone and api.gone_as_http:
                    self._json(410, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                     "reason": "Expired", "code": 410, "message": "too old resource version"})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    if api.watch_ends_at_once:
                        pass
                    elif gone:
                        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": f"too old resource version: {since} ({api.compacted})",
                                  "reason": "Expired", "code": 410}
                        self._chunk(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
                    else:
                        deadline = time.monotonic() + timeout
                        sent = since
                        while True:
                            with api.cond:
                                pending = [e for e in api.events[kind] if e[0] > sent]
                                sent = max([sent, *(e[0] for e in pending)])
                                pending = _selected(pending, ns, sel, terms)
                                if not pending:
                                    left = deadline - time.monotonic()
                                    if left <= 0 or api.generation != gen:
                                        break
                                    api.cond.wait(min(left, 0.2))
                                    if api.generation != gen:
                                        break
                                    continue
                            for rv, etype, obj, _ in pending:
                                self._chunk(json.dumps({"type": etype, "object": obj}).encode() + b"\n")
                                sent = rv
                    self._chunk(b"")
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        return Handler
