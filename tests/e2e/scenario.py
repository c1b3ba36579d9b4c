"""The GPU fleet and workloads of the scheduling and failure scenarios (shared by both).

The fleet: 42 Node objects of seven real machine classes from the corpus, each labelled by
its agent, with the stand-in for kubelet + device plugin publishing allocations. The
workloads are the project's example manifests turned into the pods their controllers
would create (Kubeflow's training operator, a Deployment's ReplicaSet), plus 1-GPU pods.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from .cluster import Cluster
from .fleet import GpuNode, create_nodes, label_with_agent, node_object
from .kubebin import REPO
from .procs import Proc, wait_for
from .standin import Allocation, KubeletStandIn

__all__ = ["CLASSES", "Scenario", "fleet", "notebook_pod", "pytorch_worker", "quantities_as_strings", "start_scenario",
           "vllm_pod"]

#: class name -> (corpus file, node count). 42 nodes.
CLASSES: dict[str, tuple[str, int]] = {
    "gb200": ("038_gb200-tray-4gpu-nv18-8nics-gpunumaid-numeric.txt", 2),      # 4 GPUs, NV18 (NVSwitch)
    "pairs8": ("027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt", 8),            # 8 GPUs, 4 NV12 bridge pairs
    "a100pcie4": ("031_vmware-a100-80g-pcie-x4-nv12-pairs-matrixonly.txt", 8),  # 4 GPUs, 2 NV12 pairs, SYS
    "nv4pairs": ("040_4gpu-24gb-nv4-pairs-1nic-pxb-pix.txt", 4),                # 4 GPUs, 2 NV4 pairs, SYS
    "gtx7": ("035_gtx1070x6-1080x1-7gpu-pix-phb-oldfmt.txt", 4),                # 7 GPUs, PIX 3 + 4, PHB
    "rtx4090": ("032_rtx4090x8-allsys-2nics-tabs.txt", 10),                     # 8 GPUs, all SYS
    "a10x4": ("048_a10x4-allsys-2nics-single-numa-vm.txt", 6),                  # 4 GPUs, all SYS
}
SCHEDULER = "gputopo-scheduler"


def fleet() -> list[GpuNode]:
    return [GpuNode(f"{cls}-{i}", f) for cls, (f, n) in CLASSES.items() for i in range(n)]


def class_of(node: str) -> str:
    return node.rsplit("-", 1)[0]


def _example(path: str) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / path).read_text())
    assert isinstance(doc, dict)
    return doc


def pytorch_worker(job: str, index: int, replicas: int = 2, namespace: str = "ml-team") -> dict[str, Any]:
    """Worker ``index`` of manifests/examples/pytorchjob-2x4.yaml as the training operator (v1) creates it."""
    template = copy.deepcopy(_example("manifests/examples/pytorchjob-2x4.yaml")
                             ["spec"]["pytorchReplicaSpecs"]["Worker"]["template"])
    meta = template.setdefault("metadata", {})
    meta.update(name=f"{job}-worker-{index}", namespace=namespace)
    meta["labels"] = {**meta.get("labels", {}), "training.kubeflow.org/job-name": job,
                      "training.kubeflow.org/operator-name": "pytorchjob-controller",
                      "training.kubeflow.org/replica-type": "worker",
                      "training.kubeflow.org/replica-index": str(index)}
    spec = template["spec"]
    spec["restartPolicy"] = "OnFailure"
    for c in spec["containers"]:
        c.setdefault("env", []).extend([
            {"name": "PET_NNODES", "value": str(replicas)}, {"name": "PET_NPROC_PER_NODE", "value": "4"},
            {"name": "PET_NODE_RANK", "value": str(index)}, {"name": "MASTER_ADDR", "value": f"{job}-worker-0"},
            {"name": "MASTER_PORT", "value": "23456"}])
    return {"apiVersion": "v1", "kind": "Pod", **template}


def vllm_pod(name: str, namespace: str = "inference") -> dict[str, Any]:
    """A pod of manifests/examples/vllm-tp2.yaml's Deployment (what its ReplicaSet would create)."""
    template = copy.deepcopy(_example("manifests/examples/vllm-tp2.yaml")["spec"]["template"])
    template["metadata"].update(name=name, namespace=namespace)
    template["metadata"]["labels"]["pod-template-hash"] = "6d5f7c9b8"
    return {"apiVersion": "v1", "kind": "Pod", **template}


def notebook_pod(name: str, namespace: str = "default", gpus: int = 1) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"schedulerName": SCHEDULER,
                     "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                     "containers": [{"name": "notebook", "image": "quay.io/jupyter/pytorch-notebook:cuda12-2024-12-02",
                                     "resources": {"limits": {"nvidia.com/gpu": gpus},
                                                   "requests": {"cpu": "4", "memory": "32Gi"}}}]}}


def quantities_as_strings(pod: dict[str, Any]) -> dict[str, Any]:
    """YAML reads `nvidia.com/gpu: 4` as an int; the client's models want quantities as strings."""
    for c in pod["spec"]["containers"]:
        for part in ("limits", "requests"):
            res = c.get("resources", {}).get(part) or {}
            res.update({k: str(v) for k, v in res.items()})
    return pod


@dataclass
class Scenario:
    cluster: Cluster
    nodes: list[GpuNode]
    standin: KubeletStandIn
    extender: Proc
    extender_url: str
    scheduler: Proc
    placements: list[dict[str, Any]] = field(default_factory=list)

    def create(self, pod: dict[str, Any]) -> str:
        ns = pod["metadata"]["namespace"]
        self.cluster.core.create_namespaced_pod(ns, quantities_as_strings(pod))  # type: ignore[arg-type]
        return f"{ns}/{pod['metadata']['name']}"

    def node_of(self, key: str) -> str | None:
        ns, name = key.split("/")
        return self.cluster.core.read_namespaced_pod(name, ns).spec.node_name  # type: ignore[no-any-return]

    def wait_placed(self, *keys: str, timeout_s: float = 60.0, settle_s: float = 1.0) -> list[Allocation]:
        """Wait until each pod is bound and the stand-in allocated and published its GPUs.

        ``settle_s`` afterwards lets the extender's ConfigMap watch deliver the change
        (loopback: milliseconds) before the caller submits the next pod.
        """
        def done() -> bool:
            self.standin.sync()
            return all(k in self.standin.allocations for k in keys)

        wait_for(f"placement of {', '.join(keys)}", done, timeout_s, alive=self._dead)
        time.sleep(settle_s)
        out = [self.standin.allocations[k] for k in keys]
        for k, a in zip(keys, out, strict=True):
            self.placements.append({"pod": k, "node": a.node, "class": class_of(a.node), "gpus": list(a.gpus)})
        return out

    def _dead(self) -> str | None:
        return self.scheduler.dead() or self.extender.dead()

    def events(self, key: str, reason: str) -> Iterator[str]:
        ns, name = key.split("/")
        for e in self.cluster.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items:
            if e.reason == reason:
                yield e.message or ""


def start_scenario(cluster: Cluster) -> Scenario:
    """Nodes (created, labelled by their agents), the stand-in, the extender and kube-scheduler."""
    for ns in ("ml-team", "inference"):
        cluster.ensure_namespace(ns)
    nodes = fleet()
    create_nodes(cluster, [node_object(n.name, len(n.topology.gpus)) for n in nodes])
    for n in nodes:
        label_with_agent(cluster, n)  # also writes the node's agent kubeconfig the stand-in uses
    standin = KubeletStandIn(cluster, nodes)
    standin.publish_all()
    extender, url = cluster.start_extender()
    scheduler = cluster.start_scheduler(url)
    return Scenario(cluster, nodes, standin, extender, url, scheduler)


def delete_pods(cluster: Cluster, keys: list[str]) -> None:
    for key in keys:
        ns, name = key.split("/")
        try:
            cluster.core.delete_namespaced_pod(name, ns, grace_period_seconds=0)
        except ApiException as err:
            if err.status != 404:
                raise
