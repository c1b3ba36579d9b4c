"""A GPU cluster for ``gputopo audit cluster`` tests and its benchmark: real machines, realistic objects.

Nodes are full, realistic Node objects (kubelet status, 50 images, managedFields, GFD labels:
``fake_kube_api.realistic_gpu_node``) carrying what the labeler agent publishes for a real
``nvidia-smi topo -m`` of the corpus (``labels.encode`` / ``encode_annotations``), the agent's
allocation in a ``gputopo-alloc-<node>`` ConfigMap (``labeler.topology.carrier``), and pods as
the API server stores them. :func:`audit_cluster` is the hand-built cluster of the tests (the
expected findings are worked out in ``test_audit_cluster.py``); :func:`scaled_cluster` repeats
the same kinds of nodes for the 5,000-node benchmark.

Machines (all 8 GPUs, two sockets):

- ``L40S``: ``tests/fixtures/discovery/l40s-8x-2socket-4switch.txt``: 4 PCIe switches of 2 GPUs,
  NODE inside a socket, SYS across. Best ring: 2 GPUs PIX, 4 GPUs NODE, 8 GPUs SYS.
- ``L40S_ODD``: the same board with GPU2-GPU3 at PHB (their switch bypassed): shape-pcie-switch 2-2-1-1.
- ``H100``: corpus 051, HGX H100 on NVSwitch (NV18 between every pair).
- ``A100``: corpus 027, A100 PCIe with NVLink bridge pairs (NV12), NODE in a socket, SYS across.
- ``A100_7``: that board with GPU7 lost (as a degraded agent publishes it).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fake_kube_api import realistic_gpu_node

from labeler.topology import allocation, carrier, labels, smi_parser
from labeler.topology.model import Topology

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
PREFIX = labels.DEFAULT_PREFIX
NAMESPACE = carrier.DEFAULT_NAMESPACE

GFD_KEYS = ("nvidia.com/gpu.present", "nvidia.com/gpu.count", "nvidia.com/gpu.product")


def _named(topo: Topology, name: str) -> Topology:
    """The topology as the agent's probe publishes it: GPU names filled in (text has none)."""
    return dataclasses.replace(topo, gpus=tuple(dataclasses.replace(g, name=name) for g in topo.gpus))


def _parse(path: Path, gpu_name: str, *, edit: tuple[str, str] | None = None) -> Topology:
    text = path.read_text()
    if edit is not None:
        text = text.replace(*edit)
    return _named(smi_parser.parse(text, source=path.name), gpu_name)


def _without_gpu(topo: Topology, index: int) -> Topology:
    """``topo`` after GPU ``index`` fell off the bus (a degraded agent publishes the GPUs that work)."""
    pos = topo.gpu_indices.index(index)
    keep = [i for i in range(len(topo.gpus) + len(topo.nics)) if i != pos]
    rows = [[topo.links[i][j] for j in keep] for i in keep]
    return Topology.from_rows([g for g in topo.gpus if g.index != index], topo.nics, rows, source=topo.source)


L40S_FILE = FIXTURES / "discovery" / "l40s-8x-2socket-4switch.txt"
L40S = _parse(L40S_FILE, "NVIDIA L40S")
# GPU2's and GPU3's rows: their PIX cell becomes PHB (the first PIX of each row is the GPU pair)
L40S_ODD = _named(smi_parser.parse(
    "\n".join(
        line.replace("PIX", "PHB", 1) if line.startswith(("GPU2\t", "GPU3\t")) else line
        for line in L40S_FILE.read_text().splitlines()
    ) + "\n", source="l40s-odd"), "NVIDIA L40S")
H100 = _parse(FIXTURES / "topo-corpus" / "051_h100x8-nv18-8nics-dualport-pix-pairs.txt", "NVIDIA H100 80GB HBM3")
A100 = _parse(FIXTURES / "topo-corpus" / "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt", "NVIDIA A100-PCIE-40GB")
A100_7 = _without_gpu(A100, 7)


def node(
    name: str,
    topo: Topology | None,
    *,
    pool: tuple[str, str] | None = None,
    instance_type: str | None = None,
    product: str | None = None,
    capacity: int | None = 8,
    status: labels.Status = labels.Status.OK,
    reason: str | None = None,
    class_of: Topology | None = None,
    schema: str | None = None,
    annotations: dict[str, str] | None = None,
    unschedulable: bool = False,
    gfd: bool = True,
) -> dict[str, Any]:
    """A realistic Node with what the agent publishes for ``topo`` (``None``: no gputopo labels)."""
    obj = realistic_gpu_node(name)
    meta = obj["metadata"]
    lab = {k: v for k, v in meta["labels"].items() if not k.startswith("nvidia.com/") or gfd}
    lab.pop("node.kubernetes.io/instance-type", None)
    if instance_type:
        lab["node.kubernetes.io/instance-type"] = instance_type
    if product and gfd:
        lab["nvidia.com/gpu.product"] = product
    if pool:
        lab[pool[0]] = pool[1]
    if topo is not None:
        lab.update(labels.encode(class_of or topo, prefix=PREFIX, status=status))
        meta["annotations"].update(labels.encode_annotations(topo, prefix=PREFIX))
    if reason:
        meta["annotations"].update(labels.status_annotations(reason, prefix=PREFIX))
    if schema == "v1":
        lab[PREFIX + labels.SCHEMA] = "v1"
        for key in (labels.SHAPE_NVLINK, labels.SHAPE_PCIE_SWITCH, labels.SHAPE_HOST_BRIDGE, labels.NUMA_BASIS):
            lab.pop(PREFIX + key, None)
    meta["annotations"].update(annotations or {})
    meta["labels"] = lab
    meta["uid"] = f"uid-{name}"
    for where in ("capacity", "allocatable"):
        if capacity is None:
            obj["status"][where].pop("nvidia.com/gpu", None)
        else:
            obj["status"][where]["nvidia.com/gpu"] = str(capacity)
    if unschedulable:
        obj["spec"]["unschedulable"] = True
    return obj


def configmap(node_name: str, value: str, *, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The agent's allocation ConfigMap for ``node_name`` (``labeler/agent/configmap.py`` writes this shape)."""
    return {
        "kind": "ConfigMap", "apiVersion": "v1",
        "metadata": {
            "name": carrier.configmap_name(node_name), "namespace": namespace, "uid": f"uid-cm-{node_name}",
            "labels": {carrier.MANAGED_BY_LABEL: carrier.MANAGED_BY_VALUE,
                       carrier.NODE_KEY: carrier.node_label_value(node_name)},
            "annotations": {carrier.NODE_KEY: node_name},
        },
        "data": {carrier.DATA_KEY: value},
    }


def alloc(topo: Topology, ts: float | None, used: dict[int, str] | None = None) -> str:
    used = dict(used or {})
    free = frozenset(topo.gpu_indices) - used.keys()
    return allocation.encode(allocation.AllocationState(free, used, None if ts is None else int(ts)))


def pod(namespace: str, name: str, gpus: int, *, phase: str = "Pending",
        node_name: str | None = None) -> dict[str, Any]:
    """A pod as the API server stores it (defaults filled in, status set)."""
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    spec: dict[str, Any] = {
        "containers": [{"name": "main", "image": "nvcr.io/nvidia/pytorch:24.08-py3", "command": ["torchrun"],
                        "args": ["train.py"], "resources": resources, "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "schedulerName": "default-scheduler", "priority": 0,
        "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority",
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    if node_name:
        spec["nodeName"] = node_name
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}",
                     "creationTimestamp": "2026-11-23T12:00:00Z", "labels": {"app": name.rsplit("-", 1)[0]}},
        "spec": spec,
        "status": {"phase": phase, "qosClass": "BestEffort",
                   **({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]}
                      if phase == "Pending" and not node_name else {})},
    }


class Cluster:
    """Objects to load into an API server (``FakeApiServer.put``)."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.configmaps: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []

    def add(self, obj: dict[str, Any], value: str | None = None) -> None:
        self.nodes.append(obj)
        if value is not None:
            self.configmaps.append(configmap(obj["metadata"]["name"], value))

    def load(self, api: Any) -> None:
        for kind, objs in (("nodes", self.nodes), ("configmaps", self.configmaps), ("pods", self.pods)):
            for o in objs:
                api.put(kind, o)

    def objects(self) -> Iterable[tuple[str, dict[str, Any]]]:
        for kind, objs in (("nodes", self.nodes), ("configmaps", self.configmaps), ("pods", self.pods)):
            for o in objs:
                yield kind, o


EKS_L40S = ("eks.amazonaws.com/nodegroup", "l40s")
KARPENTER_H100 = ("karpenter.sh/nodepool", "h100")
A100_PRODUCT = "NVIDIA-A100-PCIE-40GB"


def audit_cluster(now: float) -> Cluster:
    """303 nodes: three pools of real machines, with the faults the tests expect (test_audit_cluster.py)."""
    c = Cluster()
    fresh = now - 30
    l40s = {"pool": EKS_L40S, "instance_type": "g6e.48xlarge", "product": "NVIDIA-L40S"}
    # -- EKS node group l40s: 120 L40S nodes + one odd one out --------------------------------------
    special = {
        "l40s-000": {0: "ml/train-a", 1: "ml/train-a", 4: "ml/train-a", 5: "ml/train-a"},  # 2 GPUs per socket
        "l40s-001": {g: "ml/big-0" for g in range(8)},  # all 8: SYS is unavoidable
        "l40s-002": {0: "ml/pair-0", 1: "ml/pair-0"},  # a PIX pair: fine; leaves 2,3 alone in socket 0
        "l40s-003": {0: "ml/infer-0"},  # one GPU: leaves 1,2,3 in socket 0
    }
    for i in range(120):
        name = f"l40s-{i:03d}"
        ts = {10: now - 7200, 11: now - 7200, 12: now - 7200, 50: now - 5, 51: now - 1}.get(i, fresh)
        if i == 20:  # the driver went away: status=error, earlier labels kept (docs/labels.md "Status")
            obj = node(name, L40S, status=labels.Status.ERROR,
                       reason="no NVIDIA GPU or driver: NVML_ERROR_DRIVER_NOT_LOADED", **l40s)
        elif i == 21:  # a damaged topology annotation
            obj = node(name, L40S, annotations={PREFIX + "topology": '{"v":2,"gpus":[{"index":0'}, **l40s)
        else:
            obj = node(name, L40S, unschedulable=i == 51, **l40s)
        value = "this is not JSON" if i == 22 else alloc(L40S, ts, special.get(name))
        c.add(obj, value)
    c.add(node("l40s-odd", L40S_ODD, **l40s), alloc(L40S_ODD, fresh))
    # -- Karpenter node pool h100: 100 HGX H100 --------------------------------------------------------
    h100 = {"pool": KARPENTER_H100, "instance_type": "p5.48xlarge", "product": "NVIDIA-H100-80GB-HBM3"}
    for i in range(100):
        name = f"h100-{i:03d}"
        used = {g: f"train/llm-{i}" for g in range(8)} if i < 50 else None
        if i == 98:  # labelled, but the device plugin advertises no GPUs
            c.add(node(name, H100, capacity=None, **h100), alloc(H100, fresh, used))
        elif i == 99:  # an agent still on schema v1 (no re-stamped ts)
            c.add(node(name, H100, schema="v1", **h100), alloc(H100, None, used))
        else:
            c.add(node(name, H100, **h100), alloc(H100, fresh, used))
    # -- bare metal A100 PCIe with NVLink bridges: no pool label, grouped by GFD product ---------------
    for i in range(60):
        name = f"a100-{i:02d}"
        if i == 0:  # a 2-GPU pod on 0 and 2 (NODE) where bridge pairs (NV12) exist
            c.add(node(name, A100, product=A100_PRODUCT), alloc(A100, fresh, {0: "ml/pair-x", 2: "ml/pair-x"}))
        elif i == 1:  # agent publishes no allocation
            c.add(node(name, A100, product=A100_PRODUCT))
        elif i == 2:  # GPU7 fell off the bus: degraded, 7 GPUs published, capacity still 8
            c.add(node(name, A100_7, product=A100_PRODUCT, status=labels.Status.DEGRADED,
                       reason="GPU 7 (0000:e1:00.0) lost: Xid 79, fallen off the bus"), alloc(A100_7, fresh))
        else:
            c.add(node(name, A100, product=A100_PRODUCT), alloc(A100, fresh))
    # -- GPU nodes the agent has not labelled ------------------------------------------------------------
    c.add(node("gpu-new-0", None, **l40s))  # capacity 8 and GFD labels
    c.add(node("gpu-new-1", None, capacity=None, product="NVIDIA-L40S"))  # GFD only, no capacity yet
    # -- CPU nodes ------------------------------------------------------------------------------------------
    for i in range(20):
        c.add(node(f"cpu-{i:02d}", None, capacity=None, gfd=False, instance_type="m7i.8xlarge"))
    # -- pods: three 4-GPU pods wait; what must not count as pending -----------------------------------------
    c.pods += [pod("ml", f"wait-4gpu-{i}", 4) for i in range(3)]
    c.pods.append(pod("ml", "wait-cpu", 0))
    c.pods.append(pod("ml", "starting", 2, node_name="l40s-005"))  # bound, containers starting
    c.pods += [pod("train", f"llm-{i}", 8, phase="Running", node_name=f"h100-{i:03d}") for i in range(50)]
    c.pods.append(pod("ml", "train-a", 4, phase="Running", node_name="l40s-000"))
    # a stray ConfigMap of ours without a node, and one in another namespace: both ignored
    stray = configmap("nobody", alloc(L40S, fresh))
    del stray["metadata"]["labels"][carrier.NODE_KEY]
    del stray["metadata"]["annotations"]
    c.configmaps.append(stray)
    c.configmaps.append(configmap("l40s-004", "garbage", namespace="default"))
    return c


def scaled_cluster(now: float, nodes: int, *, pods_per_node: int = 10) -> Cluster:
    """``nodes`` GPU nodes cycling through the machines and faults of :func:`audit_cluster`, with
    ``pods_per_node`` running pods each (daemonsets and workloads, as a real cluster has) and one
    pending 4-GPU pod per 100 nodes."""
    base = audit_cluster(now)
    gpu_nodes = [n for n in base.nodes if not n["metadata"]["name"].startswith("cpu-")]
    by_node = {cm["metadata"]["annotations"][carrier.NODE_KEY]: cm for cm in base.configmaps
               if cm["metadata"]["namespace"] == NAMESPACE and cm["metadata"].get("annotations")}
    c = Cluster()
    for i in range(nodes):
        src = gpu_nodes[i % len(gpu_nodes)]
        obj = copy.deepcopy(src)
        name = f"{src['metadata']['name']}-{i // len(gpu_nodes)}"
        obj["metadata"]["name"] = name
        obj["metadata"]["labels"]["kubernetes.io/hostname"] = name
        cm = by_node.get(src["metadata"]["name"])
        value = None if cm is None else cm["data"][carrier.DATA_KEY]
        c.add(obj, value)
        for j in range(pods_per_node):
            c.pods.append(pod("kube-system" if j < pods_per_node - 2 else "ml", f"{name}-p{j}", 0,
                              phase="Running", node_name=name))
    c.pods += [pod("ml", f"wait-{i}", 4) for i in range(max(1, nodes // 100))]
    return c


def kubeconfig(path: Path, url: str) -> Path:
    """A kubeconfig for the in-test API server (plain HTTP, no credentials)."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": url}}],
        "users": [{"name": "test", "user": {}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }))
    return path
