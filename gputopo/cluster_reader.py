"""The Kubernetes side of ``gputopo audit cluster``: three paginated lists, reduced to small records.

What is read, and why only that (docs/audit.md, "What it reads"):

- **Nodes**, all of them (``limit``/``continue`` pages): labels (ours, pool, instance type, GFD),
  our annotations, ``status.capacity`` of the GPU resource and ``spec.unschedulable``. The
  capacity is why full Node objects are listed: the API has no field projection, and metadata-only
  lists (``PartialObjectMetadataList``) leave out ``status``.
- **Allocation ConfigMaps** in the agents' namespace, by label selector
  (``app.kubernetes.io/managed-by=gputopo``): the free/used GPUs the agents publish.
- **Pending, unscheduled pods**, by field selector ``status.phase=Pending,spec.nodeName=``: the
  GPU sizes waiting for a node. Running pods are *not* listed: the allocations already name every
  pod holding GPUs and how many (``used``), and a cluster has many more pods than GPU pods.

Pages come from :func:`kubeio.pager.pages` (the informer's pager too): each is decoded from the
raw response (the client's model classes cost far more than the JSON) and reduced to records at
once, so memory holds one page of full objects; a continue token that expires mid-list restarts
that list once. Nothing in an object can raise here: missing or mistyped fields
become absent values, and the analysis (:mod:`policy.audit.cluster_audit`) decodes what is ours.

Failures: a node list that cannot be read ends the audit (:class:`ClusterReadError`); a
ConfigMap or pod list refused by RBAC (403) or missing (404) is reported as a finding about
the audit's inputs, and the audit goes on without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from kubeio import pager
from kubeio.objects import as_map
from labeler.topology import carrier
from labeler.topology.findings import Severity
from labeler.topology.gcpause import paused_gc
from policy.audit.cluster_audit import PendingPod
from policy.audit.cluster_nodes import GFD_COUNT, GFD_PRESENT, ClusterFinding, NodeInput
from policy.workload import gpu_request, parse_quantity_int

__all__ = ["PENDING_SELECTOR", "ClusterReadError", "ListStats", "ReadResult", "Reporter", "paused_gc", "read_cluster"]

#: unscheduled pods waiting for a node (bound-but-starting pods already hold their GPUs)
PENDING_SELECTOR = "status.phase=Pending,spec.nodeName="


class ClusterReadError(Exception):
    """The nodes could not be listed: nothing to audit."""


class Reporter(Protocol):
    """Progress sink (a rich progress bar in the CLI, nothing in tests)."""

    def start(self, kind: str, total: int | None) -> None: ...
    def advance(self, kind: str, items: int, total: int | None) -> None: ...


@dataclass(slots=True)
class ListStats:
    kind: str
    objects: int = 0
    pages: int = 0
    bytes: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class ReadResult:
    nodes: list[NodeInput]
    pending: list[PendingPod]
    input_findings: list[ClusterFinding] = field(default_factory=list)
    stats: list[ListStats] = field(default_factory=list)


def _pages(list_fn: Callable[..., Any], kind: str, *, page_size: int, cached: bool, timeout: float,
           reporter: Reporter | None, stats: ListStats, **query: Any) -> Iterator[list[Any] | None]:
    """The items of each page (:func:`kubeio.pager.pages`, with one restart when a continue token expires:
    ``None`` = drop what this list gave so far), counted in ``stats`` and shown by ``reporter``."""
    seen = 0
    for page in pager.pages(list_fn, limit=page_size, timeout=timeout, what=f"{kind} list", cached=cached,
                            restarts=1, **query):
        if page is None:
            stats.pages = stats.bytes = seen = 0
            yield None
            continue
        stats.pages += 1
        stats.bytes += page.nbytes
        seen += len(page.items)
        total = seen + page.remaining if page.remaining is not None else seen if page.last else None
        if reporter is not None:
            if stats.pages == 1:
                reporter.start(kind, total)
            reporter.advance(kind, len(page.items), total)
        yield page.items


def _node_input(obj: Any, *, prefix: str, resource: str, keep: frozenset[str]) -> NodeInput | None:
    if not isinstance(obj, dict):
        return None
    meta = as_map(obj.get("metadata"))
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    node_labels = {k: v for k, v in as_map(meta.get("labels")).items()
                   if isinstance(v, str) and isinstance(k, str) and (k in keep or k.startswith(prefix))}
    ann = {k: v for k, v in as_map(meta.get("annotations")).items()
           if isinstance(v, str) and isinstance(k, str) and k.startswith(prefix)}
    raw_cap = as_map(as_map(obj.get("status")).get("capacity")).get(resource)
    cap = None if raw_cap is None else parse_quantity_int(raw_cap)
    return NodeInput(name, node_labels, ann, gpu_capacity=-1 if raw_cap is not None and cap is None else cap,
                     unschedulable=as_map(obj.get("spec")).get("unschedulable") is True)


def _optional_list(kind: str, what: str, run: Callable[[], None], findings: list[ClusterFinding]) -> None:
    """Run one list the audit can do without: an API error (RBAC, no such namespace) becomes a finding."""
    try:
        run()
    except pager.ListDecodeError as err:
        findings.append(ClusterFinding(Severity.WARNING, f"{kind}-unreadable",
                                       f"could not list {what}: {err}; the audit goes on without them"))
    except ApiException as err:
        reason = {401: "unauthorized", 403: "forbidden (RBAC)", 404: "not found"}.get(
            err.status or 0, f"HTTP {err.status} {err.reason}")
        findings.append(ClusterFinding(
            Severity.WARNING, f"{kind}-unreadable",
            f"could not list {what}: {reason}; the audit goes on without them (see docs/audit.md for the ClusterRole)"))


def _consume(pages: Iterator[list[Any] | None], stats: ListStats, each: Callable[[Any], None],
             reset: Callable[[], None]) -> None:
    """Feed every listed object to ``each``; ``reset`` when the list starts again (see :func:`_pages`)."""
    t = time.perf_counter()
    for page in pages:
        if page is None:
            reset()
            stats.objects = 0
            continue
        stats.objects += len(page)
        for obj in page:
            each(obj)
    stats.seconds = time.perf_counter() - t


def read_cluster(
    core_v1: Any,
    *,
    prefix: str,
    resource: str,
    namespace: str,
    label_keys: frozenset[str],
    page_size: int = 500,
    cached: bool = False,
    timeout: float = 60.0,
    reporter: Reporter | None = None,
) -> ReadResult:
    """Nodes (with their allocation ConfigMaps joined in) and pending GPU pods from a ``CoreV1Api``."""
    keep = label_keys | {GFD_PRESENT, GFD_COUNT}
    opts: dict[str, Any] = {"page_size": page_size, "cached": cached, "timeout": timeout, "reporter": reporter}
    stats = {k: ListStats(k) for k in ("nodes", "configmaps", "pods")}
    findings: list[ClusterFinding] = []
    nodes: list[NodeInput] = []
    unnamed = [0]  # list items without a readable name

    def node(obj: Any) -> None:
        rec = _node_input(obj, prefix=prefix, resource=resource, keep=keep)
        if rec is None:
            unnamed[0] += 1
        else:
            nodes.append(rec)

    def no_nodes() -> None:
        nodes.clear()
        unnamed[0] = 0

    try:
        _consume(_pages(core_v1.list_node, "nodes", stats=stats["nodes"], **opts), stats["nodes"], node, no_nodes)
    except ApiException as err:
        raise ClusterReadError(f"cannot list nodes: HTTP {err.status} {err.reason}") from err
    except pager.ListDecodeError as err:
        raise ClusterReadError(f"cannot list nodes: {err}") from err
    if unnamed[0]:
        findings.append(ClusterFinding(Severity.WARNING, "undecodable-node",
                                       f"{unnamed[0]} listed nodes had no readable name and were skipped"))
    allocations: dict[str, str] = {}
    foreign: dict[str, str] = {}  # ConfigMap name -> the node it names but may not speak for

    def configmap(obj: Any) -> None:
        if not isinstance(obj, dict):
            return
        # the extender's rule (extender/cache.py): only a ConfigMap whose name is its node's counts
        node = carrier.claimed_node(obj)
        if node is None and (named := carrier.node_of(obj)) is not None:
            foreign[str(as_map(obj.get("metadata")).get("name"))[:253]] = named[:253]
        value = as_map(obj.get("data")).get(carrier.DATA_KEY)
        if node is not None and isinstance(value, str):
            allocations.setdefault(node, value)

    def no_configmaps() -> None:
        allocations.clear()
        foreign.clear()

    pending: list[PendingPod] = []

    def pod(obj: Any) -> None:
        gpus = gpu_request(obj, resource) if isinstance(obj, dict) else 0
        if gpus > 0:
            meta = as_map(obj.get("metadata"))
            pending.append(PendingPod(f"{meta.get('namespace') or 'default'}/{meta.get('name')}", gpus))

    _optional_list("configmaps", f"the allocation ConfigMaps in namespace {namespace}", lambda: _consume(
        _pages(lambda **kw: core_v1.list_namespaced_config_map(namespace, **kw), "configmaps",
               stats=stats["configmaps"], label_selector=carrier.SELECTOR, **opts),
        stats["configmaps"], configmap, no_configmaps), findings)
    if foreign:
        shown = sorted(foreign.items())
        names = ", ".join(f"{cm} (names {node})" for cm, node in shown[:8]) + (
            f" … and {len(shown) - 8} more" if len(shown) > 8 else "")
        findings.append(ClusterFinding(
            Severity.WARNING, "foreign-allocation",
            f"{len(shown)} allocation ConfigMap(s) name a node their own name does not (an agent speaking for a "
            f"neighbour, or a copy): {names}; ignored, as the extender ignores them",
            tuple(sorted(set(foreign.values())))))
    _optional_list("pods", "pending pods", lambda: _consume(
        _pages(core_v1.list_pod_for_all_namespaces, "pods", stats=stats["pods"], field_selector=PENDING_SELECTOR,
               **opts),
        stats["pods"], pod, pending.clear), findings)
    if allocations:
        nodes = [NodeInput(n.name, n.labels, n.annotations, n.gpu_capacity, n.unschedulable,
                           allocations.get(n.name)) for n in nodes]
    return ReadResult(nodes, pending, findings, list(stats.values()))
