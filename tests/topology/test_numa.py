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
