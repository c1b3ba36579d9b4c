"""Shape and size checks of a decoded topology document, before any model object is built.

Why separate from :mod:`labeler.topology.serialize`: the builder trusts its
input to be the right shape (lists of the right length, small integers,
short strings); this module proves that first, against
:mod:`labeler.topology.limits`, so a damaged or hostile document fails with a
:class:`~labeler.topology.errors.CodecError` naming the field and the limit,
and costs no more memory than a real one. Later format versions add their own
``check_*`` next to :func:`check_topology_v1` and reuse the helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labeler.topology import limits
from labeler.topology.bounded import check_str
from labeler.topology.errors import CodecError

__all__ = ["affinity_ids", "check_int", "check_list", "check_topology_v1", "check_topology_v2"]


def check_int(value: object, *, what: str, lo: int, hi: int) -> int:
    """An integer (not a bool, not a float) in ``[lo, hi]``, else :class:`CodecError`."""
    if type(value) is not int:
        raise CodecError(f"{what}: expected an integer, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise CodecError(f"{what}: {value} outside {lo}..{hi}")
    return value


def check_list(value: object, *, what: str, max_len: int) -> list[Any]:
    """A JSON array of at most ``max_len`` items, else :class:`CodecError`."""
    if not isinstance(value, list):
        raise CodecError(f"{what}: expected a list, got {type(value).__name__}")
    if len(value) > max_len:
        raise CodecError(f"{what}: {len(value)} items, over the limit of {max_len}")
    return value


def affinity_ids(text: str) -> int:
    """How many ids a cpulist expands to, counted from its ranges without building a set.

    >>> affinity_ids("0-47,96-143"), affinity_ids("")
    (96, 0)
    """
    total = 0
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        if lo.isdigit() and len(lo) <= 6 and (not hi or (hi.isdigit() and len(hi) <= 6)):
            total += max(0, int(hi or lo) - int(lo) + 1)
    return total


def _opt_str(gpu: Mapping[str, Any], key: str, what: str) -> None:
    value = gpu.get(key)
    if value is not None:
        check_str(value, what=f"{what}.{key}")


def check_topology_v1(doc: object) -> None:
    """Prove a v1 document (see :func:`labeler.topology.serialize.to_dict`) is within the limits."""
    if not isinstance(doc, Mapping):
        raise CodecError(f"topology document: expected an object, got {type(doc).__name__}")
    gpus = check_list(doc.get("gpus"), what="topology gpus", max_len=limits.MAX_GPUS)
    nics = check_list(doc.get("nics", []), what="topology nics", max_len=limits.MAX_NICS)
    n = len(gpus) + len(nics)
    cpulists: set[str] = set()
    for i, gpu in enumerate(gpus):
        what = f"topology gpus[{i}]"
        if not isinstance(gpu, Mapping):
            raise CodecError(f"{what}: expected an object, got {type(gpu).__name__}")
        check_int(gpu.get("index"), what=f"{what}.index", lo=0, hi=limits.MAX_GPU_INDEX)
        for key in ("name", "bus_id", "uuid"):
            _opt_str(gpu, key, what)
        for key in ("cpu_affinity", "numa_affinity"):
            value = gpu.get(key)
            if value is not None:
                cpulists.add(check_str(value, what=f"{what}.{key}", max_chars=limits.MAX_TOPOLOGY_JSON_CHARS))
        if gpu.get("gpu_numa_id") is not None:
            check_int(gpu.get("gpu_numa_id"), what=f"{what}.gpu_numa_id", lo=0, hi=limits.MAX_NUMA_ID)
    ids = sum(affinity_ids(text) for text in cpulists)
    if ids > limits.MAX_AFFINITY_IDS:
        raise CodecError(f"topology affinity lists expand to {ids} ids, over the limit of {limits.MAX_AFFINITY_IDS}")
    for i, nic in enumerate(nics):
        if not isinstance(nic, Mapping):
            raise CodecError(f"topology nics[{i}]: expected an object, got {type(nic).__name__}")
        check_str(nic.get("column"), what=f"topology nics[{i}].column")
        _opt_str(nic, "device", f"topology nics[{i}]")
    rows = check_list(doc.get("links"), what="topology links", max_len=n)
    if len(rows) != n:
        raise CodecError(f"topology links: {len(rows)} rows for {n} endpoints")
    for i, row in enumerate(rows):
        check_list(row, what=f"topology links[{i}]", max_len=n)
        if len(row) != n:
            raise CodecError(f"topology links[{i}]: {len(row)} cells for {n} endpoints")
        for cell in row:
            if cell is not None and not (isinstance(cell, str) and len(cell) <= 8):
                raise CodecError(f"topology links[{i}]: cell {str(cell)[:16]!r} is not a link token")
    if doc.get("source") is not None:
        check_str(doc.get("source"), what="topology source")


#: string fields of a v2 GPU (or of ``common``) and the integer fields with their ranges
_V2_GPU_STRINGS = ("name", "bus_id", "uuid", "arch", "cc", "nvlink_version")
_V2_LINK_TOKEN_CHARS = 6  # the longest token ("NV999") and its separating blank


def _v2_gpu_fields(doc: Mapping[str, Any], what: str, cpulists: set[tuple[str, str]]) -> None:
    for key in _V2_GPU_STRINGS:
        _opt_str(doc, key, what)
    for key in ("cpu_affinity", "numa_affinity"):
        value = doc.get(key)
        if value is not None:
            cpulists.add((key, check_str(value, what=f"{what}.{key}", max_chars=limits.MAX_TOPOLOGY_JSON_CHARS)))
    if doc.get("gpu_numa_id") is not None:
        check_int(doc.get("gpu_numa_id"), what=f"{what}.gpu_numa_id", lo=0, hi=limits.MAX_NUMA_ID)
    pcie = doc.get("pcie")
    if pcie is not None:
        for item in check_list(pcie, what=f"{what}.pcie", max_len=4):
            if item is not None:
                check_int(item, what=f"{what}.pcie", lo=0, hi=limits.MAX_PCIE_VALUE)


def _triangle_rows(value: object, *, what: str, n: int) -> None:
    rows = check_list(value, what=what, max_len=max(n - 1, 0))
    for i, row in enumerate(rows):
        check_str(row, what=f"{what}[{i}]", max_chars=_V2_LINK_TOKEN_CHARS * max(n - 1 - i, 1))


def check_topology_v2(doc: object) -> None:
    """Prove a v2 document (see :mod:`labeler.topology.serialize`) is within the limits."""
    if not isinstance(doc, Mapping):
        raise CodecError(f"topology document: expected an object, got {type(doc).__name__}")
    common = doc.get("common", {})
    if not isinstance(common, Mapping):
        raise CodecError(f"topology common: expected an object, got {type(common).__name__}")
    gpus = check_list(doc.get("gpus"), what="topology gpus", max_len=limits.MAX_GPUS)
    nics = check_list(doc.get("nics", []), what="topology nics", max_len=limits.MAX_NICS)
    cpulists: set[tuple[str, str]] = set()
    _v2_gpu_fields(common, "topology common", cpulists)
    for i, gpu in enumerate(gpus):
        what = f"topology gpus[{i}]"
        if not isinstance(gpu, Mapping):
            raise CodecError(f"{what}: expected an object, got {type(gpu).__name__}")
        check_int(gpu.get("index"), what=f"{what}.index", lo=0, hi=limits.MAX_GPU_INDEX)
        _v2_gpu_fields(gpu, what, cpulists)
    ids = sum(affinity_ids(text) for _, text in cpulists)
    if ids > limits.MAX_AFFINITY_IDS:
        raise CodecError(f"topology affinity lists expand to {ids} ids, over the limit of {limits.MAX_AFFINITY_IDS}")
    for i, nic in enumerate(nics):
        what = f"topology nics[{i}]"
        if not isinstance(nic, Mapping):
            raise CodecError(f"{what}: expected an object, got {type(nic).__name__}")
        _opt_str(nic, "column", what)
        _opt_str(nic, "device", what)
        if nic.get("rate_mbps") is not None:
            check_int(nic.get("rate_mbps"), what=f"{what}.rate_mbps", lo=0, hi=limits.MAX_NIC_RATE_MBPS)
    _triangle_rows(doc.get("links"), what="topology links", n=len(gpus) + len(nics))
    p2p = doc.get("p2p")
    if isinstance(p2p, str):
        check_str(p2p, what="topology p2p", max_chars=8)
    elif p2p is not None:
        _triangle_rows(p2p, what="topology p2p", n=len(gpus))
    if doc.get("source") is not None:
        check_str(doc.get("source"), what="topology source")
