"""The device-plugin model against go-gpuallocator's own tests and hand-worked machines.

Expected answers come from go-gpuallocator's test tables (``gpuallocator/besteffort_test.go``
and ``common_test.go`` @ 876e7b7609bb) or were worked out by hand, in the comments next to
them, from the scores in ``besteffort_policy.go``: NVLink 100 per link, PCIe 50 (PIX),
40 (PXB), 30 (PHB), 20 (NODE), 10 (SYS).

A second, literal transcription of the Go walk (``go_walk_allocate``) lists every partition,
as ``iterateGPUPartitions`` does. Go's own partition-listing table checks it. It is then
the reference for the fast search on random machines.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from factories import dgx1_v100, from_tokens, hgx_h100_nv18, pcie_8x_4switch_2socket

from labeler.topology.drawing import analyse
from labeler.topology.links import LinkLevel, parse_link_token
from labeler.topology.model import Gpu, Topology
from labeler.topology.smi_parser import parse
from policy.device_plugin import BEST_EFFORT, BLIND, DeviceAdmissionError, choose, offer_order
from policy.gpuallocator import DeviceLinks, P2PLinkType, best_effort, links_for

CORPUS = Path(__file__).parents[1] / "fixtures" / "topo-corpus"
PIX, PXB, PHB, NODE, SYS = LinkLevel.PIX, LinkLevel.PXB, LinkLevel.PHB, LinkLevel.NODE, LinkLevel.SYS


Machine = tuple[Topology, dict[tuple[int, int], LinkLevel | None]]


# -- go-gpuallocator's test machines, built as Topology + the PCIe level under each NVLink --
def _matrix(n: int, cells: dict[tuple[int, int], str], default: str = "SYS") -> list[str]:
    def cell(i: int, j: int) -> str:
        if i == j:
            return "X"
        return cells.get((min(i, j), max(i, j)), default)

    return [" ".join(cell(i, j) for j in range(n)) for i in range(n)]


def rtx8000_4x() -> tuple[Topology, dict[tuple[int, int], LinkLevel | None]]:
    """``New4xRTX8000Node``: NV2 bridges 0-3 and 1-2 (no PCIe type on them), 0-1/2-3 same CPU."""
    topo = from_tokens(_matrix(4, {(0, 3): "NV2", (1, 2): "NV2", (0, 1): "NODE", (2, 3): "NODE"}))
    return topo, {(0, 3): None, (1, 2): None}


def dgx1_pascal() -> tuple[Topology, dict[tuple[int, int], LinkLevel | None]]:
    """``NewDGX1PascalNode``: one NVLink per cube-mesh edge; PCIe switches 0-2, 1-3, 4-6, 5-7."""
    nv = [(0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (1, 3), (1, 5), (2, 3), (2, 6), (3, 7)]
    nv += [(4, 5), (4, 6), (4, 7), (5, 6), (5, 7), (6, 7)]
    topo = from_tokens(_matrix(8, {p: "NV1" for p in nv}))
    pcie: dict[tuple[int, int], LinkLevel | None] = {p: SYS for p in nv}
    for sock in (0, 4):
        for a, b in itertools.combinations(range(sock, sock + 4), 2):
            pcie[(a, b)] = PIX if b - a == 2 else PHB
    return topo, pcie


def dgx1_volta() -> tuple[Topology, dict[tuple[int, int], LinkLevel | None]]:
    """``NewDGX1VoltaNode``: the corpus DGX-1 V100 NVLink matrix; PCIe switches 0-1, 2-3, 4-5, 6-7."""
    topo = dgx1_v100()
    pcie: dict[tuple[int, int], LinkLevel | None] = {}
    for a, b, link in topo.gpu_pairs():
        if link is not None and link.level is LinkLevel.NVLINK:
            same_socket = a // 4 == b // 4
            pcie[(a, b)] = (PIX if b - a == 1 and a % 2 == 0 else PHB) if same_socket else SYS
    return topo, pcie


# -- TestBestEffortAllocate (DGX-1 Volta) ------------------------------------------------------
GO_ALLOCATE_TABLE = [
    ("Single NVLINK, prefer same switch", [0, 2, 4, 5], [], 2, [4, 5]),
    ("Single NVLINK, prefer same socket", [0, 4, 5, 6], [], 2, [5, 6]),
    ("Prefer dual NVLINK same socket", [0, 3, 1], [], 2, [0, 3]),
    ("Prefer dual NVLINK cross socket", [0, 1, 4], [], 2, [0, 4]),
    ("Must include with allocation size 1", list(range(8)), [4], 1, [4]),
    ("Must include with allocation size 2", list(range(8)), [4], 2, [4, 7]),
    ("Must include with allocation size 4", list(range(8)), [4], 4, [4, 5, 6, 7]),
    ("Must include with unavailable device", [1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3], 4, []),
    ("Must include with full set specified", list(range(8)), [0, 2, 4, 6], 4, [0, 2, 4, 6]),
    ("Must include with too many devices specified", list(range(8)), [1, 2, 3, 4, 5, 6], 4, []),
    ("Required too many devices than available", [1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6], 1, []),
]


@pytest.mark.parametrize(
    ("name", "available", "required", "size", "want"), GO_ALLOCATE_TABLE, ids=[c[0] for c in GO_ALLOCATE_TABLE]
)
def test_go_best_effort_allocate_table(
    name: str, available: list[int], required: list[int], size: int, want: list[int]
) -> None:
    topo, pcie = dgx1_volta()
    got = best_effort(links_for(topo, pcie=pcie), available, required, size)
    assert sorted(g for g in got if g is not None) == want and None not in got


# -- RunAllocTests: a stateful Allocator asking for sorted remaining devices -------------------
def allocator_run(links: DeviceLinks, sizes: Sequence[int]) -> list[list[int]]:
    """``Allocator.Allocate``: policy over ``remaining.SortedSlice()``, nothing required."""
    remaining = sorted(links.gpus)
    out = []
    for size in sizes:
        got = [g for g in best_effort(links, remaining, [], size) if g is not None]
        remaining = [g for g in remaining if g not in got]
        out.append(sorted(got))
    return out


GO_ALLOCATOR_TABLE = [
    ("4xRTX8000 one", rtx8000_4x, [(1, [0]), (1, [1]), (1, [2]), (1, [3]), (1, [])]),
    ("4xRTX8000 two", rtx8000_4x, [(2, [0, 3]), (2, [1, 2]), (1, [])]),
    ("4xRTX8000 four", rtx8000_4x, [(4, [0, 1, 2, 3]), (1, [])]),
    ("DGX1 Pascal one", dgx1_pascal, [*((1, [i]) for i in range(8)), (1, [])]),
    ("DGX1 Pascal two", dgx1_pascal, [(2, [0, 2]), (2, [1, 3]), (2, [4, 6]), (2, [5, 7]), (1, [])]),
    ("DGX1 Pascal four", dgx1_pascal, [(4, [0, 1, 2, 3]), (4, [4, 5, 6, 7]), (1, [])]),
    ("DGX1 Pascal eight", dgx1_pascal, [(8, list(range(8))), (1, [])]),
    ("DGX1 Volta one", dgx1_volta, [*((1, [i]) for i in range(8)), (1, [])]),
    ("DGX1 Volta two", dgx1_volta, [(2, [0, 3]), (2, [1, 2]), (2, [4, 7]), (2, [5, 6]), (1, [])]),
    ("DGX1 Volta four", dgx1_volta, [(4, [0, 1, 2, 3]), (4, [4, 5, 6, 7]), (1, [])]),
    ("DGX1 Volta eight", dgx1_volta, [(8, list(range(8))), (1, [])]),
]


@pytest.mark.parametrize(("name", "machine", "steps"), GO_ALLOCATOR_TABLE, ids=[c[0] for c in GO_ALLOCATOR_TABLE])
def test_go_allocator_tables(name: str, machine: Callable[[], Machine], steps: list[tuple[int, list[int]]]) -> None:
    topo, pcie = machine()
    links = links_for(topo, pcie=pcie)
    assert allocator_run(links, [s for s, _ in steps]) == [want for _, want in steps]


def test_go_machines_score_like_go() -> None:
    # calculateGPUPairScore on the Volta table: NV2 + PHB = 230, NV1 + PIX = 150, SYS = 10;
    # RTX8000's bridges carry no PCIe type: NV2 alone = 200.
    topo, pcie = dgx1_volta()
    links = links_for(topo, pcie=pcie)
    assert (links.pair_score(0, 3), links.pair_score(0, 1), links.pair_score(0, 5)) == (230, 150, 10)
    assert links.set_score([4, 5, 6, 7]) == 150 + 130 + 230 + 230 + 130 + 250
    rtx, rtx_pcie = rtx8000_4x()
    assert links_for(rtx, pcie=rtx_pcie).pair_score(0, 3) == 200
    assert links_for(rtx, pcie=rtx_pcie).p2p[0][3] is P2PLinkType.UNKNOWN


# -- A literal transcription of the Go walk, checked against TestBestEffortIterateGPUPartitions --
Slot = int | None


def go_partitions(devices: list[Slot], size: int) -> Iterator[list[list[Slot]]]:
    if size <= 0 or size > len(devices):
        return
    if size == 1:
        for d in devices:
            yield [[d]]
        return
    padded = devices + [None] * ((-len(devices)) % size)
    padding = padded.count(None)

    def walk(devs: list[Slot], accum: list[list[Slot]]) -> Iterator[list[list[Slot]]]:
        if len(devs) == size:
            yield [*accum, devs]
            return
        for combo in itertools.combinations(devs[1:], size - 1):
            s = [devs[0], *combo]
            if s.count(None) not in (0, padding):
                continue
            yield from walk([d for d in devs if d not in s], [*accum, s])

    yield from walk(padded, [])


def go_walk_allocate(links: DeviceLinks, available: list[int], required: list[int], size: int) -> list[Slot]:
    if size <= 0 or len(available) < size or len(required) > size or len(required) > len(available):
        return []

    def score(s: list[Slot]) -> int:
        return links.set_score([g for g in s if g is not None])

    best: list[list[Slot]] | None = None
    best_score = 0
    for cand in go_partitions(list(available), size):
        if not any(all(r in s for r in required) and None not in s for s in cand):
            continue
        total = sum(score(s) for s in cand)
        if best is None or total > best_score:
            best, best_score = cand, total
    kept = [s for s in best or [] if all(r in s for r in required)]
    if not kept:
        return []
    out = kept[0]
    for s in kept[1:]:
        if score(s) > score(out):
            out = s
    return out


P = None  # Go's `pad`
GO_PARTITION_TABLE = [
    (0, []),
    (1, [[[0]], [[1]], [[2]], [[3]]]),
    (2, [[[0, 1], [2, 3]], [[0, 2], [1, 3]], [[0, 3], [1, 2]]]),
    (3, [[[0, 1, 2], [3, P, P]], [[0, 1, 3], [2, P, P]], [[0, 2, 3], [1, P, P]], [[1, 2, 3], [0, P, P]]]),
    (4, [[[0, 1, 2, 3]]]),
    (5, []),
]


@pytest.mark.parametrize(("size", "want"), GO_PARTITION_TABLE)
def test_literal_walk_lists_gos_partitions(size: int, want: list[list[list[Slot]]]) -> None:
    def canon(partition: list[list[Slot]]) -> frozenset[tuple[Slot, ...]]:
        return frozenset(tuple(sorted(s, key=lambda g: -1 if g is None else g)) for s in partition)

    got = [canon(p) for p in go_partitions([0, 1, 2, 3], size)]
    assert len(got) == len(want) and set(got) == {canon(p) for p in want}


_TOKENS = ["NV1", "NV2", "NV4", "NV12", "PIX", "PXB", "PHB", "NODE", "SYS", "SYS"]


def random_machine(rnd: random.Random, n: int) -> Topology:
    cells = {(i, j): rnd.choice(_TOKENS) for i in range(n) for j in range(i + 1, n)}
    return from_tokens(_matrix(n, cells))


def test_fast_search_matches_the_literal_walk_on_random_machines() -> None:
    rnd = random.Random(20260914)
    for case in range(150):
        n = rnd.randint(2, 8)
        topo = random_machine(rnd, n)
        links = links_for(topo)
        available = rnd.sample(range(n), rnd.randint(1, n))
        size = rnd.randint(1, len(available))
        required = rnd.sample(available, rnd.randint(0, min(size, 2))) if case % 3 == 0 else []
        want = go_walk_allocate(links, available, required, size)
        assert list(best_effort(links, available, required, size)) == want, (case, available, required, size)


# -- Named corpus machines, worked by hand ----------------------------------------------------
def test_dgx1_v100_corpus_pairs_and_quads() -> None:
    # PCIe under NVLink inferred: 2-3 share mlx5_0's switch (both PIX to it) -> NV2+PIX = 250;
    # 0-3, 1-2, 4-7, 5-6, 6-7 NV2 + NODE = 220; 0-4, 1-5 NV2 + SYS = 210; 0-1, 0-2, 1-3, 4-5,
    # 4-6, 5-7 NV1 + NODE = 120; 2-6, 3-7 NV1 + SYS = 110; the rest SYS = 10.
    # Pairs: the best matching is 2-3, 0-4, 1-5, 6-7 = 890 (next: 0-3, 1-2, 4-7, 5-6 = 880);
    # its best pair is 2-3, whatever the order.
    topo = dgx1_v100()
    for seed in range(5):
        assert choose(topo, range(8), 2, rng=random.Random(seed)) == (2, 3)
    # Quads: {0,1,2,3} = 1050 and {4,5,6,7} = 1020 beat every other split; 1050 wins.
    assert choose(topo, range(8), 4, rng=random.Random(1)) == (0, 1, 2, 3)
    assert choose(topo, range(8), 8) == tuple(range(8))


def test_dgx1_v100_tie_follows_the_offered_order() -> None:
    # Free {0,1,4,5}: {0-4, 1-5} = 420 beats {0-1, 4-5} = 240; 0-4 and 1-5 tie at 210, so the
    # set holding the first offered GPU wins.
    topo = dgx1_v100()
    assert choose(topo, [0, 1, 4, 5], 2) == (0, 4)
    assert choose(topo, [5, 4, 1, 0], 2) == (1, 5)


def test_pcie_8x_two_socket_box() -> None:
    # Same switch (PIX) 50, same socket (NODE) 20, across sockets (SYS) 10.
    topo = pcie_8x_4switch_2socket()
    assert choose(topo, range(8), 2) == (0, 1)  # four switch pairs; the first offered wins
    assert choose(topo, [5, 2, 7, 0, 1, 3, 4, 6], 2) == (4, 5)
    assert choose(topo, range(8), 4) == (0, 1, 2, 3)
    assert choose(topo, [6, 0, 1, 2, 3, 4, 5, 7], 4) == (4, 5, 6, 7)
    # Threes out of eight (one pad): the best partition totals 210, e.g. {0,1,2} 90 + {3,4,5} 70
    # + {6,7,pad} 50; the first such in walk order starts {0,1,2}, which also scores best.
    assert choose(topo, range(8), 3) == (0, 1, 2)
    # One GPU per switch left: the same-socket pair (20) beats a cross-socket one (10).
    assert choose(topo, [0, 4, 2, 6], 2) == (0, 2)


def test_nvswitch_board_is_topology_blind_to_the_device_plugin() -> None:
    # Through NVSwitch NVML reports no GPU-to-GPU NVLink; with no NIC or NUMA facts every pair
    # scores 10, every partition ties, and the policy returns the first `size` offered GPUs.
    topo = hgx_h100_nv18()
    links = links_for(topo)
    assert links.nvswitch and all(c == 0 for row in links.nvlinks for c in row)
    assert {links.pair_score(a, b) for a, b, _ in topo.gpu_pairs()} == {10}
    for seed in range(6):
        for size in range(1, 9):
            best = choose(topo, range(8), size, rng=random.Random(seed))
            assert best == choose(topo, range(8), size, policy=BLIND, rng=random.Random(seed))
            assert best == tuple(sorted(offer_order(range(8), rng=random.Random(seed))[:size]))
    assert not links_for(topo, nvswitch=False).nvswitch  # the caller can say otherwise
    assert links_for(topo, nvswitch=False).pair_score(0, 1) == 1800 + 10


def test_hgx_h100_corpus_prefers_one_socket() -> None:
    # Corpus 051: GPU0 is PIX to NIC0 and GPU1 NODE, so 0-1 sit at NODE under the switch
    # (20); sockets differ by NUMA (SYS, 10). Quads: one socket each way, 120 + 120.
    topo = parse((CORPUS / "051_h100x8-nv18-8nics-dualport-pix-pairs.txt").read_text())
    links = links_for(topo)
    assert links.nvswitch
    assert (links.pair_score(0, 1), links.pair_score(1, 3), links.pair_score(0, 4)) == (20, 20, 10)
    assert choose(topo, [5, 0, 1, 2, 3, 4, 6, 7], 4) == (4, 5, 6, 7)
    assert choose(topo, [0, 4, 5, 1], 2) == (0, 1)  # {0-1, 4-5} = 40 beats 20


def nv12_pairs_all_sys() -> Topology:
    """The 8-GPU machine of NVIDIA/k8s-device-plugin#546: NV12 pairs 0-2, 1-3, 4-5, 6-7; all else SYS."""
    cells = {(0, 2): "NV12", (1, 3): "NV12", (4, 5): "NV12", (6, 7): "NV12"}
    return from_tokens(_matrix(8, cells), numa=[0, 0, 0, 0, 1, 1, 1, 1])


def test_padded_set_crashes_the_plugin_for_some_orders() -> None:
    # Free {0,1,2,4,6}, three GPUs: one pad. 0-2 = NV12 + NODE (same NUMA) = 1220, all else 10.
    # Best total 1250, reached both by {0,2,x} + {y,z,pad} and by {1,4,6} + {0,2,pad}.
    # Offered 1,4,6 first: the walk meets [{1,4,6},{0,2,pad}] first, and the padded set (1220)
    # outscores {1,4,6} (30), so Go returns [0 2 nil] and alignedAlloc panics.
    topo = nv12_pairs_all_sys()
    assert best_effort(links_for(topo), [1, 4, 6, 0, 2], [], 3) == (0, 2, None)
    with pytest.raises(DeviceAdmissionError) as err:
        choose(topo, [1, 4, 6, 0, 2], 3)
    assert err.value.offered == (1, 4, 6, 0, 2) and err.value.size == 3
    assert choose(topo, [0, 1, 2, 4, 6], 3) == (0, 1, 2)
    # By hand: it crashes exactly when the first two offered GPUs are both from {1,4,6}:
    # 3*2 choices for them, 3! for the rest = 36 of the 120 orders.
    crashes = 0
    for order in itertools.permutations([0, 1, 2, 4, 6]):
        try:
            choose(topo, order, 3)
        except DeviceAdmissionError:
            crashes += 1
            assert {order[0], order[1]} <= {1, 4, 6}
    assert crashes == 36
    assert choose(topo, [1, 4, 6, 0, 2], 3, policy=BLIND) == (1, 4, 6)  # kubelet alone never asks


# -- kubelet's side: order, required devices, blind fill, errors ------------------------------
def test_same_seed_same_answer_and_order_of_input_does_not_matter() -> None:
    topo = pcie_8x_4switch_2socket()
    for policy in (BEST_EFFORT, BLIND):
        a = choose(topo, [7, 3, 1, 0, 5], 2, policy=policy, rng=random.Random(42))
        b = choose(topo, [0, 1, 3, 5, 7], 2, policy=policy, rng=random.Random(42))
        assert a == b
    seen = {choose(topo, range(8), 3, policy=BLIND, rng=random.Random(s)) for s in range(40)}
    assert len(seen) > 1  # the blind pick follows kubelet's unordered offer


def test_blind_takes_the_first_offered() -> None:
    topo = dgx1_v100()
    assert choose(topo, [3, 1, 0, 2], 2, policy=BLIND) == (1, 3)
    assert choose(topo, [5, 6, 7], 3, required=[0], policy=BLIND) == (0, 5, 6)


def test_required_devices_are_honoured() -> None:
    topo, pcie = dgx1_volta()
    # Go's "Must include with allocation size 2": 4 must be in; its best partner is 7.
    assert choose(topo, range(8), 2, required=[4], pcie=pcie) == (4, 7)
    # kubelet: reused devices are not free, they are added to the offer.
    assert 4 in choose(topo, [0, 1, 2, 3, 5, 6, 7], 4, required=[4], pcie=pcie)
    assert choose(topo, [0, 5], 2, required=[1, 2]) == (1, 2)  # nothing left to choose


def test_kubelet_errors() -> None:
    topo = dgx1_v100()
    with pytest.raises(DeviceAdmissionError):
        choose(topo, [0, 1], 3)
    with pytest.raises(ValueError, match="not in this topology"):
        choose(topo, [0, 9], 1)
    with pytest.raises(ValueError, match="repeat"):
        choose(topo, [0, 0, 1], 1)
    with pytest.raises(ValueError):
        choose(topo, [0, 1], 1, required=[0, 1])
    assert choose(topo, [0, 1], 0) == ()


def test_pcie_override_and_inference() -> None:
    topo = dgx1_v100()
    inferred = links_for(topo)
    assert inferred.p2p[2][3] is P2PLinkType.SINGLE_SWITCH  # both PIX to mlx5_0
    assert inferred.p2p[0][1] is P2PLinkType.SAME_CPU  # NODE to the NIC, same NUMA node
    assert inferred.p2p[0][4] is P2PLinkType.CROSS_CPU  # NUMA nodes differ
    given = links_for(topo, pcie={(1, 0): LinkLevel.PIX})
    assert given.p2p[0][1] is P2PLinkType.SINGLE_SWITCH
    assert links_for(topo) is inferred  # cached: the memo is shared
    assert links_for(dgx1_v100()) is inferred  # an equal topology, another object
    with pytest.raises(ValueError):
        links_for(topo, pcie={(0, 1): LinkLevel.NVLINK})


def test_sixteen_gpu_nvlink_board_is_tractable() -> None:
    # 16 GPUs, two NVLink-meshed halves of 8 (NV4), SYS between: the walk over every
    # partition would be 2,027,025 partitions for pairs; the search must still answer, and a
    # pair comes from one half.
    gpus = [Gpu(index=i, numa_affinity=frozenset({i // 8})) for i in range(16)]
    token = {True: "NV4", False: "SYS"}
    rows = [[parse_link_token("X" if i == j else token[i // 8 == j // 8]) for j in range(16)] for i in range(16)]
    topo = Topology.from_rows(gpus, [], rows)
    got = choose(topo, range(16), 2, rng=random.Random(3))
    assert got[0] // 8 == got[1] // 8
    assert len({g // 8 for g in choose(topo, range(16), 8, rng=random.Random(3))}) == 1


def test_nvswitch_rule_is_the_cores() -> None:
    # One rule (labeler.topology.nvswitch): a 3-GPU chain NV12 / NV12 / PIX shows 24 links at GPU1,
    # more than any GPU has, but it is not all-to-all, so no switch: NVML would report the direct links.
    chain = parse("GPU0 GPU1 GPU2\nGPU0 X NV12 PIX\nGPU1 NV12 X NV12\nGPU2 PIX NV12 X\n")
    links = links_for(chain)
    assert not links.nvswitch
    assert (links.nvlinks[0][1], links.nvlinks[1][2], links.nvlinks[0][2]) == (12, 12, 0)
    assert bool(analyse(chain).nvswitch) is links.nvswitch  # the picture agrees
    h100 = hgx_h100_nv18()
    assert bool(analyse(h100).nvswitch) is links_for(h100).nvswitch is True
