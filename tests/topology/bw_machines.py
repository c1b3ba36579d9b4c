"""Named machines with the topology facts v2 a probe would report, for the bandwidth model's tests.

Matrices come from the corpus (read with the product's reader) or from
``factories``; the facts (architecture, compute capability, NVLink version, PCIe
link, P2P, NIC rates) are what NVML/sysfs report for that GPU model, set here by
hand because `nvidia-smi topo -m` text carries none of them.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import factories

from labeler.topology import smi_parser
from labeler.topology.links import Link, parse_link_token
from labeler.topology.model import P2P, Gpu, Nic, PcieLink, Topology

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "topo-corpus"

# (arch, compute capability, NVLink version or None) as NVML reports them
VOLTA = ("volta", "7.0", "2.0")
TURING = ("turing", "7.5", None)
AMPERE_GA100 = ("ampere", "8.0", "3.0")
AMPERE_GA102 = ("ampere", "8.6", "3.0")
ADA = ("ada", "8.9", None)
HOPPER = ("hopper", "9.0", "4.0")
BLACKWELL = ("blackwell", "10.0", "5.0")
BLACKWELL_RTX = ("blackwell", "12.0", None)

GEN3_X16 = PcieLink(max_gen=3, width=16, max_width=16)
GEN4_X16 = PcieLink(max_gen=4, width=16, max_width=16)
GEN5_X16 = PcieLink(max_gen=5, width=16, max_width=16)


def corpus(prefix: str) -> Topology:
    """A corpus file by its number, read with the product's reader (no v2 facts)."""
    (path,) = CORPUS.glob(f"{prefix}_*.txt")
    return smi_parser.parse(path.read_text(), source=path.name)


def with_facts(
    topo: Topology,
    gpu: tuple[str, str, str | None],
    pcie: PcieLink | None = None,
    *,
    p2p: P2P | None = None,
    nic_mbps: int | None = None,
) -> Topology:
    """The same wiring with every GPU reporting the same facts (and every pair one P2P status)."""
    arch, cc, nvlink = gpu
    gpus = tuple(
        replace(g, arch=arch, cc=cc, nvlink_version=nvlink if topo.has_nvlink else None, pcie=pcie)
        for g in topo.gpus
    )
    n = len(gpus)
    table = () if p2p is None else tuple(tuple(None if i == j else p2p for j in range(n)) for i in range(n))
    nics = tuple(replace(x, rate_mbps=nic_mbps) for x in topo.nics)
    return replace(topo, gpus=gpus, nics=nics, p2p=table)


def rtx4090_pix_box() -> Topology:
    """4x RTX 4090 under one PCIe switch with a PIX NIC (the issue's "4-GPU PCIe switch island").

    GeForce on the stock driver: P2P "GNS" (GPU not supported) on every pair; PCIe Gen4 x16.
    """
    rows = [
        "X   PIX PIX PIX PIX",
        "PIX X   PIX PIX PIX",
        "PIX PIX X   PIX PIX",
        "PIX PIX PIX X   PIX",
        "PIX PIX PIX PIX X  ",
    ]
    return with_facts(factories.from_tokens(rows, nics=["mlx5_0"]), ADA, GEN4_X16, p2p=P2P.GNS, nic_mbps=100_000)


def geforce_pairs_two_sockets(p2p: P2P) -> Topology:
    """4x RTX 4090: GPU0-1 and GPU2-3 each under one PCIe switch, the two switches on two sockets."""
    rows = [
        "X   PIX SYS SYS",
        "PIX X   SYS SYS",
        "SYS SYS X   PIX",
        "SYS SYS PIX X  ",
    ]
    return with_facts(factories.from_tokens(rows), ADA, GEN4_X16, p2p=p2p)


def hgx_h100_one_nic(nic_level_gpu0: str, rate_mbps: int | None) -> Topology:
    """HGX H100 (NV18 everywhere) with a single NIC: ``nic_level_gpu0`` to GPU0, SYS to GPU4-7, NODE to GPU1-3."""
    base = factories.hgx_h100_nv18()
    n = len(base.gpus)
    levels = [nic_level_gpu0] + ["NODE"] * 3 + ["SYS"] * 4
    if nic_level_gpu0 == "SYS":
        levels = ["SYS"] * n
    rows: list[list[Link | None]] = [[*r, parse_link_token(levels[i])] for i, r in enumerate(base.links)]
    rows.append([parse_link_token(x) for x in [*levels, "X"]])
    topo = Topology.from_rows(base.gpus, [Nic("NIC0", "mlx5_0", rate_mbps=rate_mbps)], rows)
    return with_facts(topo, HOPPER, GEN5_X16, p2p=P2P.OK, nic_mbps=rate_mbps)


def pcie_pair(pcie: PcieLink | None, p2p: P2P | None = P2P.OK, level: str = "PIX") -> Topology:
    """Two PCIe GPUs at ``level`` (an L40S-class pair), with the given PCIe link on both."""
    topo = factories.from_tokens([f"X {level}", f"{level} X"])
    gpus = tuple(Gpu(g.index, arch="ada", cc="8.9", pcie=pcie) for g in topo.gpus)
    table = () if p2p is None else ((None, p2p), (p2p, None))
    return replace(topo, gpus=gpus, p2p=table)
