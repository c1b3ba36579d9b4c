"""Random and hostile input at every decoder of the core: only the documented error, bounded memory.

Decoders and the one exception each may raise:

- ``labels.decode_topology`` / ``serialize.from_dict`` / ``allocation.decode``: ``CodecError``;
- ``serialize.parse_cpulist``: ``ValueError`` (its callers map it);
- ``smi_parser.parse``: ``TopologyParseError``.

Inputs: random bytes and text, random JSON values, and real documents with one
field replaced by a hostile value (deep nesting, 400-digit numbers, ``1e400``,
``NaN``, huge ranges, wrong types). Memory: ``tracemalloc`` peak per example.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import factories
from hostile_json import paths, replace
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labeler.topology import allocation, labels, serialize, smi_parser
from labeler.topology.errors import CodecError, TopologyParseError

KEY = labels.DEFAULT_PREFIX + labels.ANNOTATION_TOPOLOGY
CORPUS = Path(__file__).resolve().parent.parent / "fixtures" / "topo-corpus"
SMI = [p.read_text() for p in sorted(CORPUS.glob("*.txt"))[:12]]
PEAK_MIB = 24  # the largest *valid* document decodes in < 16 MiB (test_limits)
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

HOSTILE: list[Any] = [
    "[" * 5000, "]" * 10, "9" * 400, 10**400, 1e308, float("inf"), float("nan"), -1, True, None, "",
    "0-1000000", "0-8191," * 500, "x" * 300_000, json.loads("[" * 20 + "]" * 20), {"a": {"b": {}}},
    ["X"] * 300, "\x00\ud800", "NV99999", [None] * 9,
]
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=12),
                      st.sampled_from(HOSTILE))
json_value = st.recursive(json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c,
                                                                                         max_size=4), max_leaves=20)
texts = st.one_of(st.text(max_size=400), st.binary(max_size=400).map(lambda b: b.decode("latin-1")))


@contextmanager
def bounded_memory() -> Iterator[None]:
    tracemalloc.start()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        assert peak < PEAK_MIB, f"decoder peaked at {peak:.1f} MiB"
    finally:
        tracemalloc.stop()


def only(errors: tuple[type[Exception], ...], fn: Callable[[], object]) -> None:
    """Run ``fn``: it may succeed or raise one of ``errors``; anything else fails the test."""
    with suppress(errors):
        fn()


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True, separators=(",", ":"))


@SETTINGS
@given(texts)
def test_random_text_at_every_text_decoder(text: str) -> None:
    with bounded_memory():
        only((CodecError,), lambda: labels.decode_topology({KEY: text}))
        only((CodecError,), lambda: allocation.decode(text))
        only((ValueError,), lambda: serialize.parse_cpulist(text))
        only((TopologyParseError,), lambda: smi_parser.parse(text))


@SETTINGS
@given(json_value)
def test_random_json_at_the_document_decoders(value: Any) -> None:
    with bounded_memory():
        only((CodecError,), lambda: serialize.from_dict(value))
        text = dumps(value)
        only((CodecError,), lambda: labels.decode_topology({KEY: text}))
        only((CodecError,), lambda: allocation.decode(text))


DGX1 = serialize.to_dict(factories.dgx1_v100())
DGX1["gpus"][0]["cpu_affinity"] = "0-19,40-59"
ALLOC = json.loads(allocation.encode(allocation.AllocationState(frozenset({0, 1, 5}), {2: "ml/a", 3: "ml/b"}, 17)))


@SETTINGS
@given(st.sampled_from(paths(DGX1)), json_value, st.sampled_from(paths(ALLOC)), json_value)
def test_real_documents_with_one_hostile_field(tpath: tuple[Any, ...], tval: Any, apath: tuple[Any, ...],
                                               aval: Any) -> None:
    topo_doc = replace(json.loads(json.dumps(DGX1)), tpath, tval)
    alloc_doc = replace(json.loads(json.dumps(ALLOC)), apath, aval)
    with bounded_memory():
        only((CodecError,), lambda: labels.decode_topology({KEY: dumps(topo_doc)}))
        only((CodecError,), lambda: allocation.decode(dumps(alloc_doc)))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(SMI), st.integers(0, 2000), st.sampled_from(
    ["\n" * 30_000, "GPU0 " * 50_000, "NV1" * 60_000, "0-8191," * 40_000, "\t" * 600_000, "[" * 100_000]))
def test_real_smi_text_with_a_hostile_insert(text: str, at: int, insert: str) -> None:
    at = min(at, len(text))
    with bounded_memory():
        only((TopologyParseError,), lambda: smi_parser.parse(text[:at] + insert + text[at:]))
