"""The machine pictures, checked by structure (ids, classes, data-* attributes), never by pixels.

Expected groups and edges are read off the corpus text by hand (quoted in each test),
not off the drawing code.
"""

from __future__ import annotations

import io
import struct
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from gallery import CORPUS, GALLERY, OUT, picture_of

from gputopo.png import PNG_SIGNATURE, render_png
from labeler.topology import drawing, picture, report, smi_parser
from labeler.topology.errors import TopologyParseError
from labeler.topology.links import Link, LinkLevel
from labeler.topology.model import PcieLink, Topology
from labeler.topology.scene import to_svg

SVG = "{http://www.w3.org/2000/svg}"


def corpus(stem: str) -> Topology:
    (path,) = CORPUS.glob(f"{stem}_*.txt")
    return smi_parser.parse(path.read_text(), source=path.name)


def svg_of(topo: Topology) -> ET.Element:
    return ET.fromstring(picture.render_svg(topo, findings=report.findings(topo)))


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if cls in (g.get("class") or "").split()]


def nvlink_edges(root: ET.Element) -> set[tuple[int, int, int]]:
    return {(int(g.get("data-a", "")), int(g.get("data-b", "")), int(g.get("data-links", "")))
            for g in groups(root, "nvlink")}


def gpus_in(box: ET.Element) -> list[int]:
    return sorted(int(g.get("data-gpu", "")) for g in box.iter(f"{SVG}g") if g.get("class") == "gpu")


def nics_in(box: ET.Element) -> list[str]:
    return sorted(g.get("data-nic", "") for g in box.iter(f"{SVG}g") if g.get("class") == "nic")


def test_dgx1_two_numa_groups_and_the_hybrid_cube_mesh() -> None:
    # 005: CPU Affinity 0-11,24-35 for GPU0-3 and 12-23,36-47 for GPU4-7 (no NUMA column)
    root = svg_of(corpus("005"))
    numa = groups(root, "numa")
    assert [gpus_in(b) for b in numa] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [b.get("data-gpus") for b in numa] == ["0-3", "4-7"]
    # the matrix rows, upper triangle: GPU0 NV1 NV1 NV2 NV2; GPU1 NV2 NV1 . NV2; GPU2 NV2 . . NV1; GPU3 ...NV1;
    # GPU4 NV1 NV1 NV2; GPU5 NV2 NV1; GPU6 NV2
    assert nvlink_edges(root) == {
        (0, 1, 1), (0, 2, 1), (0, 3, 2), (0, 4, 2),
        (1, 2, 2), (1, 3, 1), (1, 5, 2),
        (2, 3, 2), (2, 6, 1),
        (3, 7, 1),
        (4, 5, 1), (4, 6, 1), (4, 7, 2),
        (5, 6, 2), (5, 7, 1),
        (6, 7, 2),
    }
    assert groups(root, "nvswitch") == []  # 6 links per GPU over 4 peers: direct, not a switch
    # mlx5_0 is PIX to GPU2 and GPU3 (NODE to GPU0/1): one PCIe switch holds the three
    (switch,) = groups(root, "pcie-switch")
    assert (gpus_in(switch), nics_in(switch)) == ([2, 3], ["mlx5_0"])
    (between,) = groups(root, "between")
    assert between.get("data-level") == "SYS"


def test_hgx_h100_is_drawn_with_an_nvswitch_and_nic_pairs_under_their_gpu() -> None:
    root = svg_of(corpus("051"))
    assert nvlink_edges(root) == set()  # 28 NV18 pairs are not drawn as 28 edges
    (sw,) = groups(root, "nvswitch")
    assert (sw.get("data-gpus"), sw.get("data-links")) == ("0-7", "18")
    drops = groups(sw, "nvswitch-link")
    assert sorted((int(d.get("data-gpu", "")), d.get("data-links")) for d in drops) == [(g, "18") for g in range(8)]
    # NIC0/1 PIX to GPU0, NIC2/3 to GPU2, NIC4/5 to GPU4, NIC6/7 to GPU6; GPU1/3/5/7 have none at PIX
    switches = groups(root, "pcie-switch")
    assert [(gpus_in(b), nics_in(b)) for b in switches] == [
        ([0], ["mlx5_0", "mlx5_1"]), ([2], ["mlx5_2", "mlx5_3"]),
        ([4], ["mlx5_4", "mlx5_5"]), ([6], ["mlx5_6", "mlx5_7"])]
    assert [gpus_in(b) for b in groups(root, "numa")] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_rtx4090_box_has_no_nvlink_and_says_sys_inside_each_socket() -> None:
    root = svg_of(corpus("032"))
    assert nvlink_edges(root) == set() and groups(root, "nvswitch") == []
    numa = groups(root, "numa")
    assert [gpus_in(b) for b in numa] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    # every GPU pair is SYS, also inside one NUMA node: the box says so
    texts = ["".join(t.itertext()) for b in numa for t in b.iter(f"{SVG}text")]
    assert sum("SYS inside this NUMA node" in t for t in texts) == 2
    # NIC0/NIC1: PIX to each other, PHB to GPU6 only -> a host bridge holding GPU6 and the NIC switch
    (phb,) = groups(root, "host-bridge")
    assert (gpus_in(phb), nics_in(phb)) == ([6], ["NIC0", "NIC1"])
    (pix,) = groups(phb, "pcie-switch")
    assert (gpus_in(pix), nics_in(pix)) == ([], ["NIC0", "NIC1"])


def test_dgx_a100_nps4_four_numa_groups_and_the_storage_nics_apart() -> None:
    root = svg_of(corpus("010"))
    (sw,) = groups(root, "nvswitch")
    assert (sw.get("data-gpus"), sw.get("data-links")) == ("0-7", "12")
    numa = groups(root, "numa")
    # NUMA Affinity 3,3,1,1,7,7,5,5; each complex: 2 GPUs + 2 NICs at PXB
    assert [b.get("data-gpus") for b in numa] == ["0-1", "2-3", "4-5", "6-7"]
    assert [(gpus_in(b), nics_in(b)) for b in groups(root, "pcie-switches")] == [
        ([0, 1], ["mlx5_0", "mlx5_1"]), ([2, 3], ["mlx5_2", "mlx5_3"]),
        ([4, 5], ["mlx5_4", "mlx5_5"]), ([6, 7], ["mlx5_6", "mlx5_7"])]
    (far,) = groups(root, "far-nics")  # mlx5_8/9: SYS to every GPU, PIX to each other
    assert (gpus_in(far), nics_in(far)) == ([], ["mlx5_8", "mlx5_9"])
    assert [b.get("data-level") for b in groups(root, "between")] == ["SYS", "SYS", "SYS"]


@pytest.mark.parametrize(("stem", "switch"), [
    ("038", True),   # GB200 tray: 4 GPUs all NV18 = 54 links each > 18 ports: switches
    ("025", False),  # HGX A100 4-GPU (Redstone): NV4 to each of 3 peers = 12 links: direct mesh
    ("027", False),  # NV12 bridge pairs
])
def test_nvswitch_only_where_the_links_cannot_be_direct(stem: str, switch: bool) -> None:
    w = drawing.analyse(corpus(stem))
    assert bool(w.nvswitch) is switch
    if stem == "025":
        assert {(e.a, e.b, e.links) for e in w.nvlink} == {(a, b, 4) for a in range(4) for b in range(a + 1, 4)}
    if stem == "027":
        assert {(e.a, e.b, e.links) for e in w.nvlink} == {(0, 1, 12), (2, 3, 12), (4, 5, 12), (6, 7, 12)}


def test_a_gpu_with_a_link_down_on_the_fabric_is_marked_and_found() -> None:
    topo = corpus("051")
    rows = [list(r) for r in topo.links]
    for other in range(8):
        if other != 3:
            rows[3][other] = rows[other][3] = Link(LinkLevel.NVLINK, 17)
    hurt = Topology.from_rows(topo.gpus, topo.nics, rows)
    root = svg_of(hurt)
    (sw,) = groups(root, "nvswitch")
    assert sw.get("data-links") == "18"
    assert {d.get("data-gpu"): d.get("data-links") for d in groups(sw, "nvswitch-link")}["3"] == "17"
    assert [f.message for f in report.findings(hurt) if f.code == "nvlink-down"] == [
        "GPU3 reaches the NVSwitch fabric of GPU0-7 with NV17 where the others have NV18: 1 NVLink down per GPU "
        "(bandwidth of every ring through them drops; NVML's per-link state on the node names the links)"]


def test_numa_unknown_is_one_box_saying_so() -> None:
    # 031: a VMware guest printing only the matrix: NV12 pairs, SYS between them, no affinity at all
    root = svg_of(corpus("031"))
    (box,) = groups(root, "numa")
    assert gpus_in(box) == [0, 1, 2, 3]
    assert any("NUMA node unknown" in "".join(t.itertext()) for t in box.iter(f"{SVG}text"))


def test_gpu_cards_show_probe_facts_and_a_downtrained_link() -> None:
    topo = corpus("027")
    gpus = tuple(replace(g, name="NVIDIA A100-PCIE-40GB", pcie=PcieLink(4, 8 if g.index == 5 else 16, 4, 16),
                         mig=g.index == 2) for g in topo.gpus)
    root = svg_of(Topology(gpus, topo.nics, topo.links))
    card = {g.get("data-gpu"): "|".join("".join(t.itertext()) for t in g.iter(f"{SVG}text"))
            for g in groups(root, "gpu")}
    assert card["0"] == "GPU0|A100-PCIE-40GB|PCIe Gen4 x16"
    assert card["5"] == "GPU5|A100-PCIE-40GB|PCIe Gen4 x8 of x16"
    assert card["2"] == "GPU2|A100-PCIE-40GB|PCIe Gen4 x16|MIG enabled"


def test_svg_is_deterministic_and_valid_for_every_corpus_topology() -> None:
    for path in sorted(CORPUS.glob("*.txt")):
        try:
            topo = smi_parser.parse(path.read_text(), source=path.name)
        except TopologyParseError:
            continue  # the refused outputs (golden "error")
        text = picture.render_svg(topo, findings=report.findings(topo))
        assert text == picture.render_svg(topo, findings=report.findings(topo))
        root = ET.fromstring(text)
        assert root.tag == f"{SVG}svg" and float(root.get("width", "0")) > 0
        assert sorted(int(g.get("data-gpu", "")) for g in groups(root, "gpu")) == sorted(topo.gpu_indices), path
        assert len(groups(root, "nic")) == len(topo.nics), path


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_png_is_a_png_of_the_scene_size_and_decodes() -> None:
    import matplotlib.image

    scene = picture.machine_scene(corpus("005"))
    data = render_png(scene, scale=2.0)
    assert _png_size(data) == (round(scene.width * 2), round(scene.height * 2))
    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (round(scene.height * 2), round(scene.width * 2))
    assert len({tuple(p) for p in pixels.reshape(-1, pixels.shape[2])[::97]}) > 20  # drawn on, not blank


@pytest.mark.parametrize("entry", GALLERY, ids=[e.slug for e in GALLERY])
def test_committed_pictures_are_what_the_code_draws(entry: object) -> None:
    """docs/pictures/ is regenerated by `python tests/pictures/gallery.py` (then looked at) after a change."""
    from gallery import Entry

    assert isinstance(entry, Entry)
    topo, found = picture_of(entry)
    scene = picture.machine_scene(topo, title=entry.title, findings=found)
    svg = Path(OUT / f"{entry.slug}.svg").read_text()
    assert svg == to_svg(scene), f"docs/pictures/{entry.slug}.svg is stale: rerun tests/pictures/gallery.py"
    png = Path(OUT / f"{entry.slug}.png").read_bytes()
    assert _png_size(png) == (round(scene.width * 2), round(scene.height * 2))


def test_probed_pictures_carry_the_probe_facts() -> None:
    by_slug = {e.slug: e for e in GALLERY}
    l40s, _ = picture_of(by_slug["l40s-pcie-2socket"])
    root = ET.fromstring(picture.render_svg(l40s))
    card = {g.get("data-gpu"): "|".join("".join(t.itertext()) for t in g.iter(f"{SVG}text"))
            for g in groups(root, "gpu")}
    assert card["0"] == "GPU0|L40S|PCIe Gen4 x16"  # machines.py: NVIDIA L40S, Gen4 x16 (NVML and sysfs agree)
    # one PCIe switch per 2 GPUs + 1 ConnectX-7 (400 Gb/s), two per socket
    assert [(gpus_in(b), nics_in(b)) for b in groups(root, "pcie-switch")] == [
        ([0, 1], ["mlx5_0"]), ([2, 3], ["mlx5_1"]), ([4, 5], ["mlx5_2"]), ([6, 7], ["mlx5_3"])]
    nic = next(g for g in groups(root, "nic") if g.get("data-nic") == "mlx5_0")
    assert "400 Gb/s" in "".join(nic.itertext())
