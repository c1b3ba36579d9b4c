"""The real allocation source against an in-test kubelet pod-resources gRPC server on a unix socket."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from agent_support import machine

from labeler.agent.factory import PodResourcesAllocation
from labeler.discovery.podresources._gen import api_pb2, api_pb2_grpc
from labeler.topology.errors import ProbeError, SourceUnavailable
from labeler.topology.model import Gpu, Topology


class Kubelet(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self) -> None:
        self.pods: list[api_pb2.PodResources] = []

    def List(self, request: api_pb2.ListPodResourcesRequest, context: grpc.ServicerContext
             ) -> api_pb2.ListPodResourcesResponse:
        return api_pb2.ListPodResourcesResponse(pod_resources=self.pods)


def pod(ns: str, name: str, resource: str, *ids: str) -> api_pb2.PodResources:
    dev = api_pb2.ContainerDevices(resource_name=resource, device_ids=list(ids))
    return api_pb2.PodResources(name=name, namespace=ns,
                                containers=[api_pb2.ContainerResources(name="main", devices=[dev])])


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[tuple[Kubelet, Path]]:
    sock = tmp_path / "kubelet.sock"
    servicer = Kubelet()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    yield servicer, sock
    server.stop(None)


def with_uuids(topo: Topology) -> Topology:
    gpus = tuple(dataclasses.replace(g, uuid=f"GPU-{g.index:08d}-aaaa-bbbb-cccc-000000000000") for g in topo.gpus)
    return dataclasses.replace(topo, gpus=gpus)


def test_maps_uuids_and_indices_to_pods(kubelet: tuple[Kubelet, Path]) -> None:
    servicer, sock = kubelet
    topo = with_uuids(machine("h100-nv18-8nics"))
    g: tuple[Gpu, ...] = topo.gpus
    servicer.pods = [
        pod("ml", "train-0", "nvidia.com/gpu", g[0].uuid or "", g[1].uuid or ""),
        pod("ml", "infer-1", "nvidia.com/gpu", "5"),  # deviceIDStrategy=index
        pod("web", "cpu-only", "example.com/fpga", "fpga0"),
        pod("ml", "shared-a", "nvidia.com/gpu", f"{g[7].uuid}::0"),  # time-slicing replica
        pod("ml", "shared-b", "nvidia.com/gpu", f"{g[7].uuid}::1"),
        pod("ml", "ghost", "nvidia.com/gpu", "GPU-not-on-this-node"),
    ]
    src = PodResourcesAllocation(sock)
    assert src.used(topo) == {0: "ml/train-0", 1: "ml/train-0", 5: "ml/infer-1", 7: "ml/shared-a"}


def test_missing_socket_is_source_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="no kubelet socket"):
        PodResourcesAllocation(tmp_path / "absent.sock").used(machine("aws-p4d"))


def test_dead_kubelet_is_probe_error_then_reconnects(tmp_path: Path) -> None:
    sock = tmp_path / "kubelet.sock"
    sock.touch()  # a stale socket file: nothing listens
    src = PodResourcesAllocation(sock, timeout_s=0.5)
    with pytest.raises(ProbeError):
        src.used(machine("aws-p4d"))
    assert src.client is None  # dropped, so the next poll reconnects
