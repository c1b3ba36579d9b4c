"""NVML source against the fake pynvml, for the modelled L40S server and DGX A100."""

from __future__ import annotations

import ctypes.util
import sys

import pynvml
import pytest
from discovery_support import smi_topology, tokens
from fake_nvml import FakeNvml
from machines import DGX_A100, L40S_8X, MACHINES, Machine, with_gpu

from labeler.discovery import nvml
from labeler.discovery.facts import Health, Severity
from labeler.topology.errors import NoGpuError, ProbeError
from labeler.topology.model import P2P, PcieLink
from labeler.topology.serialize import parse_cpulist

CPUS = {L40S_8X.name: 192, DGX_A100.name: 256}


def run(machine: Machine, **kw: object) -> tuple[FakeNvml, nvml.ProbeResult]:
    fake = FakeNvml(machine, **kw)  # type: ignore[arg-type]
    return fake, nvml.probe(fake, cpu_count=CPUS[machine.name])


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_identity_matches_the_device_table(machine: Machine) -> None:
    fake, res = run(machine)
    assert fake.shutdowns == 1 and not res.degraded
    assert [g.bus_id for g in res.topology.gpus] == [g.bdf for g in machine.gpus]  # 0000:3b:00.0 spelling
    for got, row in zip(res.topology.gpus, machine.gpus, strict=True):
        assert (got.name, got.uuid) == (row.name, row.uuid)
        assert got.cpu_affinity == parse_cpulist(row.cpus)
        assert got.numa_affinity == frozenset({row.numa})
        assert got.gpu_numa_id is None  # NOT_SUPPORTED on x86: "GPU NUMA ID N/A"
    assert res.driver_version == "550.127.05"


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
def test_gpu_matrix_equals_nvidia_smi_for_the_same_server(machine: Machine) -> None:
    """NVML's GPU↔GPU cells (NVLink counted from link tables) = the smi text's GPU block."""
    _, res = run(machine)
    smi = tokens(smi_topology(machine))
    n = len(machine.gpus)
    assert tokens(res.topology) == [row[:n] for row in smi[:n]]


def test_dgx_a100_nvswitch_fabric_is_nv12_all_to_all_and_keeps_pcie_levels() -> None:
    _, res = run(DGX_A100)
    assert {link.token for _, _, link in res.topology.gpu_pairs()} == {"NV12"}
    assert res.pcie_levels[(0, 1)] == "PXB" and res.pcie_levels[(0, 2)] == "SYS"
    assert all(p.nvlink == "OK" for p in res.p2p)


def test_l40s_has_no_nvlink_and_pcie_p2p() -> None:
    fake, res = run(L40S_8X)
    assert not res.topology.has_nvlink
    assert len(res.p2p) == 28 and all(p.read == p.write == "OK" and p.nvlink == "NS" for p in res.p2p)
    # no NVLink: one NOT_SUPPORTED probe per GPU, not NVML_NVLINK_MAX_LINKS (36) each
    assert fake.nvlink_state_calls == 8


@pytest.mark.parametrize(
    ("code", "error"),
    [
        (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, NoGpuError),
        (pynvml.NVML_ERROR_DRIVER_NOT_LOADED, NoGpuError),
        (pynvml.NVML_ERROR_NO_PERMISSION, ProbeError),
        (pynvml.NVML_ERROR_LIB_RM_VERSION_MISMATCH, ProbeError),
    ],
    ids=["library-not-found", "driver-not-loaded", "no-permission", "driver-library-mismatch"],
)
def test_init_errors_map_to_our_hierarchy(code: int, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        nvml.probe(FakeNvml(L40S_8X, init_error=code))
    assert type(info.value) is error  # a permission problem is not "no GPU"
    assert isinstance(info.value.__cause__, pynvml.NVMLError) and info.value.__cause__.value == code


def test_zero_devices_is_no_gpu() -> None:
    with pytest.raises(NoGpuError, match="0 GPUs"):
        run(L40S_8X, device_count=0)


def _total_calls(machine: Machine, gpu: int) -> int:
    fake, _ = run(machine)
    return fake.calls[gpu]


@pytest.mark.parametrize("machine", MACHINES.values(), ids=MACHINES.keys())
@pytest.mark.parametrize("phase", ["at-handle", "during-identity", "during-pcie-mig", "during-pairs", "last-call"])
@pytest.mark.parametrize(
    ("kw", "status"),
    [("lost_after", Health.LOST), ("unknown_after", Health.UNKNOWN_ERROR)],
    ids=["gpu-is-lost", "unknown-error"],
)
def test_gpu_failing_mid_run_is_a_health_record_not_a_crash(
    machine: Machine, phase: str, kw: str, status: Health
) -> None:
    gpu = 5
    total = _total_calls(machine, gpu)
    after = {
        "at-handle": 0,
        "during-identity": 2,
        "during-pcie-mig": 8,
        "during-pairs": total - 6,
        "last-call": total - 1,
    }[phase]
    fake, res = run(machine, **{kw: {gpu: after}})
    assert res.degraded
    bad = [h for h in res.health if h.status is not Health.OK]
    assert [(h.index, h.status) for h in bad] == [(gpu, status)]
    assert gpu not in res.topology.gpu_indices and len(res.topology.gpus) == len(machine.gpus) - 1
    assert any(f.severity is Severity.ERROR and f.gpu == gpu for f in res.findings)
    assert all(gpu not in (p.a, p.b) for p in res.p2p)
    # the healthy GPUs keep their real links
    for a, b, link in res.topology.gpu_pairs():
        assert link is not None
        expected = "NV12" if machine is DGX_A100 else machine.level(a, b)
        assert link.token == expected
    assert fake.shutdowns == 1


def test_a_gpu_that_never_hits_its_limit_stays_healthy() -> None:
    _, res = run(L40S_8X, lost_after={5: 10_000})
    assert not res.degraded and len(res.topology.gpus) == 8


@pytest.mark.parametrize(
    ("pcie", "code", "severity"),
    [
        ((4, 4, 8, 16), "pcie-width-downtrained", Severity.WARNING),  # x8 in an x16 slot: riser/seating
        ((3, 4, 8, 16), "pcie-width-downtrained", Severity.WARNING),
        ((1, 4, 16, 16), "pcie-gen-below-max", Severity.INFO),  # idle power saving, not a fault
        ((4, 4, 16, 16), None, None),
    ],
    ids=["x8-of-x16", "gen3-x8", "idle-gen1", "full"],
)
def test_pcie_link_training(pcie: tuple[int, int, int, int], code: str | None, severity: Severity | None) -> None:
    _, res = run(with_gpu(L40S_8X, 5, pcie=pcie))
    got = [(f.code, f.severity) for f in res.findings if f.gpu == 5]
    assert got == ([] if code is None else [(code, severity)])
    st = next(s for s in res.pcie if s.gpu == 5)
    assert (st.curr_gen, st.max_gen, st.curr_width, st.max_width) == pcie
    assert not res.degraded  # a slow link is a warning, not a lost GPU


def test_p2p_status_names_and_the_read_index_quirk() -> None:
    """pynvml defines NVML_P2P_CAPS_INDEX_READ as (0,); the fake rejects a tuple like ctypes would."""
    from dataclasses import replace

    machine = replace(L40S_8X, p2p={(0, 4): "CNS", (1, 7): "TNS", (2, 3): "DIS"})
    _, res = run(machine)
    got = {(p.a, p.b): p.read for p in res.p2p if p.read != "OK"}
    assert got == {(0, 4): "CNS", (1, 7): "TNS", (2, 3): "DIS"}


def test_v2_facts_from_nvml() -> None:
    """Architecture, compute capability, NVLink version, PCIe link and P2P per pair reach the topology."""
    _, dgx = run(DGX_A100)
    assert {(g.arch, g.cc, g.nvlink_version) for g in dgx.topology.gpus} == {("ampere", "8.0", "3.0")}
    assert {g.pcie for g in dgx.topology.gpus} == {PcieLink(4, 16, 4, 16)}
    assert all(dgx.topology.gpu_p2p(a, b) is P2P.OK for a, b, _ in dgx.topology.gpu_pairs())
    _, l40s = run(L40S_8X)
    assert {(g.arch, g.cc, g.nvlink_version) for g in l40s.topology.gpus} == {("ada", "8.9", None)}  # no NVLink


def test_p2p_matrix_keeps_the_reason_and_unknown() -> None:
    from dataclasses import replace

    machine = replace(L40S_8X, p2p={(0, 4): "CNS", (1, 7): "U", (2, 3): "GNS"})
    _, res = run(machine)
    topo = res.topology
    assert (topo.gpu_p2p(0, 4), topo.gpu_p2p(4, 0), topo.gpu_p2p(2, 3)) == (P2P.CNS, P2P.CNS, P2P.GNS)
    assert topo.gpu_p2p(1, 7) is None  # NVML's U (unknown) stays unknown
    assert topo.gpu_p2p(0, 1) is P2P.OK and topo.gpu_p2p(3, 3) is None


def test_facts_a_driver_does_not_support_stay_unknown() -> None:
    """Older drivers: no architecture/compute capability; a VM reporting PCIe width 0: unknown, not x0."""
    machine = with_gpu(with_gpu(L40S_8X, 1, arch=None, cc=None), 2, pcie=(4, 4, 0, 16))
    _, res = run(machine)
    g1, g2 = res.topology.gpu(1), res.topology.gpu(2)
    assert (g1.arch, g1.cc) == (None, None) and g1.name == "NVIDIA L40S"  # never derived from the name
    assert g2.pcie == PcieLink(gen=4, width=None, max_gen=4, max_width=16)
    assert not [f for f in res.findings if f.gpu == 2]  # an unknown width is not "trained at x0"


def test_mig_mode_and_mig_uuids() -> None:
    migs = ("MIG-4f0f2c5e-7b1d-5c5e-9a0e-1c3b0d7f8a01", "MIG-9d1e7a3c-2b4f-5e6d-8c7b-0a1f2e3d4c5b")
    machine = with_gpu(with_gpu(DGX_A100, 0, mig=(1, 1), mig_uuids=migs), 3, mig=(0, 1))
    _, res = run(machine)
    by_gpu = {m.gpu: m for m in res.mig}
    assert (by_gpu[0].current, by_gpu[0].pending, by_gpu[0].mig_uuids) == (True, True, migs)
    assert (by_gpu[3].current, by_gpu[3].pending) == (False, True)
    lookup = res.uuid_to_index()
    assert lookup[migs[1]] == 0 and lookup[machine.gpus[3].uuid] == 3
    _, l40s = run(L40S_8X)
    assert l40s.mig == ()  # not MIG-capable: NOT_SUPPORTED is "no fact", not an error


def test_unexpected_nvml_error_is_a_probe_error_and_nvml_is_shut_down() -> None:
    fake = FakeNvml(L40S_8X)

    def no_permission(handle: object) -> str:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)

    fake.nvmlDeviceGetName = no_permission  # type: ignore[method-assign]
    with pytest.raises(ProbeError, match="Insufficient Permissions") as info:
        nvml.probe(fake, cpu_count=192)
    assert isinstance(info.value.__cause__, pynvml.NVMLError_NoPermission)
    assert fake.shutdowns == 1


def test_missing_pynvml_package_is_no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # what `import pynvml` sees when not installed
    with pytest.raises(NoGpuError, match="nvidia-ml-py"):
        nvml.probe()


@pytest.mark.skipif(ctypes.util.find_library("nvidia-ml") is not None, reason="this host has libnvidia-ml")
def test_real_pynvml_on_a_host_without_driver_is_no_gpu() -> None:
    """The real binding, not the fake: dlopen(libnvidia-ml.so.1) fails -> NoGpuError."""
    with pytest.raises(NoGpuError, match="Library Not Found") as info:
        nvml.probe()
    assert isinstance(info.value.__cause__, pynvml.NVMLError_LibraryNotFound)


@pytest.mark.parametrize("cpu_count", [None, 1, 8, 192, 4096])
def test_affinity_mask_is_never_cut_short(cpu_count: int | None) -> None:
    """A container's os.cpu_count() may be 8 on a 256-thread host: the mask must still reach CPU 255."""
    res = nvml.probe(FakeNvml(DGX_A100), cpu_count=cpu_count)
    assert res.topology.gpu(4).cpu_affinity == parse_cpulist("112-127,240-255")
