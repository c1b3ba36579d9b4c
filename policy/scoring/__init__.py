"""Prioritize scoring: strategies (one module each), ONE weights table, one combination rule.

Combination rule (documented in ``docs/extender.md``)::

    score(node) = round_half_up( Σ w[s][kind] · s(node) / Σ w[s][kind] )

over the enabled strategies ``s`` whose weight for the pod's kind is > 0 and
that did not abstain (returned ``None``); 0 when none applies. The result is
an integer in 0..10. Nodes we know nothing about, and nodes with fewer than k
free GPUs, score 0 (:class:`policy.decision.decide.Decider` decides that before
calling strategies). :meth:`Scorer.terms` gives the same sum term by term
(the explanation of a score); :meth:`Scorer.partial`/:meth:`Scorer.finish` are
its fast path, split where decisions are shared: the node-independent terms
once per group of nodes, the per-node ones per node.

Why a weighted mean with level-heavy weights rather than a strict
lexicographic order: the answer must be one integer in 0..10 (the scheduler
multiplies it by ``weight * 10``), so there is no room for a tuple. For a
multi-GPU pod every level step of the table except PIX→PXB is 2 points, × 8 =
16, more than any best-fit difference on ≤ 8-GPU boards ((10 − 3) × 2 = 14),
so a tighter level never scores lower (rounding may tie); between PIX and PXB (≈10 % apart in bandwidth)
a much better fit may win, on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from labeler.topology.errors import ConfigError
from policy.scoring import affinity, fit, level, nic, pack
from policy.scoring.base import ScoreInput, Term, ratio_score, round_half_up
from policy.workload import Kind

__all__ = [
    "DEFAULT_STRATEGIES",
    "STRATEGIES",
    "WEIGHTS",
    "ScoreInput",
    "Scorer",
    "Term",
    "combine",
    "ratio_score",
    "resolve",
    "round_half_up",
]

Strategy = Callable[[ScoreInput], "int | None"]

#: name → strategy module (``score`` function and ``PER_NODE`` flag).
STRATEGIES: dict[str, ModuleType] = {
    "level": level,
    "fit": fit,
    "pack": pack,
    "nic": nic,
    "affinity": affinity,
}

DEFAULT_STRATEGIES: tuple[str, ...] = tuple(STRATEGIES)

#: THE weights table: strategy → weight per workload kind.
#:
#: =========  ======  =========  =====  ===========
#: strategy   single  inference  multi  distributed
#: =========  ======  =========  =====  ===========
#: level         0        5        8        6
#: fit           6        3        2        1
#: pack          4        2        0        0
#: nic           0        0        0        2
#: affinity      0        0        0        2
#: =========  ======  =========  =====  ===========
WEIGHTS: dict[str, dict[Kind, int]] = {
    "level": {Kind.SINGLE: 0, Kind.INFERENCE: 5, Kind.MULTI: 8, Kind.DISTRIBUTED: 6},
    "fit": {Kind.SINGLE: 6, Kind.INFERENCE: 3, Kind.MULTI: 2, Kind.DISTRIBUTED: 1},
    "pack": {Kind.SINGLE: 4, Kind.INFERENCE: 2, Kind.MULTI: 0, Kind.DISTRIBUTED: 0},
    "nic": {Kind.SINGLE: 0, Kind.INFERENCE: 0, Kind.MULTI: 0, Kind.DISTRIBUTED: 2},
    "affinity": {Kind.SINGLE: 0, Kind.INFERENCE: 0, Kind.MULTI: 0, Kind.DISTRIBUTED: 2},
}


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    fn: Strategy
    per_node: bool


class Scorer:
    """The enabled strategies, split into node-independent (memoisable) and per-node ones."""

    def __init__(self, names: Sequence[str]) -> None:
        entries = []
        for name in names:
            mod = STRATEGIES[name]
            entries.append(_Entry(name, mod.score, bool(getattr(mod, "PER_NODE", False))))
        self.names = tuple(names)
        self._shared = tuple(e for e in entries if not e.per_node)
        self._per_node = tuple(e for e in entries if e.per_node)
        self._order = {n: i for i, n in enumerate(self.names)}

    @property
    def has_per_node(self) -> bool:
        return bool(self._per_node)

    def partial(self, inp: ScoreInput) -> tuple[int, int]:
        """``(Σ w·s, Σ w)`` over the node-independent strategies (same for equal evaluations)."""
        return self._sum(self._shared, inp)

    def finish(self, partial: tuple[int, int], inp: ScoreInput | None) -> int:
        """Add the per-node strategies to ``partial`` and apply the combination rule."""
        num, den = partial
        if inp is not None and self._per_node:
            n2, d2 = self._sum(self._per_node, inp)
            num, den = num + n2, den + d2
        if den == 0:
            return 0
        return max(0, min(10, round_half_up(num / den)))

    def score(self, inp: ScoreInput) -> int:
        """The full combination for one node (reference path; decisions use partial/finish)."""
        return self.finish(self.partial(inp), inp)

    def terms(self, inp: ScoreInput, *, per_node: bool = True) -> tuple[Term, ...]:
        """Every enabled strategy's term for ``inp``, in configuration order (``per_node=False``: shared ones only).

        A strategy whose weight for the kind is 0 is listed with its weight and no
        score: it was not asked. ``combine(terms)`` equals :meth:`score`.
        """
        out = []
        for e in (*self._shared, *self._per_node) if per_node else self._shared:
            w = WEIGHTS[e.name][inp.kind]
            s = e.fn(inp) if w > 0 else None
            if s is not None and not 0 <= s <= 10:
                raise AssertionError(f"strategy {e.name} returned {s}, outside 0..10")
            out.append(Term(e.name, w, s, e.per_node))
        return self.sorted_terms(out) if per_node and self._per_node else tuple(out)  # shared: already in order

    def sorted_terms(self, terms: Iterable[Term]) -> tuple[Term, ...]:
        """``terms`` in configuration order."""
        return tuple(sorted(terms, key=lambda t: self._order[t.name]))

    @property
    def per_node_names(self) -> tuple[str, ...]:
        """The enabled strategies that read the node itself (not memoised per group)."""
        return tuple(e.name for e in self._per_node)

    @staticmethod
    def _sum(entries: Sequence[_Entry], inp: ScoreInput) -> tuple[int, int]:
        num = den = 0
        for e in entries:
            w = WEIGHTS[e.name][inp.kind]
            if w <= 0:
                continue
            s = e.fn(inp)
            if s is None:
                continue
            if not 0 <= s <= 10:  # a strategy bug must not swamp the scheduler
                raise AssertionError(f"strategy {e.name} returned {s}, outside 0..10")
            num += w * s
            den += w
        return num, den


def combine(terms: Sequence[Term]) -> int:
    """The combination rule over explicit terms: ``round_half_up(Σ w·s / Σ w)`` of those that scored, 0..10.

    >>> combine([Term("level", 8, 10), Term("fit", 2, 3), Term("pack", 0, None)])
    9
    """
    num = sum(t.weight * t.score for t in terms if t.score is not None and t.weight > 0)
    den = sum(t.weight for t in terms if t.score is not None and t.weight > 0)
    return 0 if den == 0 else max(0, min(10, round_half_up(num / den)))


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
