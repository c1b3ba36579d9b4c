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
dynamic programme over (visited set, last GPU), bounded by the subsets of the
component, so up to ``limits.PLACEMENT_EXACT_GPUS`` (16) GPUs it is exact
without a budget (measured worst cases in ``docs/reliability.md``).

Bounded work beyond 16 GPUs. In a larger non-clique component the programme
gets ``limits.PLACEMENT_STEP_BUDGET`` steps per query (about what the worst
16-GPU case needs); past it a greedy search (tightest link first, the same
budget) looks for any k-set that closes a ring at that threshold, and the
answer carries ``exact=False``: a real ring with its true bottleneck, maybe not
the best one. A 24-GPU NVLink mesh asked for 12 GPUs took 80 s before this
bound; the figures after it are in ``docs/reliability.md``. Nothing here
recurses, so no GPU count can raise ``RecursionError``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from labeler.topology import limits
from labeler.topology.bytecache import MISS, ByteCache, Memo
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
    #: False when the search budget ran out on the way (a valid ring, maybe not the tightest)
    exact: bool = True

    @property
    def level(self) -> LinkLevel:
        return self.bottleneck.level


class _OverBudget(Exception):
    """The search used up its step budget (only ever for components above 16 GPUs)."""


class _Budget:
    """Search steps of one query: counted always, enforced only for components above 16 GPUs.

    The exact programme and the greedy fallback each get ``limit`` steps per query,
    shared by every component and threshold the query visits.
    """

    __slots__ = ("greedy_left", "limit", "spent", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.greedy_left = limit
        self.spent = False  # the budget cut a search short: the answer may not be the best

    def take(self, n: int, bounded: bool) -> None:
        self.used += n
        if bounded and self.used > self.limit:
            self.spent = True
            raise _OverBudget


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

    def __init__(
        self,
        topo: Topology,
        *,
        cache_size: int = 1 << 12,
        step_budget: int = limits.PLACEMENT_STEP_BUDGET,
        exact_gpus: int = limits.PLACEMENT_EXACT_GPUS,
    ) -> None:
        self.topo = topo
        self._step_budget = step_budget
        self._exact_gpus = exact_gpus
        #: search steps of the last uncached query (tests and benchmarks read it)
        self.last_steps = 0
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
        # pair weights for the tie-break, folded into one int per pair (see _weight)
        self._wrow: list[list[int]] = [
            [0 if p == q else _fold(rank_of[p][q]) for q in range(n)] for p in range(n)
        ]
        self._cache: Memo[tuple[int, int], Placement | None] = Memo(cache_size)
        self._cache_size = cache_size

    # -- public API ---------------------------------------------------------------
    def cost_bytes(self) -> int:
        """Estimated bytes this placer can hold once its memo is full (for byte-bounded caches).

        Per position: adjacency ints per threshold and a row of folded pair weights;
        per memo entry: key, ``Placement`` and its tuples. Conservative CPython sizes.
        """
        n = len(self._index)
        base = 2_000 + n * n * 44 + len(self._thresholds) * n * 40
        return base + self._cache_size * (300 + 16 * n)

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
        hit = self._cache.get(key, MISS)
        if hit is not MISS:
            return hit  # type: ignore[return-value]
        return self._cache.put(key, self._solve(free_mask, k))

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
        budget = _Budget(self._step_budget)
        try:
            for t in self._thresholds:
                comps = sorted(
                    (c for c in self._components(free_mask, t) if c.bit_count() >= k),
                    key=lambda c: (c.bit_count(), c & -c),
                )
                for comp in comps:
                    if self._is_clique(comp, t):
                        chosen = self._fill(comp, k, t)
                        return self._placement(chosen, self._clique_ring(chosen), budget)
                    found = self._cycle_set(comp, k, t, budget)
                    if found is not None:
                        return self._placement(found[0], found[1], budget)
            return None
        finally:
            self.last_steps = budget.used + (budget.limit - budget.greedy_left)

    def _cycle_set(self, comp: int, k: int, t: Rank, budget: _Budget) -> tuple[int, tuple[int, ...]] | None:
        """The best ring set of a non-clique component: exact, or past the budget the greedy one."""
        bounded = comp.bit_count() > self._exact_gpus
        try:
            chosen = self._best_cycle_set(comp, k, t, budget, bounded)
            if chosen is None:
                return None
            ring = self._ring(chosen, t, budget, bounded)
            if ring is not None:
                return chosen, ring
        except _OverBudget:
            pass
        # past the budget: any ring at this threshold, tightest links first, on the greedy budget
        return self._greedy_ring_set(comp, k, t, budget)

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

    def _best_cycle_set(self, comp: int, k: int, t: Rank, budget: _Budget, bounded: bool) -> int | None:
        """Among k-sets of ``comp`` that close a ring at t, the one with the tightest links."""
        adj = self._adj[t]
        if k == 2:
            pairs = [(1 << p) | (1 << q) for p in _bits(comp) for q in _bits(adj[p] & comp) if q > p]
            return min(pairs, key=lambda m: (self._weight(m), m)) if pairs else None
        found: list[int] = []
        for s in _bits(comp):
            higher = comp & ~((1 << (s + 1)) - 1)
            if higher.bit_count() < k - 1:
                break  # s is the lowest GPU of its ring: too few GPUs above it are left
            # layer: visited mask -> bitmask of possible last vertices (paths from s)
            layer: dict[int, int] = {1 << s: 1 << s}
            for _ in range(k - 1):
                nxt: dict[int, int] = {}
                for visited, lasts in layer.items():
                    reach = 0
                    for last in _bits(lasts):
                        reach |= adj[last]
                    ext = _bits(reach & higher & ~visited)
                    budget.take(1 + len(ext), bounded)  # one step per state and per extension
                    for q in ext:
                        # q is adjacent to some last (reach), so the path extends to it
                        m = visited | (1 << q)
                        nxt[m] = nxt.get(m, 0) | (1 << q)
                layer = nxt
            found.extend(m for m, lasts in layer.items() if lasts & adj[s])
        if not found:
            return None
        budget.take(len(found), bounded)  # the weights of the candidates
        return min(found, key=lambda m: (self._weight(m), m))

    def _weight(self, mask: int) -> int:
        """Sum of pairwise link ranks inside a set: a tie-break favouring tighter sets.

        Each rank (level, -nvlinks) is folded into ``level << 32 | (nvlinks-part)``
        (see :func:`_fold`), so one integer sum orders sets exactly as the pair of
        sums (levels first, then NVLink counts) would.
        """
        ps = _bits(mask)
        w = self._wrow
        total = 0
        for i, p in enumerate(ps):
            row = w[p]
            for q in ps[i + 1 :]:
                total += row[q]
        return total

    def _clique_ring(self, mask: int) -> tuple[int, ...]:
        """Any order is a ring in a clique: ascending positions."""
        return tuple(_bits(mask))

    def _ring(self, mask: int, t: Rank, budget: _Budget, bounded: bool) -> tuple[int, ...] | None:
        """A Hamiltonian cycle through ``mask`` at t or better: iterative DFS, lowest GPU first.

        Dead ends are remembered by (visited, last), so the search never repeats a
        state (at most k·2^(k-1) of them) and never recurses.
        """
        adj = self._adj[t]
        ps = _bits(mask)
        if len(ps) <= 2:
            return tuple(ps)
        start = ps[0]
        dead: set[tuple[int, int]] = set()
        path = [start]
        visited = 1 << start
        stack = [_bits(adj[start] & mask & ~visited)]
        while stack:
            budget.take(1, bounded)
            if visited == mask:
                if adj[path[-1]] >> start & 1:
                    return tuple(path)
                options: list[int] = []
            else:
                options = stack[-1]
            while options and (visited | (1 << options[0]), options[0]) in dead:
                options.pop(0)
            if options:
                q = options.pop(0)
                path.append(q)
                visited |= 1 << q
                stack.append(_bits(adj[q] & mask & ~visited))
                continue
            dead.add((visited, path[-1]))
            stack.pop()
            visited &= ~(1 << path.pop())
            if not path:
                break
        return None

    def _greedy_ring_set(self, comp: int, k: int, t: Rank, budget: _Budget) -> tuple[int, tuple[int, ...]] | None:
        """Past the budget: the first k-GPU ring found by a DFS that tries the tightest link first.

        Bounded by the query's greedy budget (``PLACEMENT_STEP_BUDGET`` steps for all
        components together); ``None`` when no ring was found within it (the caller
        then looks at looser thresholds).
        """
        budget.spent = True
        adj = self._adj[t]
        for start in _bits(comp):
            path = [start]
            visited = 1 << start
            stack = [self._tightest_first(start, adj[start] & comp & ~visited)]
            while stack:
                budget.greedy_left -= 1
                if budget.greedy_left < 0:
                    return None
                if len(path) == k:
                    if adj[path[-1]] >> start & 1:
                        mask = 0
                        for p in path:
                            mask |= 1 << p
                        return mask, tuple(path)
                    options: list[int] = []
                else:
                    options = stack[-1]
                if options:
                    q = options.pop(0)
                    path.append(q)
                    visited |= 1 << q
                    stack.append(self._tightest_first(q, adj[q] & comp & ~visited))
                    budget.greedy_left -= len(stack[-1])  # sorting them is work too
                    continue
                stack.pop()
                visited &= ~(1 << path.pop())
                if not path:
                    break
        return None

    def _tightest_first(self, p: int, candidates: int) -> list[int]:
        row = self._wrow[p]
        return sorted(_bits(candidates), key=lambda q: (row[q], q))

    def _placement(self, mask: int, ring: tuple[int, ...], budget: _Budget) -> Placement:
        # No tighter threshold closes a ring through any k free GPUs (it was tried first), so the
        # ring's worst hop is the threshold it was found at; it is read off the ring itself.
        gpus = tuple(sorted(self._index[p] for p in _bits(mask)))
        return Placement(gpus, tuple(self._index[p] for p in ring), self._ring_bottleneck(ring), not budget.spent)

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


def _fold(rank: Rank | None) -> int:
    """One integer per pair rank for :meth:`Placer._weight`: level above bit 32, NVLink part below.

    An unknown link counts one level worse than SYS. The NVLink part is
    ``1000 - nvlinks`` (≥ 0, < 2**32 summed over any 64-GPU set), so comparing the
    sums compares (Σ levels, Σ -nvlinks) lexicographically.
    """
    level, neg_nv = rank if rank is not None else (int(LinkLevel.SYS) + 1, 0)
    return (level << 32) + 1000 + neg_nv


def _lowest(mask: int, k: int) -> int:
    out = 0
    for p in _bits(mask)[:k]:
        out |= 1 << p
    return out


#: process-wide placers by topology, bounded by estimated bytes (see :meth:`Placer.cost_bytes`)
_PLACERS: ByteCache[Topology, Placer] = ByteCache(max_bytes=64 << 20, max_entries=4096)


def placer_for(topo: Topology) -> Placer:
    """A process-wide cached :class:`Placer` (topologies are hashable values); bounded by bytes."""
    return _PLACERS.get_or_build(topo, Placer, Placer.cost_bytes)
