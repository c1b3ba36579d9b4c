"""kubeio.names: the Kubernetes name rules every settings class shares, and that they really share them.

Values are the ones operators type (``POD_NAMESPACE`` from the downward API, a namespace copied with
a capital, a node name from a cloud provider); the expected verdicts follow RFC 1123 as Kubernetes
applies it (namespaces: DNS labels, at most 63; nodes: DNS subdomains, at most 253).
"""

from __future__ import annotations

import pytest

from extender.settings import ExtenderSettings
from gputopo.audit_cluster import AuditClusterSettings
from kubeio import names
from labeler.agent.settings import AgentSettings


@pytest.mark.parametrize(("value", "ok"), [
    ("gputopo-system", True),
    (" gpu-ops\n", True),  # a trailing newline from a mounted file or a heredoc
    ("a" * 63, True),
    ("a" * 64, False),  # one over the DNS label limit
    ("GPU-ops", False),  # capitals are not allowed
    ("-ops", False),
    ("ops-", False),
    ("gpu.ops", False),  # a dot makes it a subdomain, not a label
    ("", False),
])
def test_namespace(value: str, ok: bool) -> None:
    if ok:
        assert names.namespace(value) == value.strip()
    else:
        with pytest.raises(ValueError, match="namespace"):
            names.namespace(value)


@pytest.mark.parametrize(("value", "ok"), [
    ("ip-10-0-12-34.ec2.internal", True),  # AWS
    ("gke-prod-a100-pool-3f2c1b9a-x7k2", True),  # GKE
    ("Bad_Name", False),
    ("node..a", False),
    ("a" * 254, False),
])
def test_node_name(value: str, ok: bool) -> None:
    if ok:
        assert names.node_name(value) == value
    else:
        with pytest.raises(ValueError, match="node name"):
            names.node_name(value)


def test_label_keys_names_the_bad_ones() -> None:
    assert names.label_keys(["topology.kubernetes.io/zone", "gpu-pool"]) == ["topology.kubernetes.io/zone", "gpu-pool"]
    with pytest.raises(ValueError, match="bad key"):
        names.label_keys(["topology.kubernetes.io/zone", "bad key"])


@pytest.mark.parametrize("value", ["GPU-ops", "a" * 64, "gpu.ops"])
def test_agent_extender_and_audit_refuse_the_same_namespaces(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)
    with pytest.raises(ValueError, match="not a valid namespace name") as agent_err:
        AgentSettings(node_name="n1", pod_namespace=value)
    with pytest.raises(ValueError, match="not a valid namespace name") as audit_err:
        AuditClusterSettings(allocation_namespace=value)
    with pytest.raises(ValueError, match="not a valid namespace name") as extender_err:
        ExtenderSettings(allocation_namespace=value)
    msgs = {e.value.errors()[0]["msg"] for e in (agent_err, audit_err, extender_err)}  # type: ignore[attr-defined]
    assert len(msgs) == 1
    assert AgentSettings(node_name="n1", pod_namespace=" gpu-ops ").pod_namespace == "gpu-ops"
    assert AuditClusterSettings(allocation_namespace=" gpu-ops ").allocation_namespace == "gpu-ops"
    assert ExtenderSettings(allocation_namespace=" gpu-ops ").allocation_namespace == "gpu-ops"
