"""Filter and prioritize over Nodes built from REAL corpus topologies, scores worked out by hand.

The objective (docs/extender.md, "Prioritize"; policy/scoring): for k ≥ 2,
``10 − round_half_up(3·log2(V*/V)) − P`` with V the predicted NCCL busbw of the node's best free k-set,
V* the best V among the request's candidates, P = 0 (the pod fills the node) / 1 (partly used) / 2
(entirely free); for k = 1, ``10 − round_half_up(3·(c − c_min))`` with c = log2 of the best free pair's
busbw (0 without a pair); without whole GPUs, ``round_half_up(10 × allocated / total)``. Clamped to 0..10.

These nodes are ``nvidia-smi topo -m`` text only (no facts v2), so the bandwidth model's values for
unknown facts apply (docs/bandwidth.md): NV# at the slowest generation with that many links (NV1–NV4:
12 GB/s per link, NV12: 20, NV18: 20.6), PCIe Gen3 x16 = 12, P2P on PIX/PXB unknown (through host memory,
sharing the switch uplink), SYS at the socket floor 6. Hand-worked numbers per machine:

- 027 NVLink-bridged pairs: a pair 12 × 20 = 240; 4 GPUs: two pairs joined at NODE, through host memory: 12
- 032 RTX 4090 all SYS: any set 6
- 123 / 051 HGX H100 NV18: any set 18 × 20.6 = 370.8
- 005 DGX-1: a 4-cycle of the cube-mesh always has an NV1 edge: 12; an NV2 pair 24; a SYS pair 6
- 035 GTX (3 + 4 GPUs behind two switches): a pair behind one switch shares its uplink both ways: 12 / 2 = 6;
  a pair across the switches (PHB) 12, the best pair; 4 GPUs, two per switch: 12 / 2 = 6
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from ext_support import PREFIX, corpus, filter_body, make_service, node_object, pod
from hypothesis import given
from hypothesis import strategies as st

from policy import scoring
from policy.scoring import weights
from policy.scoring.base import GroupValue, Rule

KF = {
    "training.kubeflow.org/job-name": "llm",
    "training.kubeflow.org/replica-type": "worker",
    "training.kubeflow.org/replica-index": "0",
}


def prioritize(pod_obj: dict[str, Any], nodes: list[dict[str, Any]], **service_kw: Any) -> dict[str, int]:
    answer = make_service(**service_kw).prioritize(filter_body(pod_obj, nodes))
    assert answer.status == 200
    return {e["Host"]: e["Score"] for e in json.loads(answer.body)}


def run_filter(pod_obj: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    answer = make_service().filter(filter_body(pod_obj, nodes))
    assert answer.status == 200
    out: dict[str, Any] = json.loads(answer.body)
    out["passed"] = [n["metadata"]["name"] for n in out["Nodes"]["items"]]
    return out


# (case id, corpus, free GPUs or None=all, k, pod labels, expected score): one node alone in a request is its own
# best (0 off for bandwidth), so the score is 10 − the island penalty
CASES = [
    ("rtx4090-k2-empty", "rtx4090", None, 2, {}, 8),
    ("nv18-k2-empty", "h100_1nic", None, 2, {}, 8),
    ("nv18-k2-last-two", "h100_1nic", {3, 6}, 2, {}, 10),  # fills the node: 0 off
    ("pairs-k2-partly-used", "bridge_pairs", {2, 3, 4, 5}, 2, {}, 9),
    ("dgx1-k4-ring", "dgx1", {0, 1, 4, 5}, 4, {}, 10),
    ("single-idle-board", "h100_1nic", None, 1, {}, 10),  # c − c_min = 0
    ("dist-k4-051", "h100_nv18", None, 4, KF, 8),
    ("vmware-k2", "vmware_pairs", None, 2, {}, 8),
    ("too-few-free", "dgx1", {0}, 2, {}, 0),
]


@pytest.mark.parametrize(("case", "topo", "free", "k", "labels_", "expected"), CASES, ids=[c[0] for c in CASES])
def test_a_node_alone_scores_ten_minus_its_island_penalty(case: str, topo: str, free: set[int] | None, k: int,
                                                           labels_: dict[str, str], expected: int) -> None:
    node = node_object("n", corpus(topo), free=free)
    assert prioritize(pod(k, labels_=labels_), [node]) == {"n": expected}, case


def test_a_2gpu_pod_on_mixed_hardware() -> None:
    """V* = 370.8 (an NV18 pair). Last two free GPUs of an H100 board: 10; an empty H100 board: 8; the GTX rig's
    best pair 12: 3·log2(370.8 / 12) = 14.85 → 15 off → 0; RTX 4090 6: 17.85 → 18 → 0; one free GPU: 0; a node
    without gputopo data: 0."""
    nodes = [
        node_object("board-last-two", corpus("h100_1nic"), free={3, 6}),
        node_object("board-empty", corpus("h100_1nic")),
        node_object("gtx", corpus("gtx_pix")),
        node_object("rtx", corpus("rtx4090")),
        node_object("full", corpus("rtx4090"), free={5}),
        node_object("cpu-only", None),
    ]
    s = prioritize(pod(2), nodes)
    assert s == {"board-last-two": 10, "board-empty": 8, "gtx": 0, "rtx": 0, "full": 0, "cpu-only": 0}


def test_pcie_boxes_ranked_by_bandwidth() -> None:
    """Without NVLink in the request: V* = 12, the GTX rig's cross-switch pair (empty: 2 off) → 8; RTX 4090 6,
    ×2 below: 3 off, empty: 2 → 5; a DGX-1 with only GPUs 0 and 6 free (a SYS pair, 6): 3 off, filled: 0 → 7."""
    nodes = [node_object("gtx", corpus("gtx_pix")), node_object("rtx", corpus("rtx4090")),
             node_object("dgx", corpus("dgx1"), free={0, 6})]
    assert prioritize(pod(2), nodes) == {"gtx": 8, "rtx": 5, "dgx": 7}


def test_single_gpu_pods_take_the_least_valuable_free_gpus() -> None:
    """c = log2(best free pair): 027 idle or with GPU 0 busy 240 → 7.907; H100 idle 370.8 → 8.534; GTX 12 → 3.585;
    027 with only GPU 7 free: no pair → 0.

    With the lone GPU: c_min = 0, everything else loses ≥ 3 × 3.585 = 10.75 → 11: only the lone GPU scores (10).
    Without it: c_min = 3.585 (GTX 10); 027: 3 × 4.32 = 12.97 → 0; H100 0. Among the 027s and the H100 only:
    c_min = 7.907: both 027 10 (their CPU and memory decide), H100 3 × 0.627 = 1.88 → 2 off → 8."""
    pairs = corpus("bridge_pairs")
    idle, broken = node_object("idle-pairs", pairs), node_object("broken-pair", pairs, free={1, 2, 3, 4, 5, 6, 7})
    board, gtx = node_object("idle-board", corpus("h100_1nic")), node_object("gtx", corpus("gtx_pix"))
    lone = node_object("lone", pairs, free={7})
    assert prioritize(pod(1), [idle, broken, board, gtx, lone]) == {
        "idle-pairs": 0, "broken-pair": 0, "idle-board": 0, "gtx": 0, "lone": 10}
    assert prioritize(pod(1), [idle, broken, board, gtx]) == {
        "idle-pairs": 0, "broken-pair": 0, "idle-board": 0, "gtx": 10}
    assert prioritize(pod(1), [idle, broken, board]) == {"idle-pairs": 10, "broken-pair": 10, "idle-board": 8}


def test_inference_tp2_prefers_an_nvlink_pair_and_packs() -> None:
    """vLLM TP=2 (one node, like any 2-GPU pod): V* = 240 (an NV12 pair). Idle 027: 2 off → 8; 027 with
    {4..7} free: partly used, 1 off → 9 (ties between empty and partly used go to the used one); RTX 4090 6:
    3·log2(40) = 15.97 → 16 off → 0."""
    args = ["vllm", "serve", "meta-llama/Llama-3.1-70B", "--tensor-parallel-size", "2"]
    p = pod(2, args=args)
    nodes = [
        node_object("idle", corpus("bridge_pairs")),
        node_object("half", corpus("bridge_pairs"), free={4, 5, 6, 7}),
        node_object("rtx", corpus("rtx4090")),
    ]
    assert prioritize(p, nodes) == {"idle": 8, "half": 9, "rtx": 0}


def test_filter_required_level_reasons_and_unresolvable() -> None:
    gtx = corpus("gtx_pix")
    nodes = [
        node_object("split", gtx, free={0, 1, 2, 4, 5, 6}),
        node_object("whole", gtx),
        node_object("unlabelled", None),
    ]
    p = pod(4, annotations={PREFIX + "placement": "required", PREFIX + "max-level": "pix"})
    out = run_filter(p, nodes)
    assert out["passed"] == ["whole", "unlabelled"]
    assert out["FailedNodes"] == {"split": "no 4 free GPUs joined through at most a single PCIe bridge"}
    assert out["FailedAndUnresolvableNodes"] == {}
    # 5 GPUs within PXB is impossible on this board even when empty → unresolvable
    p5 = pod(5, annotations={PREFIX + "placement": "required", PREFIX + "max-level": "pxb"})
    out = run_filter(p5, nodes)
    assert out["passed"] == ["unlabelled"]
    assert out["FailedNodes"] == {}
    no5 = "hardware has no 5 GPUs joined through multiple PCIe bridges, without the PCIe host bridge"
    assert out["FailedAndUnresolvableNodes"] == {"split": no5, "whole": no5}


def test_filter_required_without_level_means_the_nodes_own_best() -> None:
    """No max-level: require what the empty node could give (DGX-1: NVLink for 4 GPUs)."""
    dgx = corpus("dgx1")
    nodes = [node_object("ring", dgx, free={0, 1, 4, 5}), node_object("broken", dgx, free={0, 1, 6, 7})]
    out = run_filter(pod(4, annotations={PREFIX + "placement": "required"}), nodes)
    assert out["passed"] == ["ring"]
    assert out["FailedNodes"] == {"broken": "no 4 free GPUs joined through a bonded set of NVLinks"}


def test_filter_preferred_and_count_shortfall_pass() -> None:
    """preferred never drops; a node with fewer free GPUs than k is left to NodeResourcesFit."""
    dgx = corpus("dgx1")
    nodes = [node_object("broken", dgx, free={0, 1, 6, 7}), node_object("short", dgx, free={0})]
    assert run_filter(pod(4), nodes)["passed"] == ["broken", "short"]
    req = pod(4, annotations={PREFIX + "placement": "required", PREFIX + "max-level": "sys"})
    assert run_filter(req, nodes)["passed"] == ["broken", "short"]


def test_fail_open_for_damaged_annotations() -> None:
    dgx = corpus("dgx1")
    damaged = node_object("damaged", dgx, annotations={PREFIX + "topology": '{"v": 1, "gpus": "oops"'})
    bad_alloc = node_object("bad-alloc", dgx, annotations={PREFIX + "allocation": "not json"})
    no_ann = node_object("no-annotation", dgx)
    del no_ann["metadata"]["annotations"][PREFIX + "topology"]
    nodes = [damaged, bad_alloc, no_ann]
    service = make_service()
    req = pod(4, annotations={PREFIX + "placement": "required", PREFIX + "max-level": "nvlink"})
    out = json.loads(service.filter(filter_body(req, nodes)).body)
    assert [n["metadata"]["name"] for n in out["Nodes"]["items"]] == ["damaged", "bad-alloc", "no-annotation"]
    reg = service.metrics.registry
    for reason in ("undecodable_topology", "undecodable_allocation", "no_topology"):
        assert reg.get_sample_value("gputopo_extender_fail_open_total", {"reason": reason}) == 1.0
    assert prioritize(req, nodes) == {"damaged": 0, "bad-alloc": 0, "no-annotation": 0}


def test_invalid_annotations_fall_back_to_preferred_and_are_counted() -> None:
    dgx = corpus("dgx1")
    nodes = [node_object("broken", dgx, free={0, 1, 6, 7})]
    service = make_service()
    bad = pod(4, annotations={PREFIX + "placement": "mandatory", PREFIX + "max-level": "nvlink"})
    out = json.loads(service.filter(filter_body(bad, nodes)).body)
    assert out["Error"] == "" and len(out["Nodes"]["items"]) == 1  # preferred: not dropped
    bad_level = pod(4, annotations={PREFIX + "placement": "required", PREFIX + "max-level": "infiniband"})
    out = json.loads(service.filter(filter_body(bad_level, nodes)).body)
    assert len(out["Nodes"]["items"]) == 1
    assert service.metrics.registry.get_sample_value("gputopo_extender_pod_annotation_problems_total") == 2.0


def test_ignore_intent_and_pods_without_gpus() -> None:
    """placement: ignore scores 0 everywhere; a pod without whole GPUs goes where GPUs are allocated:
    DGX-1 with {0,1,6,7} free: 4 of 8 allocated → 5; a node without gputopo data (no GPU): 10."""
    nodes = [node_object("a", corpus("dgx1"), free={0, 1, 6, 7}), node_object("cpu", None)]
    ign = pod(4, annotations={PREFIX + "placement": "ignore", PREFIX + "max-level": "nvlink"})
    assert run_filter(ign, nodes)["passed"] == ["a", "cpu"]
    assert prioritize(ign, nodes) == {"a": 0, "cpu": 0}
    assert prioritize(pod(0), nodes) == {"a": 5, "cpu": 10}


def test_strategy_subset_changes_the_objective() -> None:
    """Only `bandwidth`: NV18 370.8 → 10, RTX 4090 6 → 18 off → 0, no island term. Only `island`: 10 − 2 for both."""
    nodes = [node_object("rtx", corpus("rtx4090")), node_object("nv", corpus("h100_1nic"))]
    assert prioritize(pod(2), nodes, strategies=["bandwidth"]) == {"rtx": 0, "nv": 10}
    assert prioritize(pod(2), nodes, strategies=["island"]) == {"rtx": 8, "nv": 8}


def test_registry_rejects_unknown_names() -> None:
    from labeler.topology.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown scoring strategy"):
        scoring.resolve(["bandwidth", "level"])  # the link-level table is gone (issue #12)
    with pytest.raises(ConfigError, match="duplicate"):
        scoring.resolve(["island", "island"])


def test_weights_table_is_rendered_in_the_docs_and_the_manifest_uses_its_weight() -> None:
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2]
    assert weights.table_markdown() in (root / "docs" / "extender.md").read_text(encoding="utf-8")
    cm = yaml.safe_load((root / "manifests" / "scheduler" / "configmap.yaml").read_text(encoding="utf-8"))
    (ext,) = yaml.safe_load(cm["data"]["config.yaml"])["extenders"]
    assert ext["weight"] == weights.EXTENDER_WEIGHT


@given(st.floats(1.0, 1000.0), st.floats(1.0, 4.0), st.integers(0, 2), st.integers(0, 2), st.integers(0, 2),
       st.floats(1.0, 5000.0))
def test_twice_the_bandwidth_is_never_outranked(v: float, ratio: float, p_fast: int, p_slow: int, aff: int,
                                               top: float) -> None:
    """For a node with ≥ ×2 the predicted bandwidth of another (same request): a multi-GPU pod's penalties (≤ 2)
    leave it strictly ahead unless both are clamped to 0; a rank's island + affinity (≤ 3) can at most tie it."""
    slow, fast = v, v * (1.0 + ratio) if ratio >= 1.0 else v * 2.0
    ref = max(top, fast)
    scorer = scoring.resolve(list(scoring.DEFAULT_STRATEGIES))
    a = scorer.finish(GroupValue(Rule.MULTI, fast, p_fast), ref)
    b = scorer.finish(GroupValue(Rule.MULTI, slow, 0), ref)
    assert a > b or a == b == 0
    ra = scorer.finish(GroupValue(Rule.RANK, fast, p_fast), ref, aff)
    rb = scorer.finish(GroupValue(Rule.RANK, slow, 0), ref)
    assert ra >= rb
    assert 3 * math.log2(fast / slow) >= 3 - 1e-9 and p_slow >= 0  # the premise
