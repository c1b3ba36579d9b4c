"""The input every scoring strategy receives, a term of a score, and the shared rounding rule.

A strategy is a small pure function ``(ScoreInput) -> int | None``: an integer
in 0..10 (10 = best for this pod), or ``None`` to abstain when it has nothing
to say (e.g. the link level of a 1-GPU pod, or job affinity without siblings).
Abstaining keeps a constant from compressing the other strategies' range.

Node-independent strategies (``PER_NODE = False``) may read only ``kind``,
``gpus`` and ``evaluation``: their result is decided once per group of nodes
with the same wiring and free GPUs (:mod:`policy.decision`). Per-node strategies
(``PER_NODE = True``) may read ``kind``, ``gpus``, ``locality``, ``topology_class``
and ``siblings``, and nothing else: not the ``evaluation``, so that a node's score is a
function of its group's node-independent part and its locality alone, memoised per
request by ``(partial, locality, topology_class)``
(:meth:`policy.decision.decide.Decider.node_score`; a 5,000-node request then finishes
a few dozen scores instead of one per node).
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.decision.evaluation import Evaluation
from policy.siblings import Siblings
from policy.workload import Kind

__all__ = ["ScoreInput", "Term", "ratio_score", "round_half_up"]


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` is half-to-even)."""
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def ratio_score(num: float, den: float) -> int:
    """``round_half_up(10 * num / den)`` clamped to 0..10; 0 when ``den`` is 0."""
    if den <= 0:
        return 0
    return max(0, min(10, round_half_up(10 * num / den)))


@dataclass(frozen=True, slots=True)
class ScoreInput:
    kind: Kind
    gpus: int
    evaluation: Evaluation
    locality: tuple[str | None, ...] = ()  # the node's values of the configured locality label keys
    topology_class: str | None = None  # the node's topology-class label
    siblings: Siblings | None = None  # where the job's other ranks run (cached mode, multi-node ranks)


@dataclass(frozen=True, slots=True)
class Term:
    """One strategy's part of a score: its weight for the pod's kind and its 0..10 (``None``: abstained)."""

    name: str
    weight: int
    score: int | None
    per_node: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"strategy": self.name, "weight": self.weight, "score": self.score}
