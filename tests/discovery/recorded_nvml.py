"""A pynvml stand-in that answers from a recording of real NVML (``nvml-raw.json`` of a capture).

Why: :mod:`fake_nvml` answers from machine tables we wrote; this one answers exactly what a
live driver answered, value or error code, so the NVML source is tested against the real
thing's quirks (a VM guest's "Not Supported" NUMA node id, NVLink calls that fail on every
link, MIG mode ``[0, 0]``). Constants and the ``NVMLError`` tree come from the installed
pynvml, and errors are raised as ``pynvml.NVMLError(code)`` like the binding does.

A call the recording does not hold raises :class:`NotRecorded` (an ``AssertionError``), so
a probe that starts asking something new fails loudly instead of getting an invented
answer. The recording has no CPU/NUMA affinity masks (ctypes arrays were not dumped);
those are passed in from the same capture's probe output.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pynvml


class NotRecorded(AssertionError):
    """The probe asked something the capture did not record."""


class RecordedNvml:
    """Module-like object for :func:`labeler.discovery.nvml.probe`, replaying one capture."""

    def __init__(self, path: Path, *, cpus: frozenset[int], numa_nodes: frozenset[int]) -> None:
        for name in dir(pynvml):
            if name.startswith(("NVML_", "NVMLError")):
                setattr(self, name, getattr(pynvml, name))
        self.raw: dict[str, Any] = json.loads(path.read_text())
        self.cpus, self.numa_nodes = cpus, numa_nodes
        self.calls: list[str] = []

    # -- replay ----------------------------------------------------------------------
    @staticmethod
    def _answer(entry: dict[str, Any] | None, what: str) -> Any:
        if entry is None:
            raise NotRecorded(f"{what} was not recorded")
        if "nvml_error" in entry:
            raise pynvml.NVMLError(int(entry["nvml_error"]))
        return entry["ok"]

    def _system(self, name: str) -> Any:
        self.calls.append(name)
        return self._answer(self.raw.get(name), name)

    def _device(self, handle: int, name: str) -> Any:
        self.calls.append(name)
        return self._answer(self.raw["devices"][handle].get(name), f"{name}(GPU{handle})")

    def _link(self, handle: int, link: int, name: str) -> Any:
        self.calls.append(name)
        entry = self.raw["devices"][handle].get("nvlinks", {}).get(str(link), {}).get(name)
        return self._answer(entry, f"{name}(GPU{handle}, link {link})")

    # -- library ---------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls.append("nvmlInit")

    def nvmlShutdown(self) -> None:
        self.calls.append("nvmlShutdown")

    def nvmlSystemGetDriverVersion(self) -> str:
        return str(self._system("nvmlSystemGetDriverVersion"))

    def nvmlDeviceGetCount(self) -> int:
        return int(self._system("nvmlDeviceGetCount"))

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        if not 0 <= index < len(self.raw["devices"]):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return index

    # -- per device ------------------------------------------------------------------
    def nvmlDeviceGetPciInfo(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(**self._device(h, "nvmlDeviceGetPciInfo"))

    def nvmlDeviceGetName(self, h: int) -> str:
        return str(self._device(h, "nvmlDeviceGetName"))

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return str(self._device(h, "nvmlDeviceGetUUID"))

    def nvmlDeviceGetArchitecture(self, h: int) -> int:
        return int(self._device(h, "nvmlDeviceGetArchitecture"))

    def nvmlDeviceGetCudaComputeCapability(self, h: int) -> tuple[int, int]:
        major, minor = self._device(h, "nvmlDeviceGetCudaComputeCapability")
        return int(major), int(minor)

    def nvmlDeviceGetNumaNodeId(self, h: int) -> int:
        return int(self._device(h, "nvmlDeviceGetNumaNodeId"))

    def nvmlDeviceGetCpuAffinity(self, h: int, cpu_set_size: int) -> list[int]:
        self._device(h, "nvmlDeviceGetCpuAffinity")  # recorded as answered (value not dumped)
        return _mask(self.cpus, cpu_set_size)

    def nvmlDeviceGetMemoryAffinity(self, h: int, node_set_size: int, scope: int) -> list[int]:
        self._device(h, "nvmlDeviceGetMemoryAffinity")
        if scope != pynvml.NVML_AFFINITY_SCOPE_NODE:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return _mask(self.numa_nodes, node_set_size)

    def nvmlDeviceGetCurrPcieLinkGeneration(self, h: int) -> int:
        return int(self._device(h, "nvmlDeviceGetCurrPcieLinkGeneration"))

    def nvmlDeviceGetMaxPcieLinkGeneration(self, h: int) -> int:
        return int(self._device(h, "nvmlDeviceGetMaxPcieLinkGeneration"))

    def nvmlDeviceGetCurrPcieLinkWidth(self, h: int) -> int:
        return int(self._device(h, "nvmlDeviceGetCurrPcieLinkWidth"))

    def nvmlDeviceGetMaxPcieLinkWidth(self, h: int) -> int:
        return int(self._device(h, "nvmlDeviceGetMaxPcieLinkWidth"))

    def nvmlDeviceGetMigMode(self, h: int) -> list[int]:
        return [int(x) for x in self._device(h, "nvmlDeviceGetMigMode")]

    def nvmlDeviceGetMaxMigDeviceCount(self, h: int) -> int:
        return int(self._device(h, "nvmlDeviceGetMaxMigDeviceCount"))

    def nvmlDeviceGetNvLinkState(self, h: int, link: int) -> int:
        return int(self._link(h, link, "nvmlDeviceGetNvLinkState"))

    def nvmlDeviceGetNvLinkVersion(self, h: int, link: int) -> int:
        return int(self._link(h, link, "nvmlDeviceGetNvLinkVersion"))

    def nvmlDeviceGetNvLinkRemotePciInfo(self, h: int, link: int) -> SimpleNamespace:
        return SimpleNamespace(**self._link(h, link, "nvmlDeviceGetNvLinkRemotePciInfo"))

    def nvmlDeviceGetNvLinkRemoteDeviceType(self, h: int, link: int) -> int:
        return int(self._link(h, link, "nvmlDeviceGetNvLinkRemoteDeviceType"))

    # -- pairs -------------------------------------------------------------------------
    def nvmlDeviceGetTopologyCommonAncestor(self, a: int, b: int) -> int:
        raise NotRecorded(f"pair GPU{a}-GPU{b}: the capture records pairs under 'pairs': {self.raw['pairs']}")

    def nvmlDeviceGetP2PStatus(self, a: int, b: int, index: int) -> int:
        raise NotRecorded(f"pair GPU{a}-GPU{b}: no P2P status recorded")


def _mask(ids: frozenset[int], words: int) -> list[int]:
    out = [0] * words
    for i in ids:
        out[i // 64] |= 1 << (i % 64)
    return out
