"""Test support for the extender: real corpus topologies, real Node objects, a real server.

Nodes are built the way the labeler agent publishes them: labels from
``labels.encode``, the ``{prefix}topology`` annotation from
``labels.encode_annotations`` and ``{prefix}allocation`` from
``allocation.encode``. Topologies come from the real `nvidia-smi topo -m`
corpus files through the real parser.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from extender.app import create_app, limits, listen_socket
from extender.metrics import Metrics
from extender.service import Service, ServiceConfig
from extender.settings import DEFAULT_LOCALITY_KEYS, load
from labeler.topology import allocation, labels, smi_parser
from labeler.topology.model import Topology
from policy.scoring import DEFAULT_STRATEGIES, resolve

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
PROTOCOL = FIXTURES / "extender-protocol"
CORPUS = FIXTURES / "topo-corpus"
PREFIX = labels.DEFAULT_PREFIX

CORPUS_FILES = {
    "dgx1": "005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt",
    "bridge_pairs": "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt",
    "vmware_pairs": "031_vmware-a100-80g-pcie-x4-nv12-pairs-matrixonly.txt",
    "rtx4090": "032_rtx4090x8-allsys-2nics-tabs.txt",
    "gtx_pix": "035_gtx1070x6-1080x1-7gpu-pix-phb-oldfmt.txt",
    "h100_nv18": "051_h100x8-nv18-8nics-dualport-pix-pairs.txt",
    "h100_1nic": "123_h100sxm5x8-nv18-1nic-tabs-4space-indented-header-no-leading-tab.txt",
}


def corpus(name: str) -> Topology:
    """A corpus topology by short name (see :data:`CORPUS_FILES`), parsed by the real parser."""
    path = CORPUS / CORPUS_FILES[name]
    return smi_parser.parse(path.read_text(), source=path.name)


def node_object(
    name: str,
    topo: Topology | None,
    *,
    free: Iterable[int] | None = None,
    used: dict[int, str] | None = None,
    extra_labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    observed_at: int | None = 1_700_000_000,
) -> dict[str, Any]:
    """A realistic ``v1.Node`` dict carrying the labeler's labels and annotations."""
    node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    ann: dict[str, str] = {"node.alpha.kubernetes.io/ttl": "0"}
    gpus = 0
    if topo is not None:
        node_labels.update(labels.encode(topo, prefix=PREFIX))
        ann.update(labels.encode_annotations(topo, prefix=PREFIX))
        gpus = len(topo.gpus)
        if free is not None or used is not None:
            used = dict(used or {})
            free_set = frozenset(free) if free is not None else frozenset(topo.gpu_indices) - used.keys()
            for g in topo.gpu_indices:
                if g not in free_set and g not in used:
                    used[g] = "other/busy-pod"
            state = allocation.AllocationState(free_set, used, observed_at)
            ann[PREFIX + allocation.ANNOTATION_SUFFIX] = allocation.encode(state)
    node_labels.update(extra_labels or {})
    ann.update(annotations or {})
    return {
        "metadata": {
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "labels": node_labels,
            "annotations": ann,
        },
        "spec": {"taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}]},
        "status": {
            "capacity": {"cpu": "96", "nvidia.com/gpu": str(gpus), "pods": "110"},
            "allocatable": {"cpu": "95500m", "nvidia.com/gpu": str(gpus), "pods": "110"},
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "", "osImage": "",
                         "containerRuntimeVersion": "", "kubeletVersion": "v1.31.0", "kubeProxyVersion": "",
                         "operatingSystem": "linux", "architecture": "amd64"},
        },
    }


def base_pod() -> dict[str, Any]:
    return json.loads((PROTOCOL / "pod-pytorchjob-worker.json").read_text())


def pod(
    gpus: int,
    *,
    annotations: dict[str, str] | None = None,
    labels_: dict[str, str] | None = None,
    name: str = "p",
    args: list[str] | None = None,
    uid: str | None = None,
    node_name: str | None = None,
) -> dict[str, Any]:
    """A pod requesting ``gpus`` nvidia.com/gpu (plain, unless labels make it a job rank)."""
    p = base_pod()
    p["metadata"]["name"] = name
    p["metadata"]["uid"] = uid or f"uid-{name}"
    p["metadata"]["labels"] = dict(labels_ or {})
    p["metadata"]["annotations"] = dict(annotations or {})
    c = p["spec"]["containers"][0]
    c["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}, "requests": {"nvidia.com/gpu": str(gpus)}}
    c["args"] = args or ["train.py"]
    c["env"] = []
    if node_name:
        p["spec"]["nodeName"] = node_name
        p["status"] = {"phase": "Running"}
    return p


def filter_body(pod_obj: dict[str, Any], nodes: list[dict[str, Any]] | None = None,
                names: list[str] | None = None) -> bytes:
    """Compact Go-style ExtenderArgs bytes (explicit nulls)."""
    nl = None if nodes is None else {"metadata": {}, "items": nodes}
    return json.dumps({"Pod": pod_obj, "Nodes": nl, "NodeNames": names}, separators=(",", ":")).encode()


def make_service(view: Any = None, *, strategies: Iterable[str] = DEFAULT_STRATEGIES,
                 locality_keys: Iterable[str] = DEFAULT_LOCALITY_KEYS) -> Service:
    config = ServiceConfig(prefix=PREFIX, locality_keys=tuple(locality_keys), scorer=resolve(list(strategies)))
    return Service(config, view=view, metrics=Metrics())


@contextmanager
def serve(app: Any) -> Iterator[tuple[str, int]]:
    """Run ``app`` under uvicorn on 127.0.0.1 (a free port) in a background thread."""
    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield "127.0.0.1", port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def app_of(service: Service, **app_options: Any) -> Any:
    """``create_app`` with the default settings' limits for the service's mode, ``app_options`` over them."""
    options: dict[str, Any] = {**limits(load(mode="stateless" if service.view is None else "cached")), **app_options}
    return create_app(service, **options)


@contextmanager
def serve_service(service: Service, **app_options: Any) -> Iterator[tuple[str, int]]:
    with serve(app_of(service, **app_options)) as addr:
        yield addr


def deep(obj: Any) -> Any:
    return copy.deepcopy(obj)
