"""Plain-JSON form of a :class:`~labeler.topology.model.Topology` (format v2; v1 still decoded).

Why a separate module: the same dict serves golden test files, ``audit --json``
and (compacted) the node annotation, so it has exactly one definition. The form
is versioned (``"v"``) and lossless: ``from_dict(to_dict(t)) == t`` (except the
reader's ``warnings`` and ``source``, which are not part of the node's facts).

Format v2 (written since label schema v2), small because it rides on the Node::

    {"v": 2,
     "common": {"name": "NVIDIA H100 80GB HBM3", "arch": "hopper", "cc": "9.0",
                "nvlink_version": "4.0", "pcie": [null, 16, 5, 16], "mig": false},
     "gpus":   [{"index": 0, "bus_id": "0000:18:00.0", "uuid": "GPU-…",
                 "cpu_affinity": "0-47", "numa_affinity": "0"}, …],
     "nics":   [{"device": "mlx5_0", "rate_mbps": 400000}, …],
     "links":  ["NV18 NV18 … PIX SYS", "NV18 … SYS", …],
     "p2p":    "OK"}

* ``gpus``: ``index`` always; every other key only when known. Keys whose value
  is the same on every GPU (two or more) are written once in ``common``.
  ``pcie`` is ``[gen, width, max_gen, max_width]`` (current then maximum; ``null``
  unknown). CPU and NUMA sets are Linux cpulists (``"0-47,96-143"``). ``mig``:
  MIG mode enabled (``true``/``false``), absent when unknown or not MIG-capable.
* ``nics``: ``column`` only when it is not ``NIC<position>``; ``device``,
  ``rate_mbps`` when known.
* ``links``: the upper triangle of the symmetric matrix over GPUs then NICs,
  row *i* holding the cells (i, j) for j > i as `nvidia-smi` tokens separated by
  one blank, ``?`` for unknown (n-1 rows for n endpoints).
* ``p2p``: P2P status per GPU pair (:class:`~labeler.topology.model.P2P`): one
  token when every pair has it, else upper-triangle rows like ``links`` over the
  GPUs; absent when no source reported it.

Format v1 (``"v": 1``, label schema v1) is the same model without the v2 facts,
``links`` as a full square matrix of JSON tokens (``null`` unknown), no
``common``, NIC ``column`` always written. :func:`from_dict` reads both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from labeler.topology import bounded, limits, validate
from labeler.topology.errors import CodecError
from labeler.topology.links import SELF, Link, parse_link_token
from labeler.topology.model import P2P, Gpu, Nic, PcieLink, Topology

__all__ = [
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "dumps",
    "format_cpulist",
    "from_dict",
    "parse_cpulist",
    "to_dict",
]

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
#: GPUs + NICs one document may describe (limits.MAX_ENDPOINTS): bounded before the n² matrix is allocated
MAX_ENDPOINTS = limits.MAX_ENDPOINTS
UNKNOWN_TOKEN = "?"

#: GPU keys that may move to ``common`` (never index/uuid/bus_id: they identify one GPU)
_SHAREABLE = ("name", "cpu_affinity", "numa_affinity", "gpu_numa_id", "arch", "cc", "nvlink_version", "pcie", "mig")


def parse_cpulist(text: str, *, max_id: int = limits.MAX_CPU_ID) -> frozenset[int]:
    """Read a Linux cpulist (``"0-3,8,10-11"``) into a set; ``ValueError`` past ``max_id`` (bounded).

    >>> sorted(parse_cpulist("0-2,7"))
    [0, 1, 2, 7]
    """
    return bounded.cpulist(text, max_id=max_id)


def format_cpulist(cpus: frozenset[int] | set[int]) -> str:
    """Inverse of :func:`parse_cpulist`, with maximal ranges.

    >>> format_cpulist({0, 1, 2, 7})
    '0-2,7'
    """
    items = sorted(cpus)
    parts: list[str] = []
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        parts.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ",".join(parts)


def _opt_set(value: frozenset[int] | None) -> str | None:
    return None if value is None else format_cpulist(value)


def _gpu_fields(g: Gpu) -> dict[str, Any]:
    pcie = None if g.pcie is None or not g.pcie.known else [g.pcie.gen, g.pcie.width, g.pcie.max_gen, g.pcie.max_width]
    fields: dict[str, Any] = {
        "index": g.index,
        "name": g.name,
        "bus_id": g.bus_id,
        "uuid": g.uuid,
        "cpu_affinity": _opt_set(g.cpu_affinity),
        "numa_affinity": _opt_set(g.numa_affinity),
        "gpu_numa_id": g.gpu_numa_id,
        "arch": g.arch,
        "cc": g.cc,
        "nvlink_version": g.nvlink_version,
        "pcie": pcie,
        "mig": g.mig,
    }
    return {k: v for k, v in fields.items() if v is not None or k == "index"}


def _triangle(cells: Sequence[Sequence[str | None]]) -> list[str]:
    n = len(cells)
    return [" ".join(UNKNOWN_TOKEN if c is None else c for c in cells[i][i + 1 :]) for i in range(n - 1)]


def to_dict(topo: Topology) -> dict[str, Any]:
    """Lossless JSON-ready dict in format v2 (see the module doc)."""
    gpus = [_gpu_fields(g) for g in topo.gpus]
    common: dict[str, Any] = {}
    if len(gpus) > 1:
        for key in _SHAREABLE:
            if key in gpus[0] and all(key in g and g[key] == gpus[0][key] for g in gpus[1:]):
                common[key] = gpus[0][key]
        for g in gpus:
            for key in common:
                del g[key]
    nics = []
    for pos, n in enumerate(topo.nics):
        d: dict[str, Any] = {}
        if n.column != f"NIC{pos}":
            d["column"] = n.column
        if n.device is not None:
            d["device"] = n.device
        if n.rate_mbps is not None:
            d["rate_mbps"] = n.rate_mbps
        nics.append(d)
    doc: dict[str, Any] = {"v": FORMAT_VERSION}
    if common:
        doc["common"] = common
    doc["gpus"] = gpus
    doc["nics"] = nics
    doc["links"] = _triangle([[None if c is None else c.token for c in row] for row in topo.links])
    if topo.p2p:
        tokens = {c for i, row in enumerate(topo.p2p) for c in row[i + 1 :]}
        if len(tokens) == 1 and None not in tokens:
            doc["p2p"] = next(iter(tokens)).value  # type: ignore[union-attr]
        else:
            doc["p2p"] = _triangle([[None if c is None else c.value for c in row] for row in topo.p2p])
    return doc


def dumps(topo: Topology) -> str:
    """The compact annotation string: :func:`to_dict` without blanks, keys sorted (equal topologies, equal bytes)."""
    return json.dumps(to_dict(topo), separators=(",", ":"), sort_keys=True)


# -- decoding ------------------------------------------------------------------------------
def _set_or_none(d: dict[str, Any], key: str, seen: dict[tuple[str, str], frozenset[int]]) -> frozenset[int] | None:
    v = d.get(key)
    if v is None:
        return None
    text = _str(v, key)
    if (hit := seen.get((key, text))) is None:  # GPUs of one NUMA node share a list: decode (and hold) it once
        max_id = limits.MAX_NUMA_ID if key == "numa_affinity" else limits.MAX_CPU_ID
        hit = seen[key, text] = parse_cpulist(text, max_id=max_id)
    return hit


def _str(v: Any, what: str) -> str:
    if not isinstance(v, str):
        raise CodecError(f"{what} must be a string, got {type(v).__name__}")
    return v


def _opt_str(d: dict[str, Any], key: str) -> str | None:
    v = d.get(key)
    return None if v is None else _str(v, key)


def _opt_int(d: dict[str, Any], key: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        raise CodecError(f"{key} must be an integer, got {v!r}")
    return v


def _list(v: Any, what: str) -> list[Any]:
    if not isinstance(v, list):
        raise CodecError(f"{what} must be a list")
    return v


def _dict(v: Any, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise CodecError(f"{what} must be an object")
    return v


def _pcie(v: Any) -> PcieLink | None:
    if v is None:
        return None
    items = _list(v, "pcie")
    if len(items) != 4 or any(x is not None and (not isinstance(x, int) or isinstance(x, bool)) for x in items):
        raise CodecError(f"pcie must be [gen, width, max_gen, max_width] integers or null, got {v!r}")
    return PcieLink(*items)


def _gpu(d: dict[str, Any], seen: dict[tuple[str, str], frozenset[int]]) -> Gpu:
    index = _opt_int(d, "index")
    if index is None:
        raise CodecError("a GPU without index")
    return Gpu(
        index=index,
        name=_opt_str(d, "name"),
        bus_id=_opt_str(d, "bus_id"),
        uuid=_opt_str(d, "uuid"),
        cpu_affinity=_set_or_none(d, "cpu_affinity", seen),
        numa_affinity=_set_or_none(d, "numa_affinity", seen),
        gpu_numa_id=_opt_int(d, "gpu_numa_id"),
        arch=_opt_str(d, "arch"),
        cc=_opt_str(d, "cc"),
        nvlink_version=_opt_str(d, "nvlink_version"),
        pcie=_pcie(d.get("pcie")),
        mig=_opt_bool(d, "mig"),
    )


def _opt_bool(d: dict[str, Any], key: str) -> bool | None:
    v = d.get(key)
    if v is not None and not isinstance(v, bool):
        raise CodecError(f"{key} must be true or false, got {v!r}")
    return None if v is None else bool(v)


def _rows_from_triangle(rows: list[Any], n: int, what: str) -> list[list[str | None]]:
    """Square matrix (diagonal ``None``) from upper-triangle row strings; checks every count first."""
    if len(rows) != max(n - 1, 0):
        raise CodecError(f"{what}: {len(rows)} rows for {n} endpoints (expected {max(n - 1, 0)})")
    split: list[list[str]] = []
    for i, row in enumerate(rows):
        cells = _str(row, f"{what} row {i}").split(" ") if row else []
        if len(cells) != n - 1 - i:
            raise CodecError(f"{what} row {i}: {len(cells)} cells, expected {n - 1 - i}")
        split.append(cells)
    out: list[list[str | None]] = [[None] * n for _ in range(n)]
    for i, cells in enumerate(split):
        for k, tok in enumerate(cells):
            j = i + 1 + k
            value = None if tok == UNKNOWN_TOKEN else tok
            out[i][j] = out[j][i] = value
    return out


def _link(tok: Any) -> Link | None:
    if tok is None:
        return None
    link = parse_link_token(_str(tok, "link token"))
    if link is None or link == SELF:
        raise CodecError(f"unknown link token {tok!r}")
    return link


def _from_v2(data: dict[str, Any]) -> Topology:
    common = _dict(data.get("common", {}), "common")
    if set(common) - set(_SHAREABLE):
        raise CodecError(f"common holds keys that are not shareable: {sorted(set(common) - set(_SHAREABLE))}")
    gpu_docs = _list(data.get("gpus"), "gpus")
    nic_docs = _list(data.get("nics", []), "nics")
    n_gpu, n = len(gpu_docs), len(gpu_docs) + len(nic_docs)
    if n > MAX_ENDPOINTS:
        raise CodecError(f"{n} endpoints (at most {MAX_ENDPOINTS})")
    seen: dict[tuple[str, str], frozenset[int]] = {}
    gpus = [_gpu({**common, **_dict(g, "gpu")}, seen) for g in gpu_docs]
    nics = []
    for pos, raw in enumerate(nic_docs):
        d = _dict(raw, "nic")
        nics.append(Nic(column=_opt_str(d, "column") or f"NIC{pos}", device=_opt_str(d, "device"),
                        rate_mbps=_opt_int(d, "rate_mbps")))
    cells = _rows_from_triangle(_list(data.get("links"), "links"), n, "links")
    known: dict[str | None, Link | None] = {}  # a document holds a handful of distinct tokens: read each once
    rows: list[list[Link | None]] = [[SELF if i == j else None for j in range(n)] for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            tok = cells[i][j]
            link = known[tok] if tok in known else known.setdefault(tok, _link(tok))
            rows[i][j] = rows[j][i] = link
    p2p: list[list[P2P | None]] = []
    raw_p2p = data.get("p2p")
    if isinstance(raw_p2p, str):
        status = P2P(raw_p2p)
        p2p = [[None if i == j else status for j in range(n_gpu)] for i in range(n_gpu)]
    elif raw_p2p is not None:
        tokens = _rows_from_triangle(_list(raw_p2p, "p2p"), n_gpu, "p2p")
        p2p = [[None if t is None else P2P(t) for t in row] for row in tokens]
    return Topology.from_rows(gpus, nics, rows, source=str(data.get("source", "")), p2p=p2p)


def _from_v1(data: dict[str, Any]) -> Topology:
    seen: dict[tuple[str, str], frozenset[int]] = {}
    gpus = [
        Gpu(
            index=int(g["index"]),
            name=g.get("name"),
            bus_id=g.get("bus_id"),
            uuid=g.get("uuid"),
            cpu_affinity=_set_or_none(g, "cpu_affinity", seen),
            numa_affinity=_set_or_none(g, "numa_affinity", seen),
            gpu_numa_id=None if g.get("gpu_numa_id") is None else int(g["gpu_numa_id"]),
        )
        for g in _list(data["gpus"], "gpus")
    ]
    nics = [Nic(column=str(n["column"]), device=n.get("device")) for n in _list(data.get("nics", []), "nics")]
    if len(gpus) + len(nics) > MAX_ENDPOINTS:
        raise CodecError(f"{len(gpus) + len(nics)} endpoints (at most {MAX_ENDPOINTS})")
    rows: list[list[Link | None]] = []
    for row in _list(data["links"], "links"):
        cells: list[Link | None] = []
        for tok in _list(row, "links row"):
            link = None if tok is None else parse_link_token(str(tok))
            if tok is not None and link is None:
                raise CodecError(f"unknown link token {tok!r}")
            cells.append(link)
        rows.append(cells)
    return Topology.from_rows(gpus, nics, rows, source=str(data.get("source", "")))


def from_dict(data: dict[str, Any]) -> Topology:
    """Inverse of :func:`to_dict`, for format v2 and v1. Raises :class:`CodecError` on anything malformed.

    Sizes, types and limits (:mod:`labeler.topology.limits`) are checked first
    (:mod:`labeler.topology.validate`), so nothing below can blow up.
    """
    try:
        if not isinstance(data, dict):
            raise CodecError("topology document is not a JSON object")
        version = data.get("v")
        if version == 2:
            validate.check_topology_v2(data)
            return _from_v2(data)
        if version == 1:
            validate.check_topology_v1(data)
            return _from_v1(data)
        raise CodecError(f"unsupported topology format version {str(version)[:20]!r} "
                         f"(this build reads {READABLE_VERSIONS})")
    except CodecError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError, MemoryError) as err:
        raise CodecError(f"malformed topology document: {type(err).__name__}: {str(err)[:200]}") from err
