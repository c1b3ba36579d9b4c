"""Label schema v2: node labels and annotations that describe a node's GPU topology.

Why labels *and* an annotation. Labels are what the rest of Kubernetes can
select on (nodeAffinity ``In``/``Gt``/``Lt``), so they hold small, readable
summaries: counts and island sizes as integers, a shape string, a few flags.
The full matrix does not fit a 63-character label value, so it travels as one
compact, versioned JSON annotation that the extender decodes back into a
:class:`~labeler.topology.model.Topology`.

All keys live under one configurable prefix (default ``gputopo.io/``); a key is
*ours* exactly when it starts with that prefix, which is how the publisher
knows what it may change or remove. See ``docs/labels.md`` for the schema and
what changed from v1 (``numa-shape``/``island-numa`` now come from NUMA
affinity; ``shape-*`` and ``numa-basis`` are new; the annotation is format v2).
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from labeler.topology import bounded, islands, limits, nic_locality, numa, serialize
from labeler.topology.errors import CodecError
from labeler.topology.links import LinkLevel
from labeler.topology.model import Topology

__all__ = [
    "ANNOTATION_TOPOLOGY",
    "DEFAULT_PREFIX",
    "LABEL_KEYS",
    "READABLE_SCHEMAS",
    "SCHEMA_VERSION",
    "LabelSummary",
    "Status",
    "decode_labels",
    "decode_topology",
    "encode",
    "encode_annotations",
    "is_valid_label_key",
    "is_valid_label_value",
    "owns",
    "status_annotations",
    "status_labels",
    "summarize",
    "topology_class",
    "validate_prefix",
]

DEFAULT_PREFIX = "gputopo.io/"
SCHEMA_VERSION = "v2"
#: schema versions :func:`decode_labels` reads (v1: written by agents before v2)
READABLE_SCHEMAS = ("v1", "v2")


class Status(enum.StrEnum):
    """Health of the node's topology labels.

    What each status publishes (``docs/labels.md``, "Status"):

    ``ok``: the labels and the ``topology`` annotation describe the node as just
    probed. ``degraded``: they describe the GPUs that work (a GPU that fell off
    the bus is left out) or the last good probe (the latest one failed); usable,
    with a ``status-reason``. ``error``: the agent cannot describe the node now
    (no NVIDIA GPU or driver, or nothing was ever probed): only ``schema``,
    ``status`` and ``status-reason`` are current; labels from an earlier probe are
    kept (so node selectors do not flap through a driver restart) but are not to
    be trusted, and the extender ignores the node's topology (fails open).
    """

    OK = "ok"
    DEGRADED = "degraded"
    ERROR = "error"


# label suffixes (the part after the prefix)
SCHEMA = "schema"
STATUS = "status"
GPU_COUNT = "gpu-count"
NVLINK = "nvlink"
ISLAND_NVLINK = "island-nvlink"
ISLAND_PCIE_SWITCH = "island-pcie-switch"
ISLAND_HOST_BRIDGE = "island-host-bridge"
ISLAND_NUMA = "island-numa"
NUMA_SHAPE = "numa-shape"
NUMA_BASIS = "numa-basis"
SHAPE_NVLINK = "shape-nvlink"
SHAPE_PCIE_SWITCH = "shape-pcie-switch"
SHAPE_HOST_BRIDGE = "shape-host-bridge"
NIC_COUNT = "nic-count"
NIC_LOCALITY = "nic-locality"
GPUDIRECT = "gpudirect"
TOPOLOGY_CLASS = "topology-class"

# annotation suffixes
ANNOTATION_TOPOLOGY = "topology"
ANNOTATION_STATUS_REASON = "status-reason"

# pod annotation suffixes: what a workload asks of the placement (policy.workload reads them; docs/extender.md)
POD_PLACEMENT = "placement"  # required | preferred | ignore
POD_MAX_LEVEL = "max-level"  # nvlink | pix | pxb | phb | node | sys
POD_WORKLOAD = "workload"  # training | inference | batch

#: link-island labels → the loosest link level a hop may have (NVLink hops count at every level);
#: each pair is (largest-island key, shape key). NUMA groups are not link islands: see :mod:`numa`.
ISLAND_LABEL_LEVELS: dict[str, LinkLevel] = {
    ISLAND_NVLINK: LinkLevel.NVLINK,
    ISLAND_PCIE_SWITCH: LinkLevel.PXB,
    ISLAND_HOST_BRIDGE: LinkLevel.PHB,
}
SHAPE_LABEL_LEVELS: dict[str, LinkLevel] = {
    SHAPE_NVLINK: LinkLevel.NVLINK,
    SHAPE_PCIE_SWITCH: LinkLevel.PXB,
    SHAPE_HOST_BRIDGE: LinkLevel.PHB,
}

LABEL_KEYS: tuple[str, ...] = (
    SCHEMA,
    STATUS,
    GPU_COUNT,
    NVLINK,
    *ISLAND_LABEL_LEVELS,
    *SHAPE_LABEL_LEVELS,
    ISLAND_NUMA,
    NUMA_SHAPE,
    NUMA_BASIS,
    NIC_COUNT,
    NIC_LOCALITY,
    GPUDIRECT,
    TOPOLOGY_CLASS,
)

_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def is_valid_label_value(value: str) -> bool:
    """Kubernetes label value syntax: ≤63 chars, alphanumeric ends, ``-_.`` inside, or empty."""
    return len(value) <= 63 and _VALUE.fullmatch(value) is not None


def is_valid_label_key(key: str) -> bool:
    """Kubernetes qualified name: optional DNS-subdomain prefix ≤253, ``/``, name ≤63."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix)):
        return False
    return _NAME.fullmatch(name) is not None


def validate_prefix(prefix: str) -> str:
    """Check a configured prefix (``example.com/`` form) and return it; ``ValueError`` if bad."""
    if not prefix.endswith("/") or not is_valid_label_key(prefix + "x"):
        raise ValueError(f"label prefix must look like 'example.com/', got {prefix!r}")
    return prefix


def owns(key: str, *, prefix: str = DEFAULT_PREFIX) -> bool:
    """Is this label/annotation key ours to set and remove?"""
    return key.startswith(prefix)


def topology_class(topo: Topology) -> str:
    """A short stable hash of the node's *topology class*, so interchangeable nodes share it.

    It covers the link matrix (GPU↔GPU, GPU↔NIC, NIC↔NIC tokens), the number of
    GPUs and NICs, each GPU's NUMA affinity and, where known, each GPU's generation
    (architecture, NVLink version): an HGX H100 and an HGX B200 print the same matrix
    but ring at different speeds, and the decision (``policy.nodes.decode.wiring``)
    tells them apart too. It leaves out what differs between interchangeable machines
    or changes at run time: bus ids, UUIDs, GPU and NIC names, CPU numbering, the
    PCIe link state (it trains down at idle). A topology without GPU facts (a saved
    ``nvidia-smi topo -m``) hashes as before the generation was added.
    """
    canon: dict[str, object] = {
        "links": [[None if c is None else c.token for c in row] for row in topo.links],
        "gpus": len(topo.gpus),
        "nics": len(topo.nics),
        "numa": [None if g.numa_affinity is None else sorted(g.numa_affinity) for g in topo.gpus],
    }
    generation = [[g.arch, g.nvlink_version] for g in topo.gpus]
    if any(a is not None or v is not None for a, v in generation):
        canon["generation"] = generation
    digest = hashlib.blake2b(json.dumps(canon, separators=(",", ":")).encode(), digest_size=5)
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class LabelSummary:
    """What the labels say, decoded (the round-trip target of :func:`encode`).

    Fields a v1 label set does not carry (the ``shape-*`` labels, ``numa-basis``)
    are ``None`` when decoding v1; ``island_numa``/``numa_shape`` are ``None`` when
    the NUMA grouping is unknown (the labels are then not published).
    """

    schema: str
    status: Status
    gpu_count: int
    nvlink: bool
    island_nvlink: int
    island_pcie_switch: int
    island_host_bridge: int
    shape_nvlink: str | None
    shape_pcie_switch: str | None
    shape_host_bridge: str | None
    island_numa: int | None
    numa_shape: str | None
    numa_basis: numa.Basis | None
    nic_count: int
    nic_locality: LinkLevel | None
    gpudirect: bool
    topology_class: str


def summarize(topo: Topology, status: Status = Status.OK) -> LabelSummary:
    """The summary the labels of ``topo`` carry."""
    groups = numa.group(topo)
    return LabelSummary(
        schema=SCHEMA_VERSION,
        status=status,
        gpu_count=len(topo.gpus),
        nvlink=topo.has_nvlink,
        island_nvlink=islands.largest(topo, LinkLevel.NVLINK),
        island_pcie_switch=islands.largest(topo, LinkLevel.PXB),
        island_host_bridge=islands.largest(topo, LinkLevel.PHB),
        shape_nvlink=islands.shape(topo, LinkLevel.NVLINK),
        shape_pcie_switch=islands.shape(topo, LinkLevel.PXB),
        shape_host_bridge=islands.shape(topo, LinkLevel.PHB),
        island_numa=groups.largest,
        numa_shape=groups.shape,
        numa_basis=groups.basis,
        nic_count=len(topo.nics),
        nic_locality=nic_locality.locality_class(topo),
        gpudirect=nic_locality.gpudirect(topo),
        topology_class=topology_class(topo),
    )


def _bool(value: bool) -> str:
    return "true" if value else "false"


def encode(topo: Topology, *, prefix: str = DEFAULT_PREFIX, status: Status = Status.OK) -> dict[str, str]:
    """The node labels for ``topo``. Every key and value is valid Kubernetes syntax.

    >>> from labeler.topology import smi_parser
    >>> t = smi_parser.parse("GPU0 GPU1\\nGPU0 X PIX\\nGPU1 PIX X\\n")
    >>> encode(t)["gputopo.io/island-pcie-switch"]
    '2'
    """
    s = summarize(topo, status)
    values = {
        SCHEMA: s.schema,
        STATUS: s.status.value,
        GPU_COUNT: str(s.gpu_count),
        NVLINK: _bool(s.nvlink),
        ISLAND_NVLINK: str(s.island_nvlink),
        ISLAND_PCIE_SWITCH: str(s.island_pcie_switch),
        ISLAND_HOST_BRIDGE: str(s.island_host_bridge),
        SHAPE_NVLINK: s.shape_nvlink,
        SHAPE_PCIE_SWITCH: s.shape_pcie_switch,
        SHAPE_HOST_BRIDGE: s.shape_host_bridge,
        ISLAND_NUMA: None if s.island_numa is None else str(s.island_numa),
        NUMA_SHAPE: s.numa_shape,
        NUMA_BASIS: None if s.numa_basis is None else s.numa_basis.value,
        NIC_COUNT: str(s.nic_count),
        NIC_LOCALITY: "none" if s.nic_locality is None else s.nic_locality.slug,
        GPUDIRECT: _bool(s.gpudirect),
        TOPOLOGY_CLASS: s.topology_class,
    }
    labels = {prefix + k: v for k, v in values.items() if v is not None}  # None: unknown, not published
    for key, value in labels.items():  # a broken invariant must fail loudly, not publish junk
        if not is_valid_label_key(key) or not is_valid_label_value(value):
            raise AssertionError(f"invalid label {key}={value!r}")
    return labels


def encode_annotations(topo: Topology, *, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """The full topology as one compact JSON annotation (``{prefix}topology``, format v2)."""
    return {prefix + ANNOTATION_TOPOLOGY: serialize.dumps(topo)}


def status_labels(status: Status, *, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """The labels of a node we cannot describe (no GPU, every probe failed): schema and status."""
    return {prefix + SCHEMA: SCHEMA_VERSION, prefix + STATUS: status.value}


def status_annotations(reason: str, *, prefix: str = DEFAULT_PREFIX) -> dict[str, str]:
    """Why the status is not ``ok``, for people running ``kubectl describe node``."""
    return {prefix + ANNOTATION_STATUS_REASON: reason[:1024]}


def _int(labels: dict[str, str], key: str) -> int:
    try:
        return int(labels[key])
    except (KeyError, ValueError) as err:
        raise CodecError(f"label {key} missing or not an integer") from err


def _opt_int(labels: dict[str, str], key: str) -> int | None:
    return _int(labels, key) if key in labels else None


def decode_labels(labels: dict[str, str], *, prefix: str = DEFAULT_PREFIX) -> LabelSummary | None:
    """Read our labels back (schema v1 or v2); ``None`` if the node carries no complete label set."""
    schema = labels.get(prefix + SCHEMA)
    if schema not in READABLE_SCHEMAS or prefix + GPU_COUNT not in labels:
        return None
    try:
        status = Status(labels.get(prefix + STATUS, ""))
        loc = labels.get(prefix + NIC_LOCALITY, "none")
        basis = labels.get(prefix + NUMA_BASIS)
        return LabelSummary(
            schema=str(schema),
            status=status,
            gpu_count=_int(labels, prefix + GPU_COUNT),
            nvlink=labels.get(prefix + NVLINK) == "true",
            island_nvlink=_int(labels, prefix + ISLAND_NVLINK),
            island_pcie_switch=_int(labels, prefix + ISLAND_PCIE_SWITCH),
            island_host_bridge=_int(labels, prefix + ISLAND_HOST_BRIDGE),
            shape_nvlink=labels.get(prefix + SHAPE_NVLINK),
            shape_pcie_switch=labels.get(prefix + SHAPE_PCIE_SWITCH),
            shape_host_bridge=labels.get(prefix + SHAPE_HOST_BRIDGE),
            island_numa=_opt_int(labels, prefix + ISLAND_NUMA),
            numa_shape=labels.get(prefix + NUMA_SHAPE),
            numa_basis=None if basis is None else numa.Basis(basis),
            nic_count=_int(labels, prefix + NIC_COUNT),
            nic_locality=None if loc == "none" else LinkLevel.from_slug(loc),
            gpudirect=labels.get(prefix + GPUDIRECT) == "true",
            topology_class=labels.get(prefix + TOPOLOGY_CLASS, ""),
        )
    except ValueError as err:
        raise CodecError(f"undecodable gputopo labels: {err}") from err


def decode_topology(annotations: dict[str, str] | None, *, prefix: str = DEFAULT_PREFIX) -> Topology | None:
    """The topology from the ``{prefix}topology`` annotation; ``None`` when absent.

    Raises :class:`~labeler.topology.errors.CodecError` when present but damaged,
    so callers can tell "not labelled yet" from "labelled with junk".
    """
    raw = (annotations or {}).get(prefix + ANNOTATION_TOPOLOGY)
    if raw is None:
        return None
    # size and depth are checked before parsing (labeler.topology.limits)
    doc: Any = bounded.loads(raw, what="topology annotation", max_chars=limits.MAX_TOPOLOGY_JSON_CHARS)
    if not isinstance(doc, dict):
        raise CodecError("topology annotation is not a JSON object")
    return serialize.from_dict(doc)
