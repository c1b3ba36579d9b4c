"""Merge: NVML + nvidia-smi + sysfs for the same modelled server; conflicts are reported, not hidden."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from discovery_support import lay_out, smi_text, smi_topology, tokens
from fake_nvml import FakeNvml
from machines import DGX_A100, L40S_8X, MACHINES, Machine
from sysfs_tree import move_device

from labeler.discovery import merge, nvml, sysfs
from labeler.discovery.facts import normalize_bus_id
from labeler.topology import smi_parser
from labeler.topology.errors import NoGpuError
from labeler.topology.model import PcieLink


def nvml_of(machine: Machine, **kw: object) -> nvml.ProbeResult:
    return nvml.probe(FakeNvml(machine, **kw), cpu_count=256)  # type: ignore[arg-type]


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_three_sources_agree(machine: Machine, tmp_path: Path) -> None:
    res = merge.merge(nvml_of(machine), smi_topology(machine), sysfs.probe(lay_out(tmp_path, machine)))
    assert res.conflicts == ()
    assert res.sources == ("nvml", "nvidia-smi", "sysfs")
    assert tokens(res.topology) == tokens(smi_topology(machine))
    for got, row in zip(res.topology.gpus, machine.gpus, strict=True):
        assert (got.bus_id, got.uuid, got.name) == (row.bdf, row.uuid, row.name)
    assert [n.device for n in res.topology.nics] == [n.device for n in smi_topology(machine).nics]
    assert res.provenance["GPU0-GPU1"] == "nvml"
    assert res.provenance["GPU0-NIC0"] == "nvidia-smi"
    assert res.provenance["GPU0.cpu_affinity"] == "nvml"


def test_sysfs_edited_so_two_gpus_sit_under_different_root_ports_is_a_conflict(tmp_path: Path) -> None:
    """GPU1 re-homed from switch A (pci0000:15) to switch B (pci0000:37): the tree now says NODE."""
    root = lay_out(tmp_path, L40S_8X)
    move_device(root, "0000:19:00.0", "pci0000:37/0000:37:01.0/0000:38:00.0/0000:39:03.0")
    res = merge.merge(nvml_of(L40S_8X), smi_topology(L40S_8X), sysfs.probe(root))
    by_subject = {c.subject: c for c in res.conflicts}
    c = by_subject["GPU0-GPU1"]
    assert c.kind == "pcie-level"
    assert c.values == (("nvml", "PIX"), ("nvidia-smi", "PIX"), ("sysfs", "NODE"))
    assert (c.chosen, c.chosen_from) == ("PIX", "nvml")  # documented precedence, not a silent pick
    assert res.topology.gpu_link(0, 1).token == "PIX"  # type: ignore[union-attr]
    # and every other cell GPU1 takes part in that the tree now sees differently
    assert dict(by_subject["GPU1-GPU2"].values)["sysfs"] == "PIX"
    assert dict(by_subject["GPU1-NIC0"].values) == {"nvidia-smi": "PIX", "sysfs": "NODE"}
    assert dict(by_subject["GPU1-NIC1"].values) == {"nvidia-smi": "NODE", "sysfs": "PIX"}
    assert {s for s in by_subject} == {"GPU0-GPU1", "GPU1-GPU2", "GPU1-GPU3", "GPU1-NIC0", "GPU1-NIC1"}
    # one finding per cause (kind and the sources that disagree), not one per cell
    found = [f for f in res.findings if f.code.startswith("conflict-")]
    assert [(f.code, f.severity.value) for f in found] == [("conflict-pcie-level", "warning")] * 2
    assert found[0].message.startswith(
        "nvml, nvidia-smi and sysfs disagree on the PCIe level of 3 links (GPU0-GPU1: nvml=PIX, nvidia-smi=PIX, "
        "sysfs=NODE; GPU1-GPU2: ")
    assert found[1].message.startswith(
        "nvidia-smi and sysfs disagree on the PCIe level of 2 links (GPU1-NIC0: nvidia-smi=PIX, sysfs=NODE; "
        "GPU1-NIC1: nvidia-smi=NODE, sysfs=PIX); using nvidia-smi's. Likely cause: ")
    assert res.topology.warnings == ()  # said once, as findings: not again as reader warnings


def test_nvlink_count_disagreement_between_nvml_and_smi(tmp_path: Path) -> None:
    text = smi_text(DGX_A100).replace("GPU1    NV12", "GPU1    NV8 ", 1).split("\n")
    # keep the matrix symmetric: GPU0's row, column GPU1
    text[1] = text[1].replace("X      NV12", "X      NV8 ", 1)
    edited = smi_parser.parse("\n".join(text))
    assert edited.gpu_link(0, 1).token == "NV8"  # type: ignore[union-attr]
    res = merge.merge(nvml_of(DGX_A100), edited, sysfs.probe(lay_out(tmp_path, DGX_A100)))
    [c] = res.conflicts
    assert (c.subject, c.kind, c.values, c.chosen) == (
        "GPU0-GPU1",
        "nvlink",
        (("nvml", "12"), ("nvidia-smi", "8")),
        "NV12",
    )


def test_lost_gpu_is_left_out_without_a_gpu_set_conflict(tmp_path: Path) -> None:
    res = merge.merge(
        nvml_of(L40S_8X, lost_after={5: 3}), smi_topology(L40S_8X), sysfs.probe(lay_out(tmp_path, L40S_8X))
    )
    assert 5 not in res.topology.gpu_indices and len(res.topology.gpus) == 7
    assert any(f.code == "gpu-lost" and f.gpu == 5 for f in res.findings)
    # smi (run earlier, say) still lists 8 GPUs: that disagreement is reported
    assert [c.kind for c in res.conflicts] == ["gpu-set"]


def test_gpu_on_the_bus_but_not_in_nvml_is_a_conflict(tmp_path: Path) -> None:
    res = merge.merge(nvml_of(L40S_8X, device_count=7), None, sysfs.probe(lay_out(tmp_path, L40S_8X)))
    [c] = res.conflicts
    assert (c.subject, c.kind, c.chosen) == ("GPU@0000:bb:00.0", "gpu-set", "absent")


def test_smi_and_sysfs_without_nvml_match_by_pci_order(tmp_path: Path) -> None:
    res = merge.merge(None, smi_topology(L40S_8X), sysfs.probe(lay_out(tmp_path, L40S_8X)))
    assert res.conflicts == ()
    assert [g.bus_id for g in res.topology.gpus] == [g.bdf for g in L40S_8X.gpus]
    assert res.provenance["GPU0-GPU1"] == "nvidia-smi"
    assert all(g.uuid is None for g in res.topology.gpus)


def test_sysfs_only(tmp_path: Path) -> None:
    facts = sysfs.probe(lay_out(tmp_path, DGX_A100))
    res = merge.merge(None, None, facts)
    assert tokens(res.topology) == tokens(facts.topology)
    assert set(res.provenance[k] for k in res.provenance if "-" in k) == {"sysfs"}


def test_nvml_alone_has_no_nics() -> None:
    res = merge.merge(nvml_of(DGX_A100))
    assert res.topology.nics == () and res.topology.has_nvlink


def test_smi_without_nic_legend_takes_names_from_sysfs(tmp_path: Path) -> None:
    smi = smi_topology(L40S_8X)
    bare = replace(smi, nics=tuple(replace(n, device=None) for n in smi.nics))
    res = merge.merge(nvml_of(L40S_8X), bare, sysfs.probe(lay_out(tmp_path, L40S_8X)))
    assert res.conflicts == ()
    assert [n.device for n in res.topology.nics] == ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"]


def test_affinity_disagreement_is_reported(tmp_path: Path) -> None:
    root = lay_out(tmp_path, L40S_8X)
    (root / "sys/bus/pci/devices/0000:18:00.0/local_cpulist").write_text("0-47\n")  # SMT siblings missing
    res = merge.merge(nvml_of(L40S_8X), None, sysfs.probe(root))
    [c] = res.conflicts
    assert (c.subject, c.kind, c.values) == (
        "GPU0.cpu_affinity",
        "cpu-affinity",
        (("nvml", "0-47,96-143"), ("sysfs", "0-47")),
    )


def test_no_source_is_no_gpu() -> None:
    with pytest.raises(NoGpuError):
        merge.merge(None, None, None)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("00000000:3B:00.0", "0000:3b:00.0"),
        ("0000:3b:00.0", "0000:3b:00.0"),
        ("3B:00.0", "0000:3b:00.0"),
        ("00000001:C1:00.1", "0001:c1:00.1"),
    ],
)
def test_bus_id_normalisation(raw: str, norm: str) -> None:
    assert normalize_bus_id(raw) == norm


def test_bus_id_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        normalize_bus_id("GPU-1234")


def test_v2_facts_are_merged_with_their_sources(tmp_path: Path) -> None:
    """NVML gives arch/cc/NVLink version/PCIe/P2P, sysfs the NIC rates; equal maxima are no conflict."""
    res = merge.merge(nvml_of(DGX_A100), smi_topology(DGX_A100), sysfs.probe(lay_out(tmp_path, DGX_A100)))
    topo = res.topology
    assert {(g.arch, g.cc, g.nvlink_version) for g in topo.gpus} == {("ampere", "8.0", "3.0")}
    assert res.provenance["GPU0.pcie"] == "nvml" and topo.p2p
    assert [n.rate_mbps for n in topo.nics][:8] == [200000] * 7 + [None]  # mlx5_7's port is down


def test_pcie_maximum_disagreement_between_nvml_and_sysfs_is_a_conflict(tmp_path: Path) -> None:
    """The slot says x8 at most (sysfs max_link_width) while NVML says x16: reported, NVML's value used."""
    root = lay_out(tmp_path, L40S_8X)
    (root / "sys/bus/pci/devices/0000:3b:00.0/max_link_width").write_text("8\n")  # GPU3
    res = merge.merge(nvml_of(L40S_8X), smi_topology(L40S_8X), sysfs.probe(root))
    (c,) = [c for c in res.conflicts if c.kind == "pcie-link"]
    assert (c.subject, c.values, c.chosen_from) == (
        "GPU3.pcie", (("nvml", "Gen4 x16"), ("sysfs", "Gen4 x8")), "nvml")
    assert res.topology.gpu(3).pcie is not None and res.topology.gpu(3).pcie.max_width == 16  # type: ignore[union-attr]


def test_sysfs_alone_gives_pcie_links_and_no_arch(tmp_path: Path) -> None:
    res = merge.merge(sysfs=sysfs.probe(lay_out(tmp_path, L40S_8X)))
    assert {g.pcie for g in res.topology.gpus} == {PcieLink(4, 16, 4, 16)}
    assert {(g.arch, g.cc) for g in res.topology.gpus} == {(None, None)}  # sysfs cannot know; not guessed
    assert res.topology.p2p == ()
