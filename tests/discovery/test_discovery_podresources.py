"""Pod-resources client against a real gRPC server on a unix socket (the kubelet's transport)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from fake_nvml import FakeNvml
from machines import DGX_A100, with_gpu

from labeler.discovery import nvml
from labeler.discovery.podresources import AllocatedDevices, DeviceMapper, PodResourcesClient
from labeler.discovery.podresources._gen import api_pb2, api_pb2_grpc
from labeler.topology.errors import ProbeError, SourceUnavailable

MIGS = ("MIG-4f0f2c5e-7b1d-5c5e-9a0e-1c3b0d7f8a01", "MIG-9d1e7a3c-2b4f-5e6d-8c7b-0a1f2e3d4c5b")
MACHINE = with_gpu(DGX_A100, 7, mig=(1, 1), mig_uuids=MIGS)
UUID = [g.uuid for g in MACHINE.gpus]


def _numa(*ids: int) -> api_pb2.TopologyInfo:
    return api_pb2.TopologyInfo(nodes=[api_pb2.NUMANode(ID=i) for i in ids])


class Kubelet(api_pb2_grpc.PodResourcesListerServicer):
    """What a kubelet with the NVIDIA device plugin (mixed MIG strategy) and an SR-IOV plugin answers."""

    def List(self, request: api_pb2.ListPodResourcesRequest, context: grpc.ServicerContext) -> object:
        return api_pb2.ListPodResourcesResponse(
            pod_resources=[
                api_pb2.PodResources(
                    name="llama-train-0",
                    namespace="training",
                    containers=[
                        api_pb2.ContainerResources(
                            name="trainer",
                            devices=[
                                api_pb2.ContainerDevices(
                                    resource_name="nvidia.com/gpu", device_ids=[UUID[0], UUID[1]], topology=_numa(3)
                                ),
                                api_pb2.ContainerDevices(
                                    resource_name="openshift.io/mlx5_sriov",
                                    device_ids=["0000:0c:00.2"],
                                    topology=_numa(3),
                                ),
                            ],
                            cpu_ids=[48, 49, 176, 177],
                        ),
                        api_pb2.ContainerResources(name="log-shipper"),  # no devices
                    ],
                ),
                api_pb2.PodResources(
                    name="triton-7f9c",
                    namespace="inference",
                    containers=[
                        api_pb2.ContainerResources(
                            name="server",
                            devices=[
                                api_pb2.ContainerDevices(
                                    resource_name="nvidia.com/mig-1g.10gb", device_ids=[MIGS[1]], topology=_numa(5)
                                )
                            ],
                        )
                    ],
                ),
                api_pb2.PodResources(
                    name="stale",
                    namespace="default",
                    containers=[
                        api_pb2.ContainerResources(
                            name="c",
                            devices=[api_pb2.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=["GPU-dead"])],
                        )
                    ],
                ),
            ]
        )

    def GetAllocatableResources(
        self, request: api_pb2.AllocatableResourcesRequest, context: grpc.ServicerContext
    ) -> object:
        return api_pb2.AllocatableResourcesResponse(
            devices=[
                api_pb2.ContainerDevices(resource_name="nvidia.com/gpu", device_ids=[u], topology=_numa(g.numa))
                for u, g in zip(UUID[:7], MACHINE.gpus, strict=False)
            ]
            + [
                api_pb2.ContainerDevices(
                    resource_name="nvidia.com/mig-1g.10gb", device_ids=list(MIGS), topology=_numa(5)
                )
            ],
            cpu_ids=list(range(256)),
        )


class OldKubelet(api_pb2_grpc.PodResourcesListerServicer):
    """Kubernetes < 1.21: only List. The generated base class answers UNIMPLEMENTED for the rest."""

    List = Kubelet.List


def _serve(sock: Path, servicer: api_pb2_grpc.PodResourcesListerServicer) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    return server


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pr-") as d:
        yield Path(d)


@pytest.fixture
def kubelet(short_tmp: Path) -> Iterator[Path]:
    sock = short_tmp / "kubelet.sock"
    server = _serve(sock, Kubelet())
    yield sock
    server.stop(None)


def _mapper() -> DeviceMapper:
    return DeviceMapper(nvml.probe(FakeNvml(MACHINE), cpu_count=256).uuid_to_index())


def test_list_over_a_real_unix_socket(kubelet: Path) -> None:
    with PodResourcesClient(kubelet) as client:
        got = client.list()
    assert got == [
        AllocatedDevices("training", "llama-train-0", "trainer", "nvidia.com/gpu", (UUID[0], UUID[1]), (3,)),
        AllocatedDevices("training", "llama-train-0", "trainer", "openshift.io/mlx5_sriov", ("0000:0c:00.2",), (3,)),
        AllocatedDevices("inference", "triton-7f9c", "server", "nvidia.com/mig-1g.10gb", (MIGS[1],), (5,)),
        AllocatedDevices("default", "stale", "c", "nvidia.com/gpu", ("GPU-dead",), ()),
    ]


def test_device_ids_map_back_to_gpu_indices(kubelet: Path) -> None:
    mapper = _mapper()
    with PodResourcesClient(kubelet) as client:
        used = client.list()
        alloc = client.allocatable()
    assert mapper.gpus_in_use(used) == {0, 1, 7}  # GPU7 through its MIG slice; SR-IOV VF ignored
    assert mapper.unknown_ids(used) == ["GPU-dead"]
    assert alloc is not None
    assert sorted(mapper.gpus_in_use(alloc)) == list(range(8))
    assert [a.numa_nodes for a in alloc[:2]] == [(3,), (3,)]


def test_old_kubelet_without_get_allocatable_resources(short_tmp: Path) -> None:
    sock = short_tmp / "kubelet.sock"
    server = _serve(sock, OldKubelet())
    try:
        with PodResourcesClient(sock) as client:
            assert client.allocatable() is None
            assert len(client.list()) == 4  # List still works
    finally:
        server.stop(None)


def test_missing_socket_is_source_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match="no kubelet socket"):
        PodResourcesClient(tmp_path / "kubelet.sock").list()


def test_stale_socket_file_is_source_unavailable(short_tmp: Path) -> None:
    """A socket file left behind by a dead kubelet: connection refused -> UNAVAILABLE."""
    path = short_tmp / "kubelet.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))  # bound, never listening
    try:
        with pytest.raises(SourceUnavailable, match="not answering"):
            PodResourcesClient(path, timeout=2).list()
    finally:
        s.close()


def test_other_grpc_errors_are_probe_errors(short_tmp: Path) -> None:
    class Denied(api_pb2_grpc.PodResourcesListerServicer):
        def List(self, request: object, context: grpc.ServicerContext) -> object:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "pod-resources requires root")

    sock = short_tmp / "kubelet.sock"
    server = _serve(sock, Denied())
    try:
        with pytest.raises(ProbeError, match=r"PERMISSION_DENIED.*requires root") as info:
            PodResourcesClient(sock).list()
        assert type(info.value) is ProbeError
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    ("device_id", "index"),
    [
        (UUID[3], 3),
        (UUID[3].upper(), 3),
        (f"{UUID[2]}::4", 2),  # time-slicing replica
        (MIGS[0], 7),
        (f"MIG-{UUID[6]}/1/0", 6),  # pre-R470 MIG id
        ("5", 5),  # deviceIDStrategy=index
        ("7:2", 7),  # MIG with deviceIDStrategy=index
        ("GPU-00000000-0000-0000-0000-000000000000", None),
    ],
    ids=["uuid", "uuid-upper", "timeslice", "mig-uuid", "old-mig", "index", "mig-index", "unknown"],
)
def test_device_id_spellings(device_id: str, index: int | None) -> None:
    assert _mapper().gpu_index(device_id) == index
