"""Tables for people: the text output of ``gputopo audit cluster``.

Every value that came from the cluster (node names, reasons, pod names) is printed as plain
:class:`rich.text.Text`, never as rich markup: a label value spelled ``[/bold]`` must print, not
crash the report. Long finding lists are cut per code (``--json`` has them all).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from labeler.topology.findings import Severity
from policy.audit.cluster_audit import ClusterAudit
from policy.audit.cluster_nodes import ClusterFinding, NodeView

__all__ = ["render"]

#: findings printed per code before "… N more"
PER_CODE = 12


def _t(value: Any) -> Text:
    return Text("-" if value is None or value == "" else str(value))


def _table(title: str, *columns: str) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, overflow="fold")
    return t


#: the shapes column: island sizes at nvlink | pcie-switch | host-bridge, then the NUMA groups
SHAPES = "shapes nvlink|switch|bridge|numa"


def _shapes(summary: Any) -> str:
    if summary is None:
        return "-"
    parts = [summary.shape_nvlink, summary.shape_pcie_switch, summary.shape_host_bridge, summary.numa_shape]
    return "|".join("-" if p is None else str(p) for p in parts)


def _age(v: NodeView) -> str:
    if v.age_s is None:
        return v.freshness.value
    return f"{v.freshness.value} {int(v.age_s)}s"


def render(report: ClusterAudit, console: Console, *, nodes: str = "all") -> None:
    doc = report.to_dict()
    s = doc["summary"]
    f = s["findings"]
    console.print(Text(
        f"cluster: {s['nodes']} nodes, {s['gpu_nodes']} GPU nodes ({s['labelled']} labelled, {s['usable']} usable), "
        f"{s['classes']} topology classes; GPUs on usable nodes {s['gpus']}, free {s['free_gpus']}, "
        f"stranded {s['stranded_gpus']}; findings: {f['error']} error, {f['warning']} warning, {f['info']} info"))
    classes = _table("Topology classes", "class", "nodes", "GPU", "GPUs", SHAPES, "status", "free", "stranded",
                     "nccl-tests node")
    for c in report.classes:
        classes.add_row(
            _t(c.topology_class), _t(len(c.nodes)), _t(c.gpu_name),
            _t(None if c.summary is None else c.summary.gpu_count), _t(_shapes(c.summary)),
            _t(" ".join(f"{k} {n}" for k, n in c.statuses.most_common())),
            _t(c.free), _t(c.stranded), _t(None if c.nccl is None else c.nccl.node))
    console.print(classes)
    pools = _table("Pools (pool label, machine type)", "pool", "type", "nodes", "classes", "odd ones out")
    for g in report.pools:
        pools.add_row(_t(g.pool), _t(g.instance_type), _t(len(g.nodes)),
                      _t(", ".join(f"{c} ×{n}" for c, n in g.classes.most_common())),
                      _t(", ".join(g.odd[:6]) + (f" +{len(g.odd) - 6}" if len(g.odd) > 6 else "")))
    console.print(pools)
    if nodes != "none":
        _node_table(report, console, only_findings=nodes == "findings")
    spans = [p for p in report.pods if p.spans or p.crosses_sockets]
    if spans:
        pods = _table("Pods whose GPUs span islands", "pod", "node", "GPUs", "ring bottleneck", "node's best")
        for p in spans:
            pods.add_row(_t(p.pod), _t(p.node), _t(",".join(map(str, p.gpus))),
                         _t(f"{p.level.slug if p.level else '?'} ({p.ring_token})"),
                         _t(p.best.slug if p.best else None))
        console.print(pods)
    else:
        console.print(Text(f"no running pod's GPUs span islands ({len(report.pods)} multi-GPU pods checked)"))
    sizes = ",".join(map(str, report.sizes)) or "none"
    if report.stranded:
        st = _table(f"Stranded GPUs (sizes {sizes}, from {report.sizes_source})", "node", "free", "stranded",
                    "free islands per size")
        for x in report.stranded:
            st.add_row(_t(x.node), _t(",".join(map(str, x.free))), _t(",".join(map(str, x.stranded))),
                       _t("; ".join(f"{k}@{lv.slug}: {'-'.join(map(str, sz))}" for k, lv, sz in x.islands)))
        console.print(st)
    else:
        console.print(Text(f"no GPUs stranded by topology (sizes {sizes}, from {report.sizes_source})"))
    nccl = [c for c in report.classes if c.nccl is not None]
    if nccl:
        nt = _table("nccl-tests: one node per class (all GPUs free, status ok, fresh)", "class", "node", "command",
                    "expected busbw GB/s")
        for c in nccl:
            assert c.nccl is not None
            bw = c.nccl.expected_busbw_gbps
            nt.add_row(_t(c.topology_class), _t(c.nccl.node), _t(c.nccl.command), _t(None if bw is None else f"{bw:g}"))
        console.print(nt)
    _findings(report.findings, console)


def _node_table(report: ClusterAudit, console: Console, *, only_findings: bool) -> None:
    """One line per GPU node in kubectl's plain column style: a rich Table of 5,000 rows takes seconds."""
    named = {n for fd in report.findings for n in fd.nodes}
    header = ("NODE", "CLASS", "STATUS", SHAPES.upper(), "ALLOCATION", "FREE/GPUS", "POOL/TYPE")
    rows: list[tuple[str, ...]] = [header]
    for v in report.views:
        if not v.gpu_node or (only_findings and v.name not in named):
            continue
        free = "-" if v.state is None else f"{len(v.state.free)}/{v.gpu_count if v.gpu_count is not None else '?'}"
        cells = (v.name, v.topology_class, v.status if v.labelled else "unlabelled", _shapes(v.summary), _age(v),
                 free, v.pool or v.instance_type)
        rows.append(tuple("-" if c is None or c == "" else " ".join(str(c).split()) for c in cells))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    title = "GPU nodes named by a finding" if only_findings else "GPU nodes"
    lines = [title] + ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    console.file.write("\n".join(lines) + "\n")


def _findings(findings: list[ClusterFinding], console: Console) -> None:
    if not findings:
        console.print(Text("no findings"))
        return
    grouped: dict[tuple[Severity, str], list[ClusterFinding]] = defaultdict(list)
    for fd in findings:
        grouped[(fd.severity, fd.code)].append(fd)
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    for (sev, code), items in sorted(grouped.items(), key=lambda kv: (order[kv[0][0]], kv[0][1])):
        console.print(Text(f"{sev.value} {code} ({len(items)})", style="bold"))
        for fd in items[:PER_CODE]:
            console.print(Text(f"  {'!' if sev is not Severity.INFO else '-'} {fd.message}"))
        if len(items) > PER_CODE:
            console.print(Text(f"  … {len(items) - PER_CODE} more (--json lists every finding)"))
