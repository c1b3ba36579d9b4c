"""The node-audit goldens held to figures worked out by hand, per machine (tests/golden/INDEX.md).

Why: ``test_audit_golden.py`` proves the code still prints its goldens, and the goldens were
the code's own output when written. This file reads the golden JSON directly (no gputopo code)
and asserts what a person reads off the corpus matrix and the bandwidth model's stated rules:

- NVLink of unknown generation: the slowest generation with at least that many links per GPU
  (``docs/bandwidth.md``): NV18 → 18 × 20.6 = 370.8 (NVLink 4.0), NV12 → 12 × 20 = 240 and
  NV8 → 8 × 20 = 160 (NVLink 3.0: NVLink 2.0 has only 6 links), NV2 → 2 × 12 = 24 and NV1 → 12
  (NVLink 3.0 on GA102, 12 GB/s per link, the slowest with 1–2 links);
- a SYS hop: host memory across the socket link, 6 GB/s for an unknown CPU (below Gen3 x16, 12);
- PCIe by NCCL's formula ``width × speed / 80``: Gen4 x16 = 16 × 120 / 80 = 24;
- a multi-node rank: 1.25 GB/s (10 Gb/s, NCCL's fallback) per NIC of unknown rate, SYS NICs
  together held by the 6 GB/s socket link.

Together with ``test_audit_golden.py`` (code == golden) this makes code == hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "audit"

#: the corpus text picks (text carries no PCIe, P2P or MIG facts: no verdict may appear)
TEXT_INPUTS = ("dgx1-v100", "dgx-a100", "hgx-h100", "hgx-h800", "gb200-tray", "gh200", "rtx4090-allsys",
               "vm-a10-flat")


def _doc(slug: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((GOLDEN / f"{slug}.json").read_text())
    return doc


def _codes(doc: dict[str, Any]) -> list[str]:
    return [f["code"] for f in doc["findings"]]


def _messages(doc: dict[str, Any], code: str) -> list[str]:
    return [f["message"] for f in doc["findings"] if f["code"] == code]


def _island(doc: dict[str, Any], level: str, gpus: list[int]) -> dict[str, Any]:
    (hit,) = [i for i in doc["bandwidth"]["islands"] if i["level"] == level and i["gpus"] == gpus]
    return hit


# machine, island level, its GPUs, ring busbw GB/s, multi-node busbw per rank GB/s (None: not asserted)
BANDWIDTH = [
    # DGX-1 (005): an NV2 cycle 0-3-2-1-5-6-7-4 exists (read off the matrix), so 2 × 12 = 24; one NIC: 1.25
    ("dgx1-v100", "nvlink", list(range(8)), 24.0, 1.25),
    # DGX A100: NV12 everywhere, 12 × 20 = 240; eight PXB NICs at 1.25 = 10
    ("dgx-a100", "nvlink", list(range(8)), 240.0, 10.0),
    # HGX H100 (051): NV18, 18 × 20.6 = 370.8; eight NICs at 1.25 = 10
    ("hgx-h100", "nvlink", list(range(8)), 370.8, 10.0),
    # HGX H800 (019): NV8, 8 × 20 = 160
    ("hgx-h800", "nvlink", list(range(8)), 160.0, None),
    # GB200 tray (038): NV18 between 4 GPUs, 370.8. The set is the whole tray (GPU NUMA IDs: Grace, NVLink-C2C), so
    # each of the 8 NICs (reported SYS) sits under the CPU of one of its GPUs and NCCL >= 2.27.3 reaches it with
    # GPUDirect RDMA over C2C: 8 × 1.25 (rate unknown) = 10, far below the C2C link's 450
    ("gb200-tray", "nvlink", [0, 1, 2, 3], 370.8, 10.0),
    # RTX 4090 (032): every pair SYS: 6; two SYS NICs at 1.25: 2.5
    ("rtx4090-allsys", "sys", list(range(8)), 6.0, 2.5),
    # A10 VM (048): every pair SYS: 6; two SYS NICs: 2.5
    ("vm-a10-flat", "sys", [0, 1, 2, 3], 6.0, 2.5),
    # probed 8x L40S: PIX pairs on Gen4 x16 with P2P: 24, a rank's NIC behind the GPU's own link: 24
    ("l40s-pcie-2socket", "pix", [0, 1], 24.0, 24.0),
    ("l40s-pcie-2socket", "node", [0, 1, 2, 3], 24.0, None),  # one socket: still the 24 GB/s GPU links
    ("l40s-pcie-2socket", "sys", list(range(8)), 6.0, 6.0),  # the 8-GPU ring crosses the socket link
]


@pytest.mark.parametrize(("slug", "level", "gpus", "busbw", "multi"), BANDWIDTH,
                         ids=[f"{b[0]}-{b[1]}-{len(b[2])}" for b in BANDWIDTH])
def test_bandwidth_worked_by_hand(slug: str, level: str, gpus: list[int], busbw: float,
                                  multi: float | None) -> None:
    island = _island(_doc(slug), level, gpus)
    assert island["busbw_gbps"] == pytest.approx(busbw)
    if multi is not None:
        assert island["multi_node"]["busbw_gbps"] == pytest.approx(multi)


@pytest.mark.parametrize("slug", ["gh200", "h200-capture"])
def test_one_gpu_has_no_ring(slug: str) -> None:
    doc = _doc(slug)
    assert doc["gpu_count"] == 1 and doc["bandwidth"]["islands"] == []


def test_dgx1_sys_pairs_and_missing_nvlinks() -> None:
    doc = _doc("dgx1-v100")
    # 4 × 4 = 16 pairs across the sockets, of which 0-4, 1-5 (NV2) and 2-6, 3-7 (NV1) are NVLink: 12 SYS
    (cross,) = _messages(doc, "cross-numa")
    assert "12 GPU pairs" in cross
    # each GPU has NVLink to 4 peers: 8 × 4 / 2 = 16 NVLink pairs of 28, so 12 without
    (mesh,) = _messages(doc, "nvlink-not-all-to-all")
    assert "12 pairs without NVLink" in mesh


def test_rtx4090_sys_inside_each_numa_node() -> None:
    doc = _doc("rtx4090-allsys")
    # GPU0-3 on NUMA 0 and GPU4-7 on NUMA 1, every pair SYS: 6 of 6 pairs within each node, 16 across
    within = _messages(doc, "sys-within-numa")
    assert len(within) == 2 and all("6 of their 6 GPU pairs are SYS" in m for m in within)
    (cross,) = _messages(doc, "cross-numa")
    assert "16 GPU pairs" in cross


def test_vm_a10_sys_on_one_numa_node() -> None:
    (within,) = _messages(_doc("vm-a10-flat"), "sys-within-numa")
    assert "6 of their 6 GPU pairs are SYS" in within
    assert "cross-numa" not in _codes(_doc("vm-a10-flat"))  # one NUMA node: nothing crosses


@pytest.mark.parametrize("slug", TEXT_INPUTS)
def test_text_inputs_never_judge_pcie_p2p_or_mig(slug: str) -> None:
    codes = _codes(_doc(slug))
    assert "pcie-not-judged" in codes
    judged = [c for c in codes if c != "pcie-not-judged" and c.startswith(("pcie-", "p2p-", "mig"))]
    assert judged == []


def test_l40s_probe_p2p_ok_on_all_28_pairs_and_no_pcie_finding() -> None:
    doc = _doc("l40s-pcie-2socket")
    (p2p,) = _messages(doc, "p2p-ok")
    assert "28" in p2p  # 8 × 7 / 2 pairs
    assert not [c for c in _codes(doc) if c.startswith("pcie-")]  # Gen4 x16 of Gen4 x16


def test_h200_capture_is_mig_capable_but_disabled() -> None:
    doc = _doc("h200-capture")
    assert [g["mig"] for g in doc["topology"]["gpus"]] == [False]  # MIG mode [0, 0] in the capture
    assert not [c for c in _codes(doc) if "mig" in c]
