"""The agent's desired state as a pure function: what each probe outcome and carrier state implies.

Machines are real corpus topologies; every expectation follows docs/labels.md "Status" and
docs/agent.md (the allocation carrier), not the code's output.
"""

from __future__ import annotations

import pytest
from agent_support import machine

from labeler.agent.desired import Hardware, configmap_metadata, desired_node
from labeler.agent.patch import NodeMeta, plan_patch
from labeler.topology import allocation, carrier, labels

P = "gputopo.io/"
ALLOC = P + allocation.ANNOTATION_SUFFIX
STATUS, REASON = P + labels.STATUS, P + labels.ANNOTATION_STATUS_REASON
DGX = machine("dgx1-v100")
STATE = allocation.AllocationState(frozenset({0, 1, 2, 3}), {4: "ns/a", 5: "ns/a", 6: "ns/b", 7: "ns/b"}, 1_700_000_000)


def published(status: labels.Status = labels.Status.OK) -> NodeMeta:
    """What a previous healthy run left on the Node (labels, annotation, allocation), plus a foreign label."""
    lab = {"kubernetes.io/hostname": "n1", **labels.encode(DGX, prefix=P, status=status)}
    ann = {**labels.encode_annotations(DGX, prefix=P), ALLOC: allocation.encode(STATE)}
    return NodeMeta(lab, ann, "41")


def test_a_good_probe_publishes_the_topology_and_the_allocation() -> None:
    d = desired_node(NodeMeta(), Hardware(DGX, labels.Status.OK, None), STATE, prefix=P)
    assert d.labels == labels.encode(DGX, prefix=P) and d.labels[STATUS] == "ok"
    assert d.annotations == {**labels.encode_annotations(DGX, prefix=P), ALLOC: allocation.encode(STATE)}


def test_the_same_state_again_plans_no_write() -> None:
    """The published allocation says the same with an older ts: kept, so nothing is patched."""
    current = published()
    later = allocation.AllocationState(STATE.free, STATE.used, STATE.observed_at + 60)  # type: ignore[operator]
    d = desired_node(current, Hardware(DGX, labels.Status.OK, None), later, prefix=P, allocation_refresh_s=600)
    assert plan_patch(current, d, P) is None
    # ... until the refresh interval has passed: the allocation is re-stamped (the extender's heartbeat)
    stale = allocation.AllocationState(STATE.free, STATE.used, STATE.observed_at + 600)  # type: ignore[operator]
    d = desired_node(current, Hardware(DGX, labels.Status.OK, None), stale, prefix=P, allocation_refresh_s=600)
    patch = plan_patch(current, d, P)
    assert patch is not None and dict(patch.annotations) == {ALLOC: allocation.encode(stale)}


def test_a_failed_probe_keeps_the_last_good_topology_as_degraded() -> None:
    hw = Hardware(DGX, labels.Status.DEGRADED, "probe failed: NVML_ERROR_UNKNOWN")
    d = desired_node(published(), hw, STATE, prefix=P)
    assert d.labels[STATUS] == "degraded" and d.labels[P + labels.GPU_COUNT] == "8"
    assert d.annotations[REASON] == "probe failed: NVML_ERROR_UNKNOWN"


@pytest.mark.parametrize(("hw_status", "expected"), [(labels.Status.DEGRADED, "degraded"),
                                                      (labels.Status.ERROR, "error")])
def test_before_the_first_good_probe_an_earlier_runs_labels_are_kept(hw_status: labels.Status,
                                                                      expected: str) -> None:
    """A restarted agent whose first probe fails keeps what the node carries, with the new status."""
    current = published()
    d = desired_node(current, Hardware(None, hw_status, "no NVIDIA GPU found"), None, prefix=P)
    kept = {k: v for k, v in current.labels.items() if k.startswith(P) and k != STATUS}
    assert {k: v for k, v in d.labels.items() if k != STATUS} == kept and d.labels[STATUS] == expected
    assert d.annotations[REASON] == "no NVIDIA GPU found"
    assert d.annotations[ALLOC] == current.annotations[ALLOC]  # the extender's only allocation: kept
    assert "kubernetes.io/hostname" not in d.labels  # never a foreign key


def test_damaged_labels_are_removed_and_the_node_says_error() -> None:
    current = published()
    lab = dict(current.labels)
    lab[P + labels.GPU_COUNT] = "eight"
    d = desired_node(NodeMeta(lab, current.annotations), Hardware(None, labels.Status.DEGRADED, "probe failed"),
                     None, prefix=P)
    assert d.labels == labels.status_labels(labels.Status.ERROR, prefix=P)
    assert d.annotations[REASON].startswith("probe failed; damaged gputopo labels removed")


def test_nothing_on_the_node_and_no_probe_yet_is_error() -> None:
    d = desired_node(NodeMeta(), Hardware(None, labels.Status.ERROR, "not probed yet"), None, prefix=P)
    assert d.labels == labels.status_labels(labels.Status.ERROR, prefix=P)
    assert d.annotations == {REASON: "not probed yet"}


def test_a_failing_allocation_carrier_shows_on_the_node() -> None:
    """ConfigMap writes refused: the node says degraded with the reason, and keeps its old annotation."""
    current = published()
    hw = Hardware(DGX, labels.Status.OK, None)
    d = desired_node(current, hw, STATE, prefix=P, allocation_on_node=False, alloc_error="403 Forbidden")
    assert d.labels[STATUS] == "degraded" and d.annotations[REASON] == "allocation not published: 403 Forbidden"
    assert d.annotations[ALLOC] == current.annotations[ALLOC]
    # once the carrier works again, an annotation we own but no longer carry on the Node is removed
    d = desired_node(current, hw, STATE, prefix=P, allocation_on_node=False)
    patch = plan_patch(current, d, P)
    assert patch is not None and dict(patch.annotations) == {ALLOC: None} and not patch.labels


def test_configmap_metadata_names_its_node() -> None:
    lab, ann = configmap_metadata("gpu-node-1")
    assert lab == {carrier.MANAGED_BY_LABEL: carrier.MANAGED_BY_VALUE, carrier.NODE_KEY: "gpu-node-1"} and ann == {}
    long_name = "n" * 100  # longer than a label value may be: the full name goes to an annotation
    lab, ann = configmap_metadata(long_name)
    assert lab[carrier.NODE_KEY] != long_name and ann == {carrier.NODE_KEY: long_name}
