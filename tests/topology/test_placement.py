"""Placement math, table-driven over machines named after real ones.

Each expected answer is worked out by hand in the comment beside it, from the
matrices in tests/topology/factories.py.
"""

from __future__ import annotations

import itertools

import factories
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labeler.topology.links import SELF, Link, LinkLevel, parse_link_token
from labeler.topology.model import Gpu, Topology
from labeler.topology.placement import Placer, placer_for

NV = LinkLevel.NVLINK


def link(token: str) -> Link:
    out = parse_link_token(token)
    assert out is not None
    return out


CASES = [
    # (id, topology factory, free GPUs, k, expected GPU set or None, expected bottleneck token)
    # DGX-1: NV2 edges form the 8-cycle 0-3-2-1-5-6-7-4-0, so all 8 ring at NV2 ...
    ("dgx1_all8_nv2_ring", factories.dgx1_v100, range(8), 8, (0, 1, 2, 3, 4, 5, 6, 7), "NV2"),
    # ... but no 4-cycle uses only NV2 edges (the NV2 graph is one 8-cycle), so 4 GPUs ring at NV1:
    # {0,1,2,3} is a NV1/NV2 clique (0-1 NV1, 0-2 NV1, 0-3 NV2, 1-2 NV2, 1-3 NV1, 2-3 NV2).
    ("dgx1_4_of_8_nv1", factories.dgx1_v100, range(8), 4, (0, 1, 2, 3), "NV1"),
    # Free {0,1,2,4,5,6}: 0-5, 0-6, 1-4, 1-6, 2-4, 2-5 are SYS. NVLink edges among them:
    # 0-1,0-2,0-4,1-2,1-5,2-6,4-5,4-6,5-6. 4-cycles: 1-2-6-5-1 (NV2,NV1,NV2,NV2) and 0-2-6-4-0
    # (NV1,NV1,NV1,NV2) and 0-1-5-4-0 (NV1,NV2,NV1,NV2). Tie-break: most NVLinks over all pairs in
    # the set: {1,2,5,6}: 1-2 NV2,1-5 NV2,1-6 SYS,2-5 SYS,2-6 NV1,5-6 NV2 = nv -7, levels 1+1+6+6+1+1=16
    # {0,1,4,5}: 0-1 NV1,0-4 NV2,0-5 SYS,1-4 SYS,1-5 NV2,4-5 NV1 = nv -6, levels 16 -> {1,2,5,6} wins.
    ("dgx1_cross_socket_4_nvlink_ring", factories.dgx1_v100, (0, 1, 2, 4, 5, 6), 4, (1, 2, 5, 6), "NV1"),
    # Free {0,5}: 0-5 is SYS (no NVLink): a 2-GPU ring crosses sockets.
    ("dgx1_pair_without_nvlink", factories.dgx1_v100, (0, 5), 2, (0, 5), "SYS"),
    # L40S-class 8x PCIe, 4 switches of 2: a pair inside one switch is PIX.
    ("pcie8_pair_in_switch", factories.pcie_8x_4switch_2socket, range(8), 2, (0, 1), "PIX"),
    # Free {0,2,3,4,5,6}: socket 0 has {0} + {2,3}, socket 1 has {4,5} + {6}. k=3: best is NODE inside
    # one socket; both sockets offer exactly 3 -> smallest group tie -> lowest first index -> {0,2,3}.
    ("pcie8_three_best_fit", factories.pcie_8x_4switch_2socket, (0, 2, 3, 4, 5, 6), 3, (0, 2, 3), "NODE"),
    # Free {0,1,2,4,5,6,7}: k=2 at PIX: switch pairs {0,1},{4,5},{6,7} — all size 2, lowest first.
    ("pcie8_pair_skips_broken_switch", factories.pcie_8x_4switch_2socket, (0, 1, 2, 4, 5, 6, 7), 2, (0, 1), "PIX"),
    # k=4 with free {0,1,2,4,5,6,7}: socket 1 {4,5,6,7} fits exactly at NODE; socket 0 has only 3.
    ("pcie8_four_on_full_socket", factories.pcie_8x_4switch_2socket, (0, 1, 2, 4, 5, 6, 7), 4, (4, 5, 6, 7), "NODE"),
    # k=5 needs both sockets: SYS. Sub-islands at NODE: {0,1,2} (3) and {4,5,6,7} (4): no exact
    # cover of 5 by whole islands -> greedy smallest first: {0,1,2} then 2 of {4,5,6,7} = one whole
    # switch {4,5}.
    ("pcie8_five_cross_socket", factories.pcie_8x_4switch_2socket, (0, 1, 2, 4, 5, 6, 7), 5, (0, 1, 2, 4, 5), "SYS"),
    # 8x RTX 4090, all SYS: any pair rings at SYS.
    ("rtx4090_allsys_pair", factories.rtx4090_8x_allsys, range(8), 2, (0, 1), "SYS"),
    # NVLink bridge pairs: 2 GPUs on one bridge NV12; 4 GPUs = two bridges on one socket: NODE.
    ("bridge_pairs_two", factories.nvlink_bridge_pairs_8x, range(8), 2, (0, 1), "NV12"),
    ("bridge_pairs_four", factories.nvlink_bridge_pairs_8x, range(8), 4, (0, 1, 2, 3), "NODE"),
    # Free {1,2,3,4,5}: bridge {2,3} and {4,5} whole, {1} broken. k=2 -> NV12 in the smallest
    # group: both size 2, lowest first -> {2,3}.
    ("bridge_pairs_two_after_break", factories.nvlink_bridge_pairs_8x, (1, 2, 3, 4, 5), 2, (2, 3), "NV12"),
    # H100 NVSwitch: everything NV18.
    ("hgx_h100_six", factories.hgx_h100_nv18, range(8), 6, (0, 1, 2, 3, 4, 5), "NV18"),
    # 16x PCIe: k=4 on all free: 4 GPUs under one host bridge (2 switches) ring at PHB.
    ("pcie16_four_phb", factories.pcie_16x_8switch, range(16), 4, (0, 1, 2, 3), "PHB"),
    # Fewer free than asked: no placement.
    ("not_enough_free", factories.hgx_h100_nv18, (0, 1, 2), 4, None, ""),
]


@pytest.mark.parametrize(("factory", "free", "k", "gpus", "token"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_best_placement(factory, free, k, gpus, token) -> None:  # type: ignore[no-untyped-def]
    got = Placer(factory()).best(free, k)
    if gpus is None:
        assert got is None
        return
    assert got is not None
    assert got.gpus == gpus
    assert got.bottleneck == link(token)


def _ring_bottleneck(topo, ring):  # type: ignore[no-untyped-def]
    hops = list(zip(ring, ring[1:] + ring[:1], strict=True)) if len(ring) > 1 else []
    worst = None
    for a, b in hops:
        lk = topo.gpu_link(a, b)
        if worst is None or lk.rank > worst.rank:
            worst = lk
    return worst


@pytest.mark.parametrize(
    "factory",
    [factories.dgx1_v100, factories.pcie_8x_4switch_2socket, factories.nvlink_bridge_pairs_8x],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_bottleneck_is_optimal_by_brute_force(factory, k) -> None:  # type: ignore[no-untyped-def]
    """Check the answer against exhaustive search over every k-set and every ring order."""
    topo = factory()
    placer = Placer(topo)
    for free in [range(8), (0, 2, 3, 5, 6, 7), (1, 2, 4, 7, 6)]:
        free = tuple(free)
        if len(free) < k:
            continue
        best = None
        for subset in itertools.combinations(free, k):
            first, *rest = subset
            for perm in itertools.permutations(rest):
                b = _ring_bottleneck(topo, (first, *perm))
                if best is None or b.rank < best.rank:
                    best = b
        got = placer.best(free, k)
        assert got is not None
        assert got.bottleneck.rank == best.rank, (free, k, got, best)
        # the reported ring really is a ring through the chosen GPUs with that bottleneck
        assert sorted(got.ring) == list(got.gpus)
        assert _ring_bottleneck(topo, got.ring).rank == got.bottleneck.rank


def test_single_gpu_packs_into_broken_island() -> None:
    # L40S-class: free {1,2,3,4,5,6,7}; GPU1's switch {0,1} is already broken, so a 1-GPU pod
    # should take GPU1 and leave the whole switch islands {2,3},{4,5},{6,7} for pairs.
    got = Placer(factories.pcie_8x_4switch_2socket()).best(range(1, 8), 1)
    assert got is not None and got.gpus == (1,)
    assert got.bottleneck.level is LinkLevel.SELF


def test_invalid_k_raises_and_cache_returns_same_answer() -> None:
    placer = placer_for(factories.hgx_h100_nv18())
    with pytest.raises(ValueError):
        placer.best(range(8), 0)
    first = placer.best(range(8), 3)
    assert placer.best(range(8), 3) is first
    assert placer_for(factories.hgx_h100_nv18()) is placer  # equal topologies share a placer


def test_islands_free_groups_free_gpus() -> None:
    placer = Placer(factories.pcie_8x_4switch_2socket())
    assert placer.islands_free((0, 2, 3, 5), LinkLevel.PIX) == [[0], [2, 3], [5]]
    assert placer.islands_free((0, 2, 3, 5), LinkLevel.NODE) == [[0, 2, 3], [5]]
    assert placer.islands_free((0, 1), LinkLevel.NVLINK) == [[0], [1]]


def test_sixteen_gpu_nodes_answer() -> None:
    placer = Placer(factories.nvswitch_16x())
    got = placer.best(range(16), 8)
    assert got is not None and got.bottleneck.token == "NV6" and len(got.gpus) == 8
    got = Placer(factories.pcie_16x_8switch()).best(range(16), 8)
    # 8 GPUs under one socket: 2 host bridges x 2 switches x 2 -> bottleneck NODE
    assert got is not None and got.gpus == tuple(range(8)) and got.bottleneck.level is LinkLevel.NODE


# -- property: on random topologies the bottleneck equals exhaustive search ----------------


_TOKENS = ["NV1", "NV2", "NV12", "PIX", "PXB", "PHB", "NODE", "SYS"]


@st.composite
def gpu_topologies(draw: st.DrawFn) -> Topology:
    n = draw(st.integers(2, 7))
    rows = [[SELF if i == j else None for j in range(n)] for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            rows[i][j] = rows[j][i] = parse_link_token(draw(st.sampled_from(_TOKENS)))
    return Topology.from_rows([Gpu(i) for i in range(n)], [], rows)


@settings(max_examples=200, deadline=None)
@given(gpu_topologies(), st.data())
def test_random_topologies_match_brute_force(topo: Topology, data: st.DataObject) -> None:
    n = len(topo.gpus)
    free = data.draw(st.lists(st.integers(0, n - 1), unique=True, min_size=1))
    k = data.draw(st.integers(1, n))
    got = Placer(topo).best(free, k)
    if len(free) < k:
        assert got is None
        return
    assert got is not None and len(got.gpus) == k and set(got.gpus) <= set(free)
    if k == 1:
        assert got.bottleneck == SELF
        return
    best = None
    for subset in itertools.combinations(sorted(free), k):
        first, *rest = subset
        for perm in itertools.permutations(rest):
            b = _ring_bottleneck(topo, (first, *perm))
            if best is None or b.rank < best.rank:
                best = b
    assert got.bottleneck.rank == best.rank
    assert _ring_bottleneck(topo, got.ring).rank == got.bottleneck.rank
