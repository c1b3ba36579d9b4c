"""Bounded decoders: every limit of ``labeler.topology.limits`` refuses with a ``CodecError`` naming it.

Each "Why" case of issue #8 that lives in the core has a test here that failed
before the limits existed (the ``before`` note says how):

* ``cpu_affinity: "0-1000000"`` in one Node annotation pinned +530 MiB;
* a deeply nested JSON value in the topology annotation or the allocation raised
  ``RecursionError`` (which aborted the extender's cache refresh);
* a 1,000-GPU ``nvidia-smi`` matrix ended in a ``RecursionError`` traceback;
* a 24-GPU non-clique NVLink topology with k = 12 ran the placement search for 80 s.

Wall time is never asserted: memory is measured with ``tracemalloc`` and search
work with the placer's own step counter.
"""

from __future__ import annotations

import contextlib
import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import factories
import pytest

from labeler.topology import allocation, bounded, labels, limits, serialize, smi_parser
from labeler.topology.errors import CodecError, TopologyParseError
from labeler.topology.links import SELF, parse_link_token
from labeler.topology.model import Gpu, Topology
from labeler.topology.placement import Placer

PREFIX = labels.DEFAULT_PREFIX
KEY = PREFIX + labels.ANNOTATION_TOPOLOGY


def dgx1_doc() -> dict[str, Any]:
    """The DGX-1 V100 document with real-looking affinity (2 sockets × 20 cores × 2 threads)."""
    doc = serialize.to_dict(factories.dgx1_v100())
    for i, gpu in enumerate(doc["gpus"]):
        gpu["cpu_affinity"] = "0-19,40-59" if i < 4 else "20-39,60-79"
    return doc


def annotation(doc: Any) -> dict[str, str]:
    return {KEY: json.dumps(doc, separators=(",", ":"))}


def peak_mib(fn: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        with contextlib.suppress(CodecError, TopologyParseError):
            fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def test_real_document_still_round_trips() -> None:
    doc = dgx1_doc()
    topo = labels.decode_topology(annotation(doc))
    assert topo is not None and serialize.to_dict(topo) == doc
    # GPUs of one socket share one decoded set (decoded once, held once)
    assert topo.gpus[0].cpu_affinity is topo.gpus[3].cpu_affinity


def test_huge_cpu_range_is_refused_without_building_it() -> None:
    """Before: ``0-1000000`` decoded into a million-element set (+530 MiB in the extender)."""
    doc = dgx1_doc()
    doc["gpus"][0]["cpu_affinity"] = "0-1000000"
    with pytest.raises(CodecError, match="8191"):
        labels.decode_topology(annotation(doc))
    assert peak_mib(lambda: labels.decode_topology(annotation(doc))) < 2


def test_affinity_lists_are_bounded_in_total() -> None:
    """Each list under the id limit, but 8 distinct full lists: 65,536 ids > MAX_AFFINITY_IDS."""
    doc = dgx1_doc()
    for i, gpu in enumerate(doc["gpus"]):
        gpu["cpu_affinity"] = f"{i}-8191"
    with pytest.raises(CodecError, match="affinity lists expand"):
        labels.decode_topology(annotation(doc))
    assert peak_mib(lambda: labels.decode_topology(annotation(doc))) < 2


def test_repeated_ranges_do_not_loop() -> None:
    with pytest.raises(ValueError, match="more ids"):
        serialize.parse_cpulist(",".join(["0-8191"] * 10_000))


@pytest.mark.parametrize("where", ["topology", "allocation"])
def test_deep_nesting_is_a_codec_error_not_a_recursion_error(where: str) -> None:
    """Before: ``RecursionError`` escaped ``decode_topology`` / ``allocation.decode``."""
    deep = '{"v":1,"gpus":' + "[" * 100_000 + "]" * 100_000 + "}"
    with pytest.raises(CodecError, match=r"nested|over the limit"):
        if where == "topology":
            labels.decode_topology({KEY: deep})
        else:
            allocation.decode(deep)
    shallow_but_deep = '{"v":1,"free":"0","used":' + "[" * 40 + "]" * 40 + "}"
    with pytest.raises(CodecError, match="nested 41 deep"):
        allocation.decode(shallow_but_deep)


def _triangle(n: int) -> list[str]:
    """Format v2 links: the upper triangle of an all-SYS matrix, one string per row."""
    return [" ".join(["SYS"] * (n - 1 - i)) for i in range(n - 1)]


def _gpus(doc: dict[str, Any], n: int) -> dict[str, Any]:
    doc["gpus"] = [{"index": i} for i in range(n)]
    doc["nics"] = []
    doc["links"] = _triangle(n)
    return doc


def _nics(doc: dict[str, Any], n: int) -> dict[str, Any]:
    doc["gpus"], doc["nics"] = [{"index": 0}], [{"column": f"NIC{i}"} for i in range(n)]
    doc["links"] = _triangle(n + 1)
    return doc


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(doc: dict[str, Any]) -> dict[str, Any]:
        target = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        return doc
    return apply


TOPOLOGY_LIMITS: list[tuple[str, Callable[[dict[str, Any]], dict[str, Any]], str]] = [
    ("65 GPUs", lambda d: _gpus(d, limits.MAX_GPUS + 1), "over the limit of 64"),
    ("129 NICs", lambda d: _nics(d, limits.MAX_NICS + 1), "over the limit of 128"),
    ("GPU index 1024", _set(("gpus", 0, "index"), 1024), "outside 0..1023"),
    ("GPU index as float", _set(("gpus", 0, "index"), 1e308), "expected an integer"),
    ("GPU index as bool", _set(("gpus", 0, "index"), True), "expected an integer"),
    ("GPU NUMA id 5000", _set(("gpus", 0, "gpu_numa_id"), 5000), "outside 0..4095"),
    ("NUMA id 5000", _set(("gpus", 0, "numa_affinity"), "5000"), "4095"),
    ("CPU id 8192", _set(("gpus", 0, "cpu_affinity"), "8192"), "8191"),
    ("name of 257 chars", _set(("gpus", 0, "name"), "x" * 257), "257 characters"),
    ("name as a list", _set(("gpus", 0, "name"), ["x"]), "expected a string"),
    ("uuid as an object", _set(("gpus", 0, "uuid"), {"a": 1}), "expected a string"),
    ("NIC column as int", _set(("nics", 0, "column"), 5), "expected a string"),
    ("short link row", _set(("links", 0), "NV1"), "1 cells, expected 8"),
    ("missing link rows", _set(("links",), []), "0 rows for 9 endpoints"),
    ("link row as list", _set(("links", 1), ["NV1"]), "expected a string"),
    ("link row of 10 KB", _set(("links", 1), "NV1 " * 2500), "over the limit of 42"),
    ("unknown link token", _set(("links", 0), "NV1X NV1 NV2 NV2 SYS SYS SYS NODE"), "unknown link token"),
    ("common as list", _set(("common",), ["x"]), "expected an object"),
    ("common cpulist too large", lambda d: {**d, "common": {"cpu_affinity": "0-9000"},
                                            "gpus": [{"index": g["index"]} for g in d["gpus"]]}, "8191"),
    ("pcie width 1000", _set(("gpus", 0, "pcie"), [4, 1000, 4, 16]), "outside 0..64"),
    ("NIC rate as string", _set(("nics", 0, "rate_mbps"), "400G"), "expected an integer"),
    ("p2p rows of wrong type", _set(("p2p",), [5]), "expected a string"),
    ("source of 1000 chars", _set(("source",), "s" * 1000), "1000 characters"),
    ("gpus as object", _set(("gpus",), {"0": {}}), "expected a list"),
    ("version 3", _set(("v",), 3), "unsupported topology format version"),
]


@pytest.mark.parametrize(("case", "damage", "message"), TOPOLOGY_LIMITS, ids=[c[0] for c in TOPOLOGY_LIMITS])
def test_topology_document_limits(case: str, damage: Callable[[dict[str, Any]], dict[str, Any]],
                                  message: str) -> None:
    with pytest.raises(CodecError, match=message):
        labels.decode_topology(annotation(damage(dgx1_doc())))


def test_topology_annotation_size_and_constants() -> None:
    doc = dgx1_doc()
    doc["gpus"][0]["name"] = "x" * limits.MAX_TOPOLOGY_JSON_CHARS
    with pytest.raises(CodecError, match="characters, over the limit of 262144"):
        labels.decode_topology(annotation(doc))
    for text in ("NaN", "Infinity", '{"v": 1, "gpus": [{"index": NaN}]}'):
        with pytest.raises(CodecError, match="not JSON"):
            labels.decode_topology({KEY: text})
    with pytest.raises(CodecError, match="not JSON"):
        labels.decode_topology({KEY: '{"v": 1, "x": ' + "9" * 5000 + "}"})  # int() digit limit
    with pytest.raises(CodecError, match="expected a string"):
        labels.decode_topology({KEY: 5})  # type: ignore[dict-item]


def test_the_largest_allowed_topology_decodes() -> None:
    """64 GPUs + 128 NICs, every GPU with its own 128-CPU list: within every limit."""
    n = limits.MAX_GPUS + limits.MAX_NICS
    doc = {
        "v": 1,
        "gpus": [{"index": i, "cpu_affinity": f"{i * 128}-{i * 128 + 127}", "uuid": f"GPU-{i:036d}"}
                 for i in range(limits.MAX_GPUS)],
        "nics": [{"column": f"NIC{i}", "device": f"mlx5_{i}"} for i in range(limits.MAX_NICS)],
        "links": [["X" if i == j else "SYS" for j in range(n)] for i in range(n)],
    }
    raw = annotation(doc)
    assert len(raw[KEY]) < limits.MAX_TOPOLOGY_JSON_CHARS
    topo = labels.decode_topology(raw)
    assert topo is not None and len(topo.gpus) == 64 and len(topo.nics) == 128
    assert peak_mib(lambda: labels.decode_topology(raw)) < 16


ALLOCATION_LIMITS = [
    ("free beyond GPU index limit", '{"v":1,"free":"0-5000","used":{}}', "1023"),
    ("free as number", '{"v":1,"free":5,"used":{}}', "expected a string"),
    ("used key not an index", '{"v":1,"free":"0","used":{"x":"ns/p"}}', "not a GPU index"),
    ("used key huge", '{"v":1,"free":"0","used":{"99999":"ns/p"}}', "not a GPU index"),
    ("pod key too long", '{"v":1,"free":"0","used":{"1":"' + "p" * 400 + '"}}', "400 characters"),
    ("pod key as list", '{"v":1,"free":"0","used":{"1":["x"]}}', "expected a string"),
    ("too many used", '{"v":1,"free":"","used":{' + ",".join(f'"{i}":"n/p"' for i in range(65)) + "}}",
     "over the limit of 64"),
    ("ts as float", '{"v":1,"free":"0","used":{},"ts":1e400}', "unix seconds"),
    ("ts as string", '{"v":1,"free":"0","used":{},"ts":"now"}', "unix seconds"),
    ("NaN", '{"v":1,"free":"0","used":{},"ts":NaN}', "not JSON"),
    ("oversized", '{"v":1,"free":"0","used":{},"pad":"' + "x" * 70_000 + '"}', "over the limit of 65536"),
    ("not a string", 5, "expected a string"),
]


@pytest.mark.parametrize(("case", "value", "message"), ALLOCATION_LIMITS, ids=[c[0] for c in ALLOCATION_LIMITS])
def test_allocation_limits(case: str, value: Any, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        allocation.decode(value)


def test_allocation_round_trip_is_unchanged() -> None:
    state = allocation.AllocationState(frozenset({0, 1, 2, 5}), {3: "ml/train-0", 4: "ml/train-0"}, 1_700_000_000)
    assert allocation.decode(allocation.encode(state)) == state


# -- nvidia-smi text -----------------------------------------------------------------------------


def smi_text(n: int, *, sep: str = "\t") -> str:
    header = sep + sep.join(f"GPU{i}" for i in range(n)) + f"{sep}CPU Affinity{sep}NUMA Affinity"
    rows = [f"GPU{i}{sep}" + sep.join("X" if i == j else "SYS" for j in range(n)) + f"{sep}0-7{sep}0"
            for i in range(n)]
    return header + "\n" + "\n".join(rows) + "\n"


def test_a_1000_gpu_matrix_is_a_clean_error() -> None:
    """Before: parsed in ~5 s, then the audit's placement search ended in RecursionError."""
    with pytest.raises(TopologyParseError, match="over the limit"):
        smi_parser.parse(smi_text(1000))
    compact = smi_text(200, sep=" ")  # under the size limit: refused by the GPU count
    assert len(compact) < limits.MAX_SMI_CHARS
    with pytest.raises(TopologyParseError, match="more than 195 columns") as err:
        smi_parser.parse(compact)
    assert err.value.line == 1


def test_64_gpus_parse_and_65_do_not() -> None:
    assert len(smi_parser.parse(smi_text(64)).gpus) == 64
    with pytest.raises(TopologyParseError, match="65 GPUs"):
        smi_parser.parse(smi_text(65))


def test_smi_text_size_limits() -> None:
    with pytest.raises(TopologyParseError, match="lines is over the limit"):
        smi_parser.parse("\n" * limits.MAX_SMI_LINES + smi_text(2))
    with pytest.raises(TopologyParseError, match="line of") as err:
        smi_parser.parse(smi_text(2) + "x" * (limits.MAX_SMI_LINE_CHARS + 1))
    assert err.value.line == 4


def test_an_idlist_cell_of_repeated_ranges_is_refused() -> None:
    text = smi_text(2).replace("\t0-7\t0\n", "\t" + ",".join(["0-8191"] * 2000) + "\t0\n", 1)
    topo = smi_parser.parse(text)
    assert topo.gpus[0].cpu_affinity is None  # unreadable: left unknown with a warning
    assert any("unreadable" in w for w in topo.warnings)


# -- placement work ------------------------------------------------------------------------------


def circulant(n: int, offsets: set[int], token: str = "NV2") -> Topology:
    """GPU i and j NVLinked when their distance around a ring of n is in ``offsets``; SYS otherwise."""
    link, sys_ = parse_link_token(token), parse_link_token("SYS")
    rows = [[SELF if i == j else link if min((i - j) % n, (j - i) % n) in offsets else sys_ for j in range(n)]
            for i in range(n)]
    return Topology.from_rows([Gpu(i) for i in range(n)], [], rows)


def test_24_gpu_nvlink_mesh_k12_is_bounded() -> None:
    """Before: 80 s of search (24 GPUs, NVLink to all but the opposite GPU, k = 12)."""
    placer = Placer(circulant(24, set(range(1, 12))))
    got = placer.best(range(24), 12)
    assert got is not None and len(got.gpus) == 12 and got.bottleneck.token == "NV2"
    assert not got.exact  # the budget cut the exact search; the greedy ring is still NVLink
    assert sorted(got.ring) == list(got.gpus)
    assert all(placer.topo.gpu_link(a, b).token == "NV2"  # type: ignore[union-attr]
               for a, b in zip(got.ring, got.ring[1:] + got.ring[:1], strict=True))
    assert placer.last_steps <= 2 * limits.PLACEMENT_STEP_BUDGET + 1_000


def test_bipartite_mesh_without_odd_rings_is_bounded() -> None:
    """K(12,12) has no 13-GPU NVLink ring: both budgets run out, the answer falls back to SYS."""
    link = {True: parse_link_token("NV2"), False: parse_link_token("SYS")}
    rows = [[SELF if i == j else link[(i % 2) != (j % 2)] for j in range(24)] for i in range(24)]
    placer = Placer(Topology.from_rows([Gpu(i) for i in range(24)], [], rows))
    got = placer.best(range(24), 13)
    assert got is not None and got.bottleneck.token == "SYS" and not got.exact
    assert placer.last_steps <= 2 * limits.PLACEMENT_STEP_BUDGET + 1_000


def test_the_hardest_16_gpu_mesh_is_exact() -> None:
    """16 GPUs, NVLink to all but the opposite GPU: no budget below 17 GPUs, so the answer is exact."""
    placer = Placer(circulant(16, set(range(1, 8))))
    got = placer.best(range(16), 12)
    assert got is not None and got.exact and got.bottleneck.token == "NV2"
    assert got.gpus == tuple(range(12))  # the lowest-indexed of the equally tight sets


def test_a_64_gpu_ring_does_not_recurse() -> None:
    """Before: the ring search recursed once per GPU of the set."""
    placer = Placer(circulant(64, {1}))
    got = placer.best(range(64), 64)
    assert got is not None and got.bottleneck.token == "NV2" and len(got.ring) == 64


def test_bounded_json_helpers() -> None:
    assert bounded.json_depth('"[[[["') == 0
    assert bounded.json_depth('[{"a": "}}}"}]') == 2
    with pytest.raises(CodecError, match="expected a string"):
        bounded.loads(b"{}", what="x", max_chars=10)


def test_byte_cache_holds_its_byte_budget() -> None:
    from labeler.topology.bytecache import ByteCache

    cache: ByteCache[int, bytes] = ByteCache(max_bytes=10_000, max_entries=1_000)
    for i in range(500):
        cache.put(i, b"x", 100 + i % 7 * 50)
        assert cache.bytes <= 10_000
    assert 0 < len(cache) < 100 and cache.get(499) == b"x" and cache.get(0) is None  # oldest evicted first
    assert cache.put(-1, b"huge", 20_000) == b"huge" and cache.get(-1) is None  # larger than the budget: not kept


def test_placers_are_bounded_by_bytes() -> None:
    from labeler.topology import placement

    for n in range(2, 40):  # distinct topologies
        placement.placer_for(Topology.from_rows([Gpu(i) for i in range(n)], [],
                                                [[SELF if i == j else parse_link_token("SYS") for j in range(n)]
                                                 for i in range(n)]))
    assert placement._PLACERS.bytes <= placement._PLACERS.max_bytes


#: input-size limits that stay outside limits.py, each named in docs/reliability.md ("Not in limits.py")
_ELSEWHERE_ON_PURPOSE = {
    "extender/server.py": {"MAX_HEAD_BYTES"},  # an extender request limit, beside its HTTP parser
}


def test_every_input_size_limit_is_defined_in_limits_py() -> None:
    """A number literal bound to a MAX_*CHARS/BYTES/ENTRIES/ROWS/LINES/NODES/DEPTH name outside limits.py
    is a second place for a limit (review: "every limit in one place"); modules import them instead."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"^(_?MAX_[A-Z_]*(?:CHARS|BYTES|ENTRIES|ROWS|LINES|NODES|DEPTH)[A-Z_]*)\s*(?::[^=]+)?=\s*"
                         r"[(\d]", re.M)
    found = {}
    for package in ("labeler", "policy", "extender", "gputopo", "simulator", "kubeio"):
        for path in (root / package).rglob("*.py"):
            rel = path.relative_to(root).as_posix()
            if rel == "labeler/topology/limits.py" or "/_gen/" in rel:
                continue
            names = set(pattern.findall(path.read_text(encoding="utf-8"))) - _ELSEWHERE_ON_PURPOSE.get(rel, set())
            if names:
                found[rel] = sorted(names)
    assert found == {}, f"limits defined outside labeler/topology/limits.py: {found}"
    doc = (root / "docs" / "reliability.md").read_text(encoding="utf-8")
    assert "Not in `limits.py`, on purpose" in doc and "extender's request limits" in doc
    assert limits.MAX_ENDPOINTS == serialize.MAX_ENDPOINTS
