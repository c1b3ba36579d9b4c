"""Filter and prioritize on raw request bytes: the adapter between kube-scheduler's bytes and the policy layer.

Why bytes in, bytes out: the benchmark and the tests call exactly what the
HTTP handlers call, and the hot path avoids per-node model objects (bodies of
5,000 full Node objects are ~15 MB). Requests are decoded once with
pydantic-core's JSON parser, checked against :class:`~extender.wire.ExtenderArgs`
(Go casing rules), and answers are serialised once.

This module decides nothing about placement: the pod is read by
:func:`policy.workload.parse`, nodes by :mod:`policy.nodes` (from the request's
Node objects in stateless mode, from the informer's view in cached mode), and
the verdicts and scores come from :class:`policy.decision.decide.Decider`
(rules in its docstring and ``docs/extender.md``). What stays here is the
protocol, the metrics and the logs:

- The answer's list follows the request: ``Nodes`` in → ``Nodes`` out (the
  original objects, unmodified), ``NodeNames`` in → ``NodeNames`` out.
- Nodes that fail open (no data, damaged data, a node whose data broke our
  code) are logged and counted (``gputopo_extender_fail_open_total``).
- A request we cannot decode: filter answers HTTP 200 with ``Error`` set (the
  scheduler logs our message; non-ignorable → the pod is retried), prioritize
  answers HTTP 400 (the scheduler drops our scores either way; there is no
  error field in a bare array).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import pydantic_core
from pydantic import ValidationError

from extender.answering import Unjudged, answer_filter, answer_prioritize
from extender.answers import AnswerTables, Cold, warm_only
from extender.explain import log_explanations
from extender.metrics import Metrics
from extender.wire import ExtenderArgs, PriorityEncoder, encode_filter_result
from policy import workload as wl
from policy.decision.cache import ContextRegistry, Shape
from policy.decision.decide import Decider, NodeError
from policy.nodes.decode import REQUEST_DECODE_CHARS, DecodeBudget, TopologyRegistry
from policy.nodes.facts import NodeFacts, broken, facts_from_object, node_name, tally
from policy.scoring import Scorer
from policy.siblings import Siblings

__all__ = ["Answer", "ClusterView", "Service", "ServiceConfig"]

log = logging.getLogger("gputopo.extender")


class ClusterView(Protocol):
    """The cached mode's knowledge of the cluster (see :mod:`extender.cache`)."""

    @property
    def synced(self) -> bool: ...

    def facts(self, name: str) -> NodeFacts | None: ...

    def siblings(self, workload: wl.Workload) -> Siblings | None: ...


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    prefix: str
    locality_keys: tuple[str, ...]
    scorer: Scorer
    resource: str = wl.GPU_RESOURCE
    allocation_max_age_s: float = 0.0  # ExtenderSettings.allocation_max_age_seconds (stateless mode)
    #: read labels/annotations from the Node objects of a ``Nodes`` request (stateless mode). When
    #: False (cached mode's default) only their names are used and the informer's view answers
    decode_node_objects: bool = True


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    error: str | None = None


class BadRequest(Exception):
    """The body is not an ``ExtenderArgs`` we can read (message is safe to show)."""


def _short_validation_error(err: ValidationError) -> str:
    first = err.errors(include_url=False, include_input=False)[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return f"{loc}: {first.get('msg', 'invalid')}"


_NON_FINITE = re.compile(rb"(?<![\w\"])-?(?:NaN|Infinity)(?![\w\"])")


class _NamesArgs(msgspec.Struct, forbid_unknown_fields=True):
    """The body kube-scheduler sends in cached mode, exactly as Go writes it: the fast path's only shape."""

    Pod: dict[str, Any] | None = None
    Nodes: None = None
    NodeNames: list[str] | None = None


_decode_names = msgspec.json.Decoder(_NamesArgs).decode


def decode_args(body: bytes) -> ExtenderArgs:
    """Decode an ``ExtenderArgs`` body; :class:`BadRequest` with a short, safe message.

    ``NaN`` and ``Infinity`` are refused, as Go's ``encoding/json`` (which
    kube-scheduler uses) never writes them and RFC 8259 does not allow them.

    Fast path: a body with exactly Go's keys, ``Nodes: null`` and a list of names (what
    kube-scheduler sends a ``nodeCacheCapable`` extender) is decoded and type-checked in one
    pass by msgspec (90 µs for 5,000 names, against 230 µs for the general path; measured
    in docs/performance.md). Anything else (other key casing, unknown keys, node objects, a
    body that is not valid) takes the general path below, which decides what it means.
    """
    try:
        a = _decode_names(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    else:
        return ExtenderArgs.model_construct(Pod=a.Pod, Nodes=None, NodeNames=a.NodeNames)
    if not body.strip():
        raise BadRequest("empty request body")
    try:
        doc = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as err:
        if _NON_FINITE.search(body):
            raise BadRequest("request body is not JSON: NaN and Infinity are not JSON values") from None
        raise BadRequest(f"request body is not JSON: {str(err)[:200]}") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object (ExtenderArgs)")
    try:
        return ExtenderArgs.model_validate(doc)
    except ValidationError as err:
        raise BadRequest(f"request is not ExtenderArgs: {_short_validation_error(err)}") from None


class _BoundMetrics:
    """The fast path's metric children, looked up once (``labels()`` takes a lock and a dict lookup per call)."""

    def __init__(self, m: Metrics) -> None:
        self.passed = m.nodes.labels("filter", "passed")
        self.failed = m.nodes.labels("filter", "failed")
        self.unresolvable = m.nodes.labels("filter", "unresolvable")
        self.not_ours = m.nodes.labels("filter", "not_ours")
        self.fail_open = m.nodes.labels("filter", "fail_open")
        self.filter_ok = m.requests.labels("filter", "ok")
        self.prioritize_ok = m.requests.labels("prioritize", "ok")
        self.filter_seconds = m.latency.labels("filter")
        self.prioritize_seconds = m.latency.labels("prioritize")


class Service:
    """Stateless or cached extender logic; thread-safe (all shared state is memo caches)."""

    def __init__(self, config: ServiceConfig, *, view: ClusterView | None = None, metrics: Metrics | None = None):
        self.config = config
        self.view = view
        self.metrics = metrics or Metrics()
        self.topologies = TopologyRegistry()
        self.decider = Decider(config.scorer)
        self._priorities = PriorityEncoder()
        self._bound = _BoundMetrics(self.metrics)

    @property
    def contexts(self) -> ContextRegistry:
        """The per-wiring placement contexts of the decision cache (one per kind of machine)."""
        return self.decider.cache.contexts

    # -- shared steps -------------------------------------------------------------------
    def _workload(self, args: ExtenderArgs) -> wl.Workload:
        try:
            w = wl.parse(args.Pod, prefix=self.config.prefix, resource=self.config.resource)
        except Exception as err:  # wl.parse is total by design (fuzzed); this is the last net
            log.exception("pod unreadable")
            w = wl.unreadable(f"pod unreadable ({type(err).__name__}); topology ignored for it")
        if w.problems:
            self.metrics.pod_problems.inc()
            log.warning("pod %s: %s", w.key, "; ".join(w.problems))
        return w

    def _node_facts(self, args: ExtenderArgs, verb: str) -> tuple[list[str], list[NodeFacts | None], list[Any] | None]:
        """Names, facts (None = unknown node) and, in Nodes mode, the original objects."""
        if args.Nodes is not None:
            items = args.Nodes.items or []
            objs = [o if isinstance(o, dict) else {} for o in items]
            if self.config.decode_node_objects:
                decoded: list[NodeFacts | None] = list(self._decode_nodes(objs))
                return [f.name if f else "" for f in decoded], decoded, list(items)
            # cached mode: Node objects in a request are not trusted or decoded; the names are looked up
            self.metrics.node_objects_ignored.inc(len(objs))
            names = [node_name(o) for o in objs]
            return names, self._view_facts(names, verb), list(items)
        names = list(args.NodeNames or [])
        return names, self._view_facts(names, verb), None

    def _decode_nodes(self, objs: list[dict[str, Any]]) -> list[NodeFacts]:
        """Facts from the request's Node objects, one at a time: a bad one fails open alone."""
        budget = DecodeBudget(REQUEST_DECODE_CHARS)
        now, max_age = time.time(), self.config.allocation_max_age_s
        out: list[NodeFacts] = []
        for o in objs:
            try:
                out.append(facts_from_object(o, prefix=self.config.prefix, locality_keys=self.config.locality_keys,
                                             registry=self.topologies, allocation_max_age_s=max_age, now=now,
                                             budget=budget))
            except Exception as err:
                log.exception("node %r: internal error while reading it; failing open for it", node_name(o)[:253])
                out.append(broken(node_name(o), err))
        return out

    def _view_facts(self, names: list[str], verb: str) -> list[NodeFacts | None]:
        view = self.view
        if view is None or not view.synced:
            reason = "no_node_objects" if view is None else "not_synced"
            self.metrics.fail_open.labels(reason).inc(len(names))
            log.warning("%s: %d node names but %s; passing them (fail open)", verb, len(names), reason)
            return [None] * len(names)
        get = view.facts
        return [get(n) for n in names]

    def _count_unusable(self, verb: str, facts: Sequence[NodeFacts | None]) -> tuple[int, int]:
        """Count (and log once per request) nodes that are not ours, unknown, or fail open."""
        t = tally(facts)
        if t.unknown and self.view is not None and self.view.synced:
            self.metrics.fail_open.labels("unknown_node").inc(t.unknown)
        for reason, names in t.fail_open.items():
            self.metrics.fail_open.labels(reason).inc(len(names))
            log.warning("%s: %d node(s) fail open (%s), e.g. %s", verb, len(names), reason, ", ".join(names[:5]))
        return t.not_ours, t.fail_open_count

    # -- filter ----------------------------------------------------------------------
    def filter(self, body: bytes) -> Answer:
        """Handle one filter request body; always HTTP 200 (errors go in ``Error``)."""
        start = time.perf_counter()
        try:
            args = decode_args(body)
        except BadRequest as err:
            self.metrics.requests.labels("filter", "error").inc()
            log.warning("filter: bad request: %s", err)
            empty = encode_filter_result(nodes=None, node_names=None, failed=None, unresolvable=None, error=str(err))
            return Answer(200, empty, str(err))
        w = self._workload(args)
        tables = self._tables(args)
        if tables is not None:
            assert args.NodeNames is not None
            return self._filter_names(w, args.NodeNames, tables, start)
        names, facts, objs = self._node_facts(args, "filter")
        not_ours, fail_open = self._count_unusable("filter", facts)
        result = self.decider.filter(w, facts)
        self._node_errors("filter", result.errors)
        self._count_inexact("filter", w, facts)
        passed_idx, failed, unresolvable = result.passed, result.failed, result.unresolvable
        if objs is not None:
            assert args.Nodes is not None
            nodes_out: dict[str, Any] = args.Nodes.model_dump(mode="python", exclude={"items"})
            if nodes_out.get("metadata") is None:
                nodes_out["metadata"] = {}
            nodes_out["items"] = [objs[i] for i in passed_idx]
            out = encode_filter_result(nodes=nodes_out, node_names=None, failed=failed, unresolvable=unresolvable)
        elif args.NodeNames is None:  # neither list: nothing to filter, answer both shapes empty
            out = encode_filter_result(
                nodes={"metadata": {}, "items": []}, node_names=[], failed=failed, unresolvable=unresolvable
            )
        else:
            out = encode_filter_result(
                nodes=None, node_names=[names[i] for i in passed_idx], failed=failed, unresolvable=unresolvable
            )
        m = self.metrics
        m.nodes.labels("filter", "passed").inc(len(passed_idx))
        m.nodes.labels("filter", "failed").inc(len(failed))
        m.nodes.labels("filter", "unresolvable").inc(len(unresolvable))
        m.nodes.labels("filter", "not_ours").inc(not_ours)
        m.nodes.labels("filter", "fail_open").inc(fail_open)
        m.requests.labels("filter", "ok").inc()
        m.latency.labels("filter").observe(time.perf_counter() - start)
        if failed or unresolvable:
            log.info("filter %s (k=%d, %s): %d passed, %d failed, %d unresolvable", w.key, w.gpus,
                     w.intent.value, len(passed_idx), len(failed), len(unresolvable))
        return Answer(200, out)

    # -- prioritize ----------------------------------------------------------------------
    def prioritize(self, body: bytes) -> Answer:
        """Handle one prioritize request body: HTTP 200 with a bare array, or 400."""
        start = time.perf_counter()
        try:
            args = decode_args(body)
        except BadRequest as err:
            self.metrics.requests.labels("prioritize", "error").inc()
            log.warning("prioritize: bad request: %s", err)
            return Answer(400, pydantic_core.to_json({"error": str(err)}), str(err))
        w = self._workload(args)
        tables = self._tables(args)
        if tables is not None:
            assert args.NodeNames is not None
            return self._prioritize_names(w, args.NodeNames, tables, start)
        names, facts, _ = self._node_facts(args, "prioritize")
        self._count_unusable("prioritize", facts)
        siblings = None
        view = self.view
        if view is not None and view.synced and self.decider.needs_siblings(w):
            siblings = view.siblings(w)
        result = self.decider.scores(w, facts, siblings)
        self._node_errors("prioritize", result.errors)
        self._count_inexact("prioritize", w, facts)
        scores = result.scores
        self.metrics.observe_scores(result.rule.value, Counter(scores), result.reference)
        if log.isEnabledFor(logging.DEBUG):
            log_explanations(self.decider, w, names, facts, siblings)
        out = self._priorities.encode(names, scores)
        self.metrics.requests.labels("prioritize", "ok").inc()
        self.metrics.latency.labels("prioritize").observe(time.perf_counter() - start)
        return Answer(200, out)

    # -- on the event loop: a warm request, answered from prepared fragments only -------------------
    #: bodies up to this size may be answered on the event loop (5,000 names: 63 KB)
    INLINE_MAX_BYTES = 1 << 20

    def answer_now(self, verb: str, body: bytes) -> Answer | None:
        """Answer ``body`` at once when every node's answer is prepared; None: hand it to a worker thread.

        Why: the thread hop costs ~0.1 ms a request, a fifth of a warm 5,000-node answer
        (docs/performance.md). Only a small body (``INLINE_MAX_BYTES``) of Go's exact shape,
        naming no more nodes than the cache holds, whose every name has its answer prepared
        (:func:`extender.answers.warm_only`): C-level passes bounded by the cluster's size. A
        cold, large, odd or failing request goes to the worker thread, which answers it in full.
        """
        if verb not in ("filter", "prioritize") or len(body) > self.INLINE_MAX_BYTES:
            return None
        try:
            a = _decode_names(body)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        args = ExtenderArgs.model_construct(Pod=a.Pod, Nodes=None, NodeNames=a.NodeNames)
        tables = self._tables(args)
        if tables is None or args.NodeNames is None or len(args.NodeNames) > tables.nodes:
            return None
        start = time.perf_counter()
        try:
            with warm_only():
                w = self._workload(args)
                if verb == "filter":
                    return self._filter_names(w, args.NodeNames, tables, start)
                return self._prioritize_names(w, args.NodeNames, tables, start)
        except Cold:
            return None
        except Exception:  # anything else: the worker thread's full path answers (and logs) it
            return None

    # -- the fast path: NodeNames against the informer's view (extender.answers) ----------------
    def _tables(self, args: ExtenderArgs) -> AnswerTables | None:
        """The view's answer tables when this request can be answered from prepared fragments, else None."""
        view = self.view
        if args.Nodes is not None or args.NodeNames is None or view is None or not view.synced:
            return None
        tables = getattr(view, "answers", None)
        return tables if isinstance(tables, AnswerTables) else None

    def _count_unjudged(self, verb: str, unjudged: dict[str, Unjudged]) -> tuple[int, int]:
        """Count (and log once per request) nodes not judged: not ours, unknown, failing open; (not ours, fail open)."""
        not_ours = fail_open = 0
        for reason, u in unjudged.items():
            if reason == "not_ours":
                not_ours += u.count
                continue
            self.metrics.fail_open.labels(reason).inc(u.count)
            if reason != "unknown_node":
                fail_open += u.count
                log.warning("%s: %d node(s) fail open (%s), e.g. %s", verb, u.count, reason, ", ".join(u.examples))
        return not_ours, fail_open

    def _filter_names(self, w: wl.Workload, names: list[str], tables: AnswerTables, start: float) -> Answer:
        out = answer_filter(names, tables.table(Shape.of(w), self.decider))
        not_ours, fail_open = self._count_unjudged("filter", out.unjudged)
        self._node_errors("filter", out.errors)
        m = self._bound
        m.passed.inc(out.passed)
        m.failed.inc(out.failed)
        m.unresolvable.inc(out.unresolvable)
        m.not_ours.inc(not_ours)
        m.fail_open.inc(fail_open)
        if out.inexact:
            self.metrics.inexact.labels("filter").inc(out.inexact)
        m.filter_ok.inc()
        m.filter_seconds.observe(time.perf_counter() - start)
        if out.failed or out.unresolvable:
            log.info("filter %s (k=%d, %s): %d passed, %d failed, %d unresolvable", w.key, w.gpus,
                     w.intent.value, out.passed, out.failed, out.unresolvable)
        return Answer(200, out.body)

    def _prioritize_names(self, w: wl.Workload, names: list[str], tables: AnswerTables, start: float) -> Answer:
        shape = Shape.of(w) if self.decider.scores_pod(w) else None
        siblings = None
        if shape is not None and self.view is not None and self.decider.needs_siblings(w):
            siblings = self.view.siblings(w)
        out = answer_prioritize(names, tables.table(shape, self.decider), siblings)
        self.metrics.observe_scores(out.rule.value, out.histogram or {}, out.reference)
        if log.isEnabledFor(logging.DEBUG) and self.view is not None:
            log_explanations(self.decider, w, names, [self.view.facts(n) for n in names], siblings)
        self._count_unjudged("prioritize", out.unjudged)
        self._node_errors("prioritize", out.errors)
        if out.inexact:
            self.metrics.inexact.labels("prioritize").inc(out.inexact)
        self._bound.prioritize_ok.inc()
        self._bound.prioritize_seconds.observe(time.perf_counter() - start)
        return Answer(200, out.body)

    def _count_inexact(self, verb: str, w: wl.Workload, facts: Sequence[NodeFacts | None]) -> None:
        """Nodes answered from a placement the search budget cut short (reference path: by group, from the cache)."""
        if w.gpus <= 16 or not self.decider.scores_pod(w):  # exact search up to 16 GPUs: nothing to count
            return
        skey, get = Shape.of(w).key, self.decider.cache.get
        seen: dict[tuple[int, int], bool] = {}
        count = 0
        for f in facts:
            if f is None or f.topo is None:
                continue
            hit = seen.get(f.key)
            if hit is None:
                d = get(f.key + skey)
                p = None if d is None else d.evaluation.placement
                hit = seen[f.key] = p is not None and not p.exact
            count += hit
        if count:
            self.metrics.inexact.labels(verb).inc(count)

    def _node_errors(self, verb: str, errors: list[NodeError]) -> None:
        """Nodes (one per group) whose data broke our code: they failed open; log and count each."""
        for name, err in errors:
            self.metrics.fail_open.labels("internal").inc()
            log.error("%s: internal error on node %s; it fails open", verb, name[:253], exc_info=err)
