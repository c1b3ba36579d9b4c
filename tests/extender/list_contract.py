"""What kube-apiserver answers to paged, selected LISTs: the contract the in-test double must keep.

``gputopo audit cluster`` and the extender's cache page through Nodes, ConfigMaps and Pods with
``limit``/``continue``, label and field selectors, and ``resourceVersion=0``. Every check here was
asked of the real kube-apiserver v1.37.2 (``tests/e2e/test_e2e_audit_cluster.py`` runs
:func:`check` there) and is run against :class:`fake_apiserver.FakeApiServer` by
``tests/extender/test_fake_apiserver_lists.py``, so the double cannot drift from the real thing
unnoticed. The fixture: :data:`PODS` unscheduled pods ``p-00`` … in :data:`NAMESPACE`; the odd ones
labelled ``grp=odd``, every third one (``p-00``, ``p-03`` … ``p-27``) with ``schedulerName``
:data:`SCHEDULER`, so the last match is followed by two pods that do not match.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

__all__ = ["NAMESPACE", "PODS", "SCHEDULER", "check", "pod"]

NAMESPACE = "list-contract"
PODS = 30
SCHEDULER = "gputopo-scheduler"


def pod(i: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}
    if i % 3 == 0:
        spec["schedulerName"] = SCHEDULER
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{i:02d}", "namespace": NAMESPACE, "labels": {"grp": "odd" if i % 2 else "even"}},
            "spec": spec}


def _page(core: k8s.CoreV1Api, **kw: Any) -> tuple[dict[str, Any], list[str]]:
    resp = core.list_namespaced_pod(NAMESPACE, _preload_content=False, **kw)
    doc = json.loads(resp.data)
    return doc["metadata"], [i["metadata"]["name"] for i in doc["items"]]


def _refused(call: Any) -> tuple[int, str]:
    try:
        call(_preload_content=False)
    except ApiException as err:
        return err.status or 0, json.loads(err.body)["message"]
    raise AssertionError("accepted")


def check(core: k8s.CoreV1Api) -> None:
    """Assert each behaviour; ``core`` may list pods, nodes and configmaps cluster-wide."""
    names = [f"p-{i:02d}" for i in range(PODS)]
    # an unfiltered page: continue, and how many items remain
    meta, got = _page(core, limit=10)
    assert got == names[:10] and meta.get("continue") and meta.get("remainingItemCount") == PODS - 10, meta
    meta, got = _page(core, limit=10, _continue=meta["continue"])
    assert got == names[10:20] and meta.get("remainingItemCount") == PODS - 20, meta
    meta, got = _page(core, limit=10, _continue=meta["continue"])
    assert got == names[20:] and not meta.get("continue") and "remainingItemCount" not in meta, meta
    # a selected page: no remainingItemCount (the server cannot know it without reading everything)
    meta, got = _page(core, limit=10, label_selector="grp=odd")
    assert got == names[1:20:2] and meta.get("continue") and "remainingItemCount" not in meta, meta
    # a filtered page that fills `limit` continues when any pod follows its last item, matching or
    # not: the next page can be empty (p-28, p-29 follow p-27, the 10th match)
    meta, got = _page(core, limit=10, field_selector=f"spec.schedulerName={SCHEDULER}")
    assert got == names[0:30:3] and meta.get("continue") and "remainingItemCount" not in meta, meta
    meta, got = _page(core, limit=10, field_selector=f"spec.schedulerName={SCHEDULER}", _continue=meta["continue"])
    assert got == [] and not meta.get("continue"), meta
    # the audit's own pending-pod selector: an empty value selects unset fields
    meta, got = _page(core, limit=50, field_selector="status.phase=Pending,spec.nodeName=")
    assert got == names and not meta.get("continue"), meta
    meta, got = _page(core, field_selector="spec.schedulerName!=gputopo-scheduler,metadata.name==p-01")
    assert got == ["p-01"], got
    # resourceVersion=0: the watch cache answers with everything, ignoring limit
    meta, got = _page(core, limit=10, resource_version="0", resource_version_match="NotOlderThan")
    assert got == names and not meta.get("continue"), meta
    # field labels the kind does not index: 400, in each registry's own words
    assert _refused(lambda **kw: core.list_node(field_selector="status.phase=Running", **kw)) == (
        400, "field label not supported: status.phase")
    assert _refused(lambda **kw: core.list_namespaced_pod(NAMESPACE, field_selector="spec.containers.image=x",
                                                          **kw)) == (400, "field label not supported: "
                                                                          "spec.containers.image")
    assert _refused(lambda **kw: core.list_namespaced_config_map(NAMESPACE, field_selector="data.allocation=x",
                                                                 **kw)) == (
        400, '"data.allocation" is not a known field selector: only "metadata.name", "metadata.namespace"')
    code, message = _refused(lambda **kw: core.list_node(field_selector="spec.unschedulable", **kw))
    assert (code, message) == (400, "invalid selector: 'spec.unschedulable'; can't understand 'spec.unschedulable'")
