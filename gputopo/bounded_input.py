"""The one size-limited reader of a file or stdin, for every ``gputopo audit`` command that reads one.

Why one reader: a file named on the command line is hostile input. An unbounded read of a
50 MB line, of ``/dev/zero`` or of a 10 GB log exhausts memory before any parser sees a
byte, and three commands each with its own reader would each get this subtly different.
Here a regular file is refused by its size (``fstat``) without being read; anything else
(stdin, a FIFO such as ``<(nvidia-smi topo -m)``, a character device) is read up to one
byte past the limit and refused when that byte arrives. Bytes are decoded as UTF-8 with
replacement characters: the parsers report what they cannot read, by line.

What each input may weigh (docs/audit.md, "Input limits"):

- ``nvidia-smi topo -m`` text (``audit FILE``, and the text form of ``--topology``):
  :data:`SMI_TEXT_BYTES`, 1 MiB: the parser's own limit (``labeler.topology.limits.MAX_SMI_CHARS``;
  60x the largest real output in the corpus, 17 KB), so nothing is read that it would refuse;
- topology JSON (``audit pod|nccl --topology``: the annotation, a whole Node, ``audit --json``):
  :data:`TOPOLOGY_JSON_BYTES`, 4 MiB: etcd stores at most 1.5 MiB per object and
  ``kubectl get node -o json`` pretty-prints it;
- an nccl-tests log (``audit nccl LOG``): ``policy.audit.nccl_log.MAX_LOG_CHARS``, 64 MiB, the
  parser's own limit.
"""

from __future__ import annotations

import os
import stat
import sys
from typing import BinaryIO

from labeler.topology import limits
from labeler.topology.errors import TopologyError

__all__ = ["SMI_TEXT_BYTES", "TOPOLOGY_JSON_BYTES", "InputTooLarge", "read_bytes", "read_text"]

#: the most `nvidia-smi topo -m` text read: what the parser accepts (UTF-8 has no more characters than bytes)
SMI_TEXT_BYTES = limits.MAX_SMI_CHARS
#: the most topology JSON read: a whole Node (at most 1.5 MiB in etcd) as `kubectl -o json` prints it
TOPOLOGY_JSON_BYTES = 4 << 20


class InputTooLarge(TopologyError):
    """The input is larger than the command accepts. ``path`` is as given (``-`` for stdin)."""

    def __init__(self, path: str, detail: str) -> None:
        self.path = path
        super().__init__(f"input refused: {detail}")


#: a stream is read in chunks: ``read(limit + 1)`` would allocate ``limit + 1`` bytes up front (64 MiB
#: for a log) whatever the input's size
_CHUNK = 1 << 16


def _bounded(stream: BinaryIO, path: str, limit: int, what: str, head: bytes = b"") -> bytes:
    """``head`` and the rest of ``stream``, refused once more than ``limit`` bytes in all arrive."""
    buf = bytearray(head)
    while len(buf) <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - len(buf)))
        if not chunk:
            return bytes(buf)
        buf += chunk
    raise InputTooLarge(path, f"{what}: more than the {limit} bytes an audit reads")


def read_bytes(path: str, limit: int) -> bytes:
    """The bytes of ``path`` (``-``: stdin), at most ``limit``. Raises :class:`InputTooLarge` or ``OSError``."""
    if path == "-":
        return _bounded(sys.stdin.buffer, path, limit, "stdin")
    with open(path, "rb") as f:  # a FIFO blocks here until a writer opens it, as `cat` would
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            return _bounded(f, path, limit, "not a regular file")
        if st.st_size > limit:
            raise InputTooLarge(path, f"{st.st_size} bytes, more than the {limit} an audit reads")
        data = f.read(st.st_size)  # one allocation of what is there
        extra = f.read(1)
        if not extra:
            return data
        return _bounded(f, path, limit, "file", data + extra)  # it grew since fstat: read on within the limit


def read_text(path: str, limit: int) -> str:
    """:func:`read_bytes` decoded as UTF-8 (undecodable bytes become U+FFFD for the parser to report)."""
    return read_bytes(path, limit).decode("utf-8", errors="replace")
