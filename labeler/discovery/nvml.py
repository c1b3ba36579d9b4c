"""NVML source: what the driver itself knows about each GPU and GPU pair.

Why NVML first: it is the driver's own view (the same library `nvidia-smi` uses), it
names GPUs by UUID and PCI bus id (the keys that join every other source), and it is
the only source for NVLink peers, P2P capability, PCIe link training and MIG.

Topology facts v2 read here (each stays ``None`` when the call is not supported):
``nvmlDeviceGetArchitecture`` (→ ``Gpu.arch``), ``nvmlDeviceGetCudaComputeCapability``
(→ ``Gpu.cc``), ``nvmlDeviceGetNvLinkVersion`` of the active links (→ ``Gpu.nvlink_version``,
as NVML's ``NVML_NVLINK_VERSION_x_y`` says; public benchmark code works around drivers
that report 5.0 on Hopper, so consumers cross-check it with ``arch``),
``nvmlDeviceGet{Curr,Max}PcieLink{Generation,Width}`` (→ ``Gpu.pcie``) and
``nvmlDeviceGetP2PStatus`` per pair (→ ``Topology.p2p``).

The pynvml module is *injected* (:class:`NvmlApi` is the slice of it we use), so tests
pass a fake with the real function names, constants and error classes. Every
``pynvml.NVMLError`` is translated at this edge:

* ``LIBRARY_NOT_FOUND`` / ``DRIVER_NOT_LOADED`` at init, or zero devices → :class:`NoGpuError`;
* ``GPU_IS_LOST`` / ``UNKNOWN`` / ``RESET_REQUIRED`` on one GPU → a :class:`GpuHealth` record,
  the GPU is left out of the topology and the result is *degraded*, never a crash;
* ``NOT_SUPPORTED`` / ``FUNCTION_NOT_FOUND`` / ``NOT_FOUND`` / ``INVALID_ARGUMENT`` on an
  optional query → the fact is unknown (older drivers, GPUs without NVLink or MIG);
* anything else → :class:`ProbeError` with the NVML message, raised ``from`` the cause.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

from labeler.discovery.facts import (
    Finding,
    GpuHealth,
    Health,
    MigState,
    NvLinkState,
    P2PStatus,
    PcieLinkState,
    ProbeResult,
    Severity,
    normalize_bus_id,
)
from labeler.topology.errors import NoGpuError, ProbeError
from labeler.topology.links import SELF, Link, LinkLevel
from labeler.topology.model import P2P, Gpu, PcieLink, Topology

__all__ = ["SOURCE", "NvmlApi", "load_pynvml", "probe"]

SOURCE = "nvml"
_MIN_CPUS = 1024
T = TypeVar("T")


class NvmlApi(Protocol):
    """The part of :mod:`pynvml` this source calls (duck-typed; the module satisfies it)."""

    NVMLError: type[Exception]

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...


def load_pynvml() -> Any:
    """Import :mod:`pynvml` lazily, so importing this module never needs the driver."""
    try:
        return importlib.import_module("pynvml")
    except ImportError as err:  # the package itself is missing, not the driver
        raise NoGpuError("NVML: the nvidia-ml-py package (module pynvml) is not installed") from err


# NVML_TOPOLOGY_* → nvidia-smi level. INTERNAL means "same board" (e.g. the two GPUs of
# a K80/M60); nvidia-smi prints it as a switch-local path, so it reads as PIX here.
_TOPO_LEVELS: tuple[tuple[str, LinkLevel], ...] = (
    ("NVML_TOPOLOGY_INTERNAL", LinkLevel.PIX),
    ("NVML_TOPOLOGY_SINGLE", LinkLevel.PIX),
    ("NVML_TOPOLOGY_MULTIPLE", LinkLevel.PXB),
    ("NVML_TOPOLOGY_HOSTBRIDGE", LinkLevel.PHB),
    ("NVML_TOPOLOGY_NODE", LinkLevel.NODE),
    ("NVML_TOPOLOGY_SYSTEM", LinkLevel.SYS),
)

_P2P_NAMES: tuple[tuple[str, str], ...] = (
    ("NVML_P2P_STATUS_OK", "OK"),
    ("NVML_P2P_STATUS_CHIPSET_NOT_SUPPORTED", "CNS"),
    ("NVML_P2P_STATUS_GPU_NOT_SUPPORTED", "GNS"),
    ("NVML_P2P_STATUS_IOH_TOPOLOGY_NOT_SUPPORTED", "TNS"),
    ("NVML_P2P_STATUS_DISABLED_BY_REGKEY", "DIS"),
    ("NVML_P2P_STATUS_NOT_SUPPORTED", "NS"),
    ("NVML_P2P_STATUS_UNKNOWN", "U"),
)

_OPTIONAL = (
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
    "NVML_ERROR_NOT_FOUND",
    "NVML_ERROR_INVALID_ARGUMENT",
)
_HEALTH = {
    "NVML_ERROR_GPU_IS_LOST": Health.LOST,
    "NVML_ERROR_UNKNOWN": Health.UNKNOWN_ERROR,
    "NVML_ERROR_RESET_REQUIRED": Health.RESET_REQUIRED,
}


class _GpuFailed(Exception):
    """Internal: this GPU stopped answering (lost / unknown); carries the health."""

    def __init__(self, status: Health, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _const(nv: Any, name: str) -> int:
    value = getattr(nv, name)
    # pynvml defines NVML_P2P_CAPS_INDEX_READ = (0,) (a stray trailing comma); unwrap it.
    if isinstance(value, tuple):
        value = value[0]
    return int(value)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace").rstrip("\x00")
    return str(value)


def _bits_to_set(words: Iterable[int], width: int = 64) -> frozenset[int]:
    """NVML affinity masks are arrays of 64-bit words, CPU (or node) i at bit i%64 of word i//64."""
    out: set[int] = set()
    for w, word in enumerate(words):
        word = int(word)
        bit = 0
        while word:
            if word & 1:
                out.add(w * width + bit)
            word >>= 1
            bit += 1
    return frozenset(out)


@dataclass
class _Ctx:
    nv: Any
    optional: frozenset[int]
    health: dict[int, Health]
    lost_index: dict[int, int]

    def code(self, err: BaseException) -> int | None:
        return getattr(err, "value", None)

    def fail(self, err: BaseException, what: str) -> NoReturn:
        """Translate one NVML error: per-GPU health → :class:`_GpuFailed`, else :class:`ProbeError`."""
        code = self.code(err)
        status = self.health.get(code) if code is not None else None
        if status is not None:
            raise _GpuFailed(status, f"{err} (during {what})") from err
        raise ProbeError(f"NVML {what} failed: {err} (code {code})") from err

    def call(self, fn: Callable[..., T], *args: Any, what: str) -> T:
        try:
            return fn(*args)
        except self.nv.NVMLError as err:
            self.fail(err, what)

    def optional_call(self, fn: Callable[..., T], *args: Any, what: str) -> T | None:
        """Like :meth:`call`, but "not supported here" is an unknown fact (``None``)."""
        try:
            return fn(*args)
        except self.nv.NVMLError as err:
            if self.code(err) in self.optional:
                return None
            self.fail(err, what)


def _init(nv: Any) -> None:
    try:
        nv.nvmlInit()
    except nv.NVMLError as err:
        code = getattr(err, "value", None)
        if code in (
            getattr(nv, "NVML_ERROR_LIBRARY_NOT_FOUND", None),
            getattr(nv, "NVML_ERROR_DRIVER_NOT_LOADED", None),
        ):
            raise NoGpuError(f"NVML: {err} (no NVIDIA driver loaded on this machine)") from err
        raise ProbeError(f"NVML init failed: {err} (code {code})") from err


def probe(nvml: NvmlApi | None = None, *, cpu_count: int | None = None) -> ProbeResult:
    """Read every GPU and GPU pair through NVML. ``nvml`` defaults to the real pynvml.

    ``cpu_count`` sizes the affinity bitmask. It is at least 1024 CPUs (16 words):
    ``os.cpu_count()`` inside a container or VM can be smaller than the host's CPU ids,
    and a mask too short silently drops the high CPUs (the SMT siblings, usually).
    """
    nv: Any = nvml if nvml is not None else load_pynvml()  # the rest of the API is duck-typed
    _init(nv)
    try:
        return _probe(nv, max(cpu_count or os.cpu_count() or 1, _MIN_CPUS))
    finally:
        # shutting down a half-dead driver must not mask the real result
        with contextlib.suppress(nv.NVMLError):
            nv.nvmlShutdown()


@dataclass
class _Dev:
    index: int
    handle: Any
    bus_id: str | None = None
    name: str | None = None
    uuid: str | None = None
    cpus: frozenset[int] | None = None
    numa: frozenset[int] | None = None
    gpu_numa: int | None = None
    arch: str | None = None
    cc: str | None = None
    nvlink_version: str | None = None


def _probe(nv: Any, cpu_count: int) -> ProbeResult:
    ctx = _Ctx(
        nv=nv,
        optional=frozenset(int(getattr(nv, n)) for n in _OPTIONAL if hasattr(nv, n)),
        health={int(getattr(nv, n)): h for n, h in _HEALTH.items() if hasattr(nv, n)},
        lost_index={},
    )
    count = ctx.call(nv.nvmlDeviceGetCount, what="device count")
    if count == 0:
        raise NoGpuError("NVML: the driver is loaded but reports 0 GPUs")
    driver = None
    with contextlib.suppress(nv.NVMLError, AttributeError):
        driver = _text(nv.nvmlSystemGetDriverVersion())

    devs: list[_Dev] = []
    failed: dict[int, GpuHealth] = {}
    findings: list[Finding] = []

    def fail(dev: _Dev, exc: _GpuFailed) -> None:
        if dev.index not in failed:
            failed[dev.index] = GpuHealth(dev.index, dev.bus_id, exc.status, exc.detail)
            where = f" ({dev.bus_id})" if dev.bus_id else ""
            findings.append(
                Finding(Severity.ERROR, f"gpu-{exc.status.value}", f"GPU{dev.index}{where}: {exc.detail}", dev.index)
            )

    for i in range(count):
        dev = _Dev(index=i, handle=None)
        try:
            dev.handle = ctx.call(nv.nvmlDeviceGetHandleByIndex, i, what=f"GPU{i} handle")
            devs.append(dev)
            _identity(ctx, dev, cpu_count)
        except _GpuFailed as exc:
            fail(dev, exc)
            if dev.handle is None:
                devs.append(dev)

    def alive() -> list[_Dev]:
        return [d for d in devs if d.index not in failed and d.handle is not None]

    pcie: list[PcieLinkState] = []
    mig: list[MigState] = []
    for dev in alive():
        try:
            pcie.append(_pcie(ctx, dev))
            m = _mig(ctx, dev)
            if m is not None:
                mig.append(m)
        except _GpuFailed as exc:
            fail(dev, exc)

    # NVLink: per GPU, count active links per remote PCI address.
    nvl: dict[int, Counter[str]] = {}
    link_states: dict[int, NvLinkState] = {}
    for dev in alive():
        try:
            nvl[dev.index], dev.nvlink_version, link_states[dev.index] = _nvlinks(ctx, dev)
        except _GpuFailed as exc:
            fail(dev, exc)

    pcie_levels: dict[tuple[int, int], LinkLevel] = {}
    p2p: list[P2PStatus] = []
    for a_pos, a in enumerate(devs):
        for b in devs[a_pos + 1 :]:
            if a.index in failed or b.index in failed:
                continue
            try:
                raw = ctx.call(nv.nvmlDeviceGetTopologyCommonAncestor, a.handle, b.handle, what="topology level")
                pcie_levels[(a.index, b.index)] = _level(nv, raw)
                p2p.append(_p2p(ctx, a, b))
            except _GpuFailed as exc:
                # A pair call does not say which side died: ask each GPU on its own.
                for d in (a, b):
                    try:
                        ctx.call(nv.nvmlDeviceGetPciInfo, d.handle, what="re-check after pair failure")
                    except _GpuFailed as own:
                        fail(d, own)
                if a.index not in failed and b.index not in failed:
                    fail(a, exc)  # neither failed alone: blame the first, keep going

    healthy = [d for d in devs if d.index not in failed and d.handle is not None]
    nv_counts = _nvlink_matrix(healthy, nvl)
    links_of = {st.gpu: _pcie_link(st) for st in pcie}
    mig_of = {m.gpu: m.current for m in mig}
    gpus = [
        Gpu(
            index=d.index,
            name=d.name,
            bus_id=d.bus_id,
            uuid=d.uuid,
            cpu_affinity=d.cpus,
            numa_affinity=d.numa,
            gpu_numa_id=d.gpu_numa,
            arch=d.arch,
            cc=d.cc,
            nvlink_version=d.nvlink_version,
            pcie=links_of.get(d.index),
            mig=mig_of.get(d.index),
        )
        for d in healthy
    ]
    p2p_of = {(st.a, st.b): p2p_status(st) for st in p2p}
    rows: list[list[Link | None]] = []
    for da in healthy:
        row: list[Link | None] = []
        for db in healthy:
            if da.index == db.index:
                row.append(SELF)
                continue
            key = (min(da.index, db.index), max(da.index, db.index))
            n = nv_counts.get(key, 0)
            lvl = pcie_levels.get(key)
            row.append(Link(LinkLevel.NVLINK, n) if n else (Link(lvl) if lvl is not None else None))
        rows.append(row)

    for st in pcie:
        if st.width_downtrained:
            findings.append(
                Finding(
                    Severity.WARNING,
                    "pcie-width-downtrained",
                    f"GPU{st.gpu}: PCIe link trained at x{st.curr_width} of x{st.max_width} "
                    f"(Gen{st.curr_gen} of Gen{st.max_gen}); reseat the card or check the riser/slot",
                    st.gpu,
                )
            )
        elif st.gen_below_max:
            findings.append(
                Finding(
                    Severity.INFO,
                    "pcie-gen-below-max",
                    f"GPU{st.gpu}: PCIe Gen{st.curr_gen} of Gen{st.max_gen} "
                    "(normal at idle: the link retrains to full speed under load)",
                    st.gpu,
                )
            )
    p2p_rows = [
        [None if da.index == db.index else p2p_of.get((min(da.index, db.index), max(da.index, db.index)))
         for db in healthy]
        for da in healthy
    ]
    warnings = [f.message for f in findings if f.severity is Severity.ERROR]
    topo = Topology.from_rows(gpus, [], rows, source=SOURCE, warnings=warnings, p2p=p2p_rows)
    health = [GpuHealth(d.index, d.bus_id, Health.OK) for d in healthy] + list(failed.values())
    health.sort(key=lambda h: h.index)
    return ProbeResult(
        source=SOURCE,
        topology=topo,
        health=tuple(health),
        pcie=tuple(pcie),
        p2p=tuple(p for p in p2p if p.a not in failed and p.b not in failed),
        mig=tuple(m for m in mig if m.gpu not in failed),
        nvlink=tuple(st for g, st in sorted(link_states.items()) if g not in failed and st.active + st.inactive),
        findings=tuple(findings),
        pcie_levels={k: v.token for k, v in pcie_levels.items() if k[0] not in failed and k[1] not in failed},
        driver_version=driver,
    )


def _identity(ctx: _Ctx, dev: _Dev, cpu_count: int) -> None:
    nv, h = ctx.nv, dev.handle
    pci = ctx.call(nv.nvmlDeviceGetPciInfo, h, what=f"GPU{dev.index} PCI info")
    dev.bus_id = normalize_bus_id(_text(pci.busId))
    dev.name = _text(ctx.call(nv.nvmlDeviceGetName, h, what=f"GPU{dev.index} name"))
    dev.uuid = _text(ctx.call(nv.nvmlDeviceGetUUID, h, what=f"GPU{dev.index} UUID"))
    words = (cpu_count + 63) // 64
    mask = ctx.optional_call(nv.nvmlDeviceGetCpuAffinity, h, words, what=f"GPU{dev.index} CPU affinity")
    cpus = _bits_to_set(mask) if mask is not None else None
    dev.cpus = cpus or None  # an all-zero mask means "no affinity known" (VMs)
    scope = getattr(nv, "NVML_AFFINITY_SCOPE_NODE", None)
    if scope is not None and hasattr(nv, "nvmlDeviceGetMemoryAffinity"):
        nodes = ctx.optional_call(nv.nvmlDeviceGetMemoryAffinity, h, 4, scope, what=f"GPU{dev.index} NUMA affinity")
        dev.numa = (_bits_to_set(nodes) or None) if nodes is not None else None
    arch = _optional_attr(ctx, "nvmlDeviceGetArchitecture", h, what=f"GPU{dev.index} architecture")
    dev.arch = _arch_names(nv).get(int(arch)) if arch is not None else None
    cc = _optional_attr(ctx, "nvmlDeviceGetCudaComputeCapability", h, what=f"GPU{dev.index} compute capability")
    if cc is not None:
        major, minor = (int(x) for x in cc)
        dev.cc = f"{major}.{minor}"
    # nvmlDeviceGetNumaNodeId is the NUMA node *of the GPU's own memory*: only real on
    # platforms where the GPU is a NUMA node (GH200/GB200, POWER9). Elsewhere it is
    # NOT_SUPPORTED; nvidia-smi prints that as "GPU NUMA ID  N/A".
    if hasattr(nv, "nvmlDeviceGetNumaNodeId"):
        node = ctx.optional_call(nv.nvmlDeviceGetNumaNodeId, h, what=f"GPU{dev.index} NUMA node id")
        dev.gpu_numa = int(node) if node is not None and int(node) >= 0 else None


def _optional_attr(ctx: _Ctx, name: str, *args: Any, what: str) -> Any:
    """An optional call of a function older pynvml releases may lack (then: unknown)."""
    fn = getattr(ctx.nv, name, None)
    return None if fn is None else ctx.optional_call(fn, *args, what=what)


def _arch_names(nv: Any) -> dict[int, str]:
    """``NVML_DEVICE_ARCH_HOPPER`` = 9 → ``"hopper"``, from the module's own constants (``UNKNOWN`` left out)."""
    prefix = "NVML_DEVICE_ARCH_"
    return {
        int(getattr(nv, n)): n[len(prefix):].lower()
        for n in dir(nv)
        if n.startswith(prefix) and n != prefix + "UNKNOWN" and isinstance(getattr(nv, n), int)
    }


def _nvlink_version_names(nv: Any) -> dict[int, str]:
    """``NVML_NVLINK_VERSION_4_0`` = 6 → ``"4.0"`` (``INVALID`` left out)."""
    prefix = "NVML_NVLINK_VERSION_"
    return {
        int(getattr(nv, n)): n[len(prefix):].replace("_", ".")
        for n in dir(nv)
        if n.startswith(prefix) and n != prefix + "INVALID" and isinstance(getattr(nv, n), int)
    }


_GENS = range(1, 8)
_WIDTHS = (1, 2, 4, 8, 12, 16, 32)


def _pcie_link(st: PcieLinkState) -> PcieLink | None:
    """The model's PCIe link from NVML's answers (already checked to be PCIe values by :func:`_pcie`)."""
    link = PcieLink(st.curr_gen, st.curr_width, st.max_gen, st.max_width)
    return link if link.known else None


def p2p_status(st: P2PStatus) -> P2P | None:
    """One status per pair: does peer-to-peer access work, and if not, why (NVML ``U`` → ``None``).

    OK when P2P reads and writes are both OK (whatever the transport: NVML's
    NVLink index only says whether NVLink carries them); otherwise the read
    status, or the write status when only writes fail.
    """
    if st.read == "OK" and st.write == "OK":
        return P2P.OK
    code = st.read if st.read != "OK" else st.write
    return None if code == "U" else P2P(code)


def _pcie(ctx: _Ctx, dev: _Dev) -> PcieLinkState:
    nv, h, i = ctx.nv, dev.handle, dev.index

    def opt(fn_name: str, valid: Iterable[int]) -> int | None:
        """The answer, or ``None`` when unsupported or not a PCIe value (a VM's width 0)."""
        fn = getattr(nv, fn_name, None)
        if fn is None:
            return None
        v = ctx.optional_call(fn, h, what=f"GPU{i} {fn_name}")
        return int(v) if v is not None and int(v) in valid else None

    return PcieLinkState(
        gpu=i,
        curr_gen=opt("nvmlDeviceGetCurrPcieLinkGeneration", _GENS),
        max_gen=opt("nvmlDeviceGetMaxPcieLinkGeneration", _GENS),
        curr_width=opt("nvmlDeviceGetCurrPcieLinkWidth", _WIDTHS),
        max_width=opt("nvmlDeviceGetMaxPcieLinkWidth", _WIDTHS),
    )


def _mig(ctx: _Ctx, dev: _Dev) -> MigState | None:
    nv, h = ctx.nv, dev.handle
    modes = ctx.optional_call(nv.nvmlDeviceGetMigMode, h, what=f"GPU{dev.index} MIG mode")
    if modes is None:
        return None  # not MIG-capable
    enabled = _const(nv, "NVML_DEVICE_MIG_ENABLE")
    current, pending = (int(modes[0]) == enabled), (int(modes[1]) == enabled)
    uuids: list[str] = []
    if current:
        slots = ctx.optional_call(nv.nvmlDeviceGetMaxMigDeviceCount, h, what="MIG device count") or 0
        for s in range(int(slots)):
            mh = ctx.optional_call(nv.nvmlDeviceGetMigDeviceHandleByIndex, h, s, what="MIG handle")
            if mh is not None:  # NOT_FOUND: empty slot
                uuids.append(_text(ctx.call(nv.nvmlDeviceGetUUID, mh, what="MIG UUID")))
    return MigState(dev.index, current, pending, tuple(uuids))


def _nvlinks(ctx: _Ctx, dev: _Dev) -> tuple[Counter[str], str | None, NvLinkState]:
    """Active NVLinks of one GPU, counted per remote bus id (``switch:`` prefix for NVSwitch), their version,
    and which link numbers are active or present but down."""
    nv, h = ctx.nv, dev.handle
    out: Counter[str] = Counter()
    active: list[int] = []
    inactive: list[int] = []
    versions: set[str | None] = set()
    names = _nvlink_version_names(nv)
    max_links = int(getattr(nv, "NVML_NVLINK_MAX_LINKS", 18))
    switch_type = getattr(nv, "NVML_NVLINK_DEVICE_TYPE_SWITCH", 2)
    for link in range(max_links):
        state = ctx.optional_call(nv.nvmlDeviceGetNvLinkState, h, link, what=f"GPU{dev.index} NVLink {link} state")
        if state is None:
            if link == 0:
                break  # no NVLink on this GPU at all (PCIe cards): skip 35 useless calls
            continue
        if int(state) != _const(nv, "NVML_FEATURE_ENABLED"):
            inactive.append(link)
            continue
        active.append(link)
        remote = ctx.optional_call(nv.nvmlDeviceGetNvLinkRemotePciInfo, h, link, what="NVLink remote PCI info")
        if remote is None:
            continue
        bus = normalize_bus_id(_text(remote.busId))
        kind = None
        if hasattr(nv, "nvmlDeviceGetNvLinkRemoteDeviceType"):
            kind = ctx.optional_call(nv.nvmlDeviceGetNvLinkRemoteDeviceType, h, link, what="NVLink remote type")
        out[f"switch:{bus}" if kind is not None and int(kind) == int(switch_type) else bus] += 1
        version = _optional_attr(ctx, "nvmlDeviceGetNvLinkVersion", h, link, what="NVLink version")
        versions.add(None if version is None else names.get(int(version)))
    # one version for all active links, else (mixed or partly unknown) unknown
    state = NvLinkState(dev.index, tuple(active), tuple(inactive))
    return out, (versions.pop() if len(versions) == 1 else None), state


def _nvlink_matrix(devs: list[_Dev], nvl: dict[int, Counter[str]]) -> dict[tuple[int, int], int]:
    """NVLink count per GPU pair: direct links, plus the NVSwitch fabric.

    GPUs on an NVSwitch fabric are all-to-all; `nvidia-smi` reports the bonded width a
    pair can use, i.e. per shared switch the smaller of the two GPUs' link counts to it
    (DGX A100: 6 switches x 2 links = NV12). A remote bus id that is not a GPU we know
    is taken as a switch when the driver cannot tell the device type.
    """
    by_bus = {d.bus_id: d.index for d in devs if d.bus_id}
    direct: dict[tuple[int, int], int] = defaultdict(int)
    switches: dict[int, Counter[str]] = {}
    for d in devs:
        counts = nvl.get(d.index, Counter())
        sw: Counter[str] = Counter()
        for remote, n in counts.items():
            peer = by_bus.get(remote)
            if peer is not None and peer != d.index:
                key = (min(d.index, peer), max(d.index, peer))
                direct[key] = max(direct[key], n)
            elif peer is None:
                sw[remote.removeprefix("switch:")] += n
        switches[d.index] = sw
    out: dict[tuple[int, int], int] = dict(direct)
    for i, a in enumerate(devs):
        for b in devs[i + 1 :]:
            sa, sb = switches[a.index], switches[b.index]
            shared = sum(min(sa[s], sb[s]) for s in sa.keys() & sb.keys())
            if shared:
                key = (a.index, b.index)
                out[key] = out.get(key, 0) + shared
    return out


def _level(nv: Any, raw: int) -> LinkLevel:
    for name, level in _TOPO_LEVELS:
        if hasattr(nv, name) and int(raw) == int(getattr(nv, name)):
            return level
    raise ProbeError(f"NVML returned an unknown topology level {raw}")


def _p2p(ctx: _Ctx, a: _Dev, b: _Dev) -> P2PStatus:
    nv = ctx.nv
    names = {int(getattr(nv, n)): s for n, s in _P2P_NAMES if hasattr(nv, n)}

    def one(index_name: str) -> str:
        v = ctx.optional_call(
            nv.nvmlDeviceGetP2PStatus, a.handle, b.handle, _const(nv, index_name), what=f"P2P {index_name}"
        )
        return "U" if v is None else names.get(int(v), "U")

    return P2PStatus(
        a.index,
        b.index,
        read=one("NVML_P2P_CAPS_INDEX_READ"),
        write=one("NVML_P2P_CAPS_INDEX_WRITE"),
        nvlink=one("NVML_P2P_CAPS_INDEX_NVLINK"),
    )
