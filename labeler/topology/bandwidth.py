"""The one bandwidth table: what each kind of link carries for NCCL, every value with its source.

Why one table: a scheduler that ranks GPU sets, a simulator that scores policies
and an audit that explains a node must agree on what a link is worth; two tables
drift apart and the placements they justify contradict each other. Every
number in gputopo that turns a link into GB/s comes from a :class:`Rate` here,
and :mod:`labeler.topology.busbw` combines them into the predicted NCCL ring
bus bandwidth of a GPU set. ``docs/bandwidth.md`` renders :data:`TABLE`.

Units: GB/s per direction, the unit of nccl-tests' ``busbw`` (per GPU,
unidirectional; ``NVIDIA/nccl-tests`` ``doc/PERFORMANCE.md``). The values are
NCCL's own *effective* link rates (what its topology search counts per link,
``NVIDIA/nccl`` ``src/graph/topo.h``/``topo.cc``), not line rates: NCCL's ring
protocol reaches them on a ring bottlenecked by that link (sjeaugey in
``NVIDIA/nccl-tests#149``: A100's 25 GB/s line rate "converts to ~20GB/s
effective"). The line rate is kept beside each value for reference.

Unknown facts degrade to a documented conservative value, never to a guess that
ranks high: an unknown PCIe link is NCCL's own fallback (Gen3 x16), an unknown
CPU gets NCCL's lowest inter-socket value, an unknown NIC rate NCCL's 10 Gb/s
fallback, and an unknown NVLink generation the slowest generation that can
have that many links. Each resolved value says which facts it assumed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from labeler.topology.links import Link, LinkLevel
from labeler.topology.model import Gpu, Nic

__all__ = [
    "C2C",
    "NIC_UNKNOWN",
    "NVLINK",
    "P2P_MAX_LEVEL",
    "PCIE_LANE",
    "PCIE_UNKNOWN",
    "SOCKET_UNKNOWN",
    "TABLE",
    "Rate",
    "Resolved",
    "c2c",
    "dedupe",
    "link_gbps",
    "nic",
    "nvlink_per_link",
    "pcie",
    "socket",
    "table_markdown",
]

_TOPO_H = "NVIDIA/nccl src/graph/topo.h (master 5067397c)"
_TOPO_CC = "NVIDIA/nccl src/graph/topo.cc (master 5067397c)"
_RESEARCH = "shared/research/nccl-bandwidth.md"


@dataclass(frozen=True, slots=True)
class Rate:
    """One row of the table: a value in GB/s per direction and where it comes from."""

    key: str
    gbps: float
    name: str  # short, printed in explanations: "NVLink 4.0"
    what: str  # what the value is for, rendered in docs: "per link (Hopper: H100, H200, H20, H800)"
    cite: str  # short, printed in explanations: "NCCL SM90_NVLINK_BW"
    source: str  # full, rendered in docs/bandwidth.md
    line_gbps: float | None = None  # the spec line rate per direction, for reference
    max_links: int | None = None  # NVLink rows: the most links one GPU of this generation has


# -- NVLink, per link ---------------------------------------------------------------------------------
_NV_SOURCE = (
    f"{_TOPO_H}: {{const}}, picked by compute capability in `ncclTopoNVLinkBw`; line rate and links per GPU: "
    + _RESEARCH + " §1 {line}"
)

#: NVLink generations by key, each with NCCL's effective per-link rate and the links one GPU has.
NVLINK: dict[str, Rate] = {
    r.key: r
    for r in (
        Rate("nvlink1", 18.0, "NVLink 1.0", "per link (Pascal: P100)", "NCCL SM60_NVLINK_BW",
             _NV_SOURCE.format(const="SM60_NVLINK_BW = 18.0", line="(NVLink article: 20 GB/s per link per "
                               "direction; P100 160 GB/s bidirectional = 4 links)"), 20.0, 4),
        Rate("nvlink2", 20.0, "NVLink 2.0", "per link (Volta V100; Turing TU10x bridges)", "NCCL SM70_NVLINK_BW",
             _NV_SOURCE.format(const="SM70_NVLINK_BW = 20.0 (older topo.h: 22.0)", line="(V100: 25 GB/s per "
                               "sub-link, 6 links = 300 GB/s bidirectional; DGX-1 V100 whitepaper)"), 25.0, 6),
        Rate("nvlink3", 20.0, "NVLink 3.0", "per link (Ampere GA100: A100)", "NCCL SM80_NVLINK_BW",
             _NV_SOURCE.format(const="SM80_NVLINK_BW = 20.0; sjeaugey, NVIDIA/nccl-tests#149: 25 GB/s line "
                               "\"converts to ~20GB/s effective\"", line="(12 links = 600 GB/s bidirectional)"),
             25.0, 12),
        Rate("nvlink3-ga102", 12.0, "NVLink 3.0 (GA102)", "per link (RTX 3090, A40, RTX A6000 bridges)",
             "NCCL SM86_NVLINK_BW",
             _NV_SOURCE.format(const="SM86_NVLINK_BW = 12.0", line="(NVIDIA Ampere GA102 whitepaper: 14.0625 GB/s "
                               "per link per direction, 4 links)"), 14.0625, 4),
        Rate("nvlink4", 20.6, "NVLink 4.0", "per link (Hopper: H100, H200, H20, H800)", "NCCL SM90_NVLINK_BW",
             _NV_SOURCE.format(const="SM90_NVLINK_BW = 20.6; sjeaugey, NVIDIA/nccl-tests#212: \"effective "
                               "NVLink bandwidth of 370GB/s\" = 18 × 20.6", line="(18 links, 900 GB/s "
                               "bidirectional, 450 GB/s line rate per direction)"), 25.0, 18),
        Rate("nvlink5", 40.1, "NVLink 5.0", "per link (Blackwell: B200, GB200)", "NCCL SM100_NVLINK_BW",
             _NV_SOURCE.format(const="SM100_NVLINK_BW = 40.1", line="(NVIDIA NVLink page: 18 links × 100 GB/s "
                               "= 1.8 TB/s bidirectional)"), 50.0, 18),
    )
}

# -- PCIe, per lane -------------------------------------------------------------------------------------
_PCIE_SOURCE = (
    f"{_TOPO_CC} kvDictPciGen ({{speed}} = {{tenths}} × 100 Mb/s per lane) and `bw = width * speed / 80.0` "
    "(GB/s; Gen3 x16 = 12.0 = PCI_BW \"PCI Gen3 x16\" in topo.h){line}"
)


def _lane(gen: int, gts: str, tenths: int, line_x16: float | None) -> Rate:
    line = f"; x16 line rate {line_x16} GB/s: {_RESEARCH} §1" if line_x16 is not None else ""
    return Rate(
        f"pcie{gen}", tenths / 80.0, f"PCIe Gen{gen}", f"per lane ({gts})", f"NCCL PCIe Gen{gen} x1",
        _PCIE_SOURCE.format(speed=gts, tenths=tenths, line=line),
        None if line_x16 is None else line_x16 / 16,
    )


#: PCIe generation -> NCCL's effective rate per lane (a link is ``width`` lanes).
PCIE_LANE: dict[int, Rate] = {
    1: _lane(1, "2.5 GT/s", 15, None),
    2: _lane(2, "5 GT/s", 30, None),
    3: _lane(3, "8 GT/s", 60, 15.75),
    4: _lane(4, "16 GT/s", 120, 31.5),
    5: _lane(5, "32 GT/s", 240, 63.0),
    6: _lane(6, "64 GT/s", 480, None),
}
_PCIE_TOP = max(PCIE_LANE)

#: The PCIe link of a GPU whose generation and width no source reported: NCCL's own fallback.
PCIE_UNKNOWN = Rate(
    "pcie-unknown", 12.0, "PCIe unknown", "a GPU's PCIe link no source reported: Gen3 x16",
    "NCCL's fallback for an unread link",
    f"{_TOPO_CC}: kvDictPciGen `{{NULL, 60 /* Default fallback */}}` (8 GT/s, Gen3) and `if (width == 0) "
    "width = 16`: NCCL itself assumes Gen3 x16 when sysfs does not say",
    15.75,
)

#: The inter-socket link (QPI/UPI/xGMI) when the CPU is unknown (gputopo has no CPU fact yet).
SOCKET_UNKNOWN = Rate(
    "socket-unknown", 6.0, "socket link", "inter-socket link (QPI/UPI/xGMI) of an unknown CPU",
    "NCCL BDW_QPI_BW, its lowest",
    f"{_TOPO_H}: BDW_QPI_BW = ARM_BW = ZPI_BW = 6.0, the lowest inter-CPU value NCCL has (SKL_QPI_BW 10.0, "
    "AMD_BW 16.0, SRP_QPI_BW 22.0, P9_BW 32.0, ERP_QPI_BW 40.0; the dev branch splits AMD into ZEN12/ZEN34/ZEN5 "
    "= 16/24/32); the NCCL_DEBUG log in NVIDIA/nccl-tests#307 shows SYS paths at 10.0 on a Skylake host",
)

#: A NIC whose rate no source reported: NCCL's fallback for NICs that report no speed.
NIC_UNKNOWN = Rate(
    "nic-unknown", 1.25, "NIC unknown", "a NIC port whose rate no source reported: 10 Gb/s",
    "NCCL's fallback for a NIC without a speed",
    f"{_TOPO_CC}: `if (mbps <= 0) mbps = 10000; // Some NICs define speed = -1` and `net->net.bw = mbps / 8000.0`",
)

#: NVLink-C2C, the coherent link between a Grace CPU and its GPUs (GH200, GB200): what carries a NIC's
#: GPUDirect RDMA traffic there (NCCL's P2C path, ``paths.cc``), instead of a PCIe link.
C2C = Rate(
    "nvlink-c2c", 450.0, "NVLink-C2C", "Grace CPU ↔ GPU link (GH200, GB200): a ceiling on the NICs a GPU serves",
    "NVIDIA NVLink-C2C, 900 GB/s bidirectional",
    "NVIDIA, \"NVIDIA Grace Hopper Superchip Architecture In-Depth\" (developer.nvidia.com blog): NVLink-C2C "
    "900 GB/s bidirectional between Grace and Hopper = 10 links × 45 GB/s per direction; the line rate per "
    "direction, used only as a ceiling (no NIC set comes near it). NCCL reads the real value from NVML "
    f"({_TOPO_CC} `ncclTopoAddC2c`: `bw * count / 1000`); on GB200 two GPUs share one Grace's link",
    450.0,
)

_NIC_RATE_SOURCE = f"{_TOPO_CC}: `net->net.bw = mbps / 8000.0` (the port's line rate, no efficiency factor)"

#: NCCL uses P2P between GPUs at most this far apart by default; beyond it (PHB, NODE, SYS) it
#: stages through host memory (SHM). ``NVIDIA/nccl`` ``src/graph/paths.cc`` ``ncclTopoCheckP2p``:
#: "By default don't use P2P across CPU Host Bridges and further apart" (``p2pLevel = PATH_PXB``;
#: AMD hosts with two GPUs allow SYS). In NCCL's model both routes count the same link rates.
P2P_MAX_LEVEL = LinkLevel.PXB

#: Every row, in the order docs/bandwidth.md renders them.
TABLE: tuple[Rate, ...] = (*NVLINK.values(), *PCIE_LANE.values(), PCIE_UNKNOWN, SOCKET_UNKNOWN, NIC_UNKNOWN, C2C)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A value resolved from one device's facts: GB/s, how it reads, the rows used, what was assumed."""

    gbps: float
    text: str  # "Gen4 x16 = 24 GB/s", "20.6 GB/s per link (NVLink 4.0)"
    cite: str
    assumed: tuple[str, ...] = ()


# -- NVLink generation from the facts --------------------------------------------------------------------
_BY_ARCH: dict[str, frozenset[str]] = {
    "pascal": frozenset({"nvlink1"}),
    "volta": frozenset({"nvlink2"}),
    "turing": frozenset({"nvlink2"}),
    "ampere": frozenset({"nvlink3", "nvlink3-ga102"}),  # GA100 or GA102: the compute capability tells
    "hopper": frozenset({"nvlink4"}),
    "blackwell": frozenset({"nvlink5"}),
}
# NVML NVLink versions. Some drivers report 5.0 on Hopper (labels work, discovery/nvml.py), so 5.0
# alone does not prove NVLink 5: it narrows to {4, 5} and the architecture or compute capability decides.
_BY_VERSION: dict[str, frozenset[str]] = {
    "1.0": frozenset({"nvlink1"}),
    "2.0": frozenset({"nvlink2"}),
    "2.2": frozenset({"nvlink2"}),
    "3.0": frozenset({"nvlink3", "nvlink3-ga102"}),
    "3.1": frozenset({"nvlink3", "nvlink3-ga102"}),
    "4.0": frozenset({"nvlink4"}),
    "5.0": frozenset({"nvlink4", "nvlink5"}),
}


def _by_cc(cc: str) -> frozenset[str] | None:
    """NCCL's ``ncclTopoNVLinkBw``: >= 10.0 SM100, >= 9.0 SM90, 8.6 SM86, >= 8.0 SM80, >= 7.0 SM70, >= 6.0 SM60."""
    try:
        major, minor = (int(x) for x in cc.split(".", 1))
    except ValueError:
        return None
    v = major * 10 + minor
    key = (
        "nvlink5" if v >= 100 else "nvlink4" if v >= 90 else "nvlink3-ga102" if v == 86
        else "nvlink3" if v >= 80 else "nvlink2" if v >= 70 else "nvlink1" if v >= 60 else None
    )
    return None if key is None else frozenset({key})


def nvlink_per_link(gpu: Gpu, links: int) -> Resolved:
    """NCCL's effective rate of one NVLink of this GPU, from its facts and its pair's link count.

    Candidates start as every generation that can have ``links`` links per GPU, then each
    known fact narrows them, most specific first: compute capability, architecture, NVLink
    version. A fact that contradicts the ones before it is ignored and said so (drivers
    that report NVLink 5.0 on Hopper). The rate is the lowest among what is left, so an
    unknown generation is never guessed high.

    >>> nvlink_per_link(Gpu(0, arch="hopper", cc="9.0", nvlink_version="5.0"), 18).gbps
    20.6
    >>> nvlink_per_link(Gpu(0), 18).gbps, nvlink_per_link(Gpu(0), 4).gbps
    (20.6, 12.0)
    """
    cands = frozenset(k for k, r in NVLINK.items() if r.max_links is not None and r.max_links >= links)
    if not cands:  # more links than any known generation: every generation is possible
        cands = frozenset(NVLINK)
    assumed: list[str] = []
    facts = (
        ("compute capability", gpu.cc, None if gpu.cc is None else _by_cc(gpu.cc)),
        ("architecture", gpu.arch, None if gpu.arch is None else _BY_ARCH.get(gpu.arch)),
        ("NVLink version", gpu.nvlink_version,
         None if gpu.nvlink_version is None else _BY_VERSION.get(gpu.nvlink_version)),
    )
    for name, value, gens in facts:
        if gens is None:
            continue
        narrowed = cands & gens
        if narrowed:
            cands = narrowed
        else:
            assumed.append(f"{name} {value} contradicts the other NVLink facts: ignored")
    rate = min((NVLINK[k] for k in sorted(cands)), key=lambda r: r.gbps)
    if len(cands) > 1:
        assumed.append(
            f"NVLink generation unknown: {rate.gbps:g} GB/s per link, the slowest generation with {links} "
            f"link{'s' if links != 1 else ''} ({rate.name})"
        )
    which = rate.name if len(cands) == 1 else f"generation unknown, as {rate.name}"
    return Resolved(rate.gbps, f"{rate.gbps:g} GB/s per link ({which})", rate.cite, tuple(assumed))


def pcie(gpu: Gpu) -> Resolved:
    """NCCL's rate of this GPU's PCIe link under load: ``width × lane rate(generation)``.

    Which values and why: the *maximum* generation (what GPU and slot train to under load;
    the current one drops at idle, so the agent does not even publish it), else the current
    one (a lower bound); the *current* width (a link trained at fewer lanes stays so: a
    reseat problem, not power management), else the maximum. Unknown: NCCL's own Gen3 / x16.

    >>> from labeler.topology.model import PcieLink
    >>> pcie(Gpu(0, pcie=PcieLink(gen=1, width=16, max_gen=4, max_width=16))).gbps
    24.0
    >>> pcie(Gpu(0, pcie=PcieLink(width=8, max_gen=5, max_width=16))).text
    'PCIe Gen5 x8 = 24 GB/s'
    >>> pcie(Gpu(0)).gbps
    12.0
    """
    link = gpu.pcie
    gen = None if link is None else (link.max_gen if link.max_gen is not None else link.gen)
    width = None if link is None else (link.width if link.width is not None else link.max_width)
    assumed: list[str] = []
    if gen is None and width is None:
        return Resolved(PCIE_UNKNOWN.gbps, "PCIe unknown, Gen3 x16 assumed = 12 GB/s", PCIE_UNKNOWN.cite,
                        ("PCIe link unknown: Gen3 x16 assumed (NCCL's fallback), 12 GB/s",))
    if gen is None:
        gen = 3
        assumed.append("PCIe generation unknown: Gen3 assumed (NCCL's fallback)")
    if width is None:
        width = 16
        assumed.append("PCIe width unknown: x16 assumed (NCCL's fallback)")
    if gen > _PCIE_TOP:
        assumed.append(f"PCIe Gen{gen} is beyond the table: Gen{_PCIE_TOP} rate used")
        gen = _PCIE_TOP
    lane = PCIE_LANE[gen]
    gbps = width * lane.gbps
    return Resolved(gbps, f"PCIe Gen{gen} x{width} = {gbps:g} GB/s", "NCCL PCIe width × lane rate", tuple(assumed))


def socket() -> Resolved:
    """The inter-socket link (SYS): the CPU is not a fact gputopo has, so NCCL's lowest value."""
    return Resolved(SOCKET_UNKNOWN.gbps, f"socket link {SOCKET_UNKNOWN.gbps:g} GB/s (CPU unknown)",
                    SOCKET_UNKNOWN.cite,
                    ("CPU unknown: inter-socket link 6 GB/s (NCCL's lowest inter-CPU value, BDW_QPI_BW)",))


def c2c() -> Resolved:
    """A Grace GPU's NVLink-C2C link to its CPU, per direction (a ceiling; see :data:`C2C`)."""
    return Resolved(C2C.gbps, f"NVLink-C2C {C2C.gbps:g} GB/s", C2C.cite)


def nic(n: Nic) -> Resolved:
    """A NIC port's rate in GB/s: ``Mb/s / 8000`` as NCCL counts it, or NCCL's 10 Gb/s fallback.

    >>> nic(Nic("NIC0", "mlx5_0", rate_mbps=400_000)).gbps, nic(Nic("NIC0")).gbps
    (50.0, 1.25)
    """
    if n.rate_mbps is None or n.rate_mbps <= 0:
        return Resolved(NIC_UNKNOWN.gbps, f"{n.name} rate unknown, 10 Gb/s assumed", NIC_UNKNOWN.cite,
                        ("NIC rate unknown: 10 Gb/s assumed (NCCL's fallback), 1.25 GB/s",))
    gbps = n.rate_mbps / 8000.0
    return Resolved(gbps, f"{n.name} {n.rate_mbps / 1000:g} Gb/s = {gbps:g} GB/s", "NCCL mbps / 8000")


def link_gbps(link: Link) -> float:
    """The level-only helper: one hop's GB/s when only the matrix cell is known.

    Every other fact is unknown and degrades as in the full model: NVLink at the slowest
    generation with that many links, PCIe at Gen3 x16, the socket link at NCCL's lowest.
    A single hop has no contention, so PIX..NODE all read 12 (the PCIe link is the limit).
    For a GPU *set* use :func:`labeler.topology.busbw.predict`, which sees P2P, shared
    switch uplinks and the facts.

    >>> from labeler.topology.links import parse_link_token
    >>> [link_gbps(parse_link_token(t)) for t in ("NV18", "NV12", "NV4", "PIX", "NODE", "SYS")]
    [370.8, 240.0, 48.0, 12.0, 12.0, 6.0]
    """
    if link.level is LinkLevel.SELF:
        raise ValueError("a GPU with itself is no hop")
    if link.level is LinkLevel.NVLINK:
        return round(link.nvlinks * nvlink_per_link(Gpu(0), link.nvlinks).gbps, 3)
    if link.level is LinkLevel.SYS:
        return min(PCIE_UNKNOWN.gbps, SOCKET_UNKNOWN.gbps)
    return PCIE_UNKNOWN.gbps


def table_markdown() -> str:
    """:data:`TABLE` as the markdown table docs/bandwidth.md carries (a test keeps them equal)."""
    lines = [
        "| key | value GB/s | what | line rate GB/s | links per GPU | source |",
        "|---|---|---|---|---|---|",
    ]
    for r in TABLE:
        line = "–" if r.line_gbps is None else f"{r.line_gbps:g}"
        links = "–" if r.max_links is None else str(r.max_links)
        lines.append(f"| `{r.key}` | {r.gbps:g} | {r.name}: {r.what} | {line} | {links} | {r.source} |")
    return "\n".join(lines) + "\n"


def dedupe(items: Iterable[str]) -> tuple[str, ...]:
    """Keep the first of equal strings, in order (assumptions gathered from many hops)."""
    return tuple(dict.fromkeys(items))
