"""Client for the kubelet pod-resources API (v1): which pod holds which GPU.

See :mod:`labeler.discovery.podresources.client`. The stubs under ``_gen`` are
generated from ``api.proto`` by :mod:`labeler.discovery.podresources.generate`.
"""

from labeler.discovery.podresources.client import (
    DEFAULT_SOCKET,
    AllocatedDevices,
    DeviceMapper,
    PodResourcesClient,
)

__all__ = ["DEFAULT_SOCKET", "AllocatedDevices", "DeviceMapper", "PodResourcesClient"]
