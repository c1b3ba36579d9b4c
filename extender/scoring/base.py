"""The input every scoring strategy receives, and the shared rounding rule.

A strategy is a small pure function ``(ScoreInput) -> int | None``: an integer
in 0..10 (10 = best for this pod), or ``None`` to abstain when it has nothing
to say (e.g. the link level of a 1-GPU pod, or job affinity without siblings).
Abstaining keeps a constant from compressing the other strategies' range.
"""

from __future__ import annotations

from dataclasses import dataclass

from extender.evaluate import Evaluation
from policy.nodes.facts import NodeFacts
from policy.workload import Kind

__all__ = ["ScoreInput", "Siblings", "ratio_score", "round_half_up"]


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` is half-to-even)."""
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def ratio_score(num: float, den: float) -> int:
    """``round_half_up(10 * num / den)`` clamped to 0..10; 0 when ``den`` is 0."""
    if den <= 0:
        return 0
    return max(0, min(10, round_half_up(10 * num / den)))


@dataclass(frozen=True, slots=True)
class Siblings:
    """Where the already-placed pods of the same job run (cached mode only).

    ``locality``: for each configured locality label key, the most common
    value among the sibling pods' nodes (``None`` when none of them has it).
    """

    nodes: frozenset[str]
    locality: tuple[str | None, ...]
    topology_class: str | None


@dataclass(frozen=True, slots=True)
class ScoreInput:
    kind: Kind
    gpus: int
    evaluation: Evaluation
    node: NodeFacts
    siblings: Siblings | None
