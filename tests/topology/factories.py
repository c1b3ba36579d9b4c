"""Topology factories named after real machines, built from token matrices.

They do not go through the `nvidia-smi` reader, so core tests (islands,
placement, labels) stay independent of parser changes. Matrices are copied
from the corpus files named in each docstring.
"""

from __future__ import annotations

from labeler.topology.links import parse_link_token
from labeler.topology.model import Gpu, Nic, Topology


def from_tokens(rows: list[str], *, nics: list[str] | None = None, numa: list[int] | None = None) -> Topology:
    """Square matrix of tokens, GPUs first then NICs (one string per row)."""
    nic_names = nics or []
    n_gpu = len(rows) - len(nic_names)
    matrix = []
    for row in rows:
        cells = []
        for tok in row.split():
            link = parse_link_token(tok)
            assert link is not None, tok
            cells.append(link)
        matrix.append(cells)
    gpus = [Gpu(index=i, numa_affinity=None if numa is None else frozenset({numa[i]})) for i in range(n_gpu)]
    return Topology.from_rows(gpus, [Nic(column=f"NIC{i}", device=d) for i, d in enumerate(nic_names)], matrix)


def dgx1_v100() -> Topology:
    """DGX-1 V100 hybrid cube-mesh (corpus 005), with its one mlx5_0 NIC."""
    return from_tokens(
        [
            "X    NV1  NV1  NV2  NV2  SYS  SYS  SYS  NODE",
            "NV1  X    NV2  NV1  SYS  NV2  SYS  SYS  NODE",
            "NV1  NV2  X    NV2  SYS  SYS  NV1  SYS  PIX",
            "NV2  NV1  NV2  X    SYS  SYS  SYS  NV1  PIX",
            "NV2  SYS  SYS  SYS  X    NV1  NV1  NV2  SYS",
            "SYS  NV2  SYS  SYS  NV1  X    NV2  NV1  SYS",
            "SYS  SYS  NV1  SYS  NV1  NV2  X    NV2  SYS",
            "SYS  SYS  SYS  NV1  NV2  NV1  NV2  X    SYS",
            "NODE NODE PIX  PIX  SYS  SYS  SYS  SYS  X",
        ],
        nics=["mlx5_0"],
        numa=[0, 0, 0, 0, 1, 1, 1, 1],
    )


def pcie_8x_4switch_2socket() -> Topology:
    """8 PCIe GPUs (L40S-class server): 4 PCIe switches of 2 GPUs + 1 NIC, 2 per socket.

    Same-switch pairs are PIX, switches of one socket meet at NODE, sockets at SYS.
    """
    g = [
        "X    PIX  NODE NODE SYS  SYS  SYS  SYS ",
        "PIX  X    NODE NODE SYS  SYS  SYS  SYS ",
        "NODE NODE X    PIX  SYS  SYS  SYS  SYS ",
        "NODE NODE PIX  X    SYS  SYS  SYS  SYS ",
        "SYS  SYS  SYS  SYS  X    PIX  NODE NODE",
        "SYS  SYS  SYS  SYS  PIX  X    NODE NODE",
        "SYS  SYS  SYS  SYS  NODE NODE X    PIX ",
        "SYS  SYS  SYS  SYS  NODE NODE PIX  X   ",
    ]
    nic_cols = [
        ["PIX", "PIX", "NODE", "NODE", "SYS", "SYS", "SYS", "SYS"],
        ["NODE", "NODE", "PIX", "PIX", "SYS", "SYS", "SYS", "SYS"],
        ["SYS", "SYS", "SYS", "SYS", "PIX", "PIX", "NODE", "NODE"],
        ["SYS", "SYS", "SYS", "SYS", "NODE", "NODE", "PIX", "PIX"],
    ]
    nic_nic = [
        "X    NODE SYS  SYS ",
        "NODE X    SYS  SYS ",
        "SYS  SYS  X    NODE",
        "SYS  SYS  NODE X   ",
    ]
    rows = [g[i] + " " + " ".join(c[i] for c in nic_cols) for i in range(8)]
    rows += [" ".join(nic_cols[j]) + " " + nic_nic[j] for j in range(4)]
    return from_tokens(rows, nics=["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"], numa=[0, 0, 0, 0, 1, 1, 1, 1])


def rtx4090_8x_allsys() -> Topology:
    """8x RTX 4090, every GPU pair SYS (corpus 032 GPU block), no NICs kept."""
    return from_tokens([" ".join("X" if i == j else "SYS" for j in range(8)) for i in range(8)])


def nvlink_bridge_pairs_8x() -> Topology:
    """8 GPUs in NV12 bridge pairs, NODE inside a socket, SYS across (corpus 027 GPU block)."""

    def cell(i: int, j: int) -> str:
        if i == j:
            return "X"
        if i // 2 == j // 2:
            return "NV12"
        return "NODE" if i // 4 == j // 4 else "SYS"

    return from_tokens([" ".join(cell(i, j) for j in range(8)) for i in range(8)], numa=[0] * 4 + [1] * 4)


def hgx_h100_nv18() -> Topology:
    """8x H100 SXM on NVSwitch: every pair NV18 (corpus 051 GPU block)."""
    return from_tokens([" ".join("X" if i == j else "NV18" for j in range(8)) for i in range(8)])


def nvswitch_16x() -> Topology:
    """16 GPUs on NVSwitch (DGX-2 class): every pair NV6."""
    return from_tokens([" ".join("X" if i == j else "NV6" for j in range(16)) for i in range(16)])


def pcie_16x_8switch() -> Topology:
    """16 PCIe GPUs: 8 switches of 2 (PIX), 2 switches per host bridge (PHB), 2 host bridges per socket."""

    def cell(i: int, j: int) -> str:
        if i == j:
            return "X"
        if i // 2 == j // 2:
            return "PIX"
        if i // 4 == j // 4:
            return "PHB"
        return "NODE" if i // 8 == j // 8 else "SYS"

    return from_tokens([" ".join(cell(i, j) for j in range(16)) for i in range(16)])
