"""The agent as a real process against the real API server, with the RBAC from manifests/.

``gputopo agent --topology-file`` (HGX H100, NV18 on NVSwitch, 8 NICs in dual-port PIX
pairs on GPUs 0, 2, 4, 6) runs with the agent ServiceAccount's token bound to its
DaemonSet pod on the node, reads the allocation from a kubelet pod-resources socket
served by the test, and must: label its Node (foreign keys intact), create and keep its
allocation ConfigMap, write nothing at steady state, repair an edited label at resync,
and stop on SIGTERM.

Expected labels, worked out from the matrix (docs/labels.md, schema v2): 8 GPUs, all pairs
NV18 → nvlink true, island-nvlink 8; NUMA affinity 0 for GPUs 0-3 and 1 for GPUs 4-7 →
numa-shape "4-4", island-numa 4; GPUs 1, 3, 5, 7 reach a NIC only at NODE → nic-locality
node, gpudirect false.

The agent's token is then used against the ValidatingAdmissionPolicy of manifests/admission,
which the real API server evaluates: another Node, a foreign key, a token without node
binding and another node's ConfigMap are refused; the agent's own writes above passed it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from labeler.topology import allocation, carrier

from .cluster import AGENT_SA, NAMESPACE, Cluster, jwt_claims
from .fleet import CORPUS, create_nodes, node_object
from .kubelet import PodResourcesServer
from .procs import Proc, free_port, wait_for

NODE = "e2e-h100-a"
OTHER = "e2e-h100-b"
TOPOLOGY = CORPUS / "051_h100x8-nv18-8nics-dualport-pix-pairs.txt"
FOREIGN_LABELS = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "example.com/team": "ml-infra"}
FOREIGN_ANNOTATIONS = {"example.com/owner": "platform@example.com"}
RESYNC_S = 10  # the agent's smallest allowed --resync-interval


@pytest.fixture(scope="module")
def agent(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    create_nodes(cluster, [node_object(n, 8, extra_labels=FOREIGN_LABELS, annotations=FOREIGN_ANNOTATIONS)
                           for n in (NODE, OTHER)])
    kubeconfig = cluster.agent_kubeconfig(NODE)
    sock_dir = Path(tmp_path_factory.mktemp("kubelet"))
    health = free_port()
    gputopo = shutil.which("gputopo", path=str(Path(sys.executable).parent)) or "gputopo"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUTOPO_")}
    env.update({"NODE_NAME": NODE, "POD_NAMESPACE": NAMESPACE})  # the DaemonSet's downward-API variables
    with PodResourcesServer(sock_dir / "kubelet.sock") as kubelet:
        proc = Proc("agent", [
            gputopo, "agent", f"--topology-file={TOPOLOGY}", f"--kubeconfig={kubeconfig}",
            f"--podresources-socket={kubelet.socket_path}", "--probe-interval=1", f"--resync-interval={RESYNC_S}",
            "--allocation-interval=0.5", "--allocation-min-interval=0", "--allocation-coalesce=0",
            "--health-host=127.0.0.1", f"--health-port={health}", "--log-level=DEBUG",
        ], cluster.logs / "agent.log", env=env).start()
        cluster.procs["agent"] = proc
        try:
            yield {"proc": proc, "kubelet": kubelet, "kubeconfig": kubeconfig}
        finally:
            cluster.stop("agent")


def _node(cluster: Cluster, name: str = NODE) -> k8s.V1Node:
    return cluster.core.read_node(name)


def _configmap(cluster: Cluster) -> k8s.V1ConfigMap | None:
    try:
        return cluster.core.read_namespaced_config_map(carrier.configmap_name(NODE), NAMESPACE)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def _wait_labelled(cluster: Cluster, proc: Proc) -> k8s.V1Node:
    wait_for("agent labels its node", lambda: (_node(cluster).metadata.labels or {}).get("gputopo.io/status") == "ok",
             60, alive=proc.dead)
    return _node(cluster)


def test_agent_token_is_bound_to_its_node(agent: dict[str, Any]) -> None:
    token = yaml.safe_load(agent["kubeconfig"].read_text())["users"][0]["user"]["token"]
    claims = jwt_claims(token)
    assert claims["sub"] == f"system:serviceaccount:{NAMESPACE}:{AGENT_SA}"
    assert claims["kubernetes.io"]["node"]["name"] == NODE
    assert claims["kubernetes.io"]["pod"]["name"].startswith("gputopo-labeler-")


def test_agent_labels_its_node_and_keeps_foreign_keys(cluster: Cluster, agent: dict[str, Any]) -> None:
    node = _wait_labelled(cluster, agent["proc"])
    got = node.metadata.labels or {}
    expected = {"gpu-count": "8", "nvlink": "true", "island-nvlink": "8", "island-numa": "4", "numa-shape": "4-4",
                "nic-count": "8", "nic-locality": "node", "gpudirect": "false", "status": "ok", "schema": "v2"}
    assert {k: got.get("gputopo.io/" + k) for k in expected} == expected
    assert {k: got.get(k) for k in FOREIGN_LABELS} == FOREIGN_LABELS
    ann = node.metadata.annotations or {}
    assert {k: ann.get(k) for k in FOREIGN_ANNOTATIONS} == FOREIGN_ANNOTATIONS
    assert "gputopo.io/topology" in ann
    other = _node(cluster, OTHER).metadata.labels or {}
    assert not any(k.startswith("gputopo.io/") for k in other), "the agent touched another node"


def test_agent_creates_its_allocation_configmap(cluster: Cluster, agent: dict[str, Any]) -> None:
    wait_for("allocation ConfigMap", lambda: _configmap(cluster) is not None, 60, alive=agent["proc"].dead)
    cm = _configmap(cluster)
    assert cm is not None
    assert allocation.decode((cm.data or {})[carrier.DATA_KEY]).free == frozenset(range(8))
    assert (cm.metadata.labels or {}) == {carrier.MANAGED_BY_LABEL: carrier.MANAGED_BY_VALUE, carrier.NODE_KEY: NODE}
    [owner] = cm.metadata.owner_references or []
    assert (owner.kind, owner.name, owner.uid) == ("Node", NODE, _node(cluster).metadata.uid)


def test_allocation_change_is_published(cluster: Cluster, agent: dict[str, Any]) -> None:
    agent["kubelet"].assign({("ml", "train-0"): [0, 1], ("ml", "infer-1"): [5]})

    def published() -> bool:
        cm = _configmap(cluster)
        state = allocation.decode((cm.data or {})[carrier.DATA_KEY]) if cm else None
        return state is not None and state.used == {0: "ml/train-0", 1: "ml/train-0", 5: "ml/infer-1"}

    wait_for("allocation update", published, 30, alive=agent["proc"].dead)
    cm = _configmap(cluster)
    assert cm is not None
    assert allocation.decode((cm.data or {})[carrier.DATA_KEY]).free == frozenset({2, 3, 4, 6, 7})
    assert "gputopo.io/allocation" not in (_node(cluster).metadata.annotations or {})  # carrier: configmap only


def test_zero_writes_at_steady_state(cluster: Cluster, agent: dict[str, Any]) -> None:
    """Over more than one resync period (and ~12 probes, ~24 allocation polls) nothing is written."""
    _wait_labelled(cluster, agent["proc"])
    time.sleep(2)  # let the allocation change of the previous test settle
    before = (_node(cluster).metadata.resource_version, (_configmap(cluster) or k8s.V1ConfigMap()).metadata)
    node_rv, cm_meta = before
    time.sleep(RESYNC_S + 2)
    assert agent["proc"].dead() is None
    assert _node(cluster).metadata.resource_version == node_rv, "the agent wrote the Node at steady state"
    cm = _configmap(cluster)
    assert cm is not None and cm_meta is not None
    assert cm.metadata.resource_version == cm_meta.resource_version, "the agent rewrote its ConfigMap"


def test_edited_label_is_repaired_at_resync(cluster: Cluster, agent: dict[str, Any]) -> None:
    cluster.core.patch_node(NODE, {"metadata": {"labels": {"gputopo.io/nvlink": "false", "gputopo.io/stray": "x"}}})
    wait_for("repair at resync", lambda: {k: v for k, v in (_node(cluster).metadata.labels or {}).items()
                                          if k in ("gputopo.io/nvlink", "gputopo.io/stray")} == {
        "gputopo.io/nvlink": "true"}, RESYNC_S * 3, alive=agent["proc"].dead)


# -- what the API server lets the agent's token do -----------------------------------------

def _agent_core(agent: dict[str, Any]) -> k8s.CoreV1Api:
    return k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(agent["kubeconfig"])))


def _status(call: Any) -> int:
    try:
        call()
    except ApiException as err:
        return int(err.status)
    return 200


def test_rbac_refuses_everything_but_node_get_patch_and_configmaps(agent: dict[str, Any]) -> None:
    core = _agent_core(agent)
    assert _status(lambda: core.read_node(NODE)) == 200
    assert _status(lambda: core.list_node()) == 403
    assert _status(lambda: core.delete_node(OTHER, dry_run="All")) == 403
    assert _status(lambda: core.list_namespaced_pod(NAMESPACE)) == 403
    assert _status(lambda: core.list_namespaced_config_map(NAMESPACE)) == 403
    assert _status(lambda: core.read_namespaced_secret("x", NAMESPACE)) == 403
    assert _status(lambda: core.create_namespaced_config_map(
        "default", {"metadata": {"name": "x"}})) == 403  # type: ignore[arg-type]


def _forbidden_by_policy(status_and_message: tuple[int, str]) -> bool:
    status, message = status_and_message
    return status == 403 and "gputopo-labeler-own-node" in message


def _call(call: Any) -> tuple[int, str]:
    try:
        call()
    except ApiException as err:
        return int(err.status), str(err.body)
    return 200, ""


# The ValidatingAdmissionPolicy of manifests/admission, evaluated by the real API server on the
# agent's real requests (dry-run: admission runs, nothing is stored).

def test_policy_refuses_a_patch_of_another_node(agent: dict[str, Any]) -> None:
    core = _agent_core(agent)
    assert _forbidden_by_policy(_call(lambda: core.patch_node(
        OTHER, {"metadata": {"labels": {"gputopo.io/status": "ok"}}}, dry_run="All")))


def test_policy_refuses_a_key_outside_our_prefix(agent: dict[str, Any]) -> None:
    core = _agent_core(agent)
    assert _forbidden_by_policy(_call(lambda: core.patch_node(
        NODE, {"metadata": {"labels": {"example.com/team": "hijacked"}}}, dry_run="All")))
    assert _forbidden_by_policy(_call(lambda: core.patch_node(NODE, {"spec": {"unschedulable": True}}, dry_run="All")))
    # ... while a key under our prefix on its own node passes admission
    assert _call(lambda: core.patch_node(NODE, {"metadata": {"labels": {"gputopo.io/probe": "x"}}},
                                         dry_run="All"))[0] == 200


def test_policy_refuses_a_token_without_node_binding(cluster: Cluster, agent: dict[str, Any]) -> None:
    """A token of the agent's ServiceAccount not bound to a pod on a node (``kubectl create token``)."""
    unbound = cluster.sa_kubeconfig(AGENT_SA)
    core = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=str(unbound)))
    assert _forbidden_by_policy(_call(lambda: core.patch_node(
        NODE, {"metadata": {"labels": {"gputopo.io/probe": "x"}}}, dry_run="All")))


def test_policy_refuses_another_nodes_configmap(cluster: Cluster, agent: dict[str, Any]) -> None:
    """The agent's Role may patch ANY ConfigMap in its namespace, e.g. another node's allocation."""
    name = carrier.configmap_name(OTHER)
    try:  # what OTHER's agent would have written
        cluster.core.create_namespaced_config_map(NAMESPACE, {  # type: ignore[arg-type]
            "metadata": {"name": name, "labels": {carrier.MANAGED_BY_LABEL: carrier.MANAGED_BY_VALUE,
                                                  carrier.NODE_KEY: OTHER}},
            "data": {carrier.DATA_KEY: allocation.encode(allocation.AllocationState(frozenset(range(8))))}})
    except ApiException as err:
        if err.status != 409:
            raise
    core = _agent_core(agent)
    assert _forbidden_by_policy(_call(lambda: core.patch_namespaced_config_map(
        name, NAMESPACE, {"data": {carrier.DATA_KEY: allocation.encode(allocation.AllocationState(frozenset()))}},
        dry_run="All")))


def test_agent_stops_on_sigterm(cluster: Cluster, agent: dict[str, Any]) -> None:
    t0 = time.monotonic()
    rc = cluster.stop("agent")
    assert rc == 0
    assert time.monotonic() - t0 < 10
