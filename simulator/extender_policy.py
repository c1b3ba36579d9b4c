"""THE seam between the simulator and the gputopo extender's decisions (no HTTP).

This is the only simulator module that imports :mod:`extender` (import-linter
enforces it). The placement-policy refactor moves the extender's filter and
score decisions into a pure ``policy/`` layer; it then repoints the imports
below and deletes :class:`_SimClusterView`, and nothing else in the simulator
changes. What the simulator gets from here:

- :meth:`ExtenderPolicy.add_node` builds a node's :class:`~extender.nodes.NodeFacts`
  with :func:`extender.nodes.facts_from_parts` from the labels and annotations
  the agent publishes, encoded by the project's own codecs
  (:func:`labeler.topology.labels.encode`, ``encode_annotations``,
  :func:`labeler.topology.allocation.encode`) — never hand-written keys.
- :meth:`ExtenderPolicy.set_free` updates a node's free GPUs after a bind or a
  departure. By default it replaces ``free_mask``/``free_count`` in the facts,
  which is what ``facts_from_parts`` returns for the new allocation annotation
  (``tests/simulator/test_extender_policy.py`` checks the two agree);
  ``exact=True`` re-encodes and re-decodes the annotations every time instead.
- :meth:`ExtenderPolicy.filter` asks :meth:`extender.service.Service.filter`
  (the bytes the HTTP handler serves, ``NodeNames`` mode, cached view) which
  nodes pass; :meth:`ExtenderPolicy.scores` asks
  :meth:`extender.service.Service.scores` for the 0..10 priorities.
- :meth:`ExtenderPolicy.workload` reads a pod the way the extender does
  (:func:`extender.workload.parse`) from the Pod object the simulated
  controller would create (PyTorchJob labels, vLLM arguments).

The cluster view (:class:`_SimClusterView`) plays the cached extender's
informer: node facts, and the job siblings the affinity strategy needs
(majority locality of the job's other bound pods). Its ``siblings`` repeats
``extender.cache.ClusterCache.siblings``, which cannot be imported here (that
module is the Kubernetes informer); the policy refactor should make it one pure
function that both call.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from extender.scoring import DEFAULT_STRATEGIES, Siblings, resolve
from extender.service import Service, ServiceConfig
from extender.settings import DEFAULT_LOCALITY_KEYS
from labeler.topology import allocation, labels
from labeler.topology.model import Topology
from policy import workload as wl
from policy.nodes.decode import TopologyRegistry
from policy.nodes.facts import NodeFacts, facts_from_parts
from policy.nodes.state import NodeState
from simulator.model import PodSpec

__all__ = ["NAMESPACE", "ExtenderPolicy", "Workload", "pod_object"]

#: how the extender reads a pod (re-exported so that no other simulator module imports :mod:`extender`)
Workload = wl.Workload

NAMESPACE = "sim"
_VLLM_MODEL = "meta-llama/Llama-3.1-70B-Instruct"


def pod_object(pod: PodSpec, *, prefix: str = labels.DEFAULT_PREFIX, resource: str = wl.GPU_RESOURCE) -> dict[str, Any]:
    """The Pod a controller would create for ``pod`` (PyTorchJob worker, vLLM server or a plain pod)."""
    requests: dict[str, Any] = {"cpu": f"{pod.cpu_milli}m", "memory": f"{pod.memory_mib}Mi"}
    limits: dict[str, Any] = {}
    if pod.whole_gpus:
        limits[resource] = str(pod.whole_gpus)
        requests[resource] = str(pod.whole_gpus)
    container: dict[str, Any] = {"name": "main", "image": "registry.example/sim:latest",
                                 "resources": {"requests": requests, "limits": limits}}
    pod_labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    if pod.job is not None:
        pod_labels[wl.KF_JOB_NAME] = pod.job
        pod_labels[wl.KF_REPLICA_TYPE] = "worker"
        pod_labels[wl.KF_REPLICA_INDEX] = str(pod.replica or 0)
        container["command"] = ["torchrun"]
        container["args"] = ["--nproc-per-node", str(pod.whole_gpus), "train.py"]
    if pod.tensor_parallel is not None:
        container["command"] = ["vllm", "serve"]
        container["args"] = [_VLLM_MODEL, "--tensor-parallel-size", str(pod.tensor_parallel)]
    if pod.required:
        annotations[prefix + "placement"] = "required"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": NAMESPACE, "uid": pod.name, "labels": pod_labels,
                     "annotations": annotations},
        "spec": {"schedulerName": "gputopo-scheduler", "containers": [container]},
    }


class _SimClusterView:
    """The cached extender's knowledge of the cluster (``extender.service.ClusterView``), fed by the simulator."""

    def __init__(self, locality_keys: Sequence[str]) -> None:
        self.locality_keys = tuple(locality_keys)
        self.nodes: dict[str, NodeFacts] = {}
        self.jobs: dict[wl.JobKey, dict[str, str]] = {}  # job → pod uid → node name

    @property
    def synced(self) -> bool:
        return True

    def facts(self, name: str) -> NodeFacts | None:
        return self.nodes.get(name)

    def siblings(self, workload: wl.Workload) -> Siblings | None:
        """Majority locality of the job's other bound pods (as ``extender.cache.ClusterCache.siblings``)."""
        if workload.job is None:
            return None
        members = self.jobs.get(workload.job)
        if not members:
            return None
        nodes = sorted({n for uid, n in members.items() if uid != workload.uid})
        if not nodes:
            return None
        values: list[str | None] = []
        for i in range(len(self.locality_keys)):
            seen = Counter(f.locality[i] for n in nodes if (f := self.nodes.get(n)) and f.locality[i] is not None)
            values.append(seen.most_common(1)[0][0] if seen else None)
        classes = Counter(f.topology_class for n in nodes if (f := self.nodes.get(n)) and f.topology_class)
        return Siblings(frozenset(nodes), tuple(values), classes.most_common(1)[0][0] if classes else None)


class ExtenderPolicy:
    """The extender's filter and prioritize decisions over the simulated cluster."""

    def __init__(
        self,
        *,
        prefix: str = labels.DEFAULT_PREFIX,
        strategies: Sequence[str] = DEFAULT_STRATEGIES,
        locality_keys: Sequence[str] = DEFAULT_LOCALITY_KEYS,
        exact: bool = False,
    ) -> None:
        self.prefix = prefix
        self.exact = exact
        self._view = _SimClusterView(locality_keys)
        self._registry = TopologyRegistry()
        self._parts: dict[str, tuple[Topology, dict[str, str], dict[str, str]]] = {}
        self.service = Service(ServiceConfig(prefix, tuple(locality_keys), resolve(list(strategies))), view=self._view)

    # -- nodes ------------------------------------------------------------------------------
    def _annotations(self, topo: Topology, free: frozenset[int], used: Mapping[int, str]) -> dict[str, str]:
        ann = labels.encode_annotations(topo, prefix=self.prefix)
        state = allocation.AllocationState(free, dict(used))
        ann[self.prefix + allocation.ANNOTATION_SUFFIX] = allocation.encode(state)
        return ann

    def add_node(self, name: str, topo: Topology, node_labels: Mapping[str, str] | None = None) -> NodeFacts:
        """Register a node as the agent publishes it (all GPUs free); returns its facts."""
        lab = {**(node_labels or {}), **labels.encode(topo, prefix=self.prefix)}
        ann = self._annotations(topo, frozenset(topo.gpu_indices), {})
        self._parts[name] = (topo, lab, ann)
        facts = facts_from_parts(name, lab, ann, prefix=self.prefix, locality_keys=self._view.locality_keys,
                                 registry=self._registry)
        if facts.state is not NodeState.OK:
            raise ValueError(f"node {name}: the extender cannot read its published data: {facts.problem}")
        self._view.nodes[name] = facts
        return facts

    def published_facts(self, name: str, free_mask: int, used: Mapping[int, str]) -> NodeFacts:
        """Facts decoded from freshly encoded labels/annotations (the slow, exact path)."""
        topo, lab, _ = self._parts[name]
        free = frozenset(g.index for p, g in enumerate(topo.gpus) if free_mask >> p & 1)
        ann = self._annotations(topo, free, used)
        return facts_from_parts(name, lab, ann, prefix=self.prefix, locality_keys=self._view.locality_keys,
                                registry=self._registry)

    def set_free(self, name: str, free_mask: int, used: Mapping[int, str] | None = None) -> None:
        """The node's fully free GPUs changed (bit per position in ``topo.gpus``)."""
        if self.exact:
            self._view.nodes[name] = self.published_facts(name, free_mask, used or {})
            return
        old = self._view.nodes[name]
        if old.free_mask != free_mask:
            self._view.nodes[name] = dataclasses.replace(old, free_mask=free_mask, free_count=free_mask.bit_count())

    def facts(self, name: str) -> NodeFacts:
        return self._view.nodes[name]

    def topology_class(self, name: str) -> str | None:
        return self._view.nodes[name].topology_class

    # -- pods -------------------------------------------------------------------------------
    def workload(self, pod: PodSpec) -> wl.Workload:
        return wl.parse(pod_object(pod, prefix=self.prefix), prefix=self.prefix, resource=self.service.config.resource)

    def bind(self, workload: wl.Workload, node: str) -> None:
        """A pod of ``workload`` is bound to ``node`` (job siblings for the affinity strategy)."""
        if workload.job is not None:
            self._view.jobs.setdefault(workload.job, {})[workload.uid] = node

    def siblings(self, workload: wl.Workload) -> Siblings | None:
        return self._view.siblings(workload)

    def unbind(self, workload: wl.Workload) -> None:
        if workload.job is not None:
            members = self._view.jobs.get(workload.job)
            if members is not None:
                members.pop(workload.uid, None)
                if not members:
                    del self._view.jobs[workload.job]

    def filter(self, pod: PodSpec, names: Sequence[str]) -> list[bool]:
        """Pass/fail per node name, from the extender's filter answer to a ``NodeNames`` request."""
        body = json.dumps({"Pod": pod_object(pod, prefix=self.prefix), "NodeNames": list(names)}).encode()
        answer = self.service.filter(body)
        doc = json.loads(answer.body)
        if answer.status != 200 or doc.get("Error"):
            raise RuntimeError(f"extender filter failed for {pod.name}: {doc.get('Error') or answer.status}")
        passed = set(doc.get("NodeNames") or ())
        return [n in passed for n in names]

    def scores(self, workload: wl.Workload, names: Sequence[str]) -> list[int]:
        """The extender's 0..10 priority per node name (what prioritize would answer)."""
        nodes = self._view.nodes
        return self.service.scores(workload, [nodes[n] for n in names])
