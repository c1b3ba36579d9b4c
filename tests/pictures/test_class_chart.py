"""The per-class fleet summary (for `gputopo audit cluster`): rows from node labels, and its chart."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from gallery import CORPUS

from gputopo.png import PNG_SIGNATURE, render_png
from labeler.topology import labels, smi_parser
from labeler.topology.class_chart import UNLABELLED, ClassRow, chart_scene, rows_from_labels
from labeler.topology.scene import to_svg

SVG = "{http://www.w3.org/2000/svg}"


def labels_of(stem: str) -> dict[str, str]:
    (path,) = CORPUS.glob(f"{stem}_*.txt")
    return labels.encode(smi_parser.parse(path.read_text()))


def test_rows_group_nodes_by_topology_class() -> None:
    h100, rtx = labels_of("051"), labels_of("032")
    nodes = {**{f"h100-{i}": h100 for i in range(3)}, "rtx-b": rtx, "rtx-a": rtx,
             "new-node": {"kubernetes.io/os": "linux"}}
    rows = rows_from_labels(nodes)
    assert [(r.cls, r.nodes, r.gpus, r.example) for r in rows] == [
        (h100["gputopo.io/topology-class"], 3, 24, "h100-0"),
        (rtx["gputopo.io/topology-class"], 2, 16, "rtx-a"),  # the first by name: where to run nccl-tests
        (UNLABELLED, 1, 0, "new-node"),
    ]
    # 051: NV18 everywhere, PCIe-switch islands 8 (NVLink hops count), NUMA 4-4, best NIC of GPU1 is NODE
    assert rows[0].shape == "8 GPUs · NVLink 8 · PCIe-switch 8 · NUMA 4-4 · NIC node"
    # 032: every GPU pair SYS, NIC PHB to GPU6 only
    assert rows[1].shape == "8 GPUs · NVLink none · PCIe-switch 1-1-1-1-1-1-1-1 · NUMA 4-4 · NIC sys"
    assert rows[2].shape == "no gputopo labels"


def test_rows_read_a_custom_prefix_and_ignore_a_damaged_count() -> None:
    lab = {"acme.io/topology-class": "abc", "acme.io/gpu-count": "x8"}
    (row,) = rows_from_labels({"n": lab}, prefix="acme.io/")
    assert (row.cls, row.gpus) == ("abc", 0)


def test_chart_has_one_row_per_class_with_its_counts() -> None:
    rows = [ClassRow("830a117ab3", 120, 960, "8 GPUs · NVLink 8", "n1"), ClassRow("f9e13db3a2", 12, 96, "8 GPUs", "n2")]
    scene = chart_scene(rows)
    root = ET.fromstring(to_svg(scene))
    got = [(g.get("data-class"), g.get("data-nodes"), g.get("data-gpus"))
           for g in root.iter(f"{SVG}g") if g.get("class") == "class-row"]
    assert got == [("830a117ab3", "120", "960"), ("f9e13db3a2", "12", "96")]
    assert (root.get("data-nodes"), root.get("data-gpus")) == ("132", "1056")
    data = render_png(scene)
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000


def test_chart_of_an_empty_fleet_is_still_a_picture() -> None:
    root = ET.fromstring(to_svg(chart_scene([])))
    assert root.get("data-classes") == "0"
