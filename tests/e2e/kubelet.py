"""A kubelet pod-resources gRPC endpoint on a unix socket, fed by the test.

The agent reads which GPUs kubelet gave which pod from this API
(``labeler.discovery.podresources``); the e2e agent scenario serves it from the
test process so the real ``gputopo agent`` process publishes the allocation
ConfigMap exactly as on a node. Device IDs are GPU indices (the device
plugin's ``deviceIDStrategy=index``), which the agent maps like UUIDs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path

import grpc

from labeler.discovery.podresources._gen import api_pb2, api_pb2_grpc

__all__ = ["PodResourcesServer"]


class _Lister(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pods: dict[tuple[str, str], list[int]] = {}

    def List(self, request: api_pb2.ListPodResourcesRequest, context: grpc.ServicerContext
             ) -> api_pb2.ListPodResourcesResponse:
        with self.lock:
            items = sorted(self.pods.items())
        out = []
        for (ns, name), gpus in items:
            dev = api_pb2.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=[str(g) for g in gpus])
            out.append(api_pb2.PodResources(name=name, namespace=ns,
                                            containers=[api_pb2.ContainerResources(name="main", devices=[dev])]))
        return api_pb2.ListPodResourcesResponse(pod_resources=out)


class PodResourcesServer:
    """``with PodResourcesServer(sock) as kubelet: kubelet.assign({("ns", "pod"): [0, 1]})``."""

    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self._lister = _Lister()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(self._lister, self._server)
        self._server.add_insecure_port(f"unix://{socket_path}")

    def assign(self, pods: Mapping[tuple[str, str], list[int]]) -> None:
        with self._lister.lock:
            self._lister.pods = {k: list(v) for k, v in pods.items()}

    def __enter__(self) -> PodResourcesServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(None)
