"""plan_patch: pure planning of the one merge patch (table-driven, plus properties)."""

from __future__ import annotations

import json

import pytest
from agent_support import MACHINES, machine
from fake_kube_api import json_merge_patch
from hypothesis import given
from hypothesis import strategies as st

from labeler.agent.patch import Desired, NodeMeta, Patch, plan_patch
from labeler.topology import labels

P = "gputopo.io/"

CASES = [
    # (id, current labels, current annotations, desired labels, desired annotations, expected patch or None)
    ("first-labelling", {"kubernetes.io/hostname": "n1"}, {}, {P + "gpu-count": "8"}, {P + "topology": "{}"},
     {"labels": {P + "gpu-count": "8"}, "annotations": {P + "topology": "{}"}}),
    ("unchanged", {P + "gpu-count": "8", "x.io/a": "1"}, {P + "topology": "{}"}, {P + "gpu-count": "8"},
     {P + "topology": "{}"}, None),
    ("changed-value-only", {P + "gpu-count": "8", P + "nvlink": "true"}, {}, {P + "gpu-count": "7",
     P + "nvlink": "true"}, {}, {"labels": {P + "gpu-count": "7"}}),
    ("stale-owned-removed", {P + "gpu-count": "8", P + "old-key": "x"}, {P + "status-reason": "boom"},
     {P + "gpu-count": "8"}, {}, {"labels": {P + "old-key": None}, "annotations": {P + "status-reason": None}}),
    ("foreign-never-touched", {"nvidia.com/gpu.count": "8", "gputopo.iox/lookalike": "1"},
     {"other.io/a": "b"}, {}, {}, None),
    ("everything-removed", {P + "a": "1"}, {P + "b": "2"}, {}, {}, {"labels": {P + "a": None},
     "annotations": {P + "b": None}}),
]


@pytest.mark.parametrize(("cur_l", "cur_a", "want_l", "want_a", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_plan_table(cur_l: dict[str, str], cur_a: dict[str, str], want_l: dict[str, str], want_a: dict[str, str],
                    expected: dict[str, dict[str, str | None]] | None) -> None:
    patch = plan_patch(NodeMeta(cur_l, cur_a, "42"), (want_l, want_a), P)
    if expected is None:
        assert patch is None
        return
    assert patch is not None
    assert patch.body() == {"metadata": {**expected, "resourceVersion": "42"}}


def test_desired_foreign_key_is_a_bug() -> None:
    with pytest.raises(ValueError, match="not under our prefix"):
        plan_patch(NodeMeta(), ({"nvidia.com/gpu.count": "8"}, {}), P)


def test_custom_prefix_owns_only_its_keys() -> None:
    cur = NodeMeta({P + "gpu-count": "8", "acme.dev/gpu-count": "4"}, {}, "1")
    patch = plan_patch(cur, ({"acme.dev/gpu-count": "8"}, {}), "acme.dev/")
    assert patch is not None and patch.body()["metadata"]["labels"] == {"acme.dev/gpu-count": "8"}


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_real_machine_hardware_change_patches_only_changed_keys(name: str) -> None:
    """Label a real machine, then lose its last GPU: only the keys that differ are in the patch."""
    topo = machine(name)
    lab, ann = labels.encode(topo, prefix=P), labels.encode_annotations(topo, prefix=P)
    node = NodeMeta({"kubernetes.io/hostname": "n", **lab}, {"x.io/y": "z", **ann}, "9")
    assert plan_patch(node, (lab, ann), P) is None
    lab2 = labels.encode(topo, prefix=P, status=labels.Status.DEGRADED)
    patch = plan_patch(node, (lab2, ann), P)
    assert patch is not None and patch.body()["metadata"]["labels"] == {P + "status": "degraded"}
    assert "annotations" not in patch.body()["metadata"]


_key = st.sampled_from([P + s for s in ("a", "b", "c", "status")] + ["x.io/a", "x.io/b", "kubernetes.io/hostname"])
_vals = st.dictionaries(_key, st.sampled_from(["1", "2", "true", ""]), max_size=6)


@given(cur_l=_vals, cur_a=_vals, want_l=_vals, want_a=_vals)
def test_applying_the_plan_reaches_desired_and_keeps_foreign(cur_l: dict[str, str], cur_a: dict[str, str],
                                                           want_l: dict[str, str], want_a: dict[str, str]) -> None:
    """Property: RFC 7386-applying the plan yields exactly desired for our keys and leaves others alone."""
    want_l = {k: v for k, v in want_l.items() if k.startswith(P)}
    want_a = {k: v for k, v in want_a.items() if k.startswith(P)}
    cur = NodeMeta(cur_l, cur_a, "5")
    patch = plan_patch(cur, Desired(want_l, want_a), P)
    node = {"metadata": {"labels": dict(cur_l), "annotations": dict(cur_a)}}
    if patch is None:
        assert {k: v for k, v in cur_l.items() if k.startswith(P)} == want_l
        assert {k: v for k, v in cur_a.items() if k.startswith(P)} == want_a
        return
    body = json.loads(patch.to_json())
    assert all(k.startswith(P) for part in ("labels", "annotations") for k in body["metadata"].get(part, {}))
    after = json_merge_patch(node, body)["metadata"]
    for got, cur_map, want in ((after.get("labels", {}), cur_l, want_l), (after.get("annotations", {}), cur_a, want_a)):
        assert {k: v for k, v in got.items() if k.startswith(P)} == want
        assert {k: v for k, v in got.items() if not k.startswith(P)} == {
            k: v for k, v in cur_map.items() if not k.startswith(P)}
    assert patch.apply_to(cur) == NodeMeta(after.get("labels", {}), after.get("annotations", {}))


def test_patch_body_has_only_nonempty_maps() -> None:
    assert Patch({}, {P + "a": "1"}, None).body() == {"metadata": {"annotations": {P + "a": "1"}}}
