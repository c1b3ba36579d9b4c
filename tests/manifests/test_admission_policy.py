"""The labeler's ValidatingAdmissionPolicy, evaluated with a CEL evaluator against AdmissionRequests.

Each case is an API request someone could send (the agent, a stolen agent token,
the kubelet, an administrator) with the objects the API server would hand to
admission, and the verdict worked out from what the policy is for (only the
agent's own Node, only our keys on it, only its own allocation ConfigMap) --
never from running the expression. ``expected`` names the validations that must
deny (an empty set: allowed). The table in docs/reliability.md is this list.

The harness (``vap_eval.py``) mimics the API server's evaluation procedure; a
real kube-apiserver runs the same policy in the end-to-end suite.
"""

from __future__ import annotations

import copy
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from vap_eval import Decision, Policy, admission_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
from fake_kube_api import json_merge_patch, realistic_gpu_node

from labeler.topology import carrier, labels

ROOT = Path(__file__).resolve().parents[2] / "manifests"
POLICY_FILE = ROOT / "admission" / "labeler-policy.yaml"
BINDING_FILE = ROOT / "admission" / "labeler-policy-binding.yaml"
VALIDATIONS = ["node-binding", "main-resource", "operation", "own-node", "spec", "status", "node-metadata",
               "labels", "annotations", "cm-namespace", "cm-name", "cm-node-key"]

NS = "gputopo-system"
AGENT = f"system:serviceaccount:{NS}:gputopo-labeler"
N1, N2 = "gpu-node-1", "gpu-node-2"
P = "gputopo.io/"
NODE_KEY = "authentication.kubernetes.io/node-name"


def _policy_doc() -> dict[str, Any]:
    (doc,) = [d for d in yaml.safe_load_all(POLICY_FILE.read_text(encoding="utf-8")) if d]
    return dict(doc)


POLICY = Policy(_policy_doc(), VALIDATIONS)


def claims(node: str | None) -> dict[str, list[str]]:
    """userInfo.extra of a pod-bound token as the API server's authenticator fills it (1.30+)."""
    if node is None:
        return {}
    return {"authentication.kubernetes.io/pod-name": ["gputopo-labeler-x7k2p"],
            "authentication.kubernetes.io/pod-uid": ["0b8a3f5e-1111-4222-8333-444455556666"],
            "authentication.kubernetes.io/credential-id": ["JTI=2d2b7f1c-5555-4666-8777-888899990000"],
            NODE_KEY: [node], "authentication.kubernetes.io/node-uid": ["6f1c2d3e-0000-4000-8000-000000000001"]}


# -- objects as admission sees them -------------------------------------------------------------------------
def node(name: str = N1) -> dict[str, Any]:
    """A real-shaped GPU Node that already carries our labels and annotations."""
    n = realistic_gpu_node(name)
    n["metadata"]["resourceVersion"] = "4711"
    n["metadata"]["labels"].update({P + "schema": "v1", P + "status": "ok", P + "gpu-count": "8"})
    n["metadata"]["annotations"].update({P + "topology": '{"v":1}'})
    n["spec"]["taints"] = [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]
    return n


def patched(old: dict[str, Any], patch: dict[str, Any], *, manager: str = "gputopo-agent",
            operation: str = "Update") -> dict[str, Any]:
    """What a merge patch (or an apply) yields at validating admission: the patched object, with the
    managedFields entry the server's field manager adds, and status reset as the Node registry does."""
    new = json_merge_patch(copy.deepcopy(old), patch)
    new["metadata"]["managedFields"] = [*old["metadata"].get("managedFields", []),
                                        {"manager": manager, "operation": operation, "apiVersion": "v1",
                                         "time": "2026-11-23T12:05:00Z", "fieldsType": "FieldsV1",
                                         "fieldsV1": {"f:metadata": {}}}]
    return new


def cm(name: str = carrier.configmap_name(N1), *, node_name: str = N1, namespace: str = NS,
       label: str | None = None, annotation: str | None = None) -> dict[str, Any]:
    labels_ = {carrier.MANAGED_BY_LABEL: carrier.MANAGED_BY_VALUE,
               carrier.NODE_KEY: label if label is not None else carrier.node_label_value(node_name)}
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels_,
                            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name,
                                                 "uid": "6f1c2d3e-0000-4000-8000-000000000001"}]}
    if annotation is not None:
        meta["annotations"] = {carrier.NODE_KEY: annotation}
    elif carrier.node_label_value(node_name) != node_name:
        meta["annotations"] = {carrier.NODE_KEY: node_name}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {carrier.DATA_KEY: '{"free":"0-7","ts":1700000000,"used":{},"v":1}'}}


# -- the cases -----------------------------------------------------------------------------------------------
Case = tuple[str, Callable[[], tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]], set[str]]


def node_update(patch: dict[str, Any], *, target: str = N1, user: str = AGENT, bound: str | None = N1,
                extra: dict[str, list[str]] | None = None, subresource: str = "", dry_run: bool = False,
                manager_op: str = "Update"):  # type: ignore[no-untyped-def]
    def build() -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
        old = node(target)
        new = patched(old, patch, operation=manager_op)
        if subresource != "status":
            new["status"] = copy.deepcopy(old["status"]) if "status" not in patch else new["status"]
        req = admission_request(operation="UPDATE", resource="nodes", subresource=subresource, name=target,
                                username=user, extra=claims(bound) if extra is None else extra, dry_run=dry_run)
        return req, new, old
    return build


def cm_request(operation: str, new: dict[str, Any] | None, old: dict[str, Any] | None, *, namespace: str = NS,
               user: str = AGENT, bound: str | None = N1, name: str | None = None):  # type: ignore[no-untyped-def]
    def build() -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
        obj = new if new is not None else old
        assert obj is not None
        req = admission_request(operation=operation, resource="configmaps", namespace=namespace, username=user,
                                name=obj["metadata"]["name"] if name is None else name, extra=claims(bound))
        return req, new, old
    return build


OURS = {"metadata": {"labels": {P + "status": "degraded", P + "island-nvlink": "8", P + "gpu-count": None},
                     "annotations": {P + "status-reason": "GPU3 lost", P + "topology": None},
                     "resourceVersion": "4711"}}
LONG = "n" * 98 + "-1"             # 100 characters: label value h-<sha256>, annotation = full name
TOO_LONG = "n" * 243 + "-1"        # 245 characters: the ConfigMap name is cut and hashed

CASES: list[Case] = [
    # the agent on gpu-node-1, its own Node
    ("own node: add, change, remove our labels and annotations", node_update(OURS), set()),
    ("own node: server-side apply of our keys (admission sees UPDATE)",
     node_update({"metadata": {"labels": {P + "status": "ok"}}}, manager_op="Apply"), set()),
    ("own node: a no-op patch", node_update({"metadata": {}}), set()),
    ("own node: change a foreign label (kubernetes.io/hostname)",
     node_update({"metadata": {"labels": {"kubernetes.io/hostname": "evil"}}}), {"labels"}),
    ("own node: add a foreign label",
     node_update({"metadata": {"labels": {"node-role.kubernetes.io/control-plane": ""}}}), {"labels"}),
    ("own node: remove a foreign label", node_update({"metadata": {"labels": {"nvidia.com/gpu.present": None}}}),
     {"labels"}),
    ("own node: a look-alike key gputopo.io.evil.com/x",
     node_update({"metadata": {"labels": {"gputopo.io.evil.com/x": "1"}}}), {"labels"}),
    ("own node: change a foreign annotation", node_update({"metadata": {"annotations": {
        "node.alpha.kubernetes.io/ttl": "30"}}}), {"annotations"}),
    ("own node: remove a foreign annotation", node_update({"metadata": {"annotations": {
        "csi.volume.kubernetes.io/nodeid": None}}}), {"annotations"}),
    ("own node: our keys plus one foreign label", node_update({"metadata": {"labels": {
        P + "status": "ok", "topology.kubernetes.io/zone": "us-east-1b"}}}), {"labels"}),
    ("own node: remove a taint (spec)", node_update({"spec": {"taints": None}}), {"spec"}),
    ("own node: cordon (spec.unschedulable)", node_update({"spec": {"unschedulable": True}}), {"spec"}),
    ("own node: status through the main resource", node_update({"status": {"capacity": {"nvidia.com/gpu": "0"}}}),
     {"status"}),
    ("own node: PATCH nodes/status", node_update({"status": {"capacity": {"nvidia.com/gpu": "0"}}},
                                                 subresource="status"), {"main-resource", "status"}),
    ("own node: add an ownerReference", node_update({"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "Namespace", "name": "x", "uid": "1"}]}}), {"node-metadata"}),
    ("own node: add a finalizer", node_update({"metadata": {"finalizers": ["example.com/hold"]}}),
     {"node-metadata"}),
    ("own node: dry-run of a foreign label", node_update({"metadata": {"labels": {"a.io/b": "c"}}}, dry_run=True),
     {"labels"}),
    ("other node: our keys only", node_update(OURS, target=N2), {"own-node"}),
    ("other node: a foreign label", node_update({"metadata": {"labels": {"a.io/b": "c"}}}, target=N2),
     {"own-node", "labels"}),
    ("no node claim (unbound token): our keys", node_update(OURS, bound=None), {"node-binding", "own-node"}),
    ("two node claims", node_update(OURS, extra={NODE_KEY: [N1, N2]}), {"node-binding", "own-node"}),
    ("own node: DELETE", lambda: (admission_request(operation="DELETE", resource="nodes", name=N1, username=AGENT,
                                                    extra=claims(N1)), None, node()), {"operation"}),
    ("CREATE a Node named like its own", lambda: (admission_request(operation="CREATE", resource="nodes", name=N1,
                                                                    username=AGENT, extra=claims(N1)), node(), None),
     {"operation"}),
    ("CONNECT nodes/proxy of its own node", lambda: (admission_request(
        operation="CONNECT", resource="nodes", subresource="proxy", name=N1, username=AGENT, extra=claims(N1),
        kind="NodeProxyOptions"), {"kind": "NodeProxyOptions", "apiVersion": "v1", "path": "/"}, None),
     {"main-resource", "operation", "own-node"}),
    # its allocation ConfigMap
    ("own ConfigMap: CREATE", cm_request("CREATE", cm(), None), set()),
    ("own ConfigMap: UPDATE (merge patch)", cm_request("UPDATE", cm(), cm()), set()),
    ("own ConfigMap: server-side apply create (admission sees CREATE)", cm_request("CREATE", cm(), None), set()),
    ("own ConfigMap: DELETE", cm_request("DELETE", None, cm()), {"operation"}),
    ("another node's ConfigMap: CREATE", cm_request("CREATE", cm(carrier.configmap_name(N2), node_name=N2), None),
     {"cm-name", "cm-node-key"}),
    ("another node's ConfigMap: UPDATE", cm_request("UPDATE", cm(carrier.configmap_name(N2), node_name=N2),
                                                    cm(carrier.configmap_name(N2), node_name=N2)),
     {"cm-name", "cm-node-key"}),
    ("own name, another namespace", cm_request("UPDATE", cm(namespace="kube-system"), cm(namespace="kube-system"),
                                               namespace="kube-system"), {"cm-namespace"}),
    ("the scheduler's configuration", cm_request("UPDATE", {"metadata": {"name": "gputopo-scheduler-config",
                                                                         "namespace": NS}, "data": {}},
                                                 {"metadata": {"name": "gputopo-scheduler-config", "namespace": NS},
                                                  "data": {}}), {"cm-name"}),
    ("generateName gputopo-alloc-gpu-node-1-", cm_request(
        "CREATE", {**cm(), "metadata": {**cm()["metadata"], "generateName": "gputopo-alloc-gpu-node-1-",
                                        "name": "gputopo-alloc-gpu-node-1-x7k2p"}}, None, name=""), {"cm-name"}),
    ("own ConfigMap speaking for another node (label)", cm_request("UPDATE", cm(label=N2), cm()), {"cm-node-key"}),
    ("own ConfigMap speaking for another node (annotation)", cm_request("UPDATE", cm(annotation=N2), cm()),
     {"cm-node-key"}),
    ("own ConfigMap, no node claim", cm_request("CREATE", cm(), None, bound=None),
     {"node-binding", "cm-name", "cm-node-key"}),
    ("own ConfigMap of a 100-character node name (label h-<sha256>)",
     cm_request("CREATE", cm(carrier.configmap_name(LONG), node_name=LONG), None, bound=LONG), set()),
    ("own ConfigMap of a 245-character node name (hashed name)",
     cm_request("CREATE", cm(carrier.configmap_name(TOO_LONG), node_name=TOO_LONG), None, bound=TOO_LONG),
     {"cm-name"}),
]

#: requests the policy must not touch at all (matchConditions false, or outside matchConstraints)
NOT_OURS = [
    ("kubelet updates its Node's status", admission_request(operation="UPDATE", resource="nodes", subresource="status",
                                                            name=N1, username=f"system:node:{N1}",
                                                            groups=["system:nodes"])),
    ("an administrator taints a node", admission_request(operation="UPDATE", resource="nodes", name=N1,
                                                         username="kubernetes-admin", groups=["system:masters"])),
    ("another ServiceAccount whose name ends like ours", admission_request(
        operation="UPDATE", resource="nodes", name=N1, username=f"system:serviceaccount:{NS}:not-gputopo-labeler",
        extra=claims(N1))),
    ("a user (not a ServiceAccount) named like ours", admission_request(
        operation="UPDATE", resource="nodes", name=N1, username="oidc:team:gputopo-labeler")),
    ("a request without a username", admission_request(operation="UPDATE", resource="nodes", name=N1, username="")),
    ("the agent updating a Secret (not a matched resource; RBAC denies it)", admission_request(
        operation="UPDATE", resource="secrets", name="x", namespace=NS, username=AGENT, extra=claims(N1))),
]


@pytest.mark.parametrize(("what", "build", "expected"), CASES, ids=[c[0] for c in CASES])
def test_policy_case(what: str, build: Callable[..., Any], expected: set[str]) -> None:
    request, obj, old = build()
    decision = POLICY.evaluate(request, obj, old)
    assert decision.matched, what
    assert decision.errors == (), f"{what}: CEL errors {decision.errors}"
    assert set(decision.failed) == expected, f"{what}: denied by {decision.failed}, expected {sorted(expected)}"
    assert decision.allowed == (not expected)
    assert all(m.startswith("the gputopo agent") for m in decision.messages), decision.messages


def test_denials_name_what_was_wrong() -> None:
    _, build, _ = next(c for c in CASES if c[0] == "own node: change a foreign label (kubernetes.io/hostname)")
    assert POLICY.evaluate(*build()).messages == (
        "the gputopo agent may change only labels under gputopo.io/, not kubernetes.io/hostname",)
    _, build, _ = next(c for c in CASES if c[0] == "another node's ConfigMap: CREATE")
    assert "may write only ConfigMap gputopo-alloc-gpu-node-1, not gputopo-alloc-gpu-node-2" in \
        POLICY.evaluate(*build()).messages[0]
    _, build, _ = next(c for c in CASES if c[0] == "other node: our keys only")
    assert POLICY.evaluate(*build()).messages == (
        "the gputopo agent of node gpu-node-1 may not change node gpu-node-2",)


@pytest.mark.parametrize(("what", "request_"), NOT_OURS, ids=[c[0] for c in NOT_OURS])
def test_policy_does_not_apply(what: str, request_: dict[str, Any]) -> None:
    decision = POLICY.evaluate(request_, node(), node())
    assert decision == Decision(False, True), what


def test_changed_prefix_is_one_documented_edit() -> None:
    """docs/agent.md: with GPUTOPO_PREFIX=example.com/gpu- replace variables[0] (a JSON 6902 patch)."""
    doc = _policy_doc()
    assert doc["spec"]["variables"][0] == {"name": "prefix", "expression": "'gputopo.io/'"}
    doc["spec"]["variables"][0]["expression"] = "'example.com/gpu-'"
    other = Policy(doc, VALIDATIONS)
    mine = node_update({"metadata": {"labels": {"example.com/gpu-status": "ok"}}})()
    assert other.evaluate(*mine).allowed
    old_prefix = node_update({"metadata": {"labels": {P + "status": "degraded"}}})()
    assert other.evaluate(*old_prefix).failed == ("labels",)


def test_policy_agrees_with_the_code_and_the_other_manifests() -> None:
    """The literals in the CEL are the ones the agent and the manifests use."""
    text = POLICY_FILE.read_text(encoding="utf-8")
    spec = _policy_doc()["spec"]
    assert spec["variables"][0]["expression"] == repr(labels.DEFAULT_PREFIX)
    assert f"'{carrier.CONFIGMAP_PREFIX}' + variables.node" in text
    assert text.count(f"'{carrier.NODE_KEY}'") == 5
    (sa,) = yaml.safe_load_all((ROOT / "labeler" / "serviceaccount.yaml").read_text(encoding="utf-8"))
    assert f":{sa['metadata']['name']}'" in spec["matchConditions"][0]["expression"]
    assert f":{sa['metadata']['name']}'" in next(v for v in spec["variables"] if v["name"] == "agentUser")["expression"]
    (ds,) = [d for d in yaml.safe_load_all((ROOT / "labeler" / "daemonset.yaml").read_text(encoding="utf-8"))
             if d["kind"] == "DaemonSet"]
    env = {e["name"] for e in ds["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "GPUTOPO_PREFIX" not in env  # the default prefix, which the policy carries
    assert spec["failurePolicy"] == "Fail"
    (binding,) = yaml.safe_load_all(BINDING_FILE.read_text(encoding="utf-8"))
    assert binding["spec"] == {"policyName": "gputopo-labeler-own-node", "validationActions": ["Deny"]}
    assert _policy_doc()["metadata"]["name"] == binding["spec"]["policyName"]


def test_every_write_the_agent_makes_is_allowed() -> None:
    """Run the real agent against the in-test API server and put each of its writes through the policy."""
    from agent_support import kube_api, machine
    from fake_kube_api import FakeKubeApi
    from test_agent_loop import Clock, Pods, ScriptedProber, run_for

    from labeler.agent.configmap import KubeConfigMapPublisher
    from labeler.agent.loop import Agent, LoopConfig
    from labeler.agent.publish import KubeNodePublisher
    from labeler.agent.settings import AgentSettings

    defaults = AgentSettings.model_construct()
    from labeler.topology.errors import ProbeError

    checked = 0
    for which in ("configmap", "annotation", "both"):
        api = FakeKubeApi()
        api.add_node(realistic_gpu_node(N1))
        api.modify(N1, lambda n: n["metadata"]["labels"].update({P + "stale-key": "x"}))  # ours, to be removed
        history: list[tuple[str, dict[str, Any]]] = []
        with api:
            clock = Clock()
            pods = Pods()
            cm_pub = None if which == "annotation" else KubeConfigMapPublisher(kube_api(api.url), N1, NS)
            prober = ScriptedProber(machine("h100-nv18-8nics"), ProbeError("NVML gone"), machine("h100-nv18-8nics"))
            config = LoopConfig.from_settings(defaults, prefix=P, allocation_on_node=which != "configmap",
                                              probe_interval_s=60.0)
            agent = Agent(config,
                          prober, KubeNodePublisher(kube_api(api.url), N1, P, sleep=lambda s: None),
                          pods, allocation_publisher=cm_pub, clock=clock, wall_clock=lambda c=clock: 1.7e9 + c.t)
            state = {"node": api.node(N1), "cm": None}
            for step in range(4):
                pods.used_map[step] = f"ml/job-{step}"
                run_for(agent, clock, 65.0)
            history = [(r.method + " " + r.path.split("?")[0], r.json()) for r in api.writes()]
        assert len(history) >= 4
        for what, body in history:
            if "/configmaps" in what:
                old = state["cm"]
                new = body if old is None else json_merge_patch(copy.deepcopy(old), body)
                request, obj, prev = cm_request("CREATE" if old is None else "UPDATE", new, old)()
                state["cm"] = new
            else:
                old = state["node"]
                new = patched(old, body)
                request, obj, prev = node_update(body)()
                obj, prev = new, old
                state["node"] = new
            decision = POLICY.evaluate(request, obj, prev)
            assert decision.allowed and not decision.errors, f"{which}: {what} {json.dumps(body)[:200]}: {decision}"
            checked += 1
    assert checked >= 12


def test_the_harness_catches_an_unguarded_field() -> None:
    """A policy that reads an absent ``request`` field errors on a real server (failurePolicy Fail: deny);
    the harness must see that too, or the "no CEL errors" assertions above would prove nothing."""
    doc = _policy_doc()
    var = next(v for v in doc["spec"]["variables"] if v["name"] == "isMainResource")
    var["expression"] = "request.subResource == ''"  # subResource is omitempty: absent on main-resource requests
    broken = Policy(doc, VALIDATIONS)
    decision = broken.evaluate(*node_update(OURS)())
    assert not decision.allowed and "main-resource" in decision.failed
    assert any("isMainResource" in e for e in decision.errors)
