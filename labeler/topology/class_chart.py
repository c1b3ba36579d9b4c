"""Per-class summary of a GPU fleet: how many nodes and GPUs of each wiring, as rows and as a chart.

Why a building block of its own: ``gputopo audit cluster`` reads every GPU node's labels
and wants one picture of the fleet ("120 nodes of the 8-GPU NVSwitch class, 3 odd ones
out"). The aggregation is pure (labels in, rows out) and the chart is a
:class:`~labeler.topology.scene.Scene`, so the SVG and PNG (:mod:`gputopo.png`) come
from one layout and tests check rows and ``data-*`` attributes, not pixels.

A *class* is the ``topology-class`` label (identically wired nodes share it, see
docs/labels.md); nodes without it are counted under ``unlabelled``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from labeler.topology import labels
from labeler.topology.scene import Group, Item, Rect, Scene, Text, text_width

__all__ = ["UNLABELLED", "ClassRow", "chart_scene", "rows_from_labels"]

UNLABELLED = "unlabelled"
_NODES, _GPUS = "#1f5fa8", "#6a3d9a"


@dataclass(frozen=True, slots=True)
class ClassRow:
    """One topology class: how many nodes and GPUs, what it looks like, and one node of it."""

    cls: str
    nodes: int
    gpus: int
    shape: str  # "8 GPUs · NVLink 8 · PCIe-switch 8 · NUMA 4-4 · NIC pxb"
    example: str = ""  # the first node of the class by name (where to run nccl-tests)


def _shape(lab: Mapping[str, str], prefix: str) -> str:
    def get(key: str) -> str:
        return lab.get(prefix + key, "?")

    if prefix + labels.TOPOLOGY_CLASS not in lab:
        return "no gputopo labels"
    nv = get(labels.SHAPE_NVLINK) if get(labels.NVLINK) == "true" else "none"
    numa = get(labels.NUMA_SHAPE) if prefix + labels.NUMA_SHAPE in lab else "unknown"
    return (f"{get(labels.GPU_COUNT)} GPUs · NVLink {nv} · PCIe-switch {get(labels.SHAPE_PCIE_SWITCH)} · "
            f"NUMA {numa} · NIC {get(labels.NIC_LOCALITY)}")


def rows_from_labels(nodes: Mapping[str, Mapping[str, str]], *, prefix: str = labels.DEFAULT_PREFIX) -> list[ClassRow]:
    """Group nodes (name → labels) by ``topology-class``; most GPUs first, then most nodes, then class.

    A node's GPU count is its ``gpu-count`` label (0 when absent or not a number).
    """
    agg: dict[str, list[str]] = {}
    for name in sorted(nodes):
        cls = nodes[name].get(prefix + labels.TOPOLOGY_CLASS, UNLABELLED)
        agg.setdefault(cls, []).append(name)
    rows = []
    for cls, names in agg.items():
        gpus = 0
        for name in names:
            raw = nodes[name].get(prefix + labels.GPU_COUNT, "0")
            gpus += int(raw) if raw.isdigit() else 0
        rows.append(ClassRow(cls, len(names), gpus, _shape(nodes[names[0]], prefix), names[0]))
    return sorted(rows, key=lambda r: (-r.gpus, -r.nodes, r.cls))


def chart_scene(rows: Sequence[ClassRow], *, title: str = "GPU nodes by topology class") -> Scene:
    """Horizontal bars per class: nodes and GPUs, each scaled to its largest row, with the class's shape."""
    margin, row_h, bar_h, bar_w = 18.0, 52.0, 14.0, 320.0
    label_w = max([text_width(r.shape, 10) for r in rows] + [text_width(f"class {r.cls}", 11, bold=True) for r in rows]
                  + [160.0])
    x_bar = margin + label_w + 16
    max_nodes = max((r.nodes for r in rows), default=1) or 1
    max_gpus = max((r.gpus for r in rows), default=1) or 1
    total_nodes, total_gpus = sum(r.nodes for r in rows), sum(r.gpus for r in rows)
    items: list[Item] = [
        Text(margin, margin + 15, title, 15, bold=True),
        Text(margin, margin + 33, f"{len(rows)} classes · {total_nodes} nodes · {total_gpus} GPUs", 11,
             colour="#37474f"),
        Rect(x_bar, margin + 42, 12, 10, fill=_NODES), Text(x_bar + 16, margin + 51, "nodes", 10),
        Rect(x_bar + 70, margin + 42, 12, 10, fill=_GPUS), Text(x_bar + 86, margin + 51, "GPUs", 10),
    ]
    y = margin + 64
    for k, r in enumerate(rows):
        nodes_w = max(2.0, bar_w * r.nodes / max_nodes)
        gpus_w = max(2.0, bar_w * r.gpus / max_gpus) if r.gpus else 0.0
        cells: list[Item] = [
            Rect(margin - 6, y - 6, x_bar + bar_w + 132 - margin, row_h, fill="#f5f5f5" if k % 2 else "#ffffff"),
            Text(margin, y + 13, f"class {r.cls}", 11, bold=True),
            Text(margin, y + 28, r.shape, 10, colour="#37474f"),
            Rect(x_bar, y + 2, nodes_w, bar_h, fill=_NODES),
            Text(x_bar + nodes_w + 6, y + 13, f"{r.nodes} node{'s' if r.nodes != 1 else ''}", 10),
        ]
        if r.gpus:
            cells += [Rect(x_bar, y + 2 + bar_h + 3, gpus_w, bar_h, fill=_GPUS),
                      Text(x_bar + gpus_w + 6, y + 13 + bar_h + 3, f"{r.gpus} GPUs", 10)]
        if r.example:
            cells.append(Text(margin, y + 41, f"e.g. {r.example}", 9, colour="#757575"))
        items.append(Group(tuple(cells), id=f"class-{k}", cls="class-row",
                           data=(("class", r.cls), ("nodes", str(r.nodes)), ("gpus", str(r.gpus))),
                           title=f"{r.cls}: {r.shape}"))
        y += row_h
    width = x_bar + bar_w + 120 + margin
    return Scene(math.ceil(width), math.ceil(y + margin), Group(tuple(items), id="classes", cls="class-chart"),
                 title=title, meta={"classes": str(len(rows)), "nodes": str(total_nodes), "gpus": str(total_gpus)})
