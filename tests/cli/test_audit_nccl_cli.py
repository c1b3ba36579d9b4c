"""`gputopo audit nccl LOG`: exit codes, JSON, input limits, the console entry point."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gputopo import audit_nccl
from policy import nccl_log

ROOT = Path(__file__).resolve().parents[2]
LOGS = ROOT / "tests" / "fixtures" / "nccl-logs"
AUTODL = str(LOGS / "autodl-rtx2080ti-x2-pix-p2p-ns.log")
T049 = str(next((ROOT / "tests/fixtures/topo-corpus").glob("049_*.txt")))


def _main(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    code = audit_nccl.main(list(args), out=out)
    return code, out.getvalue()


def test_far_below_exits_1_with_json() -> None:
    code, text = _main(AUTODL, "--topology", T049, "--json")
    assert code == audit_nccl.EXIT_FAR_BELOW
    doc = json.loads(text)
    assert doc["exit_code"] == 5 and doc["runs"][0]["verdict"] == "far-below"
    assert doc["runs"][0]["expected_busbw_gbps"] == 24.0 and doc["runs"][0]["peak_busbw_gbps"] == 4.0


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
