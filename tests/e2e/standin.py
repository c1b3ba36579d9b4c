"""A stand-in for kubelet + the NVIDIA device plugin on the fake GPU nodes.

For every pod bound to one of its nodes that asks for ``nvidia.com/gpu``, it picks the
GPUs the way kubelet does with the stock device plugin (``policy.device_plugin.choose``,
best-effort policy: go-gpuallocator over the node's topology) and publishes the node's
allocation exactly as that node's agent would: ``labeler.agent.configmap.KubeConfigMapPublisher``
with the agent ServiceAccount's token bound to the node's DaemonSet pod, writing
``gputopo-alloc-<node>`` through the real API server, RBAC and admission.

Offer order: kubelet hands the plugin its free devices in Go map order (random at run
time); the stand-in offers them in index order, so ties (1-GPU requests, NVSwitch boards
whose NVLinks the plugin cannot see) resolve to the lowest free index, reproducibly.
A pod the device plugin cannot serve (``DeviceAdmissionError``) is failed as kubelet
does (``UnexpectedAdmissionError``).

``sync()`` does one pass (list bound pods, allocate new ones, free deleted ones,
publish changed nodes); ``start()`` runs passes in a thread until ``stop()``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from labeler.agent.configmap import KubeConfigMapPublisher
from labeler.topology import allocation
from labeler.topology.model import Topology
from policy.device_plugin import DeviceAdmissionError, choose

from .cluster import NAMESPACE, Cluster
from .fleet import GpuNode

__all__ = ["Allocation", "KubeletStandIn"]

GPU = "nvidia.com/gpu"


@dataclass(frozen=True)
class Allocation:
    node: str
    gpus: tuple[int, ...]


def gpu_request(pod: k8s.V1Pod) -> int:
    """Kubernetes' effective request of ``nvidia.com/gpu`` (limits win; init containers take the max)."""
    def one(c: Any) -> int:
        res = c.resources
        if res is None:
            return 0
        value = (res.limits or {}).get(GPU) or (res.requests or {}).get(GPU) or 0
        return int(value)
    spec = pod.spec
    regular = sum(one(c) for c in spec.containers or [])
    init = max((one(c) for c in spec.init_containers or []), default=0)
    return max(regular, init)


@dataclass
class _NodeState:
    node: GpuNode
    topology: Topology
    publisher: KubeConfigMapPublisher
    used: dict[int, str] = field(default_factory=dict)


class KubeletStandIn:
    def __init__(self, cluster: Cluster, nodes: list[GpuNode]) -> None:
        self.cluster = cluster
        self.nodes: dict[str, _NodeState] = {}
        for n in nodes:
            api = k8s_config.new_client_from_config(config_file=str(cluster.workdir / "kubeconfigs"
                                                                     / f"agent-{n.name}.kubeconfig"))
            self.nodes[n.name] = _NodeState(n, n.topology, KubeConfigMapPublisher(k8s.CoreV1Api(api), n.name,
                                                                                  NAMESPACE))
        self.allocations: dict[str, Allocation] = {}  # "ns/pod" -> where and which GPUs
        self.refused: dict[str, str] = {}  # "ns/pod" -> kubelet's admission error
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []  # passes that failed in the background thread

    def publish_all(self) -> None:
        """Every node's allocation as its agent publishes it at start-up (all GPUs free)."""
        for name in self.nodes:
            self._publish(name)

    def _publish(self, name: str) -> None:
        st = self.nodes[name]
        free = frozenset(st.topology.gpu_indices) - st.used.keys()
        st.publisher.publish(allocation.AllocationState(free, dict(st.used), int(time.time())))

    def sync(self) -> list[str]:
        """One pass; returns the ``ns/pod`` keys allocated in it."""
        with self._lock:
            pods = self.cluster.core.list_pod_for_all_namespaces(field_selector="spec.nodeName!=").items
            live: set[str] = set()
            changed: set[str] = set()
            new: list[str] = []
            for pod in sorted(pods, key=lambda p: (p.metadata.creation_timestamp, p.metadata.name)):
                key = f"{pod.metadata.namespace}/{pod.metadata.name}"
                node = pod.spec.node_name
                if node not in self.nodes or pod.status.phase in ("Succeeded", "Failed"):
                    continue
                live.add(key)
                k = gpu_request(pod)
                if k == 0 or key in self.allocations or key in self.refused:
                    continue
                st = self.nodes[node]
                free = sorted(set(st.topology.gpu_indices) - st.used.keys())
                try:
                    gpus = choose(st.topology, free, k)
                except DeviceAdmissionError as err:
                    self.refused[key] = str(err)
                    self._fail(pod, str(err))
                    continue
                for g in gpus:
                    st.used[g] = key
                self.allocations[key] = Allocation(node, gpus)
                changed.add(node)
                new.append(key)
            for key in [k for k in self.allocations if k not in live]:  # deleted or finished: free its GPUs
                where = self.allocations.pop(key)
                for g in where.gpus:
                    self.nodes[where.node].used.pop(g, None)
                changed.add(where.node)
            for name in sorted(changed):
                self._publish(name)
            return new

    def _fail(self, pod: k8s.V1Pod, message: str) -> None:
        self.cluster.core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {
            "status": {"phase": "Failed", "reason": "UnexpectedAdmissionError", "message": message}})

    def start(self, interval_s: float = 0.2) -> KubeletStandIn:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.sync()
                except Exception as err:  # keep going (the API server may be busy); the test checks .errors
                    self.errors.append(f"{type(err).__name__}: {err}")

        self._thread = threading.Thread(target=loop, name="kubelet-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
