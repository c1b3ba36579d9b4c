"""``gputopo audit cluster``, the analysis: nodes, pools, classes, pods, stranded GPUs, nccl-tests nodes.

Pure (standard library and the topology core): :func:`audit` takes small records that the
Kubernetes adapter (``gputopo/cluster_reader.py``) built, or that a test wrote by hand, and
returns a :class:`ClusterAudit` whose :meth:`~ClusterAudit.to_dict` is the ``--json`` document.
Finding codes, their severities and the definitions are in docs/audit.md ("audit cluster").

**Pools.** A node's pool is the first of ``pool_keys`` it carries (``key=value``), its type the
first of ``type_keys`` (instance type, else the GFD GPU product). Nodes are grouped by (pool,
type): nodes of one pool and one machine type should be wired alike. The *majority* class of a
group is the class of more than half of its nodes whose status is ok or degraded; the others are
the odd ones out. A group of two or more classes where none has more than half is *split*. Nodes
with neither a pool nor a type label are not compared (unrelated hardware would look odd).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from labeler.topology import labels
from labeler.topology.findings import Severity
from labeler.topology.links import LinkLevel
from policy.audit.cluster_gpus import (
    NcclSuggestion,
    PodSpan,
    Stranded,
    Topologies,
    nccl_suggestion,
    pod_spans,
    running_sizes,
    stranded,
)
from policy.audit.cluster_nodes import AuditConfig, ClusterFinding, Decoder, NodeInput, NodeView, view_node

__all__ = ["SEVERITY_ORDER", "ClassSummary", "ClusterAudit", "PendingPod", "PoolSummary", "audit"]

#: the order ``--fail-on`` compares in
SEVERITY_ORDER = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2}

#: LabelSummary fields that say how a class is wired, with their label names (odd-one-out messages)
_SHAPE_FIELDS = (
    ("gpu_count", labels.GPU_COUNT),
    ("shape_nvlink", labels.SHAPE_NVLINK),
    ("shape_pcie_switch", labels.SHAPE_PCIE_SWITCH),
    ("shape_host_bridge", labels.SHAPE_HOST_BRIDGE),
    ("numa_shape", labels.NUMA_SHAPE),
    ("nic_count", labels.NIC_COUNT),
    ("nic_locality", labels.NIC_LOCALITY),
)


@dataclass(frozen=True, slots=True)
class PendingPod:
    """An unscheduled Pending pod and the GPUs it asks for."""

    key: str  # namespace/name
    gpus: int


@dataclass(slots=True)
class PoolSummary:
    pool: str | None
    instance_type: str | None
    nodes: list[str] = field(default_factory=list)
    classes: Counter[str] = field(default_factory=Counter)
    majority: str | None = None
    odd: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"pool": self.pool, "instance_type": self.instance_type, "nodes": len(self.nodes),
                "classes": dict(self.classes.most_common()), "majority": self.majority, "odd_ones_out": self.odd}


@dataclass(slots=True)
class ClassSummary:
    """One topology class across the cluster (the per-class chart reads :meth:`as_dict`)."""

    topology_class: str
    nodes: list[str] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    summary: labels.LabelSummary | None = None
    gpu_name: str | None = None
    pools: set[str] = field(default_factory=set)
    instance_types: set[str] = field(default_factory=set)
    gpus: int = 0
    free: int = 0
    stranded: int = 0
    pods_spanning: int = 0
    nccl: NcclSuggestion | None = None

    def as_dict(self) -> dict[str, Any]:
        s = self.summary
        shapes = {} if s is None else {key: _label_text(getattr(s, attr)) for attr, key in _SHAPE_FIELDS}
        return {
            "class": self.topology_class, "nodes": len(self.nodes), "gpu_name": self.gpu_name, "shapes": shapes,
            "statuses": dict(self.statuses.most_common()), "pools": sorted(self.pools),
            "instance_types": sorted(self.instance_types), "gpus": self.gpus, "free_gpus": self.free,
            "stranded_gpus": self.stranded, "pods_spanning_islands": self.pods_spanning,
            "nccl": None if self.nccl is None else _nccl_dict(self.nccl),
        }


def _label_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, LinkLevel):
        return value.slug
    return str(value)


def _nccl_dict(s: NcclSuggestion) -> dict[str, Any]:
    return {"node": s.node, "gpus": s.gpus, "command": s.command,
            "node_selector": {"kubernetes.io/hostname": s.node}, "allocation_age_s": _round(s.age_s),
            "expected_busbw_gbps": s.expected_busbw_gbps}


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


@dataclass(slots=True)
class ClusterAudit:
    config: AuditConfig
    views: list[NodeView]
    findings: list[ClusterFinding]
    pools: list[PoolSummary]
    classes: list[ClassSummary]
    pods: list[PodSpan]
    stranded: list[Stranded]
    sizes: tuple[int, ...]
    sizes_source: str  # given | pending | running | none
    pending: int
    nodes_listed: int

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), key=SEVERITY_ORDER.__getitem__, default=None)

    def to_dict(self) -> dict[str, Any]:
        gpu_views = [v for v in self.views if v.gpu_node]
        counts = Counter(f.severity.value for f in self.findings)
        return {
            "summary": {
                "nodes": self.nodes_listed, "gpu_nodes": len(gpu_views),
                "labelled": sum(1 for v in gpu_views if v.labelled),
                "usable": sum(1 for v in gpu_views if v.usable), "classes": len(self.classes),
                "gpus": sum(v.gpu_count or 0 for v in gpu_views if v.usable),
                "free_gpus": sum(len(v.state.free) for v in gpu_views if v.usable and v.state is not None),
                "stranded_gpus": sum(len(s.stranded) for s in self.stranded),
                "pods_multi_gpu": len(self.pods),
                "pods_spanning_islands": sum(1 for p in self.pods if p.spans),
                "pods_crossing_sockets": sum(1 for p in self.pods if p.crosses_sockets),
                "pods_sys_within_numa": sum(1 for p in self.pods if p.sys_within_numa),
                "findings": {sev.value: counts.get(sev.value, 0) for sev in SEVERITY_ORDER},
            },
            "settings": {
                "prefix": self.config.prefix, "now": self.config.now,
                "allocation_max_age_seconds": self.config.allocation_max_age_s,
                "allocation_refresh_seconds": self.config.allocation_refresh_s,
                "pool_keys": list(self.config.pool_keys), "type_keys": list(self.config.type_keys),
            },
            "nodes": [_node_dict(v) for v in gpu_views],
            "pools": [p.as_dict() for p in self.pools],
            "classes": [c.as_dict() for c in self.classes],
            "pods": [_pod_dict(p) for p in self.pods],
            "stranded": {
                "sizes": list(self.sizes), "sizes_from": self.sizes_source, "pending_gpu_pods": self.pending,
                "nodes": [{"node": s.node, "free": list(s.free), "stranded": list(s.stranded),
                           "islands": [{"size": k, "level": lv.slug, "free_islands": list(sz)}
                                       for k, lv, sz in s.islands]} for s in self.stranded],
            },
            "nccl": [{"class": c.topology_class, **_nccl_dict(c.nccl)} for c in self.classes if c.nccl is not None],
            "findings": [f.as_dict() for f in self.findings],
        }


def _node_dict(v: NodeView) -> dict[str, Any]:
    s = v.summary
    shapes = {} if s is None else {
        "nvlink": s.shape_nvlink, "pcie-switch": s.shape_pcie_switch, "host-bridge": s.shape_host_bridge,
        "numa": s.numa_shape,
    }
    alloc: dict[str, Any] = {"source": v.allocation_source, "freshness": v.freshness.value,
                             "ts": None if v.state is None else v.state.observed_at, "age_s": _round(v.age_s)}
    if v.state is not None:
        alloc["free"] = sorted(v.state.free)
        alloc["used"] = {str(g): pod for g, pod in sorted(v.state.used.items())}
    return {
        "name": v.name, "labelled": v.labelled, "state": v.node_state.value, "usable": v.usable, "pool": v.pool,
        "instance_type": v.instance_type,
        "class": v.topology_class, "status": v.status, "status_reason": v.status_reason, "schema": v.schema,
        "gpus": v.gpu_count, "gpu_capacity": v.gpu_capacity, "gpu_name": v.gpu_name, "shapes": shapes,
        "unschedulable": v.unschedulable, "allocation": alloc,
    }


def _pod_dict(p: PodSpan) -> dict[str, Any]:
    return {"pod": p.pod, "node": p.node, "gpus": list(p.gpus),
            "level": None if p.level is None else p.level.slug, "ring_bottleneck": p.ring_token,
            "best_level": None if p.best is None else p.best.slug,
            "spans_islands": p.spans, "crosses_sockets": p.crosses_sockets}


def audit(
    nodes: Iterable[NodeInput],
    pending: Sequence[PendingPod],
    config: AuditConfig,
    *,
    input_findings: Sequence[ClusterFinding] = (),
) -> ClusterAudit:
    """The whole analysis. ``input_findings``: what the adapter could not read (kept first)."""
    decoder = Decoder(config.prefix)
    findings: list[ClusterFinding] = list(input_findings)
    views: list[NodeView] = []
    listed = 0
    for inp in nodes:
        listed += 1
        view, found = view_node(inp, config, decoder)
        views.append(view)
        findings.extend(found)
    views.sort(key=lambda v: v.name)
    topos = Topologies()
    pools = _pools(views, findings)
    pods = pod_spans(views, topos)
    findings.extend(_pod_findings(pods))
    sizes, source = _demand(views, pending, config)
    stuck = [s for v in views if (s := stranded(v, sizes, topos)) is not None]
    findings.extend(_stranded_findings(stuck, sizes, source))
    classes = _classes(views, pods, stuck, findings)
    ours = sorted(findings[len(input_findings):], key=lambda f: (
        -SEVERITY_ORDER[f.severity], f.code, f.nodes[:1], f.pod or ""))
    findings[len(input_findings):] = ours
    return ClusterAudit(config, views, findings, pools, classes, pods, stuck, sizes, source,
                        sum(1 for p in pending if p.gpus > 0), listed)


def _demand(views: Sequence[NodeView], pending: Sequence[PendingPod], cfg: AuditConfig) -> tuple[tuple[int, ...], str]:
    if cfg.sizes is not None:
        return tuple(sorted(set(cfg.sizes))), "given"
    asked = sorted({p.gpus for p in pending if p.gpus > 0})
    if asked:
        return tuple(asked), "pending"
    seen = running_sizes(views)
    if seen:
        return tuple(sorted(seen)), "running"
    return (), "none"


def _pools(views: Sequence[NodeView], findings: list[ClusterFinding]) -> list[PoolSummary]:
    groups: dict[tuple[str | None, str | None], PoolSummary] = {}
    for v in views:
        if not v.gpu_node:
            continue
        key = (v.pool, v.instance_type)
        g = groups.setdefault(key, PoolSummary(*key))
        g.nodes.append(v.name)
        if v.topology_class and v.status in (labels.Status.OK, labels.Status.DEGRADED):
            g.classes[v.topology_class] += 1
    by_name = {v.name: v for v in views}
    for g in groups.values():
        if (g.pool is None and g.instance_type is None) or len(g.classes) < 2:
            g.majority = next(iter(g.classes), None) if len(g.classes) == 1 else None
            continue
        where = _where(g)
        voters = sum(g.classes.values())
        top, n = g.classes.most_common(1)[0]
        if 2 * n <= voters:
            names = [v for v in g.nodes if by_name[v].topology_class in g.classes
                     and by_name[v].status in (labels.Status.OK, labels.Status.DEGRADED)]
            split = ", ".join(f"{c} ×{k}" for c, k in g.classes.most_common())
            findings.append(ClusterFinding(Severity.WARNING, "pool-split",
                                           f"{where}: no class has a majority ({split})", tuple(names)))
            continue
        g.majority = top
        ref = next((s for n_ in g.nodes if by_name[n_].topology_class == top
                    and (s := by_name[n_].summary) is not None), None)
        for cls, count in sorted(g.classes.items()):
            if cls == top:
                continue
            odd = [n_ for n_ in g.nodes if by_name[n_].topology_class == cls
                   and by_name[n_].status in (labels.Status.OK, labels.Status.DEGRADED)]
            g.odd.extend(odd)
            diff = _shape_diff(by_name[odd[0]].summary, ref)
            status = Counter(str(by_name[n_].status) for n_ in odd)
            degraded = f"; {status['degraded']} of them degraded" if status.get("degraded") else ""
            findings.append(ClusterFinding(
                Severity.WARNING, "odd-one-out",
                f"{where}: {count} of {voters} nodes {'has' if count == 1 else 'have'} class {cls} where the "
                f"majority ({n}) has {top}: "
                f"{diff}{degraded}: {_names(odd)}",
                tuple(odd), topology_class=cls))
        g.odd.sort()
    return sorted(groups.values(), key=lambda g: (g.pool or "", g.instance_type or ""))


def _where(g: PoolSummary) -> str:
    parts = [x for x in (g.pool, None if g.instance_type is None else f"type {g.instance_type}") if x]
    return "pool " + ", ".join(parts) if g.pool else ", ".join(parts)


def _shape_diff(odd: labels.LabelSummary | None, ref: labels.LabelSummary | None) -> str:
    if odd is None or ref is None:
        return "labels unreadable, compared by class only"
    diffs = [f"{key} {_label_text(getattr(odd, attr))} vs {_label_text(getattr(ref, attr))}"
             for attr, key in _SHAPE_FIELDS if getattr(odd, attr) != getattr(ref, attr)]
    return ", ".join(diffs) if diffs else "same shapes; the link matrix, NICs or NUMA affinity differ"


def _names(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} … and {len(names) - limit} more"


def _pod_findings(pods: Sequence[PodSpan]) -> list[ClusterFinding]:
    out = []
    for p in pods:
        gpus = ",".join(map(str, p.gpus))
        best = "unknown" if p.best is None else p.best.slug
        if p.crosses_sockets:
            how = (f"the node offers {best} for {len(p.gpus)} GPUs" if p.spans
                   else f"one NUMA node of this node holds {len(p.gpus)} GPUs" if p.numa_fits
                   else f"unavoidable: no {len(p.gpus)} GPUs of this node share a NUMA node")
            out.append(ClusterFinding(
                Severity.WARNING if p.spans or p.numa_fits else Severity.INFO, "pod-crosses-sockets",
                f"{p.node}: pod {p.pod} holds GPUs {gpus} on different NUMA nodes whose NCCL ring crosses "
                f"sockets (SYS); {how}", (p.node,), pod=p.pod))
        elif p.spans:
            level = "unknown" if p.level is None else p.level.slug
            out.append(ClusterFinding(
                Severity.WARNING, "pod-spans-islands",
                f"{p.node}: pod {p.pod} holds GPUs {gpus} ringing at {level} ({p.ring_token}); "
                f"the node offers {best} for {len(p.gpus)} GPUs",
                (p.node,), pod=p.pod))
        elif p.sys_within_numa:
            out.append(ClusterFinding(
                Severity.INFO, "pod-sys-within-numa",
                f"{p.node}: pod {p.pod} holds GPUs {gpus} of one NUMA node whose NCCL ring has a SYS hop all the "
                f"same (the best this node offers for {len(p.gpus)} GPUs; see the node's sys-within-numa finding)",
                (p.node,), pod=p.pod))
    return out


def _stranded_findings(stuck: Sequence[Stranded], sizes: Sequence[int], source: str) -> list[ClusterFinding]:
    sev = Severity.WARNING if source == "pending" else Severity.INFO
    what = {"pending": "pending pods ask for", "running": "running pods hold", "given": "given"}.get(source, "")
    out = []
    for s in stuck:
        where = "; ".join(f"at {lv.slug} (this node's best for {k} GPUs) the free GPUs form islands of "
                          f"{'-'.join(map(str, sz))}" for k, lv, sz in s.islands)
        out.append(ClusterFinding(
            sev, "stranded",
            f"{s.node}: free GPUs {','.join(map(str, s.stranded))} are stranded for sizes "
            f"{','.join(map(str, sizes))} ({what}): {where or 'no island large enough'}",
            (s.node,)))
    return out


def _classes(views: Sequence[NodeView], pods: Sequence[PodSpan], stuck: Sequence[Stranded],
             findings: list[ClusterFinding]) -> list[ClassSummary]:
    by_class: dict[str, ClassSummary] = {}
    members: dict[str, list[NodeView]] = defaultdict(list)
    for v in views:
        if not v.labelled or not v.topology_class:
            continue
        c = by_class.setdefault(v.topology_class, ClassSummary(v.topology_class))
        members[v.topology_class].append(v)
        c.nodes.append(v.name)
        c.statuses[str(v.status)] += 1
        if c.summary is None and v.summary is not None and v.status != labels.Status.ERROR:
            c.summary = v.summary
        c.gpu_name = c.gpu_name or v.gpu_name
        if v.pool:
            c.pools.add(v.pool)
        if v.instance_type:
            c.instance_types.add(v.instance_type)
        if v.usable and v.state is not None:
            c.gpus += v.gpu_count or 0
            c.free += len(v.state.free)
    class_of = {v.name: v.topology_class for v in views}
    for s in stuck:
        if (cls := class_of.get(s.node)) in by_class:
            by_class[cls].stranded += len(s.stranded)
    for p in pods:
        if p.spans and (cls := class_of.get(p.node)) in by_class:
            by_class[cls].pods_spanning += 1
    for cls, c in by_class.items():
        c.nccl = nccl_suggestion(members[cls])
        if c.nccl is None:
            findings.append(ClusterFinding(
                Severity.INFO, "no-nccl-candidate",
                f"class {cls}: no node is healthy (status ok, schedulable, allocation fresh) with every GPU free "
                f"to run nccl-tests on: {_names(c.nodes)}", tuple(c.nodes), topology_class=cls))
    return sorted(by_class.values(), key=lambda c: (-len(c.nodes), c.topology_class))
