"""`gputopo audit nccl LOG`: exit codes, JSON, input limits, the console entry point."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gputopo import audit_nccl
from policy.audit import nccl_log

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "tests" / "fixtures" / "nccl-logs"
AUTODL = str(LOGS / "autodl-rtx2080ti-x2-pix-p2p-ns.log")
T049 = str(next((ROOT / "tests/fixtures/topo-corpus").glob("049_*.txt")))
T013 = str(next((ROOT / "tests/fixtures/topo-corpus").glob("013_*.txt")))
TINYGRAD = str(LOGS / "tinygrad-ogkm-36-rtx4090-x4-p2p-cut.log")


def _main(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = audit_nccl.main(list(args), out=out)
    return code, out.getvalue()


def test_far_below_exits_5_with_json() -> None:
    # the tinygrad 4x RTX 4090 run (peak 25.95) checked against an NVSwitch A100 board (corpus 013,
    # NV12 all pairs, read from text: 12 links -> the slowest generation with 12, 20 GB/s per link:
    # 240): 25.95 / 240 = 0.11, far below
    code, text = _main(TINYGRAD, "--topology", T013, "--gpus", "0-3", "--json")
    assert code == audit_nccl.EXIT_FAR_BELOW
    doc = json.loads(text)
    assert doc["exit_code"] == 5 and doc["runs"][0]["verdict"] == "far-below"
    assert doc["runs"][0]["expected_busbw_gbps"] == 240.0 and doc["runs"][0]["peak_busbw_gbps"] == 25.95
    # far below and no NCCL INFO lines in the log: the audit asks for them instead of guessing the cause
    assert "no-transport-lines" in {f["code"] for f in doc["runs"][0]["findings"]}


def test_below_exits_0_with_json() -> None:
    # AutoDL 2x RTX 2080 Ti on its own matrix (corpus 049, PIX, P2P unknown in the text): through host
    # memory, Gen3 x16 (12) shared by two streams on the switch uplink = 6; 4.00 / 6 = 0.67: below
    code, text = _main(AUTODL, "--topology", T049, "--json")
    assert code == 0
    doc = json.loads(text)
    assert doc["exit_code"] == 0 and doc["runs"][0]["verdict"] == "below"
    assert doc["runs"][0]["expected_busbw_gbps"] == 6.0 and doc["runs"][0]["peak_busbw_gbps"] == 4.0


def test_no_topology_is_analysed_and_exits_0() -> None:
    code, text = _main(AUTODL)
    assert code == 0 and "no-expectation" in text and "[no-transport-lines]" not in text


@pytest.mark.parametrize("args", [
    ["--gpus", "0,1"],  # needs --topology
    ["--topology", T049, "--gpus", "a"],
    ["--topology", T049, "--gpus", "3-1"],
    ["--topology", str(LOGS / "missing.txt")],
])
def test_bad_options_exit_2(args: list[str]) -> None:
    assert _main(AUTODL, *args)[0] == audit_nccl.EXIT_INPUT


def test_unreadable_logs_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _main(T049)[0] == audit_nccl.EXIT_INPUT  # a topology is not a log
    binary = tmp_path / "core"
    binary.write_bytes(b"\x7fELF\x00\x00\x01")
    assert _main(str(binary))[0] == audit_nccl.EXIT_INPUT
    assert _main(str(tmp_path / "nope.log"))[0] == audit_nccl.EXIT_INPUT
    monkeypatch.setattr(nccl_log, "MAX_LOG_CHARS", 1000)
    assert _main(AUTODL)[0] == audit_nccl.EXIT_INPUT  # over the limit


def test_gpu_list() -> None:
    assert audit_nccl.parse_gpu_list("0,2-4") == [0, 2, 3, 4]
    with pytest.raises(ValueError):
        audit_nccl.parse_gpu_list("0-99999")
    with pytest.raises(ValueError):
        audit_nccl.parse_gpu_list("１")  # not ASCII digits


def test_console_entry_point_reads_stdin() -> None:
    text = (LOGS / "nccl-tests-166-shm-channels.log").read_text(encoding="utf-8")
    res = subprocess.run([sys.executable, "-m", "gputopo", "audit", "nccl", "-"], input=text, capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "[no-p2p-shm]" in res.stdout and "SHM: 12" in res.stdout


def test_guard_maps_failures_to_documented_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from gputopo import guard

    def boom() -> int:
        raise RecursionError("maximum recursion depth exceeded\nwhile reading")

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert guard.guarded("gputopo audit nccl", boom) == guard.EXIT_INTERNAL == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error: RecursionError" in err
    assert guard.guarded("gputopo audit pod", interrupted) == guard.EXIT_INTERRUPTED == 130
