"""Why each node got its prioritize score: ``POST /explain`` and the debug log line per node.

Both read :meth:`policy.decision.decide.Decider.explain`, which answers for the same candidates
what :meth:`~policy.decision.decide.Decider.scores` answers, term by term: the free set the score
is about (chosen by predicted bandwidth), its ring, its predicted NCCL bus bandwidth (for a rank,
capped by the network path), the node's value against the request's reference, and each
strategy's points. Nothing here decides anything; it is kept apart from the request hot path.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pydantic_core

from policy import workload as wl
from policy.decision.decide import Decider
from policy.nodes.facts import NodeFacts
from policy.siblings import Siblings

if TYPE_CHECKING:
    from extender.service import Answer, Service

__all__ = ["EXPLAIN_MAX_NODES", "explain", "log_explanations"]

log = logging.getLogger("gputopo.extender")

#: nodes explained in full in one /explain answer (the rest: score and value only), so that a 5,000-node
#: request answers in kilobytes, not megabytes
EXPLAIN_MAX_NODES = 64


def explain(service: Service, body: bytes, nodes: Sequence[str] = ()) -> Answer:
    """``POST /explain``: a prioritize body, answered per node with the set, ring, bandwidth and each term.

    The scores are exactly prioritize's (same candidates, same reference). ``nodes``: explain only
    these in full (default: the first :data:`EXPLAIN_MAX_NODES`); every node still counts for the
    reference. Not a scheduler verb: for people (``docs/extender.md``, "Explanations").
    """
    from extender.service import Answer, BadRequest, decode_args

    try:
        args = decode_args(body)
    except BadRequest as err:
        service.metrics.requests.labels("explain", "error").inc()
        return Answer(400, pydantic_core.to_json({"error": str(err)}), str(err))
    w = service._workload(args)
    names, facts, _ = service._node_facts(args, "explain")
    view, decider = service.view, service.decider
    siblings = view.siblings(w) if view is not None and view.synced and decider.needs_siblings(w) else None
    wanted = set(nodes)
    out: list[dict[str, Any]] = []
    rule, reference = "none", None
    for i, (name, e) in enumerate(zip(names, decider.explain(w, facts, siblings), strict=True)):
        if e is None:
            out.append({"node": name, "state": "unknown", "score": 0})
            continue
        rule, reference = e.rule.value, e.reference
        if (name in wanted) if wanted else i < EXPLAIN_MAX_NODES:
            out.append(e.as_dict())
        else:
            out.append({"node": name, "state": e.state.value, "score": e.score,
                        "value": None if e.value is None else round(e.value, 3)})
    doc = {"pod": w.key, "gpus": w.gpus, "kind": w.kind.value, "rule": rule,
           "reference": None if reference is None else round(reference, 3), "siblings": siblings is not None,
           "nodes": out}
    service.metrics.requests.labels("explain", "ok").inc()
    return Answer(200, pydantic_core.to_json(doc))


def log_explanations(decider: Decider, w: wl.Workload, names: Sequence[str], facts: Sequence[NodeFacts | None],
                     siblings: Siblings | None) -> None:
    """At debug level: one line per node of a prioritize request, with what its score is made of."""
    try:
        explained = decider.explain(w, facts, siblings)
    except Exception:  # an explanation must never break an answer
        log.debug("prioritize %s: explanation failed", w.key, exc_info=True)
        return
    for name, e in zip(names, explained, strict=True):
        if e is None:
            log.debug("prioritize %s k=%d node=%s unknown score=0", w.key, w.gpus, name[:253])
            continue
        terms = " ".join(f"{t.name}={t.points:+d}" for t in e.terms)
        value = None if e.value is None else round(e.value, 3)
        best = None if e.reference is None else round(e.reference, 3)
        log.debug("prioritize %s k=%d node=%s score=%d rule=%s set=%s busbw=%s value=%s best=%s %s", w.key, w.gpus,
                  name[:253], e.score, e.rule.value, ",".join(map(str, e.gpus)) or "-", e.busbw_gbps, value, best,
                  terms)
