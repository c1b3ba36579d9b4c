"""The committed gRPC stubs are exactly what the pinned generator produces, and import cleanly."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from labeler.discovery.podresources import generate
from labeler.discovery.podresources._gen import api_pb2, api_pb2_grpc

GEN = Path(generate.__file__).parent / "_gen"


@pytest.mark.skipif(
    metadata.version("grpcio-tools") != generate.PINNED_GRPCIO_TOOLS,
    reason=f"stubs are pinned to grpcio-tools {generate.PINNED_GRPCIO_TOOLS}",
)
def test_regenerating_gives_identical_files(tmp_path: Path) -> None:
    produced = generate.generate(tmp_path)
    for path in produced:
        assert path.read_bytes() == (GEN / path.name).read_bytes(), f"{path.name} differs: regenerate and commit"


def test_generator_refuses_another_grpcio_tools(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(generate, "PINNED_GRPCIO_TOOLS", "0.0.1")
    with pytest.raises(RuntimeError, match=r"pinned to 0\.0\.1"):
        generate.generate(tmp_path)


def test_wire_names_match_the_kubelet_api() -> None:
    """Method paths and field numbers are the wire contract with the kubelet."""
    svc = api_pb2.DESCRIPTOR.services_by_name["PodResourcesLister"]
    assert svc.full_name == "v1.PodResourcesLister"
    assert [m.name for m in svc.methods] == ["List", "GetAllocatableResources", "Get"]

    def fields(msg: str) -> dict[str, int]:
        return {f.name: f.number for f in api_pb2.DESCRIPTOR.message_types_by_name[msg].fields}

    assert fields("ContainerDevices") == {"resource_name": 1, "device_ids": 2, "topology": 3}
    assert fields("ContainerResources") == {
        "name": 1,
        "devices": 2,
        "cpu_ids": 3,
        "memory": 4,
        "dynamic_resources": 5,
    }
    assert fields("PodResources") == {"name": 1, "namespace": 2, "containers": 3}
    assert fields("AllocatableResourcesResponse") == {"devices": 1, "cpu_ids": 2, "memory": 3}
    assert fields("NUMANode") == {"ID": 1}
    assert fields("GetPodResourcesRequest") == {"pod_name": 1, "pod_namespace": 2}
    assert hasattr(api_pb2_grpc, "PodResourcesListerStub")


def _lower_pin(deps: list[str], name: str) -> tuple[int, ...]:
    spec = next(d for d in deps if re.match(rf"{name}\s*>=", d))
    return tuple(int(x) for x in re.search(r">=\s*([\d.]+)", spec).group(1).split("."))  # type: ignore[union-attr]


def test_pyproject_pins_admit_only_runtimes_the_stubs_accept() -> None:
    """The stubs check the runtime at import: grpcio >= GRPC_GENERATED_VERSION, protobuf >= gencode."""
    pyproject = tomllib.loads((Path(generate.REPO_ROOT) / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"]
    grpc_gen = tuple(int(x) for x in api_pb2_grpc.GRPC_GENERATED_VERSION.split("."))
    assert _lower_pin(deps, "grpcio") >= grpc_gen
    src = (GEN / "api_pb2.py").read_text()
    m = re.search(
        r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*(\d+),\s*(\d+),\s*(\d+)", src
    )
    assert m is not None
    gencode = tuple(int(x) for x in m.groups())
    assert _lower_pin(deps, "protobuf") >= gencode
    assert any(re.fullmatch(rf"protobuf>=[\d.]+,<{gencode[0] + 1}", d) for d in deps)  # same major only
