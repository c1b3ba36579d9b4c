"""What the gputopo extender would answer, for the simulated cluster: the policy layer, called directly.

The simulator imports no part of the extender (import-linter forbids it): the
extender is an adapter (bytes ↔ policy, metrics, logs) over the same pure
functions this module calls, so the answers are the ones the extender serves
(``tests/simulator/test_gputopo_policy.py`` compares them with the extender's
own bytes answers). What the simulator gets from here:

- :meth:`GputopoPolicy.add_node` builds a node's :class:`~policy.nodes.facts.NodeFacts`
  with :func:`policy.nodes.facts.facts_from_parts` from the labels and annotations
  the agent publishes, encoded by the project's own codecs
  (:func:`labeler.topology.labels.encode`, ``encode_annotations``,
  :func:`labeler.topology.allocation.encode`) — never hand-written keys.
- :meth:`GputopoPolicy.set_free` updates a node's free GPUs after a bind or a
  departure. By default it replaces ``free_mask`` in the facts,
  which is what ``facts_from_parts`` returns for the new allocation
  (the test checks the two agree); ``exact=True`` re-encodes and re-decodes the
  annotations every time instead.
- :meth:`GputopoPolicy.filter` and :meth:`GputopoPolicy.scores` are
  :meth:`policy.decision.decide.Decider.filter` / ``scores`` (the extender's
  filter and prioritize), with the job siblings of a multi-node rank from a
  :class:`~policy.siblings.JobRoster`, as the extender's cached mode keeps them.
- :meth:`GputopoPolicy.workload` reads a pod the way the extender does
  (:func:`policy.workload.parse`) from the Pod object the simulated controller
  would create (PyTorchJob labels, vLLM arguments).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from labeler.topology import allocation, labels
from labeler.topology.model import Topology
from policy import workload as wl
from policy.decision.decide import Decider
from policy.nodes.decode import TopologyRegistry
from policy.nodes.facts import NodeFacts, facts_from_parts
from policy.nodes.state import NodeState
from policy.scoring import DEFAULT_STRATEGIES, resolve
from policy.siblings import DEFAULT_LOCALITY_KEYS, JobRoster, Siblings
from simulator.model import PodSpec

__all__ = ["NAMESPACE", "GputopoPolicy", "Workload", "pod_object"]

#: ``now`` for the node rules: the simulated agents publish no timestamp (no allocation age, never
#: stale), so no clock is needed, and this pure package reads none
_NO_CLOCK = 0.0

#: how the extender reads a pod (re-exported for the scheduler model)
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
        annotations[prefix + labels.POD_PLACEMENT] = "required"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": NAMESPACE, "uid": pod.name, "labels": pod_labels,
                     "annotations": annotations},
        "spec": {"schedulerName": "gputopo-scheduler", "containers": [container]},
    }


class GputopoPolicy:
    """The extender's filter and prioritize decisions over the simulated cluster."""

    def __init__(
        self,
        *,
        prefix: str = labels.DEFAULT_PREFIX,
        strategies: Sequence[str] = DEFAULT_STRATEGIES,
        locality_keys: Sequence[str] = DEFAULT_LOCALITY_KEYS,
        resource: str = wl.GPU_RESOURCE,
        exact: bool = False,
    ) -> None:
        self.prefix = prefix
        self.exact = exact
        self.resource = resource
        self.locality_keys = tuple(locality_keys)
        self.decider = Decider(resolve(list(strategies)))
        self._nodes: dict[str, NodeFacts] = {}
        self._jobs = JobRoster()
        self._registry = TopologyRegistry()
        self._parts: dict[str, tuple[Topology, dict[str, str], dict[str, str]]] = {}
        #: groups whose decision raised (a policy bug meeting a node's data); 0 in every tested run
        self.node_errors = 0

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
        facts = facts_from_parts(name, lab, ann, prefix=self.prefix, locality_keys=self.locality_keys,
                                 registry=self._registry, now=_NO_CLOCK)
        if facts.state is not NodeState.OK:
            raise ValueError(f"node {name}: the extender cannot read its published data: {facts.problem}")
        self._nodes[name] = facts
        return facts

    def published_facts(self, name: str, free_mask: int, used: Mapping[int, str]) -> NodeFacts:
        """Facts decoded from freshly encoded labels/annotations (the slow, exact path)."""
        topo, lab, _ = self._parts[name]
        free = frozenset(g.index for p, g in enumerate(topo.gpus) if free_mask >> p & 1)
        ann = self._annotations(topo, free, used)
        return facts_from_parts(name, lab, ann, prefix=self.prefix, locality_keys=self.locality_keys,
                                registry=self._registry, now=_NO_CLOCK)

    def set_free(self, name: str, free_mask: int, used: Mapping[int, str] | None = None) -> None:
        """The node's fully free GPUs changed (bit per position in ``topo.gpus``)."""
        if self.exact:
            self._nodes[name] = self.published_facts(name, free_mask, used or {})
            return
        old = self._nodes[name]
        if old.free_mask != free_mask:
            self._nodes[name] = dataclasses.replace(old, free_mask=free_mask)

    def facts(self, name: str) -> NodeFacts:
        return self._nodes[name]

    def topology_class(self, name: str) -> str | None:
        return self._nodes[name].topology_class

    # -- pods -------------------------------------------------------------------------------
    def workload(self, pod: PodSpec) -> wl.Workload:
        return wl.parse(pod_object(pod, prefix=self.prefix, resource=self.resource), prefix=self.prefix,
                        resource=self.resource)

    def bind(self, workload: wl.Workload, node: str) -> None:
        """A pod of ``workload`` is bound to ``node`` (job siblings for the affinity strategy)."""
        if workload.job is not None:
            self._jobs.bind(workload.job, workload.uid, node)

    def unbind(self, workload: wl.Workload) -> None:
        if workload.job is not None:
            self._jobs.unbind(workload.job, workload.uid)

    def siblings(self, workload: wl.Workload) -> Siblings | None:
        return self._jobs.siblings(workload, self._nodes.get, len(self.locality_keys))

    # -- decisions --------------------------------------------------------------------------
    def filter(self, workload: wl.Workload, names: Sequence[str]) -> list[bool]:
        """Pass/fail per node name: the extender's filter verdicts."""
        nodes = self._nodes
        result = self.decider.filter(workload, [nodes[n] for n in names])
        self.node_errors += len(result.errors)  # those nodes passed: the extender fails open on them too
        if isinstance(result.passed, range):
            return [True] * len(names)
        passed = [False] * len(names)
        for i in result.passed:
            passed[i] = True
        return passed

    def scores(self, workload: wl.Workload, names: Sequence[str]) -> list[int]:
        """The extender's 0..10 priority per node name (what prioritize would answer)."""
        nodes = self._nodes
        siblings = self.siblings(workload) if self.decider.needs_siblings(workload) else None
        result = self.decider.scores(workload, [nodes[n] for n in names], siblings)
        self.node_errors += len(result.errors)  # those nodes scored 0, as the extender scores them
        return result.scores
