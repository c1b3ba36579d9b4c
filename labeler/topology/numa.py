"""NUMA groups: which GPUs share a NUMA node (a socket, or a sub-socket domain), from affinity.

Why not link levels: NVLink is "better than NODE" in the link order, so a NODE-level
link island of a 2-socket NVSwitch board holds all eight GPUs, while four of them
sit on each socket. CPU pinning, Topology Manager's ``single-numa-node`` and
host-memory staging follow the GPU's *NUMA affinity*, which `nvidia-smi` (NUMA
Affinity, CPU Affinity columns), NVML (memory/CPU affinity) and sysfs
(``numa_node``, ``local_cpulist``) report. So GPUs are grouped by that:

1. **affinity** (every GPU's group comes from it): GPUs with equal NUMA affinity
   share a node; where the NUMA affinity is unknown, equal CPU affinity does (the
   driver derives both from the same node). A GPU whose affinity sets overlap
   another GPU's without being equal (``0-7`` next to ``1``) has no usable
   affinity: the sets do not partition the GPUs.
2. **links**, only for GPUs without usable affinity, and then :attr:`NumaGroups.basis`
   says so: non-NVLink paths at ``NODE`` or better, GPU↔GPU or through a NIC, mean
   "same NUMA node" (``NODE`` is *within* a NUMA node, and the relation is
   transitive); ``SYS`` separates. NVLink says nothing about PCIe placement.
3. **unknown**: when neither settles whether two groups share a node (NVLink-only
   pairs, no affinity, no NIC in common), the grouping is unknown (``None``), never
   guessed: the labels that depend on it are then not published.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from labeler.topology.islands import sizes_text
from labeler.topology.links import LinkLevel
from labeler.topology.model import Gpu, Topology

__all__ = ["Basis", "NumaGroups", "crosses", "group"]


class Basis(enum.StrEnum):
    """Where the grouping came from (published as the ``numa-basis`` label)."""

    AFFINITY = "affinity"  # every GPU's NUMA or CPU affinity
    LINKS = "links"  # some GPU lacked affinity: its group comes from PCIe link levels
    UNKNOWN = "unknown"  # not settled by either


@dataclass(frozen=True, slots=True)
class NumaGroups:
    """GPU indices per NUMA group (sorted, groups by first index), how they were found, and their nodes.

    ``groups`` is ``None`` when :attr:`basis` is ``unknown``. ``nodes[i]`` is the
    NUMA node set of group ``i`` when affinity names it, else ``None``.
    """

    basis: Basis
    groups: tuple[tuple[int, ...], ...] | None
    nodes: tuple[frozenset[int] | None, ...] = ()
    from_links: tuple[int, ...] = ()  # GPUs placed by link levels (no usable affinity)

    @property
    def shape(self) -> str | None:
        """Group sizes, largest first (``4-4``); ``None`` when unknown."""
        if self.groups is None:
            return None
        return sizes_text(len(g) for g in self.groups)

    @property
    def largest(self) -> int | None:
        if self.groups is None:
            return None
        return max((len(g) for g in self.groups), default=0)

    def group_of(self, gpu: int) -> int | None:
        """Position of ``gpu``'s group in :attr:`groups`."""
        for i, g in enumerate(self.groups or ()):
            if gpu in g:
                return i
        return None

    def crosses(self, gpus: Iterable[int]) -> bool | None:
        """Whether ``gpus`` sit on more than one NUMA group (see :func:`crosses`); ``None`` when unknown."""
        wanted = set(gpus)
        if len(wanted) < 2:
            return False
        if self.groups is None:
            return None
        where = {self.group_of(g) for g in wanted}
        if None in where:
            return None  # a GPU this topology does not hold
        return len(where) > 1


def crosses(topo: Topology, gpus: Iterable[int], groups: NumaGroups | None = None) -> bool | None:
    """Do ``gpus`` span CPU sockets (NUMA nodes)? ``None`` when the grouping is unknown.

    The one "crosses sockets" predicate: the audits (pod, cluster) and the simulator ask it.
    It reads :func:`group` (NUMA affinity; PCIe link levels only for GPUs without usable
    affinity), never a link level alone: a SYS path between two GPUs of one NUMA node
    (board 032: a socket split into NUMA domains the OS does not show, a hypervisor hiding
    the PCIe tree, P2P disabled) is *not* a socket crossing, and GPUs of two NUMA nodes
    joined by NVLink do cross sockets for their host memory and CPUs though their NCCL
    ring does not. Callers that speak of the ring's traffic ("the ring crosses sockets")
    combine this with a SYS bottleneck. Fewer than two distinct GPUs never cross. Pass
    ``groups`` (from :func:`group`) when asking about many sets of one topology.

    >>> from labeler.topology import smi_parser
    >>> t = smi_parser.parse('''
    ...         GPU0    GPU1    GPU2    CPU Affinity    NUMA Affinity
    ... GPU0     X      SYS     SYS     0-31            0
    ... GPU1    SYS      X      SYS     0-31            0
    ... GPU2    SYS     SYS      X      32-63           1
    ... ''')
    >>> crosses(t, [0, 1]), crosses(t, [1, 2]), crosses(t, [2])
    (False, True, False)
    """
    return (group(topo) if groups is None else groups).crosses(gpus)


def _affinity_keys(gpus: tuple[Gpu, ...]) -> dict[int, tuple[str, frozenset[int]]]:
    """Per GPU index its usable affinity key: ("numa", set) or ("cpu", set); GPUs without one are absent."""
    keys: dict[int, tuple[str, frozenset[int]]] = {}
    for kind in ("numa", "cpu"):
        values = {
            g.index: v
            for g in gpus
            if (v := (g.numa_affinity if kind == "numa" else g.cpu_affinity))
        }
        distinct = set(values.values())
        bad = {a for a in distinct for b in distinct if a != b and a & b}  # overlapping, not equal
        for index, v in values.items():
            if index not in keys and v not in bad:
                keys[index] = (kind, v)
    # A GPU keyed by CPU set joins a NUMA-keyed group when some GPU has both (same node, same CPUs).
    both = {g.cpu_affinity: g.numa_affinity for g in gpus if g.cpu_affinity and g.numa_affinity}
    for index, (kind, v) in list(keys.items()):
        if kind == "cpu" and (numa := both.get(v)) is not None and ("numa", numa) in keys.values():
            keys[index] = ("numa", numa)
    return keys


def group(topo: Topology) -> NumaGroups:
    """Group the GPUs of ``topo`` by NUMA node (see the module doc for the rules).

    >>> from labeler.topology import smi_parser
    >>> t = smi_parser.parse('''
    ...         GPU0    GPU1    GPU2    GPU3    CPU Affinity    NUMA Affinity
    ... GPU0     X      NV18    NV18    NV18    0-31            0
    ... GPU1    NV18     X      NV18    NV18    0-31            0
    ... GPU2    NV18    NV18     X      NV18    32-63           1
    ... GPU3    NV18    NV18    NV18     X      32-63           1
    ... ''')
    >>> g = group(t)
    >>> g.basis.value, g.groups, g.shape
    ('affinity', ((0, 1), (2, 3)), '2-2')
    """
    n_gpu = len(topo.gpus)
    keys = _affinity_keys(topo.gpus)
    n = n_gpu + len(topo.nics)
    parent = list(range(n))
    # the affinity key held by each component (at most one: affinity is never overridden by links)
    held: dict[int, tuple[str, frozenset[int]] | None] = {
        p: keys.get(g.index) for p, g in enumerate(topo.gpus)
    }

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(a: int, b: int, *, force: bool = False) -> None:
        ra, rb = find(a), find(b)
        if ra == rb:
            return
        ka, kb = held.get(ra), held.get(rb)
        if ka is not None and kb is not None and ka != kb and not force:
            return  # links never merge two GPUs whose affinity names different nodes
        parent[rb] = ra
        held[ra] = ka if ka is not None else kb

    by_key: dict[tuple[str, frozenset[int]], int] = {}
    for p, g in enumerate(topo.gpus):
        key = keys.get(g.index)
        if key is not None:
            if key in by_key:
                union(by_key[key], p, force=True)
            else:
                by_key[key] = p
    unkeyed = [g.index for g in topo.gpus if g.index not in keys]
    sys_pairs: list[tuple[int, int]] = []
    if unkeyed:
        for i in range(n):
            for j in range(i + 1, n):
                link = topo.links[i][j]
                if link is None or link.level is LinkLevel.NVLINK:
                    continue
                if link.level <= LinkLevel.NODE:
                    union(i, j)
                elif link.level is LinkLevel.SYS:
                    sys_pairs.append((i, j))
    comps: dict[int, list[int]] = {}
    for p, g in enumerate(topo.gpus):
        comps.setdefault(find(p), []).append(g.index)
    roots = sorted(comps, key=lambda r: min(comps[r]))
    groups = tuple(tuple(sorted(comps[r])) for r in roots)
    nodes = tuple(_node_set(held.get(r), topo, comps[r]) for r in roots)
    if not unkeyed:
        return NumaGroups(Basis.AFFINITY, groups, nodes)
    # Every pair of groups must be told apart by affinity (both keyed) or by a SYS path.
    apart = {(find(i), find(j)) for i, j in sys_pairs}
    apart |= {(b, a) for a, b in apart}
    for x, ra in enumerate(roots):
        for rb in roots[x + 1 :]:
            ka, kb = held.get(ra), held.get(rb)
            if ka is not None and kb is not None:
                continue
            if (ra, rb) not in apart:
                return NumaGroups(Basis.UNKNOWN, None, from_links=tuple(unkeyed))
    return NumaGroups(Basis.LINKS, groups, nodes, tuple(unkeyed))


def _node_set(key: tuple[str, frozenset[int]] | None, topo: Topology, members: list[int]) -> frozenset[int] | None:
    """The NUMA node set of a group whose affinity names it (a CPU-keyed group: a member's NUMA affinity)."""
    if key is None:
        return None
    if key[0] == "numa":
        return key[1]
    found = {numa for index in members if (numa := topo.gpu(index).numa_affinity)}
    return next(iter(found)) if len(found) == 1 else None
