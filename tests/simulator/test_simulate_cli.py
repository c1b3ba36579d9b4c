"""`gputopo simulate` end to end: the stable JSON interface, the table, the chart, input errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gputopo.cli import main
from simulator.policies import POLICIES

REQUIRED = ("unallocated_gpu_pct", "aligned_pct", "failed_pods", "busbw_gbps")

NODES = """sn,cpu_milli,memory_mib,gpu,model
openb-node-0000,96000,393216,8,G2
openb-node-0001,96000,393216,8,G2
openb-node-0002,104000,524288,2,T4
openb-node-0003,104000,524288,2,T4
openb-node-0004,64000,262144,8,V100M32
"""
PODS = """name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time
openb-pod-0000,12000,16384,1,1000,,LS,Running,0,100,0
openb-pod-0001,6000,12288,1,460,,LS,Running,1,50,1
openb-pod-0002,24000,65536,4,1000,,LS,Running,2,80,2
openb-pod-0003,48000,131072,8,1000,,LS,Running,3,90,3
openb-pod-0004,8000,16384,2,1000,,BE,Running,4,70,4
openb-pod-0005,4000,8192,0,0,,BE,Running,5,60,5
"""


@pytest.fixture
def trace_dir(tmp_path: Path) -> Path:
    (tmp_path / "openb_node_list_gpu_node.csv").write_text(NODES)
    (tmp_path / "openb_pod_list_default.csv").write_text(PODS)
    return tmp_path


def test_synthetic_json_interface(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--seeds", "42", "--json", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "gputopo.simulate/v1"
    assert list(doc["policies"]) == list(POLICIES)
    for m in doc["policies"].values():
        for key in REQUIRED:
            assert key in m
        assert m["unallocated_gpu_pct"] is not None and 0 <= m["unallocated_gpu_pct"] <= 100
    assert doc["scenario"]["nodes"] == 112 and doc["scenario"]["workload"] == "synthetic"


def test_trace_json_interface(trace_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["simulate", "--trace", str(trace_dir), "--pod-list", "default",
            "--policies", "gputopo,default,bestfit,random", "--seeds", "1..3", "--json", "--no-progress"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scenario"]["pod_list"] == "openb_pod_list_default" and doc["scenario"]["seeds"] == [1, 2, 3]
    assert doc["scenario"]["gpus"] == 28
    for m in doc["policies"].values():
        assert all(k in m for k in REQUIRED) and len(m["per_seed"]) == 3
        assert set(m["by_kind"]) >= {"1gpu", "share", "4gpu", "8gpu", "2gpu", "cpu"}


def test_trace_with_departures(trace_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--trace", str(trace_dir), "--departures", "--seeds", "1", "--json", "--no-progress"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for m in doc["policies"].values():
        assert m["unallocated_gpu_pct"] is None  # FGD's metric assumes no departures
        assert m["failed_before_full"] is None
        assert m["failed_pods"] == 0 and m["time_avg_allocated_gpu_pct"] > 0


def test_table_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    chart = tmp_path / "c.png"
    assert main(["simulate", "--seeds", "1", "--policies", "gputopo,bestfit", "--chart", str(chart), "--by-kind",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "gputopo" in out and "bestfit" in out and "vllm-tp8" in out
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_piped_table_keeps_every_column_whole(capsys: pytest.CaptureFixture[str]) -> None:
    # make demo in a log or a pipe: rich would squeeze the nine columns into 80 and cut the headers
    assert main(["simulate", "--seeds", "1", "--no-progress"]) == 0
    out = capsys.readouterr().out
    for header in ("unalloc. GPU %", "bw-aligned %", "GB/s per GPU", "failed ≤100%"):
        assert header in out
    assert "…" not in out


def test_markdown_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--seeds", "1,2", "--markdown", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| policy | unalloc. GPU %") and len(lines) == 2 + len(POLICIES)
    assert all(" ± " in line for line in lines[2:])


@pytest.mark.parametrize(("extra", "needle"), [
    (["--trace", "/nonexistent"], "no openb_node_list_gpu_node.csv"),
    (["--scheduler-config", "/nonexistent.yaml"], "cannot read scheduler configuration"),
    (["--scenario", "/nonexistent.yaml"], "scenario"),
])
def test_bad_inputs_exit_2(extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--seeds", "1", "--no-progress", *extra]) == 2
    assert needle in capsys.readouterr().err.replace("\n", "")


def test_a_bad_trace_row_names_the_line(trace_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (trace_dir / "openb_pod_list_default.csv").write_text(PODS + "openb-pod-0006,1,1,3,500,,LS,Running,6,7,6\n")
    assert main(["simulate", "--trace", str(trace_dir), "--seeds", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "openb_pod_list_default.csv:8" in err and "whole GPUs" in err


def test_bad_flags_are_usage_errors() -> None:
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--policies", "gputopo,fgd"])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main(["simulate", "--seeds", "5..1"])
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--strategy", "bandwidth,level"])  # the first objective's level table is gone
    assert e.value.code == 2


def test_strategy_subset_reaches_the_gputopo_policy(trace_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--strategy switches the extender's terms off, as the extender's flag does; the run records which."""
    args = ["simulate", "--trace", str(trace_dir), "--policies", "gputopo", "--seeds", "1", "--json", "--no-progress"]
    assert main([*args, "--strategy", "bandwidth,network,island"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["scenario"]["strategies"] == ["bandwidth", "network", "island"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["scenario"]["strategies"] == [
        "bandwidth", "network", "island", "affinity", "free_value", "allocated"]
