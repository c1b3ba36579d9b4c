"""Every manifest under manifests/ validated offline, plus the labeler's security properties.

* Each YAML document (all directories, whoever wrote them) is validated against
  the Kubernetes OpenAPI schemas bundled with ``kubernetes-validate``, strictly
  (unknown fields fail), for the Kubernetes versions in ``K8S_VERSIONS``.
* Kustomization files are not API objects: every ``resources``/``patches``/
  generator path they name must exist. JSON 6902 patch files are checked as
  operation lists and applied to the labeler DaemonSet where they target it.
* ``KubeSchedulerConfiguration`` is not served by the API server and has no
  bundled schema; it is validated structurally, also when embedded in a ConfigMap.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2] / "manifests"
K8S_VERSIONS = ("1.33.0", "1.35.0")


def _yaml_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())


def _kustomizations() -> list[Path]:
    return [p for p in _yaml_files() if p.name in ("kustomization.yaml", "kustomization.yml")]


def _load(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def _patch_files() -> set[Path]:
    out: set[Path] = set()
    for k in _kustomizations():
        doc = _load(k)[0]
        for p in doc.get("patches", []) or []:
            if isinstance(p, dict) and "path" in p:
                out.add((k.parent / p["path"]).resolve())
        for p in doc.get("patchesStrategicMerge", []) or []:
            out.add((k.parent / p).resolve())
    return out


def _is_scheduler_config(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("kind") == "KubeSchedulerConfiguration"


def _api_documents() -> list[tuple[str, dict[str, Any]]]:
    patches = _patch_files()
    out = []
    for path in _yaml_files():
        if path in _kustomizations() or path.resolve() in patches:
            continue
        for i, doc in enumerate(_load(path)):
            if not _is_scheduler_config(doc):
                out.append((f"{path.relative_to(ROOT)}#{i}", doc))
    return out


DOCS = _api_documents()


def test_there_are_manifests() -> None:
    assert any(d.get("kind") == "DaemonSet" for _, d in DOCS)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(("where", "doc"), DOCS, ids=[w for w, _ in DOCS])
def test_document_matches_openapi_schema(where: str, doc: dict[str, Any], version: str) -> None:
    assert isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc, f"{where}: not a Kubernetes object"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as err:
        pytest.fail(f"{where} ({doc['kind']}) invalid for Kubernetes {version}: {err.message} at "
                    f"{'/'.join(str(p) for p in err.path)}")
    except kubernetes_validate.SchemaNotFoundError:
        # A custom resource (e.g. Kubeflow's PyTorchJob): no bundled schema. Check what is
        # checkable: it is a named object of a non-core group, and every pod template inside
        # it is a valid PodTemplateSpec.
        group = str(doc["apiVersion"]).rpartition("/")[0]
        assert "." in group and not group.endswith(".k8s.io"), f"{where}: no schema for built-in {doc['kind']}"
        assert doc.get("metadata", {}).get("name"), f"{where}: custom resource without metadata.name"
        templates = list(_pod_templates(doc))
        for path, tpl in templates:
            wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": tpl}
            try:
                kubernetes_validate.validate(wrapper, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{where} {path}: invalid pod template for Kubernetes {version}: {err.message} at "
                            f"{'/'.join(str(p) for p in err.path)}")


def _pod_templates(node: Any, path: str = "") -> Any:
    """(path, PodTemplateSpec) for every ``template`` that holds a pod spec, at any depth."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}/{key}"
            if key == "template" and isinstance(value, dict) and "containers" in (value.get("spec") or {}):
                yield here, value
            else:
                yield from _pod_templates(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _pod_templates(value, f"{path}/{i}")


def _kustomization_refs() -> list[tuple[str, Path, str]]:
    refs = []
    for k in _kustomizations():
        doc = _load(k)[0]
        assert doc.get("kind", "Kustomization") == "Kustomization", k
        named = list(doc.get("resources", []) or []) + list(doc.get("components", []) or [])
        named += [p["path"] for p in doc.get("patches", []) or [] if isinstance(p, dict) and "path" in p]
        named += list(doc.get("patchesStrategicMerge", []) or [])
        for gen in (doc.get("configMapGenerator", []) or []) + (doc.get("secretGenerator", []) or []):
            named += [f.split("=", 1)[-1] for f in gen.get("files", []) or []]
        refs += [(str(k.relative_to(ROOT)), k, r) for r in named]
    return refs


REFS = _kustomization_refs()


@pytest.mark.parametrize(("where", "kfile", "ref"), REFS, ids=[f"{w}->{r}" for w, _, r in REFS])
def test_kustomization_reference_exists(where: str, kfile: Path, ref: str) -> None:
    target = (kfile.parent / ref).resolve()
    assert target.exists(), f"{where}: {ref} does not exist"
    if target.is_dir():
        assert (target / "kustomization.yaml").is_file() or (target / "kustomization.yml").is_file(), (
            f"{where}: {ref} is a directory without kustomization.yaml")


SCHEDULER_CONFIGS: list[tuple[str, dict[str, Any]]] = []
for _path in _yaml_files():
    for _doc in _load(_path):
        if _is_scheduler_config(_doc):
            SCHEDULER_CONFIGS.append((str(_path.relative_to(ROOT)), _doc))
        elif isinstance(_doc, dict) and _doc.get("kind") == "ConfigMap":
            for _key, _val in (_doc.get("data") or {}).items():
                try:
                    _inner = yaml.safe_load(_val)
                except yaml.YAMLError:
                    continue
                if _is_scheduler_config(_inner):
                    SCHEDULER_CONFIGS.append((f"{_path.relative_to(ROOT)}:{_key}", _inner))


@pytest.mark.parametrize(("where", "cfg"), SCHEDULER_CONFIGS, ids=[w for w, _ in SCHEDULER_CONFIGS] or None)
def test_scheduler_configuration_structure(where: str, cfg: dict[str, Any]) -> None:
    assert cfg["apiVersion"] == "kubescheduler.config.k8s.io/v1", where
    known = {"apiVersion", "kind", "profiles", "extenders", "leaderElection", "clientConnection", "parallelism",
             "percentageOfNodesToScore", "podInitialBackoffSeconds", "podMaxBackoffSeconds", "featureGates",
             "healthzBindAddress", "metricsBindAddress", "enableProfiling", "enableContentionProfiling",
             "delayCacheUntilActive"}
    assert set(cfg) <= known, f"{where}: unknown fields {set(cfg) - known}"
    for prof in cfg.get("profiles", []) or []:
        assert isinstance(prof.get("schedulerName", "default-scheduler"), str)
    conn = cfg.get("clientConnection", {})
    assert set(conn) <= {"kubeconfig", "acceptContentTypes", "contentType", "qps", "burst"}, where
    # the defaults (50/100) cap binding at ~50 pods/s (docs/e2e.md, "Throughput"): set both, burst >= qps
    assert isinstance(conn.get("qps"), int | float) and isinstance(conn.get("burst"), int), where
    assert conn["qps"] > 50 and conn["burst"] >= conn["qps"], where
    for ext in cfg.get("extenders", []) or []:
        assert str(ext["urlPrefix"]).startswith(("http://", "https://")), where
        verbs = {"filterVerb", "prioritizeVerb", "preemptVerb", "bindVerb"}
        assert verbs & set(ext), f"{where}: extender has no verb"
        if "prioritizeVerb" in ext:
            assert isinstance(ext.get("weight"), int) and ext["weight"] > 0, f"{where}: prioritize needs weight > 0"
        for res in ext.get("managedResources", []) or []:
            assert set(res) <= {"name", "ignoredByScheduler"}, where
        allowed = {"urlPrefix", "filterVerb", "prioritizeVerb", "preemptVerb", "bindVerb", "weight",
                   "enableHTTPS", "tlsConfig", "httpTimeout", "nodeCacheCapable", "managedResources", "ignorable"}
        assert set(ext) <= allowed, f"{where}: unknown extender fields {set(ext) - allowed}"


# -- the labeler DaemonSet's own properties ---------------------------------------------------------


def _json_pointer_apply(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """Minimal RFC 6902 (add/replace/remove), enough to apply our overlay patches in the test."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif op["op"] in ("add", "replace"):
            if isinstance(parent, list):
                if last == "-":
                    parent.append(op["value"])
                elif op["op"] == "add":
                    parent.insert(int(last), op["value"])
                else:
                    parent[int(last)] = op["value"]
            else:
                assert op["op"] == "add" or last in parent, f"replace of missing {op['path']}"
                parent[last] = op["value"]
        else:
            raise AssertionError(f"unsupported op {op['op']}")
    return doc


def _labeler() -> dict[str, Any]:
    (ds,) = [d for d in _load(ROOT / "labeler" / "daemonset.yaml") if d["kind"] == "DaemonSet"]
    return ds


def _nonroot() -> dict[str, Any]:
    ops = _load(ROOT / "overlays" / "nonroot" / "nonroot-patch.yaml")[0]
    return _json_pointer_apply(_labeler(), ops)


def _common_security(ds: dict[str, Any]) -> None:
    spec = ds["spec"]["template"]["spec"]
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c["securityContext"]
        assert sc.get("privileged") is False
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        for section in ("requests", "limits"):
            assert not any(r.startswith("nvidia.com/") for r in c.get("resources", {}).get(section, {})), (
                "the agent must not consume a GPU")
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
        env = {e["name"]: e for e in c["env"]}
        assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
        assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
        for m in c.get("volumeMounts", []):
            vol = next(v for v in spec["volumes"] if v["name"] == m["name"])
            if "hostPath" in vol:
                assert m.get("readOnly") is True, f"hostPath {vol['hostPath']['path']} must be mounted read-only"
            elif m["mountPath"] != "/tmp":
                raise AssertionError(f"unexpected writable mount {m['mountPath']}")
    assert spec["runtimeClassName"] == "nvidia"
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"


def test_labeler_security_default() -> None:
    ds = _labeler()
    _common_security(ds)
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    sc = c["securityContext"]
    # Documented exception (docs/agent.md): uid 0 with no capabilities, for the root-only kubelet socket.
    if sc.get("runAsNonRoot") is not True:
        assert sc["runAsUser"] == 0 and sc["capabilities"]["drop"] == ["ALL"]
        assert any(m["mountPath"] == "/var/lib/kubelet/pod-resources" for m in c["volumeMounts"])


def test_labeler_security_nonroot_overlay() -> None:
    ds = _nonroot()
    _common_security(ds)
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532 and sc["runAsGroup"] == 65532
    assert {"name": "GPUTOPO_ALLOCATION", "value": "false"} in c["env"]
    assert all(m["mountPath"] != "/var/lib/kubelet/pod-resources" for m in c["volumeMounts"])
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(ds, version, strict=True)


def test_labeler_scheduling_gpu_nodes_only() -> None:
    spec = _labeler()["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    keys = [{e["key"]: e["values"] for e in t["matchExpressions"]} for t in terms]
    assert {"nvidia.com/gpu.present": ["true"]} in keys
    assert {"feature.node.kubernetes.io/pci-10de.present": ["true"]} in keys
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]


def test_rbac_is_least_privilege() -> None:
    (role,) = _load(ROOT / "labeler" / "clusterrole.yaml")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "patch"]}]
    (binding,) = _load(ROOT / "labeler" / "clusterrolebinding.yaml")
    (sa,) = _load(ROOT / "labeler" / "serviceaccount.yaml")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}]
    assert _labeler()["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    # the allocation ConfigMap: a namespaced Role, only in the agent's own namespace, no list/watch/delete
    (ns_role,) = _load(ROOT / "labeler" / "role.yaml")
    assert ns_role["kind"] == "Role" and ns_role["metadata"]["namespace"] == sa["metadata"]["namespace"]
    assert ns_role["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "patch"]}]
    (ns_binding,) = _load(ROOT / "labeler" / "rolebinding.yaml")
    assert ns_binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                     "name": ns_role["metadata"]["name"]}
    assert ns_binding["subjects"] == binding["subjects"]
    env = {e["name"]: e for e in _labeler()["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["GPUTOPO_ALLOCATION_CARRIER"]["value"] in ("configmap", "annotation", "both")


def test_namespace_pod_security_labels() -> None:
    (ns,) = _load(ROOT / "base" / "namespace.yaml")
    assert ns["metadata"]["name"] == "gputopo-system"
    # baseline forbids hostPath, which the labeler needs: enforce privileged, audit baseline (docs/agent.md)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/audit"] == "baseline"


def _resolve(kdir: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """The objects a kustomization directory emits (resources only, namespace field applied)."""
    assert kdir not in seen, f"kustomization cycle through {kdir}"
    kfile = kdir / "kustomization.yaml"
    doc = _load(kfile)[0]
    out: list[tuple[str, dict[str, Any]]] = []
    for ref in doc.get("resources", []) or []:
        target = (kdir / ref).resolve()
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file(), f"{kfile}: {ref} has no kustomization.yaml"
            out += _resolve(target, (*seen, kdir))
        else:
            out += [(str(target.relative_to(ROOT)), d) for d in _load(target)]
    if doc.get("namespace"):
        for _, obj in out:
            if obj.get("kind") not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
                obj.setdefault("metadata", {})["namespace"] = doc["namespace"]
    return out


@pytest.mark.parametrize("overlay", ["default", "nonroot", "tls"])
def test_overlay_has_no_duplicate_object_ids(overlay: str) -> None:
    """kustomize refuses two resources with the same id; catch that without running it."""
    objs = _resolve((ROOT / "overlays" / overlay).resolve())
    ids: dict[tuple[str, str, str, str], str] = {}
    for where, obj in objs:
        key = (obj["apiVersion"].rpartition("/")[0], obj["kind"], obj["metadata"].get("namespace", ""),
               obj["metadata"]["name"])
        assert key not in ids, f"{key} defined in both {ids[key]} and {where}"
        ids[key] = where
    kinds = {k[1] for k in ids}
    assert {"Namespace", "DaemonSet", "ClusterRole"} <= kinds
