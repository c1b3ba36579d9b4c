"""`gputopo audit` end to end: the installed console entry point in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "fixtures" / "topo-corpus"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gputopo", *args], input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_audit_json_contract_h100_dualport_nics() -> None:
    # corpus 051: HGX H100, NV18 everywhere; NIC pairs PIX to GPU0/2/4/6 only (4 dual-port cards).
    res = run("audit", str(CORPUS / "051_h100x8-nv18-8nics-dualport-pix-pairs.txt"), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert {"islands", "gpu_nic", "labels", "annotations"} <= doc.keys()
    assert doc["islands"]["nvlink"] == [list(range(8))]
    assert set(doc["islands"]) == {"nvlink", "pix", "pxb", "phb", "node", "sys"}
    # GPU0 row: NIC0 PIX, NIC1 PIX -> mlx5_0, mlx5_1; GPU1 row: NIC0-3 NODE -> four NICs at NODE
    assert doc["gpu_nic"]["0"] == {"level": "PIX", "nics": ["mlx5_0", "mlx5_1"]}
    assert doc["gpu_nic"]["1"] == {"level": "NODE", "nics": ["mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"]}
    assert doc["labels"]["gputopo.io/nic-locality"] == "node"
    assert doc["labels"]["gputopo.io/gpudirect"] == "false"
    assert doc["labels"]["gputopo.io/island-nvlink"] == "8"
    assert doc["labels"]["gputopo.io/numa-shape"] == "4-4"  # NUMA Affinity 0 for GPU0-3, 1 for GPU4-7
    assert doc["numa"] == {"basis": "affinity", "groups": [[0, 1, 2, 3], [4, 5, 6, 7]], "nodes": ["0", "1"]}
    assert set(doc["annotations"]) == {"gputopo.io/topology"}
    assert doc["topology"]["v"] == 2
    assert all(f["severity"] in ("info", "warning", "error") for f in doc["findings"])
    assert doc["warnings"] == [f["message"] for f in doc["findings"] if f["severity"] != "info"]


def test_audit_reads_stdin_and_prints_tables() -> None:
    text = (CORPUS / "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt").read_text()
    res = run("audit", "-", stdin=text)
    assert res.returncode == 0, res.stderr
    assert "Islands" in res.stdout and "gputopo.io/numa-shape" in res.stdout
    # one line for the two NUMA groups, not one per GPU pair (rich may wrap the line)
    assert " ".join(res.stdout.split()).count("cross NUMA nodes (SYS, 16 GPU pairs)") == 1


def test_audit_parse_error_exits_2_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("        GPU0    GPU1\nGPU0     X      NV4\nGPU1    NV4     BOGUS\n")
    res = run("audit", str(bad))
    assert res.returncode == 2
    err = res.stderr.strip()
    assert "\n" not in err and "line 3" in err and "Traceback" not in err


def test_audit_missing_file_exits_2(tmp_path: Path) -> None:
    res = run("audit", str(tmp_path / "nope.txt"))
    assert res.returncode == 2 and "cannot read" in res.stderr and "Traceback" not in res.stderr


def test_audit_svg_is_well_formed(tmp_path: Path) -> None:
    out = tmp_path / "pic" / "t.svg"
    res = run("audit", str(CORPUS / "005_v100x8-dgx1-hybridcube-1nic-oldfmt.txt"), "--svg", str(out))
    assert res.returncode == 0, res.stderr
    root = ET.fromstring(out.read_text())
    assert root.tag.endswith("svg")
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert "GPU0↔GPU3: NV2" in titles  # DGX-1: GPU0-GPU3 is a double NVLink


def test_audit_pictures_by_suffix_format_and_the_svg_alias(tmp_path: Path) -> None:
    src = str(CORPUS / "051_h100x8-nv18-8nics-dualport-pix-pairs.txt")
    png, forced, svg = tmp_path / "a.png", tmp_path / "b.img", tmp_path / "c.svg"
    res = run("audit", src, "--picture", str(png), "--picture", str(forced), "--format", "png", "--svg", str(svg))
    assert res.returncode == 0, res.stderr
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert forced.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")  # --format wins over an unknown suffix
    root = ET.fromstring(svg.read_text())
    assert [g.get("data-gpus") for g in root.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "nvswitch"] == [
        "0-7"]
    for path in (png, forced, svg):
        assert f"picture written to {path}" in res.stdout


def test_audit_picture_to_an_unwritable_place_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    res = run("audit", str(CORPUS / "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt"), "--picture",
              str(blocker / "x.png"))
    assert res.returncode == 2 and "cannot write" in res.stderr and "Traceback" not in res.stderr


def test_cli_help_lists_subcommands() -> None:
    res = run("--help")
    assert res.returncode == 0
    for sub in ("audit", "agent", "extender"):
        assert sub in res.stdout


@pytest.mark.parametrize("bad_prefix", ["nope", "UPPER.case/"])
def test_audit_rejects_bad_prefix(bad_prefix: str) -> None:
    res = run("audit", str(CORPUS / "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt"), "--prefix", bad_prefix)
    assert res.returncode == 2 and "prefix" in res.stderr


def test_audit_without_file_on_a_machine_without_gpu_exits_3() -> None:
    import ctypes.util
    import shutil

    if shutil.which("nvidia-smi") or ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this machine has an NVIDIA driver; the no-GPU path cannot be shown here")
    res = run("audit")
    assert res.returncode == 3
    assert "no NVIDIA GPU" in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_findings_that_quote_the_input_are_printed_literally(tmp_path: Path) -> None:
    """A legend entry spelled like rich markup ("[/bold]") is quoted in a warning, not interpreted (was a crash)."""
    text = ("        GPU0    GPU1    NIC0\nGPU0     X      PIX     PIX\nGPU1    PIX      X      SYS\n"
            "NIC0    PIX     SYS      X\n\nNIC Legend:\n\n  NIC0: [/bold]x1\n")
    path = tmp_path / "markup.txt"
    path.write_text(text)
    res = run("audit", str(path))
    assert res.returncode == 0, res.stderr
    assert "NIC legend entry NIC0: '[/bold]x1' unreadable or cut; ignored" in res.stdout


def test_audit_bandwidth_section_gb200_tray() -> None:
    # corpus 038: GB200 tray, NV18 between all four GPUs, every NIC SYS; read from text, so the
    # NVLink generation is unknown: 18 links -> NVLink 4 or 5, the slower: 18 x 20.6 = 370.8
    res = run("audit", str(CORPUS / "038_gb200-tray-4gpu-nv18-8nics-gpunumaid-numeric.txt"), "--json")
    assert res.returncode == 0, res.stderr
    bw = json.loads(res.stdout)["bandwidth"]
    assert set(bw) == {"unit", "islands", "best", "assumed"}
    assert [(i["level"], i["gpus"]) for i in bw["islands"]] == [("nvlink", [0, 1, 2, 3])]
    assert set(bw["best"]) == {"2", "4"}
    four = bw["best"]["4"]
    assert four["gpus"] == [0, 1, 2, 3] and four["busbw_gbps"] == 370.8 and four["ring_gbps"] == 370.8
    assert four["bottleneck"]["kind"] == "hop" and four["bottleneck"]["where"] == "GPU0↔GPU1 NV18"
    assert [h["transport"] for h in four["hops"]] == ["nvlink"] * 4
    # a rank of a multi-node job: the GPUs' memory is NUMA nodes 2, 10, 18, 26 (Grace: NVLink-C2C to the CPU);
    # the set is the whole tray, so every NIC (reported SYS) is under the CPU of one of its GPUs and NCCL
    # reaches it with GPUDirect RDMA over C2C; rates unknown: 8 × 1.25 = 10, the cap
    multi = four["multi_node"]
    assert multi["busbw_gbps"] == 10.0 and multi["bottleneck"]["kind"] == "network"
    assert multi["network"]["nics"] == [f"mlx5_{i}" for i in range(8)]
    assert multi["network"]["gpudirect"] == multi["network"]["nics"]
    assert multi["network"]["assumed"] == ["NIC rate unknown: 10 Gb/s assumed (NCCL's fallback), 1.25 GB/s"]
    # two of its GPUs (one Grace): which CPU a SYS NIC hangs off is unknown: staged across the socket link, 6
    two = bw["best"]["2"]["multi_node"]
    assert two["busbw_gbps"] == 6.0 and two["network"]["gpudirect"] == []
    assert four["explain"].startswith("ring 0→1→2→3, bottleneck GPU0↔GPU1 NV18, 370.8 GB/s (")
    assert any("NVLink generation unknown" in a for a in bw["assumed"])


def test_audit_text_shows_predicted_bandwidth() -> None:
    res = run("audit", str(CORPUS / "049_rtx2080tix2-pix-numa1-autodl-container.txt"))
    assert res.returncode == 0, res.stderr
    flat = " ".join(res.stdout.split())
    assert "Predicted NCCL bus bandwidth" in flat
    # P2P unknown: via host memory, both streams on the switch uplink: Gen3 x16 (12) / 2 = 6
    assert "PCIe switch above GPU0-1" in flat and "assumed: P2P status unknown" in flat
