"""A small, real HTTP Kubernetes API server for tests and the write-volume benchmark.

It keeps Node objects and speaks enough of the API for the agent, over real
HTTP, so the official ``kubernetes`` client is exercised end to end (URL
building, headers, JSON (de)serialisation, error mapping to ``ApiException``):

* ``GET /api/v1/nodes/{name}`` and ``GET /api/v1/nodes``;
* ``PATCH /api/v1/nodes/{name}`` with ``application/merge-patch+json`` applied
  with RFC 7386 semantics (objects merge recursively, ``null`` deletes, anything
  else replaces); other patch types get 415, so a client sending the wrong one
  fails loudly;
* ``metadata.resourceVersion`` in a patch is a precondition: a stale one gets
  409 Conflict, as the real server does; every accepted write bumps the
  cluster-wide resourceVersion counter;
* label keys/values and the 256 KiB annotation budget are validated (422);
* failure injection: the next N matching requests get 409/429/500/... (with an
  optional ``Retry-After``), and a hook can modify a node right after a GET to
  provoke a genuine conflict;
* every request is recorded (method, path, content type, body, status, bytes);
* namespaced ConfigMaps (the allocation carrier): ``GET``/``PATCH``
  ``/api/v1/namespaces/{ns}/configmaps/{name}`` (same merge patch, resourceVersion
  precondition and validation as Nodes) and ``POST .../configmaps`` (409
  ``AlreadyExists`` on a duplicate name, 422 on an invalid name, 400 on a namespace
  mismatch); failure injection can be limited to a path prefix;
* a PATCH that changes nothing keeps the resourceVersion (as kube-apiserver does:
  no write reaches etcd).
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FakeKubeApi", "Recorded", "json_merge_patch", "realistic_gpu_node"]

MERGE_PATCH = "application/merge-patch+json"
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_ANNOTATIONS_MAX = 256 * 1024


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch, exactly as the RFC's pseudo-code.

    >>> json_merge_patch({"a": "b", "c": {"d": "e", "f": "g"}}, {"a": "z", "c": {"f": None}})
    {'a': 'z', 'c': {'d': 'e'}}
    >>> json_merge_patch({"a": [1]}, {"a": {"b": None}})
    {'a': {}}
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = json_merge_patch(out.get(key), value)
    return out


def _label_key_ok(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123.fullmatch(prefix)):
        return False
    return bool(_NAME.fullmatch(name))


def _validate(node: dict[str, Any]) -> list[str]:
    errs: list[str] = []
    meta = node.get("metadata", {})
    for k, v in (meta.get("labels") or {}).items():
        if not _label_key_ok(k):
            errs.append(f"metadata.labels: Invalid value: {k!r}: invalid label key")
        if not isinstance(v, str) or len(v) > 63 or not _VALUE.fullmatch(v):
            errs.append(f"metadata.labels: Invalid value: {v!r}: invalid label value")
    ann = meta.get("annotations") or {}
    for k, v in ann.items():
        if not _label_key_ok(k) or not isinstance(v, str):
            errs.append(f"metadata.annotations: Invalid value: {k!r}")
    if sum(len(k) + len(str(v)) for k, v in ann.items()) > _ANNOTATIONS_MAX:
        errs.append("metadata.annotations: Too long: must have at most 262144 bytes")
    return errs


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    content_type: str | None
    body: bytes
    status: int
    response_bytes: int = 0

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class _Failure:
    status: int
    remaining: int
    retry_after: str | None
    methods: frozenset[str]
    path_prefix: str = ""


@dataclass
class FakeKubeApi:
    """Threaded HTTP server holding Node objects. Use as a context manager."""

    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    configmaps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (namespace, name) → object
    requests: list[Recorded] = field(default_factory=list)
    after_get: Callable[[str], None] | None = None
    #: called with (namespace, name) right after a ConfigMap GET was answered 200
    after_configmap_get: Callable[[str, str], None] | None = None
    _rv: int = 1000
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _httpd: ThreadingHTTPServer | None = None

    # -- state --------------------------------------------------------------------
    def add_node(self, node: dict[str, Any]) -> None:
        with self._lock:
            node = copy.deepcopy(node)
            self._rv += 1
            node.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
            self.nodes[node["metadata"]["name"]] = node

    def node(self, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.nodes[name])

    def labels(self, name: str) -> dict[str, str]:
        return dict(self.node(name)["metadata"].get("labels") or {})

    def annotations(self, name: str) -> dict[str, str]:
        return dict(self.node(name)["metadata"].get("annotations") or {})

    def modify(self, name: str, fn: Callable[[dict[str, Any]], None]) -> None:
        """Another writer changes the node (e.g. the kubelet or a person): bumps resourceVersion."""
        with self._lock:
            fn(self.nodes[name])
            self._rv += 1
            self.nodes[name]["metadata"]["resourceVersion"] = str(self._rv)

    def fail_next(self, status: int, times: int = 1, *, retry_after: str | None = None,
                  methods: tuple[str, ...] = ("GET", "PATCH"), path_prefix: str = "") -> None:
        """The next ``times`` requests with one of ``methods`` (and a path starting ``path_prefix``) get ``status``."""
        with self._lock:
            self._failures.append(_Failure(status, times, retry_after, frozenset(methods), path_prefix))

    def writes(self, resource: str | None = None) -> list[Recorded]:
        """Accepted writes (PATCH or POST answered 2xx), optionally only of ``nodes`` or ``configmaps``."""
        out = [r for r in self.requests if r.method in ("PATCH", "POST") and 200 <= r.status < 300]
        if resource == "nodes":
            out = [r for r in out if r.path.startswith("/api/v1/nodes")]
        elif resource == "configmaps":
            out = [r for r in out if "/configmaps" in r.path]
        return out

    def configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            cm = self.configmaps.get((namespace, name))
            return copy.deepcopy(cm) if cm is not None else None

    def put_configmap(self, cm: dict[str, Any]) -> None:
        """Another writer creates or replaces a ConfigMap (bumps resourceVersion)."""
        with self._lock:
            cm = copy.deepcopy(cm)
            self._rv += 1
            meta = cm.setdefault("metadata", {})
            meta["resourceVersion"] = str(self._rv)
            meta.setdefault("uid", f"uid-cm-{self._rv}")
            self.configmaps[(meta["namespace"], meta["name"])] = cm

    def modify_configmap(self, namespace: str, name: str, fn: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            fn(self.configmaps[(namespace, name)])
            self._rv += 1
            self.configmaps[(namespace, name)]["metadata"]["resourceVersion"] = str(self._rv)

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- server -------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FakeKubeApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()  # no Nagle: headers and body go out at once, as a real server's would
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_GET(self) -> None:
                api._dispatch(self, "GET")

            def do_PATCH(self) -> None:
                api._dispatch(self, "PATCH")

            def do_PUT(self) -> None:
                api._dispatch(self, "PUT")

            def do_POST(self) -> None:
                api._dispatch(self, "POST")

            def log_message(self, format: str, *args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- request handling ---------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler, method: str) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        ctype = h.headers.get("Content-Type")
        path = h.path.split("?", 1)[0]
        status, payload, headers = self._handle(method, path, ctype, body)
        raw = json.dumps(payload, separators=(",", ":")).encode()
        with self._lock:
            self.requests.append(Recorded(method, h.path, ctype, body, status, len(raw)))
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(raw)
        if method == "GET" and status == 200 and self.after_get is not None and path.startswith("/api/v1/nodes/"):
            self.after_get(path.rsplit("/", 1)[1])
        cm = re.fullmatch(r"/api/v1/namespaces/([^/]+)/configmaps/([^/]+)", path)
        if method == "GET" and status == 200 and cm is not None and self.after_configmap_get is not None:
            self.after_configmap_get(cm.group(1), cm.group(2))

    def _injected(self, method: str, path: str) -> _Failure | None:
        for f in self._failures:
            if method in f.methods and f.remaining > 0 and path.startswith(f.path_prefix):
                f.remaining -= 1
                return f
        return None

    def _handle(self, method: str, path: str, ctype: str | None, body: bytes) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            fail = self._injected(method, path)
            if fail is not None:
                headers = {"Retry-After": fail.retry_after} if fail.retry_after is not None else {}
                return fail.status, _status(fail.status, "injected failure"), headers
            cm = re.fullmatch(r"/api/v1/namespaces/([^/]+)/configmaps(?:/([^/]+))?", path)
            if cm is not None:
                return self._configmap(method, cm.group(1), cm.group(2), ctype, body)
            m = re.fullmatch(r"/api/v1/nodes(?:/([^/]+))?", path)
            if m is None:
                return 404, _status(404, f"the server could not find the requested resource ({path})"), {}
            name = m.group(1)
            if name is None:
                if method != "GET":
                    return 405, _status(405, "method not allowed"), {}
                items = [copy.deepcopy(n) for n in self.nodes.values()]
                return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._rv)},
                             "items": items}, {}
            if name not in self.nodes:
                return 404, _status(404, f'nodes "{name}" not found', reason="NotFound"), {}
            status, obj = self._get_or_merge_patch("nodes", "Node", name, self.nodes[name], method, ctype, body)
            if status == 200 and method == "PATCH":
                obj["metadata"]["name"] = name
                self.nodes[name] = obj
            return status, copy.deepcopy(obj), {}


    def _configmap(self, method: str, ns: str, name: str | None, ctype: str | None,
                   body: bytes) -> tuple[int, Any, dict[str, str]]:
        """ConfigMaps: GET one, POST (create), PATCH (merge, resourceVersion precondition)."""
        if name is None:
            if method != "POST":
                return 405, _status(405, "method not allowed"), {}
            try:
                obj = json.loads(body)
            except json.JSONDecodeError as err:
                return 400, _status(400, f"invalid JSON: {err}"), {}
            meta = obj.setdefault("metadata", {})
            new_name = str(meta.get("name") or "")
            if meta.setdefault("namespace", ns) != ns:  # the real server's answer (400, not 422): seen in tests/e2e
                msg = "the namespace of the provided object does not match the namespace sent on the request"
                return 400, _status(400, msg, "BadRequest"), {}
            errs = _validate(obj)
            if len(new_name) > 253 or not _DNS1123.fullmatch(new_name):
                errs.append(f"metadata.name: Invalid value: {new_name!r}")
            if errs:
                return 422, _status(422, f'ConfigMap "{new_name}" is invalid: ' + ", ".join(errs), "Invalid"), {}
            if (ns, new_name) in self.configmaps:
                return 409, _status(409, f'configmaps "{new_name}" already exists', reason="AlreadyExists"), {}
            self._rv += 1
            meta.update(resourceVersion=str(self._rv), uid=f"uid-cm-{self._rv}",
                        creationTimestamp="2026-11-23T12:00:00Z")
            self.configmaps[(ns, new_name)] = obj
            return 201, copy.deepcopy(obj), {}
        current = self.configmaps.get((ns, name))
        if current is None:
            return 404, _status(404, f'configmaps "{name}" not found', reason="NotFound"), {}
        status, obj = self._get_or_merge_patch("configmaps", "ConfigMap", name, current, method, ctype, body)
        if status == 200 and method == "PATCH":
            obj["metadata"].update(name=name, namespace=ns)
            self.configmaps[(ns, name)] = obj
        return status, copy.deepcopy(obj), {}

    def _get_or_merge_patch(self, resource: str, kind: str, name: str, current: dict[str, Any], method: str,
                            ctype: str | None, body: bytes) -> tuple[int, Any]:
        """GET, or a JSON merge PATCH with the API server's resourceVersion precondition and validation.

        On a successful PATCH the returned object carries a new resourceVersion; the
        caller stores it (and restores identity fields the patch may not change).
        """
        if method == "GET":
            return 200, current
        if method != "PATCH":
            return 405, _status(405, "method not allowed")
        if (ctype or "").split(";")[0].strip() != MERGE_PATCH:
            return 415, _status(415, f"fake server implements only {MERGE_PATCH}, got {ctype}")
        try:
            patch = json.loads(body)
        except json.JSONDecodeError as err:
            return 400, _status(400, f"invalid JSON: {err}")
        want_rv = (patch.get("metadata") or {}).get("resourceVersion") if isinstance(patch, dict) else None
        if want_rv is not None and want_rv != current["metadata"]["resourceVersion"]:
            msg = (f'Operation cannot be fulfilled on {resource} "{name}": the object has been modified; '
                   "please apply your changes to the latest version and try again")
            return 409, _status(409, msg, reason="Conflict")
        merged = json_merge_patch(current, patch)
        errs = _validate(merged)
        if errs:
            return 422, _status(422, f'{kind} "{name}" is invalid: ' + ", ".join(errs), reason="Invalid")
        merged["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if merged == current:  # a no-op patch: the real server writes nothing and keeps the resourceVersion
            return 200, merged
        self._rv += 1
        merged["metadata"]["resourceVersion"] = str(self._rv)
        return 200, merged


def _status(code: int, message: str, reason: str = "") -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def realistic_gpu_node(name: str, *, images: int = 50) -> dict[str, Any]:
    """A Node shaped like a real 8-GPU worker: kubelet status, GFD labels, managedFields, image list.

    Used to measure what every Node watcher receives per update. The kubelet
    reports at most 50 images by default (``nodeStatusMaxImages``).
    """
    gfd = {f"nvidia.com/{k}": v for k, v in {
        "gpu.present": "true", "gpu.count": "8", "gpu.product": "NVIDIA-H100-80GB-HBM3", "gpu.memory": "81559",
        "gpu.family": "hopper", "gpu.compute.major": "9", "gpu.compute.minor": "0", "gpu.machine": "DGX-H100",
        "cuda.driver.major": "550", "cuda.driver.minor": "90", "cuda.driver.rev": "07", "cuda.runtime.major": "12",
        "cuda.runtime.minor": "4", "mig.capable": "true", "mig.strategy": "single", "gfd.timestamp": "1732300000",
        "gpu.replicas": "1", "gpu.sharing-strategy": "none", "mps.capable": "false", "vgpu.present": "false",
        "gpu.deploy.device-plugin": "true", "gpu.deploy.dcgm-exporter": "true", "gpu.deploy.gpu-feature-discovery":
        "true", "gpu.deploy.driver": "pre-installed", "gpu.deploy.container-toolkit": "true",
    }.items()}
    labels = {
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "p5.48xlarge", "topology.kubernetes.io/region": "us-east-1",
        "topology.kubernetes.io/zone": "us-east-1a", "feature.node.kubernetes.io/pci-10de.present": "true",
        **gfd,
    }
    conditions = [
        {"type": t, "status": s, "lastHeartbeatTime": "2026-11-23T12:00:00Z",
         "lastTransitionTime": "2026-11-01T00:00:00Z", "reason": r, "message": m}
        for t, s, r, m in [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
    ]
    image_list = [
        {"names": [f"registry.example.com/team-{i % 7}/image-{i}@sha256:{i:064x}",
                   f"registry.example.com/team-{i % 7}/image-{i}:v1.{i}.0"], "sizeBytes": 1_000_000_000 + i}
        for i in range(images)
    ]
    managed = [
        {"manager": m, "operation": "Update", "apiVersion": "v1", "time": "2026-11-23T12:00:00Z",
         "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {f"f:{k}": {} for k in ks}}},
         **({"subresource": "status"} if m == "kubelet" else {})}
        for m, ks in [("kubelet", list(labels)[:9]), ("gpu-feature-discovery", list(gfd)), ("kubelet", ["x"])]
    ]
    return {
        "kind": "Node", "apiVersion": "v1",
        "metadata": {
            "name": name, "uid": "6f1c2d3e-0000-4000-8000-000000000001", "creationTimestamp": "2026-11-01T00:00:00Z",
            "labels": labels,
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "csi.volume.kubernetes.io/nodeid": json.dumps({"ebs.csi.aws.com": "i-0123456789abcdef0"}),
                "nfd.node.kubernetes.io/feature-labels": "pci-10de.present,cpu-cpuid.AVX512F,kernel-version.full",
            },
            "managedFields": managed,
        },
        "spec": {"providerID": "aws:///us-east-1a/i-0123456789abcdef0", "podCIDR": "10.244.7.0/24",
                 "podCIDRs": ["10.244.7.0/24"]},
        "status": {
            "capacity": {"cpu": "192", "memory": "2097152Mi", "pods": "110", "nvidia.com/gpu": "8",
                         "ephemeral-storage": "3750000000Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0"},
            "allocatable": {"cpu": "191500m", "memory": "2090000Mi", "pods": "110", "nvidia.com/gpu": "8",
                            "ephemeral-storage": "3456000000000", "hugepages-1Gi": "0", "hugepages-2Mi": "0"},
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "10.0.7.12"}, {"type": "Hostname", "address": name},
                          {"type": "InternalDNS", "address": f"{name}.ec2.internal"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "0" * 32, "systemUUID": "ec2" + "0" * 29, "bootID": "b" * 36,
                         "kernelVersion": "6.8.0-1019-aws", "osImage": "Ubuntu 22.04.5 LTS",
                         "containerRuntimeVersion": "containerd://1.7.22", "kubeletVersion": "v1.31.2",
                         "kubeProxyVersion": "v1.31.2", "operatingSystem": "linux", "architecture": "amd64"},
            "images": image_list,
        },
    }
