"""NUMA groups (labeler/topology/numa.py): the rules, one small machine per rule.

Matrices are written out (GPUs then NICs); the expected groups follow from the rule
named in each case, not from running the code.
"""

from __future__ import annotations

import pytest
from factories import from_tokens

from labeler.topology import numa, report
from labeler.topology.model import P2P, Gpu, PcieLink, Topology
from labeler.topology.serialize import parse_cpulist


def with_affinity(topo: Topology, numa_sets: list[str | None], cpu_sets: list[str | None] | None = None) -> Topology:
    def ids(text: str | None) -> frozenset[int] | None:
        return None if text is None else parse_cpulist(text)

    cpus = cpu_sets or [None] * len(numa_sets)
    gpus = [Gpu(g.index, numa_affinity=ids(numa_sets[p]), cpu_affinity=ids(cpus[p])) for p, g in enumerate(topo.gpus)]
    return Topology(tuple(gpus), topo.nics, topo.links)


NV4 = ["X NV4 NV4 NV4", "NV4 X NV4 NV4", "NV4 NV4 X NV4", "NV4 NV4 NV4 X"]

CASES = [
    # affinity decides even where NVLink joins everything
    ("numa-affinity", with_affinity(from_tokens(NV4), ["0", "0", "1", "1"]),
     numa.Basis.AFFINITY, ((0, 1), (2, 3))),
    # CPU affinity where NUMA is unknown (old drivers print only CPU Affinity)
    ("cpu-affinity", with_affinity(from_tokens(NV4), [None] * 4, ["0-7", "0-7", "8-15", "8-15"]),
     numa.Basis.AFFINITY, ((0, 1), (2, 3))),
    # a GPU known only by CPU list joins the NUMA group of a GPU that has both
    ("cpu-joins-numa", with_affinity(from_tokens(NV4), ["0", None, "1", "1"], ["0-7", "0-7", "8-15", "8-15"]),
     numa.Basis.AFFINITY, ((0, 1), (2, 3))),
    # disjoint multi-node sets (GB200: one Grace with its memory nodes each)
    ("multi-node-sets", with_affinity(from_tokens(NV4), ["0,3-9", "0,3-9", "1,19-25", "1,19-25"]),
     numa.Basis.AFFINITY, ((0, 1), (2, 3))),
    # no affinity, PCIe only: NODE joins, SYS separates
    ("links", from_tokens(["X PIX SYS SYS", "PIX X SYS SYS", "SYS SYS X NODE", "SYS SYS NODE X"]),
     numa.Basis.LINKS, ((0, 1), (2, 3))),
    # no affinity, NVLink pairs: a NIC at NODE to both GPUs of a pair joins them; SYS across separates
    ("links-through-nics", from_tokens(
        ["X NV4 SYS SYS PIX SYS", "NV4 X SYS SYS NODE SYS", "SYS SYS X NV4 SYS PXB", "SYS SYS NV4 X SYS NODE",
         "PIX NODE SYS SYS X SYS", "SYS SYS PXB NODE SYS X"], nics=["mlx5_0", "mlx5_1"]),
     numa.Basis.LINKS, ((0, 1), (2, 3))),
    # no affinity, NVLink pairs, no NIC: inside a pair nothing is known -> unknown
    ("unknown", from_tokens(["X NV4 SYS SYS", "NV4 X SYS SYS", "SYS SYS X NV4", "SYS SYS NV4 X"]),
     numa.Basis.UNKNOWN, None),
    # overlapping NUMA sets (0-7 beside 1) do not partition the GPUs: links decide
    ("overlapping-sets", with_affinity(
        from_tokens(["X PIX SYS SYS", "PIX X SYS SYS", "SYS SYS X PIX", "SYS SYS PIX X"]), ["0-7", "0-7", "1", "1"]),
     numa.Basis.LINKS, ((0, 1), (2, 3))),
    # links never merge two GPUs whose affinity names different nodes (NODE between NUMA 0 and 1)
    ("affinity-beats-links", with_affinity(from_tokens(["X NODE", "NODE X"]), ["0", "1"]),
     numa.Basis.AFFINITY, ((0,), (1,))),
    # a GPU without affinity joins the group its NODE link reaches
    ("mixed-settled", with_affinity(from_tokens(["X NODE NODE SYS", "NODE X NV4 SYS", "NODE NV4 X SYS",
                                                 "SYS SYS SYS X"]), ["0", None, "0", "1"]),
     numa.Basis.LINKS, ((0, 1, 2), (3,))),
    # GPU1 without affinity is NVLink-only to GPU0/2 and SYS to GPU3: apart from GPU3, but nothing says
    # whether it shares GPU0/2's node -> unknown, not a guess
    ("mixed-unsettled", with_affinity(from_tokens(["X NV4 NODE SYS", "NV4 X NV4 SYS", "NODE NV4 X SYS",
                                                   "SYS SYS SYS X"]), ["0", None, "0", "1"]),
     numa.Basis.UNKNOWN, None),
]


@pytest.mark.parametrize(("topo", "basis", "groups"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_groups(topo: Topology, basis: numa.Basis, groups: tuple[tuple[int, ...], ...] | None) -> None:
    got = numa.group(topo)
    assert (got.basis, got.groups) == (basis, groups)
    if groups is not None:
        assert sorted(g for grp in groups for g in grp) == list(topo.gpu_indices)


def test_p2p_findings_name_pairs_or_say_every_pair() -> None:
    base = with_affinity(from_tokens(["X SYS SYS", "SYS X SYS", "SYS SYS X"]), ["0", "0", "0"])
    geforce = Topology(base.gpus, base.nics, base.links,
                       p2p=((None, P2P.GNS, P2P.GNS), (P2P.GNS, None, P2P.GNS), (P2P.GNS, P2P.GNS, None)))
    assert [f.message for f in report.findings(geforce) if f.code == "p2p-unavailable"] == [
        "P2P unavailable between every GPU pair (NVML: GNS): GPU↔GPU traffic is staged through host memory"]
    one = Topology(base.gpus, base.nics, base.links,
                   p2p=((None, P2P.OK, P2P.CNS), (P2P.OK, None, P2P.OK), (P2P.CNS, P2P.OK, None)))
    assert [f.message for f in report.findings(one) if f.code == "p2p-unavailable"] == [
        "P2P unavailable for GPU0↔GPU2 (NVML: CNS)"]


def test_pcie_downtrained_is_one_line_per_link_state() -> None:
    topo = from_tokens(["X PIX PIX", "PIX X PIX", "PIX PIX X"])
    gpus = tuple(Gpu(g.index, pcie=PcieLink(4, 8 if g.index else 16, 4, 16)) for g in topo.gpus)
    found = report.findings(Topology(gpus, topo.nics, topo.links))
    assert [f.message for f in found if f.code == "pcie-width-downtrained"] == [
        "GPU1-2: PCIe link trained at x8 of x16: reseat the card or check the riser/slot"]


def _board(prefix: str) -> Topology:
    from pathlib import Path

    from labeler.topology import smi_parser

    corpus = Path(__file__).resolve().parents[1] / "fixtures" / "topo-corpus"
    (path,) = corpus.glob(f"{prefix}_*.txt")
    return smi_parser.parse(path.read_text())


# "crosses sockets" = the GPUs sit on more than one NUMA node, read off the affinity columns by hand
CROSSES = [
    # 032 RTX 4090 x8: every pair SYS, yet GPU0-3 have NUMA affinity 0 and GPU4-7 have 1
    ("032", (0, 1), False),  # SYS between them, one NUMA node: not a socket crossing
    ("032", (0, 1, 2, 3), False),
    ("032", (6, 7), False),
    ("032", (3, 4), True),  # NUMA 0 and 1
    ("032", tuple(range(8)), True),
    # 027: NV12 pairs, NODE inside a socket (NUMA 0: GPU0-3), SYS to the other (NUMA 1: GPU4-7)
    ("027", (0, 1, 2, 3), False),
    ("027", (0, 4), True),
    # 005 DGX-1 (CPU affinity only): 0-11,24-35 for GPU0-3, 12-23,36-47 for GPU4-7; GPU0-GPU4 over NVLink
    ("005", (0, 4), True),
    ("005", (2, 3), False),
    # 048 A10 x4 VM: every pair SYS on the one NUMA node the guest shows
    ("048", (0, 1, 2, 3), False),
    ("027", (5,), False),  # one GPU never crosses
]


@pytest.mark.parametrize(("board", "gpus", "want"), CROSSES, ids=[f"{b}-{''.join(map(str, g))}" for b, g, _ in CROSSES])
def test_crosses_reads_numa_affinity_not_sys(board: str, gpus: tuple[int, ...], want: bool) -> None:
    topo = _board(board)
    assert numa.crosses(topo, gpus) is want
    assert numa.group(topo).crosses(gpus) is want  # the same answer from a grouping computed once


def test_crosses_is_unknown_when_the_grouping_is() -> None:
    # NVLink pairs, no affinity, no NIC: which pair shares a node with which is unknown
    topo = from_tokens(["X NV4 SYS SYS", "NV4 X SYS SYS", "SYS SYS X NV4", "SYS SYS NV4 X"])
    assert numa.crosses(topo, (0, 2)) is None
    assert numa.crosses(topo, (0, 1)) is None
    assert numa.crosses(topo, (3,)) is False
    # without affinity, links decide where they can: SYS separates, NODE joins
    links = from_tokens(["X PIX SYS SYS", "PIX X SYS SYS", "SYS SYS X NODE", "SYS SYS NODE X"])
    assert (numa.crosses(links, (0, 1)), numa.crosses(links, (1, 2))) == (False, True)
