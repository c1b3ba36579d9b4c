"""A request's answer from an :class:`~extender.answers.AnswerTable`: C-level passes over its names.

Why two ways to read the same table: per name, everything here is a C-level pass, and the
cheapest pass CPython offers is one ``operator.itemgetter(*names)`` call on a plain dict
(~15 ns a name, no Python frame, no iterator): the table's columns (one dict per fragment,
:attr:`AnswerTable.col_passed` …) are read that way when **every** name of the request is kept
there and nothing changed the table while they were read (its ``version``). Otherwise (a name
met for the first time, a name the cache does not know, a table whose answers carry inexact
placements, a reference the table has not adopted) the request takes the **general** path:
``map(table.__getitem__, names)`` (which answers and keeps missing names) and attribute passes
over the answers. Both give the same bytes (``tests/extender/test_ext_answers.py`` runs both
against the reference path); the general path is also what fills the columns for the next
request.

Per request at 5,000 names (docs/performance.md): filter three ``bytes.join`` of the columns
(passed, failed, unresolvable fragments); prioritize one count of the names' pieces (its
reference, and the score metric) and one join of the kept scored fragments; a later rank of a
multi-node job one pass for its nodes' sibling keys, one for their scores and one join of each
name's element for its score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, compress
from operator import attrgetter, itemgetter
from typing import Any

from extender.answers import FAILED, TAIL, UNJUDGED, UNRESOLVABLE, AnswerTable, NodeAnswer, Piece, SiblingKey
from extender.wire import MAX_EXTENDER_PRIORITY
from policy.scoring import Rule
from policy.siblings import Siblings

__all__ = ["FilterOutcome", "PrioritizeOutcome", "Unjudged", "answer_filter", "answer_prioritize"]

_CODE = attrgetter("code")
_PASSED = attrgetter("passed")
_FAILED = attrgetter("failed")
_REFUSED = attrgetter("refused")
_UNRESOLVABLE = attrgetter("unresolvable")
_INEXACT = attrgetter("inexact")
_SIBLING_KEY = attrgetter("sibling_key")
_PIECE = attrgetter("piece")
_HOST = attrgetter("host")
_SCORES = range(MAX_EXTENDER_PRIORITY + 1)


@dataclass(frozen=True, slots=True)
class Unjudged:
    """Nodes of one request that were not judged for one reason: how many, and the first few names (for logs)."""

    count: int
    examples: list[str]


@dataclass(slots=True)
class FilterOutcome:
    body: bytes
    passed: int
    failed: int
    unresolvable: int
    inexact: int
    unjudged: dict[str, Unjudged]
    errors: list[tuple[str, BaseException]]
    columns: bool = False  # answered from the table's columns (else: the general path)


@dataclass(slots=True)
class PrioritizeOutcome:
    body: bytes
    inexact: int
    unjudged: dict[str, Unjudged]
    errors: list[tuple[str, BaseException]]
    rule: Rule = Rule.NONE
    reference: float | None = None
    histogram: dict[int, int] | None = None  # score → nodes given it (the score metric)
    columns: bool = False  # answered from the table's columns (else: the general path)


def _unjudged(names: Sequence[str], codes: Sequence[int], reason_at: Callable[[int], str | None]
              ) -> dict[str, Unjudged]:
    """Not-judged nodes of a request by reason (not ours, unknown, each fail-open reason)."""
    if UNJUDGED not in codes:
        return {}
    out: dict[str, list[str]] = {}
    at = -1
    for _ in range(codes.count(UNJUDGED)):
        at = codes.index(UNJUDGED, at + 1)
        out.setdefault(reason_at(at) or "no_data", []).append(names[at])
    return {r: Unjudged(len(v), v[:5]) for r, v in out.items()}


def _by_answers(answers: list[NodeAnswer]) -> Callable[[int], str | None]:
    return lambda at: answers[at].entry.group.reason


def _by_table(table: AnswerTable, names: Sequence[str]) -> Callable[[int], str | None]:
    return lambda at: table[names[at]].entry.group.reason


def _getter(names: Sequence[str], table: AnswerTable) -> tuple[itemgetter[Any], int] | None:
    """An ``itemgetter`` of the names' rows in the table's columns, and the table's version; None: the general path.

    None when a name is not kept (met for the first time, or unknown to the cache), while the
    table changes, or when its answers carry inexact placements (counted per name there).
    ``itemgetter`` of one item returns the item, not a tuple: a request of fewer than two names
    takes the general path too (it costs nothing there).
    """
    v = table.version
    if len(names) < 2 or v & 1 or table.inexact:
        return None
    try:
        rows = itemgetter(*names)(table.rows)
    except KeyError:
        return None
    return itemgetter(*rows), v


# -- filter ---------------------------------------------------------------------------------------------
def answer_filter(names: Sequence[str], table: AnswerTable) -> FilterOutcome:
    """The ``ExtenderFilterResult`` bytes for a ``NodeNames`` request (the reference path's bytes).

    A name listed twice (kube-scheduler never does) is listed twice in ``FailedNodes`` too, with
    the same reason: Go's decoder keeps one key of an object, so the meaning is the reference
    path's (which writes a dict), not its bytes.
    """
    return _filter_columns(names, table) or _filter_answers(names, table)


def _filter_columns(names: Sequence[str], table: AnswerTable) -> FilterOutcome | None:
    g = _getter(names, table)
    if g is None:
        return None
    get, v = g
    passed = b"".join(get(table.col_passed))
    failed = b"".join(get(table.col_failed)) if table.refuses else b""
    unres = b"".join(get(table.col_unresolvable)) if table.refuses else b""
    codes: tuple[int, ...] | None = None if table.commas and not table.unjudged else get(table.col_code)
    if table.version != v:  # the table changed while it was read
        return None
    out = _filter_body(names, table, passed, failed, unres, codes, 0, _by_table(table, names))
    out.columns = True
    return out


def _filter_answers(names: Sequence[str], table: AnswerTable) -> FilterOutcome:
    answers = list(map(table.__getitem__, names))
    refused = list(compress(answers, map(_REFUSED, answers))) if table.refuses else []
    codes = None if table.commas and not table.unjudged else list(map(_CODE, answers))
    inexact = sum(map(_INEXACT, answers)) if table.inexact else 0
    return _filter_body(names, table, b"".join(map(_PASSED, answers)), b"".join(map(_FAILED, refused)),
                        b"".join(map(_UNRESOLVABLE, refused)), codes, inexact, _by_answers(answers))


def _filter_body(names: Sequence[str], table: AnswerTable, passed: bytes, failed: bytes, unres: bytes,
                 codes: Sequence[int] | None, inexact: int, reason_at: Callable[[int], str | None]) -> FilterOutcome:
    if table.commas:  # one comma per refused fragment: count them in the bytes (memchr speed), not per node
        n_failed, n_unres = failed.count(b","), unres.count(b",")
    else:
        assert codes is not None
        n_failed, n_unres = codes.count(FAILED), codes.count(UNRESOLVABLE)
    body = b"".join((b'{"Nodes":null,"NodeNames":[', passed[:-1], b'],"FailedNodes":{', failed[:-1],
                     b'},"FailedAndUnresolvableNodes":{', unres[:-1], b'},"Error":""}'))
    unjudged = _unjudged(names, codes, reason_at) if table.unjudged and codes is not None else {}
    return FilterOutcome(body, len(names) - n_failed - n_unres, n_failed, n_unres, inexact, unjudged,
                         table.take_errors())


# -- prioritize -----------------------------------------------------------------------------------------
def answer_prioritize(names: Sequence[str], table: AnswerTable, siblings: Siblings | None) -> PrioritizeOutcome:
    """The ``HostPriorityList`` bytes for a ``NodeNames`` request (``table.shape`` None: 0 everywhere).

    The request's distinct pieces (one C-level pass) give its reference; the scores follow from it.
    """
    if siblings is not None and table.per_node and table.shape is not None:
        return _ranked_columns(names, table, siblings) or _ranked_answers(names, table, siblings)
    return _scored_columns(names, table) or _scored_answers(names, table)


def _outcome(table: AnswerTable, items: bytes, ref: float | None, histogram: list[int], inexact: int,
             unjudged: dict[str, Unjudged]) -> PrioritizeOutcome:
    return PrioritizeOutcome(b"[" + items + b"]", inexact, unjudged, table.take_errors(), table.rule, ref,
                             dict(enumerate(histogram)))


def _histogram(table: AnswerTable, counts: Counter[Piece], ref: float | None, scores: dict[Piece, int]
               ) -> list[int]:
    histogram = [0] * (MAX_EXTENDER_PRIORITY + 1)
    scored = scores.get
    for piece, n in counts.items():
        s = scored(piece)
        histogram[table.score(piece, ref) if s is None else s] += n
    return histogram


def _scored_columns(names: Sequence[str], table: AnswerTable) -> PrioritizeOutcome | None:
    """Every name kept and the request's reference the table's: its distinct pieces, one join, one count."""
    g = _getter(names, table)
    if g is None:
        return None
    get, v = g
    try:
        ref = table.reference(set(get(table.col_piece)))
        if ref != table.scored_ref:  # the general path scores it (and may adopt it)
            return None
        items = b"".join(get(table.col_scored))[:-1]
        packed = bytes(get(table.col_score))  # every score is 0..10: counted at memchr speed
        codes = get(table.col_code) if table.unjudged else ()
    except KeyError:
        return None
    if table.version != v:
        return None
    unjudged = _unjudged(names, codes, _by_table(table, names)) if codes else {}
    out = _outcome(table, items, ref, [packed.count(s) for s in _SCORES], 0, unjudged)
    out.columns = True
    return out


def _scored_answers(names: Sequence[str], table: AnswerTable) -> PrioritizeOutcome:
    answers = list(map(table.__getitem__, names))
    counts = Counter(map(_PIECE, answers))
    ref = table.reference(counts)
    joined, scores = table.join_scored(answers, counts, ref)
    inexact = sum(map(_INEXACT, answers)) if table.inexact else 0
    unjudged = _unjudged(names, list(map(_CODE, answers)), _by_answers(answers)) if table.unjudged else {}
    return _outcome(table, joined[:-1], ref, _histogram(table, counts, ref, scores), inexact, unjudged)


def _ranked_columns(names: Sequence[str], table: AnswerTable, siblings: Siblings) -> PrioritizeOutcome | None:
    """A rank with placed siblings, every name kept: sibling keys, their scores, each name's element."""
    g = _getter(names, table)
    if g is None:
        return None
    get, v = g
    keys: tuple[SiblingKey | None, ...] = get(table.col_key)
    ref = table.reference(set(get(table.col_piece)))
    hosts: tuple[bytes, ...] = get(table.col_host)
    codes = get(table.col_code) if table.unjudged else ()
    if table.version != v:
        return None
    scores = _key_scores(keys, table, siblings, ref)
    unjudged = _unjudged(names, codes, _by_table(table, names)) if codes else {}
    out = _ranked_outcome(table, hosts, scores, ref, 0, unjudged)
    out.columns = True
    return out


def _ranked_answers(names: Sequence[str], table: AnswerTable, siblings: Siblings) -> PrioritizeOutcome:
    answers = list(map(table.__getitem__, names))
    ref = table.reference(set(map(_PIECE, answers)))
    scores = _key_scores(list(map(_SIBLING_KEY, answers)), table, siblings, ref)
    inexact = sum(map(_INEXACT, answers)) if table.inexact else 0
    unjudged = _unjudged(names, list(map(_CODE, answers)), _by_answers(answers)) if table.unjudged else {}
    return _ranked_outcome(table, list(map(_HOST, answers)), scores, ref, inexact, unjudged)


def _key_scores(keys: Sequence[SiblingKey | None], table: AnswerTable, siblings: Siblings, ref: float | None
                ) -> Sequence[int]:
    """Each name's score from its sibling key (None: a name the cache does not know, 0)."""
    score_of = table.sibling_scores(ref, siblings)
    scores = itemgetter(*keys) if len(keys) > 1 else (lambda d: tuple(d[k] for k in keys))
    try:
        return scores(score_of)
    except KeyError:  # keys this (ref, siblings) has not scored yet: the new ones, then the lookup again
        table.score_keys(set(keys) - score_of.keys(), siblings, ref, score_of)
        return scores(score_of)


def _ranked_outcome(table: AnswerTable, hosts: Sequence[bytes], scores: Sequence[int], ref: float | None,
                    inexact: int, unjudged: dict[str, Unjudged]) -> PrioritizeOutcome:
    """Each name's prioritize element: its host prefix, then its score's tail (``7},``), in one join."""
    tails = itemgetter(*scores)(TAIL) if len(scores) > 1 else tuple(TAIL[s] for s in scores)
    items = b"".join(chain.from_iterable(zip(hosts, tails, strict=True)))[:-1]
    packed = bytes(scores)  # every score is 0..10: counted at memchr speed
    return _outcome(table, items, ref, [packed.count(s) for s in _SCORES], inexact, unjudged)
