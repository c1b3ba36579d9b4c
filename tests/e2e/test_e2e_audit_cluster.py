"""``gputopo audit cluster`` against the real kube-apiserver: 301 nodes, run as a process, read-only RBAC.

The cluster (issue #14: "a few hundred nodes of mixed classes including stale and missing labels
and a pod spanning sockets"), from real corpus boards (tests/fixtures/topo-corpus):

* EKS node group ``a10g`` (g5.24xlarge, corpus 048: 4 A10G, all SYS, one NUMA node), 100 nodes:
  ``a10g-010``/``-011`` last published 2 h ago (their agents died) → stale-allocation ×2;
  ``a10g-020`` advertises 4 GPUs but no agent ever ran → unlabelled; ``a10g-021``'s agent read a
  damaged matrix (an unknown link token on one line) → status=error naming the line → status-error.
  nccl-tests: ``a10g-050`` (the freshest; ``a10g-051`` is fresher still but cordoned).
* Bare-metal A100 PCIe (GFD product ``NVIDIA-A100-PCIE-40GB``, corpus 027: NV12 bridge pairs 0-1,
  2-3 | 4-5, 6-7; NODE inside a socket, SYS across), 80 nodes + ``a100-odd``, whose GPU6-GPU7
  bridge is missing (NODE): 1 of 81 voters → odd-one-out; alone in its class, it is that class's
  nccl-tests node.
  - ``a100-00``: ml/train-x on GPUs 0,1,4,5: its ring crosses the sockets (SYS) where GPUs 0-3
    ring at NODE → pod-crosses-sockets (warning). Free 2,3 | 6,7: at NODE (the best level for 4
    GPUs) islands of 2 and 2, and 4-GPU pods are pending → all four stranded.
  - ``a100-01``: ml/pair-y on GPUs 0,2 (NODE) where bridge pairs exist → pod-spans-islands. Free
    1,3 | 4-7: 4-7 can take a 4-GPU pod, 1 and 3 cannot → 1,3 stranded.
  - ``a100-02``: its topology annotation cut in half → undecodable-topology.
  nccl-tests for the class: ``a100-40`` (the freshest idle one).
* Bare-metal RTX 4090 (GFD product, corpus 032: 8 GPUs, all SYS, two NUMA nodes), 60 nodes;
  ``rtx4090-01`` carries GPU Feature Discovery labels only → unlabelled. nccl-tests: ``rtx4090-30``.
* Karpenter pool ``gb200`` (p6e-gb200.36xlarge, corpus 038: a GB200 tray, 4 GPUs NV18), 40 nodes;
  ``gb200-39`` has no allocation ConfigMap → no-allocation. nccl-tests: ``gb200-20``.
* 20 CPU nodes: nothing.
* Pods: three unscheduled 4-GPU pods (the demand: sizes {4}), a pending CPU pod, 30 pending pods of
  the list contract (none asks for a GPU), and ml/starting-0, a 2-GPU pod already bound to
  ``rtx4090-05`` whose kubelet has not admitted it yet: the field selector
  ``status.phase=Pending,spec.nodeName=`` must leave it out. Counted as demand, size 2 would
  un-strand a100-00's pairs 2,3 and 6,7 (NVLink islands of 2) and change the findings.

Every labelled node is labelled by its agent (``gputopo agent --once --topology-file`` with the
agent ServiceAccount's token bound to the node's DaemonSet pod, as in the scheduling scenario),
and its allocation is the ``gputopo-alloc-<node>`` ConfigMap the agent's own publisher writes with
that token, through RBAC and the admission policy; only the damage (a cut annotation, the old
timestamps, the used GPUs) is chosen by the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import list_contract
import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from labeler.agent.configmap import KubeConfigMapPublisher
from labeler.topology import allocation, labels

from .cluster import NAMESPACE, Cluster
from .conftest import report
from .fleet import CORPUS, GpuNode, create_nodes, label_with_agent, node_object, topology
from .kubebin import REPO
from .scenario import quantities_as_strings

A10G = "048_a10x4-allsys-2nics-single-numa-vm.txt"
A100 = "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt"
RTX = "032_rtx4090x8-allsys-2nics-tabs.txt"
GB200 = "038_gb200-tray-4gpu-nv18-8nics-gpunumaid-numeric.txt"
AUDIT_SA = "gputopo-audit"
PREFIX = labels.DEFAULT_PREFIX
RESULTS = REPO / "out" / "e2e-results"

POOLS = {
    "a10g": {"eks.amazonaws.com/nodegroup": "a10g", "node.kubernetes.io/instance-type": "g5.24xlarge",
             "nvidia.com/gpu.product": "NVIDIA-A10G"},
    "a100": {"nvidia.com/gpu.product": "NVIDIA-A100-PCIE-40GB"},
    "rtx4090": {"nvidia.com/gpu.product": "NVIDIA-GeForce-RTX-4090"},
    "gb200": {"karpenter.sh/nodepool": "gb200", "node.kubernetes.io/instance-type": "p6e-gb200.36xlarge",
              "nvidia.com/gpu.product": "NVIDIA-GB200"},
}
FRESHEST = {"a10g-050", "a100-40", "rtx4090-30", "gb200-20"}

EXPECTED = {
    ("error", "status-error", ("a10g-021",), None),
    ("warning", "stale-allocation", ("a10g-010",), None),
    ("warning", "stale-allocation", ("a10g-011",), None),
    ("warning", "unlabelled", ("a10g-020",), None),
    ("warning", "unlabelled", ("rtx4090-01",), None),
    ("warning", "undecodable-topology", ("a100-02",), None),
    ("warning", "no-allocation", ("gb200-39",), None),
    ("warning", "odd-one-out", ("a100-odd",), None),
    ("warning", "pod-crosses-sockets", ("a100-00",), "ml/train-x"),
    ("warning", "pod-spans-islands", ("a100-01",), "ml/pair-y"),
    ("warning", "stranded", ("a100-00",), None),
    ("warning", "stranded", ("a100-01",), None),
}


@dataclass
class Spec:
    """One node of the fleet and what is wrong with it."""

    name: str
    pool: str | None
    corpus: str | None  # None: a CPU node
    how: str = "agent"  # "agent": labelled by its agent | "none": no gputopo labels | "gfd-only"
    topo_text: str | None = None  # the matrix the agent reads, when not the corpus file as is
    used: dict[int, str] = field(default_factory=dict)
    age_s: float = 300.0  # of the allocation's ts
    allocation: bool = True
    cordoned: bool = False
    damage_annotation: bool = False


def _edit(text: str, row: str, old: str, new: str) -> str:
    """``text`` (a matrix) with the first ``old`` cell of ``row``'s line replaced by ``new``."""
    out = []
    for line in text.splitlines():
        if line.split()[:1] == [row]:
            head, _, tail = line.partition(" ")
            line = head + " " + tail.replace(old, new, 1)
        out.append(line)
    return "\n".join(out) + "\n"


def _corpus(name: str) -> str:
    return (CORPUS / name).read_text(encoding="utf-8")


def fleet() -> list[Spec]:
    specs: list[Spec] = []
    for i in range(100):
        s = Spec(f"a10g-{i:03d}", "a10g", A10G)
        if i in (10, 11):
            s.age_s = 7200.0
        elif i == 20:
            s.how = "none"
        elif i == 21:
            s.topo_text = _edit(_corpus(A10G), "GPU2", "SYS", "QPI")  # not a link token: the agent refuses it
        elif i == 50:
            s.age_s = 60.0
        elif i == 51:
            s.age_s, s.cordoned = 30.0, True
        specs.append(s)
    for i in range(80):
        s = Spec(f"a100-{i:02d}", "a100", A100)
        if i == 0:
            s.used = {g: "ml/train-x" for g in (0, 1, 4, 5)}
        elif i == 1:
            s.used = {g: "ml/pair-y" for g in (0, 2)}
        elif i == 2:
            s.damage_annotation = True
        elif i == 40:
            s.age_s = 60.0
        specs.append(s)
    no_bridge = _edit(_edit(_corpus(A100), "GPU6", "NV12", "NODE"), "GPU7", "NV12", "NODE")  # GPU6-GPU7
    specs.append(Spec("a100-odd", "a100", A100, topo_text=no_bridge))
    for i in range(60):
        s = Spec(f"rtx4090-{i:02d}", "rtx4090", RTX)
        if i == 1:
            s.how = "gfd-only"
        elif i == 30:
            s.age_s = 60.0
        specs.append(s)
    for i in range(40):
        s = Spec(f"gb200-{i:02d}", "gb200", GB200)
        if i == 39:
            s.allocation = False
        elif i == 20:
            s.age_s = 60.0
        specs.append(s)
    specs += [Spec(f"cpu-{i:02d}", None, None, how="none") for i in range(20)]
    return specs


def _node_object(s: Spec) -> dict[str, Any]:
    extra = dict(POOLS.get(s.pool or "", {}))
    if s.corpus is None:  # a CPU node: no GPU resource, no GFD labels
        obj = node_object(s.name, 0, extra_labels={"eks.amazonaws.com/nodegroup": "system",
                                                   "node.kubernetes.io/instance-type": "m7i.4xlarge"})
        del obj["metadata"]["labels"]["nvidia.com/gpu.present"]
        for part in ("capacity", "allocatable"):
            obj["status"][part].pop("nvidia.com/gpu", None)
    elif s.how == "gfd-only":  # GPU Feature Discovery ran, the device plugin did not: no capacity
        obj = node_object(s.name, 0, extra_labels={**extra, "nvidia.com/gpu.count": "8"})
    else:
        obj = node_object(s.name, len(topology(s.corpus).gpus), extra_labels=extra)
    if s.cordoned:
        obj["spec"]["unschedulable"] = True
    return obj


def _kubeconfig_client(path: Path) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(path)))


@dataclass
class AuditCluster:
    cluster: Cluster
    specs: dict[str, Spec]
    kubeconfig: Path
    now: float


@pytest.fixture(scope="module")
def audited(cluster: Cluster) -> Iterator[AuditCluster]:
    t0 = time.monotonic()
    specs = fleet()
    for ns in ("ml", list_contract.NAMESPACE):
        cluster.ensure_namespace(ns)
    # what the controller-manager's root-CA publisher puts in every namespace (not ours: not selected)
    cluster.core.create_namespaced_config_map(NAMESPACE, {"metadata": {"name": "kube-root-ca.crt"},  # type: ignore[arg-type]
                                                          "data": {"ca.crt": "-"}})
    create_nodes(cluster, [_node_object(s) for s in specs])
    topo_dir = cluster.workdir / "topologies"
    topo_dir.mkdir(parents=True, exist_ok=True)
    agent_clients: dict[str, k8s.CoreV1Api] = {}
    for s in specs:
        if s.how != "agent":
            continue
        assert s.corpus is not None
        node = GpuNode(s.name, s.corpus)
        if s.topo_text is not None:  # an edited matrix (GpuNode.path: CORPUS / an absolute path = that path)
            path = topo_dir / f"{s.name}.txt"
            path.write_text(s.topo_text, encoding="utf-8")
            node = GpuNode(s.name, str(path))
        kubeconfig = cluster.agent_kubeconfig(s.name)
        label_with_agent(cluster, node, kubeconfig=kubeconfig)
        agent_clients[s.name] = _kubeconfig_client(kubeconfig)
        if s.damage_annotation:  # cut by hand afterwards (a bad copy, an editor that truncated it)
            key = PREFIX + labels.ANNOTATION_TOPOLOGY
            value = cluster.core.read_node(s.name).metadata.annotations[key]
            cluster.core.patch_node(s.name, {"metadata": {"annotations": {key: value[: len(value) // 2]}}})
    t_agents = time.monotonic() - t0
    now = time.time()
    admin = cluster.core

    def publish(s: Spec) -> None:
        assert s.corpus is not None
        gpus = frozenset(topology(s.corpus).gpu_indices)
        state = allocation.AllocationState(gpus - s.used.keys(), dict(s.used), int(now - s.age_s))
        KubeConfigMapPublisher(agent_clients[s.name], s.name, NAMESPACE).publish(state)

    with ThreadPoolExecutor(8) as pool:
        todo = [s for s in specs if s.how == "agent" and s.allocation
                and s.name != "a10g-021"]  # an agent in status=error has no topology: it publishes none
        list(pool.map(publish, todo))
    for key, gpus, node in (("ml/train-x", 4, "a100-00"), ("ml/pair-y", 2, "a100-01"),
                            ("ml/starting-0", 2, "rtx4090-05"), ("ml/wait-0", 4, None), ("ml/wait-1", 4, None),
                            ("ml/wait-2", 4, None), ("default/cpu-job", 0, None)):
        ns, name = key.split("/")
        spec: dict[str, Any] = {"schedulerName": "gputopo-scheduler", "containers": [
            {"name": "main", "image": "nvcr.io/nvidia/pytorch:24.12-py3",
             "resources": {"limits": {"nvidia.com/gpu": gpus}} if gpus else {}}]}
        if node is not None:
            spec["nodeName"] = node  # bound (as the scheduler's binding does); no kubelet runs it
        admin.create_namespaced_pod(ns, quantities_as_strings(  # type: ignore[arg-type]
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, "spec": spec}))
    for i in range(list_contract.PODS):
        admin.create_namespaced_pod(list_contract.NAMESPACE, list_contract.pod(i))  # type: ignore[arg-type]
    cluster.kubectl("apply", "--server-side", "--field-manager=gputopo-e2e", "-f",
                    str(REPO / "manifests/examples/audit-cluster-rbac.yaml"))
    kubeconfig = cluster.sa_kubeconfig(AUDIT_SA, NAMESPACE)
    report(f"audit cluster: {len(specs)} nodes created and labelled by their agents in {t_agents:.1f}s, "
           f"everything set up in {time.monotonic() - t0:.1f}s")
    yield AuditCluster(cluster, {s.name: s for s in specs}, kubeconfig, now)
    for c in agent_clients.values():
        c.api_client.close()


def audit(a: AuditCluster, *args: str) -> tuple[int, dict[str, Any], float]:
    """``gputopo audit cluster --json`` as a process with the audit ServiceAccount's kubeconfig."""
    exe = shutil.which("gputopo", path=str(Path(sys.executable).parent)) or "gputopo"
    t = time.monotonic()
    done = subprocess.run([exe, "audit", "cluster", "--json", "--no-progress", "--kubeconfig", str(a.kubeconfig),
                           *args], capture_output=True, text=True, timeout=300, check=False)
    took = time.monotonic() - t
    assert done.returncode in (0, 5), done.stderr
    return done.returncode, json.loads(done.stdout), took


def found(doc: dict[str, Any]) -> set[tuple[str, str, tuple[str, ...], str | None]]:
    return {(f["severity"], f["code"], tuple(f["nodes"]), f.get("pod")) for f in doc["findings"]}


def test_the_hand_built_cluster(audited: AuditCluster) -> None:
    rc, doc, took = audit(audited, "--page-size", "50")
    assert rc == 0
    assert found(doc) == EXPECTED
    s = doc["summary"]
    # 301 nodes, 20 CPU; 2 GPU nodes unlabelled; 5 labelled not usable (2 stale, error, cut topology, no allocation)
    assert (s["nodes"], s["gpu_nodes"], s["labelled"], s["usable"], s["classes"]) == (301, 281, 279, 274, 5)
    # free GPUs on usable nodes: a10g 96x4; a100 4 + 6 + 77x8; a100-odd 8; rtx 59x8; gb200 39x4
    assert s["free_gpus"] == 96 * 4 + 4 + 6 + 77 * 8 + 8 + 59 * 8 + 39 * 4
    assert s["stranded_gpus"] == 4 + 2
    assert (s["pods_multi_gpu"], s["pods_spanning_islands"], s["pods_crossing_sockets"]) == (2, 2, 1)
    assert doc["stranded"]["sizes"] == [4] and doc["stranded"]["sizes_from"] == "pending"
    assert doc["stranded"]["pending_gpu_pods"] == 3  # ml/starting-0 is bound: not demand
    assert {x["node"]: x["stranded"] for x in doc["stranded"]["nodes"]} == {"a100-00": [2, 3, 6, 7],
                                                                           "a100-01": [1, 3]}
    pods = {p["pod"]: p for p in doc["pods"]}
    assert pods["ml/train-x"] == {"pod": "ml/train-x", "node": "a100-00", "gpus": [0, 1, 4, 5], "level": "sys",
                                  "ring_bottleneck": "SYS", "best_level": "node", "spans_islands": True,
                                  "crosses_sockets": True}
    assert (pods["ml/pair-y"]["level"], pods["ml/pair-y"]["best_level"]) == ("node", "nvlink")
    nccl = {x["node"]: x for x in doc["nccl"]}
    assert set(nccl) == FRESHEST | {"a100-odd"}
    # the bandwidth model (docs/bandwidth.md): NV18 at the slowest generation with 18 links (NVLink 4,
    # 20.6 GB/s per link) = 370.8; the A100 ring crosses the sockets: the socket link of an unknown CPU, 6
    assert (nccl["gb200-20"]["expected_busbw_gbps"], nccl["a100-40"]["expected_busbw_gbps"]) == (370.8, 6.0)
    pools = {(p["pool"], p["instance_type"]): p for p in doc["pools"]}
    assert {k: (p["nodes"], p["odd_ones_out"]) for k, p in pools.items()} == {
        ("eks.amazonaws.com/nodegroup=a10g", "g5.24xlarge"): (100, []),
        (None, "NVIDIA-A100-PCIE-40GB"): (81, ["a100-odd"]),
        (None, "NVIDIA-GeForce-RTX-4090"): (60, []),
        ("karpenter.sh/nodepool=gb200", "p6e-gb200.36xlarge"): (40, []),
    }
    nodes = {n["name"]: n for n in doc["nodes"]}
    assert nodes["a10g-021"]["status"] == "error" and "line" in nodes["a10g-021"]["status_reason"]
    assert nodes["a10g-010"]["allocation"]["freshness"] == "stale" and not nodes["a10g-010"]["usable"]
    assert nodes["a10g-051"]["unschedulable"] and "cpu-00" not in nodes
    # what was read: 301 nodes in pages of 50; 277 allocation ConfigMaps (not kube-root-ca.crt); the 34
    # unscheduled pending pods (the field selector leaves out every bound pod)
    reads = {r["kind"]: r for r in doc["reads"]}
    assert (reads["nodes"]["objects"], reads["nodes"]["pages"]) == (301, 7)
    assert (reads["configmaps"]["objects"], reads["configmaps"]["pages"]) == (277, 6)
    assert (reads["pods"]["objects"], reads["pods"]["pages"]) == (4 + list_contract.PODS, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "audit-cluster.json").write_text(json.dumps(doc, indent=1))
    report(f"audit cluster: 301 nodes, pages of 50: {took:.1f}s for the process (reads: "
           + ", ".join(f"{r['kind']} {r['seconds']:.2f}s" for r in doc["reads"]) + ")")


def test_the_watch_cache_list_gives_the_same_audit(audited: AuditCluster) -> None:
    rc, doc, _ = audit(audited, "--cached-list", "--page-size", "50")
    assert rc == 0 and found(doc) == EXPECTED
    # resourceVersion=0: kube-apiserver answers from its watch cache and ignores limit: one page each
    assert {r["kind"]: r["pages"] for r in doc["reads"]} == {"nodes": 1, "configmaps": 1, "pods": 1}


def test_fail_on_and_a_refused_list(audited: AuditCluster) -> None:
    rc, _, _ = audit(audited, "--fail-on", "error")
    assert rc == 5  # a10g-021's status-error
    # the Role covers gputopo-system only: elsewhere RBAC refuses, and the audit says so and goes on
    rc, doc, _ = audit(audited, "--namespace", "kube-system")
    assert rc == 0
    refused = [f for f in doc["findings"] if f["code"] == "configmaps-unreadable"]
    assert len(refused) == 1 and "forbidden (RBAC)" in refused[0]["message"] and refused[0]["nodes"] == []


@pytest.mark.parametrize(("verb", "resource", "namespace"), [
    ("list", "nodes", None), ("list", "pods", None), ("list", "configmaps", NAMESPACE)])
def test_the_audit_account_may_list(audited: AuditCluster, verb: str, resource: str, namespace: str | None) -> None:
    assert _can(audited, verb, resource, namespace) == "yes"


@pytest.mark.parametrize(("verb", "resource", "namespace"), [
    ("get", "nodes", None), ("watch", "nodes", None), ("patch", "nodes", None), ("get", "secrets", NAMESPACE),
    ("list", "configmaps", "kube-system"), ("get", "configmaps", NAMESPACE), ("create", "pods", "ml")])
def test_the_audit_account_may_do_nothing_else(audited: AuditCluster, verb: str, resource: str,
                                               namespace: str | None) -> None:
    assert _can(audited, verb, resource, namespace) == "no"


def _can(a: AuditCluster, verb: str, resource: str, namespace: str | None) -> str:
    ns = ["-n", namespace] if namespace else ["--all-namespaces"]
    out = a.cluster.kubectl("auth", "can-i", verb, resource, *ns,
                            f"--as=system:serviceaccount:{NAMESPACE}:{AUDIT_SA}", check=False)
    return out.stdout.strip()


def test_the_list_contract_of_the_in_test_double_holds_here(audited: AuditCluster) -> None:
    """tests/extender/list_contract.py, which FakeApiServer is held to, asked of kube-apiserver v1.37.2."""
    list_contract.check(audited.cluster.core)
