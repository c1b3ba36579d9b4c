"""Fake GPU Nodes made through the real API, labelled by the real agent from real corpus topologies.

A Node object is what kubelet would register: capacity/allocatable with
``nvidia.com/gpu`` (what the device plugin advertises: one per GPU of the topology),
CPU, memory, pods, and a ``Ready`` condition. The ``TaintNodesByCondition``
admission plugin puts ``node.kubernetes.io/not-ready:NoSchedule`` on every new node;
the node lifecycle controller (controller-manager, not run here) removes it once the
node reports Ready, so :func:`create_nodes` does that removal itself.

Labels and annotations come from running the agent (``gputopo agent --once
--topology-file``) with the agent ServiceAccount's token bound to the node's
DaemonSet pod: the same command, RBAC and admission path as in a cluster.
:func:`preencoded_node` is the shortcut for the 1,000-node throughput run: the
agent's own encoders (``labels.encode``/``encode_annotations``) in the create body.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from labeler.agent import cli as agent_cli
from labeler.topology import labels, smi_parser
from labeler.topology.model import Topology

from .cluster import Cluster
from .kubebin import REPO

__all__ = ["CORPUS", "GpuNode", "create_nodes", "label_with_agent", "node_object", "preencoded_node", "topology"]

CORPUS = REPO / "tests" / "fixtures" / "topo-corpus"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"


@cache
def topology(filename: str) -> Topology:
    return smi_parser.parse((CORPUS / filename).read_text(encoding="utf-8"), source=filename)


@dataclass(frozen=True)
class GpuNode:
    """One fake node: its name and the corpus file its agent reads."""

    name: str
    corpus_file: str

    @property
    def path(self) -> Path:
        return CORPUS / self.corpus_file

    @property
    def topology(self) -> Topology:
        return topology(self.corpus_file)


def node_object(name: str, gpus: int, *, extra_labels: dict[str, str] | None = None,
                annotations: dict[str, str] | None = None, cpu: str = "128", memory: str = "1024Gi") -> dict[str, Any]:
    """A Node as kubelet registers it, with the GPUs the device plugin advertises."""
    resources = {"cpu": cpu, "memory": memory, "pods": "110", "ephemeral-storage": "1Ti", "nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                       "nvidia.com/gpu.present": "true", **(extra_labels or {})},
            "annotations": dict(annotations or {}),
        },
        "spec": {},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "e2e fake node (no kubelet)"}],
        },
    }


def preencoded_node(name: str, topo: Topology, **kwargs: Any) -> dict[str, Any]:
    """A node carrying what the agent would publish for ``topo`` (its encoders, no agent run)."""
    obj = node_object(name, len(topo.gpus), **kwargs)
    obj["metadata"]["labels"].update(labels.encode(topo, prefix=labels.DEFAULT_PREFIX))
    obj["metadata"]["annotations"].update(labels.encode_annotations(topo, prefix=labels.DEFAULT_PREFIX))
    return obj


def _create_one(cluster: Cluster, obj: dict[str, Any]) -> None:
    core = cluster.core
    node = core.create_node(obj)  # type: ignore[arg-type]
    name = obj["metadata"]["name"]
    if not (node.status and node.status.allocatable):  # kubelet registers with status; keep it if dropped
        core.patch_node_status(name, {"status": obj["status"]})
    taints = [t for t in (node.spec.taints or []) if t.key != NOT_READY_TAINT]
    if len(taints) != len(node.spec.taints or []):  # the node lifecycle controller's job, once Ready
        core.patch_node(name, {"spec": {"taints": [cluster.api.sanitize_for_serialization(t) for t in taints]}})


def create_nodes(cluster: Cluster, objects: Iterable[dict[str, Any]], *, workers: int = 8) -> None:
    """Create nodes concurrently (the API server is the bottleneck, not the client)."""
    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(_create_one, cluster, o) for o in objects]:
            f.result()


def label_with_agent(cluster: Cluster, node: GpuNode, *, kubeconfig: Path | None = None) -> str:
    """``gputopo agent --once --topology-file`` for ``node`` as its agent (token bound to its DaemonSet pod).

    Runs the agent's CLI entry point in this process (40 interpreter start-ups would
    cost more than the whole scenario); the agent scenario runs it as a real process.
    Returns what the agent printed on stderr; raises if it did not exit 0.
    """
    kubeconfig = kubeconfig or cluster.agent_kubeconfig(node.name)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = agent_cli.main(["--once", "--topology-file", str(node.path), "--kubeconfig", str(kubeconfig),
                             "--node-name", node.name, "--no-allocation", "--health-port", "0",
                             "--log-level", "WARNING"])
    if rc != 0:
        raise AssertionError(f"agent for {node.name} exited {rc}: {err.getvalue()}")
    return err.getvalue()
