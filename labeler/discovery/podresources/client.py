"""gRPC client for the kubelet pod-resources API v1, and the device-ID → GPU mapping.

Why this API and not the Kubernetes API server: only the kubelet knows which device
IDs the device plugin handed to which container; the API server sees counts. The
agent uses it to publish which GPUs are free, so the extender can place on real holes.

The socket is a unix socket (default ``/var/lib/kubelet/pod-resources/kubelet.sock``);
a missing socket is :class:`SourceUnavailable` (no kubelet here, or the directory is
not mounted into the pod). ``GetAllocatableResources`` arrived in Kubernetes 1.21
(behind a feature gate until 1.23): an older kubelet answers ``UNIMPLEMENTED``, which
is reported as "unknown" (``None``), not as an error.

Device IDs from the NVIDIA device plugin come in several spellings, all handled by
:class:`DeviceMapper`: ``GPU-<uuid>``; ``MIG-<uuid>`` (and the pre-R470
``MIG-GPU-<uuid>/<gi>/<ci>``) which map to the parent GPU; ``<index>`` and
``<gpu>:<mig>`` with ``deviceIDStrategy=index``; and any of those with a ``::<n>``
replica suffix under time-slicing.
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from labeler.discovery.podresources._gen import api_pb2, api_pb2_grpc
from labeler.topology.errors import ProbeError, SourceUnavailable

__all__ = ["DEFAULT_SOCKET", "NVIDIA_RESOURCE_PREFIX", "AllocatedDevices", "DeviceMapper", "PodResourcesClient"]

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
NVIDIA_RESOURCE_PREFIX = "nvidia.com/"
_MAX_MESSAGE = 16 * 1024 * 1024  # the kubelet's own limit for this API


@dataclass(frozen=True, slots=True)
class AllocatedDevices:
    """Devices of one resource held by one container (pod fields empty for allocatable)."""

    namespace: str
    pod: str
    container: str
    resource_name: str
    device_ids: tuple[str, ...]
    numa_nodes: tuple[int, ...]


class DeviceMapper:
    """Map device-plugin IDs to GPU indices using the UUIDs discovery found.

    ``uuids`` maps GPU UUIDs (``GPU-…``) and MIG device UUIDs (``MIG-…``) to the GPU
    index (see :meth:`labeler.discovery.facts.ProbeResult.uuid_to_index`).

    >>> m = DeviceMapper({"GPU-aaa": 0, "GPU-bbb": 1, "MIG-ccc": 1})
    >>> [m.gpu_index(x) for x in ("GPU-bbb", "MIG-ccc", "GPU-aaa::3", "1:0", "7", "MIG-GPU-aaa/1/0", "x")]
    [1, 1, 0, 1, 7, 0, None]
    """

    _INDEX = re.compile(r"^(\d+)(?::(\d+))?$")
    _OLD_MIG = re.compile(r"^MIG-(GPU-[0-9a-fA-F-]+)/\d+/\d+$")

    def __init__(self, uuids: Mapping[str, int]) -> None:
        self._uuids = {k.lower(): v for k, v in uuids.items()}

    def gpu_index(self, device_id: str) -> int | None:
        dev = device_id.split("::", 1)[0].strip()  # time-slicing replica suffix
        hit = self._uuids.get(dev.lower())
        if hit is not None:
            return hit
        m = self._OLD_MIG.match(dev)
        if m:
            return self._uuids.get(m.group(1).lower())
        m = self._INDEX.match(dev)
        if m:
            return int(m.group(1))
        return None

    def gpus_in_use(self, allocations: list[AllocatedDevices], prefix: str = NVIDIA_RESOURCE_PREFIX) -> set[int]:
        """GPU indices held by any container (a GPU with one MIG slice in use counts)."""
        out: set[int] = set()
        for a in allocations:
            if a.resource_name.startswith(prefix):
                out.update(i for i in map(self.gpu_index, a.device_ids) if i is not None)
        return out

    def unknown_ids(self, allocations: list[AllocatedDevices], prefix: str = NVIDIA_RESOURCE_PREFIX) -> list[str]:
        """NVIDIA device IDs that map to no GPU we discovered (stale plugin, wrong node...)."""
        return [
            d
            for a in allocations
            if a.resource_name.startswith(prefix)
            for d in a.device_ids
            if self.gpu_index(d) is None
        ]


def _devices(
    dev: api_pb2.ContainerDevices, namespace: str = "", pod: str = "", container: str = ""
) -> AllocatedDevices:
    numa = tuple(int(n.ID) for n in dev.topology.nodes) if dev.HasField("topology") else ()
    return AllocatedDevices(namespace, pod, container, dev.resource_name, tuple(dev.device_ids), numa)


class PodResourcesClient:
    """Synchronous client; one channel per instance, usable as a context manager."""

    def __init__(self, socket_path: str | os.PathLike[str] = DEFAULT_SOCKET, *, timeout: float = 5.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._channel: grpc.Channel | None = None
        self._stub: Any = None

    def _connect(self) -> Any:
        if self._stub is None:
            if not self.socket_path.exists():
                raise SourceUnavailable(f"pod-resources: no kubelet socket at {self.socket_path}")
            self._channel = grpc.insecure_channel(
                f"unix://{self.socket_path.resolve()}",
                options=[("grpc.max_receive_message_length", _MAX_MESSAGE)],
            )
            self._stub = api_pb2_grpc.PodResourcesListerStub(self._channel)
        return self._stub

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._channel = None
        self._stub = None

    def __enter__(self) -> PodResourcesClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        stub = self._connect()
        try:
            return getattr(stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as err:
            code = err.code() if hasattr(err, "code") else None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise SourceUnavailable(f"pod-resources {method}: kubelet not answering on {self.socket_path}") from err
            raise ProbeError(f"pod-resources {method} failed: {code} {getattr(err, 'details', lambda: '')()}") from err

    def list(self) -> builtins.list[AllocatedDevices]:
        """Every (pod, container, resource) with devices. Containers without devices are skipped."""
        resp = self._call("List", api_pb2.ListPodResourcesRequest())
        out: builtins.list[AllocatedDevices] = []
        for pod in resp.pod_resources:
            for c in pod.containers:
                out.extend(_devices(d, pod.namespace, pod.name, c.name) for d in c.devices)
        return out

    def allocatable(self) -> builtins.list[AllocatedDevices] | None:
        """Every device the kubelet can allocate; ``None`` when the kubelet predates the call."""
        try:
            resp = self._call("GetAllocatableResources", api_pb2.AllocatableResourcesRequest())
        except ProbeError as err:
            cause = err.__cause__
            if isinstance(cause, grpc.RpcError) and cause.code() == grpc.StatusCode.UNIMPLEMENTED:
                return None
            raise
        return [_devices(d) for d in resp.devices]
