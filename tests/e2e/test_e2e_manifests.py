"""manifests/ applied for real: ``kubectl apply -k`` (server-side, strict field validation).

The module's cluster fixture already applied ``manifests/overlays/default``; here every
rendered object must exist on the server, the ``nonroot`` and ``tls`` overlays and the example workloads
that need no CRD must pass a server-side dry run, and the ServiceAccounts' RBAC must grant
what each component needs and nothing the docs say it lacks (asked with
SubjectAccessReview through ``kubectl auth can-i``). Pods never run: there is no kubelet.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from .cluster import AGENT_SA, EXTENDER_SA, NAMESPACE, SCHEDULER_NAMESPACE, SCHEDULER_SA, Cluster
from .kubebin import REPO


def test_every_object_of_the_default_overlay_exists(cluster: Cluster) -> None:
    rendered = cluster.render("manifests/overlays/default")
    kinds = {d["kind"] for d in rendered}
    assert {"Namespace", "DaemonSet", "Deployment", "ConfigMap", "ClusterRole", "Role"} <= kinds
    listed = cluster.kubectl("get", "-f", "-", "-o", "name", input_text=yaml.safe_dump_all(rendered)).stdout.split()
    assert len(listed) == len(rendered)


def test_reapplying_changes_nothing(cluster: Cluster) -> None:
    lines = cluster.apply_manifests()
    assert lines and all(line.endswith("serverside-applied") for line in lines)
    diff = cluster.kubectl("diff", "--server-side", "--field-manager=gputopo-e2e", "-k",
                           str(cluster.workdir.parents[2] / "manifests/overlays/default"), check=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr  # 0: no differences, 1: differences


@pytest.mark.parametrize("overlay", ["nonroot", "tls"])
def test_other_overlays_are_accepted(cluster: Cluster, overlay: str) -> None:
    lines = cluster.apply_manifests(f"manifests/overlays/{overlay}", dry_run=True)
    assert any("daemonset.apps/gputopo-labeler" in line for line in lines)
    assert all("(server dry run)" in line for line in lines)


@pytest.mark.parametrize(("path", "namespace"), [
    ("manifests/examples/vllm-tp2.yaml", "inference"),
    ("manifests/examples/labels-only-affinity.yaml", "ml-team"),
])
def test_example_workloads_are_accepted(cluster: Cluster, path: str, namespace: str) -> None:
    """pytorchjob-2x4.yaml needs the Kubeflow Training Operator's CRD, which is not ours to install."""
    cluster.ensure_namespace(namespace)
    out = cluster.kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict",
                          "-f", str(cluster.workdir.parents[2] / path)).stdout
    assert "serverside-applied (server dry run)" in out


_CAN = {
    AGENT_SA: [("get", "nodes"), ("patch", "nodes"), ("create", "configmaps"), ("patch", "configmaps")],
    EXTENDER_SA: [("list", "nodes"), ("watch", "pods"), ("watch", "configmaps")],
    SCHEDULER_SA: [("create", "pods/binding"), ("create", "events.events.k8s.io"), ("list", "nodes"),
                   ("update", "leases.coordination.k8s.io/gputopo-scheduler")],
}
_CANNOT = {
    AGENT_SA: [("list", "nodes"), ("watch", "nodes"), ("delete", "nodes"), ("list", "configmaps"), ("get", "secrets"),
               ("create", "pods")],
    EXTENDER_SA: [("patch", "nodes"), ("create", "pods/binding"), ("get", "secrets"), ("update", "configmaps"),
                  ("get", "nodes"), ("get", "configmaps")],  # list + watch only: its informers get nothing by name
    SCHEDULER_SA: [("update", "leases.coordination.k8s.io/other"), ("get", "secrets"), ("patch", "nodes")],
}


@pytest.mark.parametrize(("sa", "verb", "resource", "allowed"),
                         [(sa, v, r, True) for sa, rules in _CAN.items() for v, r in rules]
                         + [(sa, v, r, False) for sa, rules in _CANNOT.items() for v, r in rules])
def test_rbac(cluster: Cluster, sa: str, verb: str, resource: str, allowed: bool) -> None:
    resource, _, sub = resource.partition("/") if resource.startswith("pods/") else (resource, "", "")
    ns = SCHEDULER_NAMESPACE if sa == SCHEDULER_SA else NAMESPACE  # each asked in its own namespace
    out = cluster.kubectl("auth", "can-i", verb, resource, *([f"--subresource={sub}"] if sub else []),
                          "-n", ns, f"--as=system:serviceaccount:{ns}:{sa}", check=False)
    assert out.stdout.strip() == ("yes" if allowed else "no"), out.stdout + out.stderr


def test_agent_cannot_touch_the_scheduler_configuration(cluster: Cluster) -> None:
    """The scheduler's configuration and Lease live apart from the agents' ConfigMaps (their Role allows any)."""
    for verb in ("patch", "update", "create"):
        for resource in ("configmaps", "leases.coordination.k8s.io"):
            out = cluster.kubectl("auth", "can-i", verb, resource, "-n", SCHEDULER_NAMESPACE,
                                  f"--as=system:serviceaccount:{NAMESPACE}:{AGENT_SA}", check=False)
            assert out.stdout.strip() == "no", (verb, resource)


def _lease(name: str, holder: str) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15}}


def test_the_scheduler_cannot_touch_the_default_schedulers_lease(cluster: Cluster) -> None:
    """With the scheduler's own ServiceAccount token: kube-system/kube-scheduler is out of its reach.

    Before (system:kube-scheduler bound cluster-wide, as the Kubernetes docs' multi-scheduler recipe
    does) it could read and update that Lease, i.e. take over the default scheduler's leadership,
    and create Leases in any namespace; its own Lease works as before.
    """
    coordination = k8s.CoordinationV1Api(cluster.api)
    try:  # the default scheduler's Lease, as it holds it
        coordination.create_namespaced_lease("kube-system", _lease("kube-scheduler", "default-scheduler_1"))  # type: ignore[arg-type]
    except ApiException as err:
        if err.status != 409:
            raise
    api = k8s_config.new_client_from_config(config_file=str(cluster.sa_kubeconfig(SCHEDULER_SA, SCHEDULER_NAMESPACE)))
    as_scheduler = k8s.CoordinationV1Api(api)
    for call in (
        lambda: as_scheduler.read_namespaced_lease("kube-scheduler", "kube-system"),
        lambda: as_scheduler.replace_namespaced_lease("kube-scheduler", "kube-system", _lease(  # type: ignore[arg-type]
            "kube-scheduler", "gputopo-scheduler_1")),
        lambda: as_scheduler.patch_namespaced_lease("kube-scheduler", "kube-system",
                                                    {"spec": {"holderIdentity": "gputopo-scheduler_1"}}),
        lambda: as_scheduler.create_namespaced_lease("kube-system", _lease("gputopo-scheduler", "x")),  # type: ignore[arg-type]
    ):
        with pytest.raises(ApiException) as err:
            call()
        assert err.value.status == 403, err.value
    held = coordination.read_namespaced_lease("kube-scheduler", "kube-system")
    assert held.spec.holder_identity == "default-scheduler_1"
    # its own Lease (leaderElection.resourceName/resourceNamespace) it may create and renew
    try:
        as_scheduler.create_namespaced_lease(SCHEDULER_NAMESPACE, _lease("gputopo-scheduler", "e2e_1"))  # type: ignore[arg-type]
    except ApiException as err:
        if err.status != 409:
            raise
    own = as_scheduler.read_namespaced_lease("gputopo-scheduler", SCHEDULER_NAMESPACE)
    own.spec.holder_identity = "e2e_2"
    assert as_scheduler.replace_namespaced_lease("gputopo-scheduler", SCHEDULER_NAMESPACE, own).spec.holder_identity \
        == "e2e_2"
    coordination.delete_namespaced_lease("gputopo-scheduler", SCHEDULER_NAMESPACE)


def _triples(rules: list[dict[str, Any]]) -> set[tuple[str, str, str, str]]:
    """(apiGroup, resource, verb, resourceName or "*") of each grant."""
    return {(g, r, v, n) for rule in rules for g in rule.get("apiGroups") or [] for r in rule.get("resources") or []
            for v in rule.get("verbs") or [] for n in rule.get("resourceNames") or ["*"]}


def test_the_scheduler_role_is_the_built_in_one_without_leader_election(cluster: Cluster) -> None:
    """manifests/scheduler/rbac.yaml's ClusterRole = this server's system:kube-scheduler minus Leases.

    A Kubernetes version whose kube-scheduler needs more (a new plugin's informer) changes the
    built-in role; this test then fails here rather than a scheduler in a cluster.
    """
    rbac = k8s.RbacAuthorizationV1Api(cluster.api)
    builtin = cluster.api.sanitize_for_serialization(rbac.read_cluster_role("system:kube-scheduler"))["rules"]
    ours = cluster.api.sanitize_for_serialization(rbac.read_cluster_role("gputopo-scheduler"))["rules"]
    election = {t for t in _triples(builtin) if t[1] in ("leases", "leasecandidates")}
    assert election and {t[1] for t in election} == {"leases", "leasecandidates"}  # what is left out
    assert _triples(ours) == _triples(builtin) - election


def test_the_network_policies_are_stored_as_written(cluster: Cluster) -> None:
    """The API server validates and stores both policies (applied with the overlay) exactly as rendered:
    the agents' metrics rule (namespace opt-in label, kube-prometheus's Prometheus pods) and the
    extender's scheduler-only rule. No CNI runs here, so what they admit is checked offline
    (tests/manifests/test_security_manifests.py); that they mean the same on a server is checked here."""
    out = cluster.kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict",
                          "--field-manager=gputopo-e2e", "-f", str(REPO / "manifests/labeler/networkpolicy.yaml"),
                          "-f", str(REPO / "manifests/extender/networkpolicy.yaml")).stdout
    assert out.count("serverside-applied (server dry run)") == 2, out
    net = k8s.NetworkingV1Api(cluster.api)
    for path in ("manifests/labeler/networkpolicy.yaml", "manifests/extender/networkpolicy.yaml"):
        (want,) = [d for d in yaml.safe_load_all((REPO / path).read_text()) if d]
        got = cluster.api.sanitize_for_serialization(
            net.read_namespaced_network_policy(want["metadata"]["name"], want["metadata"]["namespace"]))
        assert got["spec"] == want["spec"], path
