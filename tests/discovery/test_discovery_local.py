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
from labeler.topology.errors import NoGpuError

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


@pytest.mark.parametrize("machine", [L40S_8X, DGX_A100], ids=["l40s", "dgx-a100"])
def test_all_sources_on_a_healthy_server(machine: Machine, tmp_path: Path) -> None:
    facts = local.probe_local(
        nvml_module=FakeNvml(machine), runner=runner_for(machine), sysfs_root=lay_out(tmp_path, machine)
    )
    assert not facts.degraded and facts.source_errors == {}
    assert tokens(facts.topology) == tokens(smi_topology(machine))
    report = local.render_report(facts)
    assert report[0] == "sources: nvml, nvidia-smi, sysfs"
    assert not any(line.startswith(("conflict", "GPU")) for line in report)


def test_report_names_every_problem(tmp_path: Path) -> None:
    migs = ("MIG-4f0f2c5e-7b1d-5c5e-9a0e-1c3b0d7f8a01",)
    machine = with_gpu(with_gpu(DGX_A100, 2, pcie=(4, 4, 8, 16)), 6, mig=(1, 1), mig_uuids=migs)
    machine = replace(machine, p2p={(0, 4): "CNS"})
    root = lay_out(tmp_path, machine)
    # GPU1 re-homed under another complex's top switch in the tree
    move_device(root, "0000:0f:00.0", "pci0000:40/0000:40:01.1/0000:41:00.0/0000:42:0c.0/0000:4f:00.0/0000:50:00.0")
    facts = local.probe_local(nvml_module=FakeNvml(machine, lost_after={5: 4}), runner=no_smi, sysfs_root=root)
    assert facts.degraded
    report = local.render_report(facts)
    text = "\n".join(report)
    assert report[0] == "sources: nvml, sysfs (DEGRADED)"
    assert "source nvidia-smi unavailable: not found on PATH" in report
    assert "GPU5 at 0000:90:00.0 is lost" in text
    assert "GPU2 PCIe trained down: x8 of x16, Gen4 of Gen4" in report
    assert "P2P not available for 1 of 21 GPU pairs: GPU0-GPU4 read=CNS write=CNS" in report
    assert "GPU6 MIG enabled, 1 MIG device(s)" in report
    assert any(line.startswith("conflict: GPU0-GPU1: pcie-level disagrees (nvml=PXB, sysfs=NODE)") for line in report)
    assert 5 not in facts.topology.gpu_indices


def test_only_sysfs_enabled_still_needs_a_driver(tmp_path: Path) -> None:
    with pytest.raises(NoGpuError, match="no working driver"):
        local.probe_local(use=("sysfs",), sysfs_root=lay_out(tmp_path, L40S_8X))


def test_smi_alone_is_enough(tmp_path: Path) -> None:
    facts = local.probe_local(use=("nvidia-smi",), runner=runner_for(L40S_8X))
    assert facts.merged.sources == ("nvidia-smi",)
    assert tokens(facts.topology) == tokens(smi_topology(L40S_8X))
