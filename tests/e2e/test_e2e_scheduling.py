"""The stock kube-scheduler with the gputopo extender places GPU pods on 42 fake nodes.

Fleet (tests/e2e/scenario.py): gb200 ×2 (4 GPUs on NVSwitch), pairs8 ×8 (8 GPUs in four
NV12 bridge pairs), a100pcie4 ×8 and nv4pairs ×4 (4 GPUs in two NVLink pairs, SYS between),
gtx7 ×4 (7 GPUs behind two PCIe switches, 3 + 4), rtx4090 ×10 and a10x4 ×6 (no P2P: SYS).
Identical machines are interchangeable, so an expectation names a class (and the scheduler's
random tie-break picks the machine); which GPUs follows from the device plugin's best-effort
policy with free GPUs offered in index order (tests/e2e/standin.py).

Expected values, worked out by hand from docs/extender.md ("Prioritize": the objective, extender
weight 10, so one point is 100 in the scheduler's total) and the shipped configuration's in-tree
scores (MostAllocated over cpu and nvidia.com/gpu, BalancedAllocation over cpu, memory and
nvidia.com/gpu; every node 128 CPUs, 1024 Gi; Go's integer arithmetic, as simulator.kubesched
computes it), and docs/device-plugin.md. Bandwidths are the model's from text alone
(docs/bandwidth.md): NV12 = 12 × 20 = 240, NV4 = 4 × 12 = 48; a SYS pair 6 (the socket link of an
unknown CPU); on gtx7 (P2P unknown: staged through host memory) a pair under one switch shares its
uplink, 12 / 2 = 6, and a pair across the two switches gets each GPU's link, 12.

* PyTorchJob 2 × 4 GPUs, ``required`` + ``nvlink``: only a 4-GPU NVLink ring passes the
  filter; pairs nodes have NV pairs joined by NODE/SYS, PCIe/SYS boards have no NVLink; so
  only the two GB200 trays pass, one worker each, all four GPUs (0, 1, 2, 3).
* vLLM TP=2 (8 CPUs, 64 Gi), ``required`` + ``pxb``: the SYS boards fail the filter. Best pair:
  pairs8 and a100pcie4 240 (V*), nv4pairs 48 (3·log2 5 = 6.97 → 7 points off), gtx7 12 (12.97 → 13).
  Every node is empty (island 2): pairs8 and a100pcie4 8, nv4pairs 1, gtx7 0. Between the 8s the
  resources decide: MostAllocated a100pcie4 (6 + 50) / 2 = 28, pairs8 (6 + 25) / 2 = 15; Balanced
  79 and 91: a100pcie4 107 against 106. The plugin's pair there: the first of two equal NVLink
  pairs, (0, 1). Replica 1: that node's other pair is 240 and fills it (island 0): 10, every
  other pair node 8: the same node, (2, 3).
* 1-GPU notebook pods (4 CPUs, 32 Gi) take the least valuable free GPUs: the best free pair is 6
  on rtx4090 and a10x4 (the least, c_min = log2 6: 10 points), 12 on gtx7 (3 off: 7), 48 on
  nv4pairs (9 off: 1), 240 on pairs8 and a100pcie4 (15.97 → 16 off: 0). Between the 10s the
  resources decide: MostAllocated a10x4 (3 + 25) / 2 = 14, rtx4090 (3 + 12) / 2 = 7; Balanced 89
  and 95: a10x4 103 against 102. The
  plugin gives a 1-GPU request the lowest free index: GPU 0. The second pod: that a10x4's best
  free pair is still 6 (10 like every SYS box); MostAllocated 28 and Balanced 79 make it 107
  against 103 for an empty a10x4: the same node, GPU 1.
* 8 GPUs ``required`` + ``nvlink``: no node has an 8-GPU NVLink ring (pairs8 and rtx4090 are
  the only free 8-GPU boards), so the pod stays Pending and the scheduler's FailedScheduling
  event carries the extender's reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from .cluster import SCHEDULER_USER, Cluster, requests_of
from .kubebin import REPO
from .procs import wait_for
from .scenario import Scenario, class_of, notebook_pod, pytorch_worker, start_scenario, vllm_pod

RESULTS = REPO / "out" / "e2e-results"


@pytest.fixture(scope="module")
def scenario(cluster: Cluster) -> Iterator[Scenario]:
    s = start_scenario(cluster)
    yield s
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scheduling.json").write_text(json.dumps(s.placements, indent=2))


def test_fleet_is_labelled_by_its_agents(scenario: Scenario) -> None:
    nodes = scenario.cluster.core.list_node(label_selector="gputopo.io/status=ok").items
    assert len(nodes) == len(scenario.nodes) == 42
    classes = {class_of(n.metadata.name): n.metadata.labels["gputopo.io/topology-class"] for n in nodes}
    assert len(set(classes.values())) == 7
    per_node = {n.metadata.name: n.metadata.labels["gputopo.io/topology-class"] for n in nodes}
    assert all(per_node[n] == classes[class_of(n)] for n in per_node)


def test_pytorchjob_workers_each_get_a_whole_gb200_tray(scenario: Scenario) -> None:
    keys = [scenario.create(pytorch_worker("llm-pretrain", i)) for i in range(2)]  # the operator creates both
    placed = scenario.wait_placed(*keys)
    assert sorted(a.node for a in placed) == ["gb200-0", "gb200-1"]
    assert [a.gpus for a in placed] == [(0, 1, 2, 3), (0, 1, 2, 3)]


def test_vllm_tp2_replicas_get_nvlink_pairs(scenario: Scenario) -> None:
    [first] = scenario.wait_placed(scenario.create(vllm_pod("llama-70b-tp2-6d5f7c9b8-x2kqn")))
    assert class_of(first.node) == "a100pcie4" and first.gpus == (0, 1), first
    [second] = scenario.wait_placed(scenario.create(vllm_pod("llama-70b-tp2-6d5f7c9b8-m7wzt")))
    assert (second.node, second.gpus) == (first.node, (2, 3))  # the node's other pair fills it


def test_single_gpu_pods_take_the_least_valuable_gpus_and_pack(scenario: Scenario) -> None:
    [first] = scenario.wait_placed(scenario.create(notebook_pod("notebook-0")))
    assert class_of(first.node) == "a10x4" and first.gpus == (0,), first
    [second] = scenario.wait_placed(scenario.create(notebook_pod("notebook-1")))
    assert (second.node, second.gpus) == (first.node, (1,))


def test_required_pod_nothing_can_host_stays_pending_with_our_reason(scenario: Scenario) -> None:
    # the unresolvable reason, the same string for every node that has no such set even when idle
    reason = "hardware has no 8 GPUs joined through a bonded set of NVLinks"
    pod = notebook_pod("needs-8-nvlink", gpus=8)
    pod["metadata"]["annotations"] = {"gputopo.io/placement": "required", "gputopo.io/max-level": "nvlink"}
    key = scenario.create(pod)
    messages: list[str] = []

    def refused() -> bool:
        messages[:] = list(scenario.events(key, "FailedScheduling"))
        return any(reason in m for m in messages)

    wait_for("FailedScheduling with the extender's reason", refused, 60)
    assert scenario.node_of(key) is None
    message = next(m for m in messages if reason in m)  # the unresolvable reason: no preemption can help
    assert "no 8 free GPUs" not in message  # no node could do it even empty
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "failed-scheduling.txt").write_text(message + "\n")


def test_stand_in_published_every_allocation(scenario: Scenario) -> None:
    """Each used node's ConfigMap (written with its agent's token) lists exactly the stand-in's GPUs."""
    from labeler.topology import allocation, carrier

    by_node: dict[str, dict[int, str]] = {}
    for key, a in scenario.standin.allocations.items():
        for g in a.gpus:
            by_node.setdefault(a.node, {})[g] = key
    for node, used in by_node.items():
        cm = scenario.cluster.core.read_namespaced_config_map(carrier.configmap_name(node), "gputopo-system")
        assert allocation.decode(cm.data[carrier.DATA_KEY]).used == used


def test_the_scheduler_rbac_refused_none_of_its_requests(scenario: Scenario) -> None:
    """Least privilege that still works: every request kube-scheduler made as gputopo-scheduler, from
    the API server's audit log, was allowed (manifests/scheduler/rbac.yaml, docs/extender.md)."""
    seen = requests_of(scenario.cluster.audit_events(SCHEDULER_USER))
    refused = {k: v for k, v in seen.items() if "403" in v}
    assert not refused, refused
    assert seen["create core/pods/binding"] == {"201": 6}  # 2 workers, 2 vLLM replicas, 2 notebook pods
    assert "200" in seen["update coordination.k8s.io/leases gputopo-scheduler/gputopo-scheduler"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scheduler-requests.json").write_text(json.dumps(seen, indent=1) + "\n")
