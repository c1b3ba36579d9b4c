"""One node as a person draws it: sockets, PCIe trees, NICs beside GPUs, NVLink.

Named *drawing*, not wiring: in gputopo "wiring" is the decision's key (a node's links plus
its GPU facts, :func:`policy.nodes.decode.wiring`), and "topology class" the label
(:func:`labeler.topology.labels.topology_class`); see docs/labels.md.

Why a structure separate from the picture: the drawing (:mod:`labeler.topology.picture`)
needs boxes and edges, the findings need "which GPU pairs share a PCIe switch", and
the tests check *this* (groups and edges), never pixels.

What is drawn where, all from the link matrix and affinity the model holds:

* **NUMA groups** exactly as the ``numa-shape`` label has them
  (:func:`labeler.topology.numa.group`). A NIC joins the group of the GPUs it is
  ``NODE`` or better to; a NIC that is ``SYS`` to every GPU belongs to no group (its
  socket is not in `nvidia-smi topo -m`) and is drawn apart.
* **PCIe trees** inside each group: endpoints (GPUs and NICs) joined by ``PHB`` or
  better form a host-bridge box, by ``PXB`` or better a box of PCIe switches, by ``PIX``
  one PCIe switch. A box is drawn only for two or more endpoints, labelled with the
  tightest level that joins them all (a root port with one switch is one box, not two).
  An NVLink pair's PCIe level is not in the matrix (``NV#`` replaces it), so GPUs of an
  NVLink board are joined into PCIe boxes only through the NICs they share a switch with.
* **NVLink**: per NVLink island, either direct edges with their link count, or an
  **NVSwitch** when the island is all-to-all with more links per GPU than any GPU has
  ports (:func:`labeler.topology.nvswitch.switched_islands`, the one rule): eight GPUs at
  ``NV12`` to each other would need 84 links each, so they reach each other through
  switches (HGX A100/H100, GB200 trays).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from labeler.topology import islands, numa, nvswitch, serialize
from labeler.topology.links import Link, LinkLevel
from labeler.topology.model import Topology

__all__ = [
    "Box",
    "Drawing",
    "NvEdge",
    "NvSwitch",
    "analyse",
    "pcie_level",
]

_PCIE_BOX_LEVELS = (LinkLevel.PIX, LinkLevel.PXB, LinkLevel.PHB)


@dataclass(frozen=True, slots=True)
class Box:
    """A group drawn as one box: a NUMA group, a host bridge, a set of PCIe switches, one switch.

    ``kind``: ``numa``, ``host-bridge`` (PHB), ``pcie-switches`` (PXB), ``pcie-switch``
    (PIX), ``far-nics`` (NICs SYS to every GPU). ``items`` hold, in drawing order,
    nested boxes and endpoints (matrix positions: GPUs first, then NICs).
    """

    kind: str
    level: LinkLevel | None
    label: str
    items: tuple[Box | int, ...]
    note: str = ""  # a caveat shown with the label ("SYS inside")

    def endpoints(self) -> list[int]:
        """Every endpoint position in this box and its sub-boxes, in drawing order."""
        out: list[int] = []
        for item in self.items:
            out.extend(item.endpoints() if isinstance(item, Box) else [item])
        return out

    def boxes(self) -> Iterable[Box]:
        """This box and every box inside it, depth first."""
        yield self
        for item in self.items:
            if isinstance(item, Box):
                yield from item.boxes()


@dataclass(frozen=True, slots=True)
class NvEdge:
    """Direct NVLinks between two GPUs (by index)."""

    a: int
    b: int
    links: int


@dataclass(frozen=True, slots=True)
class NvSwitch:
    """GPUs that reach each other through NVSwitch; ``links[g]``: GPU g's bonded width to the fabric."""

    gpus: tuple[int, ...]
    links: dict[int, int]

    @property
    def width(self) -> int:
        """The most common per-GPU width (what a healthy GPU of this fabric has)."""
        return Counter(self.links.values()).most_common(1)[0][0]


@dataclass(frozen=True, slots=True)
class Drawing:
    groups: tuple[Box, ...]  # NUMA groups, then (if any) the far-NICs box
    nvlink: tuple[NvEdge, ...]
    nvswitch: tuple[NvSwitch, ...]
    between: dict[tuple[int, int], LinkLevel]  # best known PCIe level between NUMA groups (by position)
    nearest_gpu: dict[int, int]  # NIC position -> the GPU index it is drawn under


def pcie_level(link: Link | None) -> LinkLevel | None:
    """The PCIe level of a cell, ``None`` when unknown or hidden behind NVLink."""
    if link is None or link.level in (LinkLevel.SELF, LinkLevel.NVLINK):
        return None
    return link.level


def _components(topo: Topology, eps: Sequence[int], level: LinkLevel) -> list[list[int]]:
    """Endpoints (positions) joined by known PCIe paths at ``level`` or better."""
    edges = [
        (a, b) for i, a in enumerate(eps) for b in eps[i + 1 :]
        if (lvl := pcie_level(topo.links[a][b])) is not None and lvl <= level
    ]
    return islands.connected(eps, edges)


_BOX = {
    LinkLevel.PIX: ("pcie-switch", "PCIe switch (PIX)"),
    LinkLevel.PXB: ("pcie-switches", "PCIe switches (PXB)"),
    LinkLevel.PHB: ("host-bridge", "host bridge (PHB)"),
}


def _pcie_items(topo: Topology, eps: Sequence[int], level: LinkLevel) -> list[Box | int]:
    """Endpoints joined at ``level`` or better, as nested boxes (tightest level that joins each)."""
    out: list[Box | int] = []
    for comp in _components(topo, eps, level):
        if len(comp) == 1:
            out.append(comp[0])
            continue
        tight = next(lv for lv in _PCIE_BOX_LEVELS if len(_components(topo, comp, lv)) == 1)
        kind, label = _BOX[tight]
        finer = _PCIE_BOX_LEVELS[_PCIE_BOX_LEVELS.index(tight) - 1]
        inner: list[Box | int] = [*comp] if tight is LinkLevel.PIX else _pcie_items(topo, comp, finer)
        out.append(Box(kind, tight, label, tuple(inner)))
    return out


def _first_gpu(item: Box | int, n_gpu: int) -> tuple[int, int]:
    eps = item.endpoints() if isinstance(item, Box) else [item]
    gpus = [e for e in eps if e < n_gpu]
    return (0, min(gpus)) if gpus else (1, min(eps))


def _order(items: list[Box | int], n_gpu: int) -> tuple[Box | int, ...]:
    """GPUs (and boxes holding GPUs) by lowest GPU position, then NIC-only items."""
    ordered = sorted(items, key=lambda it: _first_gpu(it, n_gpu))
    return tuple(
        Box(it.kind, it.level, it.label, _order(list(it.items), n_gpu), it.note) if isinstance(it, Box) else it
        for it in ordered
    )


def _group_label(groups: numa.NumaGroups, k: int, topo: Topology) -> str:
    if groups.groups is None:
        return "NUMA node unknown"
    nodes = groups.nodes[k]
    cpus = topo.gpu(groups.groups[k][0]).cpu_affinity
    cpu_text = f"CPUs {serialize.format_cpulist(cpus)}" if cpus else ""
    if nodes is not None:
        head = f"NUMA {serialize.format_cpulist(nodes)}"
    elif groups.basis is numa.Basis.LINKS and set(groups.groups[k]) & set(groups.from_links):
        head = "NUMA group (from link levels)"
    else:
        head = "NUMA group"
    return f"{head} · {cpu_text}" if cpu_text else head


def analyse(topo: Topology) -> Drawing:
    """The node's drawing structure (see the module doc)."""
    n_gpu = len(topo.gpus)
    pos = {g.index: p for p, g in enumerate(topo.gpus)}
    groups = numa.group(topo)
    gpu_groups = [list(g) for g in groups.groups] if groups.groups is not None else [list(topo.gpu_indices)]
    group_of = {pos[g]: k for k, grp in enumerate(gpu_groups) for g in grp}
    members: list[list[int]] = [[pos[g] for g in grp] for grp in gpu_groups]
    far: list[int] = []
    nearest: dict[int, int] = {}
    for n in range(len(topo.nics)):
        e = n_gpu + n
        known = [(lvl, p) for p in range(n_gpu) if (lvl := pcie_level(topo.links[e][p])) is not None]
        if not known:
            far.append(e)
            continue
        best = min(lvl for lvl, _ in known)
        if best > LinkLevel.NODE:
            far.append(e)
            continue
        at_best = sorted(p for lvl, p in known if lvl == best)
        members[group_of[at_best[0]]].append(e)
        nearest[n] = _spread(at_best, nearest, topo)
    boxes: list[Box] = []
    for k, eps in enumerate(members):
        note = ""
        gpus_here = [e for e in eps if e < n_gpu]
        if any(pcie_level(topo.links[a][b]) is LinkLevel.SYS for a in gpus_here for b in gpus_here):
            note = "SYS inside this NUMA node (dashed): socket split (NPS/SNC) or a VM hiding the PCIe tree"
        items = _order(_pcie_items(topo, sorted(eps), LinkLevel.PHB), n_gpu)
        boxes.append(Box("numa", LinkLevel.NODE, _group_label(groups, k, topo), items, note))
    if far:
        boxes.append(Box("far-nics", None, "NICs SYS to every GPU (socket not shown by nvidia-smi)",
                         _order(_pcie_items(topo, far, LinkLevel.PHB), n_gpu)))
    between: dict[tuple[int, int], LinkLevel] = {}
    for x in range(len(members)):
        for y in range(x + 1, len(members)):
            levels = [lv for a in members[x] for b in members[y] if (lv := pcie_level(topo.links[a][b])) is not None]
            if levels:
                between[(x, y)] = min(levels)
    edges, switches = _nvlink(topo)
    return Drawing(tuple(boxes), edges, switches, between, nearest)


def _spread(candidates: list[int], taken: dict[int, int], topo: Topology) -> int:
    """Among equally near GPUs (positions), the one with the fewest NICs drawn under it so far (by index)."""
    load = Counter(taken.values())
    best = min(candidates, key=lambda p: (load[topo.gpus[p].index], p))
    return topo.gpus[best].index


def _nvlink(topo: Topology) -> tuple[tuple[NvEdge, ...], tuple[NvSwitch, ...]]:
    edges: list[NvEdge] = []
    switches: list[NvSwitch] = []
    for island in islands.components(topo, LinkLevel.NVLINK):
        if len(island) < 2:
            continue
        group = tuple(island)
        counts = nvswitch.island_links(topo, group)
        if nvswitch.is_switched(group, counts):
            width = {g: max(n for pair, n in counts.items() if g in pair) for g in island}
            switches.append(NvSwitch(group, width))
        else:
            edges.extend(NvEdge(a, b, n) for (a, b), n in sorted(counts.items()))
    return tuple(edges), tuple(switches)
