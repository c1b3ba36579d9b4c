"""Answers assembled from pre-encoded fragments: decide once per group, answer per name.

Why: at 5,000 node names per request, anything done per name in Python costs more than all
the decisions together (one per group of nodes with the same wiring and free GPUs,
:class:`~policy.decision.decide.Decider`). So the per-name work of a cached-mode request is a
few C-level passes over lists (``map`` of a dict lookup or an attribute, ``bytes.join``), and
every byte of the answer that can be known before the request is prepared before it:

- **when the cache changes** (:mod:`extender.cache`), each node gets a :class:`NodeEntry`:
  its facts, its :class:`Group` (interned per ``(wiring id, free mask)``: nodes with equal keys
  share one object), its :class:`Local` (interned per locality labels and topology class) and
  its name pre-encoded as JSON (``"gpu-00001"``) and as a prioritize prefix
  (``{"Host":"gpu-00001","Score":``);
- **once per group and pod shape**, the decision's answer pieces (:class:`Piece`: pass / fail
  / unresolvable, the JSON of the reason, the group's decision) are kept on the group;
- **once per node and pod shape**, a :class:`NodeAnswer` holds that node's finished fragments
  (``"gpu-00001",`` where it passes, ``"gpu-00001":"<reason>",`` where it is refused,
  ``{"Host":"gpu-00001","Score":7},``) in the shape's :class:`AnswerTable` (name → answer),
  filled on first use and emptied for a node when the cache changes it;
- **per request**: ``map(table.__getitem__, names)``, one C-level count of the answers' pieces
  (the request's distinct groups), then ``bytes.join``. A score is measured against the request's
  best candidate (:mod:`policy.scoring`: ``V*``, or ``c_min`` for 1-GPU pods), so the reference is
  taken over those few pieces and each piece's score finished from it. A node's finished
  prioritize fragment is kept for the table's reference (:attr:`AnswerTable.scored_ref`): when a
  request's reference is that one (the usual case: the best free island of a cluster seldom
  changes), the answer is one join; otherwise it is joined from the names' prefixes and the
  pieces' score bytes, and a reference met twice in a row becomes the table's. Python loops run
  only over names met for the first time (per shape), over the nodes that fail open, when the
  table's reference moves, and, for a rank with placed siblings (job affinity reads the node's
  locality), over the distinct ``(piece, Local)`` pairs (:meth:`Decider.node_score`): a few dozen
  where there are thousands of nodes.

Nothing here knows what a score means: a piece carries ``GroupDecision.verdict`` and the
decision, and the score comes from :meth:`~policy.decision.decide.Decider.group_score` /
``node_score`` and the request's ``reference``. The rules for nodes that are not judged (unknown,
no data: pass, score 0; not ours: pass, scored as the policy scores a node it does not manage)
are the policy's (:mod:`policy.decision.decide`), applied per sentinel group. Answers are byte
for byte those of the reference path (``Decider.filter``/``scores`` + :mod:`extender.wire`;
``tests/extender/test_ext_answers.py``).
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, compress
from operator import attrgetter
from typing import Any

import pydantic_core

from extender.wire import MAX_EXTENDER_PRIORITY
from policy.decision.cache import GroupDecision, Shape
from policy.decision.decide import Decider
from policy.decision.evaluation import Verdict
from policy.nodes.facts import NodeFacts
from policy.nodes.state import NodeState
from policy.scoring import Rule
from policy.siblings import Siblings

__all__ = [
    "UNKNOWN", "AnswerTable", "AnswerTables", "Cold", "FilterOutcome", "Group", "Local", "NodeAnswer", "NodeEntry",
    "Piece", "PrioritizeOutcome", "Unjudged", "answer_filter", "answer_prioritize", "entry_for", "shape_id",
    "unjudged_group", "warm_only",
]

PASS, FAILED, UNRESOLVABLE = 0, 1, 2
#: pieces kept per group (one per pod shape met); past it the group's pieces are dropped and rebuilt
MAX_PIECES_PER_GROUP = 64
#: (piece, Local) keys kept per table (a node has one; far fewer distinct ones in a real cluster)
MAX_SIBLING_KEYS = 1 << 16
#: a table's previous reference before any request (never equal to a reference)
_NO_REF = object()
#: a prioritize element's end for each score: ``7},``
_TAIL = tuple(f"{i}}},".encode() for i in range(MAX_EXTENDER_PRIORITY + 1))


def _json(text: str) -> bytes:
    return pydantic_core.to_json(text)


@dataclass(frozen=True, slots=True, eq=False)
class Piece:
    """The answer bytes of one group decision for one pod shape.

    ``code``: PASS / FAILED / UNRESOLVABLE; ``reason``: the JSON string of the reason (``b""``
    when it passes); ``decision``: the group's decision, whose value a request's score is
    finished from (None: the node is not judged and scores 0); ``inexact``: the placement came
    from the search budget's fallback (``Placement.exact`` false); ``unmanaged``: a node gputopo
    does not manage (not ours), scored as :meth:`policy.scoring.Scorer.unmanaged` says.
    ``hi``/``lo``: the group's value for a request's reference (``V``, ``c``), or -inf/+inf when it
    has none, so that ``max``/``min`` over a request's pieces runs in C.
    """

    code: int
    reason: bytes
    decision: GroupDecision | None = None
    inexact: bool = False
    unmanaged: bool = False
    hi: float = -math.inf
    lo: float = math.inf

    @classmethod
    def of(cls, d: GroupDecision) -> Piece:
        v = d.verdict
        code = PASS if v.passes else UNRESOLVABLE if v.unresolvable else FAILED
        reason = b"" if v.passes else _json(_reason(v))
        placement = d.evaluation.placement
        value = d.group.value
        return cls(code, reason, d, placement is not None and not placement.exact, False,
                   -math.inf if value is None else value, math.inf if value is None else value)


def _reason(v: Verdict) -> str:
    """The reason text the reference path sends (``Decider.filter``: with its fallbacks)."""
    if v.unresolvable:
        return v.reason or "topology constraint cannot be met"
    return v.reason or "topology constraint not met with the free GPUs"


#: a node that is not judged, or whose group broke our code: it passes and scores 0 (fail open)
UNJUDGED_PIECE = Piece(PASS, b"")
#: a node gputopo does not manage: it passes; its score is the policy's for such nodes
NOT_OURS_PIECE = Piece(PASS, b"", unmanaged=True)


class Group:
    """Nodes with equal ``(wiring id, free mask)``: equal answers. Holds its pieces per pod shape.

    ``facts``: one member's facts (what :meth:`Decider.decide` reads: the wiring and the
    free mask). Interned by the cache while any node refers to it (weakly), so its pieces
    survive a relist and vanish with the last node in that state.
    """

    __slots__ = ("__weakref__", "facts", "key", "pieces", "reason")

    def __init__(self, facts: NodeFacts | None, reason: str | None = None) -> None:
        self.facts = facts
        self.key = facts.key if facts is not None else None
        #: shape id → piece; sentinel groups answer UNJUDGED_PIECE (NOT_OURS_PIECE) for every shape
        self.pieces: dict[int, Piece] = {} if reason is None else _UNJUDGED_PIECES
        #: for sentinel groups (nodes not judged): "not_ours", "unknown_node" or the fail-open reason
        self.reason = reason


_UNJUDGED_PIECES: dict[int, Piece] = {}


class Local:
    """A node's locality label values and topology class (interned: what job affinity reads)."""

    __slots__ = ("__weakref__", "locality", "topology_class")

    def __init__(self, locality: tuple[str | None, ...], topology_class: str | None) -> None:
        self.locality = locality
        self.topology_class = topology_class


@dataclass(frozen=True, slots=True, eq=False)
class NodeEntry:
    """One node as a request needs it: facts, group, locality and its name's answer fragments."""

    facts: NodeFacts | None
    group: Group
    local: Local
    name: bytes  # the node name as a JSON string
    host: bytes  # b'{"Host":<name>,"Score":'


_SENTINELS: dict[str, Group] = {}


def unjudged_group(reason: str) -> Group:
    """The sentinel group of nodes not judged for ``reason`` ("not_ours", a fail-open reason): they pass."""
    g = _SENTINELS.get(reason)
    if g is None:
        g = _SENTINELS.setdefault(reason, Group(None, reason))
    return g


#: the entry of a name the cache does not know
UNKNOWN_GROUP = unjudged_group("unknown_node")
_NO_LOCAL = Local((), None)
UNKNOWN = NodeEntry(None, UNKNOWN_GROUP, _NO_LOCAL, b"", b"")


def entry_for(facts: NodeFacts, group: Callable[[NodeFacts], Group], local: Callable[[NodeFacts], Local]
              ) -> NodeEntry:
    """The entry of a node: its group (``group``: the caller's interning) when the node is judged, else a sentinel.

    Judged nodes are the OK ones (the policy's rule, :mod:`policy.decision.decide`); the others
    pass and score 0, grouped by why: ``not_ours``, or their fail-open reason.
    """
    name = _json(facts.name)
    if facts.state is NodeState.OK:
        g = group(facts)
    else:
        g = unjudged_group("not_ours" if facts.state is NodeState.NOT_OURS else facts.fail_reason or "no_data")
    return NodeEntry(facts, g, local(facts), name, b'{"Host":' + name + b',"Score":')


def shape_id(shape: Shape) -> int:
    """One int per pod shape (cheap to hash on the per-name path)."""
    gpus, kind, required, level = shape.key
    return ((gpus * 8 + kind) * 2 + required) * 16 + level + 1


_HOST = attrgetter("host")
_CODE = attrgetter("code")
_PASSED = attrgetter("passed")
_FAILED = attrgetter("failed")
_REFUSED = attrgetter("refused")
_UNRESOLVABLE = attrgetter("unresolvable")
_SCORED = attrgetter("scored")
_INEXACT = attrgetter("inexact")
_SIBLING_KEY = attrgetter("sibling_key")
_PIECE = attrgetter("piece")
_HI = attrgetter("hi")
_LO = attrgetter("lo")
_ELEMENTS = attrgetter("elements")

#: the code of an answer for a node that is not judged (it passes): counted apart for metrics and logs
UNJUDGED = 3


class NodeAnswer:
    """One node's answer fragments for one pod shape (``passed``/``refused``/``scored`` end with a comma)."""

    __slots__ = ("code", "elements", "entry", "failed", "host", "inexact", "local", "one_comma", "passed",
                 "piece", "refused", "scored", "sibling_key", "unresolvable")

    def __init__(self, entry: NodeEntry, name: bytes, host: bytes, piece: Piece,
                 sibling_key: SiblingKey | None = None, per_node: bool = False, score: int = 0) -> None:
        self.sibling_key = sibling_key
        #: with per-node scores (a rank with siblings): this node's prioritize element for each score 0..10
        self.elements = tuple(host + t for t in _TAIL) if per_node else ()
        self.entry = entry
        self.piece = piece
        self.code = UNJUDGED if entry.group.reason is not None else piece.code
        self.passed = name + b"," if piece.code == PASS else b""
        refused = b"" if piece.code == PASS else name + b":" + piece.reason + b","
        self.refused = bool(refused)
        self.failed = refused if piece.code == FAILED else b""
        self.unresolvable = refused if piece.code == UNRESOLVABLE else b""
        #: each refused fragment holds exactly one comma (its last byte): a request counts them in its bytes
        self.one_comma = refused.count(b",") <= 1
        self.host = host
        #: the prioritize element for the table's reference (AnswerTable.scored_ref)
        self.scored = host + _TAIL[score]
        self.inexact = piece.inexact
        self.local = entry.local


class SiblingKey:
    """What a node's score depends on for a rank with placed siblings: its group's piece and its Local.

    Interned per table, so a request memoises the per-node scores by identity
    (:meth:`Decider.node_score`).
    """

    __slots__ = ("local", "piece")

    def __init__(self, piece: Piece, local: Local) -> None:
        self.piece = piece
        self.local = local


class AnswerTable(dict[str, NodeAnswer]):
    """name → :class:`NodeAnswer` for one pod shape; a missing name is answered (and kept) on first use.

    ``inexact`` / ``unjudged``: whether any answer ever put here has an inexact placement / is a
    node not judged (a request only counts them when the table has some).
    """

    def __init__(self, shape: Shape | None, decider: Decider, entry: Callable[[], Callable[..., NodeEntry | None]]):
        super().__init__()
        self.shape = shape  # None: the pod scores 0 everywhere (prioritize only)
        self.sid = -1 if shape is None else shape_id(shape)
        self.decider = decider
        self._entry = entry  # the cache's current lookup (it changes at a relist)
        self.inexact = False
        self.unjudged = False
        self.commas = True  # every refused fragment put here has one comma (see answer_filter)
        self.refuses = False  # some answer put here refuses its node
        self.rule = Rule.NONE if shape is None else decider.rule(shape)
        #: a rank of a multi-node job: prioritize may score per node (siblings), so answers carry every element
        self.per_node = shape is not None and decider.scorer.uses_siblings(self.rule)
        self.errors: list[tuple[str, BaseException]] = []  # groups whose decision broke our code (drained per request)
        self.sibling_keys: dict[tuple[Piece, Local], SiblingKey] = {}
        #: the request reference the kept answers' ``scored`` fragments were finished for, and each piece's score then
        self.scored_ref: float | None = None
        self._scored: dict[Piece, int] = {}
        self._last_ref: object = _NO_REF  # the previous request's reference (a reference met twice is adopted)
        self._version = 0  # odd while the kept fragments are rebuilt (a reader then takes the other path)
        self._sibling_for: tuple[float | None, Siblings] | None = None
        self._sibling_scores: dict[SiblingKey | None, int] = {}
        self._lock = threading.Lock()

    def __missing__(self, name: str) -> NodeAnswer:
        if getattr(_warm_only, "active", False):
            raise Cold(name)
        lookup = self._entry()
        e = lookup(name)
        if e is None:  # a name the cache does not know: answered, never kept (names are the request's)
            frag = _json(name)
            self.unjudged = True
            a = NodeAnswer(UNKNOWN, frag, b'{"Host":' + frag + b',"Score":', UNJUDGED_PIECE, None, self.per_node)
            return a
        errors = len(self.errors)
        piece = self._piece(e.group)
        sk = self.sibling_keys.get((piece, e.local))
        if sk is None:
            if len(self.sibling_keys) >= MAX_SIBLING_KEYS:
                self.sibling_keys.clear()  # old keys stay valid where answers hold them; new ones start afresh
            sk = self.sibling_keys.setdefault((piece, e.local), SiblingKey(piece, e.local))
        with self._lock:  # consistent with a rebuild of the kept fragments
            a = NodeAnswer(e, e.name, e.host, piece, sk, self.per_node, self._scored_score(piece))
        self.inexact |= a.inexact
        self.unjudged |= a.code == UNJUDGED
        self.commas &= a.one_comma
        self.refuses |= a.refused
        if len(self.errors) > errors:  # its group broke our code: answered (fail open), retried next time
            return a
        self[name] = a
        if self._entry()(name) is not e:  # the cache changed the node meanwhile: do not keep a stale answer
            self.pop(name, None)
        return a

    def _piece(self, g: Group) -> Piece:
        if g.reason is not None or self.shape is None:
            return NOT_OURS_PIECE if g.reason == "not_ours" else UNJUDGED_PIECE
        piece = g.pieces.get(self.sid)
        if piece is not None:
            return piece
        assert g.facts is not None
        try:
            piece = Piece.of(self.decider.decide(g.facts, self.shape))
        except Exception as err:  # this group's data broke our code: its nodes fail open (pass, score 0)
            self.errors.append((g.facts.name, err))
            return UNJUDGED_PIECE
        if len(g.pieces) >= MAX_PIECES_PER_GROUP:
            g.pieces.clear()
        g.pieces[self.sid] = piece
        return piece

    def take_errors(self) -> list[tuple[str, BaseException]]:
        errors, self.errors = self.errors, []
        return errors

    # -- scores: finished per request against its reference ------------------------------------------
    def score(self, piece: Piece, ref: float | None) -> int:
        """The 0..10 of every node of ``piece`` in a request whose reference is ``ref``."""
        if piece.unmanaged:
            return self.decider.scorer.unmanaged(self.rule)
        return max(0, min(MAX_EXTENDER_PRIORITY, self.decider.group_score(piece.decision, ref)))

    def reference(self, pieces: Iterable[Piece]) -> float | None:
        """The request's reference over its distinct pieces (``V*`` or ``c_min``; None when nothing is judged).

        :meth:`policy.decision.decide.Decider.reference`'s rule, in one C-level pass.
        """
        if self.rule in (Rule.MULTI, Rule.RANK):
            hi = max(map(_HI, pieces), default=-math.inf)
            return None if hi == -math.inf else hi
        if self.rule is Rule.SINGLE:
            lo = min(map(_LO, pieces), default=math.inf)
            return None if lo == math.inf else lo
        return None

    def _scored_score(self, piece: Piece) -> int:
        s = self._scored.get(piece)
        if s is None:
            s = self._scored[piece] = self.score(piece, self.scored_ref)
        return s

    def join_scored(self, answers: list[NodeAnswer], pieces: Iterable[Piece], ref: float | None
                    ) -> tuple[bytes, dict[Piece, int]]:
        """The prioritize elements of ``answers`` for reference ``ref``, and the pieces' scores (at least theirs)."""
        v = self._version
        if ref == self.scored_ref and not v & 1:
            items = b"".join(map(_SCORED, answers))
            if self._version == v:  # no rebuild ran meanwhile: every kept piece's score is in _scored
                return items, self._scored
        score_of = {p: self.score(p, ref) for p in pieces}
        tails = {p: _TAIL[s] for p, s in score_of.items()}
        ends = map(tails.__getitem__, map(_PIECE, answers))
        items = b"".join(chain.from_iterable(zip(map(_HOST, answers), ends, strict=True)))
        if ref == self._last_ref:  # the same new reference twice in a row: make it the table's
            self._adopt(ref)
        self._last_ref = ref
        return items, score_of

    def sibling_scores(self, ref: float | None, siblings: Siblings) -> dict[SiblingKey | None, int]:
        """Scores by sibling key for a rank whose job has ``siblings``, in a request whose reference is ``ref``.

        Kept for the last (reference, siblings) pair: the next request for the same job usually has
        both, so it is a C-level lookup per name; keys met for the first time are added by the caller
        (:func:`_score_keys`). None: a name the cache does not know (0).
        """
        key = (ref, siblings)
        if self._sibling_for == key and len(self._sibling_scores) <= 2 * MAX_SIBLING_KEYS:
            return self._sibling_scores
        scores: dict[SiblingKey | None, int] = {None: 0}
        _score_keys(list(self.sibling_keys.values()), self, siblings, ref, scores)
        self._sibling_for, self._sibling_scores = key, scores
        return scores

    def _adopt(self, ref: float | None) -> None:
        """Rebuild every kept answer's ``scored`` fragment for ``ref`` (a Python pass over the table: rare)."""
        with self._lock:
            self._version += 1
            self.scored_ref = ref
            self._scored = {}
            for a in list(self.values()):
                a.scored = a.host + _TAIL[self._scored_score(a.piece)]
            self._version += 1


class Cold(Exception):
    """A request met a name whose answer is not prepared yet, while only prepared answers were allowed."""


_warm_only = threading.local()


@contextlib.contextmanager
def warm_only() -> Iterator[None]:
    """In this thread, for this block: a name whose answer is not prepared raises :class:`Cold` instead of deciding.

    Why: the HTTP layer answers a request on the event loop when every answer is prepared
    (C-level passes, bounded by the cluster's size) and hands it to a worker thread otherwise;
    the hop costs ~0.1 ms a request (docs/performance.md).
    """
    _warm_only.active = True
    try:
        yield
    finally:
        _warm_only.active = False


class AnswerTables:
    """The answer tables of one cache, per pod shape (at most ``max_tables``, the oldest dropped first)."""

    def __init__(self, entry: Callable[[], Callable[..., NodeEntry | None]], size: Callable[[], int] = lambda: 0,
                 max_tables: int = 32) -> None:
        self._entry = entry
        self._size = size
        self._tables: dict[int, AnswerTable] = {}
        self.max_tables = max_tables

    def table(self, shape: Shape | None, decider: Decider) -> AnswerTable:
        sid = -1 if shape is None else shape_id(shape)
        t = self._tables.get(sid)
        if t is None or t.decider is not decider:
            if len(self._tables) >= self.max_tables:
                self._tables.pop(next(iter(self._tables)), None)
            t = self._tables[sid] = AnswerTable(shape, decider, self._entry)
        return t

    def forget(self, name: str) -> None:
        """The cache changed (or dropped) this node: its answers are rebuilt on next use."""
        for t in list(self._tables.values()):
            t.pop(name, None)

    def names(self) -> set[str]:
        return {n for t in list(self._tables.values()) for n in list(t)}

    def __len__(self) -> int:
        return sum(len(t) for t in list(self._tables.values()))

    @property
    def nodes(self) -> int:
        """How many nodes the cache holds (a request naming more than that is not answered inline)."""
        return self._size()


@dataclass(frozen=True, slots=True)
class Unjudged:
    """Nodes of one request that were not judged for one reason: how many, and the first few names (for logs)."""

    count: int
    examples: list[str]


def _unjudged(names: Sequence[str], answers: list[NodeAnswer], codes: list[int] | None) -> dict[str, Unjudged]:
    """Not-judged nodes of a request by reason (not ours, unknown, each fail-open reason)."""
    if codes is None:
        codes = list(map(_CODE, answers))
    if UNJUDGED not in codes:
        return {}
    out: dict[str, list[str]] = {}
    at = -1
    for _ in range(codes.count(UNJUDGED)):
        at = codes.index(UNJUDGED, at + 1)
        reason = answers[at].entry.group.reason or "no_data"
        out.setdefault(reason, []).append(names[at])
    return {r: Unjudged(len(v), v[:5]) for r, v in out.items()}


@dataclass(slots=True)
class FilterOutcome:
    body: bytes
    passed: int
    failed: int
    unresolvable: int
    inexact: int
    unjudged: dict[str, Unjudged]
    errors: list[tuple[str, BaseException]]


def answer_filter(names: Sequence[str], table: AnswerTable) -> FilterOutcome:
    """The ``ExtenderFilterResult`` bytes for a ``NodeNames`` request (the reference path's bytes).

    A name listed twice (kube-scheduler never does) is listed twice in ``FailedNodes`` too, with
    the same reason: Go's decoder keeps one key of an object, so the meaning is the reference
    path's (which writes a dict), not its bytes.
    """
    n = len(names)
    answers = list(map(table.__getitem__, names))
    refused = list(compress(answers, map(_REFUSED, answers))) if table.refuses else []
    failed = b"".join(map(_FAILED, refused))
    unres = b"".join(map(_UNRESOLVABLE, refused))
    codes: list[int] | None = None
    if table.commas:  # one comma per fragment: count them in the bytes (memchr speed) instead of a pass per node
        n_failed, n_unres = failed.count(b","), unres.count(b",")
    else:
        codes = list(map(_CODE, answers))
        n_failed, n_unres = codes.count(FAILED), codes.count(UNRESOLVABLE)
    passed = b"".join(map(_PASSED, answers))
    body = b"".join((b'{"Nodes":null,"NodeNames":[', passed[:-1], b'],"FailedNodes":{', failed[:-1],
                     b'},"FailedAndUnresolvableNodes":{', unres[:-1], b'},"Error":""}'))
    inexact = sum(map(_INEXACT, answers)) if table.inexact else 0
    unjudged = _unjudged(names, answers, codes) if table.unjudged else {}
    return FilterOutcome(body, n - n_failed - n_unres, n_failed, n_unres, inexact, unjudged, table.take_errors())


@dataclass(slots=True)
class PrioritizeOutcome:
    body: bytes
    inexact: int
    unjudged: dict[str, Unjudged]
    errors: list[tuple[str, BaseException]]
    rule: Rule = Rule.NONE
    reference: float | None = None
    histogram: dict[int, int] | None = None  # score → nodes given it (the score metric)


def answer_prioritize(names: Sequence[str], table: AnswerTable, siblings: Siblings | None) -> PrioritizeOutcome:
    """The ``HostPriorityList`` bytes for a ``NodeNames`` request (``table.shape`` None: 0 everywhere).

    The request's distinct pieces (one C-level pass) give its reference; the scores follow from it.
    """
    answers = list(map(table.__getitem__, names))
    histogram = [0] * (MAX_EXTENDER_PRIORITY + 1)
    if siblings is not None and table.per_node and table.shape is not None:
        ref = table.reference(set(map(_PIECE, answers)))
        keys = list(map(_SIBLING_KEY, answers))
        score_of = table.sibling_scores(ref, siblings)
        try:
            scores = list(map(score_of.__getitem__, keys))
        except KeyError:  # keys this (ref, siblings) has not scored yet: the new ones, then the lookup again
            _score_keys(set(keys) - score_of.keys(), table, siblings, ref, score_of)
            scores = list(map(score_of.__getitem__, keys))
        items = b"".join(map(tuple.__getitem__, map(_ELEMENTS, answers), scores))[:-1]
        packed = bytes(scores)  # every score is 0..10: counted at memchr speed
        histogram = [packed.count(v) for v in range(MAX_EXTENDER_PRIORITY + 1)]
    else:
        counts = Counter(map(_PIECE, answers))  # the distinct pieces, and how many nodes each (the score metric)
        ref = table.reference(counts)
        joined, piece_scores = table.join_scored(answers, counts, ref)
        items = joined[:-1]
        scored = piece_scores.get
        for piece, n in counts.items():
            s = scored(piece)
            histogram[table.score(piece, ref) if s is None else s] += n
    inexact = sum(map(_INEXACT, answers)) if table.inexact else 0
    unjudged = _unjudged(names, answers, None) if table.unjudged else {}
    return PrioritizeOutcome(b"[" + items + b"]", inexact, unjudged, table.take_errors(), table.rule, ref,
                             dict(enumerate(histogram)))


def _score_keys(keys: Any, table: AnswerTable, siblings: Siblings, ref: float | None,
                score_of: dict[SiblingKey | None, int]) -> None:
    decider = table.decider
    for k in keys:
        if k is None:
            continue
        piece = k.piece
        if piece.unmanaged or piece.decision is None:
            score_of[k] = table.score(piece, ref)
            continue
        score = decider.node_score(piece.decision, ref, k.local.locality, k.local.topology_class, siblings)
        score_of[k] = max(0, min(MAX_EXTENDER_PRIORITY, score))
