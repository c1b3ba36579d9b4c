"""Labels of real machines (corpus outputs and the H200 capture), worked out by hand.

Each expectation below was derived from the file's matrix and affinity columns
by reading them, not from the labeler's output; the comment says how. Link
islands count NVLink hops at every level (an NVLink pair's traffic never
reaches PCIe); NUMA groups come from the NUMA/CPU affinity columns, from link
levels only where a GPU has none (``numa-basis=links``), and are left out when
neither settles them (``numa-basis=unknown``). ``None`` = the label is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from labeler.topology import labels, report, smi_parser

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
CORPUS = FIXTURES / "topo-corpus"
H200 = FIXTURES / "real-captures" / "h200-1gpu-vm" / "nvidia-smi-topo-m.txt"

#: the link-island labels of a board where every GPU pair is NVLink (NVSwitch / all-to-all)
ALL_NVLINK_8 = {
    "nvlink": "true",
    "island-nvlink": "8", "shape-nvlink": "8",
    "island-pcie-switch": "8", "shape-pcie-switch": "8",
    "island-host-bridge": "8", "shape-host-bridge": "8",
}
SINGLES_8 = "1-1-1-1-1-1-1-1"

CASES: dict[str, tuple[Path, dict[str, str | None]]] = {
    # HGX H100 (2-socket NVSwitch board): every pair NV18. NUMA Affinity 0 for GPU0-3, 1 for GPU4-7 -> 4-4.
    # Best NIC per GPU: GPU0/2/4/6 PIX, GPU1/3/5/7 only NODE -> worst is node; no gpudirect.
    "051 HGX H100 8x NV18, 2 sockets": (CORPUS / "051_h100x8-nv18-8nics-dualport-pix-pairs.txt", {
        **ALL_NVLINK_8, "gpu-count": "8", "island-numa": "4", "numa-shape": "4-4", "numa-basis": "affinity",
        "nic-count": "8", "nic-locality": "node", "gpudirect": "false"}),
    # AWS p4d (A100 NVSwitch, no NIC columns): NV12 everywhere; NUMA 0 for GPU0-3, 1 for GPU4-7.
    "013 AWS p4d.24xlarge": (CORPUS / "013_aws-p4d24xl-a100x8-nv12-nonic.txt", {
        **ALL_NVLINK_8, "island-numa": "4", "numa-shape": "4-4", "numa-basis": "affinity",
        "nic-count": "0", "nic-locality": "none", "gpudirect": "false"}),
    # DGX A100 in NPS4: NV12 everywhere; NUMA 3,3,1,1,7,7,5,5 -> four groups of two. Each GPU is PXB to two
    # NICs -> pxb, gpudirect.
    "010 DGX A100 NPS4": (CORPUS / "010_dgx-a100x8-nv12-10nics-pxb-nps4.txt", {
        **ALL_NVLINK_8, "island-numa": "2", "numa-shape": "2-2-2-2", "numa-basis": "affinity",
        "nic-count": "10", "nic-locality": "pxb", "gpudirect": "true"}),
    # DGX-1 V100 (old format: CPU Affinity only): hybrid cube mesh joins all 8 by NVLink hops; CPU lists
    # 0-11,24-35 (GPU0-3) and 12-23,36-47 (GPU4-7) name two NUMA nodes -> 4-4 from affinity (v1 said 8).
    # mlx5_0: PIX to GPU2/3, NODE to GPU0/1, SYS to GPU4-7 -> sys.
    "005 DGX-1 V100": (CORPUS / "005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt", {
        **ALL_NVLINK_8, "island-numa": "4", "numa-shape": "4-4", "numa-basis": "affinity",
        "nic-count": "1", "nic-locality": "sys", "gpudirect": "false"}),
    # 8 GPUs in NV12 bridge pairs; NODE inside a socket, SYS across: pairs at every link level (NODE is not
    # PHB or better). NUMA 0 for GPU0-3, 1 for GPU4-7. GPU4-7 reach the NICs only over SYS -> sys.
    "027 NV12 bridge pairs, 2 sockets": (CORPUS / "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt", {
        "nvlink": "true", "island-nvlink": "2", "shape-nvlink": "2-2-2-2",
        "island-pcie-switch": "2", "shape-pcie-switch": "2-2-2-2",
        "island-host-bridge": "2", "shape-host-bridge": "2-2-2-2",
        "island-numa": "4", "numa-shape": "4-4", "numa-basis": "affinity",
        "nic-count": "2", "nic-locality": "sys", "gpudirect": "false"}),
    # 8x RTX 4090, every GPU pair SYS (an all-SYS PCIe box): no link island above one GPU. NUMA Affinity
    # 0 for GPU0-3, 1 for GPU4-7 -> 4-4 although even same-node pairs are SYS. GPU6 PHB to the NICs, the
    # others SYS -> sys.
    "032 RTX 4090 x8 all SYS": (CORPUS / "032_rtx4090x8-allsys-2nics-tabs.txt", {
        "nvlink": "false", "island-nvlink": "0", "shape-nvlink": SINGLES_8,
        "island-pcie-switch": "1", "shape-pcie-switch": SINGLES_8,
        "island-host-bridge": "1", "shape-host-bridge": SINGLES_8,
        "island-numa": "4", "numa-shape": "4-4", "numa-basis": "affinity",
        "nic-count": "2", "nic-locality": "sys", "gpudirect": "false"}),
    # 4x A10 in a VM: all SYS, but every GPU NUMA Affinity 0 -> one NUMA group of 4.
    "048 A10 x4 VM, all SYS": (CORPUS / "048_a10x4-allsys-2nics-single-numa-vm.txt", {
        "island-nvlink": "0", "shape-nvlink": "1-1-1-1", "shape-pcie-switch": "1-1-1-1",
        "shape-host-bridge": "1-1-1-1", "island-numa": "4", "numa-shape": "4", "numa-basis": "affinity",
        "nic-locality": "sys"}),
    # VMware guest, matrix only (no affinity columns): NV12 pairs, SYS across. Inside a pair only NVLink is
    # known and there is no NIC: whether GPU0 and GPU1 share a NUMA node is not in the text -> unknown.
    "031 VMware A100 x4, no affinity": (CORPUS / "031_vmware-a100-80g-pcie-x4-nv12-pairs-matrixonly.txt", {
        "island-nvlink": "2", "shape-nvlink": "2-2", "shape-pcie-switch": "2-2", "shape-host-bridge": "2-2",
        "island-numa": None, "numa-shape": None, "numa-basis": "unknown", "nic-count": "0"}),
    # H800 with GPU0-3's CPU and NUMA cells fused (affinity unknown there): GPU0/1 PXB and GPU2/3 NODE to
    # NIC0, which is SYS to GPU4-7 (NUMA 1) -> {0,1,2,3} is one group, apart from {4..7}: 4-4 from links.
    "019 H800 fused affinity": (CORPUS / "019_h800x8-nv8-2nics-fused-cpu-numa-affinity.txt", {
        "island-nvlink": "8", "island-numa": "4", "numa-shape": "4-4", "numa-basis": "links",
        "nic-locality": "node"}),
    # A100 with NUMA Affinity "0-7" on six GPUs and "1" on two: the sets overlap, so they do not partition
    # the GPUs (nor do the CPU lists). From links: each pair is PXB to its own two NICs, everything else
    # SYS -> four groups of two.
    "030 A100 overlapping NUMA affinity": (CORPUS / "030_a100x8-11nics-mlx5cols-numa-range-0-7-commented.txt", {
        **ALL_NVLINK_8, "island-numa": "2", "numa-shape": "2-2-2-2", "numa-basis": "links",
        "nic-count": "11", "nic-locality": "pxb", "gpudirect": "true"}),
    # GB200 tray: 4 GPUs NV18; NUMA Affinity 0,3-9,11-17 for GPU0/1 and 1,19-25,27-33 for GPU2/3 (disjoint
    # sets: one Grace each) -> 2-2. Every NIC SYS to every GPU -> sys.
    "038 GB200 tray": (CORPUS / "038_gb200-tray-4gpu-nv18-8nics-gpunumaid-numeric.txt", {
        "island-nvlink": "4", "shape-nvlink": "4", "shape-host-bridge": "4",
        "island-numa": "2", "numa-shape": "2-2", "numa-basis": "affinity",
        "nic-count": "8", "nic-locality": "sys"}),
    # The live H200 VM (ANSI underline around the header): one GPU, NUMA Affinity 0, no NIC.
    "H200 capture": (H200, {
        "gpu-count": "1", "nvlink": "false", "island-nvlink": "0", "shape-nvlink": "1",
        "island-pcie-switch": "1", "shape-pcie-switch": "1", "island-host-bridge": "1", "shape-host-bridge": "1",
        "island-numa": "1", "numa-shape": "1", "numa-basis": "affinity",
        "nic-count": "0", "nic-locality": "none", "gpudirect": "false"}),
}


@pytest.mark.parametrize(("path", "expected"), CASES.values(), ids=CASES.keys())
def test_labels_of_real_machines(path: Path, expected: dict[str, str | None]) -> None:
    got = labels.encode(smi_parser.parse(path.read_text(), source=path.name))
    for key, value in expected.items():
        assert got.get("gputopo.io/" + key) == value, key
    assert labels.decode_labels(got) is not None


#: findings by cause, worked out from the same files (codes; messages are for people)
FINDINGS: dict[str, tuple[Path, dict[str, int]]] = {
    # RTX 4090: one cross-NUMA line for the two groups (not 16 GPU-pair lines), and SYS inside each group
    "032 RTX 4090 x8 all SYS": (CORPUS / "032_rtx4090x8-allsys-2nics-tabs.txt",
                                {"cross-numa": 1, "sys-within-numa": 2}),
    # A10 VM: one NUMA node, all SYS -> no cross-NUMA claim, one SYS-inside-a-node line
    "048 A10 x4 VM": (CORPUS / "048_a10x4-allsys-2nics-single-numa-vm.txt", {"cross-numa": 0, "sys-within-numa": 1}),
    # HGX H100: SYS appears only GPU-to-NIC; GPU pairs are NV18 -> nothing about sockets
    "051 HGX H100": (CORPUS / "051_h100x8-nv18-8nics-dualport-pix-pairs.txt",
                     {"cross-numa": 0, "sys-within-numa": 0}),
    # NV12 bridge pairs on two sockets: one cross-NUMA line
    "027 bridge pairs": (CORPUS / "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt",
                         {"cross-numa": 1, "sys-within-numa": 0}),
    "031 VMware": (CORPUS / "031_vmware-a100-80g-pcie-x4-nv12-pairs-matrixonly.txt", {"numa-unknown": 1}),
    "019 H800": (CORPUS / "019_h800x8-nv8-2nics-fused-cpu-numa-affinity.txt", {"numa-from-links": 1}),
}


@pytest.mark.parametrize(("path", "expected"), FINDINGS.values(), ids=FINDINGS.keys())
def test_findings_are_grouped_per_cause(path: Path, expected: dict[str, int]) -> None:
    found = report.findings(smi_parser.parse(path.read_text()))
    for code, count in expected.items():
        assert sum(1 for f in found if f.code == code) == count, code


def test_topology_class_tells_generations_apart_and_ignores_the_pcie_state() -> None:
    # HGX H100 and HGX B200 print the same NV18 matrix, but ring at 18 x 20.6 vs 18 x 40.1 GB/s
    import bw_machines as m
    from factories import hgx_h100_nv18

    from labeler.topology.model import PcieLink

    bare = hgx_h100_nv18()
    h100 = m.with_facts(bare, m.HOPPER, m.GEN5_X16)
    b200 = m.with_facts(bare, m.BLACKWELL, m.GEN5_X16)
    assert labels.topology_class(h100) != labels.topology_class(b200)
    # the PCIe link trains down at idle: the class must not move with it
    idle = m.with_facts(bare, m.HOPPER, PcieLink(gen=1, max_gen=5, width=16, max_width=16))
    assert labels.topology_class(idle) == labels.topology_class(h100)
    # without GPU facts (a saved `nvidia-smi topo -m`) the class is what it always was: matrix and NUMA only
    assert labels.topology_class(bare) not in (labels.topology_class(h100), labels.topology_class(b200))
