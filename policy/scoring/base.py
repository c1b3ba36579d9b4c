"""The records a score is made of: which rule applies, the per-group value, the set scored, a term, the rounding.

A score is built in two steps (``docs/extender.md``, "Prioritize"):

1. **per group** of nodes with the same wiring and free GPUs (cached with the group's
   decision, :mod:`policy.decision.cache`): :class:`GroupValue`, an absolute figure (the
   predicted bandwidth ``V`` of the best free set for a multi-GPU pod, the value ``c`` of
   the best free pair for a 1-GPU pod, the allocated share for a pod without whole GPUs)
   and the island penalty;
2. **per request**: the reference over the request's candidates (the best ``V``, the least
   ``c``) and, from it, each group's 0..10: a cheap pass over the handful of distinct
   groups (:meth:`policy.scoring.Scorer.finish`).

Every strategy is a small pure function of numbers (its own module); :class:`Term` is one
strategy's part of a score, for explanations.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["EPS", "MAX_SCORE", "BestSet", "GroupValue", "Rule", "Term", "add_up", "clamp", "round_half_up"]

#: exact halves must round up whatever the float noise says (3·log2(√8) = 4.5 computes as 4.499999…)
EPS = 1e-9


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` is half-to-even), tolerant of float noise.

    >>> round_half_up(2.5), round_half_up(3 * math.log2(math.sqrt(8))), round_half_up(2.49)
    (3, 5, 2)
    """
    return math.floor(x + 0.5 + EPS)


#: the top of an extender's score range: kube-scheduler's ``extenderv1.MaxExtenderPriority`` (it multiplies a
#: score by ``weight × MaxNodeScore / MaxExtenderPriority``); the one definition, used by the extender's wire
#: code and the simulator's scheduler model
MAX_SCORE = 10


def clamp(score: int) -> int:
    """Into the extender's range 0..:data:`MAX_SCORE`."""
    return max(0, min(MAX_SCORE, score))


def add_up(base: int, points: Iterable[int]) -> int:
    """THE combination rule: a score is ``clamp(base + Σ points)``, each term adding its (negative) points.

    Used by :meth:`policy.scoring.Scorer.finish` (the answer) and :func:`policy.scoring.combine`
    (the explanation), so the two cannot disagree.

    >>> add_up(10, (-3, -2)), add_up(10, (-24,)), add_up(0, (5,))
    (5, 0, 5)
    """
    return clamp(base + sum(points))


class Rule(enum.Enum):
    """Which formula scores a pod (``docs/extender.md``, "Prioritize")."""

    MULTI = "multi-gpu"  # k >= 2 on one node: predicted ring bandwidth of the best free set
    RANK = "rank"  # k >= 2, a rank of a multi-node job: the ring and its network path
    SINGLE = "one-gpu"  # k = 1: the value of the free GPUs it would break into
    NONGPU = "no-whole-gpu"  # CPU-only and GPU-share pods: the node's allocated share of GPUs
    NONE = "none"  # not scored (placement: ignore): 0 everywhere


@dataclass(frozen=True, slots=True)
class BestSet:
    """The free GPU set a score is about: the one with the highest predicted bandwidth.

    ``value``: what the search maximised: the ring busbw ``B`` (``ring_gbps``), or for a rank
    ``√(N'·B)``; ``network_gbps``: ``N``, the ring capped by the node's network path (ranks);
    ``network_known``: every fact of that path was reported (``N' = N``; else the weights
    table's unknown network counts). ``exhaustive``: every k-subset was tried.
    """

    mask: int
    gpus: tuple[int, ...]
    value: float
    ring_gbps: float
    network_gbps: float | None = None
    network_known: bool = False
    exhaustive: bool = True


@dataclass(frozen=True, slots=True)
class GroupValue:
    """The node-independent part of a score, one per group of nodes (cached with the group's decision).

    ``value``: ``V`` (multi-GPU pods, ranks), ``c`` (1-GPU pods) or the score itself (pods
    without whole GPUs); ``None`` when the node cannot be judged for the pod (fewer than k
    free GPUs): it scores 0 and takes no part in the request's reference. ``penalty``: the
    island penalty (multi-GPU pods, ranks). ``best``: the set scored (1-GPU pods: the best
    free pair, when there is one). ``free``/``total``: the node's free and all GPUs.
    """

    rule: Rule
    value: float | None
    penalty: int = 0
    best: BestSet | None = None
    free: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class Term:
    """One strategy's part of a score: ``points`` added to the rule's base (10; 0 for pods without GPUs).

    ``detail``: the numbers behind it (GB/s, counts), for explanations. The score is
    ``clamp(base + Σ points)`` (:func:`policy.scoring.combine`).
    """

    name: str
    points: int
    detail: tuple[tuple[str, float | int | bool | str | None], ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"term": self.name, "points": self.points, **dict(self.detail)}
