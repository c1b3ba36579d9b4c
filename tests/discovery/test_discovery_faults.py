"""Hardware faults seen through the fake NVML, as the audit reports them (one finding per cause, with a severity).

Each case changes one thing of a modelled server (tests/discovery/machines.py) the way the
driver would show it, runs the whole local probe, and checks the findings the audit prints.
Messages are written out from the case, not copied from the code's output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from discovery_support import lay_out
from fake_nvml import FakeNvml
from machines import DGX_A100, L40S_8X, Machine, with_gpu

from labeler.discovery import local, nvml
from labeler.discovery.facts import NvLinkState
from labeler.discovery.smi import RunOutput
from labeler.topology import report
from labeler.topology.findings import Finding, Severity


def no_smi(argv: Sequence[str], *, timeout: float) -> RunOutput:
    raise FileNotFoundError(2, "No such file or directory", argv[0])


def audit(machine: Machine, tmp_path: Path) -> tuple[local.NodeFacts, list[Finding]]:
    facts = local.probe_local(nvml_module=FakeNvml(machine), runner=no_smi, sysfs_root=lay_out(tmp_path, machine))
    return facts, report.all_findings(facts.topology, local.render_report(facts))


def said(found: list[Finding], code: str) -> list[tuple[Severity, str]]:
    return [(f.severity, f.message) for f in found if f.code == code]


def test_one_nvlink_down_on_a_dgx_a100(tmp_path: Path) -> None:
    # GPU3 (0000:4e:00.0): link 5 (its second link to NVSwitch 2) inactive; 11 of its 12 links up
    machine = with_gpu(DGX_A100, 3, nvlinks_down=(5,))
    facts, found = audit(machine, tmp_path)
    assert facts.nvml is not None
    assert facts.nvml.nvlink[3] == NvLinkState(3, (0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11), (5,))
    # the fabric: per switch the smaller link count of the two GPUs, 5 x 2 + 1 = NV11 for GPU3's pairs
    links = facts.topology
    assert links.gpu_link(3, 0).token == "NV11" and links.gpu_link(0, 1).token == "NV12"  # type: ignore[union-attr]
    # NVML names the link; the matrix-only finding of the same cause is not said twice
    assert said(found, "nvlink-down") == [(Severity.WARNING, (
        "GPU3: 11 of 12 NVLinks active where GPU0-2,4-7 (NVIDIA A100-SXM4-80GB) have 12; down: GPU3 link 5. "
        "Rings through them lose bandwidth: check with `nvidia-smi nvlink -s` and the field diagnostic"))]
    # from the matrix alone (a saved output, the published annotation) the same cause is still found
    assert said(report.findings(facts.topology), "nvlink-down") == [(Severity.WARNING, (
        "GPU3 reaches the NVSwitch fabric of GPU0-7 with NV11 where the others have NV12: 1 NVLink down per GPU "
        "(bandwidth of every ring through them drops; NVML's per-link state on the node names the links)"))]


def test_no_nvlink_up_on_any_gpu_is_a_setup_not_a_fault(tmp_path: Path) -> None:
    # every GPU has its 12 links but none is up: the fabric manager is not running (or no bridges on PCIe cards)
    machine = replace(DGX_A100, gpus=tuple(replace(g, nvlinks_down=tuple(range(12))) for g in DGX_A100.gpus))
    facts, found = audit(machine, tmp_path)
    assert not facts.topology.has_nvlink
    assert said(found, "nvlink-down") == []
    assert said(found, "nvlink-inactive") == [(Severity.INFO, (
        "GPU0-7: NVLink present (12 links each) but none active: no NVLink bridge fitted (PCIe cards), or on an "
        "NVSwitch board the fabric manager is not running"))]


def test_gpus_without_nvlink_report_no_link_state() -> None:
    res = nvml.probe(FakeNvml(L40S_8X), cpu_count=256)  # type: ignore[arg-type]
    assert res.nvlink == ()  # NOT_SUPPORTED on link 0: no link state, no finding


def test_mig_pending_and_mig_enabled(tmp_path: Path) -> None:
    machine = with_gpu(with_gpu(DGX_A100, 2, mig=(0, 1)), 6, mig=(1, 1), mig_uuids=("MIG-1",))
    facts, found = audit(machine, tmp_path)
    assert [g.mig for g in facts.topology.gpus] == [False, False, False, False, False, False, True, False]
    assert said(found, "mig-pending") == [(Severity.WARNING, (
        "GPU2: MIG mode change pending a GPU reset (MIG disabled now, enabled after the reset): what the node "
        "serves changes at the next reset"))]
    assert said(found, "mig-enabled") == [(Severity.WARNING, (
        "GPU6: MIG enabled: these GPUs serve MIG devices, not whole GPUs, and no NCCL ring can include them; the "
        "whole-GPU islands of this node are smaller than its wiring"))]


def test_mig_on_every_gpu_is_information(tmp_path: Path) -> None:
    machine = replace(DGX_A100, gpus=tuple(replace(g, mig=(1, 1)) for g in DGX_A100.gpus))
    _, found = audit(machine, tmp_path)
    assert said(found, "mig-enabled") == [(Severity.INFO, (
        "GPU0-7: MIG enabled on every GPU: the node serves MIG devices; whole-GPU placement and multi-GPU islands "
        "do not apply"))]


def test_p2p_not_supported_under_a_pcie_switch(tmp_path: Path) -> None:
    # L40S GPU0 and GPU1 share PCIe switch pci0000:15 (PIX); NVML says P2P not supported between them
    machine = replace(L40S_8X, p2p={(0, 1): "NS"})
    _, found = audit(machine, tmp_path)
    assert said(found, "p2p-unavailable-under-switch") == [(Severity.WARNING, (
        "P2P unavailable for GPU0↔GPU1 although they share a PCIe switch (PIX; NVML: NS): their traffic is staged "
        "through host memory. Under a switch this is ACS/IOMMU redirecting peer traffic to the root complex, a VM "
        "without P2P passthrough, or a GPU without P2P support (GeForce: GNS)"))]
    assert said(found, "p2p-unavailable") == [] and said(found, "p2p-ok") == []


def test_pcie_generation_below_max_is_judged_on_the_node_not_from_the_annotation(tmp_path: Path) -> None:
    # GPU4 at Gen1 (idle) of Gen4; GPU5 trained at x8 of x16
    machine = with_gpu(with_gpu(L40S_8X, 4, pcie=(1, 4, 16, 16)), 5, pcie=(4, 4, 8, 16))
    facts, found = audit(machine, tmp_path)
    assert said(found, "pcie-gen-below-max") == [(Severity.INFO, (
        "GPU4: PCIe Gen1 of Gen4 when probed (normal at idle: the link retrains to full speed under load; if it "
        "stays low under load, check the BIOS link speed and the riser)"))]
    assert said(found, "pcie-width-downtrained") == [(Severity.WARNING, (
        "GPU5: PCIe link trained at x8 of x16: reseat the card or check the riser/slot"))]
    assert said(found, "pcie-not-judged") == []
    # what the agent publishes has no current generation: the width fault is still seen, the generation is not
    published = report.findings(facts.topology.stable())
    assert said(published, "pcie-width-downtrained") == said(found, "pcie-width-downtrained")
    assert said(published, "pcie-gen-below-max") == []
    assert said(published, "pcie-not-judged") == [(Severity.INFO, (
        "PCIe generation of GPU0-7 not judged: the published topology leaves the current generation out (it follows "
        "the power state); widths were judged. `gputopo audit` on the node judges both"))]


def test_a_healthy_server_says_nothing_to_act_on(tmp_path: Path) -> None:
    for machine in (L40S_8X, DGX_A100):
        _, found = audit(machine, tmp_path)  # lay_out makes its own root-<machine> folder
        hw = {"nvlink-down", "nvlink-inactive", "mig-enabled", "mig-pending", "p2p-unavailable-under-switch",
              "pcie-width-downtrained", "pcie-gen-below-max", "pcie-not-judged", "p2p-unknown"}
        assert [f for f in found if f.code in hw or f.code.startswith("conflict-")] == []
