"""Which GPUs a container process uses: ``NVIDIA_VISIBLE_DEVICES`` and ``CUDA_VISIBLE_DEVICES``.

Two variables, two layers, two sets of rules. Both values are hostile input: they come
from a pod spec, an image, a device plugin or a person, so they are decoded with limits
(:data:`MAX_VALUE_CHARS`, :data:`MAX_ENTRIES`, no control characters) and anything
unexpected becomes a note, never an exception beyond :class:`DeviceListError`.

**NVIDIA_VISIBLE_DEVICES** is read by the NVIDIA Container Toolkit when the container
starts; it names *host* GPUs. Rules, from the source (read, not copied):

- ``NVIDIA/nvidia-container-toolkit`` ``internal/config/image/cuda_image.go``
  @ 1081cecea97d60a9c4e715c3a9ecaa5323d7cdec, ``DevicesFromEnvvars``: split on ``,``,
  trim spaces, drop empty entries; unset with a *legacy* CUDA image (``CUDA_VERSION``
  set, ``NVIDIA_REQUIRE_CUDA`` not) means ``all``; unset, empty, or any entry ``void``
  means no GPU and no driver (runc behaviour).
- ``internal/config/image/devices.go`` @ 6986eb324a0b077efcc5b750ce1e523d81947cb7,
  ``NewVisibleDevices``: the special values win over any list, ``void`` > ``none`` > ``all``
  (``none``: no GPU, but the driver's libraries and binaries are mounted).
- ``NVIDIA/libnvidia-container`` ``src/cli/common.c`` @ 1aea987376e5a7c12265f110d046d96037d03117,
  ``select_devices``: per entry, ``all`` (any case); a *full* ``GPU-`` UUID (case-insensitive,
  no prefixes); a PCI bus id (``%x:%02x:%02x``); a decimal index below the GPU count
  (``strtoumax`` over the whole entry); a full ``MIG-`` UUID; a MIG ``<gpu>:<mig>`` index
  pair. Anything else fails the container's start ("unknown device").
- The device plugin (``NVIDIA/k8s-device-plugin`` ``internal/plugin/server.go``,
  ``getAllocateResponse``) sets it to the allocated UUIDs (default ``envvar`` strategy), or to
  ``/var/run/nvidia-container-devices`` with one mount per device below that path
  (``volume-mounts`` strategy). With CDI injection the runtime's spec sets it to ``void``
  while the devices arrive through CDI, so ``void`` beside visible GPUs is normal there.

**CUDA_VISIBLE_DEVICES** is read by the CUDA driver inside the process; it indexes the
GPUs *this container* sees, in enumeration order. Rules:

- CUDA Programming Guide §5.2.1.1 (docs.nvidia.com/cuda/cuda-programming-guide/
  05-appendices/environment-variables.html): unset, all GPUs; set to the empty string,
  none; a comma-separated list of indices or ``GPU-`` UUIDs, where a UUID may be
  abbreviated to any prefix that identifies one GPU; at the first invalid index only the
  devices before it are visible (``0,2,-1,1`` gives 0 and 2); MIG devices as
  ``MIG-<GPU-UUID>/<GI>/<CI>`` (R450/R460) or ``MIG-<UUID>`` (R470 and later).
- The driver is closed source; the finer points follow PyTorch's documented emulation of
  it (``pytorch/pytorch`` ``torch/cuda/__init__.py`` @ 17e3b6a97af175f377f42b52cf20d4c758a432a9,
  ``_parse_visible_devices`` and ``_transform_uuid_to_ordinals``): an index entry is read
  like ``strtoul`` (``1gpu2`` is 1); a repeated entry makes the whole set empty; a list
  that starts with ``GPU-`` or ``MIG-`` stops at the first entry without that prefix, and
  an ambiguous or unmatched UUID prefix stops it too.

Index order: with ``CUDA_DEVICE_ORDER`` unset CUDA enumerates "fastest first"; only
``PCI_BUS_ID`` guarantees the ``nvidia-smi`` (PCI) order. For identical GPUs the orders
agree in practice; with mixed models :func:`resolve` adds a note.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from labeler.topology import limits
from labeler.topology.errors import DeviceListError
from labeler.topology.model import Topology

__all__ = [
    "MAX_ENTRIES",
    "MAX_VALUE_CHARS",
    "VOLUME_MOUNTS_ROOT",
    "CudaVisible",
    "DeviceId",
    "IdKind",
    "ListKind",
    "MigDevice",
    "NvidiaVisible",
    "Resolution",
    "Scope",
    "decode_cuda_visible",
    "decode_nvidia_visible",
    "resolve",
]

#: Longest value accepted, and most entries in one list (labeler.topology.limits, with the reasons).
MAX_VALUE_CHARS = limits.MAX_DEVICE_LIST_CHARS
MAX_ENTRIES = limits.MAX_DEVICE_LIST_ENTRIES
#: The device plugin's ``volume-mounts`` strategy: the variable holds this path.
VOLUME_MOUNTS_ROOT = "/var/run/nvidia-container-devices"

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_INDEX = re.compile(r"\s*[+-]?\d+")  # strtoumax over the whole entry
_BUS = re.compile(r"([0-9a-fA-F]+):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})")  # sscanf("%x:%02x:%02x.0")
_MIG_INDEX = re.compile(r"\s*(\d+):\s*(\d+)")  # sscanf("%lu:%lu")
_MIG_LEGACY = re.compile(r"MIG-(GPU-[0-9a-fA-F-]+)/(\d+)/(\d+)")
_CDI = re.compile(r"([a-z0-9][a-z0-9.-]*/[a-zA-Z0-9][a-zA-Z0-9._-]*)=(.+)")
_LEADING_INT = re.compile(r"[+-]?\d+")


class ListKind(enum.StrEnum):
    UNSET = "unset"
    EMPTY = "empty"
    ALL = "all"
    NONE = "none"
    VOID = "void"
    LIST = "list"
    VOLUME_MOUNTS = "volume-mounts"


class IdKind(enum.StrEnum):
    INDEX = "index"
    GPU_UUID = "gpu-uuid"
    BUS_ID = "bus-id"
    MIG_UUID = "mig-uuid"
    MIG_LEGACY = "mig-legacy"  # MIG-GPU-<uuid>/<gi>/<ci>
    MIG_INDEX = "mig-index"  # <gpu>:<mig>
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class DeviceId:
    """One entry of ``NVIDIA_VISIBLE_DEVICES``, classified the way libnvidia-container does."""

    raw: str
    kind: IdKind
    index: int | None = None  # INDEX, MIG_INDEX (the GPU)
    uuid: str | None = None  # GPU_UUID, MIG_UUID, MIG_LEGACY (the MIG device's own)
    parent_uuid: str | None = None  # MIG_LEGACY: the GPU's UUID, readable from the name itself
    bus: tuple[int, int, int] | None = None  # BUS_ID: (domain, bus, device)
    mig: tuple[int, int] | None = None  # MIG_LEGACY: (GI, CI); MIG_INDEX: (MIG index, -1)
    cdi_kind: str | None = None  # "nvidia.com/gpu" when given as a CDI qualified name


@dataclass(frozen=True, slots=True)
class NvidiaVisible:
    kind: ListKind
    ids: tuple[DeviceId, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CudaVisible:
    """``CUDA_VISIBLE_DEVICES`` after CUDA's parsing rules, before matching it to GPUs.

    ``ordinals`` (index form) or ``prefixes`` (UUID form, with ``prefix_kind`` ``GPU-`` or
    ``MIG-``) hold the entries CUDA keeps; ``stopped_at`` is the first entry that ended
    the list, ``duplicate`` the repeated entry that emptied it.
    """

    kind: ListKind  # UNSET, EMPTY or LIST
    ordinals: tuple[int, ...] = ()
    prefixes: tuple[str, ...] = ()
    prefix_kind: str | None = None
    stopped_at: str | None = None
    duplicate: str | None = None


class Scope(enum.StrEnum):
    """Whose indices the topology carries."""

    NODE = "node"  # the host's nvidia-smi indices: a file saved on the node, the node annotation
    CONTAINER = "container"  # this container's own enumeration: a probe run inside the pod


@dataclass(frozen=True, slots=True)
class MigDevice:
    """A MIG device the container holds, and the GPU it lives on (``None`` if unknown)."""

    name: str
    gpu: int | None


@dataclass(frozen=True, slots=True)
class Resolution:
    """The GPUs (topology indices) this process uses, in CUDA's enumeration order.

    ``known`` is False when the variables cannot be mapped onto the topology (e.g. UUIDs
    against a topology without UUIDs); ``gpus`` is then what could be mapped.
    """

    gpus: tuple[int, ...]
    container_gpus: tuple[int, ...] | None
    mig: tuple[MigDevice, ...] = ()
    known: bool = True
    notes: tuple[str, ...] = ()
    unresolved: tuple[str, ...] = field(default=())


def _check(name: str, value: str) -> None:
    if len(value) > MAX_VALUE_CHARS:
        raise DeviceListError(f"{name} is {len(value)} characters long (limit {MAX_VALUE_CHARS})")
    if _CONTROL.search(value):
        raise DeviceListError(f"{name} contains control characters")


def _classify(entry: str) -> DeviceId:
    """One entry, in libnvidia-container's order: GPU UUID, bus id, index, MIG UUID, MIG index."""
    cdi = _CDI.fullmatch(entry)
    if cdi:
        inner = _classify(cdi.group(2))
        return DeviceId(entry, inner.kind, inner.index, inner.uuid, inner.parent_uuid, inner.bus, inner.mig,
                        cdi.group(1))
    if entry[:4].upper() == "GPU-" and len(entry) > 4:
        return DeviceId(entry, IdKind.GPU_UUID, uuid=entry)
    bus = _BUS.match(entry)
    if bus:
        return DeviceId(entry, IdKind.BUS_ID, bus=(int(bus.group(1), 16), int(bus.group(2), 16), int(bus.group(3), 16)))
    if _INDEX.fullmatch(entry):
        text = entry.strip()
        value = int(text)
        if value == 0 or text[0] != "-":  # strtoumax negates: "-0" is 0, "-3" is 2**64-3 (no GPU)
            return DeviceId(entry, IdKind.INDEX, index=abs(value))
        return DeviceId(entry, IdKind.UNKNOWN)
    if entry[:4].upper() == "MIG-" and len(entry) > 4:
        legacy = _MIG_LEGACY.fullmatch(entry)
        if legacy:
            return DeviceId(entry, IdKind.MIG_LEGACY, uuid=entry, parent_uuid=legacy.group(1),
                            mig=(int(legacy.group(2)), int(legacy.group(3))))
        return DeviceId(entry, IdKind.MIG_UUID, uuid=entry)
    pair = _MIG_INDEX.match(entry)
    if pair:
        return DeviceId(entry, IdKind.MIG_INDEX, index=int(pair.group(1)), mig=(int(pair.group(2)), -1))
    return DeviceId(entry, IdKind.UNKNOWN)


def decode_nvidia_visible(
    value: str | None, *, legacy_image: bool = False, mounts: Sequence[str] | None = None
) -> NvidiaVisible:
    """Decode ``NVIDIA_VISIBLE_DEVICES`` as the container toolkit would.

    ``legacy_image``: the image sets ``CUDA_VERSION`` but not ``NVIDIA_REQUIRE_CUDA``.
    ``mounts``: the entry names found below :data:`VOLUME_MOUNTS_ROOT`, when the variable
    holds that path (the caller lists the directory).

    >>> decode_nvidia_visible("0, 2,,GPU-8932f937-d72c-4106-c12f-20bd9faed9f6").kind
    <ListKind.LIST: 'list'>
    >>> [i.kind.value for i in decode_nvidia_visible("0,GPU-8932f937,MIG-GPU-8932f937/1/0,1:0").ids]
    ['index', 'gpu-uuid', 'mig-legacy', 'mig-index']
    >>> decode_nvidia_visible("0,1,void").kind, decode_nvidia_visible("all,none").kind
    (<ListKind.VOID: 'void'>, <ListKind.NONE: 'none'>)
    """
    if value is None:
        if legacy_image:
            return NvidiaVisible(ListKind.ALL, notes=("NVIDIA_VISIBLE_DEVICES unset in a legacy CUDA image "
                                                      "(CUDA_VERSION without NVIDIA_REQUIRE_CUDA): the toolkit "
                                                      "exposes all GPUs",))
        return NvidiaVisible(ListKind.UNSET)
    _check("NVIDIA_VISIBLE_DEVICES", value)
    if value.strip() == VOLUME_MOUNTS_ROOT:
        if mounts is None:
            return NvidiaVisible(ListKind.VOLUME_MOUNTS, notes=(f"device list passed as volume mounts below "
                                                                f"{VOLUME_MOUNTS_ROOT}, which could not be read",))
        if len(mounts) > MAX_ENTRIES:
            raise DeviceListError(f"{len(mounts)} entries below {VOLUME_MOUNTS_ROOT} (limit {MAX_ENTRIES})")
        inner = decode_nvidia_visible(",".join(mounts)) if mounts else NvidiaVisible(ListKind.EMPTY)
        note = f"device list read from {len(mounts)} volume mount(s) below {VOLUME_MOUNTS_ROOT}"
        return NvidiaVisible(inner.kind, inner.ids, (note, *inner.notes))
    entries = [e.strip() for e in value.split(",")]
    entries = [e for e in entries if e]
    if len(entries) > MAX_ENTRIES:
        raise DeviceListError(f"NVIDIA_VISIBLE_DEVICES has {len(entries)} entries (limit {MAX_ENTRIES})")
    if not entries:
        return NvidiaVisible(ListKind.EMPTY)
    if "void" in entries:
        return NvidiaVisible(ListKind.VOID)
    if "none" in entries:
        return NvidiaVisible(ListKind.NONE)
    if any(e.lower() == "all" or ((c := _CDI.fullmatch(e)) is not None and c.group(2) == "all") for e in entries):
        ignored = () if entries == ["all"] else ("'all' in a list selects every GPU; the other entries are ignored",)
        return NvidiaVisible(ListKind.ALL, notes=ignored)
    ids = tuple(_classify(e) for e in entries)
    notes = tuple(
        f"NVIDIA_VISIBLE_DEVICES entry {i.raw!r} is no device id the runtime knows: it would refuse to start "
        "the container"
        for i in ids
        if i.kind is IdKind.UNKNOWN
    )
    return NvidiaVisible(ListKind.LIST, ids, notes)


def _strtoul(text: str) -> int:
    m = _LEADING_INT.match(text)
    return int(m.group(0)) if m else -1


def decode_cuda_visible(value: str | None) -> CudaVisible:
    """Decode ``CUDA_VISIBLE_DEVICES`` with CUDA's rules (before matching to GPUs).

    >>> decode_cuda_visible("0,2,-1,1").ordinals
    (0, 2)
    >>> decode_cuda_visible("1gpu2, 3").ordinals
    (1, 3)
    >>> decode_cuda_visible("0,1,0").ordinals, decode_cuda_visible("0,1,0").duplicate
    ((), '0')
    >>> decode_cuda_visible("GPU-89,GPU-12,1").prefixes
    ('GPU-89', 'GPU-12')
    >>> decode_cuda_visible("").kind, decode_cuda_visible(None).kind
    (<ListKind.EMPTY: 'empty'>, <ListKind.UNSET: 'unset'>)
    """
    if value is None:
        return CudaVisible(ListKind.UNSET)
    _check("CUDA_VISIBLE_DEVICES", value)
    if value == "":
        return CudaVisible(ListKind.EMPTY)
    parts = value.split(",")
    if len(parts) > MAX_ENTRIES:
        raise DeviceListError(f"CUDA_VISIBLE_DEVICES has {len(parts)} entries (limit {MAX_ENTRIES})")
    for prefix in ("GPU-", "MIG-"):
        if value.startswith(prefix):
            kept: list[str] = []
            for part in parts:
                if part in kept:
                    return CudaVisible(ListKind.LIST, prefix_kind=prefix, duplicate=part)
                if not part.startswith(prefix):
                    return CudaVisible(ListKind.LIST, prefixes=tuple(kept), prefix_kind=prefix, stopped_at=part)
                kept.append(part)
            return CudaVisible(ListKind.LIST, prefixes=tuple(kept), prefix_kind=prefix)
    ordinals: list[int] = []
    for part in parts:
        n = _strtoul(part.strip())
        if n in ordinals:
            return CudaVisible(ListKind.LIST, duplicate=part)
        if n < 0:
            return CudaVisible(ListKind.LIST, ordinals=tuple(ordinals), stopped_at=part)
        ordinals.append(n)
    return CudaVisible(ListKind.LIST, ordinals=tuple(ordinals))


# -- matching to a topology --------------------------------------------------------------------------------------------
def _bus_of(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    m = re.match(r"(?:([0-9a-fA-F]+):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})(?:\.[0-7])?$", text.strip())
    if not m:
        return None
    return int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16)


def _match_gpu(dev: DeviceId, topo: Topology, mig_parent: Mapping[str, int]) -> tuple[int | None, str | None]:
    """A host GPU index for one NVIDIA_VISIBLE_DEVICES entry on a node-scope topology; or (None, why)."""
    if dev.kind is IdKind.INDEX or dev.kind is IdKind.MIG_INDEX:
        assert dev.index is not None
        if dev.index in topo.gpu_indices:
            return dev.index, None
        return None, f"no GPU{dev.index} on this node: the runtime would refuse the container"
    if dev.kind is IdKind.GPU_UUID or dev.kind is IdKind.MIG_LEGACY:
        want = (dev.uuid if dev.kind is IdKind.GPU_UUID else dev.parent_uuid) or ""
        if not any(g.uuid for g in topo.gpus):
            return None, f"{dev.raw}: the topology carries no GPU UUIDs"
        for g in topo.gpus:
            if g.uuid and g.uuid.lower() == want.lower():
                return g.index, None
        return None, f"{dev.raw}: no GPU with UUID {want} on this node"
    if dev.kind is IdKind.BUS_ID:
        for g in topo.gpus:
            if _bus_of(g.bus_id) == dev.bus:
                return g.index, None
        return None, f"{dev.raw}: no GPU at that PCI address in the topology"
    if dev.kind is IdKind.MIG_UUID:
        for uuid, gpu in mig_parent.items():
            if uuid.lower() == (dev.uuid or "").lower():
                return gpu, None
        return None, f"{dev.raw}: MIG device not known to the topology source (needs NVML)"
    return None, f"{dev.raw}: not a device id"


def _enumeration_order(topo: Topology, gpus: Sequence[int]) -> tuple[int, ...]:
    """NVML/CUDA-with-PCI_BUS_ID order: by PCI address where known, else by host index (itself PCI order)."""
    def key(g: int) -> tuple[int, tuple[int, int, int], int]:
        bus = _bus_of(topo.gpu(g).bus_id)
        return (0, bus, g) if bus is not None else (1, (0, 0, 0), g)

    return tuple(sorted(set(gpus), key=key))


def resolve(
    nvidia: NvidiaVisible,
    cuda: CudaVisible,
    topo: Topology,
    scope: Scope,
    *,
    mig_parent: Mapping[str, int] | None = None,
    device_order: str | None = None,
) -> Resolution:
    """Map the two decoded variables onto ``topo``'s GPU indices.

    ``mig_parent``: MIG UUID → GPU index (from NVML) when the source knows it.
    ``device_order``: the value of ``CUDA_DEVICE_ORDER``.
    """
    mig_parent = mig_parent or {}
    notes: list[str] = list(nvidia.notes)
    unresolved: list[str] = []
    migs: list[MigDevice] = []
    known = True
    container: tuple[int, ...] | None
    whole = [d for d in nvidia.ids if d.kind in (IdKind.INDEX, IdKind.GPU_UUID, IdKind.BUS_ID)]
    if (scope is Scope.CONTAINER and nvidia.kind is ListKind.LIST and whole and len(whole) == len(nvidia.ids)
            and len(topo.gpus) > len(whole)
            and all(_match_gpu(d, topo, mig_parent)[0] is not None for d in whole)):
        # a privileged container (or a host run) sees the whole node: match the names as on the node
        notes.append(f"this container sees {len(topo.gpus)} GPUs but NVIDIA_VISIBLE_DEVICES names {len(whole)} "
                     "(privileged container?): using the named ones")
        scope = Scope.NODE
    if scope is Scope.CONTAINER:
        container = _enumeration_order(topo, topo.gpu_indices)
        if nvidia.kind in (ListKind.UNSET, ListKind.EMPTY, ListKind.VOID, ListKind.NONE) and container:
            notes.append(f"NVIDIA_VISIBLE_DEVICES is {nvidia.kind.value} yet this container sees {len(container)} "
                         "GPU(s): injected through CDI or a privileged container")
        if nvidia.kind is ListKind.LIST:
            named = [d for d in nvidia.ids if d.kind in (IdKind.INDEX, IdKind.GPU_UUID, IdKind.BUS_ID)]
            uuids = {g.uuid.lower() for g in topo.gpus if g.uuid}
            missing = [d.raw for d in named if d.kind is IdKind.GPU_UUID and uuids and d.uuid
                       and d.uuid.lower() not in uuids]
            if missing:
                notes.append(f"NVIDIA_VISIBLE_DEVICES names {', '.join(missing)}, which this container does not see")
            elif len(named) == len(nvidia.ids) and len(named) != len(container):
                notes.append(f"NVIDIA_VISIBLE_DEVICES names {len(named)} GPU(s) but this container sees "
                             f"{len(container)}")
        for d in nvidia.ids:
            if d.kind in (IdKind.MIG_UUID, IdKind.MIG_LEGACY):
                migs.append(MigDevice(d.raw, _match_gpu(d, topo, mig_parent)[0]))
            elif d.kind is IdKind.MIG_INDEX:  # a host index pair; this container numbers its GPUs itself
                migs.append(MigDevice(d.raw, None))
    else:
        if nvidia.kind is ListKind.ALL:
            container = _enumeration_order(topo, topo.gpu_indices)
        elif nvidia.kind is ListKind.LIST:
            found: list[int] = []
            for d in nvidia.ids:
                gpu, why = _match_gpu(d, topo, mig_parent)
                if d.kind in (IdKind.MIG_UUID, IdKind.MIG_LEGACY, IdKind.MIG_INDEX):
                    migs.append(MigDevice(d.raw, gpu))
                if gpu is None:
                    unresolved.append(d.raw)
                    notes.append(why or d.raw)
                    known = False
                else:
                    found.append(gpu)
            container = _enumeration_order(topo, found)
        elif nvidia.kind is ListKind.NONE:
            container = ()
        else:  # unset, empty, void, volume mounts that could not be read: CDI may still have injected GPUs
            container = None
            notes.append(f"NVIDIA_VISIBLE_DEVICES is {nvidia.kind.value}: which of the node's GPUs this container "
                         "holds is not in the environment (CDI injection?); run the audit inside the pod without "
                         "--topology to probe them")
    if migs:
        notes.append(f"{len(migs)} MIG device(s): NCCL has no peer-to-peer path between MIG devices; the ring "
                     "figures below describe their parent GPUs")
    gpus, more_notes, cuda_known = _apply_cuda(cuda, topo, container, mig_parent, device_order)
    notes.extend(more_notes)
    return Resolution(tuple(gpus), container, tuple(migs), known and cuda_known, tuple(notes), tuple(unresolved))


def _apply_cuda(
    cuda: CudaVisible,
    topo: Topology,
    container: tuple[int, ...] | None,
    mig_parent: Mapping[str, int],
    device_order: str | None,
) -> tuple[list[int], list[str], bool]:
    notes: list[str] = []
    if cuda.duplicate is not None:
        return [], [f"CUDA_VISIBLE_DEVICES repeats {cuda.duplicate!r}: CUDA then sees no GPU at all"], True
    if cuda.kind is ListKind.EMPTY:
        return [], ["CUDA_VISIBLE_DEVICES is set but empty: CUDA sees no GPU"], True
    if cuda.kind is ListKind.UNSET:
        if container is None:
            return [], notes, False
        return list(container), notes, True
    if cuda.stopped_at is not None:
        notes.append(f"CUDA_VISIBLE_DEVICES stops at {cuda.stopped_at!r}: only the entries before it are visible")
    if cuda.prefix_kind is None:  # ordinals into the container's enumeration
        if container is None:
            return [], [*notes, "CUDA_VISIBLE_DEVICES holds indices, but the container's GPUs are unknown"], False
        out: list[int] = []
        for n in cuda.ordinals:
            if n >= len(container):
                notes.append(f"CUDA_VISIBLE_DEVICES index {n} is past the {len(container)} GPU(s) this container "
                             "sees: it and the entries after it are dropped")
                break
            out.append(container[n])
        names = {topo.gpu(g).name for g in container}
        if (device_order or "").strip() != "PCI_BUS_ID" and len(names) > 1:
            notes.append("GPUs of different models and CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA numbers them "
                         "fastest first, so the index mapping above (PCI order) may be wrong")
        return out, notes, True
    # UUID prefixes, matched among the GPUs (or MIG devices) the container holds
    pool = list(container) if container is not None else list(topo.gpu_indices)
    if cuda.prefix_kind == "GPU-":
        if not any(topo.gpu(g).uuid for g in pool):
            return [], [*notes, "CUDA_VISIBLE_DEVICES holds UUIDs but the topology carries none"], False
        uuids = {g: (topo.gpu(g).uuid or "") for g in pool}
    else:
        if not mig_parent:
            return [], [*notes, "CUDA_VISIBLE_DEVICES names MIG devices the topology source cannot map"], False
        uuids = {}
    chosen: list[str] = []
    picked: list[int] = []
    for prefix in cuda.prefixes:
        if cuda.prefix_kind == "GPU-":
            hits = [(uuids[g], g) for g in pool if uuids[g].lower().startswith(prefix.lower())]
        else:
            hits = [(u, g) for u, g in mig_parent.items() if u.lower().startswith(prefix.lower()) and g in pool]
        if len(hits) != 1:
            why = "matches no device" if not hits else "is ambiguous"
            notes.append(f"CUDA_VISIBLE_DEVICES entry {prefix!r} {why} here: it and the entries after it are dropped")
            break
        uuid, gpu = hits[0]
        if uuid in chosen:
            return [], [*notes, f"CUDA_VISIBLE_DEVICES names {uuid} twice: CUDA then sees no GPU"], True
        chosen.append(uuid)
        if gpu not in picked:
            picked.append(gpu)
    return picked, notes, True
