"""Least privilege in manifests/: who can reach what, as the objects say it.

* the scheduler's configuration and Lease live in their own namespace, out of the
  labeler agents' ConfigMap rights; the scheduler's RBAC is the upstream roles and
  its own Lease, nothing that writes ConfigMaps or reads Secrets;
* NetworkPolicies select the pods they mean to (by the pods' real labels and
  named ports) and admit only the scheduler to the extender;
* the extender's probes are sized against its sync timeout;
* the TLS overlay (JSON 6902 patches applied here as kustomize applies them)
  changes exactly the transport: the KubeSchedulerConfiguration differs from
  the default only in the extender's URL scheme, ``enableHTTPS`` and
  ``tlsConfig``, every file it names is mounted from a Secret, and the extender
  gets the three TLS flags for files mounted the same way.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from test_manifests_schema import K8S_VERSIONS, _json_pointer_apply, _resolve

ROOT = Path(__file__).resolve().parents[2] / "manifests"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _one(folder: str, kind: str) -> dict[str, Any]:
    found = [d for p in sorted((ROOT / folder).glob("*.yaml")) for d in _docs(p) if d.get("kind") == kind]
    assert len(found) == 1, (folder, kind, len(found))
    return found[0]


def _overlay(name: str) -> list[dict[str, Any]]:
    return [obj for _, obj in _resolve((ROOT / "overlays" / name).resolve())]


def _scheduler_config(cm: dict[str, Any]) -> dict[str, Any]:
    return dict(yaml.safe_load(cm["data"]["config.yaml"]))


# -- the scheduler, out of the agents' reach ------------------------------------------------------------------
def test_scheduler_lives_in_its_own_namespace() -> None:
    ns = _one("scheduler", "Namespace")
    name = ns["metadata"]["name"]
    assert name != _one("labeler", "ServiceAccount")["metadata"]["namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for path in sorted((ROOT / "scheduler").glob("*.yaml")):
        for d in _docs(path):
            if d["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding", "Kustomization"):
                continue
            want = "kube-system" if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == \
                "extension-apiserver-authentication-reader" else name
            assert d["metadata"]["namespace"] == want, f"{path.name}: {d['kind']} {d['metadata']['name']}"
            for s in d.get("subjects", []):
                assert s["namespace"] == name
    assert _scheduler_config(_one("scheduler", "ConfigMap"))["leaderElection"]["resourceNamespace"] == name


def test_the_agent_can_write_no_configmap_but_in_its_own_namespace() -> None:
    """RBAC: the agent's ConfigMap rights are one namespaced Role; nothing else of the install is a ConfigMap there."""
    agent_ns = _one("labeler", "ServiceAccount")["metadata"]["namespace"]
    role = _one("labeler", "Role")
    assert role["metadata"]["namespace"] == agent_ns
    cluster = _one("labeler", "ClusterRole")
    assert all("configmaps" not in r["resources"] for r in cluster["rules"])
    for overlay in ("default", "nonroot", "tls"):
        cms = [o for o in _overlay(overlay) if o["kind"] == "ConfigMap"]
        assert cms and all(o["metadata"]["namespace"] != agent_ns for o in cms), overlay


def _restricted_pod(spec: dict[str, Any]) -> None:
    """The checks of the "restricted" Pod Security Standard that a Deployment can fail."""
    psc = spec.get("securityContext", {})
    assert psc.get("runAsNonRoot") is True and psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert not (spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"))
    for v in spec.get("volumes", []):
        assert set(v) - {"name"} <= {"configMap", "secret", "emptyDir", "projected", "downwardAPI"}, v
    for c in spec["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert not sc.get("capabilities", {}).get("add") and sc.get("runAsUser", psc.get("runAsUser")) != 0


def test_scheduler_pod_meets_restricted_and_its_rbac_is_minimal() -> None:
    _restricted_pod(_one("scheduler", "Deployment")["spec"]["template"]["spec"])
    rbac = _docs(ROOT / "scheduler" / "rbac.yaml")
    refs = sorted((d["kind"], d["roleRef"]["kind"], d["roleRef"]["name"]) for d in rbac if "roleRef" in d)
    # not system:kube-scheduler: it grants every Lease named kube-scheduler (the default scheduler's)
    assert refs == [("ClusterRoleBinding", "ClusterRole", "gputopo-scheduler"),
                    ("ClusterRoleBinding", "ClusterRole", "system:volume-scheduler"),
                    ("RoleBinding", "Role", "extension-apiserver-authentication-reader"),
                    ("RoleBinding", "Role", "gputopo-scheduler-leader-election")]
    (cluster_role,) = [d for d in rbac if d["kind"] == "ClusterRole"]
    granted = {(g, r, v) for rule in cluster_role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    assert not {r for _, r, _ in granted} & {"leases", "leasecandidates", "secrets", "configmaps", "*"}
    assert not [rule for rule in cluster_role["rules"] if "resourceNames" in rule or "*" in rule["verbs"]]
    writes = {(r, v) for _, r, v in granted if v not in ("get", "list", "watch")}
    assert {r for r, _ in writes} == {"events", "pods", "bindings", "pods/binding", "pods/status", "tokenreviews",
                                      "subjectaccessreviews", "resourceclaims", "resourceclaims/status",
                                      "resourceclaims/binding", "pods/finalizers"}
    (role,) = [d for d in rbac if d["kind"] == "Role"]
    election = _scheduler_config(_one("scheduler", "ConfigMap"))["leaderElection"]
    assert role["metadata"]["namespace"] == election["resourceNamespace"]
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [election["resourceName"]],
         "verbs": ["get", "list", "update", "watch"]}]


# -- NetworkPolicy -----------------------------------------------------------------------------------------------
def test_extender_admits_the_scheduler_to_scheduling_and_scrapers_to_metrics() -> None:
    """Port `http` (/filter, /prioritize): the scheduler only; `http-metrics`: the agents' scrapers, nothing else."""
    pol = _one("extender", "NetworkPolicy")
    dep = _one("extender", "Deployment")
    tmpl_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pol["metadata"]["namespace"] == dep["metadata"]["namespace"]
    assert pol["spec"]["policyTypes"] == ["Ingress"]
    assert pol["spec"]["podSelector"]["matchLabels"].items() <= tmpl_labels.items()
    sched_rule, scrape_rule = pol["spec"]["ingress"]
    (peer,) = sched_rule["from"]
    sched = _one("scheduler", "Deployment")
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": sched["metadata"]["namespace"]}}
    assert peer["podSelector"]["matchLabels"].items() <= sched["spec"]["template"]["metadata"]["labels"].items()
    assert sched_rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    # the metrics port is admitted exactly as the agents' is
    (agents,) = _one("labeler", "NetworkPolicy")["spec"]["ingress"]
    assert scrape_rule == {"from": agents["from"], "ports": [{"port": "http-metrics", "protocol": "TCP"}]}
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert set(ports) == {"http", "http-metrics"}
    assert f"--port={ports['http']}" in c["args"] and f"--metrics-port={ports['http-metrics']}" in c["args"]
    assert all(c[p]["httpGet"]["port"] == "http-metrics" for p in ("startupProbe", "readinessProbe", "livenessProbe"))
    # no other policy of the install admits anything to the extender's pods (policies add up)
    others = _docs(ROOT / "labeler" / "networkpolicy.yaml")
    assert all(not (o["spec"]["podSelector"]["matchLabels"].items() <= tmpl_labels.items()) for o in others)


def test_labeler_admits_only_metrics_scrapers() -> None:
    """The agents' /metrics port, from an opted-in namespace or kube-prometheus's Prometheus; nothing else."""
    pol = _one("labeler", "NetworkPolicy")
    ds = _one("labeler", "DaemonSet")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    assert pol["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert pol["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = pol["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    (port,) = [p for p in c["ports"] if p["name"] == "http-metrics"]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    assert env["GPUTOPO_HEALTH_PORT"] == str(port["containerPort"])  # the port that serves /metrics, only it
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"gputopo.io/metrics-scraper": "true"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
         "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}},
    ]
    # every peer is gated by a namespace label (set by cluster admins), none is empty (= everything)
    assert all(p.get("namespaceSelector", {}).get("matchLabels") for p in rule["from"])
    scrape = ds["spec"]["template"]["metadata"]["annotations"]  # the community chart's annotation discovery
    assert (scrape["prometheus.io/scrape"], scrape["prometheus.io/port"], scrape["prometheus.io/path"]) == (
        "true", str(port["containerPort"]), "/metrics")


def test_the_podmonitor_example_scrapes_what_the_policy_admits() -> None:
    agents, ext = _docs(ROOT / "examples" / "prometheus-podmonitor.yaml")
    for mon, component, workload, rule in ((agents, "labeler", "DaemonSet", 0), (ext, "extender", "Deployment", 1)):
        dep = _one(component, workload)
        assert mon["kind"] == "PodMonitor" and mon["metadata"]["namespace"] == dep["metadata"]["namespace"]
        assert mon["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
        (endpoint,) = mon["spec"]["podMetricsEndpoints"]
        admitted = _one(component, "NetworkPolicy")["spec"]["ingress"][rule]
        assert endpoint["port"] == admitted["ports"][0]["port"] and endpoint["path"] == "/metrics"


# -- probes --------------------------------------------------------------------------------------------------
def test_extender_probes_fit_the_sync_timeout() -> None:
    (c,) = _one("extender", "Deployment")["spec"]["template"]["spec"]["containers"]
    args = dict(a.removeprefix("--").split("=", 1) for a in c["args"])
    sync_timeout = float(args["sync-timeout-seconds"])
    start, ready, live = c["startupProbe"], c["readinessProbe"], c["livenessProbe"]
    assert start["httpGet"]["path"] == live["httpGet"]["path"] == "/healthz"
    assert ready["httpGet"]["path"] == "/readyz"
    # even an extender that listens only after its first sync survives start-up, with margin
    assert start["periodSeconds"] * start["failureThreshold"] >= sync_timeout + 20
    assert "initialDelaySeconds" not in live  # the startup probe holds liveness back instead
    assert live["periodSeconds"] * live["failureThreshold"] >= 30  # a hung event loop, not a slow answer
    assert all(p["timeoutSeconds"] <= p["periodSeconds"] for p in (start, ready, live))


# -- the TLS overlay ----------------------------------------------------------------------------------------
def _patched(kind: str, folder: str, patch: str) -> dict[str, Any]:
    ops = _docs(ROOT / "overlays" / "tls" / patch)[0]
    return dict(_json_pointer_apply(_one(folder, kind), ops))


def _kustomize_targets() -> dict[str, dict[str, Any]]:
    doc = _docs(ROOT / "overlays" / "tls" / "kustomization.yaml")[0]
    return {p["path"]: p["target"] for p in doc["patches"]}


def test_tls_patches_target_the_objects_they_were_written_for() -> None:
    targets = _kustomize_targets()
    for path, (folder, kind) in {"scheduler-config-tls.yaml": ("scheduler", "ConfigMap"),
                                 "scheduler-client-cert.yaml": ("scheduler", "Deployment"),
                                 "extender-tls.yaml": ("extender", "Deployment")}.items():
        obj = _one(folder, kind)
        t = targets[path]
        assert (t["kind"], t["name"]) == (kind, obj["metadata"]["name"]), path
        assert t.get("namespace", obj["metadata"]["namespace"]) == obj["metadata"]["namespace"]


def test_tls_scheduler_config_differs_only_in_transport() -> None:
    base = _scheduler_config(_one("scheduler", "ConfigMap"))
    tls = _scheduler_config(_patched("ConfigMap", "scheduler", "scheduler-config-tls.yaml"))
    (ext,) = tls["extenders"]
    (base_ext,) = base["extenders"]
    assert ext["urlPrefix"] == base_ext["urlPrefix"].replace("http://", "https://", 1)
    assert ext["enableHTTPS"] is True
    svc = _one("extender", "Service")
    assert ext["tlsConfig"]["serverName"] == f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc"
    assert set(ext["tlsConfig"]) == {"serverName", "caFile", "certFile", "keyFile"}  # never `insecure`
    stripped = copy.deepcopy(tls)
    stripped["extenders"][0] = {k: v for k, v in ext.items() if k not in ("enableHTTPS", "tlsConfig")}
    stripped["extenders"][0]["urlPrefix"] = base_ext["urlPrefix"]
    assert stripped == base


def test_tls_scheduler_config_is_generated_from_the_base() -> None:
    """The overlay's copy of the configuration is hack/tls_scheduler_config.py's output for today's base file."""
    import importlib.util

    path = ROOT.parent / "hack" / "tls_scheduler_config.py"
    spec = importlib.util.spec_from_file_location("tls_scheduler_config", path)
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    want = gen.render((ROOT / "scheduler" / "configmap.yaml").read_text(encoding="utf-8"))
    got = (ROOT / "overlays" / "tls" / "scheduler-config-tls.yaml").read_text(encoding="utf-8")
    assert got == want, "stale: run python hack/tls_scheduler_config.py"


def test_tls_files_are_mounted_from_secrets() -> None:
    tls_cfg = _scheduler_config(_patched("ConfigMap", "scheduler", "scheduler-config-tls.yaml"))["extenders"][0]
    sched = _patched("Deployment", "scheduler", "scheduler-client-cert.yaml")
    ext = _patched("Deployment", "extender", "extender-tls.yaml")
    base_ext = _one("extender", "Deployment")
    for dep, files in ((sched, [tls_cfg["tlsConfig"][k] for k in ("caFile", "certFile", "keyFile")]),
                       (ext, [a.split("=", 1)[1] for a in ext["spec"]["template"]["spec"]["containers"][0]["args"]
                              if a.startswith("--tls-")])):
        spec = dep["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        for f in files:
            mount = mounts[str(Path(f).parent)]
            vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            assert "secret" in vol and mount["readOnly"] is True, f
            assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
            assert vol["secret"]["defaultMode"] == 0o440
        _restricted_pod(spec)
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(dep, version, strict=True)
    (c,) = ext["spec"]["template"]["spec"]["containers"]
    assert sorted(a.split("=", 1)[0] for a in c["args"] if a.startswith("--tls-")) == [
        "--tls-cert-file", "--tls-client-ca-file", "--tls-key-file"]
    # probes stay plain HTTP on the metrics port: the kubelet has no client certificate for the TLS port
    assert all(c[p]["httpGet"].get("scheme", "HTTP") == "HTTP" and c[p]["httpGet"]["port"] == "http-metrics"
               for p in ("startupProbe", "readinessProbe", "livenessProbe"))
    # the patch adds the volume lists wholesale: it must not be hiding volumes of the base Deployment
    base_spec = base_ext["spec"]["template"]["spec"]
    assert "volumes" not in base_spec and "volumeMounts" not in base_spec["containers"][0]
    assert c["args"][: len(base_spec["containers"][0]["args"])] == base_spec["containers"][0]["args"]


@pytest.mark.parametrize("overlay", ["tls"])
def test_tls_overlay_resolves(overlay: str) -> None:
    kinds = {o["kind"] for o in _overlay(overlay)}
    assert {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "NetworkPolicy", "Deployment"} <= kinds
