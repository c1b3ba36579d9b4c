"""The placement decision for one pod on many nodes: filter verdicts, scores, and why.

The extender's filter and prioritize, the simulator and any explanation call
:class:`Decider`; nothing here knows about HTTP, Kubernetes objects, logs or
metrics. What a node offers is decided **once per group** of nodes with the same
wiring, free set and pod shape (:meth:`Decider.decide`, cached in
:class:`~policy.decision.cache.DecisionCache`); a score is that group's value
measured against the request's best candidate (:mod:`policy.scoring`), so
:meth:`Decider.scores` makes one pass over the nodes for their groups, takes the
reference over the distinct groups, and answers each group, then each node.

Rules (``docs/extender.md``):

- Only topology is ours. A pod that is not ``required`` (or asks for fewer than
  2 GPUs) passes every node; a ``required`` pod fails a node whose free GPUs hold
  no k-set within its level (``unresolvable`` when not even the empty node's
  would), and passes a node with fewer than k free GPUs (kube-scheduler's
  NodeResourcesFit owns the count).
- Scores are 0..10 by the objective of :mod:`policy.scoring`; 0 for a pod with
  ``placement: ignore``, for a node with fewer than k free GPUs, and for a node we
  know nothing about. A pod without whole GPUs is scored by the node's allocated
  share of GPUs (a node gputopo does not manage counts as fully allocated).
- Fail open: unknown nodes (``None``) and nodes not :attr:`~policy.nodes.state.NodeState.OK`
  pass and score 0 without being judged, and take no part in the request's
  reference; a node whose data makes our code fail passes and scores 0 too, and is
  reported in ``errors`` (with its twins: the group fails together) for the caller
  to log and count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from labeler.topology.busbw import Prediction
from labeler.topology.bytecache import Memo
from labeler.topology.links import LinkLevel
from policy.decision.cache import DecisionCache, GroupDecision, Shape, group_key
from policy.decision.evaluation import PASS, TopoContext, Verdict
from policy.nodes.facts import NodeFacts
from policy.nodes.state import NodeState
from policy.scoring import Rule, Scorer, affinity
from policy.scoring.base import Term
from policy.siblings import Siblings
from policy.workload import Intent, Workload

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
    """0..10 per node, in request order; ``errors``: nodes whose data broke our code (they score 0).

    ``rule``: the formula that scored the pod; ``reference``: the request's best value (``V*``,
    GB/s) or least pair value (``c_min``) over the judged candidates, ``None`` when there is none.
    """

    scores: list[int]
    errors: list[NodeError] = field(default_factory=list)
    rule: Rule = Rule.NONE
    reference: float | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why one node gets its verdict and score for one pod, in one request.

    ``terms``: each strategy's points (:class:`~policy.scoring.base.Term`, with the numbers
    behind it); the score is ``clamp(base + Σ points)``. ``gpus``/``ring``/``level``: the free
    set the score is about (chosen by predicted bandwidth; for a 1-GPU pod the best free pair),
    its ring and its worst link level; ``bandwidth``: its predicted NCCL ring bus bandwidth
    (:func:`labeler.topology.busbw.predict`, for a multi-node rank capped by the network path).
    ``value``/``reference``: the node's value and the request's reference it was measured against.
    """

    node: str
    state: NodeState
    problem: str | None
    gpus_requested: int
    verdict: Verdict
    score: int
    rule: Rule = Rule.NONE
    terms: tuple[Term, ...] = ()
    gpus: tuple[int, ...] = ()
    ring: tuple[int, ...] = ()
    level: LinkLevel | None = None
    bandwidth: Prediction | None = None
    value: float | None = None
    reference: float | None = None

    @property
    def busbw_gbps(self) -> float | None:
        return None if self.bandwidth is None else self.bandwidth.gbps

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (a debug endpoint, a log line, ``--json``)."""
        return {
            "node": self.node, "state": self.state.value, "problem": self.problem, "k": self.gpus_requested,
            "verdict": self.verdict.as_dict(), "score": self.score, "rule": self.rule.value,
            "value": None if self.value is None else round(self.value, 3),
            "reference": None if self.reference is None else round(self.reference, 3),
            "terms": [t.as_dict() for t in self.terms],
            "gpus": list(self.gpus), "ring": list(self.ring), "level": None if self.level is None else self.level.slug,
            "busbw_gbps": self.busbw_gbps,
            "bandwidth": None if self.bandwidth is None else self.bandwidth.as_dict(),
        }


class Decider:
    """Filter verdicts and scores for pods, decided once per group and cached (thread-safe)."""

    #: job-affinity penalties kept across requests (see :meth:`node_score`); cleared whole when full
    MAX_NODE_PENALTIES = 1 << 16

    def __init__(self, scorer: Scorer, *, cache: DecisionCache | None = None) -> None:
        self.scorer = scorer
        self.cache = cache if cache is not None else DecisionCache()
        self._penalties: Memo[tuple[Any, ...], int] = Memo(self.MAX_NODE_PENALTIES)

    # -- one group ----------------------------------------------------------------------
    def context(self, f: NodeFacts) -> TopoContext:
        """The per-wiring helpers of an OK node (placer, bandwidth model, set searches)."""
        assert f.topo is not None
        return self.cache.contexts.get(f.topo_id, f.topo)

    def rule(self, shape: Shape) -> Rule:
        return self.scorer.rule(shape.gpus, shape.kind)

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
        return GroupDecision(ev, verdict, self.scorer.group(self.rule(shape), k, ctx, f.free_mask))

    # -- many nodes ---------------------------------------------------------------------
    @staticmethod
    def judges(shape: Shape) -> bool:
        """Can the filter drop a node for this shape? Only ``required`` (≥ 2 GPUs) can; everything else passes."""
        return shape.required

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

    @staticmethod
    def scores_pod(w: Workload) -> bool:
        """Does prioritize score ``w`` at all? A pod with ``placement: ignore`` scores 0 everywhere."""
        return w.intent is not Intent.IGNORE

    def needs_siblings(self, w: Workload) -> bool:
        """Does scoring ``w`` read where its job's other ranks run (fetch them only then)?"""
        return self.scores_pod(w) and self.scorer.uses_siblings(self.scorer.rule(w.gpus, w.kind))

    def groups(self, shape: Shape, facts: Sequence[NodeFacts | None]
               ) -> tuple[dict[tuple[int, int], GroupDecision | None], list[NodeError]]:
        """Pass 1 of a request: the decision of each distinct judged group (None: it broke our code)."""
        decisions: dict[tuple[int, int], GroupDecision | None] = {}
        errors: list[NodeError] = []
        get, skey = self.cache.get, shape.key  # decide(), inlined: one call per group on the hot path
        ok = NodeState.OK
        for f in facts:
            if f is None or f.state is not ok or f.key in decisions:
                continue
            try:
                d = get(f.key + skey)
                decisions[f.key] = d if d is not None else self._fill(f, shape)
            except Exception as err:  # this node's data broke our code: it (and its twins) score 0
                errors.append((f.name, err))
                decisions[f.key] = None
        return decisions, errors

    def reference(self, rule: Rule, decisions: Sequence[GroupDecision | None] | Any) -> float | None:
        """The request's reference over its distinct judged groups (``V*`` or ``c_min``)."""
        return self.scorer.reference(rule, (d.group.value for d in decisions if d is not None))

    def group_score(self, d: GroupDecision | None, ref: float | None) -> int:
        """A group's 0..10 in a request whose reference is ``ref``: the answer fragment of every node of the group."""
        return 0 if d is None else self.scorer.finish(d.group, ref)

    def node_score(self, d: GroupDecision | None, ref: float | None, locality: tuple[str | None, ...],
                   topology_class: str | None, siblings: Siblings | None) -> int:
        """A node's 0..10 when its score also reads its locality (a rank with placed siblings).

        The job-affinity penalty reads only the node's locality, class and the siblings' summary, so
        it is kept per that key across requests (the next rank of the same job usually sees the same
        summary): a few dozen entries for thousands of nodes.
        """
        if d is None:
            return 0
        pen = 0
        if siblings is not None and self.scorer.uses_siblings(d.group.rule):
            key = (locality, topology_class, siblings)
            hit = self._penalties.get(key)
            pen = hit if hit is not None else self._penalties.put(
                key, self.scorer.node_penalty(d.group.rule, locality, topology_class, siblings))
        return self.scorer.finish(d.group, ref, pen)

    def scores(self, w: Workload, facts: Sequence[NodeFacts | None], siblings: Siblings | None = None) -> ScoreResult:
        """0..10 per node for ``w`` among these candidates; ``siblings`` for a rank (:meth:`needs_siblings`)."""
        n = len(facts)
        if not self.scores_pod(w):
            return ScoreResult([0] * n)
        shape = Shape.of(w)
        rule = self.rule(shape)
        decisions, errors = self.groups(shape, facts)
        ref = self.reference(rule, decisions.values())
        per_node = siblings is not None and self.scorer.uses_siblings(rule)
        by_group = {key: self.group_score(d, ref) for key, d in decisions.items()} if not per_node else {}
        by_node: dict[Any, int] = {}
        unmanaged = self.scorer.unmanaged(rule)
        ok, not_ours = NodeState.OK, NodeState.NOT_OURS
        scores: list[int] = []
        append = scores.append
        for f in facts:
            if f is None:
                append(0)
            elif f.state is not ok:
                append(unmanaged if f.state is not_ours else 0)
            elif not per_node:
                append(by_group[f.key])
            else:
                key = (f.key, f.locality, f.topology_class)
                s = by_node.get(key)
                if s is None:
                    s = by_node[key] = self.node_score(decisions[f.key], ref, f.locality, f.topology_class, siblings)
                append(s)
        return ScoreResult(scores, errors, rule, ref)

    # -- explained ----------------------------------------------------------------------
    def explain(self, w: Workload, facts: Sequence[NodeFacts | None], siblings: Siblings | None = None
                ) -> list[Explanation | None]:
        """The verdict and score :meth:`filter` and :meth:`scores` give each node for ``w``, term by term.

        Same candidates, same answer: the reference is taken over ``facts`` as
        :meth:`scores` takes it. ``None`` for a node the cache does not know (no facts).
        Raises what :meth:`decide` raises for a node whose data breaks our code (the batch
        calls report it in ``errors`` instead).
        """
        shape = Shape.of(w)
        rule = self.rule(shape) if self.scores_pod(w) else Rule.NONE
        decisions: dict[tuple[int, int], GroupDecision] = {}
        for f in facts:
            if f is not None and f.state is NodeState.OK and f.key not in decisions:
                decisions[f.key] = self.decide(f, shape)
        ref = self.reference(rule, decisions.values())
        per_node = siblings is not None and self.scorer.uses_siblings(rule)
        return [None if f is None else self._explain_one(w, f, rule, decisions.get(f.key), ref,
                                                           siblings if per_node else None) for f in facts]

    def _explain_one(self, w: Workload, f: NodeFacts, rule: Rule, d: GroupDecision | None, ref: float | None,
                     siblings: Siblings | None) -> Explanation:
        if f.state is not NodeState.OK:
            score = self.scorer.unmanaged(rule) if f.state is NodeState.NOT_OURS else 0
            return Explanation(f.name, f.state, f.problem, w.gpus, PASS, score, rule, reference=ref)
        assert d is not None
        g = d.group
        if rule is Rule.NONE or g.value is None:
            return Explanation(f.name, f.state, None, w.gpus, d.verdict, 0, rule, value=g.value, reference=ref)
        pen = self.scorer.node_penalty(rule, f.locality, f.topology_class, siblings)
        detail: tuple[tuple[str, Any], ...] | None = None
        if siblings is not None:
            misses, keys = affinity.mismatches(f.locality, f.topology_class, siblings)
            detail = (("mismatched_keys", misses), ("sibling_keys", keys))
        terms = self.scorer.terms(g, ref, gpus=w.gpus, node_penalty=pen, affinity_detail=detail)
        score = self.scorer.finish(g, ref, pen)
        best = g.best
        if best is None:
            return Explanation(f.name, f.state, None, w.gpus, d.verdict, score, rule, terms, value=g.value,
                               reference=ref)
        ctx = self.context(f)
        prediction = ctx.model.predict_mask(best.mask, multi_node=rule is Rule.RANK)
        ring = ctx.placer.best(best.gpus, len(best.gpus))
        return Explanation(f.name, f.state, None, w.gpus, d.verdict, score, rule, terms, best.gpus,
                           () if prediction is None else prediction.ring, None if ring is None else ring.level,
                           prediction, g.value, ref)
