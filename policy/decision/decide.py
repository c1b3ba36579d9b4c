"""The placement decision for one pod on many nodes: filter verdicts, scores, and why.

The extender's filter and prioritize, the simulator and any explanation call
:class:`Decider`; nothing here knows about HTTP, Kubernetes objects, logs or
metrics. What a node gets is decided **once per group** of nodes with the same
wiring, free set and pod shape (:meth:`Decider.decide`, cached in
:class:`~policy.decision.cache.DecisionCache`) and answered per node from it.

Rules (``docs/extender.md``):

- Only topology is ours. A pod that is not ``required`` (or asks for fewer than
  2 GPUs) passes every node; a ``required`` pod fails a node whose free GPUs hold
  no k-set within its level (``unresolvable`` when not even the empty node's
  would), and passes a node with fewer than k free GPUs (kube-scheduler's
  NodeResourcesFit owns the count).
- Scores are 0..10 by the combination rule of :mod:`policy.scoring`; 0 for a pod
  with no GPUs or ``placement: ignore``, for a node with fewer than k free GPUs,
  and for a node we know nothing about.
- Fail open: unknown nodes (``None``) and nodes not :attr:`~policy.nodes.state.NodeState.OK`
  pass and score 0 without being judged; a node whose data makes our code fail
  passes and scores 0 too, and is reported in ``errors`` (with its twins: the
  group fails together) for the caller to log and count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labeler.topology import busbw
from labeler.topology.busbw import Prediction
from labeler.topology.links import LinkLevel
from policy.decision.cache import DecisionCache, GroupDecision, Shape, group_key
from policy.decision.evaluation import PASS, Evaluation, TopoContext, Verdict
from policy.nodes.facts import NodeFacts
from policy.nodes.state import NodeState
from policy.scoring import WEIGHTS, Scorer, combine
from policy.scoring.base import ScoreInput, Term
from policy.siblings import Siblings
from policy.workload import Intent, Kind, Workload

__all__ = ["BROKEN", "Decider", "Explanation", "FilterResult", "ScoreResult"]

#: the verdict of a node whose evaluation failed: it passes (fail open)
BROKEN = Verdict(reason="internal error")

NodeError = tuple[str, BaseException]


@dataclass(slots=True)
class FilterResult:
    """Filter verdicts for the nodes of one request, in request order.

    ``passed``: indices of the nodes that pass; ``failed`` / ``unresolvable``: node name →
    reason; ``errors``: nodes whose data broke our code (they pass), for logs and metrics.
    """

    passed: list[int] | range
    failed: dict[str, str] = field(default_factory=dict)
    unresolvable: dict[str, str] = field(default_factory=dict)
    errors: list[NodeError] = field(default_factory=list)


@dataclass(slots=True)
class ScoreResult:
    """0..10 per node, in request order; ``errors``: nodes whose data broke our code (they score 0)."""

    scores: list[int]
    errors: list[NodeError] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why one node gets its verdict and score for one pod.

    ``terms``: every enabled strategy with its weight and 0..10 (``None``: abstained or
    not asked); ``gpus``/``ring``/``level``: the best free k-set the score is about (GPU
    indices; empty when none); ``bandwidth``: its predicted NCCL ring bus bandwidth
    (:func:`labeler.topology.busbw.predict`, multi-node ranks capped by the network path).
    """

    node: str
    state: NodeState
    problem: str | None
    gpus_requested: int
    verdict: Verdict
    score: int
    terms: tuple[Term, ...] = ()
    gpus: tuple[int, ...] = ()
    ring: tuple[int, ...] = ()
    level: LinkLevel | None = None
    bandwidth: Prediction | None = None

    @property
    def busbw_gbps(self) -> float | None:
        return None if self.bandwidth is None else self.bandwidth.gbps

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (a debug endpoint, a log line, ``--json``)."""
        return {
            "node": self.node, "state": self.state.value, "problem": self.problem, "k": self.gpus_requested,
            "verdict": self.verdict.as_dict(), "score": self.score, "terms": [t.as_dict() for t in self.terms],
            "gpus": list(self.gpus), "ring": list(self.ring), "level": None if self.level is None else self.level.slug,
            "busbw_gbps": self.busbw_gbps,
            "bandwidth": None if self.bandwidth is None else self.bandwidth.as_dict(),
        }


class Decider:
    """Filter verdicts and scores for pods, decided once per group and cached (thread-safe)."""

    #: per-node scores kept across requests (see :meth:`node_score`); cleared whole when full
    MAX_NODE_SCORES = 1 << 16

    def __init__(self, scorer: Scorer, *, cache: DecisionCache | None = None) -> None:
        self.scorer = scorer
        self.cache = cache if cache is not None else DecisionCache()
        self._node_scores: dict[Any, int] = {}

    # -- one group ----------------------------------------------------------------------
    def context(self, f: NodeFacts) -> TopoContext:
        """The per-wiring helpers of an OK node (placer, GPUDirect mask)."""
        assert f.topo is not None
        return self.cache.contexts.get(f.topo_id, f.topo)

    def decide(self, f: NodeFacts, shape: Shape) -> GroupDecision:
        """The decision every node with ``f``'s wiring and free set gets for ``shape`` (cached)."""
        hit = self.cache.get(f.key + shape.key)
        return hit if hit is not None else self._fill(f, shape)

    def _fill(self, f: NodeFacts, shape: Shape) -> GroupDecision:
        return self.cache.put(group_key(f.topo_id, f.free_mask, shape), self._decide(f, shape))

    def _decide(self, f: NodeFacts, shape: Shape) -> GroupDecision:
        ctx = self.context(f)
        k = shape.gpus
        ev = ctx.evaluate(f.free_mask, k)
        verdict = PASS
        if shape.required:
            required = shape.max_level if shape.max_level is not None else ctx.empty_best_level(k)
            verdict = ctx.verdict(f.free_mask, k, required, ev)
        if ev.placement is None:
            return GroupDecision(ev, verdict, (), None, 0)
        terms = self.scorer.terms(ScoreInput(shape.kind, k, ev), per_node=False)
        num = sum(t.weight * t.score for t in terms if t.score is not None and t.weight > 0)
        den = sum(t.weight for t in terms if t.score is not None and t.weight > 0)
        partial = (num, den)
        return GroupDecision(ev, verdict, terms, partial, self.scorer.finish(partial, None))

    # -- many nodes ---------------------------------------------------------------------
    @staticmethod
    def judges(shape: Shape) -> bool:
        """Can the filter drop a node for this shape? Only ``required`` (≥ 2 GPUs) can; everything else passes."""
        return shape.required

    @staticmethod
    def scores_pod(w: Workload) -> bool:
        """Does prioritize score ``w`` at all? A pod with no GPUs or ``placement: ignore`` scores 0 everywhere."""
        return w.gpus >= 1 and w.intent is not Intent.IGNORE

    def filter(self, w: Workload, facts: Sequence[NodeFacts | None]) -> FilterResult:
        """Which nodes pass for ``w`` (see the module docstring for the rules)."""
        shape = Shape.of(w)
        if not self.judges(shape):
            return FilterResult(range(len(facts)))  # only `required` can drop a node
        passed: list[int] = []
        failed: dict[str, str] = {}
        unresolvable: dict[str, str] = {}
        errors: list[NodeError] = []
        append = passed.append
        local: dict[tuple[int, int], Verdict] = {}  # per request: equal keys, equal verdicts
        get, skey = self.cache.get, shape.key  # decide(), inlined: one call per group on the hot path
        ok = NodeState.OK
        for i, f in enumerate(facts):
            if f is None or f.state is not ok:
                append(i)
                continue
            v = local.get(f.key)
            if v is None:
                try:
                    d = get(f.key + skey)
                    v = local[f.key] = (d if d is not None else self._fill(f, shape)).verdict
                except Exception as err:  # this node's data broke our code: it (and its twins) fail open
                    errors.append((f.name, err))
                    v = local[f.key] = BROKEN
            if v.passes:
                append(i)
            elif v.unresolvable:
                unresolvable[f.name] = v.reason or "topology constraint cannot be met"
            else:
                failed[f.name] = v.reason or "topology constraint not met with the free GPUs"
        return FilterResult(passed, failed, unresolvable, errors)

    def needs_siblings(self, w: Workload) -> bool:
        """Does scoring ``w`` read where its job's other ranks run (fetch them only then)?"""
        return (self.scorer.has_per_node and w.kind is Kind.DISTRIBUTED and w.gpus >= 1
                and w.intent is not Intent.IGNORE)

    def scores(self, w: Workload, facts: Sequence[NodeFacts | None], siblings: Siblings | None = None) -> ScoreResult:
        """0..10 per node for ``w``; ``siblings`` for a multi-node rank (see :meth:`needs_siblings`)."""
        n = len(facts)
        if not self.scores_pod(w):
            return ScoreResult([0] * n)
        shape = Shape.of(w)
        per_node = siblings is not None and self.scorer.has_per_node
        scores: list[int] = []
        errors: list[NodeError] = []
        append = scores.append
        local: dict[Any, int] = {}  # per request: equal keys, equal scores
        node_memo: dict[Any, int] = {}  # with siblings: (partial, locality, class) -> score (see node_score)
        get, skey = self.cache.get, shape.key  # decide(), inlined: one call per group on the hot path
        ok = NodeState.OK
        for f in facts:
            if f is None or f.state is not ok:
                append(0)
                continue
            key = (f.key, f.locality, f.topology_class) if per_node else f.key
            s = local.get(key)
            if s is None:
                try:
                    d = get(f.key + skey)
                    if d is None:
                        d = self._fill(f, shape)
                    if per_node:
                        assert siblings is not None
                        s = self.node_score(d, shape, f.locality, f.topology_class, siblings, node_memo)
                    else:
                        s = d.score if d.partial is not None else 0
                except Exception as err:  # this node's data broke our code: it (and its twins) score 0
                    errors.append((f.name, err))
                    s = 0
                local[key] = s
            append(s)
        return ScoreResult(scores, errors)

    def node_score(self, d: GroupDecision, shape: Shape, locality: tuple[str | None, ...],
                   topology_class: str | None, siblings: Siblings, memo: dict[Any, int] | None = None) -> int:
        """The score of a node of ``d``'s group with this locality, for a rank whose job has ``siblings``.

        Per-node strategies read the node's locality, class and the siblings, never the
        evaluation (:mod:`policy.scoring.base`), so the score depends on ``shape``, ``d.partial``,
        ``(locality, topology_class)`` and ``siblings`` only: kept per that key, across requests
        (the next rank of the same job usually sees the same siblings' summary), a few dozen
        entries for thousands of nodes. ``memo``: an extra per-request memo (kept for callers that
        pass one). 0 when fewer than k GPUs are free (``d.partial`` None).
        """
        partial = d.partial
        if partial is None:
            return 0
        key = (shape.key, partial, locality, topology_class, siblings)
        hit = self._node_scores.get(key)
        if hit is not None:
            return hit
        inp = ScoreInput(shape.kind, shape.gpus, d.evaluation, locality, topology_class, siblings)
        s = self.scorer.finish(partial, inp)
        if len(self._node_scores) >= self.MAX_NODE_SCORES:
            self._node_scores.clear()
        self._node_scores[key] = s
        if memo is not None:
            memo[key] = s
        return s

    # -- one node, explained ------------------------------------------------------------
    def explain(self, w: Workload, f: NodeFacts, siblings: Siblings | None = None) -> Explanation:
        """The verdict and score :meth:`filter` and :meth:`scores` give ``f`` for ``w``, term by term.

        Raises what :meth:`decide` raises for a node whose data breaks our code (the
        batch calls report it in ``errors`` instead).
        """
        if f.state is not NodeState.OK:
            return Explanation(f.name, f.state, f.problem, w.gpus, PASS, 0)
        if not self.scores_pod(w):
            return Explanation(f.name, f.state, None, w.gpus, PASS, 0)
        shape = Shape.of(w)
        d = self.decide(f, shape)
        ev: Evaluation = d.evaluation
        if ev.placement is None:
            return Explanation(f.name, f.state, None, w.gpus, d.verdict, 0)
        terms, score = d.terms, d.score
        if siblings is not None and self.scorer.has_per_node:
            inp = ScoreInput(shape.kind, shape.gpus, ev, f.locality, f.topology_class, siblings)
            terms = self.scorer.terms(inp)
            score = combine(terms)
        elif self.scorer.has_per_node:  # scores() does not ask per-node strategies without siblings
            terms = self.scorer.sorted_terms(
                (*terms, *(Term(n, WEIGHTS[n][shape.kind], None, True) for n in self.scorer.per_node_names)))
        assert f.topo is not None
        multi_node = w.kind is Kind.DISTRIBUTED
        bandwidth = busbw.predict(f.topo, ev.placement.gpus, multi_node=multi_node)
        return Explanation(f.name, f.state, None, w.gpus, d.verdict, score, terms, ev.placement.gpus,
                           ev.placement.ring, ev.level, bandwidth)
