"""probe_local: the whole chain on this machine (no GPU) and on the modelled servers."""

from __future__ import annotations

import ctypes.util
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from discovery_support import lay_out, smi_text, smi_topology, tokens
from fake_nvml import FakeNvml
from machines import DGX_A100, L40S_8X, Machine, with_gpu
from sysfs_tree import move_device

from labeler.discovery import local
from labeler.discovery.smi import RunOutput
from labeler.topology import report as topo_report
from labeler.topology.errors import NoGpuError
from labeler.topology.findings import Severity
from labeler.topology.model import P2P, PcieLink

HAS_NVIDIA = (
    Path("/dev/nvidiactl").exists()
    or shutil.which("nvidia-smi") is not None
    or ctypes.util.find_library("nvidia-ml") is not None
)


def runner_for(machine: Machine) -> Callable[..., RunOutput]:
    def run(argv: Sequence[str], *, timeout: float) -> RunOutput:
        return RunOutput(0, smi_text(machine), "")

    return run


def no_smi(argv: Sequence[str], *, timeout: float) -> RunOutput:
    raise FileNotFoundError(2, "No such file or directory", argv[0])


@pytest.mark.skipif(HAS_NVIDIA, reason="this host has an NVIDIA driver")
def test_this_machine_has_no_gpu_and_says_so_in_one_line() -> None:
    """The real sources, unfaked: real pynvml (no libnvidia-ml), real PATH, real /sys."""
    with pytest.raises(NoGpuError) as info:
        local.probe_local()
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("no NVIDIA GPU found on this machine")
    assert "nvml: unavailable" in msg and "nvidia-smi: unavailable" in msg
    with pytest.raises(NoGpuError):
        local.probe_local_topology()


def test_gpus_on_the_bus_without_a_driver(tmp_path: Path) -> None:
    import pynvml

    with pytest.raises(NoGpuError, match=r"8 NVIDIA GPU\(s\) on the PCI bus but no working driver"):
        local.probe_local(
            nvml_module=FakeNvml(L40S_8X, init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED),
            runner=no_smi,
            sysfs_root=lay_out(tmp_path, L40S_8X),
        )


#: the NIC rates sysfs gives for the modelled machines (machines.py): ConnectX-7 ports ACTIVE at 400 Gb/s;
#: DGX A100 HDR ports at 200 Gb/s except mlx5_7 (port DOWN, no netdev speed: unknown), the storage card by
#: its netdev speed (100000 Mb/s), mlx5_9 "-1" (no link: unknown)
NIC_RATES = {
    "l40s-8x-2socket-4switch": {f"mlx5_{i}": 400000 for i in range(4)},
    "dgx-a100": {**{f"mlx5_{i}": 200000 for i in range(7)}, "mlx5_7": None, "mlx5_8": 100000, "mlx5_9": None},
}


@pytest.mark.parametrize("machine", [L40S_8X, DGX_A100], ids=["l40s", "dgx-a100"])
def test_all_sources_on_a_healthy_server(machine: Machine, tmp_path: Path) -> None:
    facts = local.probe_local(
        nvml_module=FakeNvml(machine), runner=runner_for(machine), sysfs_root=lay_out(tmp_path, machine)
    )
    assert not facts.degraded and facts.source_errors == {}
    assert tokens(facts.topology) == tokens(smi_topology(machine))
    report = local.render_report(facts)
    assert report[0].message == "sources: nvml, nvidia-smi, sysfs"
    assert all(f.severity is Severity.INFO for f in report)  # a healthy server: provenance, nothing to act on
    topo = facts.topology
    assert all(g.arch == machine.gpus[0].arch.lower() for g in topo.gpus)  # type: ignore[union-attr]
    assert all(g.pcie == PcieLink(4, 16, 4, 16) for g in topo.gpus)  # NVML Gen4 x16 (sysfs agrees: no conflict)
    assert topo.p2p and all(topo.gpu_p2p(a, b) is P2P.OK for a, b, _ in topo.gpu_pairs())
    assert {n.device: n.rate_mbps for n in topo.nics} == NIC_RATES[machine.name]


def test_report_names_every_problem(tmp_path: Path) -> None:
    migs = ("MIG-4f0f2c5e-7b1d-5c5e-9a0e-1c3b0d7f8a01",)
    machine = with_gpu(with_gpu(DGX_A100, 2, pcie=(4, 4, 8, 16)), 6, mig=(1, 1), mig_uuids=migs)
    machine = replace(machine, p2p={(0, 4): "CNS"})
    root = lay_out(tmp_path, machine)
    # GPU1 re-homed under another complex's top switch in the tree
    move_device(root, "0000:0f:00.0", "pci0000:40/0000:40:01.1/0000:41:00.0/0000:42:0c.0/0000:4f:00.0/0000:50:00.0")
    facts = local.probe_local(nvml_module=FakeNvml(machine, lost_after={5: 4}), runner=no_smi, sysfs_root=root)
    assert facts.degraded
    found = local.render_report(facts)
    said = {(f.severity, f.message) for f in found}
    text = "\n".join(f.message for f in found)
    assert found[0].message == "sources: nvml, sysfs" and found[0].severity is Severity.INFO
    assert (Severity.WARNING, "probe DEGRADED: a GPU is unusable or a source failed") in said
    assert (Severity.INFO, "source nvidia-smi unavailable: not found on PATH") in said  # not installed: expected
    assert "GPU5 at 0000:90:00.0 is lost" in text
    assert 5 not in facts.topology.gpu_indices
    # PCIe training, P2P and source conflicts are facts of the merged topology, reported from it per cause
    doc = topo_report.build(facts.topology, extra=found)
    assert "GPU2: PCIe link trained at x8 of x16: reseat the card or check the riser/slot" in doc["warnings"]
    assert [w for w in doc["warnings"] if w.startswith("P2P")] == ["P2P unavailable for GPU0↔GPU4 (NVML: CNS)"]
    assert any(w.startswith("nvml and sysfs disagree on the PCIe level of ") and "GPU0-GPU1: nvml=PXB, sysfs=NODE"
               in w for w in doc["warnings"])
    # MIG on one GPU of eight: a fact of the topology (NVML's current mode), a warning because it splits islands
    assert [f["message"] for f in doc["findings"] if f["code"] == "mig-enabled"] == [
        "GPU6: MIG enabled: these GPUs serve MIG devices, not whole GPUs, and no NCCL ring can include them; the "
        "whole-GPU islands of this node are smaller than its wiring"]
    assert "sources: nvml, sysfs" in doc["info"] and "sources: nvml, sysfs" not in doc["warnings"]


def test_only_sysfs_enabled_still_needs_a_driver(tmp_path: Path) -> None:
    with pytest.raises(NoGpuError, match="no working driver"):
        local.probe_local(use=("sysfs",), sysfs_root=lay_out(tmp_path, L40S_8X))


def test_smi_alone_is_enough(tmp_path: Path) -> None:
    facts = local.probe_local(use=("nvidia-smi",), runner=runner_for(L40S_8X))
    assert facts.merged.sources == ("nvidia-smi",)
    assert tokens(facts.topology) == tokens(smi_topology(L40S_8X))
