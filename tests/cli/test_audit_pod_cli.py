"""`gputopo audit pod`: fake container environments for every device-list form, the gate's exit codes,
each topology source (file, probe, the Node annotation through the real kubernetes client over HTTP).

The environments are what a container would carry: the NVIDIA device plugin's
``NVIDIA_VISIBLE_DEVICES`` (UUIDs by default), a user's ``CUDA_VISIBLE_DEVICES``, CDI's
``void``, the volume-mounts strategy. The machine is DGX A100 (corpus 010) with UUIDs and bus
ids, or 027 (NV12 pairs across two sockets); the expected GPUs and levels are read off them.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from agent_support import kube_api
from fake_kube_api import FakeKubeApi
from pod_machines import DGX_A100_MIG, DGX_A100_UUIDS, container_view, dgx_a100

from gputopo import audit_pod, kube_node
from gputopo.audit_pod import EXIT_GATE, EXIT_INPUT, EXIT_NO_TOPOLOGY, EXIT_UNKNOWN, Source
from labeler.topology import labels
from labeler.topology.errors import NoGpuError, ProbeError
from policy.audit.device_list import VOLUME_MOUNTS_ROOT, Scope

ROOT = Path(__file__).resolve().parents[2]
U = DGX_A100_UUIDS
F027 = str(next((ROOT / "tests/fixtures/topo-corpus").glob("027_*.txt")))


def _dgx_probe() -> Source:
    return Source(dgx_a100(), Scope.NODE, "fake DGX A100 node view", DGX_A100_MIG)


def _container_probe(host_gpus: list[int]) -> Any:
    def probe() -> Source:
        return Source(container_view(dgx_a100(), host_gpus), Scope.CONTAINER, "fake probe in the container")
    return probe


def _no_probe() -> Source:
    raise NoGpuError("no NVIDIA GPU found on this machine (fake)")


def _run(args: list[str], env: dict[str, str], *, cpus: frozenset[int] | None = frozenset(range(48, 64)),
         prober: Any = _dgx_probe, annotations: Any = None,
         mounts: list[str] | None = None) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()

    def read(node: str) -> dict[str, str]:
        if annotations is None:
            raise kube_node.NodeReadError("no API in this test")
        return annotations(node) if callable(annotations) else annotations

    code = audit_pod.run([*args, "--json"], env=env, cpus=cpus, prober=prober, read_annotations=read,
                         list_mounts=lambda: mounts, out=out)
    return code, (json.loads(out.getvalue()) if out.getvalue() else {})


# env, expected GPUs (topology indices, CUDA order), ring bottleneck (None: no ring), exit code
FORMS = [
    ({"NVIDIA_VISIBLE_DEVICES": f"{U[5]},{U[4]}"}, [4, 5], "NV12", 0),  # device plugin, envvar strategy, UUIDs
    ({"NVIDIA_VISIBLE_DEVICES": "4,5"}, [4, 5], "NV12", 0),  # index strategy
    ({"NVIDIA_VISIBLE_DEVICES": "0000:87:00.0,0000:90:00.0"}, [4, 5], "NV12", 0),
    ({"NVIDIA_VISIBLE_DEVICES": "all", "CUDA_VISIBLE_DEVICES": "6,1"}, [6, 1], "NV12", 0),
    ({"NVIDIA_VISIBLE_DEVICES": "0,1", "CUDA_VISIBLE_DEVICES": "GPU-8932f938"}, [1], None, 0),
    ({"NVIDIA_VISIBLE_DEVICES": "0,1", "CUDA_VISIBLE_DEVICES": ""}, [], None, 0),
    ({"NVIDIA_VISIBLE_DEVICES": "0,1", "CUDA_VISIBLE_DEVICES": "0,2,-1,1"}, [0], None, 0),  # 2 is past 2 GPUs
    ({"NVIDIA_VISIBLE_DEVICES": f"MIG-{U[3]}/1/0"}, [3], None, 0),
    ({"NVIDIA_VISIBLE_DEVICES": "MIG-77d0c2a4-0b1e-5c3f-8d2a-9e4f6a7b8c03"}, [6], None, 0),
    ({"NVIDIA_VISIBLE_DEVICES": "none"}, [], None, 0),
    ({}, [], None, EXIT_UNKNOWN),  # node view, nothing in the environment says which GPUs
    ({"NVIDIA_VISIBLE_DEVICES": "void"}, [], None, EXIT_UNKNOWN),
    ({"NVIDIA_VISIBLE_DEVICES": "GPU-ffffffff-0000-4000-8000-00000000000f"}, [], None, EXIT_UNKNOWN),
    ({"CUDA_VERSION": "11.0", "CUDA_VISIBLE_DEVICES": "2,3"}, [2, 3], "NV12", 0),  # legacy image: unset = all
]


@pytest.mark.parametrize(("env", "gpus", "bottleneck", "code"), FORMS, ids=[json.dumps(f[0]) for f in FORMS])
def test_device_list_forms_on_dgx_a100(env: dict[str, str], gpus: list[int], bottleneck: str | None,
                                       code: int) -> None:
    got, doc = _run([], env)
    assert got == code
    assert doc["gpus"] == gpus
    assert (doc["ring"] or {}).get("bottleneck") == bottleneck
    assert doc["exit_code"] == code


def test_volume_mounts_strategy_reads_the_directory() -> None:
    code, doc = _run([], {"NVIDIA_VISIBLE_DEVICES": VOLUME_MOUNTS_ROOT}, mounts=[U[7], U[6]])
    assert code == 0 and doc["gpus"] == [6, 7]


def test_cdi_void_with_a_container_probe() -> None:
    code, doc = _run([], {"NVIDIA_VISIBLE_DEVICES": "void"}, prober=_container_probe([2, 3]))
    assert code == 0 and doc["gpus"] == [0, 1] and doc["scope"] == "container"
    assert any("CDI" in f["message"] for f in doc["findings"])


def test_json_contract() -> None:
    code, doc = _run(["--fail-on", "sys"], {"NVIDIA_VISIBLE_DEVICES": f"{U[0]},{U[1]}"})
    assert code == 0
    assert {"topology_source", "scope", "env", "gpus", "mig", "known", "island_level", "ring",
            "expected_busbw_gbps", "tightest_on_node", "nics", "cpu", "findings", "gate", "exit_code"} <= doc.keys()
    assert doc["island_level"] == "nvlink" and doc["expected_busbw_gbps"] == 240.0
    assert doc["nics"]["0"] == {"level": "PXB", "nics": ["mlx5_0", "mlx5_1"]}
    # the mask 48-63 is NUMA 3's half of GPU0/GPU1's affinity 48-63,176-191
    assert doc["cpu"]["alignment"] == "aligned" and doc["cpu"]["per_gpu"]["0"] == {"local_in_mask": 16, "local": 32}
    assert doc["gate"] == {"fail_on": "sys", "result": "pass"}


# 027: pairs NV12, NODE inside a socket, SYS across. --fail-on LEVEL: exit 1 when the worst hop is LEVEL or worse
GATE_CASES = [
    ("0,1", "nvlink", EXIT_GATE), ("0,1", "pix", 0), ("1,2", "node", EXIT_GATE), ("1,2", "sys", 0),
    ("3,4", "sys", EXIT_GATE), ("0,1,2,3", "phb", EXIT_GATE), ("0,1,2,3", "sys", 0), ("5", "pix", 0),
]


@pytest.mark.parametrize(("visible", "fail_on", "code"), GATE_CASES, ids=[f"{v}-{f}" for v, f, _ in GATE_CASES])
def test_fail_on_exit_codes(visible: str, fail_on: str, code: int) -> None:
    got, doc = _run(["--topology", F027, "--fail-on", fail_on], {"NVIDIA_VISIBLE_DEVICES": visible})
    assert got == code and doc["exit_code"] == code


def test_gate_fails_closed_on_unmapped_gpus() -> None:
    got, doc = _run(["--topology", F027, "--fail-on", "sys"], {"NVIDIA_VISIBLE_DEVICES": U[0]})  # no UUIDs in text
    assert got == EXIT_UNKNOWN and doc["gate"]["result"] == "unknown"


def test_bad_inputs_exit_2(tmp_path: Path) -> None:
    assert _run([], {"NVIDIA_VISIBLE_DEVICES": "0\n1"})[0] == EXIT_INPUT
    assert _run([], {"CUDA_VISIBLE_DEVICES": "0," * 5000})[0] == EXIT_INPUT
    assert _run(["--topology", str(tmp_path / "missing.txt")], {})[0] == EXIT_INPUT
    bad = tmp_path / "bad.json"
    bad.write_text('{"kind": "Node", "metadata": {"annotations": {}}}')
    assert _run(["--topology", str(bad)], {})[0] == EXIT_INPUT
    # JSON through labeler.topology.bounded.loads: too deep (refused before parsing), NaN, cut
    for text in ('{"a": ' + "[" * 5000 + "]" * 5000 + "}", '{"v": NaN, "links": []}', '{"v": 2, "links": ['):
        bad.write_text(text)
        assert _run(["--topology", str(bad)], {})[0] == EXIT_INPUT, text[:20]
    with pytest.raises(SystemExit):
        _run(["--fail-on", "nvlink2"], {})


def test_topology_json_forms(tmp_path: Path) -> None:
    """The annotation value, a Node object, and `gputopo audit --json` output all work as --topology."""
    topo = dgx_a100()
    value = labels.encode_annotations(topo)["gputopo.io/topology"]
    node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "dgx-7", "annotations":
                                                              labels.encode_annotations(topo)}}
    forms = {"annotation.json": value, "node.json": json.dumps(node),
             "audit.json": json.dumps({"source": "x", "topology": json.loads(value)})}
    for name, text in forms.items():
        path = tmp_path / name
        path.write_text(text)
        code, doc = _run(["--topology", str(path)], {"NVIDIA_VISIBLE_DEVICES": f"{U[2]},{U[3]}"})
        assert code == 0 and doc["gpus"] == [2, 3], name


def test_probe_failure_falls_back_to_the_node_annotation_over_http() -> None:
    node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "dgx-7",
                                                               "annotations": labels.encode_annotations(dgx_a100())}}
    with FakeKubeApi() as api:
        api.add_node(node)
        client = kube_api(api.url)

        def read(name: str) -> dict[str, str]:
            return kube_node.read_node_annotations(name, client)

        code, doc = _run([], {"NVIDIA_VISIBLE_DEVICES": f"{U[6]},{U[7]}", "NODE_NAME": "dgx-7"}, prober=_no_probe,
                         annotations=read)
        assert code == 0 and doc["gpus"] == [6, 7]
        assert doc["topology_source"] == "annotation gputopo.io/topology of Node dgx-7"
        assert any("probe" in f["message"] for f in doc["source_findings"])
        api.fail_next(403, methods=("GET",))
        out = io.StringIO()
        code = audit_pod.run([], env={"NODE_NAME": "dgx-7"}, cpus=None, prober=_no_probe, read_annotations=read,
                             out=out)
        assert code == EXIT_NO_TOPOLOGY


def test_node_read_errors_name_the_cause() -> None:
    with FakeKubeApi() as api:
        client = kube_api(api.url)
        with pytest.raises(kube_node.NodeReadError, match="not found"):
            kube_node.read_node_annotations("nope", client)
        api.add_node({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1"}})
        api.fail_next(403, methods=("GET",))
        with pytest.raises(kube_node.NodeReadError, match="RBAC"):
            kube_node.read_node_annotations("n1", client)
        assert kube_node.read_node_annotations("n1", client) == {}


def test_no_topology_anywhere_exits_3() -> None:
    def broken() -> Source:
        raise ProbeError("nvml: failed")

    assert _run([], {"NVIDIA_VISIBLE_DEVICES": "0"}, prober=broken)[0] == EXIT_NO_TOPOLOGY
    code = _run([], {"NVIDIA_VISIBLE_DEVICES": "0", "NODE_NAME": "n"}, prober=broken, annotations={})[0]
    assert code == EXIT_NO_TOPOLOGY  # the Node has no topology annotation


def test_console_entry_point_tables_and_gate() -> None:
    """The installed command in a subprocess: tables for people, exit 1 from the gate."""
    env = {"PATH": "/usr/bin:/bin", "NVIDIA_VISIBLE_DEVICES": "3,4"}
    res = subprocess.run([sys.executable, "-m", "gputopo", "audit", "pod", "--topology", F027, "--fail-on", "sys"],
                         capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert res.returncode == EXIT_GATE == 5, res.stderr
    assert "ring bottleneck" in res.stdout and "SYS" in res.stdout and "[socket-crossing]" in res.stdout
    plain = subprocess.run([sys.executable, "-m", "gputopo", "audit", "pod", "--help"], capture_output=True,
                           text=True, cwd=ROOT, timeout=120)
    assert plain.returncode == 0 and "--fail-on" in plain.stdout


def test_core_api_without_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    with pytest.raises(kube_node.NodeReadError, match="configuration"):
        kube_node.core_api()
