"""One size-limited reader (``gputopo.bounded_input``) behind every file `gputopo audit` reads.

Before it, ``audit FILE`` had its own reader (regular files refused by their size) and ``audit pod
--topology`` / ``audit nccl LOG`` shared ``topology_input.read_limited``, which read ``limit + 1``
bytes of any file before refusing it: a 70 MB log cost 64 MiB of memory to refuse, a sparse
50 MB ``--topology`` file 4 MiB, and 2 MiB of `nvidia-smi topo -m` text was accepted by
``--topology`` though ``audit FILE`` refuses it. The tests marked "before:" failed then.

Each entry point is driven through its ``main``; memory is measured with tracemalloc.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gputopo import audit, audit_nccl, audit_pod
from gputopo.bounded_input import SMI_TEXT_BYTES, TOPOLOGY_JSON_BYTES, InputTooLarge, read_bytes
from labeler.topology import labels, smi_parser
from policy.audit import nccl_log

ROOT = Path(__file__).resolve().parents[2]
T027 = ROOT / "tests" / "fixtures" / "topo-corpus" / "027_8gpu-nv12-bridge-pairs-node-sys-2nics.txt"
LOG = ROOT / "tests" / "fixtures" / "nccl-logs" / "autodl-rtx2080ti-x2-pix-p2p-ns.log"


def _audit(path: str) -> int:
    return audit.main([path, "--json"])


def _pod(path: str) -> int:
    return audit_pod.run(["--topology", path, "--json"], env={"NVIDIA_VISIBLE_DEVICES": "0,1"}, cpus=None,
                         out=io.StringIO())


def _nccl_log(path: str) -> int:
    return audit_nccl.main([path, "--json"], out=io.StringIO())


def _nccl_topology(path: str) -> int:
    return audit_nccl.main([str(LOG), "--topology", path, "--json"], out=io.StringIO())


#: entry point, the limit it applies to a regular file, how it prints its error
ENTRY_POINTS: list[tuple[str, Callable[[str], int], int, str]] = [
    ("audit FILE", _audit, SMI_TEXT_BYTES, "gputopo audit"),
    ("audit pod --topology", _pod, TOPOLOGY_JSON_BYTES, "gputopo audit pod"),
    ("audit nccl --topology", _nccl_topology, TOPOLOGY_JSON_BYTES, "gputopo audit nccl"),
    ("audit nccl LOG", _nccl_log, nccl_log.MAX_LOG_CHARS, "gputopo audit nccl"),
]


@contextlib.contextmanager
def peak_memory() -> Iterator[list[int]]:
    out: list[int] = []
    tracemalloc.start()
    try:
        yield out
    finally:
        out.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


@pytest.mark.parametrize(("name", "run", "limit", "prog"), ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
def test_a_regular_file_over_the_limit_is_refused_by_its_size(
        name: str, run: Callable[[str], int], limit: int, prog: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """before: the --topology and LOG readers read limit + 1 bytes first (4 MiB, 64 MiB)."""
    big = tmp_path / "big"
    with big.open("wb") as f:
        f.truncate(limit + 4096)  # sparse: no disk used, and nothing of it may be read
    assert run(str(big)) == 2  # once first: lazy imports are not what is measured
    capsys.readouterr()
    with peak_memory() as peak:
        code = run(str(big))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"{prog}: {big}: input refused: {limit + 4096} bytes, more than the {limit} an audit reads"
    assert peak[0] < 1 << 20, f"{name}: {peak[0]} bytes traced while refusing by size"


class _Stdin:
    def __init__(self, buffer: object) -> None:
        self.buffer = buffer


def _feed_pipe(data: bytes) -> tuple[int, threading.Thread]:
    r, w = os.pipe()

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), os.fdopen(w, "wb") as out:
            out.write(data)

    writer = threading.Thread(target=feed)
    writer.start()
    return r, writer


@pytest.mark.parametrize(("name", "run", "limit", "prog"), ENTRY_POINTS, ids=[e[0] for e in ENTRY_POINTS])
def test_stdin_is_read_one_byte_past_the_limit(name: str, run: Callable[[str], int], limit: int, prog: str,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    small = 1000  # the same reader at a small limit: what matters is that it stops at limit + 1
    monkeypatch.setattr(audit, "MAX_INPUT_BYTES", small)
    monkeypatch.setattr("gputopo.topology_input.MAX_TOPOLOGY_BYTES", small)
    if name == "audit nccl LOG":  # (with --topology, the log is a file over this limit)
        monkeypatch.setattr(nccl_log, "MAX_LOG_CHARS", small)
    r, writer = _feed_pipe(b"{" + b" " * 50_000)  # JSON-looking, so --topology applies its JSON limit
    with os.fdopen(r, "rb") as stdin_bytes:
        monkeypatch.setattr(sys, "stdin", _Stdin(stdin_bytes))
        code = run("-")
        assert stdin_bytes.read() != b""  # the reader stopped early: the rest is still in the pipe
    writer.join(timeout=30)
    assert code == 2
    assert capsys.readouterr().err.strip() == f"{prog}: -: input refused: stdin: more than the {small} bytes " \
                                              "an audit reads"


def test_topology_text_gets_the_text_limit_json_the_json_limit(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """before: --topology accepted up to 4 MiB of `nvidia-smi topo -m` text, which `audit FILE` refuses."""
    text = T027.read_text() + "#" * (SMI_TEXT_BYTES + 1)  # a real matrix padded past 1 MiB
    path = tmp_path / "topo.txt"
    path.write_text(text)
    assert _pod(str(path)) == 2
    assert capsys.readouterr().err.strip() == (
        f"gputopo audit pod: {path}: input refused: {len(text)} bytes of `nvidia-smi topo -m` text, more than "
        f"the {SMI_TEXT_BYTES} an audit reads")
    assert _audit(str(path)) == 2 and "input refused" in capsys.readouterr().err
    # JSON of the same size is a legitimate Node object (whitespace after the document): accepted
    annotations = labels.encode_annotations(smi_parser.parse(T027.read_text()))
    node = json.dumps({"kind": "Node", "apiVersion": "v1", "metadata": {"name": "a100-7", "annotations": annotations}})
    path.write_text(node + " " * (SMI_TEXT_BYTES + 1))
    assert _pod(str(path)) == 0, capsys.readouterr().err


def test_a_small_fifo_is_read_by_every_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Non-regular inputs are bounded, not banned: `--topology <(cat topo.txt)` works."""
    fifo = tmp_path / "in.fifo"
    for run, data in ((_audit, T027.read_bytes()), (_pod, T027.read_bytes()), (_nccl_log, LOG.read_bytes())):
        os.mkfifo(fifo)
        writer = threading.Thread(target=fifo.write_bytes, args=(data,))
        writer.start()
        assert run(str(fifo)) == 0, capsys.readouterr().err
        writer.join(timeout=30)
        fifo.unlink()


def test_a_small_input_costs_its_size_not_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """before: ``read(limit + 1)`` allocated the limit up front: 64 MiB to read a 24 KB log."""
    size = LOG.stat().st_size
    with peak_memory() as peak:
        assert read_bytes(str(LOG), nccl_log.MAX_LOG_CHARS) == LOG.read_bytes()
    assert peak[0] < 4 * size + (64 << 10), peak
    r, writer = _feed_pipe(LOG.read_bytes())
    with os.fdopen(r, "rb") as stdin_bytes:
        monkeypatch.setattr(sys, "stdin", _Stdin(stdin_bytes))
        with peak_memory() as peak:
            assert read_bytes("-", nccl_log.MAX_LOG_CHARS) == LOG.read_bytes()
    writer.join(timeout=30)
    assert peak[0] < 4 * size + (256 << 10), peak


def test_a_file_that_grows_after_fstat_is_still_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "growing"
    path.write_bytes(b"x" * 10)
    real_fstat = os.fstat
    monkeypatch.setattr(os, "fstat", lambda fd: os.stat_result((*real_fstat(fd)[:6], 4, *real_fstat(fd)[7:])))
    assert read_bytes(str(path), 10) == b"x" * 10  # said 4 bytes, has 10: all read, within the limit
    with pytest.raises(InputTooLarge, match="file: more than the 9 bytes"):
        read_bytes(str(path), 9)


def test_the_reader_itself(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 10)
    assert read_bytes(str(path), 10) == b"x" * 10
    with pytest.raises(InputTooLarge) as err:
        read_bytes(str(path), 9)
    assert err.value.path == str(path) and str(err.value) == "input refused: 10 bytes, more than the 9 an audit reads"
    with pytest.raises(IsADirectoryError):
        read_bytes(str(tmp_path), 10)
    with pytest.raises(FileNotFoundError):
        read_bytes(str(tmp_path / "missing"), 10)
