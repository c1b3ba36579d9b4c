"""Wiring: turn settings into the real prober, allocation source and API client.

Why separate from the loop: the loop only knows the small protocols in
:mod:`labeler.agent.sources`; this is the one place that imports the discovery
package (NVML, nvidia-smi, sysfs, kubelet gRPC), lazily, so tests and ``--topology-file``
runs need none of it; the API client comes from the one builder every process uses
(:mod:`kubeio.client`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from kubeio import client as kube_client
from labeler.agent.settings import AgentSettings
from labeler.agent.sources import AllocationSource, FileProber, ProbeOutcome, Prober
from labeler.topology.errors import ConfigError, ProbeError
from labeler.topology.model import Topology

__all__ = [
    "LocalProber",
    "PodResourcesAllocation",
    "api_client",
    "build_allocation_source",
    "build_prober",
    "core_api",
]


def api_client(settings: AgentSettings) -> k8s.ApiClient:
    """The ApiClient of :func:`kubeio.client.api_client`: ``--kubeconfig``, else ``$KUBECONFIG`` or
    ``~/.kube/config``, else the in-cluster service account; urllib3 retries off (the publisher
    retries with backoff and counts every attempt). Raises :class:`ConfigError` without any configuration."""
    return kube_client.api_client(settings.kubeconfig)


def core_api(settings: AgentSettings) -> k8s.CoreV1Api:
    """CoreV1Api over :func:`api_client`."""
    return k8s.CoreV1Api(api_client(settings))


@dataclass
class LocalProber:
    """The real prober: :func:`labeler.discovery.local.probe_local` (NVML + nvidia-smi + sysfs).

    ``sysfs_root`` is ``/host`` in the DaemonSet, where the host's /sys is mounted
    read-only, so /sys/class/net lists the host's NICs rather than the pod's.
    It also remembers GPU/MIG UUID → index from the last probe, which the
    pod-resources allocation source needs.
    """

    sysfs_root: str = "/"
    uuid_to_index: dict[str, int] = field(default_factory=dict)

    def probe(self) -> ProbeOutcome:
        from labeler.discovery import local

        facts = local.probe_local(sysfs_root=self.sysfs_root)
        topo = facts.topology
        uuids = {g.uuid: g.index for g in topo.gpus if g.uuid}
        if facts.nvml is not None:
            uuids.update(facts.nvml.uuid_to_index())
        self.uuid_to_index = uuids
        reason = None
        if facts.degraded:
            lost = [f"GPU{h.index} {h.status.value}" for h in facts.nvml.health] if facts.nvml else []
            lost = [x for x in lost if not x.endswith(" ok")]
            failed = [f"{k} {v}" for k, v in facts.source_errors.items() if not v.startswith("unavailable:")]
            reason = "; ".join(lost + failed) or "degraded probe"
        # published without the current PCIe generation: it follows the power state (Topology.stable)
        return ProbeOutcome(topo.stable(), reason)


def build_prober(settings: AgentSettings) -> Prober:
    """``--topology-file`` → :class:`FileProber`; otherwise the local hardware prober."""
    if settings.topology_file is not None:
        if not settings.topology_file.is_file():  # a typo must not publish "error" to a node
            raise ConfigError(f"topology file {settings.topology_file} does not exist")
        return FileProber(settings.topology_file)
    if importlib.util.find_spec("labeler.discovery.local") is None:
        raise ConfigError("hardware discovery (labeler.discovery.local) is not installed; use --topology-file")
    return LocalProber(sysfs_root=str(settings.sysfs_root))


@dataclass
class PodResourcesAllocation:
    """GPU index → ``namespace/pod`` from the kubelet pod-resources API (``List``).

    Device IDs of ``nvidia.com/*`` resources (GPU/MIG UUIDs, or indices with
    ``deviceIDStrategy=index``) are mapped to GPU indices with the discovery
    package's :class:`~labeler.discovery.podresources.DeviceMapper`, from the
    UUIDs of the current topology plus the prober's NVML table (MIG UUIDs). A GPU
    shared by several pods (time-slicing) is attributed to the first by name.
    """

    socket: Path
    prober: Prober | None = None
    timeout_s: float = 5.0
    client: Any = None  # PodResourcesClient, created on first use (keeps one gRPC channel)

    def used(self, topology: Topology) -> Mapping[int, str]:
        from labeler.discovery.podresources import DeviceMapper, PodResourcesClient

        if self.client is None:
            self.client = PodResourcesClient(self.socket, timeout=self.timeout_s)
        table = {g.uuid: g.index for g in topology.gpus if g.uuid}
        if isinstance(self.prober, LocalProber):
            table.update(self.prober.uuid_to_index)
        mapper = DeviceMapper(table)
        try:
            allocations = self.client.list()
        except ProbeError:
            self.client.close()  # reconnect next time (kubelet restarts recreate the socket)
            self.client = None
            raise
        out: dict[int, str] = {}
        for a in sorted(allocations, key=lambda a: (a.namespace, a.pod, a.container)):
            if not a.resource_name.startswith("nvidia.com/"):
                continue
            for dev in a.device_ids:
                idx = mapper.gpu_index(dev)
                if idx is not None:
                    out.setdefault(idx, f"{a.namespace}/{a.pod}")
        return out


def build_allocation_source(settings: AgentSettings, prober: Prober) -> AllocationSource | None:
    """The pod-resources source, or ``None`` when allocation publishing is off."""
    if not settings.allocation:
        return None
    if importlib.util.find_spec("labeler.discovery.podresources") is None:
        raise ConfigError("the pod-resources client is not installed; run with --no-allocation")
    return PodResourcesAllocation(settings.podresources_socket, prober)
