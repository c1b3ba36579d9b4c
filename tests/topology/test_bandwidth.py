"""The bandwidth model on named machines.

Every expected value is worked out by hand in the comment beside it, from the table
(labeler/topology/bandwidth.py, rendered in docs/bandwidth.md) and the meaning of each
link; none is copied from the code's output. Units: GB/s per GPU and direction.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace
from pathlib import Path

import bw_machines as m
import factories
import pytest

from labeler.topology import bandwidth, busbw
from labeler.topology.busbw import Transport
from labeler.topology.links import parse_link_token
from labeler.topology.model import P2P, Gpu, Nic, PcieLink

H100_RING_PUBLISHED = 370.0  # sjeaugey, NVIDIA/nccl-tests#212: "effective NVLink bandwidth of 370GB/s" (ring)
NVLINK_RING_TOLERANCE = 0.20  # docs/bandwidth.md "Calibration": NVLink rings within 20 % of measured ring figures


def gbps(topo, gpus, *, multi_node=False) -> float:  # type: ignore[no-untyped-def]
    found = busbw.predict(topo, gpus, multi_node=multi_node)
    assert found is not None
    return found.gbps


# -- the misranking: a GB200 tray against a 4-GPU PIX RTX 4090 box ----------------------------
def test_gb200_tray_beats_the_4090_pix_box_by_an_order_of_magnitude() -> None:
    gb200 = m.with_facts(m.corpus("038"), m.BLACKWELL)
    # corpus 038: NV18 between all four GPUs; Blackwell (cc 10.0) -> NVLink 5.0, 40.1 GB/s per link
    # (NCCL SM100_NVLINK_BW): 18 x 40.1 = 721.8
    assert gbps(gb200, [0, 1, 2, 3]) == pytest.approx(721.8)
    # the same tray read from text only: 18 links -> NVLink 4 or 5 possible, the slower: 18 x 20.6 = 370.8
    assert gbps(m.corpus("038"), [0, 1, 2, 3]) == pytest.approx(370.8)
    box = m.rtx4090_pix_box()
    # 4 GeForce GPUs under one switch, P2P GNS: every hop goes through host memory, so all four
    # GPUs' streams share the switch's one uplink; uplink = the GPUs' Gen4 x16 = 16 x 1.5 = 24 -> 24 / 4 = 6
    found = busbw.predict(box, [0, 1, 2, 3])
    assert found is not None and found.gbps == pytest.approx(6.0)
    assert found.bottleneck.kind == "switch-uplink" and all(h.transport is Transport.SHM for h in found.hops)
    assert gbps(gb200, [0, 1, 2, 3]) >= 10 * found.gbps
    assert gbps(m.corpus("038"), [0, 1, 2, 3]) >= 10 * found.gbps
    # with P2P (a patched driver) the ring stays inside the switch: each hop 24, nothing uses the uplink
    patched = m.with_facts(box, m.ADA, m.GEN4_X16, p2p=P2P.OK)
    assert gbps(patched, [0, 1, 2, 3]) == pytest.approx(24.0)


# -- NVSwitch against the DGX-1 hybrid cube-mesh (corpus 005) --------------------------------------------
def test_nvswitch_quad_beats_dgx1_nv1_ring() -> None:
    dgx1 = m.with_facts(m.corpus("005"), m.VOLTA, m.GEN3_X16, p2p=P2P.OK)
    # the placer's best 4 of DGX-1 is {0,1,2,3}; any 4-cycle there uses an NV1 edge (0-1, 0-2 or 1-3):
    # 1 x 20 GB/s (V100, NCCL SM70_NVLINK_BW) = 20
    found = busbw.predict(dgx1, [0, 1, 2, 3])
    assert found is not None and found.gbps == pytest.approx(20.0)
    assert found.bottleneck.where.endswith("NV1")
    # all 8 ring over the NV2 8-cycle 0-3-2-1-5-6-7-4: 2 x 20 = 40
    assert gbps(dgx1, range(8)) == pytest.approx(40.0)
    # AWS p4d (corpus 013): A100 on NVSwitch, NV12 per pair = each GPU's 12 links: 12 x 20 = 240
    p4d = m.with_facts(m.corpus("013"), m.AMPERE_GA100, m.GEN4_X16, p2p=P2P.OK)
    assert gbps(p4d, [0, 1, 2, 3]) == pytest.approx(240.0)
    assert gbps(p4d, [0, 1, 2, 3]) > gbps(dgx1, [0, 1, 2, 3])


# -- an NVLink bridge pair against a PCIe switch pair -----------------------------------------------------
def test_nv12_pair_beats_pix_pair() -> None:
    bridges = m.with_facts(m.corpus("027"), m.AMPERE_GA100, m.GEN4_X16, p2p=P2P.OK)
    # corpus 027: GPU0-1 on three NVLink bridges, NV12; A100: 12 x 20 = 240
    assert gbps(bridges, [0, 1]) == pytest.approx(240.0)
    pix = m.pcie_pair(m.GEN4_X16)
    # PIX with P2P: the slower GPU's link, Gen4 x16 = 24 (NCCL: 16 lanes x 120/80)
    assert gbps(pix, [0, 1]) == pytest.approx(24.0)
    assert gbps(bridges, [0, 1]) > gbps(pix, [0, 1])
    # the bridged pairs leave their NVLink through NODE (via host memory): 4 GPUs ring at Gen4 x16 = 24
    assert gbps(bridges, [0, 1, 2, 3]) == pytest.approx(24.0)
    # and across sockets, at the socket link of an unknown CPU: min(24, 6) = 6
    assert gbps(bridges, range(8)) == pytest.approx(6.0)


def test_ga102_bridge_and_the_hopper_nvlink_5_driver_quirk() -> None:
    rtx3090 = m.with_facts(m.corpus("024"), m.AMPERE_GA102, m.GEN4_X16, p2p=P2P.OK)
    # corpus 024: RTX 3090 NVLink bridge NV4; GA102 links are 12 GB/s (SM86_NVLINK_BW): 4 x 12 = 48
    assert gbps(rtx3090, [0, 1]) == pytest.approx(48.0)
    # "ampere" without a compute capability could be GA100 (20) or GA102 (12): the slower, 48
    ambiguous = m.with_facts(m.corpus("024"), ("ampere", None, "3.0"), m.GEN4_X16)  # type: ignore[arg-type]
    assert gbps(ambiguous, [0, 1]) == pytest.approx(48.0)
    # some drivers report NVLink 5.0 on Hopper: compute capability 9.0 decides, 18 x 20.6 = 370.8
    quirk = m.with_facts(factories.hgx_h100_nv18(), ("hopper", "9.0", "5.0"), m.GEN5_X16)
    assert gbps(quirk, range(8)) == pytest.approx(370.8)
    # "5.0" with nothing to confirm it: NVLink 4 or 5, the slower
    alone = m.with_facts(factories.hgx_h100_nv18(), (None, None, "5.0"), m.GEN5_X16)  # type: ignore[arg-type]
    assert gbps(alone, range(8)) == pytest.approx(370.8)
    # a compute capability that contradicts the architecture is reported, and the remaining facts decide
    odd = bandwidth.nvlink_per_link(Gpu(0, arch="volta", cc="9.0"), 6)
    assert odd.gbps == pytest.approx(20.6) and any("contradicts" in a for a in odd.assumed)


def test_h100_hgx_8_gpus_match_the_published_ring_figure() -> None:
    hgx = m.with_facts(factories.hgx_h100_nv18(), m.HOPPER, m.GEN5_X16, p2p=P2P.OK)
    found = busbw.predict(hgx, range(8))
    assert found is not None
    # NV18 per pair on NVSwitch = each GPU's 18 links: 18 x 20.6 (SM90_NVLINK_BW) = 370.8
    assert found.gbps == pytest.approx(370.8)
    assert abs(found.gbps / H100_RING_PUBLISHED - 1) <= NVLINK_RING_TOLERANCE
    assert found.assumed == ()  # every fact known
    # B200 on the same wiring: 18 x 40.1 = 721.8
    b200 = m.with_facts(factories.hgx_h100_nv18(), m.BLACKWELL, m.GEN5_X16, p2p=P2P.OK)
    assert gbps(b200, range(8)) == pytest.approx(721.8)


# -- a rank of a multi-node job ------------------------------------------------------------------------
def test_multi_node_rank_is_capped_by_its_nic() -> None:
    hgx = m.hgx_h100_one_nic("PIX", 100_000)
    # single node: 18 x 20.6 = 370.8; one rank of a multi-node job leaves through the one NIC:
    # PIX to GPU0 -> GPUDirect RDMA, 100 Gb/s / 8 = 12.5, within GPU0's Gen5 x16 (48): 12.5
    assert gbps(hgx, range(8)) == pytest.approx(370.8)
    found = busbw.predict(hgx, range(8), multi_node=True)
    assert found is not None and found.gbps == pytest.approx(12.5)
    assert found.bottleneck.kind == "network" and found.network is not None
    assert found.network.nics == ("mlx5_0",) and found.network.gpudirect == ("mlx5_0",)
    assert found.ring_gbps == pytest.approx(370.8)  # the cap does not change the ring
    # a 400 Gb/s NIC (50) is then held by GPU0's own Gen5 x16 link: min(50, 48) = 48
    assert gbps(m.hgx_h100_one_nic("PIX", 400_000), range(8), multi_node=True) == pytest.approx(48.0)
    # the NIC SYS to every GPU: no GPUDirect RDMA, staged through host memory and across the
    # socket link of an unknown CPU: min(12.5, 48) = 12.5 through the socket link (6) -> 6
    far = busbw.predict(m.hgx_h100_one_nic("SYS", 100_000), range(8), multi_node=True)
    assert far is not None and far.gbps == pytest.approx(6.0) and far.network is not None
    assert far.network.gpudirect == ()
    # unknown NIC rate: NCCL's own fallback, 10 Gb/s -> 1.25
    assert gbps(m.hgx_h100_one_nic("PIX", None), range(8), multi_node=True) == pytest.approx(1.25)
    # one GPU of a multi-node job still has a prediction: its network path (12.5, as above)
    assert gbps(hgx, [0], multi_node=True) == pytest.approx(12.5)
    assert busbw.predict(hgx, [0]) is None  # ... and none for a single-node job: no ring


def test_multi_node_without_a_listed_nic_is_the_fallback_nic() -> None:
    p4d = m.with_facts(m.corpus("013"), m.AMPERE_GA100, m.GEN4_X16, p2p=P2P.OK)  # EFA is not in the matrix
    # no NIC listed: one NIC at NCCL's 10 Gb/s fallback = 1.25, under the GPUs' 24
    found = busbw.predict(p4d, range(8), multi_node=True)
    assert found is not None and found.gbps == pytest.approx(1.25)
    assert any("no NIC listed" in a for a in found.assumed)


def test_network_assumptions_are_listed_apart_from_the_rings() -> None:
    """A rank's network is known only when no fact of its path was assumed (what the objective's N' reads)."""
    known = busbw.predict(m.hgx_h100_one_nic("PIX", 100_000), range(8), multi_node=True)
    assert known is not None and known.network is not None and known.network.assumed == ()
    unknown_rate = busbw.predict(m.hgx_h100_one_nic("PIX", None), range(8), multi_node=True)
    assert unknown_rate is not None and unknown_rate.network is not None
    assert [a.split(":")[0] for a in unknown_rate.network.assumed] == ["NIC rate unknown"]
    far = busbw.predict(m.hgx_h100_one_nic("SYS", 100_000), range(8), multi_node=True)
    assert far is not None and far.network is not None and any("CPU unknown" in a for a in far.network.assumed)
    assert known.as_dict()["network"]["assumed"] == []


# -- Grace: NICs reached over NVLink-C2C ------------------------------------------------------------------
GH200 = m.corpus("055")  # 1 GH200, 4 NICs at NODE (two dual-port cards), GPU NUMA ID 1


def _grace(topo, mbps: int | None):  # type: ignore[no-untyped-def]
    return m.with_facts(topo, m.HOPPER if len(topo.gpus) == 1 else m.BLACKWELL, nic_mbps=mbps)


def test_gh200_reaches_its_nics_with_gpudirect_over_c2c() -> None:
    """GH200 (corpus 055): the GPU memory is NUMA node 1 (C2C to its Grace); the NICs are NODE to the GPU,
    i.e. under its own CPU. NCCL's path type there is P2C: GPUDirect RDMA by default (NCCL >= 2.27.3), not
    staged through host memory and not held to a PCIe link (the GPU has none on that path).
    Four 400 Gb/s ports: 4 × 50 = 200 GB/s, under the NVLink-C2C ceiling of 450."""
    assert [g.gpu_numa_id for g in GH200.gpus] == [1]
    found = busbw.predict(_grace(GH200, 400_000), [0], multi_node=True)
    assert found is not None and found.network is not None
    assert found.gbps == pytest.approx(200.0) and len(found.network.gpudirect) == 4
    assert found.network.assumed == () and "over C2C" in found.network.why
    # text only: rates unknown, 4 × 1.25 = 5, and said so; no PCIe link is assumed for the path
    text = busbw.predict(GH200, [0], multi_node=True)
    assert text is not None and text.network is not None and text.gbps == pytest.approx(5.0)
    assert [a.split(":")[0] for a in text.network.assumed] == ["NIC rate unknown"]
    # the same matrix without the GPU NUMA ID (a PCIe GPU): NODE NICs are staged through host memory,
    # within the GPU's PCIe link (unknown: Gen3 x16 = 12): min(200, 12) = 12
    pcie = busbw.predict(_grace(dataclasses.replace(GH200, gpus=tuple(
        dataclasses.replace(g, gpu_numa_id=None) for g in GH200.gpus)), 400_000), [0], multi_node=True)
    assert pcie is not None and pcie.gbps == pytest.approx(12.0) and pcie.network is not None
    assert pcie.network.gpudirect == ()


def test_gb200_tray_reaches_every_nic_over_c2c_only_as_a_whole() -> None:
    """GB200 tray (corpus 038): nvidia-smi reports SYS for every GPU-NIC pair (and between the NIC cards),
    so SYS does not say which Grace a NIC hangs off. The whole tray's set holds a GPU under every CPU: each NIC is
    reached over C2C, directly or through an NVLink peer (PXN over C2C): 8 × 400 Gb/s = 8 × 50 = 400 GB/s, all
    served by GPU0 (all at SYS, the lowest position), under the C2C ceiling (450). Ring 18 × 40.1 = 721.8, so the
    rank's prediction is the network, 400.
    Two GPUs ({0, 1}, one Grace): a NIC may be under the other CPU: staged across the socket link of an unknown
    CPU, 6 (the worse case), as before the C2C path was modelled."""
    tray = _grace(m.corpus("038"), 400_000)
    whole = busbw.predict(tray, range(4), multi_node=True)
    assert whole is not None and whole.network is not None and whole.ring_gbps == pytest.approx(721.8)
    assert whole.gbps == pytest.approx(400.0) and len(whole.network.gpudirect) == 8
    assert whole.network.assumed == ()
    half = busbw.predict(tray, [0, 1], multi_node=True)
    assert half is not None and half.network is not None and half.gbps == pytest.approx(6.0)
    assert half.network.gpudirect == () and any("CPU unknown" in a for a in half.network.assumed)


# -- P2P unavailable: GeForce -----------------------------------------------------------------------------
def test_geforce_pix_without_p2p_loses_its_locality() -> None:
    geforce = m.geforce_pairs_two_sockets(P2P.GNS)
    # PIX pair, no P2P: both GPUs' streams go up the one switch uplink and down again (nccl#1309's
    # "2x increase in load on the PCI link to the CPU"): Gen4 x16 = 24, shared by 2 -> 12
    pix = busbw.predict(geforce, [0, 1])
    assert pix is not None and pix.gbps == pytest.approx(12.0)
    assert pix.bottleneck.kind == "switch-uplink"
    # SYS pair: via host memory across sockets, min(24, socket link of an unknown CPU 6) = 6
    assert gbps(geforce, [0, 2]) == pytest.approx(6.0)
    # the same pair with P2P stays inside the switch: 24. Without P2P the PIX pair keeps half,
    # and is no more than 2x a SYS pair at NCCL's lowest socket value (a CPU with a socket link of
    # 12 GB/s or more, as in nccl#1309's host, makes the SYS pair as fast or faster)
    assert gbps(m.geforce_pairs_two_sockets(P2P.OK), [0, 1]) == pytest.approx(24.0)
    assert pix.gbps == pytest.approx(gbps(m.geforce_pairs_two_sockets(P2P.OK), [0, 1]) / 2)
    assert pix.gbps <= 2 * gbps(geforce, [0, 2])
    # all four: SYS hops at 6 bound the ring (each switch uplink carries 2 streams: 12)
    assert gbps(geforce, range(4)) == pytest.approx(6.0)


def test_p2p_unknown_is_the_worse_case() -> None:
    # corpus 049: 2x RTX 2080 Ti under one switch, read from text (P2P and PCIe unknown):
    # via host memory (P2P unknown), PCIe Gen3 x16 assumed = 12, two streams on the uplink -> 6
    found = busbw.predict(m.corpus("049"), [0, 1])
    assert found is not None and found.gbps == pytest.approx(6.0)
    assert any("P2P status unknown" in a for a in found.assumed)
    assert any("Gen3 x16" in a for a in found.assumed)
    # the same pair with its real facts (Turing, Gen3 x16, topo -p2p NS): the same 6 (measured 4.00)
    known = m.with_facts(m.corpus("049"), m.TURING, m.GEN3_X16, p2p=P2P.NS)
    assert gbps(known, [0, 1]) == pytest.approx(6.0)


def test_p2p_broken_on_an_nvlink_pair_is_valued_as_sys() -> None:
    topo = m.with_facts(factories.hgx_h100_nv18(), m.HOPPER, m.GEN5_X16, p2p=P2P.DIS)
    # NCCL refuses NVLink peers without P2P; the model takes the host path at its worst: min(48, 6) = 6
    found = busbw.predict(topo, [0, 1])
    assert found is not None and found.gbps == pytest.approx(6.0)
    assert all(h.transport is Transport.SHM for h in found.hops)


# -- PCIe: which facts, and unknown ones -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pcie", "expected"),
    [
        (None, 12.0),  # nothing reported: NCCL's fallback Gen3 x16 = 16 x 0.75
        (PcieLink(max_gen=4, width=16, max_width=16), 24.0),  # 16 x 1.5
        (PcieLink(gen=1, width=16, max_gen=4, max_width=16), 24.0),  # idle Gen1: the maximum is what it trains to
        (PcieLink(gen=4, width=8, max_gen=4, max_width=16), 12.0),  # down-trained to x8: 8 x 1.5
        (PcieLink(gen=4), 24.0),  # current generation only (a lower bound), width unknown: x16
        (PcieLink(max_width=8), 6.0),  # generation unknown: Gen3, x8 -> 8 x 0.75
        (PcieLink(max_gen=5, width=16, max_width=16), 48.0),  # 16 x 3.0
        (PcieLink(max_gen=6, width=16, max_width=16), 96.0),  # 16 x 6.0 (480/80)
        (PcieLink(max_gen=7, width=16, max_width=16), 96.0),  # beyond the table: Gen6's rate
    ],
)
def test_pcie_facts(pcie: PcieLink | None, expected: float) -> None:
    assert gbps(m.pcie_pair(pcie), [0, 1]) == pytest.approx(expected)


def test_unknown_pcie_degrades_to_nccls_fallback_and_says_so() -> None:
    found = busbw.predict(m.pcie_pair(None), [0, 1])
    assert found is not None and found.gbps == pytest.approx(12.0)
    assert found.assumed == ("PCIe link unknown: Gen3 x16 assumed (NCCL's fallback), 12 GB/s",)
    # a known Gen4 x16 pair is never below the unknown one
    assert gbps(m.pcie_pair(m.GEN4_X16), [0, 1]) >= found.gbps


@pytest.mark.parametrize(
    ("level", "expected", "transport"),
    [
        ("PIX", 24.0, Transport.P2P),  # P2P through the switch
        ("PXB", 24.0, Transport.P2P),  # P2P through several switches
        ("PHB", 24.0, Transport.SHM),  # NCCL: no P2P beyond PXB by default; host memory at the PCIe rate
        ("NODE", 24.0, Transport.SHM),
        ("SYS", 6.0, Transport.SHM),  # min(24, socket 6)
    ],
)
def test_pcie_levels_with_p2p(level: str, expected: float, transport: Transport) -> None:
    found = busbw.predict(m.pcie_pair(m.GEN4_X16, P2P.OK, level), [0, 1])
    assert found is not None and found.gbps == pytest.approx(expected)
    assert {h.transport for h in found.hops} == {transport}


def test_pcie_ring_visits_each_switch_once() -> None:
    # 8 PCIe GPUs, 4 switches of 2, two sockets (factories.pcie_8x_4switch_2socket), Gen4, P2P OK.
    topo = m.with_facts(factories.pcie_8x_4switch_2socket(), m.ADA, m.GEN4_X16, p2p=P2P.OK)
    found = busbw.predict(topo, range(8))
    assert found is not None
    # contiguous per switch and socket: 0,1 | 2,3 | 4,5 | 6,7: two SYS hops (3->4, 7->0)
    assert found.ring == (0, 1, 2, 3, 4, 5, 6, 7)
    assert found.gbps == pytest.approx(6.0)  # min(24, socket 6)
    # one socket: switches meet at NODE (host memory, 24); each switch uplink carries one stream
    assert gbps(topo, [0, 1, 2, 3]) == pytest.approx(24.0)
    # the same 4 GPUs listed out of order give the same ring and value
    assert busbw.predict(topo, [3, 0, 2, 1]) == busbw.predict(topo, [0, 1, 2, 3])


# Found by the property "a slower link never raises a prediction" (6 V100s, Gen3 x16 = 12 GB/s, P2P OK).
# Each: the matrix, the set, and why 12 GB/s is the answer though a candidate ring gets only 6.
RING_SEARCH_CASES = [
    pytest.param(
        # GPUs 1, 3, 4 share a PCIe switch (PIX), GPU 2 sits beside it (PXB), GPU 0 on another host
        # bridge (NODE), GPU 5 across the socket (SYS) with one NVLink to each of 3 and 4. Ring
        # 0-2-1-3-5-4: hops at 12 (host memory 0-2 and 4-0, P2P 2-1 and 1-3) and 20 (NV1, 3-5, 5-4);
        # the switch above 1, 3, 4 sees one PCIe stream in (2->1) and one out (4->0): 12 GB/s. The
        # ring 0-1-2-3-5-4 is as fast hop by hop but sends 0->1 in, 1->2 out and 2->3 in again: two
        # streams on the uplink, 6 GB/s.
        ["X NODE NODE NODE NODE SYS",
         "NODE X PXB PIX PIX SYS",
         "NODE PXB X PXB PXB SYS",
         "NODE PIX PXB X PIX NV1",
         "NODE PIX PXB PIX X NV1",
         "SYS SYS SYS NV1 NV1 X"],
        range(6),
        id="a-ring-that-spares-a-shared-uplink",
    ),
    pytest.param(
        # The set 0-4 holds one NVLink pair (0-2) but both candidate rings are all PCIe. GPUs 1, 2, 4
        # share a PCIe switch (PIX), 3 sits beside it (PXB), 0 on another host bridge (NODE). Ring
        # 0-1-2-4-3: every hop 12 GB/s; the PIX switch sees 0->1 in and 4->3 out: 12 GB/s. The first
        # candidate, 0-1-2-3-4, leaves the switch (2->3) and comes back (3->4): 12 / 2 = 6 GB/s.
        ["X NODE NV1 NODE NODE NODE",
         "NODE X PIX PXB PIX NV1",
         "NV1 PIX X PXB PIX NV1",
         "NODE PXB PXB X PXB PXB",
         "NODE PIX PIX PXB X PIX",
         "NODE NV1 NV1 PXB PIX X"],
        range(5),
        id="nvlink-in-the-set-but-an-all-pcie-best-candidate",
    ),
]


@pytest.mark.parametrize(("rows", "gpus"), RING_SEARCH_CASES)
def test_the_ring_search_finds_the_ring_that_shares_no_uplink(rows: list[str], gpus: range) -> None:
    topo = m.with_facts(factories.from_tokens(rows), m.VOLTA, m.GEN3_X16, p2p=P2P.OK)
    found = busbw.predict(topo, gpus)
    assert found is not None
    assert found.gbps == pytest.approx(12.0)
    assert found.bottleneck.kind == "hop"


# -- the explanation -----------------------------------------------------------------------------------
def test_explanation_names_ring_bottleneck_and_source() -> None:
    geforce = m.geforce_pairs_two_sockets(P2P.OK)
    found = busbw.predict(geforce, range(4))
    assert found is not None
    text = found.explain()
    assert text.startswith("ring 0→1→2→3, bottleneck GPU1↔GPU2 SYS, 6 GB/s (")
    assert "BDW_QPI_BW" in text
    assert "CPU unknown: inter-socket link 6 GB/s (NCCL's lowest inter-CPU value, BDW_QPI_BW)" in found.assumed
    doc = found.as_dict()
    assert doc["busbw_gbps"] == 6.0 and doc["bottleneck"]["kind"] == "hop" and len(doc["hops"]) == 4
    assert doc["explain"] == text


# -- the table and the level-only helper -------------------------------------------------------------------
def test_every_value_in_the_table_has_a_source() -> None:
    keys = [r.key for r in bandwidth.TABLE]
    assert len(keys) == len(set(keys))
    for rate in bandwidth.TABLE:
        assert math.isfinite(rate.gbps) and rate.gbps > 0, rate.key
        assert rate.source and rate.cite and rate.name, rate.key
        assert rate.line_gbps is None or rate.line_gbps >= rate.gbps, rate.key  # effective never above line


def test_level_only_helper() -> None:
    def at(token: str) -> float:
        link = parse_link_token(token)
        assert link is not None
        return bandwidth.link_gbps(link)

    # NV18: 18 links -> NVLink 4 or 5, the slower 20.6: 370.8; NV12: NVLink 3 or later, 20: 240;
    # NV1: any generation, the slowest (GA102, 12): 12; PCIe at Gen3 x16: 12; SYS: min(12, 6) = 6
    assert [at(t) for t in ("NV18", "NV12", "NV1", "PIX", "PXB", "PHB", "NODE", "SYS")] == [
        370.8, 240.0, 12.0, 12.0, 12.0, 12.0, 12.0, 6.0,
    ]
    with pytest.raises(ValueError):
        bandwidth.link_gbps(parse_link_token("X"))  # type: ignore[arg-type]


def test_nic_rates() -> None:
    assert bandwidth.nic(Nic("NIC0", "mlx5_0", rate_mbps=200_000)).gbps == 25.0  # 200,000 / 8,000
    assert bandwidth.nic(Nic("NIC0", "mlx5_0", rate_mbps=-1)).gbps == 1.25  # NCCL: speed -1 -> 10 Gb/s


def test_seam_function() -> None:
    hgx = factories.hgx_h100_nv18()
    assert busbw.busbw_gbps(hgx, [0, 1]) == pytest.approx(370.8)  # facts unknown: 18 x 20.6
    assert busbw.busbw_gbps(hgx, [2, 2]) is None  # one GPU: no ring
    assert busbw.busbw_gbps(hgx, []) is None
    with pytest.raises(KeyError):
        busbw.busbw_gbps(hgx, [0, 99])


def test_unknown_link_inside_a_set_is_valued_as_sys() -> None:
    topo = factories.from_tokens(["X NV4 PIX", "NV4 X PIX", "PIX PIX X"])
    # knock out the 0-2 cell: a damaged matrix
    links = [list(r) for r in topo.links]
    links[0][2] = links[2][0] = None
    damaged = replace(topo, links=tuple(tuple(r) for r in links))
    found = busbw.predict(damaged, [0, 1, 2])
    assert found is not None
    # the placer closes 0-1-2 over NV4 and PIX only where known; with 0-2 unknown a 3-ring must use it:
    # valued as SYS at min(12, 6) = 6
    assert found.gbps == pytest.approx(6.0)
    assert any(h.link is None for h in found.hops)
    assert "GPU pair link unknown: valued as SYS" in found.assumed


def test_docs_render_the_table() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "bandwidth.md").read_text(encoding="utf-8")
    assert bandwidth.table_markdown() in doc


@pytest.mark.parametrize("stem", ["051", "010", "005", "035", "038"])
def test_a_models_byte_estimate_covers_its_full_memo(stem: str) -> None:
    """model_for is bounded by bytes (as placer_for is): a model's estimate must cover what its memo really holds
    once every (set, multi-node) key has been asked, measured with tracemalloc."""
    import tracemalloc

    topo = m.corpus(stem)
    n = len(topo.gpus)
    busbw.model_for(topo)  # the placer and the NIC locality it shares are not its cost
    tracemalloc.start()
    try:
        model = busbw.BandwidthModel(topo)
        for mask in range(1, 1 << n):
            model.predict_mask(mask)
            model.predict_mask(mask, multi_node=True)
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert used <= model.cost_bytes(), (used, model.cost_bytes())


def test_model_for_is_bounded_by_bytes() -> None:
    """The process-wide models live in a ByteCache: its budget, not an entry count, bounds them."""
    from labeler.topology.bytecache import ByteCache

    assert isinstance(busbw._MODELS, ByteCache) and busbw._MODELS.max_bytes == 64 << 20
    t = m.corpus("051")
    assert busbw.model_for(t) is busbw.model_for(t)
    assert busbw._MODELS.bytes <= busbw._MODELS.max_bytes
