"""The measured rows of shared/research/nccl-bandwidth.md §2, as machines the model can predict.

A check of the model, not a fit: no constant in labeler/topology/bandwidth.py was taken from
these rows. Each row rebuilds the topology its source describes (GPU model -> the facts NVML
reports for it; the matrix from the source's `nvidia-smi topo` label, or the stated
assumption where the source gives none) and carries the busbw the source reports.
``bench/bandwidth_calibration.py`` prints the comparison for docs/bandwidth.md;
``test_bandwidth_calibration.py`` checks it stays inside the bands the docs state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import bw_machines as m
import factories

from labeler.topology.model import P2P, Topology


@dataclass(frozen=True)
class Row:
    gpu: str
    topology: str  # how the source describes the path, and what we assumed
    build: Callable[[], Topology]
    measured: float  # busbw GB/s the source reports
    what: str  # "measured", "expected (maintainer)", …
    source: str
    band: str  # "nvlink-ring" | "nvls" | "pcie" | "no-p2p" | "sys-unknown-cpu" | "unexplained"

    @property
    def gpus(self) -> list[int]:
        return list(self.build().gpu_indices)


def _nv_all(n: int, count: int) -> Topology:
    return factories.from_tokens([" ".join("X" if i == j else f"NV{count}" for j in range(n)) for i in range(n)])


def _a100_pair_and_node() -> Topology:
    return factories.from_tokens(["X NV12 NODE", "NV12 X NODE", "NODE NODE X"])


def _pairs_node(n_pairs: int) -> Topology:
    """Pairs of GPUs under one switch (PIX), switches meeting at NODE on one socket."""
    return factories.from_tokens([
        " ".join("X" if i == j else "PIX" if i // 2 == j // 2 else "NODE" for j in range(2 * n_pairs))
        for i in range(2 * n_pairs)
    ])


def _switches_node(sizes: tuple[int, ...]) -> Topology:
    owner = [s for s, size in enumerate(sizes) for _ in range(size)]
    n = len(owner)
    return factories.from_tokens([
        " ".join("X" if i == j else "PIX" if owner[i] == owner[j] else "NODE" for j in range(n)) for i in range(n)
    ])


def _two_sockets_direct(per_socket: int) -> Topology:
    n = 2 * per_socket
    return factories.from_tokens([
        " ".join("X" if i == j else "NODE" if i // per_socket == j // per_socket else "SYS" for j in range(n))
        for i in range(n)
    ])


def _node_all(n: int) -> Topology:
    return factories.from_tokens([" ".join("X" if i == j else "NODE" for j in range(n)) for i in range(n)])


_H100_PCIE = ("hopper", "9.0", "4.0")
_RTX_PRO = m.BLACKWELL_RTX

ROWS: tuple[Row, ...] = (
    Row("H100 PCIe, NVLink-bridged pair", "NVLink bridge, no topo label in the source; NV12 assumed (three "
        "bridges, the product's full set)", lambda: m.with_facts(_nv_all(2, 12), _H100_PCIE, m.GEN5_X16, p2p=P2P.OK),
        116.26, "measured, 4 GiB", "NVIDIA/nccl#1161", "unexplained"),
    Row("A100 (NV12 pairs)", "NV12", lambda: m.with_facts(_nv_all(2, 12), m.AMPERE_GA100, m.GEN4_X16, p2p=P2P.OK),
        208.0, "measured, peak of a sweep to 12 GiB", "NVIDIA/nccl-tests#178", "nvlink-ring"),
    Row("A100, same node", "NV12 pair + a NODE hop (3 GPUs); PCIe Gen4 x16 (A100)",
        lambda: m.with_facts(_a100_pair_and_node(), m.AMPERE_GA100, m.GEN4_X16, p2p=P2P.OK),
        20.0, "measured (\"drops to 20 GBps\")", "NVIDIA/nccl-tests#178", "pcie"),
    Row("A100-SXM4-80GB ×8 (HPE Apollo 6500)", "NVSwitch, NV12 each",
        lambda: m.with_facts(_nv_all(8, 12), m.AMPERE_GA100, m.GEN4_X16, p2p=P2P.OK),
        200.0, "measured, up to 1 GiB (user)", "NVIDIA/nccl-tests#149", "nvlink-ring"),
    Row("A100-SXM4-80GB ×8 (HPE Apollo 6500)", "NVSwitch, NV12 each",
        lambda: m.with_facts(_nv_all(8, 12), m.AMPERE_GA100, m.GEN4_X16, p2p=P2P.OK),
        230.0, "expected at 8 GiB (sjeaugey)", "NVIDIA/nccl-tests#149", "nvlink-ring"),
    Row("A100-SXM4-80GB ×8", "NVSwitch (12 × 25 GB/s links per GPU)",
        lambda: m.with_facts(_nv_all(8, 12), m.AMPERE_GA100, m.GEN4_X16, p2p=P2P.OK),
        220.0, "measured", "NVIDIA/nccl-tests#228", "nvlink-ring"),
    Row("H100 SXM ×8 (HGX)", "NV18 (NVSwitch)",
        lambda: m.with_facts(_nv_all(8, 18), m.HOPPER, m.GEN5_X16, p2p=P2P.OK),
        370.0, "expected, ring (sjeaugey)", "NVIDIA/nccl-tests#212", "nvlink-ring"),
    Row("H100 SXM ×8 (HGX)", "NV18 (NVSwitch)",
        lambda: m.with_facts(_nv_all(8, 18), m.HOPPER, m.GEN5_X16, p2p=P2P.OK),
        480.0, "expected, NVLS (sjeaugey)", "NVIDIA/nccl-tests#212", "nvls"),
    Row("H200 ×8", "NVLink4 (NVSwitch), NV18",
        lambda: m.with_facts(_nv_all(8, 18), m.HOPPER, m.GEN5_X16, p2p=P2P.OK),
        475.0, "measured, peak (NCCL 2.20.3: NVLS on NVSwitch)", "NVIDIA/nccl-tests#272", "nvls"),
    Row("H800 ×8", "NVSwitch, NV8",
        lambda: m.with_facts(_nv_all(8, 8), m.HOPPER, m.GEN5_X16, p2p=P2P.OK),
        215.0, "measured (user; above 8 × 25 GB/s line rate, so NVLS)", "NVIDIA/nccl#1374", "nvls"),
    Row("RTX 2080 Ti ×2 (Gen3 x16, AutoDL container)", "PIX, topo -p2p NS",
        lambda: m.with_facts(m.corpus("049"), m.TURING, m.GEN3_X16, p2p=P2P.NS),
        4.00, "measured, 1 GiB", "Anthony-Hoo blog (corpus 049)", "no-p2p"),
    Row("RTX PRO 6000 Blackwell Server ×4 (Gen5 x16)", "GPU0-1 PIX, GPU2-3 PIX, pairs NODE; P2P yes",
        lambda: m.with_facts(_pairs_node(2), _RTX_PRO, m.GEN5_X16, p2p=P2P.OK),
        30.3, "measured, 32 MiB, default (SHM on the NODE pairs)", "rtx6kpro asus-esc8000a doc", "pcie"),
    Row("RTX PRO 6000 Blackwell Server ×4 (Gen5 x16)", "same; NCCL_P2P_LEVEL=SYS (the model predicts defaults)",
        lambda: m.with_facts(_pairs_node(2), _RTX_PRO, m.GEN5_X16, p2p=P2P.OK),
        39.3, "measured, 32 MiB", "rtx6kpro asus-esc8000a doc", "pcie"),
    Row("RTX PRO 6000 ×8 (\"luke\")", "3 PCIe switches, one CPU; no matrix in the source: 3+3+2 GPUs per "
        "switch, switches at NODE assumed", lambda: m.with_facts(_switches_node((3, 3, 2)), _RTX_PRO, m.GEN5_X16,
                                                                  p2p=P2P.OK),
        41.1, "measured, sweep, NCCL_MIN_NCHANNELS=8", "rtx6kpro pcie-bandwidth.md", "pcie"),
    Row("RTX PRO 6000 ×8 (\"Grimulkan\")", "4 PCIe switches, one CPU; 2 GPUs per switch at NODE assumed",
        lambda: m.with_facts(_switches_node((2, 2, 2, 2)), _RTX_PRO, m.GEN5_X16, p2p=P2P.OK),
        40.1, "measured, 32 MiB, default", "rtx6kpro pcie-bandwidth.md", "pcie"),
    Row("RTX PRO 6000 ×8 (\"Festr\", dual EPYC Turin)", "direct to CPU root ports, two sockets: NODE within, SYS "
        "across", lambda: m.with_facts(_two_sockets_direct(4), _RTX_PRO, m.GEN5_X16, p2p=P2P.OK),
        22.2, "measured, 32 MiB, default", "rtx6kpro pcie-bandwidth.md", "sys-unknown-cpu"),
    Row("RTX PRO 6000 ×8 (\"Festr\", dual EPYC Turin)", "same", lambda: m.with_facts(
        _two_sockets_direct(4), _RTX_PRO, m.GEN5_X16, p2p=P2P.OK),
        37.6, "measured, sweep, NCCL_MIN_NCHANNELS=8", "rtx6kpro pcie-bandwidth.md", "sys-unknown-cpu"),
    Row("RTX 4090 ×4, P2P by patched driver", "one NUMA node, no PCIe switch: NODE assumed between all",
        lambda: m.with_facts(_node_all(4), m.ADA, m.GEN4_X16, p2p=P2P.OK),
        22.0, "measured, NCCL_P2P_LEVEL=SYS", "NVIDIA/nccl#1603", "pcie"),
    Row("RTX 4090 ×4", "same, P2P off (SHM)", lambda: m.with_facts(_node_all(4), m.ADA, m.GEN4_X16, p2p=P2P.GNS),
        18.0, "measured", "NVIDIA/nccl#1603", "pcie"),
)

#: Rows of §2 left out, and why: the source gives no topology a matrix could be built from.
NOT_COMPARED: tuple[tuple[str, str], ...] = (
    ("RTX 6000 Pro WS ×4 + RTX 5090 ×2, 7 GPUs (\"purplepow3r\")", "which 7 GPUs ran is not stated"),
    ("RTX 5090 ×8 / ×4, dual Xeon 8480+ (NVIDIA/nccl#1639)", "no topology (a commenter guesses 4 per switch)"),
    ("RTX 4090 ×4 (tinygrad/open-gpu-kernel-modules#36)", "no topology in the excerpt"),
    ("RTX 4090 ×5 (tinygrad/open-gpu-kernel-modules#17)", "no topology given"),
)

#: NVLS on 8 GPUs: the switch reduces, but each GPU still receives the whole result over its own
#: links, so algbw <= the link rate B and busbw = algbw x 2(n-1)/n <= 1.75 B, while the model
#: predicts the ring's B: predicted / reported >= n / (2(n-1)) = 4/7 for n = 8.
_NVLS_FLOOR = 8 / (2 * (8 - 1))
#: NVLink bridges of H100 PCIe: 4 links each, three for the full set the model assumes (NV12); one
#: bridge (NV4) is the fewest a bridged pair has, so the reported figure is at most 12/4 below NV12.
_ONE_BRIDGE_OF_THREE = 12 / 4

#: The bands docs/bandwidth.md states, predicted / reported, per kind of row: each from the model's
#: stated error or a physical bound, never from the rows' own ratios.
BANDS: dict[str, tuple[float, float]] = {
    "nvlink-ring": (1.0, 1.2),  # NCCL's effective NVLink rate: at or up to 20 % above what rings reach
    "nvls": (_NVLS_FLOOR, 1.0),  # the model is the ring: never above NVLS, and NVLS is at most 1.75x a ring
    "pcie": (1.0, 1.6),  # NCCL's PCIe rate is a ceiling: rings reach it or up to ~40 % less
    "no-p2p": (1.0, 1.6),
    "sys-unknown-cpu": (0.15, 0.3),  # the socket link of an unknown CPU is NCCL's floor: far below real ones
    # outside the NVLink tolerance (so the docs keep calling it unexplained), within one bridge of three
    "unexplained": (1.2, _ONE_BRIDGE_OF_THREE),
}
