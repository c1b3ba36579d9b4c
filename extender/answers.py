"""Answers assembled from pre-encoded fragments: decide once per group, answer per name.

Why: at 5,000 node names per request, anything done per name in Python costs more than all
the decisions together (one per group of nodes with the same wiring and free GPUs,
:class:`~policy.decision.decide.Decider`). So the per-name work of a cached-mode request is a
few C-level passes (``itemgetter`` over a dict or a list, ``bytes.join``), and
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
  ``{"Host":"gpu-00001","Score":7},``) in the shape's :class:`AnswerTable` (name → answer, and
  the same fragments again as columns: one list per fragment, a row per node), filled on first
  use and emptied for a node when the cache changes it;
- **per request** (:mod:`extender.answering`): one ``itemgetter(*names)`` call for the names'
  rows, one per column read, a C-level set of the names' pieces (the request's distinct groups),
  then ``bytes.join``. A score is measured against the request's
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
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
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
    "FAILED", "PASS", "TAIL", "UNJUDGED", "UNKNOWN", "UNRESOLVABLE", "AnswerTable", "AnswerTables", "Cold", "Group",
    "Local", "NodeAnswer", "NodeEntry", "Piece", "SiblingKey", "entry_for", "shape_id", "unjudged_group", "warm_only",
]

PASS, FAILED, UNRESOLVABLE = 0, 1, 2
#: pieces kept per group (one per pod shape met); past it the group's pieces are dropped and rebuilt
MAX_PIECES_PER_GROUP = 64
#: (piece, Local) keys kept per table (a node has one; far fewer distinct ones in a real cluster)
MAX_SIBLING_KEYS = 1 << 16
#: a table's previous reference before any request (never equal to a reference)
_NO_REF = object()
#: a prioritize element's end for each score: ``7},`` (an element is a node's ``host`` prefix and its score's tail)
TAIL = tuple(f"{i}}},".encode() for i in range(MAX_EXTENDER_PRIORITY + 1))


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
_SCORED = attrgetter("scored")
_PIECE = attrgetter("piece")
_HI = attrgetter("hi")
_LO = attrgetter("lo")

#: the code of an answer for a node that is not judged (it passes): counted apart for metrics and logs
UNJUDGED = 3


class NodeAnswer:
    """One node's answer fragments for one pod shape (``passed``/``refused``/``scored`` end with a comma)."""

    __slots__ = ("code", "entry", "failed", "host", "inexact", "local", "one_comma", "passed",
                 "piece", "refused", "scored", "sibling_key", "unresolvable")

    def __init__(self, entry: NodeEntry, name: bytes, host: bytes, piece: Piece,
                 sibling_key: SiblingKey | None = None, score: int = 0) -> None:
        self.sibling_key = sibling_key
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
        self.scored = host + TAIL[score]
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
        # The kept answers again, as columns: ``rows`` maps a kept name to its row, and each column is a list
        # holding one fragment per row. A request whose every name is kept reads its rows with one
        # ``itemgetter(*names)`` call on ``rows`` and then each column with one ``itemgetter(*rows)`` call
        # (extender.answering): one hashed lookup a name, then list indexing, against a ``map`` over this
        # table and an attribute per fragment (docs/performance.md has both). Written only under ``_lock``
        # with ``_version`` odd meanwhile, so a reader that sees the same even version before and after has
        # read one state of the table. A dropped name's row is reused by the next name kept.
        self.rows: dict[str, int] = {}
        self._free_rows: list[int] = []
        self.col_passed: list[bytes] = []
        self.col_failed: list[bytes] = []
        self.col_unresolvable: list[bytes] = []
        self.col_code: list[int] = []
        self.col_piece: list[Piece] = []
        self.col_scored: list[bytes] = []
        self.col_score: list[int] = []  # the score in col_scored (the score metric counts them)
        self.col_key: list[SiblingKey | None] = []
        self.col_host: list[bytes] = []  # b'{"Host":"gpu-00001","Score":' (a rank's score is appended per request)

    @property
    def version(self) -> int:
        """Odd while the kept answers change; a reader compares it before and after reading the columns."""
        return self._version

    def __missing__(self, name: str) -> NodeAnswer:
        if getattr(_warm_only, "active", False):
            raise Cold(name)
        lookup = self._entry()
        e = lookup(name)
        if e is None:  # a name the cache does not know: answered, never kept (names are the request's)
            frag = _json(name)
            self.unjudged = True
            a = NodeAnswer(UNKNOWN, frag, b'{"Host":' + frag + b',"Score":', UNJUDGED_PIECE, None)
            return a
        errors = len(self.errors)
        piece = self._piece(e.group)
        sk = self.sibling_keys.get((piece, e.local))
        if sk is None:
            if len(self.sibling_keys) >= MAX_SIBLING_KEYS:
                self.sibling_keys.clear()  # old keys stay valid where answers hold them; new ones start afresh
            sk = self.sibling_keys.setdefault((piece, e.local), SiblingKey(piece, e.local))
        with self._lock:  # consistent with a rebuild of the kept fragments
            a = NodeAnswer(e, e.name, e.host, piece, sk, self._scored_score(piece))
            self.inexact |= a.inexact
            self.unjudged |= a.code == UNJUDGED
            self.commas &= a.one_comma
            self.refuses |= a.refused
            if len(self.errors) > errors:  # its group broke our code: answered (fail open), retried next time
                return a
            self._keep(name, a)
        if self._entry()(name) is not e:  # the cache changed the node meanwhile: do not keep a stale answer
            self.drop(name)
        return a

    def _keep(self, name: str, a: NodeAnswer) -> None:
        """Keep ``a`` as ``name``'s answer, in the table and its columns (the caller holds ``_lock``)."""
        self._version += 1
        self[name] = a
        fragments = (a.passed, a.failed, a.unresolvable, a.code, a.piece, a.scored, self._scored_score(a.piece),
                     a.sibling_key, a.host)
        row = self.rows.get(name)
        if row is None and self._free_rows:
            row = self._free_rows.pop()
        if row is None:
            self.rows[name] = len(self.col_passed)
            for col, value in zip(self._columns(), fragments, strict=True):
                col.append(value)
        else:
            self.rows[name] = row
            for col, value in zip(self._columns(), fragments, strict=True):
                col[row] = value
        self._version += 1

    def _columns(self) -> tuple[list[Any], ...]:
        return (self.col_passed, self.col_failed, self.col_unresolvable, self.col_code, self.col_piece,
                self.col_scored, self.col_score, self.col_key, self.col_host)

    def drop(self, name: str) -> None:
        """Forget ``name``'s answer (the cache changed or dropped the node): rebuilt on next use."""
        with self._lock:
            self._version += 1
            self.pop(name, None)
            row = self.rows.pop(name, None)
            if row is not None:
                self._free_rows.append(row)
            self._version += 1

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
        tails = {p: TAIL[s] for p, s in score_of.items()}
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
        (:meth:`score_keys`). None: a name the cache does not know (0).
        """
        key = (ref, siblings)
        if self._sibling_for == key and len(self._sibling_scores) <= 2 * MAX_SIBLING_KEYS:
            return self._sibling_scores
        scores: dict[SiblingKey | None, int] = {None: 0}
        self.score_keys(list(self.sibling_keys.values()), siblings, ref, scores)
        self._sibling_for, self._sibling_scores = key, scores
        return scores

    def score_keys(self, keys: Iterable[SiblingKey | None], siblings: Siblings, ref: float | None,
                   score_of: dict[SiblingKey | None, int]) -> None:
        """Score ``keys`` into ``score_of`` for a rank whose job has ``siblings`` (a Python loop over distinct keys)."""
        decider = self.decider
        for k in keys:
            if k is None:
                continue
            piece = k.piece
            if piece.unmanaged or piece.decision is None:
                score_of[k] = self.score(piece, ref)
                continue
            score = decider.node_score(piece.decision, ref, k.local.locality, k.local.topology_class, siblings)
            score_of[k] = max(0, min(MAX_EXTENDER_PRIORITY, score))

    def _adopt(self, ref: float | None) -> None:
        """Rebuild every kept answer's ``scored`` fragment for ``ref`` (a Python pass over the table: rare)."""
        with self._lock:
            self._version += 1
            self.scored_ref = ref
            self._scored = {}
            scored, score, rows = self.col_scored, self.col_score, self.rows
            for name, a in list(self.items()):
                row = rows[name]
                s = score[row] = self._scored_score(a.piece)
                a.scored = scored[row] = a.host + TAIL[s]
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
            t.drop(name)

    def names(self) -> set[str]:
        return {n for t in list(self._tables.values()) for n in list(t)}

    def __len__(self) -> int:
        return sum(len(t) for t in list(self._tables.values()))

    @property
    def nodes(self) -> int:
        """How many nodes the cache holds (a request naming more than that is not answered inline)."""
        return self._size()
