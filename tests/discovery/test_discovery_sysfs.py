"""sysfs source on real directory trees: levels from the PCIe tree alone vs `nvidia-smi`."""

from __future__ import annotations

from pathlib import Path

import pytest
from discovery_support import lay_out, smi_topology, tokens
from machines import DGX_A100, L40S_8X, MACHINES, Machine
from sysfs_tree import build

from labeler.discovery import sysfs
from labeler.discovery.sysfs import PciDevice, pcie_level
from labeler.topology.errors import SourceUnavailable
from labeler.topology.links import LinkLevel
from labeler.topology.serialize import parse_cpulist


def test_l40s_tree_reproduces_the_whole_smi_matrix(tmp_path: Path) -> None:
    """Every GPU↔GPU, GPU↔NIC and NIC↔NIC cell, derived from paths only, equals the smi text."""
    facts = sysfs.probe(lay_out(tmp_path, L40S_8X))
    smi = smi_topology(L40S_8X)
    assert tokens(facts.topology) == tokens(smi)
    assert [n.device for n in facts.topology.nics] == [n.device for n in smi.nics]
    for got, want in zip(facts.topology.gpus, smi.gpus, strict=True):
        assert (got.cpu_affinity, got.numa_affinity) == (want.cpu_affinity, want.numa_affinity)


def test_dgx_a100_tree_reproduces_the_real_corpus_file(tmp_path: Path) -> None:
    """Real DGX A100 output (corpus 010): every non-NVLink cell, and each GPU's NUMA/CPU affinity."""
    facts = sysfs.probe(lay_out(tmp_path, DGX_A100))
    real = smi_topology(DGX_A100)
    got, want = tokens(facts.topology), tokens(real)
    assert len(got) == len(want) == 18
    compared = 0
    for i in range(18):
        for j in range(18):
            if want[i][j] is not None and not want[i][j].startswith("NV"):
                assert got[i][j] == want[i][j], (i, j)
                compared += 1
    assert compared == 18 * 18 - 8 * 7  # everything but the NV12 block
    # the NV12 block hides the PCIe level; the tree says PXB inside a complex, SYS across
    assert [got[0][j] for j in range(8)] == ["X", "PXB", "SYS", "SYS", "SYS", "SYS", "SYS", "SYS"]
    for g, w in zip(facts.topology.gpus, real.gpus, strict=True):
        assert (g.cpu_affinity, g.numa_affinity) == (w.cpu_affinity, w.numa_affinity)
    assert [n.device for n in facts.topology.nics] == [n.device for n in real.nics]


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_inventory(machine: Machine, tmp_path: Path) -> None:
    facts = sysfs.probe(lay_out(tmp_path, machine))
    assert [g.bdf for g in facts.gpus] == [g.bdf for g in machine.gpus]  # no NVSwitch, no BMC VGA
    assert {n.id for n in facts.numa} == set(machine.numa)
    for node in facts.numa:
        assert node.cpus == parse_cpulist(machine.numa[node.id][0])
        assert node.mem_total_kb == machine.numa[node.id][1]
    assert [(n.name, n.bdf, n.rdma, n.netdevs) for n in facts.nics] == [
        (n.name, n.bdf, n.rdma, n.netdevs) for n in sorted(machine.nics, key=lambda n: (not n.rdma,))
    ]
    gpu0 = facts.gpus[0]
    assert gpu0.root_complex is not None and gpu0.chain[-1] == gpu0.bdf


def test_l40s_ethernet_nic_and_vga_are_not_endpoints(tmp_path: Path) -> None:
    facts = sysfs.probe(lay_out(tmp_path, L40S_8X))
    assert "eno1" not in [n.device for n in facts.topology.nics]
    assert "0000:03:00.0" in facts.devices and facts.devices["0000:03:00.0"].vendor == 0x1A03


def _dev(path: str, numa: int | None = 0) -> PciDevice:
    parts = path.split("/")
    return PciDevice(parts[-1], 0x10DE, 0, 0x030200, numa, None, parts[0], tuple(parts[1:]))


RC = "pci0000:15/0000:15:01.0"


@pytest.mark.parametrize(
    ("a", "b", "numa_nodes", "level"),
    [
        # one switch (upstream 16:00.0, downstream ports 17:xx): PIX
        (f"{RC}/0000:16:00.0/0000:17:00.0/0000:18:00.0", f"{RC}/0000:16:00.0/0000:17:01.0/0000:19:00.0", 2, "PIX"),
        # two functions of one card directly on a root port: PIX
        ("pci0000:e0/0000:e0:03.1/0000:e1:00.0", "pci0000:e0/0000:e0:03.1/0000:e1:00.1", 2, "PIX"),
        # two functions below one switch downstream port: PIX
        (f"{RC}/0000:16:00.0/0000:17:00.0/0000:18:00.0", f"{RC}/0000:16:00.0/0000:17:00.0/0000:18:00.1", 2, "PIX"),
        # two-level switch (DGX A100 PEX88096): sub-switches below one top switch: PXB
        (
            f"{RC}/0000:16:00.0/0000:17:00.0/0000:18:00.0/0000:19:00.0/0000:1a:00.0",
            f"{RC}/0000:16:00.0/0000:17:04.0/0000:1b:00.0/0000:1c:00.0/0000:1d:00.0",
            8,
            "PXB",
        ),
        # same sub-switch of a two-level hierarchy: PIX
        (
            f"{RC}/0000:16:00.0/0000:17:00.0/0000:18:00.0/0000:19:00.0/0000:1a:00.0",
            f"{RC}/0000:16:00.0/0000:17:00.0/0000:18:00.0/0000:19:01.0/0000:1b:00.0",
            8,
            "PIX",
        ),
        # different root ports of one root complex (AMD style): PHB
        ("pci0000:40/0000:40:01.1/0000:41:00.0", "pci0000:40/0000:40:03.1/0000:42:00.0", 2, "PHB"),
        # an integrated device on the root complex and a device on a root port: PHB
        ("pci0000:00/0000:00:02.0", "pci0000:00/0000:00:1c.0/0000:01:00.0", 1, "PHB"),
        # different root complexes, one NUMA node (Intel IIO stacks): NODE
        ("pci0000:15/0000:15:01.0/0000:16:00.0", "pci0000:37/0000:37:01.0/0000:38:00.0", 2, "NODE"),
        ("0:same-device", "0:same-device", 2, "X"),
    ],
    ids=[
        "same-switch",
        "multifunction-on-root-port",
        "multifunction-on-ds-port",
        "two-level-switch",
        "same-subswitch",
        "two-root-ports-one-rc",
        "integrated-vs-root-port",
        "two-rcs-one-node",
        "self",
    ],
)
def test_pcie_level_rules(a: str, b: str, numa_nodes: int, level: str) -> None:
    if a == "0:same-device":
        d = _dev(f"{RC}/0000:18:00.0")
        assert pcie_level(d, d, numa_nodes=numa_nodes) is LinkLevel.SELF
        return
    da, db = _dev(a), _dev(b)
    assert pcie_level(da, db, numa_nodes=numa_nodes).token == level  # type: ignore[union-attr]
    assert pcie_level(db, da, numa_nodes=numa_nodes).token == level  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("numa_a", "numa_b", "nodes", "level"),
    [(0, 1, 2, LinkLevel.SYS), (1, 1, 2, LinkLevel.NODE), (None, 1, 2, None), (None, None, 1, LinkLevel.NODE)],
    ids=["two-sockets", "same-node", "unknown-on-2-nodes", "unknown-on-1-node"],
)
def test_numa_rules_across_root_complexes(numa_a: int | None, numa_b: int | None, nodes: int, level: object) -> None:
    a = _dev("pci0000:15/0000:15:01.0/0000:16:00.0", numa_a)
    b = _dev("pci0000:97/0000:97:01.0/0000:98:00.0", numa_b)
    assert pcie_level(a, b, numa_nodes=nodes) is level


def test_numa_minus_one_is_unknown_and_reported(tmp_path: Path) -> None:
    root = lay_out(tmp_path, L40S_8X)
    (root / "sys/bus/pci/devices/0000:9a:00.0/numa_node").write_text("-1\n")
    facts = sysfs.probe(root)
    assert facts.gpus[4].numa_node is None
    assert facts.topology.gpu(4).numa_affinity is None
    assert [f.code for f in facts.findings] == ["numa-unknown"]
    # GPU4 vs GPU0 crosses root complexes and its node is unknown: the tree cannot say
    assert facts.topology.gpu_link(0, 4) is None
    assert facts.topology.gpu_link(4, 5) is not None and facts.topology.gpu_link(4, 5).token == "PIX"


def test_missing_sysfs_is_source_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="sys/bus/pci/devices"):
        sysfs.probe(tmp_path)


def test_a_machine_without_nvidia_gpus_has_an_empty_topology(tmp_path: Path) -> None:
    from dataclasses import replace

    bare = replace(L40S_8X, pci=tuple(fn for fn in L40S_8X.pci if fn.ids[0] != 0x10DE), nics=())
    facts = sysfs.probe(build(tmp_path, bare))
    assert facts.gpus == () and facts.topology.gpus == ()
