"""The extender/scheduler manifests agree with each other, with the protocol and with the code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from ext_support import PREFIX

from extender.settings import load
from policy import workload as wl

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def one(folder: str, kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for p in sorted((MANIFESTS / folder).glob("*.yaml")) for d in docs(p)
             if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, (folder, kind, name, len(found))
    return found[0]


def scheduler_config() -> dict[str, Any]:
    cm = one("scheduler", "ConfigMap")
    return yaml.safe_load(cm["data"]["config.yaml"])


def test_scheduler_config_registers_the_extender_per_protocol_rules() -> None:
    cfg = scheduler_config()
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1"
    assert cfg["kind"] == "KubeSchedulerConfiguration"
    assert [p["schedulerName"] for p in cfg["profiles"]] == ["gputopo-scheduler"]
    (ext,) = cfg["extenders"]
    assert ext["filterVerb"] == "filter" and ext["prioritizeVerb"] == "prioritize"
    assert "bindVerb" not in ext and "preemptVerb" not in ext  # our /bind and /preempt are 404 on purpose
    assert isinstance(ext["weight"], int) and ext["weight"] > 0  # validateExtenders
    # no managedResources: every pod of the profile reaches the extender (CPU-only pods are scored too)
    assert "managedResources" not in ext
    assert ext["ignorable"] is True and ext["httpTimeout"].endswith("s")
    assert not ext["urlPrefix"].endswith("/")
    # the URL points at our Service and its port
    svc = one("extender", "Service")
    port = svc["spec"]["ports"][0]["port"]
    assert ext["urlPrefix"] == f"http://{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc:{port}"
    assert cfg["leaderElection"]["resourceName"] == "gputopo-scheduler"


def test_node_cache_capable_matches_the_extender_mode() -> None:
    (ext,) = scheduler_config()["extenders"]
    dep = one("extender", "Deployment")
    (container,) = dep["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["gputopo", "extender"]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert (args["mode"] == "cached") is ext["nodeCacheCapable"]
    env = {e["name"]: e["value"] for e in container.get("env", [])}
    # every flag the Deployment passes is a valid setting (flag --a-b is the field a_b)
    settings = load(**{k.replace("-", "_"): v for k, v in args.items()},
                    locality_keys=env["GPUTOPO_EXTENDER_LOCALITY_KEYS"].split(","))
    assert settings.port == container["ports"][0]["containerPort"]
    # cached mode receives node names only: the Deployment must not widen the body limit to the
    # stateless mode's 64 MiB (a few hostile requests could then hold hundreds of MiB)
    assert settings.mode == "cached" and settings.body_limit <= 8 * 1024 * 1024
    probes = {container["readinessProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"]}
    assert probes == {"/readyz", "/healthz"}


def test_extender_rbac_is_read_only_nodes_and_pods() -> None:
    """List and watch only: the informers never get an object by name (no `get`)."""
    role = one("extender", "ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["list", "watch"]}]
    binding = one("extender", "ClusterRoleBinding")
    sa = one("extender", "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]
    # allocation ConfigMaps: read-only, only in the namespace the extender watches by default
    role = one("extender", "Role")
    assert role["metadata"]["namespace"] == load().allocation_namespace
    assert role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "watch"]}]
    rb = one("extender", "RoleBinding")
    assert rb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert rb["subjects"] == binding["subjects"]


def test_scheduler_rbac_and_config_mount() -> None:
    refs = {d["roleRef"]["name"] for d in docs(MANIFESTS / "scheduler" / "rbac.yaml") if "roleRef" in d}
    assert {"gputopo-scheduler", "system:volume-scheduler", "extension-apiserver-authentication-reader",
            "gputopo-scheduler-leader-election"} <= refs
    lease = one("scheduler", "Role")
    assert any(r.get("resourceNames") == ["gputopo-scheduler"] for r in lease["rules"])
    dep = one("scheduler", "Deployment")
    spec = dep["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "gputopo-scheduler"
    (c,) = spec["containers"]
    # the version make e2e builds and runs this configuration on (hack/kube/go.mod), not an older one
    gomod = (MANIFESTS.parent / "hack" / "kube" / "go.mod").read_text(encoding="utf-8")
    (tested,) = [line.split()[1] for line in gomod.splitlines() if line.strip().startswith("k8s.io/kubernetes v")]
    assert c["image"] == f"registry.k8s.io/kube-scheduler:{tested}"
    cm = one("scheduler", "ConfigMap")
    mount = next(m for m in c["volumeMounts"] if m["name"] == "config")
    assert f"--config={mount['mountPath']}/config.yaml" in c["command"]
    assert next(v for v in spec["volumes"] if v["name"] == "config")["configMap"]["name"] == cm["metadata"]["name"]


def _pod_templates() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((MANIFESTS / "examples").glob("*.yaml")):
        for d in docs(path):
            if d["kind"] == "PyTorchJob":
                for rtype, spec in d["spec"]["pytorchReplicaSpecs"].items():
                    tmpl = spec["template"]
                    tmpl.setdefault("metadata", {})["labels"] = {
                        "training.kubeflow.org/job-name": d["metadata"]["name"],
                        "training.kubeflow.org/replica-type": rtype.lower(),
                        "training.kubeflow.org/replica-index": "0",
                    }
                    out.append((f"{path.name}:{rtype}", tmpl))
            elif d["kind"] in ("Deployment", "Job"):
                out.append((path.name, d["spec"]["template"]))
    return out


def test_example_workloads_parse_as_intended() -> None:
    got = {name: wl.parse(t, prefix=PREFIX) for name, t in _pod_templates()}
    job = got["pytorchjob-2x4.yaml:Worker"]
    assert job.gpus == 4 and job.kind is wl.Kind.DISTRIBUTED and job.intent is wl.Intent.REQUIRED
    assert job.max_level is not None and job.max_level.slug == "nvlink" and not job.problems
    vllm = got["vllm-tp2.yaml"]
    assert vllm.gpus == 2 and vllm.kind is wl.Kind.INFERENCE and vllm.tensor_parallel == 2 and not vllm.problems
    plain = got["labels-only-affinity.yaml"]
    assert plain.gpus == 4 and plain.intent is wl.Intent.PREFERRED
    templates = dict(_pod_templates())
    assert templates["pytorchjob-2x4.yaml:Worker"]["spec"]["schedulerName"] == "gputopo-scheduler"
    assert templates["vllm-tp2.yaml"]["spec"]["schedulerName"] == "gputopo-scheduler"
    assert "schedulerName" not in templates["labels-only-affinity.yaml"]["spec"]


def test_labels_only_example_uses_real_label_keys() -> None:
    from labeler.topology import labels

    tmpl = dict(_pod_templates())["labels-only-affinity.yaml"]
    na = tmpl["spec"]["affinity"]["nodeAffinity"]
    keys = [e["key"] for t in na["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            for e in t["matchExpressions"]]
    keys += [e["key"] for p in na["preferredDuringSchedulingIgnoredDuringExecution"]
             for e in p["preference"]["matchExpressions"]]
    ours = {PREFIX + k for k in labels.LABEL_KEYS}
    assert keys and all(k in ours for k in keys)
