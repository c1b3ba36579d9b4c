"""The pod audit on named machines: island, ring, predicted bandwidth, NICs, CPU alignment, gate.

Expected values are read off the corpus matrices by hand:

- 027 (8 GPUs, NV12 bridge pairs 0-1, 2-3, 4-5, 6-7; NODE inside a socket, SYS across;
  CPUs 0-63,128-191 on NUMA 0 for GPU0-3, 64-127,192-255 on NUMA 1 for GPU4-7; NIC0/NIC1
  (mlx5_0/1) are NODE to GPU0, PHB to GPU1, NODE to GPU2-3, SYS to GPU4-7).
- 005 (DGX-1 V100 hybrid cube-mesh): GPU0-GPU5 is SYS although all eight share one NVLink
  island; GPU0's links to 1, 2, 3 are NV1, NV1, NV2, so every ring through 0-3 has an NV1 hop.
- 010 (DGX A100): NV12 all-to-all, each GPU pair has two NICs at PXB.

Predicted bandwidths come from the bandwidth model (docs/bandwidth.md) through
policy.bandwidth.expected_busbw, GB/s per direction. The corpus text carries no GPU facts, so
they are the model's values for unknown facts: NVLink at the slowest generation that can have
that many links (12 links: 20 per link; 1 link: 12), PCIe at Gen3 x16 (12; NODE goes through
host memory at that rate), SYS at the socket link of an unknown CPU (6).
"""

from __future__ import annotations

import pytest
from pod_machines import container_view, corpus, dgx_a100

from labeler.topology.links import LinkLevel
from policy.audit.device_list import Resolution
from policy.audit.pod_audit import Alignment, Gate, analyse, gate, to_dict


def _res(*gpus: int, known: bool = True) -> Resolution:
    return Resolution(gpus=tuple(gpus), container_gpus=tuple(sorted(gpus)), known=known)


def _codes(audit: object) -> set[str]:
    return {f.code for f in audit.findings}  # type: ignore[attr-defined]


CPUS_0_7 = frozenset(range(8))

# machine, GPUs, CPU mask, island, ring bottleneck token, expected busbw, alignment, finding codes that must appear
CASES = [
    ("027", (0, 1), CPUS_0_7, "nvlink", "NV12", 240.0, Alignment.ALIGNED, {"ring-bottleneck", "nic-not-local"}),
    ("027", (1, 2), CPUS_0_7, "node", "NODE", 12.0, Alignment.ALIGNED, {"ring-bottleneck", "tighter-set-exists"}),
    ("027", (0, 4), frozenset(range(64)), "sys", "SYS", 6.0, Alignment.MISALIGNED,
     {"socket-crossing", "cpu-misaligned", "tighter-set-exists"}),
    ("027", (0, 4), frozenset({0, 1, 64, 65}), "sys", "SYS", 6.0, Alignment.ALIGNED, {"socket-crossing"}),
    ("027", (0, 1), frozenset({0, 1, 64}), "nvlink", "NV12", 240.0, Alignment.PARTIAL, {"cpu-partial"}),
    ("005", (0, 5), CPUS_0_7, "nvlink", "SYS", 6.0, Alignment.MISALIGNED, {"socket-crossing"}),
    ("005", (0, 1, 2, 3), CPUS_0_7, "nvlink", "NV1", 12.0, Alignment.ALIGNED, set()),
    # 032: every pair SYS; GPU0,1 share NUMA node 0 (a SYS hop inside one node), GPU4 is on node 1
    ("032", (0, 1), CPUS_0_7, "sys", "SYS", 6.0, Alignment.ALIGNED, {"sys-within-numa"}),
    ("032", (0, 4), CPUS_0_7, "sys", "SYS", 6.0, Alignment.MISALIGNED, {"socket-crossing", "cpu-misaligned"}),
    ("010", tuple(range(8)), frozenset(range(48, 64)), "nvlink", "NV12", 240.0, Alignment.MISALIGNED,
     {"cpu-misaligned"}),
]


@pytest.mark.parametrize(("machine", "gpus", "cpus", "island", "bottleneck", "busbw", "align", "codes"), CASES,
                         ids=[f"{c[0]}-gpus{''.join(map(str, c[1]))}-{c[6].value}" for c in CASES])
def test_pod_audit_on_named_machines(machine: str, gpus: tuple[int, ...], cpus: frozenset[int], island: str,
                                     bottleneck: str, busbw: float, align: Alignment, codes: set[str]) -> None:
    topo = corpus(machine)
    audit = analyse(topo, _res(*gpus), cpus)
    assert audit.island_level is not None and audit.island_level.slug == island
    assert audit.bottleneck is not None and audit.bottleneck.token == bottleneck
    assert audit.expected_busbw == busbw
    assert audit.cpu.status is align
    assert codes <= _codes(audit)
    # "socket-crossing" only where the NUMA affinity differs (labeler.topology.numa.crosses)
    assert ("socket-crossing" in _codes(audit)) is ("socket-crossing" in codes)


def test_nics_and_cpu_details_on_027() -> None:
    audit = analyse(corpus("027"), _res(0, 1), CPUS_0_7)
    assert [(g, lvl.token if lvl else None, nics) for g, lvl, nics in audit.nics] == [
        (0, "NODE", ("mlx5_0", "mlx5_1")), (1, "PHB", ("mlx5_0", "mlx5_1"))]
    # each GPU's affinity (0-63,128-191: 128 CPUs) holds all 8 CPUs of the mask
    assert audit.cpu.local == ((0, 8, 128), (1, 8, 128))
    assert audit.cpu.process_numa == (0,)
    doc = to_dict(audit)
    assert doc["ring"] == {"gpus": [0, 1], "ring": [0, 1], "bottleneck": "NV12"}
    assert doc["nics"]["1"] == {"level": "PHB", "nics": ["mlx5_0", "mlx5_1"]}
    assert doc["cpu"]["process_cpus"] == "0-7" and doc["cpu"]["alignment"] == "aligned"


def test_dgx_a100_nics_are_local() -> None:
    audit = analyse(dgx_a100(), _res(0, 1, 2, 3), None)
    assert {lvl for _, lvl, _ in audit.nics} == {LinkLevel.PXB}
    assert "nic-not-local" not in _codes(audit)
    assert audit.cpu.status is Alignment.UNKNOWN


def test_container_view_knows_only_its_gpus() -> None:
    # a probe inside a pod holding host GPU1 and GPU2 of 027: no other set to compare with
    view = container_view(corpus("027"), [1, 2])
    audit = analyse(view, _res(0, 1), CPUS_0_7)
    assert audit.bottleneck is not None and audit.bottleneck.token == "NODE"
    assert "tighter-set-exists" not in _codes(audit)


def test_fewer_than_two_gpus() -> None:
    topo = corpus("027")
    none = analyse(topo, _res(), CPUS_0_7)
    one = analyse(topo, _res(3), CPUS_0_7)
    assert "no-gpu" in _codes(none) and "single-gpu" in _codes(one)
    assert none.expected_busbw is None and one.expected_busbw is None and one.bottleneck is None
    assert gate(none, LinkLevel.SYS) is Gate.NOT_APPLICABLE and gate(one, LinkLevel.PIX) is Gate.NOT_APPLICABLE


# GPUs on 027, --fail-on, verdict: FAIL when the worst hop is at LEVEL or worse
GATES = [
    ((0, 1), LinkLevel.NVLINK, Gate.FAIL),  # NV12 is "nvlink or worse"
    ((0, 1), LinkLevel.PIX, Gate.PASS),
    ((1, 2), LinkLevel.NODE, Gate.FAIL),
    ((1, 2), LinkLevel.SYS, Gate.PASS),
    ((0, 4), LinkLevel.SYS, Gate.FAIL),
    ((0, 1, 2, 3), LinkLevel.SYS, Gate.PASS),  # NODE ring inside socket 0
    ((0, 1, 2, 3), LinkLevel.NODE, Gate.FAIL),
]


@pytest.mark.parametrize(("gpus", "level", "verdict"), GATES, ids=[f"{g}-{lv.slug}" for g, lv, _ in GATES])
def test_fail_on_gate(gpus: tuple[int, ...], level: LinkLevel, verdict: Gate) -> None:
    assert gate(analyse(corpus("027"), _res(*gpus), None), level) is verdict


def test_gate_fails_closed_when_gpus_unknown() -> None:
    audit = analyse(corpus("027"), _res(0, 1, known=False), None)
    assert gate(audit, LinkLevel.SYS) is Gate.UNKNOWN
