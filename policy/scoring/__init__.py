"""Prioritize scoring: the placement objective, built from small pure strategies and ONE weights table.

The rule for each kind of pod (``docs/extender.md``, "Prioritize"; constants in
:mod:`.weights`, one module per strategy):

==================  ===================================================================================
pod                 score of node n among the request's candidates (0..10, clamped)
==================  ===================================================================================
k ≥ 2, one node     ``10 − bandwidth.drop(V_n, V*) − island.penalty``; ``V_n`` = predicted NCCL busbw
                    of n's best free k-set (chosen by that bandwidth), ``V*`` = the best candidate's
rank (k ≥ 2)        the same with ``V_n = network.rank_value(B, N, known)`` = √(N'·B), and job
                    affinity's penalty added (island + affinity ≤ 3)
k = 1               ``10 − free_value.drop(c_n, c_min)``, ``c`` = log2 of the best free pair's busbw
no whole GPU        ``allocated.score``: 10 × the node's allocated share of GPUs (absolute)
==================  ===================================================================================

Nodes we know nothing about, nodes failing open, and nodes with fewer than k free GPUs score
0 and take no part in the reference (:class:`policy.decision.decide.Decider` decides that).

Why relative to the request's best candidate: the extender answers 0..10 and kube-scheduler
multiplies by ``weight × 10``; a log-scale distance from the best keeps every ×2 of bandwidth
a fixed 3 points wherever the candidates sit (6 GB/s PCIe boxes or 700 GB/s GB200 trays), and a
node ×10 slower than the best scores 0. The per-group part (:class:`GroupValue`) is absolute and
cached with the group's decision; the request's part (:meth:`Scorer.reference`, then
:meth:`Scorer.finish` per group) is a pass over the handful of distinct groups. ``--strategy``
switches terms off by name (:data:`STRATEGIES`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from types import ModuleType

from labeler.topology.errors import ConfigError
from policy.decision.evaluation import TopoContext
from policy.scoring import affinity, allocated, bandwidth, free_value, island, network
from policy.scoring.base import MAX_SCORE, BestSet, GroupValue, Rule, Term, add_up, round_half_up
from policy.scoring.weights import PENALTY_CAP, WEIGHTS, Weight
from policy.siblings import Siblings
from policy.workload import Kind

__all__ = [
    "DEFAULT_STRATEGIES",
    "MAX_SCORE",
    "STRATEGIES",
    "WEIGHTS",
    "BestSet",
    "GroupValue",
    "Rule",
    "Scorer",
    "Term",
    "Weight",
    "combine",
    "resolve",
    "round_half_up",
]

#: name → strategy module; each can be switched off with ``--strategy`` (all on by default)
STRATEGIES: dict[str, ModuleType] = {
    "bandwidth": bandwidth,
    "network": network,
    "island": island,
    "affinity": affinity,
    "free_value": free_value,
    "allocated": allocated,
}

DEFAULT_STRATEGIES: tuple[str, ...] = tuple(STRATEGIES)

Detail = tuple[tuple[str, float | int | bool | str | None], ...]


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


class Scorer:
    """The objective with the enabled strategies: per-group values, the request's reference, the scores."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = tuple(names)
        self.enabled = frozenset(names)

    # -- which rule ---------------------------------------------------------------------------
    def rule(self, gpus: int, kind: Kind) -> Rule:
        """The formula for a pod of ``gpus`` whole GPUs and this kind (NONE: its strategy is off)."""
        if gpus < 1:
            return Rule.NONGPU if "allocated" in self.enabled else Rule.NONE
        if gpus == 1:
            return Rule.SINGLE if "free_value" in self.enabled else Rule.NONE
        return Rule.RANK if kind is Kind.DISTRIBUTED and "network" in self.enabled else Rule.MULTI

    def uses_siblings(self, rule: Rule) -> bool:
        """Does a node's score read where the job's other ranks run (job affinity)?"""
        return rule is Rule.RANK and "affinity" in self.enabled

    # -- per group (cached with the group's decision) ------------------------------------------
    def group(self, rule: Rule, gpus: int, ctx: TopoContext, free_mask: int) -> GroupValue:
        """The node-independent part of a score for every node with this wiring and free set."""
        total, free = ctx.total, free_mask.bit_count()
        if rule is Rule.NONE:
            return GroupValue(rule, None, free=free, total=total)
        if rule is Rule.NONGPU:
            return GroupValue(rule, float(allocated.score(free, total)), free=free, total=total)
        if rule is Rule.SINGLE:
            if free < 1:
                return GroupValue(rule, None, free=free, total=total)
            pair = best_set(ctx, free_mask, 2) if free >= 2 else None
            return GroupValue(rule, free_value.value(None if pair is None else pair.ring_gbps), best=pair,
                              free=free, total=total)
        best = best_set(ctx, free_mask, gpus, rank=rule is Rule.RANK)
        if best is None:
            return GroupValue(rule, None, free=free, total=total)
        pen = island.penalty(free, total, gpus) if "island" in self.enabled else 0
        return GroupValue(rule, best.value, pen, best, free, total)

    # -- per request ---------------------------------------------------------------------------
    @staticmethod
    def reference(rule: Rule, values: Iterable[float | None]) -> float | None:
        """The request's reference over its judged candidates: ``V*`` (the highest V) or ``c_min`` (the lowest c)."""
        vals = [v for v in values if v is not None]
        if not vals or rule in (Rule.NONE, Rule.NONGPU):
            return None
        return max(vals) if rule in (Rule.MULTI, Rule.RANK) else min(vals)

    def finish(self, g: GroupValue, ref: float | None, node_penalty: int = 0) -> int:
        """The 0..10 of a node of group ``g`` in a request whose reference is ``ref`` (``node_penalty``: affinity)."""
        v = g.value
        if v is None or g.rule is Rule.NONE:
            return 0
        if g.rule is Rule.NONGPU:
            return int(v)
        top = v if ref is None else ref
        if g.rule is Rule.SINGLE:
            return add_up(MAX_SCORE, (-free_value.drop(v, top),))
        d = bandwidth.drop(v, top) if "bandwidth" in self.enabled else 0
        return add_up(MAX_SCORE, (-d, -min(PENALTY_CAP, g.penalty + node_penalty)))

    def node_penalty(self, rule: Rule, locality: tuple[str | None, ...], topology_class: str | None,
                     siblings: Siblings | None) -> int:
        """The per-node part (job affinity, ranks only): points off before the penalty cap."""
        if not self.uses_siblings(rule):
            return 0
        return affinity.penalty(locality, topology_class, siblings)

    def unmanaged(self, rule: Rule) -> int:
        """The score of a node gputopo does not manage (not ours): welcome to pods without GPUs, else 0."""
        return allocated.NOT_OURS if rule is Rule.NONGPU else 0

    # -- explanations ----------------------------------------------------------------------------
    @staticmethod
    def base(rule: Rule) -> int:
        """What the terms' points are added to: 10, or 0 for pods without GPUs (an absolute score)."""
        return 0 if rule in (Rule.NONGPU, Rule.NONE) else MAX_SCORE

    def terms(self, g: GroupValue, ref: float | None, *, gpus: int, node_penalty: int = 0,
              affinity_detail: Detail | None = None) -> tuple[Term, ...]:
        """Each strategy's part of :meth:`finish`'s score: ``combine(terms, base(rule)) == finish(...)``.

        ``affinity_detail``: the job affinity's numbers when the job has placed siblings (None: no
        affinity term, as :meth:`finish` then adds none).
        """
        v = g.value
        if v is None or g.rule is Rule.NONE:
            return ()
        if g.rule is Rule.NONGPU:
            return (Term("allocated", int(v), (("allocated_gpus", g.total - g.free), ("gpus", g.total))),)
        top = v if ref is None else ref
        if g.rule is Rule.SINGLE:
            pair = g.best
            return (Term("free_value", -free_value.drop(v, top), (
                ("best_pair", None if pair is None else "+".join(map(str, pair.gpus))),
                ("pair_gbps", None if pair is None else pair.ring_gbps), ("c", _r(v)), ("c_min", _r(top)))),)
        best = g.best
        assert best is not None
        bw = Term("bandwidth", -(bandwidth.drop(v, top) if "bandwidth" in self.enabled else 0), (
            ("value_gbps", _r(v)), ("best_gbps", _r(top)), ("x2_below_best", _r(bandwidth.x2_steps(v, top))),
            ("ring_gbps", best.ring_gbps),
            *((("network_gbps", best.network_gbps), ("network_known", best.network_known),
               ("network_counted_gbps", network.counted(best.network_gbps or 0.0, best.network_known)))
              if g.rule is Rule.RANK else ())))
        capped = min(PENALTY_CAP, g.penalty + node_penalty)
        isl = Term("island", -min(g.penalty, capped), (("free", g.free), ("gpus", g.total), ("k", gpus)))
        out = [bw, isl]
        if self.uses_siblings(g.rule) and affinity_detail is not None:
            out.append(Term("affinity", -(capped - min(g.penalty, capped)), (("penalty", node_penalty),
                                                                              *affinity_detail)))
        return tuple(out)


def best_set(ctx: TopoContext, free_mask: int, k: int, *, rank: bool = False) -> BestSet | None:
    """The free k-set of a node with the highest predicted bandwidth (for a rank: ``√(N'·B)``); None if < k free.

    Ties: the higher ring busbw, then the lower bitmask. Memoised per wiring
    (:meth:`TopoContext.search`).
    """
    model = ctx.model

    def value(mask: int) -> tuple[float, float]:
        q = model.predict_mask(mask)
        ring = 0.0 if q is None else q.gbps
        if not rank:
            return ring, ring
        p = model.predict_mask(mask, multi_node=True)
        if p is None or p.network is None:
            return 0.0, ring
        return network.rank_value(ring, p.gbps, not p.network.assumed), ring

    found = ctx.search(free_mask, k, "rank" if rank else "ring", value)
    if found is None:
        return None
    gpus = tuple(g.index for p, g in enumerate(ctx.topo.gpus) if found.mask >> p & 1)
    value_, ring = found.value
    if not rank:
        return BestSet(found.mask, gpus, value_, ring, exhaustive=found.exhaustive)
    p = model.predict_mask(found.mask, multi_node=True)
    known = p is not None and p.network is not None and not p.network.assumed
    return BestSet(found.mask, gpus, value_, ring, None if p is None else p.gbps, known, found.exhaustive)


def combine(terms: Iterable[Term], base: int = MAX_SCORE) -> int:
    """The score the terms explain: ``clamp(base + Σ points)``.

    >>> combine([Term("bandwidth", -3), Term("island", -1)])
    6
    """
    return add_up(base, (t.points for t in terms))


def resolve(names: Sequence[str]) -> Scorer:
    """Resolve strategy names at start-up; unknown or duplicate names are a :class:`ConfigError`."""
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown:
        raise ConfigError(f"unknown scoring strategy {', '.join(unknown)}; known: {', '.join(STRATEGIES)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate scoring strategy in {list(names)}")
    if not names:
        raise ConfigError("at least one scoring strategy is needed")
    return Scorer(names)
