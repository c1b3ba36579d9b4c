"""A fake of the :mod:`pynvml` module, driven by a :class:`~tests.discovery.machines.Machine`.

Why this is a fair stand-in: it exposes the *real* pynvml names (``nvmlDeviceGet…``),
copies every ``NVML_*`` constant and the ``NVMLError`` class tree from the installed
pynvml, and fails the way the driver does: by raising ``pynvml.NVMLError(code)``, which
pynvml itself turns into ``NVMLError_GpuIsLost``, ``NVMLError_NotSupported``... It returns
what pynvml returns (bytes in ``nvmlPciInfo_t.busId``, a list of 64-bit words for CPU
affinity, ``[current, pending]`` for MIG mode).

Failure injection: ``init_error`` (driver/library missing), ``lost_after`` /
``unknown_after`` (a GPU answers N calls, then every call touching it raises
``GPU_IS_LOST`` / ``UNKNOWN``, as when a GPU falls off the bus mid-probe). A link listed
in a GPU row's ``nvlinks_down`` answers ``nvmlDeviceGetNvLinkState`` with
``NVML_FEATURE_DISABLED`` (the GPU has the link, it is not up), as the driver does for a
failed link, a missing bridge or an NVSwitch board whose fabric manager is not running.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pynvml
from machines import Machine

_LEVEL_CONST = {
    "PIX": pynvml.NVML_TOPOLOGY_SINGLE,
    "PXB": pynvml.NVML_TOPOLOGY_MULTIPLE,
    "PHB": pynvml.NVML_TOPOLOGY_HOSTBRIDGE,
    "NODE": pynvml.NVML_TOPOLOGY_NODE,
    "SYS": pynvml.NVML_TOPOLOGY_SYSTEM,
}
_P2P_CONST = {
    "OK": pynvml.NVML_P2P_STATUS_OK,
    "CNS": pynvml.NVML_P2P_STATUS_CHIPSET_NOT_SUPPORTED,
    "GNS": pynvml.NVML_P2P_STATUS_GPU_NOT_SUPPORTED,
    "TNS": pynvml.NVML_P2P_STATUS_IOH_TOPOLOGY_NOT_SUPPORTED,
    "DIS": pynvml.NVML_P2P_STATUS_DISABLED_BY_REGKEY,
    "NS": pynvml.NVML_P2P_STATUS_NOT_SUPPORTED,
    "U": pynvml.NVML_P2P_STATUS_UNKNOWN,
}


def _err(code: int) -> Exception:
    return pynvml.NVMLError(code)  # pynvml maps the code to its NVMLError_* subclass


def _nvml_bus_id(bdf: str) -> bytes:
    """NVML spells bus ids with an 8-digit domain, upper case: 00000000:3B:00.0."""
    domain, rest = bdf.split(":", 1)
    return f"{int(domain, 16):08X}:{rest.upper()}".encode()


@dataclass
class _Handle:
    index: int
    mig: int | None = None  # MIG slot for MIG device handles


class FakeNvml:
    """Module-like object; pass it as ``nvml=`` to :func:`labeler.discovery.nvml.probe`."""

    def __init__(
        self,
        machine: Machine,
        *,
        init_error: int | None = None,
        lost_after: dict[int, int] | None = None,
        unknown_after: dict[int, int] | None = None,
        device_count: int | None = None,
    ) -> None:
        for name in dir(pynvml):
            if name.startswith(("NVML_", "NVMLError")):
                setattr(self, name, getattr(pynvml, name))
        self.machine = machine
        self.init_error = init_error
        self.lost_after = dict(lost_after or {})
        self.unknown_after = dict(unknown_after or {})
        self.device_count = len(machine.gpus) if device_count is None else device_count
        self.calls: dict[int, int] = {}
        self.initialized = False
        self.shutdowns = 0
        self.nvlink_state_calls = 0

    # -- library ---------------------------------------------------------------------
    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise _err(self.init_error)
        self.initialized = True

    def nvmlShutdown(self) -> None:
        self._need_init()
        self.initialized = False
        self.shutdowns += 1

    def _need_init(self) -> None:
        if not self.initialized:
            raise _err(pynvml.NVML_ERROR_UNINITIALIZED)

    def _touch(self, *handles: _Handle) -> None:
        self._need_init()
        for h in handles:
            n = self.calls.get(h.index, 0)
            self.calls[h.index] = n + 1
            if h.index in self.lost_after and n >= self.lost_after[h.index]:
                raise _err(pynvml.NVML_ERROR_GPU_IS_LOST)
            if h.index in self.unknown_after and n >= self.unknown_after[h.index]:
                raise _err(pynvml.NVML_ERROR_UNKNOWN)

    def nvmlSystemGetDriverVersion(self) -> str:
        self._need_init()
        return "550.127.05"

    def nvmlDeviceGetCount(self) -> int:
        self._need_init()
        return self.device_count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._need_init()
        if not 0 <= index < self.device_count:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        h = _Handle(index)
        self._touch(h)
        return h

    def _gpu(self, h: _Handle) -> Any:
        self._touch(h)
        return self.machine.gpus[h.index]

    # -- identity --------------------------------------------------------------------
    def nvmlDeviceGetPciInfo(self, h: _Handle) -> SimpleNamespace:
        g = self._gpu(h)
        bus = _nvml_bus_id(g.bdf)
        return SimpleNamespace(busId=bus, busIdLegacy=bus[4:], domain=0, bus=int(g.bdf[5:7], 16), device=0)

    def nvmlDeviceGetName(self, h: _Handle) -> str:
        return str(self._gpu(h).name)

    def nvmlDeviceGetUUID(self, h: _Handle) -> str:
        g = self._gpu(h)
        if h.mig is not None:
            return str(g.mig_uuids[h.mig])
        return str(g.uuid)

    def nvmlDeviceGetCpuAffinity(self, h: _Handle, cpu_set_size: int) -> list[int]:
        from labeler.topology.serialize import parse_cpulist

        words = [0] * cpu_set_size
        for cpu in parse_cpulist(self._gpu(h).cpus):
            if cpu // 64 < cpu_set_size:
                words[cpu // 64] |= 1 << (cpu % 64)
        return words

    def nvmlDeviceGetMemoryAffinity(self, h: _Handle, node_set_size: int, scope: int) -> list[int]:
        g = self._gpu(h)
        if scope != pynvml.NVML_AFFINITY_SCOPE_NODE:
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        words = [0] * node_set_size
        words[g.numa // 64] |= 1 << (g.numa % 64)
        return words

    def nvmlDeviceGetArchitecture(self, h: _Handle) -> int:
        g = self._gpu(h)
        if g.arch is None:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(getattr(pynvml, f"NVML_DEVICE_ARCH_{g.arch}"))

    def nvmlDeviceGetCudaComputeCapability(self, h: _Handle) -> tuple[int, int]:
        g = self._gpu(h)
        if g.cc is None:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return (int(g.cc[0]), int(g.cc[1]))  # pynvml returns (major.value, minor.value)

    def nvmlDeviceGetNumaNodeId(self, h: _Handle) -> int:
        self._gpu(h)
        raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)  # x86 PCIe/SXM: GPU memory is not a NUMA node

    # -- PCIe ------------------------------------------------------------------------
    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: _Handle) -> int:
        return int(self._gpu(h).pcie[0])

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: _Handle) -> int:
        return int(self._gpu(h).pcie[1])

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: _Handle) -> int:
        return int(self._gpu(h).pcie[2])

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: _Handle) -> int:
        return int(self._gpu(h).pcie[3])

    # -- MIG -------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, h: _Handle) -> list[int]:
        g = self._gpu(h)
        if g.mig is None:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return list(g.mig)

    def nvmlDeviceGetMaxMigDeviceCount(self, h: _Handle) -> int:
        g = self._gpu(h)
        if g.mig is None:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: _Handle, index: int) -> _Handle:
        g = self._gpu(h)
        if index >= len(g.mig_uuids):
            raise _err(pynvml.NVML_ERROR_NOT_FOUND)
        return _Handle(h.index, mig=index)

    # -- NVLink ----------------------------------------------------------------------
    def _link(self, h: _Handle, link: int) -> str:
        g = self._gpu(h)
        if not g.nvlinks:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        if link >= len(g.nvlinks):
            raise _err(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return str(g.nvlinks[link])

    def nvmlDeviceGetNvLinkState(self, h: _Handle, link: int) -> int:
        self.nvlink_state_calls += 1
        self._link(h, link)
        if link in self.machine.gpus[h.index].nvlinks_down:
            return int(pynvml.NVML_FEATURE_DISABLED)
        return int(pynvml.NVML_FEATURE_ENABLED)

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h: _Handle, link: int) -> SimpleNamespace:
        remote = self._link(h, link).removeprefix("sw:")
        return SimpleNamespace(busId=_nvml_bus_id(remote))

    def nvmlDeviceGetNvLinkVersion(self, h: _Handle, link: int) -> int:
        self._link(h, link)
        version = self.machine.gpus[h.index].nvlink_version
        if version is None:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return int(getattr(pynvml, f"NVML_NVLINK_VERSION_{version}"))

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, h: _Handle, link: int) -> int:
        remote = self._link(h, link)
        return int(
            pynvml.NVML_NVLINK_DEVICE_TYPE_SWITCH if remote.startswith("sw:") else pynvml.NVML_NVLINK_DEVICE_TYPE_GPU
        )

    # -- pairs -----------------------------------------------------------------------
    def nvmlDeviceGetTopologyCommonAncestor(self, a: _Handle, b: _Handle) -> int:
        self._touch(a, b)
        if a.index == b.index:
            return int(pynvml.NVML_TOPOLOGY_INTERNAL)
        return int(_LEVEL_CONST[self.machine.level(a.index, b.index)])

    def nvmlDeviceGetP2PStatus(self, a: _Handle, b: _Handle, index: int) -> int:
        self._touch(a, b)
        if not isinstance(index, int):  # the real binding hands this to ctypes as an int
            raise TypeError(f"p2pIndex must be an int, got {index!r}")
        if index == pynvml.NVML_P2P_CAPS_INDEX_NVLINK:
            return int(_P2P_CONST[self.machine.nvlink_p2p])
        key = (min(a.index, b.index), max(a.index, b.index))
        return int(_P2P_CONST[self.machine.p2p.get(key, "OK")])
