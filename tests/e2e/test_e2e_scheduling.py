"""The stock kube-scheduler with the gputopo extender places GPU pods on 42 fake nodes.

Fleet (tests/e2e/scenario.py): gb200 ×2 (4 GPUs on NVSwitch), pairs8 ×8 (8 GPUs in four
NV12 bridge pairs), a100pcie4 ×8 and nv4pairs ×4 (4 GPUs in two NVLink pairs, SYS between),
gtx7 ×4 (7 GPUs behind two PCIe switches, 3 + 4), rtx4090 ×10 and a10x4 ×6 (no P2P: SYS).
Identical machines are interchangeable, so an expectation names a class (and the scheduler's
random tie-break picks the machine); which GPUs follows from the device plugin's best-effort
policy with free GPUs offered in index order (tests/e2e/standin.py).

Expected values, worked out by hand from docs/extender.md (filter, strategies, weights,
rounding half up; the scheduler adds score × 5 × 10 to ~200 points of in-tree scores that
differ by a few points only between nodes of different load) and docs/device-plugin.md:

* PyTorchJob 2 × 4 GPUs, ``required`` + ``nvlink``: only a 4-GPU NVLink ring passes the
  filter; pairs nodes have NV pairs joined by NODE/SYS, PCIe/SYS boards have no NVLink; so
  only the two GB200 trays pass, one worker each, all four GPUs (0, 1, 2, 3).
* vLLM TP=2, ``required`` + ``pxb`` (inference: level 5, fit 3, pack 2). Empty a100pcie4 /
  nv4pairs: level 10, fit 2/2 → 10, pack 10·(4−2)/4 = 5 → (50+30+10)/10 = 9; empty pairs8:
  pack 10·2/8 = 2.5 → 8.5 → 9; gtx7: PIX 8, fit 2/3, pack 2/7 → 6.6 → 7; SYS boards fail.
  So replica 0 goes to one of the 20 pair nodes. The plugin's pair there: the first of equal
  NVLink pairs, (0, 1), except on nv4pairs where GPUs 2, 3 share a PCIe switch with the NIC
  (PXB: 40 points more than 0–1's NODE) → (2, 3). Replica 1: if replica 0 is on a 4-GPU node,
  its other pair scores 10 (pack 4/4) → same node, other pair; if on pairs8, that node scores
  (50+30+10)/10 = 9 like every empty pair node, and the in-tree spread of CPU/memory
  (8 CPUs, 64 Gi requested) prefers an empty one.
* 1-GPU pods (single: fit 6, pack 4; level abstains). The first goes to a pair node that is
  already used and has the fewest free GPUs (more pack, same fit 1/2), or to an empty pair node
  (score 4) if none is partly used; the plugin gives a 1-GPU request the lowest free index.
  The second must then take the NVLink partner of that GPU on the same node: the orphaned GPU
  is an exact fit (fit 10), which no other node offers.
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
PAIR_CLASSES = {"pairs8", "a100pcie4", "nv4pairs"}
FIRST_PAIR = {"pairs8": (0, 1), "a100pcie4": (0, 1), "nv4pairs": (2, 3)}
OTHER_PAIR = {"a100pcie4": (2, 3), "nv4pairs": (0, 1)}
PARTNER = {"pairs8": {0: 1, 1: 0, 2: 3, 3: 2, 4: 5, 5: 4, 6: 7, 7: 6},
           "a100pcie4": {0: 1, 1: 0, 2: 3, 3: 2}, "nv4pairs": {0: 1, 1: 0, 2: 3, 3: 2}}
GPUS = {"pairs8": 8, "a100pcie4": 4, "nv4pairs": 4}


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
    cls = class_of(first.node)
    assert cls in PAIR_CLASSES, first
    assert first.gpus == FIRST_PAIR[cls]
    [second] = scenario.wait_placed(scenario.create(vllm_pod("llama-70b-tp2-6d5f7c9b8-m7wzt")))
    if cls in OTHER_PAIR:  # the 4-GPU node's other pair is an exact fit that also fills the node
        assert (second.node, second.gpus) == (first.node, OTHER_PAIR[cls])
    else:  # pairs8: every pair node scores 9; the in-tree spread picks an empty one
        assert second.node != first.node and class_of(second.node) in PAIR_CLASSES, second
        assert second.gpus == FIRST_PAIR[class_of(second.node)]


def test_single_gpu_pods_fill_a_broken_pair_first(scenario: Scenario) -> None:
    used: dict[str, int] = {}
    for a in scenario.standin.allocations.values():
        used[a.node] = used.get(a.node, 0) + len(a.gpus)
    partly = {n: GPUS[class_of(n)] - u for n, u in used.items()
              if class_of(n) in PAIR_CLASSES and 0 < u < GPUS[class_of(n)]}
    [first] = scenario.wait_placed(scenario.create(notebook_pod("notebook-0")))
    if partly:
        fewest = min(partly.values())
        assert first.node in {n for n, free in partly.items() if free == fewest}, (first, partly)
    else:
        assert class_of(first.node) in PAIR_CLASSES and first.node not in used, first
    taken = {g for a in scenario.standin.allocations.values() if a.node == first.node for g in a.gpus}
    assert first.gpus == (min(set(range(GPUS[class_of(first.node)])) - (taken - set(first.gpus))),)
    [second] = scenario.wait_placed(scenario.create(notebook_pod("notebook-1")))
    assert (second.node, second.gpus) == (first.node, (PARTNER[class_of(first.node)][first.gpus[0]],))


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
