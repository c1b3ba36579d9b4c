"""Cached mode: list+watch Nodes, Pods and allocation ConfigMaps with the official ``kubernetes`` client.

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

Memory is bounded by keeping only what the extender reads: for Nodes our own
labels, the locality labels and two annotation strings (interned: identical
machines share one string); for Pods only bound, non-terminated pods that
request GPUs, as small records. Parsed topologies are cached by annotation
string in :class:`~extender.nodes.TopologyRegistry`.

Allocation: the agent's default carrier is a per-node ConfigMap
``gputopo-alloc-<node>`` in ``allocation_namespace`` (labelled
``app.kubernetes.io/managed-by=gputopo``; :mod:`labeler.topology.carrier`), listed
and watched by a third reflector with that label selector. Per node the
ConfigMap's value wins; without one (agents running ``--allocation-carrier=annotation``,
or the ConfigMap deleted) the Node's ``{prefix}allocation`` annotation is used.
Only the allocation string is kept per ConfigMap (one per node).

Pods bound but not yet in the agent's allocation annotation are counted
against the node's free GPUs (see :func:`extender.nodes.apply_pending`: an
estimate assuming the device plugin takes the Placer's best set).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from extender import workload as wl
from extender.metrics import Metrics
from extender.nodes import NodeFacts, TopologyRegistry, facts_from_parts
from extender.scoring import Siblings
from labeler.topology import allocation, carrier, labels

__all__ = ["ClusterCache", "PodRecord", "Reflector"]

log = logging.getLogger("gputopo.extender.cache")

ListFn = Callable[..., Any]


class _Gone(Exception):
    """The watch's resourceVersion expired (410): relist."""


class Reflector:
    """One list+watch loop for one resource kind, feeding ``on_replace``/``on_event``."""

    def __init__(
        self,
        kind: str,
        list_fn: ListFn,
        on_replace: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        *,
        stop: threading.Event,
        metrics: Metrics,
        page_size: int = 500,
        watch_timeout_seconds: int = 300,
        resync_seconds: float = 600.0,
        backoff_seconds: float = 1.0,
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
        self._req_timeout = request_timeout_seconds
        self.synced = threading.Event()
        self.lists = 0
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

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                rv = self._list()
                deadline = time.monotonic() + self._resync
                while not self._stop.is_set():
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._metrics.watch_restarts.labels(self.kind, "resync").inc()
                        break
                    rv = self._watch(rv, max(1, min(self._watch_timeout, int(left))))
                    self._metrics.watch_restarts.labels(self.kind, "timeout").inc()
            except _Gone:
                log.info("%s watch: resourceVersion expired (410 Gone); relisting", self.kind)
                self._metrics.watch_restarts.labels(self.kind, "gone").inc()
            except Exception as err:  # network, API or decode errors: back off and relist
                if self._stop.is_set():
                    break
                log.warning("%s list/watch failed: %s; relisting in %.1fs", self.kind, err, self._backoff)
                self._metrics.watch_restarts.labels(self.kind, "error").inc()
                self._stop.wait(self._backoff)

    def _list(self) -> str:
        items: list[dict[str, Any]] = []
        cont: str | None = None
        rv = ""
        while True:
            kwargs: dict[str, Any] = {"limit": self._page, "_preload_content": False,
                                      "_request_timeout": self._req_timeout}
            if cont:
                kwargs["_continue"] = cont
            resp = self._list_fn(**kwargs)
            try:
                doc = json.loads(resp.data)
            finally:
                resp.release_conn()
            items.extend(i for i in doc.get("items") or [] if isinstance(i, dict))
            meta = doc.get("metadata") or {}
            rv = str(meta.get("resourceVersion") or rv)
            cont = meta.get("continue") or None
            if not cont:
                break
        self._on_replace(items)
        self.lists += 1
        self.synced.set()
        return rv

    def _watch(self, rv: str, timeout: int) -> str:
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
        try:
            if self._stop.is_set():  # stop() came while the request was being made
                return rv
            for line in iter_resp_lines(resp):
                if self._stop.is_set():
                    break
                if not line:
                    continue
                event = json.loads(line)
                etype, obj = event.get("type"), event.get("object") or {}
                if etype == "ERROR":
                    if obj.get("code") == 410:
                        raise _Gone
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message')}")
                new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                if etype in ("ADDED", "MODIFIED", "DELETED"):
                    self._on_event(etype, obj)
                if new_rv:
                    rv = str(new_rv)
        finally:
            self._resp = None
            resp.close()
            resp.release_conn()
        return rv


@dataclass(frozen=True, slots=True)
class PodRecord:
    """A bound, running-or-pending pod that holds GPUs (the only pods we keep)."""

    uid: str
    key: str  # namespace/name, as the agent's allocation annotation names pods
    node: str
    gpus: int
    created: str
    job: wl.JobKey | None


@dataclass(frozen=True, slots=True)
class _NodeRecord:
    labels: Mapping[str, str]
    annotations: Mapping[str, str]


class ClusterCache:
    """Informer-fed view of GPU nodes and GPU pods; implements :class:`~extender.service.ClusterView`."""

    def __init__(
        self,
        *,
        prefix: str,
        locality_keys: Sequence[str],
        registry: TopologyRegistry,
        metrics: Metrics,
        resource: str = wl.GPU_RESOURCE,
        allocation_namespace: str = carrier.DEFAULT_NAMESPACE,
        allocation_max_age_s: float = 0.0,
    ) -> None:
        self.prefix = prefix
        #: checked whenever a node's facts are rebuilt: on any change and at every resync (relist)
        self.allocation_max_age_s = allocation_max_age_s
        self.locality_keys = tuple(locality_keys)
        self.registry = registry
        self.metrics = metrics
        self.resource = resource
        self.allocation_namespace = allocation_namespace
        self._alloc_key = prefix + allocation.ANNOTATION_SUFFIX
        self._cm_alloc: dict[str, str] = {}  # node → allocation value from its ConfigMap
        self._cm_node: dict[str, str] = {}  # ConfigMap name → node (DELETED events, label changes)
        self._keep_labels = frozenset(self.locality_keys)
        self._ann_keys = (prefix + labels.ANNOTATION_TOPOLOGY, prefix + allocation.ANNOTATION_SUFFIX)
        self._nodes: dict[str, _NodeRecord] = {}
        self._pods: dict[str, PodRecord] = {}
        self._pods_by_node: dict[str, dict[str, PodRecord]] = {}
        self._jobs: dict[wl.JobKey, dict[str, str]] = {}  # job → {pod uid: node}
        self._facts: dict[str, NodeFacts] = {}  # mutated in place only, never rebound (see `facts`)
        #: ClusterView.facts: the dict's own ``get`` (the request loop calls it once per node)
        self.facts: Callable[[str], NodeFacts | None] = self._facts.get
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.reflectors: list[Reflector] = []

    # -- ClusterView ------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        return bool(self.reflectors) and all(r.synced.is_set() for r in self.reflectors)

    def siblings(self, workload: wl.Workload) -> Siblings | None:
        """Where the job's other bound pods run, summarised by locality label (majority)."""
        if workload.job is None:
            return None
        members = self._jobs.get(workload.job)
        if not members:
            return None
        nodes = frozenset(n for uid, n in list(members.items()) if uid != workload.uid)
        if not nodes:
            return None
        values: list[str | None] = []
        for i in range(len(self.locality_keys)):
            seen = Counter(f.locality[i] for n in nodes if (f := self._facts.get(n)) and f.locality[i] is not None)
            values.append(seen.most_common(1)[0][0] if seen else None)
        classes = Counter(f.topology_class for n in nodes if (f := self._facts.get(n)) and f.topology_class)
        return Siblings(nodes, tuple(values), classes.most_common(1)[0][0] if classes else None)

    # -- informer callbacks -------------------------------------------------------------------
    def _node_record(self, obj: Mapping[str, Any]) -> tuple[str, _NodeRecord]:
        meta = obj.get("metadata") or {}
        raw_labels = meta.get("labels") or {}
        raw_ann = meta.get("annotations") or {}
        kept = {
            k: sys.intern(v)
            for k, v in raw_labels.items()
            if isinstance(v, str) and (k.startswith(self.prefix) or k in self._keep_labels)
        }
        ann = {k: sys.intern(v) for k in self._ann_keys if isinstance(v := raw_ann.get(k), str)}
        return str(meta.get("name") or ""), _NodeRecord(kept, ann)

    def _pod_record(self, obj: Mapping[str, Any]) -> PodRecord | None:
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        node = spec.get("nodeName")
        if not node or status.get("phase") in ("Succeeded", "Failed"):
            return None
        gpus = wl.gpu_request(obj, self.resource)
        if gpus <= 0:
            return None
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        job, _ = wl.job_key(ns, meta.get("labels") or {})
        return PodRecord(str(meta.get("uid") or f"{ns}/{meta.get('name')}"), f"{ns}/{meta.get('name')}",
                         str(node), gpus, str(meta.get("creationTimestamp") or ""), job)

    def _refresh(self, name: str) -> None:
        rec = self._nodes.get(name)
        if rec is None:
            self._facts.pop(name, None)
            return
        pods = sorted(self._pods_by_node.get(name, {}).values(), key=lambda p: (p.created, p.key))
        annotations = rec.annotations
        from_cm = self._cm_alloc.get(name)
        if from_cm is not None:  # the ConfigMap carrier wins over a (possibly stale) Node annotation
            annotations = {**annotations, self._alloc_key: from_cm}
        self._facts[name] = facts_from_parts(
            name,
            rec.labels,
            annotations,
            prefix=self.prefix,
            locality_keys=self.locality_keys,
            registry=self.registry,
            used_extra=[(p.key, p.gpus) for p in pods],
            allocation_max_age_s=self.allocation_max_age_s,
        )

    def replace_nodes(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            self._nodes = dict(self._node_record(o) for o in items)
            for gone in set(self._facts) - set(self._nodes):
                self._facts.pop(gone, None)
            for name in self._nodes:
                self._refresh(name)
            self.metrics.cache_objects.labels("nodes").set(len(self._nodes))

    def node_event(self, etype: str, obj: dict[str, Any]) -> None:
        with self._lock:
            name, rec = self._node_record(obj)
            if etype == "DELETED":
                self._nodes.pop(name, None)
            else:
                self._nodes[name] = rec
            self._refresh(name)
            self.metrics.cache_objects.labels("nodes").set(len(self._nodes))

    def _add_pod(self, rec: PodRecord) -> None:
        self._pods[rec.uid] = rec
        self._pods_by_node.setdefault(rec.node, {})[rec.uid] = rec
        if rec.job is not None:
            self._jobs.setdefault(rec.job, {})[rec.uid] = rec.node

    def _remove_pod(self, uid: str) -> str | None:
        old = self._pods.pop(uid, None)
        if old is None:
            return None
        on_node = self._pods_by_node.get(old.node)
        if on_node is not None:
            on_node.pop(uid, None)
            if not on_node:
                del self._pods_by_node[old.node]
        if old.job is not None and (members := self._jobs.get(old.job)) is not None:
            members.pop(uid, None)
            if not members:
                del self._jobs[old.job]
        return old.node

    def replace_pods(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            touched = set(self._pods_by_node)
            self._pods, self._pods_by_node, self._jobs = {}, {}, {}
            for o in items:
                rec = self._pod_record(o)
                if rec is not None:
                    self._add_pod(rec)
            for name in touched | set(self._pods_by_node):
                self._refresh(name)
            self.metrics.cache_objects.labels("pods").set(len(self._pods))

    def pod_event(self, etype: str, obj: dict[str, Any]) -> None:
        with self._lock:
            meta = obj.get("metadata") or {}
            uid = str(meta.get("uid") or f"{meta.get('namespace') or 'default'}/{meta.get('name')}")
            touched = {self._remove_pod(uid)}
            if etype != "DELETED":
                rec = self._pod_record(obj)
                if rec is not None:
                    self._add_pod(rec)
                    touched.add(rec.node)
            for name in touched:
                if name is not None:
                    self._refresh(name)
            self.metrics.cache_objects.labels("pods").set(len(self._pods))

    @staticmethod
    def _cm_entry(obj: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
        """``(ConfigMap name, node, allocation value)`` of one of our ConfigMaps."""
        meta = obj.get("metadata") or {}
        data = obj.get("data") or {}
        value = data.get(carrier.DATA_KEY) if isinstance(data, dict) else None
        return str(meta.get("name") or ""), carrier.node_of(obj), value if isinstance(value, str) else None

    def replace_configmaps(self, items: list[dict[str, Any]]) -> None:
        with self._lock:
            touched = set(self._cm_alloc)
            self._cm_alloc, self._cm_node = {}, {}
            for o in items:
                cm, node, value = self._cm_entry(o)
                if node is not None and value is not None:
                    self._cm_node[cm] = node
                    self._cm_alloc[node] = value
            for name in touched | set(self._cm_alloc):
                self._refresh(name)
            self.metrics.cache_objects.labels("configmaps").set(len(self._cm_alloc))

    def configmap_event(self, etype: str, obj: dict[str, Any]) -> None:
        with self._lock:
            cm, node, value = self._cm_entry(obj)
            touched = set()
            old = self._cm_node.pop(cm, None)
            if old is not None:
                self._cm_alloc.pop(old, None)
                touched.add(old)
            if etype != "DELETED" and node is not None and value is not None:
                self._cm_node[cm] = node
                self._cm_alloc[node] = value
                touched.add(node)
            for name in touched:
                self._refresh(name)
            self.metrics.cache_objects.labels("configmaps").set(len(self._cm_alloc))

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, core_v1: Any, **reflector_options: Any) -> None:
        """Start node, pod and allocation-ConfigMap reflectors on a ``kubernetes.client.CoreV1Api`` (daemon threads)."""
        list_configmaps = functools.partial(core_v1.list_namespaced_config_map, self.allocation_namespace,
                                            label_selector=carrier.SELECTOR)
        self.reflectors = [
            Reflector("nodes", core_v1.list_node, self.replace_nodes, self.node_event,
                      stop=self._stop, metrics=self.metrics, **reflector_options),
            Reflector("pods", core_v1.list_pod_for_all_namespaces, self.replace_pods, self.pod_event,
                      stop=self._stop, metrics=self.metrics, **reflector_options),
            Reflector("configmaps", list_configmaps, self.replace_configmaps, self.configmap_event,
                      stop=self._stop, metrics=self.metrics, **reflector_options),
        ]
        for r in self.reflectors:
            t = threading.Thread(target=r.run, name=f"gputopo-reflector-{r.kind}", daemon=True)
            t.start()
            self._threads.append(t)

    def wait_synced(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        return all(r.synced.wait(max(0.0, end - time.monotonic())) for r in self.reflectors)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the reflectors: set the stop event, cut open watches, join the threads."""
        self._stop.set()
        for r in self.reflectors:
            r.interrupt()
        for t in self._threads:
            t.join(timeout)
