"""Facts about real machines, read straight from the corpus, plus the reader's rules one by one.

The expected values are worked out from the corpus text in the comment next to
each case, not from the reader's output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from labeler.topology import smi_cells, smi_parser
from labeler.topology.errors import TopologyParseError
from labeler.topology.links import LinkLevel, parse_link_token
from labeler.topology.model import Topology

CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "topo-corpus"


def corpus_text(prefix: str) -> str:
    """The corpus output whose file name starts with ``prefix`` (``"042"``)."""
    (path,) = CORPUS.glob(f"{prefix}_*.txt")
    return path.read_text()


def tok(link: object) -> str | None:
    return None if link is None else str(link)


def nic_pos(topo: Topology, column: str) -> int:
    return [n.column for n in topo.nics].index(column)


@dataclass(frozen=True)
class Fact:
    name: str
    prefix: str
    check: Callable[[Topology], object]
    expected: object


FACTS = [
    # 005 row GPU0: " X NV1 NV1 NV2 NV2 SYS SYS SYS NODE" -> GPU3 is the 4th cell (NV2), GPU5 the 6th (SYS).
    Fact("dgx1_v100_hybrid_cube_mesh", "005", lambda t: tok(t.gpu_link(0, 3)), "NV2"),
    Fact("dgx1_v100_hybrid_cube_mesh", "005", lambda t: tok(t.gpu_link(0, 5)), "SYS"),
    Fact("dgx1_v100_hybrid_cube_mesh", "005", lambda t: tok(t.gpu_link(0, 1)), "NV1"),
    # 005 names its one NIC column "mlx5_0" directly; there is no NIC Legend, so no device.
    Fact(
        "dgx1_v100_hybrid_cube_mesh",
        "005",
        lambda t: [(n.column, n.device, n.name) for n in t.nics],
        [("mlx5_0", None, "mlx5_0")],
    ),
    # 005 GPU2 row, last link cell (mlx5_0 column) is PIX; old format: CPU Affinity only.
    Fact("dgx1_v100_hybrid_cube_mesh", "005", lambda t: tok(t.gpu_nic_link(2, 0)), "PIX"),
    Fact(
        "dgx1_v100_hybrid_cube_mesh",
        "005",
        lambda t: (t.gpu(4).cpu_affinity == frozenset([*range(12, 24), *range(36, 48)]), t.gpu(4).numa_affinity),
        (True, None),
    ),
    # 051 NIC Legend "NIC7: mlx5_7"; GPU6 row: NIC4 NODE, NIC5 NODE, NIC6 PIX, NIC7 PIX.
    Fact("h100_dualport_nics", "051", lambda t: t.nics[7].device, "mlx5_7"),
    Fact("h100_dualport_nics", "051", lambda t: tok(t.gpu_nic_link(6, 6)), "PIX"),
    # 051 GPU1 row: NODE NODE NODE NODE SYS SYS SYS SYS -> no PIX NIC at all for the odd GPUs.
    Fact("h100_dualport_nics", "051", lambda t: sorted({tok(t.gpu_nic_link(1, k)) for k in range(8)}), ["NODE", "SYS"]),
    # 038: all 32 GPU->NIC cells are SYS; GPU NUMA ID column reads 2, 10, 18, 26.
    Fact("gb200_tray", "038", lambda t: {tok(t.gpu_nic_link(g, k)) for g in range(4) for k in range(8)}, {"SYS"}),
    Fact("gb200_tray", "038", lambda t: [g.gpu_numa_id for g in t.gpus], [2, 10, 18, 26]),
    # 038 GPU0 "NUMA Affinity" is the list "0,3-9,11-17".
    Fact(
        "gb200_tray",
        "038",
        lambda t: sorted(t.gpu(0).numa_affinity or ()),
        [0, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17],
    ),
    Fact("gb200_tray", "038", lambda t: tok(t.nic_link(2, 3)), "PIX"),
    # 045 (POWER9): GPU2/GPU3 rows end "64-127  8" -> NUMA affinity {8}; GPU0<->GPU1 NV3.
    Fact("ibm_ac922", "045", lambda t: (t.gpu(2).numa_affinity, t.gpu(2).numa_node), (frozenset({8}), 8)),
    Fact("ibm_ac922", "045", lambda t: tok(t.gpu_link(0, 1)), "NV3"),
    Fact("ibm_ac922", "045", lambda t: [n.column for n in t.nics], [f"mlx5_{k}" for k in range(6)]),
    # 018: the header stops at GPU7 but rows NIC0..NIC3 follow; NIC0 row "NODE PIX NODE NODE SYS..."
    # so GPU1<->NIC0 is PIX (by symmetry), NIC0<->NIC1 is not in the text at all.
    Fact("h800_nic_columns_missing", "018", lambda t: [n.column for n in t.nics], ["NIC0", "NIC1", "NIC2", "NIC3"]),
    Fact("h800_nic_columns_missing", "018", lambda t: tok(t.gpu_nic_link(1, 0)), "PIX"),
    Fact("h800_nic_columns_missing", "018", lambda t: tok(t.gpu_nic_link(7, 3)), "PIX"),
    Fact("h800_nic_columns_missing", "018", lambda t: tok(t.nic_link(0, 1)), None),
    Fact("h800_nic_columns_missing", "018", lambda t: t.nics[3].device, "mlx5_3"),
    # 018 CPU affinity: "-31,64-95" lost its head; GPU7 "2-63,96-127" disagrees with GPU4-6 on NUMA 1.
    Fact("h800_nic_columns_missing", "018", lambda t: [g.cpu_affinity for g in t.gpus], [None] * 8),
    Fact("h800_nic_columns_missing", "018", lambda t: [g.numa_node for g in t.gpus], [0] * 4 + [1] * 4),
    # 042: header "NIC8NIC9" fused -> 12 NICs; GPU5 row "... NODE NODE NODEPXB NODE NODE" puts PXB at NIC9.
    Fact("dgx_h100_one_line", "042", lambda t: (len(t.gpus), len(t.nics)), (8, 12)),
    Fact("dgx_h100_one_line", "042", lambda t: tok(t.gpu_nic_link(5, 9)), "PXB"),
    Fact("dgx_h100_one_line", "042", lambda t: tok(t.gpu_nic_link(7, 11)), "PXB"),
    Fact("dgx_h100_one_line", "042", lambda t: tok(t.gpu_nic_link(0, 0)), "PXB"),
    # 042 is cut at "56-111,1...": GPU7's affinity is unknown, GPU6's is whole; no NIC rows survive.
    Fact("dgx_h100_one_line", "042", lambda t: (t.gpu(7).cpu_affinity, t.gpu(6).numa_node), (None, 1)),
    Fact("dgx_h100_one_line", "042", lambda t: tok(t.nic_link(0, 1)), None),
    # 001: "NODENODE" under NIC12/NIC13 and "NODEPIX" under NIC34/NIC35 in GPU0's row.
    Fact(
        "h20_36nics_mangled",
        "001",
        lambda t: [tok(t.gpu_nic_link(0, k)) for k in (12, 13, 34, 35)],
        ["NODE", "NODE", "NODE", "PIX"],
    ),
    # 001 NIC12 row " X PIX" (single space) -> NIC12<->NIC13 PIX; legend NIC32: mlx5_bond_0.
    Fact("h20_36nics_mangled", "001", lambda t: tok(t.nic_link(12, 13)), "PIX"),
    Fact("h20_36nics_mangled", "001", lambda t: t.nics[32].device, "mlx5_bond_0"),
    Fact("h20_36nics_mangled", "001", lambda t: min(t.gpu(4).cpu_affinity or ()), 70),
    # 014: header has NIC2..NIC5 and no "NUMA Affinity", rows carry "0-23  0" / "48-71  2".
    Fact("h200_no_numa_header", "014", lambda t: (t.nics[0].column, t.nics[0].device), ("NIC2", "mlx5_2")),
    Fact("h200_no_numa_header", "014", lambda t: [g.numa_node for g in t.gpus], [0] * 4 + [2] * 4),
    Fact("h200_no_numa_header", "014", lambda t: tok(t.gpu_nic_link(1, nic_pos(t, "NIC2"))), "PIX"),
    # 019: "0-31,64-950" is CPU and NUMA glued; GPU4 "32-63,96-127  1" is whole.
    Fact("h800_fused_affinity", "019", lambda t: (t.gpu(0).cpu_affinity, t.gpu(0).numa_affinity), (None, None)),
    Fact("h800_fused_affinity", "019", lambda t: (min(t.gpu(4).cpu_affinity or ()), t.gpu(4).numa_node), (32, 1)),
    # 023: "1-1,3-3,5-5,7-7" is CPUs 1,3,5,7; banner and 4-space indent around it.
    Fact("v100_old_driver_banner", "023", lambda t: sorted(t.gpu(1).cpu_affinity or ()), [1, 3, 5, 7]),
    # 024 (LXC cpuset) "4,6,9,15,17".
    Fact("rtx3090_lxc", "024", lambda t: sorted(t.gpu(0).cpu_affinity or ()), [4, 6, 9, 15, 17]),
    # 041 interleaved "1,3,5,7,9,11" on GPU2.
    Fact("interleaved_cpulist", "041", lambda t: sorted(t.gpu(2).cpu_affinity or ()), [1, 3, 5, 7, 9, 11]),
    # 030: every line starts with "#"; NUMA Affinity "0-7" is a range; mlx5_10 column.
    Fact("a100_commented", "030", lambda t: (t.gpu(0).numa_affinity, t.gpu(2).numa_node), (frozenset(range(8)), 1)),
    Fact("a100_commented", "030", lambda t: tok(t.nic_link(9, 10)), "PIX"),
    # 123: tab output, header without leading tab; NIC0 SYS to every GPU; "0-103  0  N/A".
    Fact("dstack_h100_tabs", "123", lambda t: {tok(t.gpu_nic_link(g, 0)) for g in range(8)}, {"SYS"}),
    Fact("dstack_h100_tabs", "123", lambda t: max(t.gpu(0).cpu_affinity or ()), 103),
    # 055 GH200: one GPU, "GPU NUMA ID" 1, NODE to every NIC.
    Fact(
        "gh200", "055", lambda t: (t.gpu(0).gpu_numa_id, {tok(t.gpu_nic_link(0, k)) for k in range(4)}), (1, {"NODE"})
    ),
    # 120: both NICs PHB only to GPU6.
    Fact(
        "h20_phb_gpu6",
        "120",
        lambda t: [tok(t.gpu_nic_link(g, 1)) for g in range(8)],
        ["SYS"] * 4 + ["NODE", "NODE", "PHB", "NODE"],
    ),
    # 016: no NIC legend -> devices unknown.
    Fact("h20_vm_no_legend", "016", lambda t: {n.device for n in t.nics}, {None}),
]


@pytest.mark.parametrize("fact", FACTS, ids=[f"{f.name}-{i}" for i, f in enumerate(FACTS)])
def test_machine_fact(fact: Fact) -> None:
    topo = smi_parser.parse(corpus_text(fact.prefix), source=fact.prefix)
    assert topo.source == fact.prefix
    assert fact.check(topo) == fact.expected


def test_pcie_8gpu_truncated_mid_cell_is_refused() -> None:
    # 034 ends "GPU6 ... X PX": the GPU6<->GPU7 cell and the whole GPU7 row are gone,
    # and nothing else in the text says what GPU6<->GPU7 is. Line 8 is the GPU6 row.
    with pytest.raises(TopologyParseError) as info:
        smi_parser.parse(corpus_text("034"))
    assert info.value.line == 8
    assert "GPU6↔GPU7" in info.value.reason
    assert info.value.text is not None and info.value.text.startswith("GPU6")


# -- rules, on small synthetic texts ------------------------------------------------------------
BASE = """\
        GPU0    GPU1    GPU2    NIC0    CPU Affinity    NUMA Affinity   GPU NUMA ID
GPU0     X      NV4     SYS     PIX     0-15            0               N/A
GPU1    NV4      X      SYS     PXB     0-15            0               N/A
GPU2    SYS     SYS      X      NODE    16-31           1               N/A
NIC0    PIX     PXB     NODE     X

Legend:

  X    = Self
  NV#  = Connection traversing a bonded set of # NVLinks

NIC Legend:

  NIC0: mlx5_bond_0
"""


def parse_error(text: str) -> TopologyParseError:
    with pytest.raises(TopologyParseError) as info:
        smi_parser.parse(text)
    return info.value


def test_base_reads() -> None:
    topo = smi_parser.parse(BASE)
    assert topo.gpu_indices == (0, 1, 2)
    assert tok(topo.gpu_link(0, 1)) == "NV4"
    assert tok(topo.gpu_nic_link(1, 0)) == "PXB"
    assert topo.nics[0].device == "mlx5_bond_0"
    assert topo.gpu(2).numa_node == 1 and topo.gpu(2).gpu_numa_id is None
    assert topo.warnings == ()


@pytest.mark.parametrize(
    "dress",
    [
        pytest.param(lambda s: "\n".join("#" + x for x in s.split("\n")), id="comment-prefix"),
        pytest.param(lambda s: "\n".join("    " + x for x in s.split("\n")), id="markdown-indent"),
        pytest.param(lambda s: s.replace("        GPU0", "\tGPU0"), id="tab-indented-header"),
        pytest.param(lambda s: s.replace("        GPU0", "GPU0"), id="unindented-header"),
        pytest.param(lambda s: s.replace("    ", "\t"), id="tabs"),
        pytest.param(lambda s: " nvidia-smi topo -m\n======MATRIX======\nCollecting environment...\n" + s, id="banner"),
        pytest.param(
            lambda s: s.replace("GPU0 ", "\x1b[1mGPU0\x1b[0m ").replace("NV4", "\x1b[32mNV4\x1b[0m"), id="ansi"
        ),
        pytest.param(lambda s: s.replace("        GPU0", "\t[4mGPU0").replace("GPU NUMA ID", "GPU NUMA ID[0m"),
                     id="ansi-underline-without-esc"),
        pytest.param(lambda s: s.replace("        GPU0", "\t^[[4mGPU0").replace("GPU NUMA ID", "GPU NUMA ID^[[0m"),
                     id="ansi-caret-notation"),
        pytest.param(lambda s: s.replace("\n", "\r\n"), id="crlf"),
        pytest.param(lambda s: s.replace("\n\nLegend", "\n   \nLegend"), id="blank-line-with-spaces"),
        pytest.param(lambda s: s.replace("NV4     SYS", "NV4SYS").replace("SYS     SYS", "SYSSYS"), id="fused-cells"),
        pytest.param(lambda s: s.replace("GPU2    NIC0", "GPU2NIC0"), id="fused-header"),
        pytest.param(lambda s: s.replace("SYS", "SOC"), id="legacy-SOC"),
    ],
)
def test_dressing_does_not_change_the_topology(dress: Callable[[str], str]) -> None:
    base = smi_parser.parse(BASE)
    dressed = smi_parser.parse(dress(BASE))
    assert (dressed.gpus, dressed.nics, dressed.links) == (base.gpus, base.nics, base.links)


def test_nic_columns_named_by_device_in_capitals() -> None:
    """Omni-Path / older drivers name NIC columns by device; some print them in capitals (HFI0)."""
    text = (
        "        GPU0    GPU1    HFI0    mlx5_1  CPU Affinity    NUMA Affinity\n"
        "GPU0     X      PIX     PIX     SYS     0-15    0\n"
        "GPU1    PIX      X      PXB     SYS     0-15    0\n"
        "HFI0    PIX     PXB      X      SYS\n"
        "mlx5_1  SYS     SYS     SYS      X\n"
    )
    topo = smi_parser.parse(text)
    assert [n.column for n in topo.nics] == ["HFI0", "mlx5_1"]
    assert (tok(topo.gpu_nic_link(1, 0)), tok(topo.nic_link(0, 1))) == ("PXB", "SYS")
    err = parse_error(text + "HFI7    PIX     PIX     SYS     SYS\n")
    assert err.line == 6  # a row for a column the header does not have: named, not dropped


def test_one_line_output_reads_like_the_original() -> None:
    # Collapse every newline and blank run: labels still delimit rows, "Legend:" ends the matrix.
    base = smi_parser.parse(BASE)
    collapsed = smi_parser.parse(" ".join(BASE.split()) + "\n")
    assert collapsed == base
    # Without the final line break the last legend entry may be cut ("mlx5_bond_0" of "mlx5_bond_01").
    unterminated = smi_parser.parse(" ".join(BASE.split()))
    assert unterminated.links == base.links and unterminated.nics[0].device is None


@pytest.mark.parametrize(
    ("old", "new", "line", "words"),
    [
        # an unknown token in a link cell names the line and the cell
        ("GPU1    NV4      X      SYS", "GPU1    NV4      X      QPI", 3, "'QPI'"),
        # halves of the symmetric matrix disagree: GPU2 row says PIX where GPU0's column says SYS
        ("GPU2    SYS     SYS", "GPU2    PIX     SYS", 4, "GPU0↔GPU2"),
        # a cell lost in the middle of a row shifts the X off the diagonal
        ("GPU2    SYS     SYS      X", "GPU2    SYS      X", 4, "X"),
        # a row with one cell too many
        ("NIC0    PIX     PXB     NODE     X", "NIC0    PIX     PXB     NODE     X    SYS", 5, "5 link cells"),
        # NVLink to a NIC
        ("GPU0     X      NV4     SYS     PIX", "GPU0     X      NV4     SYS     NV2", 2, "NVLink"),
        # a GPU row the header does not list
        ("NIC0    PIX", "GPU7    PIX", 5, "GPU7"),
        # the same row twice
        ("NIC0    PIX     PXB     NODE     X", "GPU1    NV4      X      SYS     PXB", 5, "second row for GPU1"),
        # a row hidden after the matrix ended
        ("\nLegend:\n", "\nLegend:\nGPU3    SYS     SYS     SYS     SYS\n", 8, "after the matrix"),
        # a link cell glued to the CPU cell that splits two ways: NV12|0-47 or NV1|20-47
        (
            "GPU0     X      NV4     SYS     PIX     0-15",
            "GPU0     X      NV4     SYS     PIX NV120-47",
            2,
            "more than",
        ),
    ],
)
def test_damage_is_an_error_naming_the_line(old: str, new: str, line: int, words: str) -> None:
    assert old in BASE
    err = parse_error(BASE.replace(old, new, 1))
    assert err.line == line, err
    assert words in str(err)


def test_no_header_is_an_error_without_a_line() -> None:
    err = parse_error("nothing to see\nGPU 0: NVIDIA H100\n")
    assert err.line is None and "header" in err.reason


def test_header_without_rows_is_an_error() -> None:
    err = parse_error("        GPU0    GPU1    CPU Affinity\n\nLegend:\n")
    assert err.line == 1


def test_missing_gpu_row_in_a_whole_text_is_an_error() -> None:
    err = parse_error(BASE.replace("GPU1    NV4      X      SYS     PXB     0-15            0               N/A\n", ""))
    assert err.line == 1 and "GPU1" in err.reason


def test_cut_after_last_gpu_row_is_recovered_by_symmetry() -> None:
    # Cut inside NIC0's row: every GPU<->NIC0 cell is in the GPU rows, so nothing is lost.
    text = BASE.split("NIC0    PIX")[0] + "NIC0    PIX     PX"
    topo = smi_parser.parse(text)
    assert topo.links == smi_parser.parse(BASE).links  # one NIC, so no NIC<->NIC cell to lose
    assert tok(topo.gpu_nic_link(2, 0)) == "NODE"
    assert topo.nics[0].device is None  # the legend was cut off too
    assert any("cut" in w for w in topo.warnings)


def test_cut_inside_last_gpu_row_is_recovered_when_symmetry_proves_every_cell() -> None:
    # Text ends "GPU2 SYS SYS": GPU2<->GPU0/1 are in those cells, GPU2<->NIC0 is in GPU rows? No:
    # it is only in GPU2's own row and NIC0's row, both gone, so this must be refused.
    text = BASE.split("GPU2    SYS     SYS")[0] + "GPU2    SYS     SYS"
    err = parse_error(text)
    assert err.line == 4 and "GPU2↔NIC0" in err.reason
    # Without NICs the same cut is fully proven by GPU0's and GPU1's columns.
    no_nic = "        GPU0    GPU1    GPU2\nGPU0     X      NV4     SYS\nGPU1    NV4      X      SYS\nGPU2    SYS     S"
    topo = smi_parser.parse(no_nic)
    assert [tok(topo.gpu_link(2, k)) for k in (0, 1)] == ["SYS", "SYS"]


def test_cut_cell_is_never_read_as_a_shorter_token() -> None:
    # "NV1" may be the start of "NV18": at the end of a cut text it is dropped, not read as NV1.
    text = "        GPU0    GPU1\nGPU0     X      NV18\nGPU1    NV1"
    topo = smi_parser.parse(text)
    assert tok(topo.gpu_link(0, 1)) == "NV18"
    # ... and with nothing else to prove GPU0<->GPU1, that is an error.
    err = parse_error("        GPU0    GPU1\nGPU0     X      NV1")
    assert err.line == 2


def test_header_lacking_a_column_recovers_only_when_every_row_agrees() -> None:
    text = (
        "        GPU0    GPU1    CPU Affinity\nGPU0     X      PIX     0-7     0\nGPU1    PIX      X      8-15    1\n"
    )
    topo = smi_parser.parse(text)
    assert [g.numa_node for g in topo.gpus] == [0, 1]
    # One row with an extra cell is a duplicated cell, not a missing header column.
    dup = text.replace("8-15    1", "8-15    8-15    1").replace("0-7     0", "0-7")
    topo = smi_parser.parse(dup)
    assert [(g.cpu_affinity, g.numa_affinity) for g in topo.gpus] == [(None, None), (None, None)]


def test_nic_rows_without_affinity_and_with_empty_tab_cells() -> None:
    text = "\tGPU0\tmlx5_0\tCPU Affinity\tNUMA Affinity\nGPU0\t X \tNODE\t0-63\t0\nmlx5_0\tNODE\t X \t\t\n"
    topo = smi_parser.parse(text)
    assert topo.nics[0].column == "mlx5_0" and tok(topo.gpu_nic_link(0, 0)) == "NODE"


def test_legend_conflicts_leave_devices_unknown() -> None:
    text = BASE.replace("  NIC0: mlx5_bond_0\n", "  NIC0: mlx5_0\n  NIC0: mlx5_1\n")
    topo = smi_parser.parse(text)
    assert topo.nics[0].device is None and any("twice" in w for w in topo.warnings)


def test_source_is_kept() -> None:
    assert smi_parser.parse(BASE, source="node-a").source == "node-a"


def test_matrix_is_symmetric_with_x_on_the_diagonal() -> None:
    topo = smi_parser.parse(corpus_text("001"))
    n = len(topo.links)
    assert all(topo.links[i][j] == topo.links[j][i] for i in range(n) for j in range(n))
    assert all(topo.links[i][i] is not None and topo.links[i][i].level is LinkLevel.SELF for i in range(n))


# -- the cell vocabulary ------------------------------------------------------------------------
VOCAB = ["X", "PIX", "PXB", "PHB", "NODE", "SYS", "SOC", "NV1", "NV2", "NV4", "NV8", "NV12", "NV18"]


@pytest.mark.parametrize("first", VOCAB)
def test_every_pair_of_fused_tokens_splits_back(first: str) -> None:
    # Tab expansion can glue any two neighbours; the split must give them back, in order.
    for second in VOCAB:
        for third in ("", "SYS", "NV18"):
            links = smi_cells.split_links(first + second + third)
            assert links is not None
            expected = [first, second, *([third] if third else [])]
            assert [str(x) for x in links] == [str(parse_link_token(t)) for t in expected]


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("0-3,8", 100, {0, 1, 2, 3, 8}),
        ("5-5", 100, {5}),
        ("N/A", 100, None),
        ("-31,64-95", 100, ValueError),  # head cut off
        ("3-1", 100, ValueError),  # descending
        ("0-99999", 65535, ValueError),  # absurd id: damage, and no giant set
        ("1,,2", 100, ValueError),
        ("1...", 100, ValueError),
    ],
)
def test_id_lists(text: str, limit: int, expected: object) -> None:
    if expected is ValueError:
        with pytest.raises(ValueError):
            smi_cells.parse_idlist(text, limit=limit)
    else:
        got = smi_cells.parse_idlist(text, limit=limit)
        assert got == (None if expected is None else frozenset(expected))  # type: ignore[arg-type]


def test_link_glued_to_affinity_splits_only_one_way() -> None:
    links_aff = smi_cells.split_link_affinity("SYS0-23")
    assert links_aff is not None and [str(x) for x in links_aff[0]] == ["SYS"] and links_aff[1] == "0-23"
    with pytest.raises(ValueError):
        smi_cells.split_link_affinity("NV120-47")  # NV12|0-47 or NV1|20-47
