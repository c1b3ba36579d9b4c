"""Cached mode's store: what the informers saw of Nodes, GPU pods and allocation ConfigMaps, as node facts.

Three :class:`~extender.reflector.Reflector` loops (nodes, pods, allocation
ConfigMaps) feed a :class:`ClusterCache`, which keeps only what the node view
needs and answers the service's :class:`~extender.service.ClusterView`:

- per Node: our own labels, the locality labels and two annotation strings
  (interned: identical machines share one string);
- per Pod: only bound, non-terminated pods that request GPUs, as small
  :class:`PodRecord` s (GPU count per :func:`policy.workload.gpu_request`, job
  identity per :func:`policy.workload.job_key`);
- per allocation ConfigMap ``gputopo-alloc-<node>`` (in ``allocation_namespace``,
  labelled ``app.kubernetes.io/managed-by=gputopo``; :mod:`labeler.topology.carrier`):
  only the allocation string. It wins over the Node's ``{prefix}allocation``
  annotation (agents running ``--allocation-carrier=annotation``, or the
  ConfigMap deleted, fall back to the annotation); it is used only when its
  name is the one its node's agent would write (:func:`labeler.topology.carrier.claimed_node`).

From those, per node, :func:`policy.nodes.facts.facts_from_parts` builds the
:class:`~policy.nodes.facts.NodeFacts` the decisions read (the node-state rules
of :mod:`policy.nodes.state`; topologies decoded once per annotation string in
:class:`~policy.nodes.decode.TopologyRegistry`). Pods bound but not yet in the
agent's allocation are counted against the node's free GPUs (see
:func:`policy.nodes.facts.apply_pending`: an estimate assuming the device plugin
takes the Placer's best set). Job siblings live in a :class:`~policy.siblings.JobRoster`.

Damaged objects (docs/reliability.md). Every object is handled on its own: an
object whose data cannot be read, or makes our code fail, is skipped or fails
open *for that node* and is counted in ``gputopo_extender_bad_objects_total``;
it never aborts a list, an event or a refresh, so it can never make an
informer relist in a loop or keep a restarted extender from becoming ready.

Relists build the new node view in a fresh dict and swap it in with one
assignment, so requests (which never take the lock) see the old view or the
new one, never half of each. ``ClusterCache.ready`` turns false (``/readyz``
503) when an informer has been failing longer than the staleness threshold.
"""

from __future__ import annotations

import functools
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from extender.answers import AnswerTables, Group, Local, NodeEntry, entry_for
from extender.metrics import Metrics
from extender.reflector import Reflector
from kubeio.objects import as_map
from labeler.topology import allocation, carrier, labels
from policy import workload as wl
from policy.nodes.decode import TopologyRegistry
from policy.nodes.facts import NodeFacts, broken, facts_from_parts
from policy.siblings import JobRoster, Siblings

__all__ = ["BOUND_PODS", "ClusterCache", "PodRecord"]

log = logging.getLogger("gputopo.extender.cache")


#: the pods the cache keeps, selected by the API server: bound to a node and not terminated. Both are
#: field labels kube-apiserver indexes for pods (docs/e2e.md); a pod that leaves the selection (it
#: ends) reaches the watch as DELETED. Requesting GPUs cannot be selected (resources are no field
#: label, and GPU pods carry no label we could rely on): that filter stays ours (``_pod_record``).
BOUND_PODS = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"


@dataclass(frozen=True, slots=True)
class PodRecord:
    """A bound, running-or-pending pod that holds GPUs (the only pods we keep)."""

    uid: str
    key: str  # namespace/name, as the agent's allocation annotation names pods
    node: str
    gpus: int
    created: str
    job: wl.JobKey | None


#: nodes rebuilt between two voluntary GIL releases during a relist (see docs/reliability.md)


_YIELD_EVERY = 16

def _text(value: Any) -> str:
    """A name-like field: a string of at most 253 characters, else ``""``."""
    return value if isinstance(value, str) and len(value) <= 253 else ""


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
        self._cm_alloc: dict[str, str] = {}  # node → allocation value from its ConfigMap
        self._cm_node: dict[str, str] = {}  # ConfigMap name → node (DELETED events, label changes)
        self._keep_labels = frozenset(self.locality_keys)
        self._ann_keys = (prefix + labels.ANNOTATION_TOPOLOGY, prefix + allocation.ANNOTATION_SUFFIX)
        self._nodes: dict[str, _NodeRecord] = {}
        self._pods: dict[str, PodRecord] = {}
        self._pods_by_node: dict[str, dict[str, PodRecord]] = {}
        self._jobs = JobRoster()  # job → {pod uid: node}
        #: per node: facts, group and answer fragments (extender.answers); updated in place per node,
        #: relists swap a whole new dict in
        self._entries: dict[str, NodeEntry] = {}
        #: ClusterView.entry: the current dict's own ``get`` (a request reads it once, then maps it over the names)
        self.entry: Callable[..., NodeEntry | None] = self._entries.get
        #: nodes in the same (wiring, free set) share one Group (and its answer pieces) while any node is in it
        self._groups: weakref.WeakValueDictionary[tuple[int, int], Group] = weakref.WeakValueDictionary()
        self._locals: weakref.WeakValueDictionary[tuple[Any, ...], Local] = weakref.WeakValueDictionary()
        #: per pod shape, every node's finished answer fragments; a node's are dropped when it changes
        self.answers = AnswerTables(lambda: self.entry, lambda: len(self._entries))
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.reflectors: list[Reflector] = []

    # -- ClusterView ------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """Every informer completed its first list (sticky: stays true while they retry)."""
        return bool(self.reflectors) and all(r.synced.is_set() for r in self.reflectors)

    def unsynced_seconds(self) -> float:
        """How long the informer failing longest has been failing (0 when all are in sync)."""
        now = time.monotonic()
        ages = [now - r.failing_since for r in self.reflectors if r.failing_since is not None]
        return max(ages, default=0.0)

    def ready(self, stale_after: float) -> bool:
        """Synced, and no informer has been failing for more than ``stale_after`` seconds."""
        return self.synced and self.unsynced_seconds() <= stale_after

    def facts(self, name: str) -> NodeFacts | None:
        """The node's facts (None: not a node we know)."""
        e = self._entries.get(name)
        return None if e is None else e.facts

    def siblings(self, workload: wl.Workload) -> Siblings | None:
        """Where the job's other bound pods run, summarised by locality label (:func:`policy.siblings.summarize`)."""
        return self._jobs.siblings(workload, self.facts, len(self.locality_keys))

    # -- informer callbacks -------------------------------------------------------------------
    def _node_record(self, obj: Mapping[str, Any]) -> tuple[str, _NodeRecord]:
        meta = as_map(obj.get("metadata"))
        raw_labels = as_map(meta.get("labels"))
        raw_ann = as_map(meta.get("annotations"))
        kept = {
            k: sys.intern(v)
            for k, v in raw_labels.items()
            if isinstance(k, str) and isinstance(v, str) and (k.startswith(self.prefix) or k in self._keep_labels)
        }
        ann = {k: sys.intern(v) for k in self._ann_keys if isinstance(v := raw_ann.get(k), str)}
        name = meta.get("name")
        return (name if isinstance(name, str) else ""), _NodeRecord(kept, ann)

    def _pod_record(self, obj: Mapping[str, Any]) -> PodRecord | None:
        spec = as_map(obj.get("spec"))
        status = as_map(obj.get("status"))
        node = spec.get("nodeName")
        if not isinstance(node, str) or not node or status.get("phase") in ("Succeeded", "Failed"):
            return None
        gpus = wl.gpu_request(obj, self.resource)
        if gpus <= 0:
            return None
        meta = as_map(obj.get("metadata"))
        ns, name, uid = _text(meta.get("namespace")) or "default", _text(meta.get("name")), _text(meta.get("uid"))
        job, _ = wl.job_key(ns, as_map(meta.get("labels")))
        return PodRecord(uid or f"{ns}/{name}", f"{ns}/{name}", node, gpus,
                         _text(meta.get("creationTimestamp")), job)

    def _facts_for(self, name: str) -> NodeFacts | None:
        """The node's facts from what the informers hold; one node's damage stays with it."""
        rec = self._nodes.get(name)
        if rec is None:
            return None
        try:
            pods = sorted(self._pods_by_node.get(name, {}).values(), key=lambda p: (p.created, p.key))
            facts = facts_from_parts(
                name,
                rec.labels,
                rec.annotations,
                prefix=self.prefix,
                locality_keys=self.locality_keys,
                registry=self.registry,
                used_extra=[(p.key, p.gpus) for p in pods],
                allocation_max_age_s=self.allocation_max_age_s,
                now=time.time(),  # the adapter's clock: the policy layer reads none
                allocation_configmap=self._cm_alloc.get(name),  # the ConfigMap carrier wins over the annotation
            )
        except Exception as err:  # our bug meets this node's data: it alone fails open
            log.exception("node %s: internal error while reading it; it fails open", name[:253])
            self.metrics.bad_objects.labels("nodes", "internal").inc()
            return broken(name, err)
        if facts.fail_reason is not None and facts.fail_reason.startswith("undecodable"):
            self.metrics.bad_objects.labels("nodes", facts.fail_reason).inc()
        return facts

    def _group(self, facts: NodeFacts) -> Group:
        g = self._groups.get(facts.key)
        if g is None:
            g = Group(facts)
            self._groups[facts.key] = g
        return g

    def _local(self, facts: NodeFacts) -> Local:
        key = (facts.locality, facts.topology_class)
        loc = self._locals.get(key)
        if loc is None:
            loc = Local(facts.locality, facts.topology_class)
            self._locals[key] = loc
        return loc

    def _entry_for(self, name: str) -> NodeEntry | None:
        facts = self._facts_for(name)
        return None if facts is None else entry_for(facts, self._group, self._local)

    def _refresh(self, name: str) -> None:
        entry = self._entry_for(name)
        if entry is None:
            self._entries.pop(name, None)
        else:
            self._entries[name] = entry
        self.answers.forget(name)  # after the entry changed: see AnswerTable.__missing__

    def _swap_entries(self, new: dict[str, NodeEntry]) -> None:
        """Publish a whole new view at once: requests see the old dict or the new one, never a mix.

        Then drop the prepared answers of the nodes that changed (those whose group, locality
        or name is not what it was); the others keep theirs across the relist.
        """
        old = self._entries
        self._entries = new
        self.entry = new.get
        for i, name in enumerate(self.answers.names()):
            o, n = old.get(name), new.get(name)
            if o is None or n is None or n.group is not o.group or n.local is not o.local or n.name != o.name:
                self.answers.forget(name)
            if i % 256 == 0:
                time.sleep(0)

    def _each(self, kind: str, items: Iterable[dict[str, Any]], fn: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``fn`` to every object; one that raises is counted and skipped, the others go on.

        Errors of the iteration itself (the list request failing mid-way) propagate.
        """
        for obj in items:
            try:
                fn(obj)
            except Exception:
                log.exception("%s: skipping one object that could not be read", kind)
                self.metrics.bad_objects.labels(kind, "unreadable").inc()

    def replace_nodes(self, items: Iterable[dict[str, Any]]) -> None:
        nodes: dict[str, _NodeRecord] = {}

        def add(obj: dict[str, Any]) -> None:
            name, rec = self._node_record(obj)
            if name:
                nodes[name] = rec

        self._each("nodes", items, add)  # consumes the list as it streams in, without the lock
        with self._lock:
            self._nodes = nodes
            # built off the request path, then swapped in whole
            new: dict[str, NodeEntry] = {}
            for i, name in enumerate(nodes):
                if (e := self._entry_for(name)) is not None:
                    new[name] = e
                if i % _YIELD_EVERY == 0:
                    time.sleep(0)  # let a request thread take the GIL now rather than after a 5 ms switch
            self._swap_entries(new)
            self.metrics.cache_objects.labels("nodes").set(len(self._nodes))

    def node_event(self, etype: str, obj: dict[str, Any]) -> None:
        with self._lock:
            try:
                name, rec = self._node_record(obj)
            except Exception:
                log.exception("nodes: skipping one event that could not be read")
                self.metrics.bad_objects.labels("nodes", "unreadable").inc()
                return
            if not name:
                self.metrics.bad_objects.labels("nodes", "no_name").inc()
                return
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
            self._jobs.bind(rec.job, rec.uid, rec.node)

    def _remove_pod(self, uid: str) -> str | None:
        old = self._pods.pop(uid, None)
        if old is None:
            return None
        on_node = self._pods_by_node.get(old.node)
        if on_node is not None:
            on_node.pop(uid, None)
            if not on_node:
                del self._pods_by_node[old.node]
        if old.job is not None:
            self._jobs.unbind(old.job, uid)
        return old.node

    def replace_pods(self, items: Iterable[dict[str, Any]]) -> None:
        records: list[PodRecord] = []

        def add(obj: dict[str, Any]) -> None:
            rec = self._pod_record(obj)
            if rec is not None:
                records.append(rec)

        self._each("pods", items, add)  # consumes the list as it streams in, without the lock
        with self._lock:
            touched = set(self._pods_by_node)
            self._pods, self._pods_by_node, self._jobs = {}, {}, JobRoster()
            for rec in records:
                self._add_pod(rec)
            self._refresh_many(touched | set(self._pods_by_node))
            self.metrics.cache_objects.labels("pods").set(len(self._pods))

    def _refresh_many(self, names: set[str]) -> None:
        """Refresh many nodes: a new view swapped in at once when many change (a relist)."""
        if len(names) < 64:
            for name in names:
                self._refresh(name)
            return
        new = dict(self._entries)
        for i, name in enumerate(names):
            entry = self._entry_for(name)
            if entry is None:
                new.pop(name, None)
            else:
                new[name] = entry
            if i % _YIELD_EVERY == 0:
                time.sleep(0)
        self._swap_entries(new)

    def pod_event(self, etype: str, obj: dict[str, Any]) -> None:
        with self._lock:
            meta = as_map(obj.get("metadata"))
            uid = _text(meta.get("uid")) or f"{_text(meta.get('namespace')) or 'default'}/{_text(meta.get('name'))}"
            touched = {self._remove_pod(uid)}
            if etype != "DELETED":
                try:
                    rec = self._pod_record(obj)
                except Exception:
                    log.exception("pods: skipping one event that could not be read")
                    self.metrics.bad_objects.labels("pods", "unreadable").inc()
                    rec = None
                if rec is not None:
                    self._add_pod(rec)
                    touched.add(rec.node)
            for name in touched:
                if name is not None:
                    self._refresh(name)
            self.metrics.cache_objects.labels("pods").set(len(self._pods))

    def _cm_entry(self, obj: Mapping[str, Any]) -> tuple[str, str | None, str | None]:
        """``(ConfigMap name, node, allocation value)`` of one of our ConfigMaps; node None when refused."""
        meta = as_map(obj.get("metadata"))
        data = as_map(obj.get("data"))
        value = data.get(carrier.DATA_KEY)
        cm = _text(meta.get("name"))
        node = carrier.claimed_node(obj)
        if node is None and carrier.node_of(obj) is not None:
            # names another node than its own name does: an agent speaking for a neighbour
            self.metrics.bad_objects.labels("configmaps", "foreign_node").inc()
            log.warning("configmap %s names node %r, which its name does not; ignored", cm,
                        str(carrier.node_of(obj))[:253])
        return cm, node, value if isinstance(value, str) else None

    def replace_configmaps(self, items: Iterable[dict[str, Any]]) -> None:
        entries: list[tuple[str, str, str]] = []

        def add(obj: dict[str, Any]) -> None:
            cm, node, value = self._cm_entry(obj)
            if node is not None and value is not None:
                entries.append((cm, node, value))

        self._each("configmaps", items, add)  # consumes the list as it streams in, without the lock
        with self._lock:
            touched = set(self._cm_alloc)
            self._cm_alloc, self._cm_node = {}, {}
            for cm, node, value in entries:
                self._cm_node[cm] = node
                self._cm_alloc[node] = value
            self._refresh_many(touched | set(self._cm_alloc))
            self.metrics.cache_objects.labels("configmaps").set(len(self._cm_alloc))

    def configmap_event(self, etype: str, obj: dict[str, Any]) -> None:
        with self._lock:
            try:
                cm, node, value = self._cm_entry(obj)
            except Exception:
                log.exception("configmaps: skipping one event that could not be read")
                self.metrics.bad_objects.labels("configmaps", "unreadable").inc()
                return
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
        list_pods = functools.partial(core_v1.list_pod_for_all_namespaces, field_selector=BOUND_PODS)
        self.reflectors = [
            Reflector("nodes", core_v1.list_node, self.replace_nodes, self.node_event,
                      stop=self._stop, metrics=self.metrics, **reflector_options),
            Reflector("pods", list_pods, self.replace_pods, self.pod_event,
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
