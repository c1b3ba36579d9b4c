"""The allocation ConfigMap carrier: one small ConfigMap per node in the gputopo namespace.

Why: the Node annotation carrier makes every allocation change rebroadcast the
whole Node (~19 KB) to every cluster-wide Node watcher; a ~0.8 KB ConfigMap in
``gputopo-system`` reaches only the extender's cached mode (figures in
``docs/agent.md``). Naming and labels come from :mod:`labeler.topology.carrier`
so the extender finds exactly what we write.

Writes follow the Node publisher's rules: GET, plan, write only when something
differs (create with POST on 404, else one JSON merge patch carrying
``metadata.resourceVersion`` as a precondition), retried by the same
:class:`~labeler.agent.publish.RetryPolicy` (a 409, from a stale
resourceVersion or from a concurrent create's ``AlreadyExists``, re-reads and
re-plans). The ConfigMap's ownerReference names the Node (cluster-scoped owners
of namespaced dependents are allowed), so the garbage collector deletes it with
the Node; the Node's uid is read only when the owner reference is missing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from labeler.agent.desired import configmap_metadata, merged_value
from labeler.agent.patch import MERGE_PATCH
from labeler.agent.publish import RetryPolicy
from labeler.topology import allocation, carrier

__all__ = [
    "AllocationPublisher",
    "CarrierResult",
    "DryRunConfigMapPublisher",
    "KubeConfigMapPublisher",
]


@dataclass(frozen=True)
class CarrierResult:
    """``created`` / ``patched``: one write accepted; ``unchanged``: no write was needed."""

    outcome: str
    body: Mapping[str, Any] | None = None  # what was sent (POST object or merge patch)
    attempts: int = 1
    retries: tuple[str, ...] = ()


class AllocationPublisher(Protocol):
    """What the loop needs from a separate allocation carrier."""

    def publish(self, state: allocation.AllocationState) -> CarrierResult: ...


def _owned_by(meta: Any, node: str) -> bool:
    return any(r.kind == "Node" and r.name == node for r in (meta.owner_references or []))


@dataclass
class KubeConfigMapPublisher:
    """Create-or-patch ``gputopo-alloc-<node>`` through the official client."""

    api: k8s.CoreV1Api
    node_name: str
    namespace: str = carrier.DEFAULT_NAMESPACE
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    request_timeout_s: float = 10.0
    refresh_s: float = 0.0  # re-stamp an unchanged allocation this old (LoopConfig.allocation_refresh_s)

    @property
    def name(self) -> str:
        return carrier.configmap_name(self.node_name)

    def publish(self, state: allocation.AllocationState) -> CarrierResult:
        """Read, plan, write at most once; every retry starts from a fresh read."""
        (outcome, body), attempts, retries = self.retry.run(f"configmap {self.namespace}/{self.name}",
                                                            lambda: self._attempt(state))
        return CarrierResult(outcome, body, attempts, retries)

    def _attempt(self, state: allocation.AllocationState) -> tuple[str, dict[str, Any] | None]:
        try:
            current = self.api.read_namespaced_config_map(self.name, self.namespace,
                                                          _request_timeout=self.request_timeout_s)
        except ApiException as err:
            if err.status != 404:
                raise
            current = None
        labels, annotations = configmap_metadata(self.node_name)
        if current is None:
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": labels,
                             **({"annotations": annotations} if annotations else {}),
                             "ownerReferences": [self._owner()]},
                "data": {carrier.DATA_KEY: allocation.encode(state)},
            }
            # 409 AlreadyExists (created meanwhile) is retried: the next attempt reads and patches it
            # the client sends a plain dict as is (sanitize_for_serialization); the cast is for the type checker
            self.api.create_namespaced_config_map(self.namespace, cast(k8s.V1ConfigMap, body),
                                                  _request_timeout=self.request_timeout_s)
            return "created", body
        meta = current.metadata or k8s.V1ObjectMeta()
        patch_meta: dict[str, Any] = {}
        have_labels = meta.labels or {}
        if any(have_labels.get(k) != v for k, v in labels.items()):
            patch_meta["labels"] = labels
        have_ann = meta.annotations or {}
        if any(have_ann.get(k) != v for k, v in annotations.items()):
            patch_meta["annotations"] = annotations
        if not _owned_by(meta, self.node_name):
            patch_meta["ownerReferences"] = [*(_ref_dict(r) for r in meta.owner_references or []), self._owner()]
        on_cm = (current.data or {}).get(carrier.DATA_KEY)
        value = merged_value(on_cm, state, self.refresh_s)
        if not patch_meta and value == on_cm:
            return "unchanged", None
        patch: dict[str, Any] = {"metadata": {**patch_meta, "resourceVersion": meta.resource_version}}
        if value != on_cm:
            patch["data"] = {carrier.DATA_KEY: value}
        self.api.patch_namespaced_config_map(self.name, self.namespace, patch, _content_type=MERGE_PATCH,
                                             _request_timeout=self.request_timeout_s)
        return "patched", patch

    def _owner(self) -> dict[str, Any]:
        """The Node as owner (a GET for its uid: only on create or repair)."""
        node = self.api.read_node(self.node_name, _request_timeout=self.request_timeout_s)
        uid = node.metadata.uid if node.metadata is not None else None
        return {"apiVersion": "v1", "kind": "Node", "name": self.node_name, "uid": uid}


def _ref_dict(ref: Any) -> dict[str, Any]:
    out = {"apiVersion": ref.api_version, "kind": ref.kind, "name": ref.name, "uid": ref.uid}
    if ref.controller is not None:
        out["controller"] = ref.controller
    if ref.block_owner_deletion is not None:
        out["blockOwnerDeletion"] = ref.block_owner_deletion
    return out


@dataclass
class DryRunConfigMapPublisher:
    """``--dry-run``: print the ConfigMap write that would be made (only when the allocation changed)."""

    node_name: str
    namespace: str = carrier.DEFAULT_NAMESPACE
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    _value: str | None = None
    refresh_s: float = 0.0

    def publish(self, state: allocation.AllocationState) -> CarrierResult:
        value = merged_value(self._value, state, self.refresh_s)
        if value == self._value:
            return CarrierResult("unchanged")
        self._value = value
        body = {"configMap": f"{self.namespace}/{carrier.configmap_name(self.node_name)}",
                "data": {carrier.DATA_KEY: value}}
        print(json.dumps(body, sort_keys=True), file=self.out, flush=True)
        return CarrierResult("dry-run", body)
