"""Filter and prioritize over Nodes built from REAL corpus topologies, scores worked out by hand.

Weights (policy/scoring/__init__.py), columns single/inference/multi/distributed:
level 0/5/8/6, fit 6/3/2/1, pack 4/2/0/0, nic 0/0/0/2, affinity 0/0/0/2.
Level table: nvlink 10, pix 8, pxb 7, phb 5, node 3, sys 1.
fit = 10·k/s (s = free GPUs of the island the set comes from), pack = 10·(total-(free-k))/total,
nic = 10·(GPUs with a NIC at ≤PXB)/k; all rounded half up. Final = round_half_up(Σw·s / Σw).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ext_support import PREFIX, corpus, filter_body, make_service, node_object, pod

from policy import scoring
from policy.workload import Kind

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


# (case id, corpus, free GPUs or None=all, k, pod labels, expected score, hand computation)
CASES = [
    # rtx4090 all SYS, plain 2-GPU pod (multi): level sys 1; fit 2/8=2.5→3; (8·1+2·3)/10=1.4 → 1
    ("rtx4090-k2", "rtx4090", None, 2, {}, 1),
    # H100 NV18 board, all free: level 10; fit 2/8→3; (80+6)/10=8.6 → 9
    ("nv18-k2-empty", "h100_1nic", None, 2, {}, 9),
    # H100 NV18 board, 2 free: level 10; fit 2/2→10; (80+20)/10 → 10 (best fit beats breaking a whole board)
    ("nv18-k2-last-two", "h100_1nic", {3, 6}, 2, {}, 10),
    # NV12 bridge pairs (027), k=2: a pair, level 10; fit 2/2→10 → 10
    ("pairs-k2", "bridge_pairs", None, 2, {}, 10),
    # bridge pairs, k=4: best ring 0-1-2-3 crosses NODE → level 3; fit NODE island 4/4→10; (24+20)/10=4.4 → 4
    ("pairs-k4", "bridge_pairs", None, 4, {}, 4),
    # DGX-1 hybrid cube-mesh, k=4 all free: 0-3 is an NVLink clique → 10; fit 4/8→5; (80+10)/10 → 9
    ("dgx1-k4-empty", "dgx1", None, 4, {}, 9),
    # DGX-1, free {0,1,4,5}: ring 0-1-5-4 is all NVLink → 10; fit 4/4→10 → 10
    ("dgx1-k4-ring", "dgx1", {0, 1, 4, 5}, 4, {}, 10),
    # DGX-1, free {0,1,6,7}: no NVLink ring (0,1↔6,7 are SYS) → sys 1; fit SYS island 4/4→10; (8+20)/10=2.8 → 3
    ("dgx1-k4-broken", "dgx1", {0, 1, 6, 7}, 4, {}, 3),
    # 7 GTX on 2 PCIe switches (3+4 PIX, PHB between), k=2: pix 8; fit 2/3→6.67→7; (64+14)/10=7.8 → 8
    ("gtx-k2", "gtx_pix", None, 2, {}, 8),
    # GTX k=4: the 4-GPU switch, pix 8; fit 4/4 → 10; (64+20)/10=8.4 → 8
    ("gtx-k4", "gtx_pix", None, 4, {}, 8),
    # GTX k=4 with GPU 3 busy: switches 3+3 → crosses PHB 5; fit PHB island 4/6→6.67→7; (40+14)/10=5.4 → 5
    ("gtx-k4-split", "gtx_pix", {0, 1, 2, 4, 5, 6}, 4, {}, 5),
    # single GPU on an idle NV18 board: fit 1/8→1.25→1, pack (8-7)/8→1; (6·1+4·1)/10 → 1
    ("single-idle-board", "h100_1nic", None, 1, {}, 1),
    # single GPU, bridge pairs with GPU 0 busy: GPU 1 is a broken pair → fit 1/1=10; pack 2/8=2.5→3;
    # (60+12)/10=7.2 → 7
    ("single-broken-pair", "bridge_pairs", {1, 2, 3, 4, 5, 6, 7}, 1, {}, 7),
    # single GPU, bridge pairs idle: fit 1/2 → 5, pack 1/8 → 1; (30+4)/10=3.4 → 3
    ("single-idle-pairs", "bridge_pairs", None, 1, {}, 3),
    # PyTorchJob worker (distributed), k=4 on 051 (NV18, PIX NICs on GPUs 0,2,4,6): set 0-3 → nic 2/4 → 5;
    # level 10, fit 4/8→5; affinity abstains (stateless); (60+5+10)/9=8.33 → 8
    ("dist-k4-051", "h100_nv18", None, 4, KF, 8),
    # same worker on 123 (one NIC, SYS to every GPU): nic 0; (60+5+0)/9=7.2 → 7
    ("dist-k4-123", "h100_1nic", None, 4, KF, 7),
    # VMware 4x A100 PCIe, NV12 pairs: k=2 on a fully free pair → level 10, fit 2/2 → 10
    ("vmware-k2", "vmware_pairs", None, 2, {}, 10),
]


@pytest.mark.parametrize(("case", "topo", "free", "k", "labels_", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hand_worked_scores(case: str, topo: str, free: set[int] | None, k: int, labels_: dict[str, str],
                            expected: int) -> None:
    node = node_object("n", corpus(topo), free=free)
    assert prioritize(pod(k, labels_=labels_), [node]) == {"n": expected}, case


def test_tighter_level_and_best_fit_rank_nodes() -> None:
    """One request, mixed hardware: the ranking a 2-GPU pod should see."""
    nodes = [
        node_object("board-last-two", corpus("h100_1nic"), free={3, 6}),
        node_object("board-empty", corpus("h100_1nic")),
        node_object("gtx", corpus("gtx_pix")),
        node_object("rtx", corpus("rtx4090")),
        node_object("full", corpus("rtx4090"), free={5}),
        node_object("cpu-only", None),
    ]
    s = prioritize(pod(2), nodes)
    assert s == {"board-last-two": 10, "board-empty": 9, "gtx": 8, "rtx": 1, "full": 0, "cpu-only": 0}


def test_single_gpu_pods_pack_into_broken_islands() -> None:
    nodes = [
        node_object("idle-pairs", corpus("bridge_pairs")),
        node_object("broken-pair", corpus("bridge_pairs"), free={1, 2, 3, 4, 5, 6, 7}),
        node_object("idle-board", corpus("h100_1nic")),
    ]
    s = prioritize(pod(1), nodes)
    assert s["broken-pair"] > s["idle-pairs"] > s["idle-board"]
    assert s == {"broken-pair": 7, "idle-pairs": 3, "idle-board": 1}


def test_inference_tp2_prefers_an_nvlink_pair_and_packs() -> None:
    """vLLM TP=2 (inference: level 5, fit 3, pack 2).

    idle pairs (027): level 10, fit 2/2=10, pack (8-6)/8=2.5→3 → (50+30+6)/10=8.6 → 9
    half-used pairs, free {4..7}: level 10, fit 10, pack (8-2)/8=7.5→8 → (50+30+16)/10=9.6 → 10
    rtx4090 idle: level 1, fit 2/8→3, pack 3 → (5+9+6)/10=2.0 → 2
    """
    args = ["vllm", "serve", "meta-llama/Llama-3.1-70B", "--tensor-parallel-size", "2"]
    p = pod(2, args=args)
    nodes = [
        node_object("idle", corpus("bridge_pairs")),
        node_object("half", corpus("bridge_pairs"), free={4, 5, 6, 7}),
        node_object("rtx", corpus("rtx4090")),
    ]
    assert prioritize(p, nodes) == {"idle": 9, "half": 10, "rtx": 2}


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


def test_ignore_intent_and_non_gpu_pods() -> None:
    nodes = [node_object("a", corpus("dgx1"), free={0, 1, 6, 7})]
    ign = pod(4, annotations={PREFIX + "placement": "ignore", PREFIX + "max-level": "nvlink"})
    assert run_filter(ign, nodes)["passed"] == ["a"]
    assert prioritize(ign, nodes) == {"a": 0}
    assert prioritize(pod(0), nodes) == {"a": 0}


def test_strategy_subset_changes_the_combination() -> None:
    """Only `level` enabled: the score is the level table value (rtx4090 sys → 1, NV18 → 10)."""
    nodes = [node_object("rtx", corpus("rtx4090")), node_object("nv", corpus("h100_1nic"))]
    assert prioritize(pod(2), nodes, strategies=["level"]) == {"rtx": 1, "nv": 10}


def test_registry_rejects_unknown_names() -> None:
    from labeler.topology.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown scoring strategy"):
        scoring.resolve(["level", "bogus"])
    with pytest.raises(ConfigError, match="duplicate"):
        scoring.resolve(["level", "level"])


def test_weights_table_covers_every_strategy_and_kind() -> None:
    assert set(scoring.WEIGHTS) == set(scoring.STRATEGIES)
    for row in scoring.WEIGHTS.values():
        assert set(row) == set(Kind) and all(w >= 0 for w in row.values())


def test_a_tighter_level_never_scores_lower_for_multi_gpu_pods() -> None:
    """The documented weights claim, checked exhaustively over the table.

    Multi kind (level 8, fit 2). Fit for k ≥ 2 on ≤ 8-GPU boards lies in [3, 10] (10·2/8 → 3).
    For every pair of levels two or more table points apart, the tighter level with the worst
    fit never scores below the looser level with a perfect fit; PIX vs PXB (1 point) may flip.
    """
    from policy.scoring.base import round_half_up
    from policy.scoring.level import LEVEL_SCORES

    w = scoring.WEIGHTS
    wl_, wf = w["level"][Kind.MULTI], w["fit"][Kind.MULTI]

    def combined(level: int, fit: int) -> int:
        return round_half_up((wl_ * level + wf * fit) / (wl_ + wf))

    values = sorted(set(LEVEL_SCORES.values()), reverse=True)
    flips = []
    for a in values:
        for b in values:
            if a > b and combined(a, 3) < combined(b, 10):
                flips.append((a, b))
    assert flips == [(8, 7)]  # only PIX (8) vs PXB (7), as documented
