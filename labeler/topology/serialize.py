"""Plain-JSON form of a :class:`~labeler.topology.model.Topology`.

Why a separate module: the same dict serves golden test files, ``audit --json``
and (compacted) the node annotation, so it has exactly one definition. The form
is versioned (``"v": 1``) and lossless: ``from_dict(to_dict(t)) == t``.

CPU and NUMA sets are written as Linux cpulist strings (``"0-47,96-143"``),
which people can read and which stay short for 200+ CPU hosts.
"""

from __future__ import annotations

import re
from typing import Any

from labeler.topology.errors import CodecError
from labeler.topology.links import Link, parse_link_token
from labeler.topology.model import Gpu, Nic, Topology

__all__ = ["FORMAT_VERSION", "format_cpulist", "from_dict", "parse_cpulist", "to_dict"]

FORMAT_VERSION = 1

_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def parse_cpulist(text: str) -> frozenset[int]:
    """Read a Linux cpulist (``"0-3,8,10-11"``) into a set.

    >>> sorted(parse_cpulist("0-2,7"))
    [0, 1, 2, 7]
    """
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = _RANGE.fullmatch(part)
        if not m:
            raise ValueError(f"not a cpulist element: {part!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ValueError(f"descending range {part!r}")
        out.update(range(lo, hi + 1))
    return frozenset(out)


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


def to_dict(topo: Topology) -> dict[str, Any]:
    """Lossless JSON-ready dict; the matrix is a list of token rows (``null`` = unknown)."""
    return {
        "v": FORMAT_VERSION,
        "gpus": [
            {
                k: v
                for k, v in {
                    "index": g.index,
                    "name": g.name,
                    "bus_id": g.bus_id,
                    "uuid": g.uuid,
                    "cpu_affinity": _opt_set(g.cpu_affinity),
                    "numa_affinity": _opt_set(g.numa_affinity),
                    "gpu_numa_id": g.gpu_numa_id,
                }.items()
                if v is not None or k == "index"
            }
            for g in topo.gpus
        ],
        "nics": [{"column": n.column, **({"device": n.device} if n.device else {})} for n in topo.nics],
        "links": [[None if c is None else c.token for c in row] for row in topo.links],
    }


def _set_or_none(d: dict[str, Any], key: str) -> frozenset[int] | None:
    v = d.get(key)
    return None if v is None else parse_cpulist(str(v))


def from_dict(data: dict[str, Any]) -> Topology:
    """Inverse of :func:`to_dict`. Raises :class:`CodecError` on anything malformed."""
    try:
        if data.get("v") != FORMAT_VERSION:
            raise CodecError(f"unsupported topology format version {data.get('v')!r}")
        gpus = [
            Gpu(
                index=int(g["index"]),
                name=g.get("name"),
                bus_id=g.get("bus_id"),
                uuid=g.get("uuid"),
                cpu_affinity=_set_or_none(g, "cpu_affinity"),
                numa_affinity=_set_or_none(g, "numa_affinity"),
                gpu_numa_id=None if g.get("gpu_numa_id") is None else int(g["gpu_numa_id"]),
            )
            for g in data["gpus"]
        ]
        nics = [Nic(column=str(n["column"]), device=n.get("device")) for n in data.get("nics", [])]
        rows: list[list[Link | None]] = []
        for row in data["links"]:
            cells: list[Link | None] = []
            for tok in row:
                link = None if tok is None else parse_link_token(str(tok))
                if tok is not None and link is None:
                    raise CodecError(f"unknown link token {tok!r}")
                cells.append(link)
            rows.append(cells)
        return Topology.from_rows(gpus, nics, rows, source=str(data.get("source", "")))
    except CodecError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CodecError(f"malformed topology document: {err}") from err
