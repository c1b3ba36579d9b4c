"""The real H200 capture (one H200 in a Firecracker VM, driver 580.159.04) through all three sources.

Each source is fed what the live machine gave: NVML answers replayed from
``nvml-raw.json``, a sysfs tree laid out from ``sysfs.json``, the ``nvidia-smi topo -m``
bytes as captured (ANSI underline included). Expected values are read off the capture
files (quoted in the comments), not off our own output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from recorded_nvml import NotRecorded, RecordedNvml
from sysfs_json import build

from labeler.discovery import local, nvml, sysfs
from labeler.discovery.smi import RunOutput
from labeler.topology import labels, report, serialize, smi_parser
from labeler.topology.findings import Severity
from labeler.topology.model import PcieLink

CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "real-captures" / "h200-1gpu-vm"
SMI_TEXT = (CAPTURE / "nvidia-smi-topo-m.txt").read_bytes().decode()
CPUS = frozenset(range(16))  # `nvidia-smi topo -m`: "GPU0  X  0-15  0  N/A"; lscpu: 16 CPUs, 1 socket
H200_PCIE = PcieLink(gen=5, width=16, max_gen=5, max_width=16)  # NVML Curr/Max Gen 5, x16; sysfs 32.0 GT/s x16


def recorded() -> RecordedNvml:
    # the probe's internals in gputopo-probe-output.txt: cpu_affinity 0..15, numa_affinity {0}
    return RecordedNvml(CAPTURE / "nvml-raw.json", cpus=CPUS, numa_nodes=frozenset({0}))


def smi_runner(argv: Sequence[str], *, timeout: float) -> RunOutput:
    return RunOutput(0, SMI_TEXT, "")


@pytest.fixture
def sysfs_root(tmp_path: Path) -> Path:
    return build(tmp_path / "root", CAPTURE / "sysfs.json")


def test_nvml_replay() -> None:
    fake = recorded()
    res = nvml.probe(fake)
    (gpu,) = res.topology.gpus
    assert (gpu.index, gpu.name, gpu.bus_id, gpu.uuid) == (
        0, "NVIDIA H200", "0000:00:06.0", "GPU-e870354f-443d-ae71-471a-9234f592b9fd")
    assert (gpu.arch, gpu.cc) == ("hopper", "9.0")  # nvmlDeviceGetArchitecture 9, compute capability [9, 0]
    assert gpu.nvlink_version is None  # every NVLink call: error 3 Not Supported
    assert gpu.pcie == H200_PCIE
    assert (gpu.cpu_affinity, gpu.numa_affinity) == (CPUS, frozenset({0}))
    assert gpu.gpu_numa_id is None  # nvmlDeviceGetNumaNodeId: error 3 Not Supported
    assert res.driver_version == "580.159.04"
    assert [m.current for m in res.mig] == [False]  # MIG mode [0, 0]
    assert res.p2p == () and res.topology.p2p == () and not res.degraded and res.findings == ()
    assert fake.calls.count("nvmlDeviceGetNvLinkState") == 1  # link 0 unsupported: the other 17 are not asked
    assert fake.calls[-1] == "nvmlShutdown"


def test_nvml_replay_refuses_an_unrecorded_question() -> None:
    fake = recorded()
    fake.raw["devices"][0].pop("nvmlDeviceGetArchitecture")
    with pytest.raises(NotRecorded):
        nvml.probe(fake)


def test_sysfs_tree(sysfs_root: Path) -> None:
    facts = sysfs.probe(sysfs_root)
    (gpu,) = facts.gpus
    assert gpu.bdf == "0000:00:06.0" and (gpu.vendor, gpu.pci_class) == (0x10DE, 0x030200)
    assert gpu.numa_node is None  # numa_node "-1"
    assert gpu.local_cpus == CPUS and gpu.root_complex == "pci0000:00" and gpu.chain == ("0000:00:06.0",)
    assert gpu.link == H200_PCIE  # "32.0 GT/s PCIe", width 16, current and max
    assert facts.devices["0000:00:03.0"].link is None  # virtio: no link files
    # eth0's device is .../0000:00:03.0/virtio2, not a PCI function; lo and ifb have none: no NIC at all
    assert facts.nics == () and facts.topology.nics == ()
    assert [(n.id, n.cpus, n.mem_total_kb) for n in facts.numa] == [(0, CPUS, 4680656)]
    assert facts.findings == ()  # one NUMA node: NUMA -1 is not worth a note
    (tgpu,) = facts.topology.gpus
    assert (tgpu.numa_affinity, tgpu.cpu_affinity, tgpu.pcie) == (None, CPUS, H200_PCIE)


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(lambda t: t, id="as-captured"),
        pytest.param(lambda t: t.replace("\x1b", ""), id="esc-lost"),
        pytest.param(lambda t: t.replace("\x1b", "^["), id="caret-notation"),
        pytest.param(lambda t: t.replace("\t", "    "), id="tabs-expanded"),
    ],
)
def test_smi_text(variant: object) -> None:
    assert SMI_TEXT.startswith("\t\x1b[4mGPU0\tCPU Affinity")  # the capture really carries the escape
    topo = smi_parser.parse(variant(SMI_TEXT), source="nvidia-smi")  # type: ignore[operator]
    (gpu,) = topo.gpus
    assert (gpu.cpu_affinity, gpu.numa_affinity, gpu.gpu_numa_id) == (CPUS, frozenset({0}), None)
    assert topo.nics == () and topo.warnings == ()
    assert [[str(c) for c in row] for row in topo.links] == [["X"]]


#: labels of the H200 VM, worked out from the capture: one GPU, no NVLink, no NIC, NUMA affinity 0
H200_LABELS = {
    "schema": "v2",
    "status": "ok",
    "gpu-count": "1",
    "nvlink": "false",
    "island-nvlink": "0",
    "island-pcie-switch": "1",
    "island-host-bridge": "1",
    "shape-nvlink": "1",
    "shape-pcie-switch": "1",
    "shape-host-bridge": "1",
    "island-numa": "1",
    "numa-shape": "1",
    "numa-basis": "affinity",
    "nic-count": "0",
    "nic-locality": "none",
    "gpudirect": "false",
}


def test_all_three_sources_merged(sysfs_root: Path) -> None:
    facts = local.probe_local(nvml_module=recorded(), runner=smi_runner, sysfs_root=sysfs_root)
    assert facts.merged.sources == ("nvml", "nvidia-smi", "sysfs")
    assert facts.merged.conflicts == () and not facts.degraded
    topo = facts.topology
    (gpu,) = topo.gpus
    assert (gpu.arch, gpu.cc, gpu.pcie, gpu.numa_affinity) == ("hopper", "9.0", H200_PCIE, frozenset({0}))
    got = labels.encode(topo)
    assert {k.removeprefix("gputopo.io/"): v for k, v in got.items() if not k.endswith("topology-class")} == H200_LABELS
    doc = serialize.to_dict(topo)
    assert doc["gpus"] == [{
        "index": 0, "name": "NVIDIA H200", "bus_id": "0000:00:06.0", "uuid": "GPU-e870354f-443d-ae71-471a-9234f592b9fd",
        "cpu_affinity": "0-15", "numa_affinity": "0", "arch": "hopper", "cc": "9.0", "pcie": [5, 16, 5, 16],
        "mig": False}]  # nvmlDeviceGetMigMode [0, 0]: MIG-capable, disabled
    # what the agent publishes: the current generation follows the power state, so it is left out
    published = json.loads(labels.encode_annotations(topo.stable())["gputopo.io/topology"])
    assert published["gpus"][0]["pcie"] == [None, 16, 5, 16]


def test_audit_of_the_probe_says_provenance_as_information(sysfs_root: Path) -> None:
    """The 2026-12-01 audit printed "! sources: nvml, nvidia-smi, sysfs" as its only warning."""
    facts = local.probe_local(nvml_module=recorded(), runner=smi_runner, sysfs_root=sysfs_root)
    extra = local.render_report(facts)
    assert [(f.severity, f.message) for f in extra] == [(Severity.INFO, "sources: nvml, nvidia-smi, sysfs")]
    doc = report.build(facts.topology, extra=extra)
    assert doc["warnings"] == []
    assert doc["info"] == ["sources: nvml, nvidia-smi, sysfs"]
