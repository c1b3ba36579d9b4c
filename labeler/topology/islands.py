"""GPU islands: connected groups of GPUs at each link level.

An island at level L is a connected component of the graph whose edges are GPU
pairs linked at L *or better* (NVLink < PIX < PXB < PHB < NODE < SYS). Islands
therefore nest: every nvlink island lies inside one pix island, and so on up to
sys. Unknown links (``None``) are never edges, so a damaged matrix can only
split islands, never merge them wrongly.

Why components and not cliques: the labels describe how the node is *wired*
(e.g. "two 4-GPU PCIe switch islands"). Whether a k-GPU ring fits inside an
island at a level is a different question, answered by
:mod:`labeler.topology.placement` — which matters for NVLink meshes such as
DGX-1's hybrid cube-mesh, where the single 8-GPU NVLink island is not a clique.
"""

from __future__ import annotations

from collections.abc import Iterable

from labeler.topology.links import ISLAND_LEVELS, LinkLevel
from labeler.topology.model import Topology

__all__ = ["components", "compute", "connected", "largest", "shape", "sizes_text"]


def components(topo: Topology, level: LinkLevel, among: frozenset[int] | None = None) -> list[list[int]]:
    """GPU indices grouped by connectivity at ``level`` or better.

    ``among`` restricts the graph to those GPUs (e.g. the free ones). Each group
    is sorted, and groups are sorted by their first index.
    """
    members = [g for g in topo.gpu_indices if among is None or g in among]
    inside = set(members)
    edges = [
        (a, b) for a, b, link in topo.gpu_pairs()
        if link is not None and link.level <= level and a in inside and b in inside
    ]
    return connected(members, edges)


def connected(nodes: Iterable[int], edges: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Connected components of a graph: each sorted, sorted by first member (the one union-find here).

    >>> connected([0, 1, 2, 3, 5], [(0, 2), (3, 5)])
    [[0, 2], [1], [3, 5]]
    """
    parent = {n: n for n in nodes}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for n in parent:
        groups.setdefault(find(n), []).append(n)
    return sorted((sorted(v) for v in groups.values()), key=lambda grp: grp[0])


def compute(topo: Topology) -> dict[LinkLevel, list[list[int]]]:
    """Islands at every level of :data:`~labeler.topology.links.ISLAND_LEVELS`.

    >>> from labeler.topology import smi_parser
    >>> t = smi_parser.parse('''
    ...         GPU0    GPU1    GPU2    GPU3
    ... GPU0     X      NV4     SYS     SYS
    ... GPU1    NV4      X      SYS     SYS
    ... GPU2    SYS     SYS      X      NV4
    ... GPU3    SYS     SYS     NV4      X
    ... ''')
    >>> compute(t)[LinkLevel.NVLINK]
    [[0, 1], [2, 3]]
    >>> compute(t)[LinkLevel.SYS]
    [[0, 1, 2, 3]]
    """
    return {level: components(topo, level) for level in ISLAND_LEVELS}


def largest(topo: Topology, level: LinkLevel) -> int:
    """Size of the largest island at ``level``; 1 for a single GPU, 0 for no GPU.

    At the NVLink level a GPU without any NVLink is not an island of one: the
    label answers "how many GPUs can talk over NVLink", so a PCIe-only node is 0.
    """
    groups = components(topo, level)
    if level is LinkLevel.NVLINK:
        groups = [g for g in groups if len(g) > 1]
    return max((len(g) for g in groups), default=0)


def shape(topo: Topology, level: LinkLevel) -> str:
    """Island sizes at ``level``, largest first, joined by ``-`` (``4-4``, ``8``, ``2-2-2-2``).

    Every GPU is in exactly one island, so the sizes add up to the GPU count
    (a GPU without NVLink is an NVLink island of one). ``0`` for a node without
    GPUs. The string is always a valid label value (see :func:`sizes_text`).
    """
    return sizes_text(len(g) for g in components(topo, level))


def sizes_text(sizes: Iterable[int]) -> str:
    """Sizes largest first joined by ``-`` (``4-4``, ``2-2-2-2``), a valid label value.

    ``0`` for no GPU. Above 63 characters the run-length form (``40x1``) is used.

    >>> sizes_text([2, 4, 2]), sizes_text([]), sizes_text([1] * 40)
    ('4-2-2', '0', '40x1')
    """
    ordered = sorted(sizes, reverse=True)
    if not ordered:
        return "0"
    text = "-".join(str(s) for s in ordered)
    if len(text) <= 63:
        return text
    runs = [f"{ordered.count(size)}x{size}" for size in sorted(set(ordered), reverse=True)]
    return "-".join(runs)[:63]
