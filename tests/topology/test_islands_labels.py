"""Islands, NIC locality and the v2 label schema, table-driven over named machines.

The corpus machines (real `nvidia-smi topo -m` outputs) are in
``test_labels_real_machines.py``; these are the factories of ``factories.py``.
"""

from __future__ import annotations

import itertools
import json

import factories
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeler.topology import allocation, islands, labels, nic_locality, serialize
from labeler.topology.errors import CodecError
from labeler.topology.links import Link, LinkLevel
from labeler.topology.model import P2P, Gpu, Nic, PcieLink, Topology

L = LinkLevel

ISLAND_CASES = [
    # DGX-1: every GPU reaches every other over NVLink hops -> one 8-GPU NVLink island.
    ("dgx1_v100", factories.dgx1_v100, {L.NVLINK: [list(range(8))], L.PIX: [list(range(8))]}),
    # 4 switches of 2 -> PIX pairs; NODE joins a socket's 2 switches; SYS joins all.
    (
        "pcie8_4switch",
        factories.pcie_8x_4switch_2socket,
        {
            L.NVLINK: [[g] for g in range(8)],
            L.PIX: [[0, 1], [2, 3], [4, 5], [6, 7]],
            L.PHB: [[0, 1], [2, 3], [4, 5], [6, 7]],
            L.NODE: [[0, 1, 2, 3], [4, 5, 6, 7]],
            L.SYS: [list(range(8))],
        },
    ),
    # Bridge pairs: NVLink pairs, NODE per socket.
    (
        "bridge_pairs",
        factories.nvlink_bridge_pairs_8x,
        {L.NVLINK: [[0, 1], [2, 3], [4, 5], [6, 7]], L.NODE: [[0, 1, 2, 3], [4, 5, 6, 7]]},
    ),
    # All SYS: nothing joins below SYS.
    ("rtx4090_allsys", factories.rtx4090_8x_allsys, {L.NODE: [[g] for g in range(8)], L.SYS: [list(range(8))]}),
]


@pytest.mark.parametrize(("factory", "expected"), [c[1:] for c in ISLAND_CASES], ids=[c[0] for c in ISLAND_CASES])
def test_islands(factory, expected) -> None:  # type: ignore[no-untyped-def]
    got = islands.compute(factory())
    for level, groups in expected.items():
        assert got[level] == groups


@pytest.mark.parametrize(
    "factory",
    [
        factories.dgx1_v100,
        factories.pcie_8x_4switch_2socket,
        factories.nvlink_bridge_pairs_8x,
        factories.pcie_16x_8switch,
    ],
)
def test_islands_nest(factory) -> None:  # type: ignore[no-untyped-def]
    got = islands.compute(factory())
    levels = list(got)
    for tighter, looser in itertools.pairwise(levels):
        for group in got[tighter]:
            assert any(set(group) <= set(big) for big in got[looser])


LABEL_CASES = [
    # DGX-1: one NVLink island of 8 (cube-mesh) -> every link-island label 8, shape "8" (NVLink hops count at
    # the PCIe levels); GPU0-3 on NUMA 0, GPU4-7 on NUMA 1 -> numa-shape 4-4 from affinity (v1 said 8: NVLink
    # was taken as "better than NODE"). The only NIC is PIX to GPU2/3, NODE to GPU0/1 and SYS to GPU4-7 ->
    # worst best-level = sys, no gpudirect.
    (
        "dgx1_v100",
        factories.dgx1_v100,
        {
            "gpu-count": "8",
            "nvlink": "true",
            "island-nvlink": "8",
            "shape-nvlink": "8",
            "island-pcie-switch": "8",
            "shape-pcie-switch": "8",
            "island-numa": "4",
            "numa-shape": "4-4",
            "numa-basis": "affinity",
            "nic-count": "1",
            "nic-locality": "sys",
            "gpudirect": "false",
        },
    ),
    # L40S-class: PIX pairs (island-pcie-switch 2), sockets of 4, every GPU has a PIX NIC.
    (
        "pcie8_4switch",
        factories.pcie_8x_4switch_2socket,
        {
            "nvlink": "false",
            "island-nvlink": "0",
            "shape-nvlink": "1-1-1-1-1-1-1-1",
            "island-pcie-switch": "2",
            "shape-pcie-switch": "2-2-2-2",
            "island-host-bridge": "2",
            "shape-host-bridge": "2-2-2-2",
            "island-numa": "4",
            "numa-shape": "4-4",
            "numa-basis": "affinity",
            "nic-count": "4",
            "nic-locality": "pix",
            "gpudirect": "true",
        },
    ),
    # Bridge pairs: NVLink islands of 2; GPUs 0-3 on NUMA 0, 4-7 on NUMA 1.
    (
        "bridge_pairs",
        factories.nvlink_bridge_pairs_8x,
        {
            "nvlink": "true",
            "island-nvlink": "2",
            "shape-nvlink": "2-2-2-2",
            "shape-pcie-switch": "2-2-2-2",
            "island-numa": "4",
            "numa-shape": "4-4",
            "numa-basis": "affinity",
            "nic-count": "0",
            "nic-locality": "none",
            "gpudirect": "false",
        },
    ),
    # 16 PCIe, no affinity in the factory: PIX pairs, PHB quads; NUMA from links: NODE joins eights, SYS
    # separates them -> 8-8, and the basis label says it came from links.
    (
        "pcie16",
        factories.pcie_16x_8switch,
        {
            "island-pcie-switch": "2",
            "shape-pcie-switch": "2-2-2-2-2-2-2-2",
            "island-host-bridge": "4",
            "shape-host-bridge": "4-4-4-4",
            "island-numa": "8",
            "numa-shape": "8-8",
            "numa-basis": "links",
        },
    ),
    # All SYS, no affinity: SYS separates every GPU -> 8 NUMA groups of one, from links.
    (
        "rtx4090_allsys",
        factories.rtx4090_8x_allsys,
        {"island-numa": "1", "numa-shape": "1-1-1-1-1-1-1-1", "numa-basis": "links"},
    ),
    # NVSwitch, no affinity, no NIC: nothing tells the NUMA groups apart -> not published.
    (
        "hgx_h100_no_affinity",
        factories.hgx_h100_nv18,
        {"island-nvlink": "8", "shape-nvlink": "8", "island-numa": None, "numa-shape": None, "numa-basis": "unknown"},
    ),
]


@pytest.mark.parametrize(("factory", "expected"), [c[1:] for c in LABEL_CASES], ids=[c[0] for c in LABEL_CASES])
def test_labels(factory, expected) -> None:  # type: ignore[no-untyped-def]
    got = labels.encode(factory())
    for key, value in expected.items():
        assert got.get("gputopo.io/" + key) == value, key
    assert got["gputopo.io/status"] == "ok" and got["gputopo.io/schema"] == "v2"
    for key, value in got.items():
        assert labels.is_valid_label_key(key) and labels.is_valid_label_value(value)


def test_topology_class_groups_identical_wiring() -> None:
    a, b = factories.pcie_8x_4switch_2socket(), factories.pcie_8x_4switch_2socket()
    # same wiring, different identities: bus ids and names do not change the class
    renamed = Topology(
        tuple(
            Gpu(g.index, name="NVIDIA L40S", bus_id=f"0000:{g.index:02x}:00.0", numa_affinity=g.numa_affinity)
            for g in b.gpus
        ),
        b.nics,
        b.links,
    )
    assert labels.topology_class(a) == labels.topology_class(renamed)
    assert labels.topology_class(a) != labels.topology_class(factories.nvlink_bridge_pairs_8x())


def test_custom_prefix_and_ownership() -> None:
    got = labels.encode(factories.hgx_h100_nv18(), prefix="topo.example.com/")
    assert all(k.startswith("topo.example.com/") for k in got)
    assert labels.owns("topo.example.com/gpu-count", prefix="topo.example.com/")
    assert not labels.owns("nvidia.com/gpu.count", prefix="topo.example.com/")
    with pytest.raises(ValueError):
        labels.validate_prefix("Not A Prefix")
    with pytest.raises(ValueError):
        labels.validate_prefix("gputopo.io")


def test_status_labels_for_a_node_without_gpu() -> None:
    got = labels.status_labels(labels.Status.ERROR) | labels.status_annotations("no NVIDIA GPU found")
    assert got == {
        "gputopo.io/schema": "v2",
        "gputopo.io/status": "error",
        "gputopo.io/status-reason": "no NVIDIA GPU found",
    }
    assert labels.decode_labels(labels.status_labels(labels.Status.ERROR)) is None


def test_nic_locality_names_nearest_nics() -> None:
    loc = nic_locality.compute(factories.dgx1_v100())
    assert loc[2] == nic_locality.GpuNicLocality(L.PIX, ("mlx5_0",))
    assert loc[0].level is L.NODE and loc[7].level is L.SYS
    assert nic_locality.compute(factories.hgx_h100_nv18()) == {}


def test_damaged_annotations_raise_codec_error() -> None:
    assert labels.decode_topology({}) is None
    for junk in (
        "{",
        "[]",
        '{"v":3}',
        '{"v":2}',
        '{"v":1,"gpus":[{"index":0}],"links":[["PIX"]]}',
        '{"v":2,"gpus":[{"index":0},{"index":1}],"nics":[],"links":[]}',  # one row missing
        '{"v":2,"gpus":[{"index":0},{"index":1}],"nics":[],"links":["PIX SYS"]}',  # one cell too many
        '{"v":2,"gpus":[{"index":0},{"index":1}],"nics":[],"links":["BOGUS"]}',
        '{"v":2,"gpus":[{"index":0},{"index":1}],"nics":[],"links":["X"]}',  # X off the diagonal
        '{"v":2,"gpus":[{"index":0},{"index":1}],"nics":[],"links":["PIX"],"p2p":"MAYBE"}',
        '{"v":2,"gpus":[{"index":0,"pcie":[9,16,5,16]}],"nics":[],"links":[]}',  # no PCIe Gen9
        '{"v":2,"gpus":[{"index":0,"pcie":"gen5"}],"nics":[],"links":[]}',
        '{"v":2,"common":{"uuid":"GPU-1"},"gpus":[{"index":0}],"nics":[],"links":[]}',  # uuid is per GPU
        '{"v":2,"gpus":[{"index":"0"}],"nics":[],"links":[]}',
        '{"v":2,"gpus":[{"index":0}],"nics":[{"rate_mbps":"fast"}],"links":["SYS"]}',
        '{"v":2,"gpus":[{"index":0,"mig":1}],"nics":[],"links":[]}',  # MIG mode is true/false, not 1
    ):
        with pytest.raises(CodecError):
            labels.decode_topology({"gputopo.io/topology": junk})


def test_v1_annotation_still_decodes() -> None:
    """An annotation written by a v1 agent (full square matrix, JSON tokens) reads into the same model."""
    v1 = (
        '{"gpus":[{"cpu_affinity":"0-15","index":0,"numa_affinity":"0"},{"cpu_affinity":"16-31","index":1,'
        '"numa_affinity":"1"}],"links":[["X","NV4","PIX"],["NV4","X",null],["PIX",null,"X"]],'
        '"nics":[{"column":"NIC0","device":"mlx5_0"}],"v":1}'
    )
    topo = labels.decode_topology({"gputopo.io/topology": v1})
    assert topo is not None
    assert (str(topo.gpu_link(0, 1)), str(topo.gpu_nic_link(0, 0)), topo.gpu_nic_link(1, 0)) == ("NV4", "PIX", None)
    assert topo.nics[0].device == "mlx5_0" and topo.gpu(1).numa_node == 1
    assert labels.decode_topology(labels.encode_annotations(topo)) == topo  # and re-encodes as v2


def test_v1_labels_still_decode() -> None:
    v1 = {
        "gputopo.io/schema": "v1", "gputopo.io/status": "ok", "gputopo.io/gpu-count": "8",
        "gputopo.io/nvlink": "true", "gputopo.io/island-nvlink": "8", "gputopo.io/island-pcie-switch": "8",
        "gputopo.io/island-host-bridge": "8", "gputopo.io/island-numa": "8", "gputopo.io/numa-shape": "8",
        "gputopo.io/nic-count": "0", "gputopo.io/nic-locality": "none", "gputopo.io/gpudirect": "false",
        "gputopo.io/topology-class": "0123456789",
    }
    got = labels.decode_labels(v1)
    assert got is not None and got.schema == "v1" and got.shape_nvlink is None and got.numa_basis is None
    assert labels.decode_labels({**v1, "gputopo.io/schema": "v3"}) is None


# -- property: encode -> decode round trips on arbitrary valid topologies ------------------

TOKENS = ["NV1", "NV2", "NV4", "NV12", "NV18", "PIX", "PXB", "PHB", "NODE", "SYS", None]
NIC_TOKENS = ["PIX", "PXB", "PHB", "NODE", "SYS", None]


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    n_gpu = draw(st.integers(1, 10))
    n_nic = draw(st.integers(0, 4))
    n = n_gpu + n_nic
    rows: list[list[Link | None]] = [[None] * n for _ in range(n)]
    from labeler.topology.links import SELF, parse_link_token

    for i in range(n):
        rows[i][i] = SELF
        for j in range(i + 1, n):
            pool = TOKENS if j < n_gpu else NIC_TOKENS
            tok = draw(st.sampled_from(pool))
            cell = None if tok is None else parse_link_token(tok)
            rows[i][j] = rows[j][i] = cell
    numa = draw(st.lists(st.one_of(st.none(), st.integers(0, 3)), min_size=n_gpu, max_size=n_gpu))
    same = draw(st.booleans())  # facts equal on every GPU exercise the "common" block
    gens, widths = st.one_of(st.none(), st.integers(1, 6)), st.one_of(st.none(), st.sampled_from([4, 8, 16]))

    def facts() -> dict[str, object]:
        return {
            "name": draw(st.sampled_from([None, "NVIDIA H100 80GB HBM3", "NVIDIA L40S"])),
            "arch": draw(st.sampled_from([None, "hopper", "ada"])),
            "cc": draw(st.sampled_from([None, "9.0", "8.9"])),
            "nvlink_version": draw(st.sampled_from([None, "4.0"])),
            "pcie": draw(st.one_of(st.none(), st.builds(PcieLink, gens, widths, gens, widths))),
            "mig": draw(st.sampled_from([None, False, True])),
        }

    shared = facts()
    gpus = [
        Gpu(
            index=i,
            numa_affinity=None if numa[i] is None else frozenset({numa[i]}),
            cpu_affinity=None if numa[i] is None else frozenset(range(numa[i] * 8, numa[i] * 8 + 8)),
            uuid=draw(st.sampled_from([None, f"GPU-{i:04d}"])),
            **(shared if same else facts()),  # type: ignore[arg-type]
        )
        for i in range(n_gpu)
    ]
    nics = [
        Nic(
            column=draw(st.sampled_from([f"NIC{i}", f"mlx5_{i}"])),
            device=draw(st.sampled_from([None, f"mlx5_{i}", f"mlx5_bond_{i}"])),
            rate_mbps=draw(st.sampled_from([None, 100000, 400000])),
        )
        for i in range(n_nic)
    ]
    statuses = [None, *P2P]
    p2p: list[list[P2P | None]] = [[None] * n_gpu for _ in range(n_gpu)]
    if draw(st.booleans()):
        for i in range(n_gpu):
            for j in range(i + 1, n_gpu):
                p2p[i][j] = p2p[j][i] = draw(st.sampled_from(statuses))
    return Topology.from_rows(gpus, nics, rows, p2p=p2p)


@settings(max_examples=150, deadline=None)
@given(topologies())
def test_labels_and_annotation_round_trip(topo: Topology) -> None:
    enc = labels.encode(topo)
    for key, value in enc.items():
        assert labels.is_valid_label_key(key), key
        assert labels.is_valid_label_value(value), (key, value)
    assert labels.decode_labels(enc) == labels.summarize(topo)
    ann = labels.encode_annotations(topo)
    assert labels.decode_topology(ann) == topo
    assert serialize.from_dict(json.loads(json.dumps(serialize.to_dict(topo)))) == topo


@settings(max_examples=100, deadline=None)
@given(st.frozensets(st.integers(0, 15)), st.integers(0, 2_000_000_000))
def test_allocation_round_trip(free: frozenset[int], ts: int) -> None:
    used = {g: f"ns/pod-{g}" for g in range(16) if g not in free}
    state = allocation.AllocationState(free, used, ts)
    assert allocation.decode(allocation.encode(state)) == state


def test_allocation_rejects_overlap_and_junk() -> None:
    with pytest.raises(CodecError):
        allocation.decode('{"v":1,"free":"0-1","used":{"1":"a/b"}}')
    for junk in ("", "null", '{"v":9,"free":""}', '{"v":1}', '{"v":1,"free":"x"}'):
        with pytest.raises(CodecError):
            allocation.decode(junk)
