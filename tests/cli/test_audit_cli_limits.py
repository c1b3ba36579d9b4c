"""`gputopo audit` on hostile input: bounded reads, one-line errors, documented exit codes.

Before this change (commit 7e72b74) a 50 MB line was read whole (3.7 GB resident), `/dev/zero`
ended in a MemoryError traceback, a 1,000-GPU matrix in a RecursionError traceback (exit 1),
and exit code 1 was not documented. Each test below failed then.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import pytest

from gputopo import audit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "topologies" / "8gpu-nv12-bridge-pairs-2socket.txt"


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "gputopo", "audit", *args], input=stdin, capture_output=True,
                          cwd=ROOT, timeout=120)


def one_line_error(res: subprocess.CompletedProcess[bytes]) -> str:
    err = res.stderr.decode()
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def matrix(n: int) -> str:
    """An `nvidia-smi topo -m` for n GPUs, every pair SYS."""
    head = "\t" + "\t".join(f"GPU{i}" for i in range(n)) + "\tCPU Affinity\tNUMA Affinity"
    rows = [f"GPU{i}\t" + "\t".join("X" if i == j else "SYS" for j in range(n)) + "\t0-7\t0" for i in range(n)]
    return "\n".join([head, *rows, "", "Legend:", "", "  X    = Self", "  SYS  = Connection traversing PCIe"]) + "\n"


def test_a_50_megabyte_line_is_refused_by_size_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "line.txt"
    with big.open("wb") as f:
        f.truncate(50_000_000)  # a 50 MB single line of NULs; its size alone refuses it
    res = run(str(big))
    assert res.returncode == audit.EXIT_PARSE
    assert "50000000 bytes, more than the 1048576" in one_line_error(res)


def test_a_50_megabyte_line_on_stdin_stays_bounded(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    data = b"GPU0 " + b"x" * 50_000_000  # allocated before measuring
    r, w = os.pipe()

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), os.fdopen(w, "wb") as out:
            out.write(data)  # the audit stops reading after 1 MiB + 1 byte: the rest is a broken pipe

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(r, "rb") as stdin_bytes:
        monkeypatch.setattr(sys, "stdin", _Stdin(stdin_bytes))
        tracemalloc.start()
        try:
            code = audit.main(["-", "--json"])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    writer.join(timeout=30)
    assert code == audit.EXIT_PARSE
    assert "stdin: more than the 1048576 bytes" in capsys.readouterr().err
    assert peak < 4 * audit.MAX_INPUT_BYTES, f"peak {peak} bytes"


class _Stdin:
    """What the audit needs of sys.stdin: its binary buffer."""

    def __init__(self, buffer: object) -> None:
        self.buffer = buffer


def test_dev_zero_is_refused_in_one_line() -> None:
    res = run("/dev/zero")
    assert res.returncode == audit.EXIT_PARSE
    assert one_line_error(res) == ("gputopo audit: /dev/zero: input refused: not a regular file: "
                                   "more than the 1048576 bytes an audit reads")


def test_a_fifo_beyond_the_limit_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "topo.fifo"
    os.mkfifo(fifo)

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), fifo.open("wb") as f:
            f.write(b"x" * (3 * audit.MAX_INPUT_BYTES))

    writer = threading.Thread(target=feed)
    writer.start()
    res = run(str(fifo))
    writer.join(timeout=30)
    assert res.returncode == audit.EXIT_PARSE
    assert "not a regular file: more than the 1048576 bytes" in one_line_error(res)


def test_a_small_fifo_is_read() -> None:
    """Non-regular inputs are bounded, not banned: a FIFO (`<(nvidia-smi topo -m)`) under the limit works."""
    r, w = os.pipe()
    with os.fdopen(w, "wb") as f:
        f.write(EXAMPLE.read_bytes())
    try:
        res = subprocess.run([sys.executable, "-m", "gputopo", "audit", f"/dev/fd/{r}", "--json"],
                             capture_output=True, cwd=ROOT, timeout=120, pass_fds=(r,))
    finally:
        os.close(r)
    assert res.returncode == 0, res.stderr


def test_a_1000_gpu_matrix_exits_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "1000.txt"
    path.write_text(matrix(1000))
    res = run(str(path), "--json")
    assert res.returncode == audit.EXIT_PARSE, res.stderr
    assert "input refused" in one_line_error(res)
    res = run("-", stdin=matrix(1000).encode())
    assert res.returncode == audit.EXIT_PARSE and "input refused" in one_line_error(res)


def test_an_unexpected_error_is_one_line_and_exit_1() -> None:
    """Any exception inside the audit (here a RecursionError, forced by a tiny recursion limit) is one line."""
    code = ("import sys; from gputopo import audit; import labeler.topology.report, labeler.topology.smi_parser; "
            f"sys.setrecursionlimit(20); sys.exit(audit.main([{str(EXAMPLE)!r}, '--json']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, timeout=120)
    assert res.returncode == audit.EXIT_INTERNAL
    line = one_line_error(res)
    assert line.startswith("gputopo audit: internal error: RecursionError: ") and line.endswith(
        "(please report it with the input)")


def test_a_closed_stdout_is_not_an_error() -> None:
    for extra in ([], ["--json"]):
        proc = subprocess.Popen([sys.executable, "-m", "gputopo", "audit", str(EXAMPLE), *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.read(10)
        proc.stdout.close()  # `| head -c 10`
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0 and err == "", (extra, err)


def test_an_unwritable_svg_path_exits_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    res = run(str(EXAMPLE), "--svg", str(tmp_path / "file" / "topo.svg"))
    assert res.returncode == audit.EXIT_PARSE
    assert one_line_error(res).startswith(f"gputopo audit: cannot write {tmp_path / 'file' / 'topo.svg'}")


def test_every_exit_code_is_documented_in_help_readme_and_docs() -> None:
    codes = {audit.EXIT_OK, audit.EXIT_INTERNAL, audit.EXIT_PARSE, audit.EXIT_PROBE, audit.EXIT_INTERRUPTED}
    res = run("--help")
    assert res.returncode == 0
    helptext = res.stdout.decode()
    documented = {int(m) for m in re.findall(r"^  (\d+) ", helptext.split("exit status:")[1], re.M)}
    assert documented == codes
    assert str(audit.MAX_INPUT_BYTES) in helptext
    for doc in (ROOT / "docs" / "audit.md", ROOT / "README.md"):
        text = doc.read_text(encoding="utf-8")
        section = text[text.index("xit status"):]
        for code in codes:
            assert re.search(rf"(\| |\b){code}( \||\b)", section[:1500]), f"{doc.name}: exit code {code} undocumented"
        assert "1 MiB" in text
