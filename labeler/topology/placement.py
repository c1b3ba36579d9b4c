"""Placement math: the best k-GPU set among a node's free GPUs for an NCCL ring.

What "best" means. An NCCL ring visits every GPU of the set once and returns;
its speed is bounded by its *worst* hop (the bottleneck). So the quality of a
k-GPU set is the bottleneck of the best ring through it, compared by link rank
(level first, then more NVLinks first). We search thresholds from the best
link upward: at threshold t, GPUs are adjacent when their link is at t or
better, and a k-set is feasible when it holds a cycle through all k GPUs
(k=2: one link, k=1: any GPU). The first feasible threshold is the bottleneck.

Why rings and not components: DGX-1's hybrid cube-mesh is one NVLink island of
8 GPUs, yet GPUs 0 and 5 share no NVLink. Any 4 of those GPUs are "in the
NVLink island", but only some 4-sets close an all-NVLink ring. Components
would promise NVLink where NCCL would fall back to PCIe/SYS.

Which set, among equals. Within the tightest feasible threshold:
- pick the smallest group of connected free GPUs that can host the ring (best
  fit: leave larger free islands whole for larger jobs);
- inside a group where every pair meets the threshold (all PCIe trees, NVSwitch
  boards), fill from the smallest tighter-level sub-islands first, recursively,
  again to keep big islands whole;
- inside a group that is not a clique (NVLink meshes), enumerate the k-sets
  that close a ring and take the one with the tightest links overall.

Speed. A :class:`Placer` precomputes adjacency bitmasks per threshold once per
topology and memoises answers by (free-set bitmask, k). Finding cycles uses a
dynamic programme over (visited set, last GPU), bounded by C(n, k) states, so
16-GPU nodes stay in the millisecond range even uncached.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from labeler.topology.links import SELF, Link, LinkLevel
from labeler.topology.model import Topology

__all__ = ["Placement", "Placer", "placer_for"]

Rank = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Placement:
    """A chosen GPU set, a ring order through it and the ring's worst hop."""

    gpus: tuple[int, ...]
    ring: tuple[int, ...]
    bottleneck: Link

    @property
    def level(self) -> LinkLevel:
        return self.bottleneck.level


def _bits(mask: int) -> list[int]:
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


class Placer:
    """Placement answers for one topology, memoised by free-set bitmask.

    Thread-safe for concurrent readers (the memo is a dict guarded by a lock on
    insert; a race can only compute the same answer twice).
    """

    def __init__(self, topo: Topology, *, cache_size: int = 1 << 16) -> None:
        self.topo = topo
        self._index = topo.gpu_indices
        self._pos = {g: p for p, g in enumerate(self._index)}
        n = len(self._index)
        links: dict[Rank, Link] = {}
        rank_of: list[list[Rank | None]] = [[None] * n for _ in range(n)]
        for p in range(n):
            for q in range(n):
                link = topo.links[p][q]
                if p != q and link is not None:
                    rank_of[p][q] = link.rank
                    links[link.rank] = link
        #: thresholds (link ranks present), best first, with the Link each stands for
        self._thresholds: list[Rank] = sorted(links)
        self._links = links
        self._adj: dict[Rank, list[int]] = {}
        for t in self._thresholds:
            adj = [0] * n
            for p in range(n):
                for q in range(n):
                    r = rank_of[p][q]
                    if r is not None and r <= t:
                        adj[p] |= 1 << q
            self._adj[t] = adj
        self._cache: dict[tuple[int, int], Placement | None] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    # -- public API ---------------------------------------------------------------
    def mask(self, gpus: Iterable[int]) -> int:
        """Bitmask (by position) of GPU indices; unknown indices raise ``KeyError``."""
        m = 0
        for g in gpus:
            m |= 1 << self._pos[g]
        return m

    def best(self, free: Iterable[int], k: int) -> Placement | None:
        """The best k-GPU set among ``free``; ``None`` when fewer than k are free.

        Raises ``ValueError`` for k < 1 (a request for no GPUs is a caller bug,
        not "no fit").
        """
        return self.best_mask(self.mask(free), k)

    def best_mask(self, free_mask: int, k: int) -> Placement | None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        key = (free_mask, k)
        hit = self._cache.get(key, _MISS)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        result = self._solve(free_mask, k)
        with self._lock:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[key] = result
        return result

    def islands_free(self, free: Iterable[int], level: LinkLevel) -> list[list[int]]:
        """Free GPUs grouped into islands at ``level`` (sorted, by first index)."""
        t = self._threshold_for_level(level)
        mask = self.mask(free)
        groups = [[p] for p in _bits(mask)] if t is None else [_bits(c) for c in self._components(mask, t)]
        out = [sorted(self._index[p] for p in grp) for grp in groups]
        return sorted(out, key=lambda grp: grp[0])

    # -- search ---------------------------------------------------------------------
    def _threshold_for_level(self, level: LinkLevel) -> Rank | None:
        """The loosest threshold whose links are all at ``level`` or better."""
        fitting = [t for t in self._thresholds if t[0] <= int(level)]
        return fitting[-1] if fitting else None

    def _components(self, mask: int, t: Rank) -> list[int]:
        adj = self._adj[t]
        comps: list[int] = []
        rest = mask
        while rest:
            seed = rest & -rest
            comp, frontier = seed, seed
            while frontier:
                low = frontier & -frontier
                frontier ^= low
                new = adj[low.bit_length() - 1] & mask & ~comp
                comp |= new
                frontier |= new
            comps.append(comp)
            rest &= ~comp
        return comps

    def _is_clique(self, comp: int, t: Rank) -> bool:
        adj = self._adj[t]
        return all((adj[p] | (1 << p)) & comp == comp for p in _bits(comp))

    def _solve(self, free_mask: int, k: int) -> Placement | None:
        if free_mask.bit_count() < k:
            return None
        if k == 1:
            return self._single(free_mask)
        for t in self._thresholds:
            comps = sorted(
                (c for c in self._components(free_mask, t) if c.bit_count() >= k),
                key=lambda c: (c.bit_count(), c & -c),
            )
            for comp in comps:
                if self._is_clique(comp, t):
                    chosen = self._fill(comp, k, t)
                    return self._placement(chosen, t)
                chosen_or_none = self._best_cycle_set(comp, k, t)
                if chosen_or_none is not None:
                    return self._placement(chosen_or_none, t)
        return None

    def _single(self, free_mask: int) -> Placement:
        """One GPU: take it from the most broken (smallest) free island, nearest level first."""
        best_pos = min(_bits(free_mask), key=lambda p: (self._nest_key(free_mask, p), p))
        g = self._index[best_pos]
        return Placement((g,), (g,), SELF)

    def _nest_key(self, free_mask: int, p: int) -> tuple[int, ...]:
        sizes = []
        for t in self._thresholds:
            for comp in self._components(free_mask, t):
                if comp >> p & 1:
                    sizes.append(comp.bit_count())
        return tuple(sizes)

    def _fill(self, comp: int, k: int, t: Rank) -> int:
        """Pick k GPUs of a clique component: smallest tighter sub-islands first, recursively."""
        if comp.bit_count() == k:
            return comp
        tighter = [x for x in self._thresholds if x < t]
        if not tighter:
            return _lowest(comp, k)
        sub_t = tighter[-1]
        subs = sorted(self._components(comp, sub_t), key=lambda c: (c.bit_count(), c & -c))
        exact = _exact_cover(subs, k)
        if exact is not None:
            return exact
        chosen, need = 0, k
        for sub in subs:
            if sub.bit_count() <= need:
                chosen |= sub
                need -= sub.bit_count()
            if need == 0:
                return chosen
        # take the remainder from the smallest untouched sub-island that can supply it
        for sub in subs:
            if sub & chosen == 0 and sub.bit_count() >= need:
                part = self._fill(sub, need, sub_t) if self._is_clique(sub, sub_t) else _lowest(sub, need)
                return chosen | part
        raise AssertionError("a component of >= k GPUs always yields k of them")

    def _best_cycle_set(self, comp: int, k: int, t: Rank) -> int | None:
        """Among k-sets of ``comp`` that close a ring at t, the one with the tightest links."""
        adj = self._adj[t]
        if k == 2:
            pairs = [(1 << p) | (1 << q) for p in _bits(comp) for q in _bits(adj[p] & comp) if q > p]
            return min(pairs, key=lambda m: (self._weight(m), m)) if pairs else None
        found: list[int] = []
        for s in _bits(comp):
            higher = comp & ~((1 << (s + 1)) - 1)
            # layer: visited mask -> bitmask of possible last vertices (paths from s)
            layer: dict[int, int] = {1 << s: 1 << s}
            for _ in range(k - 1):
                nxt: dict[int, int] = {}
                for visited, lasts in layer.items():
                    reach = 0
                    for last in _bits(lasts):
                        reach |= adj[last]
                    for q in _bits(reach & higher & ~visited):
                        # q must extend from some last that is adjacent to it
                        if lasts & adj[q]:
                            m = visited | (1 << q)
                            nxt[m] = nxt.get(m, 0) | (1 << q)
                layer = nxt
            found.extend(m for m, lasts in layer.items() if lasts & adj[s])
        if not found:
            return None
        return min(found, key=lambda m: (self._weight(m), m))

    def _weight(self, mask: int) -> tuple[int, int]:
        """Sum of pairwise link ranks inside a set: a tie-break favouring tighter sets."""
        ps = _bits(mask)
        lv = nv = 0
        for i, p in enumerate(ps):
            for q in ps[i + 1 :]:
                link = self.topo.links[p][q]
                r = link.rank if link is not None else (int(LinkLevel.SYS) + 1, 0)
                lv += r[0]
                nv += r[1]
        return (lv, nv)

    def _ring(self, mask: int, t: Rank) -> tuple[int, ...] | None:
        """A Hamiltonian cycle through ``mask`` using links at t or better (DFS, small sets)."""
        adj = self._adj[t]
        ps = _bits(mask)
        if len(ps) <= 2:
            return tuple(ps)
        start = ps[0]

        def dfs(path: list[int], visited: int) -> list[int] | None:
            if visited == mask:
                return path if adj[path[-1]] >> start & 1 else None
            for q in _bits(adj[path[-1]] & mask & ~visited):
                res = dfs([*path, q], visited | (1 << q))
                if res is not None:
                    return res
            return None

        found = dfs([start], 1 << start)
        return tuple(found) if found is not None else None

    def _placement(self, mask: int, t: Rank) -> Placement:
        # the tightest threshold at which this very set still closes a ring
        for tt in self._thresholds:
            if tt > t:
                break
            ring = self._ring(mask, tt)
            if ring is not None:
                gpus = tuple(sorted(self._index[p] for p in _bits(mask)))
                return Placement(gpus, tuple(self._index[p] for p in ring), self._ring_bottleneck(ring))
        raise AssertionError("a feasible set must close a ring at its threshold")

    def _ring_bottleneck(self, ring: tuple[int, ...]) -> Link:
        worst: Link | None = None
        hops = list(zip(ring, ring[1:] + ring[:1], strict=True)) if len(ring) > 1 else []
        for p, q in hops:
            if p == q:
                continue
            link = self.topo.links[p][q]
            assert link is not None
            if worst is None or link.rank > worst.rank:
                worst = link
        return worst if worst is not None else SELF


def _exact_cover(subs: list[int], k: int) -> int | None:
    """Whole sub-islands summing to exactly k: fewest pieces, then the smallest ones.

    Taking whole islands leaves the others whole; preferring small ones keeps
    the large islands for large jobs. Bounded: beyond 12 sub-islands we skip it.
    """
    if len(subs) > 12:
        return None
    best: tuple[int, list[int], int] | None = None
    for choice in range(1, 1 << len(subs)):
        picked = [subs[i] for i in range(len(subs)) if choice >> i & 1]
        if sum(c.bit_count() for c in picked) != k:
            continue
        key = (len(picked), sorted(c.bit_count() for c in picked))
        if best is None or key < (best[0], best[1]):
            mask = 0
            for c in picked:
                mask |= c
            best = (key[0], key[1], mask)
    return None if best is None else best[2]


def _lowest(mask: int, k: int) -> int:
    out = 0
    for p in _bits(mask)[:k]:
        out |= 1 << p
    return out


_MISS = object()


@functools.lru_cache(maxsize=4096)
def _placer_cached(topo: Topology) -> Placer:
    return Placer(topo)


def placer_for(topo: Topology) -> Placer:
    """A process-wide cached :class:`Placer` (topologies are hashable values)."""
    return _placer_cached(topo)
