"""Adapter: read one Node's annotations through the Kubernetes API (official client).

Used by ``gputopo audit pod`` when neither ``--topology`` nor a local probe gives the
node's topology: the pod's service account reads ``{prefix}topology`` from its own Node.
That needs RBAC ``get`` on ``nodes`` (a ClusterRole); without it the API answers 403 and
the audit says so instead of failing obscurely. The node name comes from the downward
API (``NODE_NAME`` from ``spec.nodeName``, as for the labeler agent).
"""

from __future__ import annotations

import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from kubeio import client as kube_client
from labeler.topology import limits
from labeler.topology.errors import ConfigError, GputopoError

__all__ = ["MAX_ANNOTATION_BYTES", "NodeReadError", "core_api", "read_node_annotations"]

#: The API server caps all annotations of an object at 256 KiB; refuse anything larger (limits.py).
MAX_ANNOTATION_BYTES = limits.MAX_NODE_ANNOTATIONS_BYTES


class NodeReadError(GputopoError):
    """The Node could not be read (no API config, forbidden, not found, unreachable)."""


def core_api() -> k8s.CoreV1Api:
    """CoreV1Api from ``$KUBECONFIG`` or ``~/.kube/config``, else the in-cluster service account
    (:mod:`kubeio.client`, the order of every gputopo process)."""
    try:
        return kube_client.core_api()
    except ConfigError as err:
        raise NodeReadError(str(err)) from err


def read_node_annotations(name: str, api: k8s.CoreV1Api, *, timeout_s: float = 5.0) -> dict[str, str]:
    """The annotations of Node ``name``; :class:`NodeReadError` with a one-line reason otherwise."""
    try:
        node = api.read_node(name, _request_timeout=timeout_s)
    except ApiException as err:
        if err.status == 403:
            raise NodeReadError(f"not allowed to read Node {name} (RBAC: the service account needs get on nodes)") \
                from err
        if err.status == 404:
            raise NodeReadError(f"Node {name} not found") from err
        raise NodeReadError(f"reading Node {name} failed: HTTP {err.status} {err.reason}") from err
    except (urllib3.exceptions.HTTPError, OSError, ValueError) as err:
        raise NodeReadError(f"reading Node {name} failed: {err}") from err
    meta = node.metadata
    annotations = dict(meta.annotations or {}) if meta is not None else {}
    size = sum(len(k) + len(v) for k, v in annotations.items())
    if size > MAX_ANNOTATION_BYTES:
        raise NodeReadError(f"Node {name} carries {size} bytes of annotations (limit {MAX_ANNOTATION_BYTES})")
    return {str(k): str(v) for k, v in annotations.items()}
