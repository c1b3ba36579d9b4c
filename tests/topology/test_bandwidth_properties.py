"""Properties of the bandwidth model over generated machines.

Machines are generated the way real ones are built: a PCIe tree (sockets, host bridges,
switch trees, switches) gives every GPU pair its level; NVLink pairs are laid over it with
link counts the GPU model has; one GPU model per machine (facts as NVML reports them).
Properties: predictions are finite, positive and deterministic; a slower link, fewer
NVLinks, less PCIe, a slower NIC or P2P taken away never raises a prediction; the network
of a multi-node job only ever caps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import bw_machines as m
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from labeler.topology import busbw
from labeler.topology.busbw import BandwidthModel
from labeler.topology.links import Link, LinkLevel
from labeler.topology.model import P2P, Gpu, Nic, PcieLink, Topology


@dataclass(frozen=True)
class Kind:
    facts: tuple[str, str, str | None]
    pcie: PcieLink
    nvlinks: tuple[int, ...]  # link counts a pair of this GPU model can have (empty: no NVLink)


KINDS = (
    Kind(m.VOLTA, m.GEN3_X16, (1, 2)),  # DGX-1 V100
    Kind(m.TURING, m.GEN3_X16, (2,)),  # RTX 2080 Ti bridge
    Kind(m.AMPERE_GA100, m.GEN4_X16, (4, 12)),  # HGX A100 4-GPU mesh, NVSwitch / bridges
    Kind(m.AMPERE_GA102, m.GEN4_X16, (4,)),  # RTX 3090 / A40 bridges
    Kind(m.ADA, m.GEN4_X16, ()),  # L40S, RTX 4090
    Kind(m.HOPPER, m.GEN5_X16, (8, 18)),  # H800, H100
    Kind(m.BLACKWELL, m.GEN5_X16, (18,)),  # B200
    Kind(m.BLACKWELL_RTX, m.GEN5_X16, ()),  # RTX PRO 6000
)


@st.composite
def machines(draw: st.DrawFn) -> Topology:
    n = draw(st.integers(2, 6))
    kind = draw(st.sampled_from(KINDS))
    # a PCIe position per GPU: (socket, host bridge, switch tree, switch)
    place = [
        (draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1)), draw(st.integers(0, 1)))
        for _ in range(n)
    ]

    def level(a: int, b: int) -> LinkLevel:
        pa, pb = place[a], place[b]
        if pa[0] != pb[0]:
            return LinkLevel.SYS
        if pa[1] != pb[1]:
            return LinkLevel.NODE
        if pa[2] != pb[2]:
            return LinkLevel.PHB
        return LinkLevel.PIX if pa[3] == pb[3] else LinkLevel.PXB

    rows: list[list[Link | None]] = [[Link(LinkLevel.SELF)] * n for _ in range(n)]
    for a in range(n):
        for b in range(a + 1, n):
            nv = draw(st.sampled_from((0, *kind.nvlinks))) if kind.nvlinks else 0
            link = Link(LinkLevel.NVLINK, nv) if nv else Link(level(a, b))
            rows[a][b] = rows[b][a] = link
    n_nics = draw(st.integers(0, 2))
    for _ in range(n_nics):
        col = [Link(draw(st.sampled_from((LinkLevel.PIX, LinkLevel.NODE, LinkLevel.SYS)))) for _ in range(n)]
        for r, cell in zip(rows, col, strict=True):
            r.append(cell)
    for j in range(n_nics):
        rows.append([*(r[n + j] for r in rows[:n]), *(Link(LinkLevel.SELF) if i == j else Link(LinkLevel.SYS)
                                                      for i in range(n_nics))])
    p2p = draw(st.sampled_from((P2P.OK, P2P.GNS, None)))
    rate = draw(st.sampled_from((None, 100_000, 400_000)))
    gpus = [Gpu(i) for i in range(n)]
    nics = [Nic(f"NIC{j}", f"mlx5_{j}") for j in range(n_nics)]
    return m.with_facts(Topology.from_rows(gpus, nics, rows), kind.facts, kind.pcie, p2p=p2p, nic_mbps=rate)


@st.composite
def machine_and_set(draw: st.DrawFn) -> tuple[Topology, list[int]]:
    topo = draw(machines())
    gpus = draw(st.lists(st.sampled_from(topo.gpu_indices), min_size=2, unique=True))
    return topo, sorted(gpus)


def value(topo: Topology, gpus: list[int], *, multi_node: bool = False) -> float:
    found = BandwidthModel(topo).predict(gpus, multi_node=multi_node)  # a fresh model: no shared memo
    assert found is not None
    return found.gbps


def with_link(topo: Topology, a: int, b: int, link: Link) -> Topology:
    rows = [list(r) for r in topo.links]
    rows[a][b] = rows[b][a] = link
    return replace(topo, links=tuple(tuple(r) for r in rows))


@settings(max_examples=150, deadline=None)
@given(machine_and_set(), st.booleans())
def test_finite_positive_deterministic(case: tuple[Topology, list[int]], multi_node: bool) -> None:
    topo, gpus = case
    first = BandwidthModel(topo).predict(gpus, multi_node=multi_node)
    again = BandwidthModel(topo).predict(list(reversed(gpus)), multi_node=multi_node)
    assert first is not None and first == again
    assert math.isfinite(first.gbps) and first.gbps > 0
    assert sorted(first.ring) == gpus and len(first.hops) == len(gpus)
    # the prediction is its bottleneck, no faster than any hop or the network (shared links may be slower)
    assert first.gbps == first.bottleneck.gbps
    assert first.gbps <= min([h.gbps for h in first.hops] + ([first.network.gbps] if first.network else []))
    assert busbw.model_for(topo).predict(gpus, multi_node=multi_node) == first  # the memoised path agrees


@settings(max_examples=150, deadline=None)
@given(machine_and_set())
def test_the_network_only_caps(case: tuple[Topology, list[int]]) -> None:
    topo, gpus = case
    assert value(topo, gpus, multi_node=True) <= value(topo, gpus)


@settings(max_examples=150, deadline=None)
@given(machine_and_set(), st.data())
def test_more_nvlinks_never_lower(case: tuple[Topology, list[int]], data: st.DataObject) -> None:
    topo, gpus = case
    nv_pairs = [(a, b) for a, b, lk in topo.gpu_pairs() if lk is not None and lk.level is LinkLevel.NVLINK]
    assume(nv_pairs)
    a, b = data.draw(st.sampled_from(nv_pairs))
    link = topo.gpu_link(a, b)
    assert link is not None
    fewer = with_link(topo, a, b, Link(LinkLevel.NVLINK, link.nvlinks - 1) if link.nvlinks > 1 else Link(LinkLevel.SYS))
    assert value(fewer, gpus) <= value(topo, gpus)


@settings(max_examples=150, deadline=None)
@given(machine_and_set(), st.data())
def test_a_slower_pcie_level_never_raises_with_p2p(case: tuple[Topology, list[int]], data: st.DataObject) -> None:
    topo, gpus = case
    n = len(topo.gpus)
    topo = replace(topo, p2p=tuple(tuple(None if i == j else P2P.OK for j in range(n)) for i in range(n)))
    pcie_pairs = [
        (a, b, lk) for a, b, lk in topo.gpu_pairs()
        if lk is not None and LinkLevel.NVLINK < lk.level < LinkLevel.SYS
    ]
    assume(pcie_pairs)
    a, b, link = data.draw(st.sampled_from(pcie_pairs))
    worse = data.draw(st.sampled_from([lv for lv in LinkLevel if lv > link.level]))
    assert value(with_link(topo, a, b, Link(worse)), gpus) <= value(topo, gpus)


@settings(max_examples=150, deadline=None)
@given(machine_and_set())
def test_taking_p2p_away_never_raises(case: tuple[Topology, list[int]]) -> None:
    topo, gpus = case
    n = len(topo.gpus)
    ok = replace(topo, p2p=tuple(tuple(None if i == j else P2P.OK for j in range(n)) for i in range(n)))
    none = replace(topo, p2p=tuple(tuple(None if i == j else P2P.GNS for j in range(n)) for i in range(n)))
    unknown = replace(topo, p2p=())
    assert value(none, gpus) <= value(ok, gpus)
    assert value(unknown, gpus) <= value(ok, gpus)  # unknown is never better than working P2P


@settings(max_examples=150, deadline=None)
@given(machine_and_set(), st.data())
def test_less_pcie_or_a_slower_nic_never_raises(case: tuple[Topology, list[int]], data: st.DataObject) -> None:
    topo, gpus = case
    g = data.draw(st.sampled_from(gpus))
    pos = topo.gpu_indices.index(g)
    less = PcieLink(max_gen=data.draw(st.integers(1, 3)), width=data.draw(st.sampled_from((1, 4, 8))))
    gpus_less = list(topo.gpus)
    gpus_less[pos] = replace(gpus_less[pos], pcie=less)
    slower = replace(topo, gpus=tuple(gpus_less))
    for multi in (False, True):
        assert value(slower, gpus, multi_node=multi) <= value(topo, gpus, multi_node=multi)
    nic_slower = replace(topo, nics=tuple(replace(x, rate_mbps=10_000) for x in topo.nics))
    assume(all(x.rate_mbps is None or x.rate_mbps >= 10_000 for x in topo.nics))
    assert value(nic_slower, gpus, multi_node=True) <= value(topo, gpus, multi_node=True)


@settings(max_examples=150, deadline=None)
@given(machine_and_set(), st.data())
def test_adding_a_gpu_no_faster_than_the_set_never_raises(
    case: tuple[Topology, list[int]], data: st.DataObject
) -> None:
    topo, gpus = case
    rest = [g for g in topo.gpu_indices if g not in gpus]
    assume(rest)
    g = data.draw(st.sampled_from(rest))
    before = value(topo, gpus)
    model = BandwidthModel(topo)
    hops = []
    for s in gpus:
        pair = model.predict([g, s])
        assert pair is not None
        hops.append(pair.hops[0].gbps)
    assume(max(hops) <= before)  # every hop the new GPU could take is no faster than the set
    assert value(topo, sorted([*gpus, g])) <= before
