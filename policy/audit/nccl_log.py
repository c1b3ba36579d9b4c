"""Read nccl-tests output (``all_reduce_perf`` & co) and NCCL's ``NCCL_DEBUG=INFO`` lines.

A log is hostile input: pasted from a terminal, a markdown page or an issue thread; cut
mid-line; prefixed by ``mpirun --tag-output`` (``[1,0]<stdout>:``), by rank tags
(``[0]``), by quote markers (``>``) or by indentation; with ``#`` comment marks stripped
by a markdown renderer; several tests in one file. :func:`parse` reads what it can
recognise and returns it, or raises :class:`~labeler.topology.errors.NcclLogError` (a
``CodecError``) — never anything else. Limits: :data:`MAX_LOG_CHARS` in all,
:data:`MAX_LINE_CHARS` per line (longer lines are skipped and counted), and caps on ranks,
rows and hops; numbers are read with bounded digit counts so nothing can overflow.

What is read (formats from nccl-tests ``src/common.cu`` output as seen in published logs,
see ``tests/fixtures/nccl-logs/README.md``):

- ``# nThread 1 nGpus 8 minBytes …`` starts a test section; ``# Collective test starting:
  all_reduce_perf`` (nccl-tests ≥ 2.18) or a command line naming ``*_perf`` names it;
- ``#  Rank  0 Group  0 Pid  31706 on HOST device  0 [0000:b4:00] NAME`` (older: no
  ``Group``; bus as ``[0x16]``);
- result rows ``size count type [redop] [root] time algbw busbw #wrong time algbw busbw
  #wrong`` (the ``#wrong`` column was ``error`` with values like ``2e-07`` or ``N/A`` in
  older versions); ``# Avg bus bandwidth : X``; ``# Out of bounds values : N OK|FAILED``;
- NCCL lines ``HOST:PID:TID [DEV] NCCL INFO …``: ring hops ``Channel 00/0 : 0[0] -> 1[1]
  via P2P/IPC/read`` (older ``Ring 00 : 3[3] -> 2[2] via P2P/IPC``, ``via direct shared
  memory``; network hops ``7[7] -> 8[0] [send] via NET/IB/0/GDRDMA``), ring orders
  ``Channel 00/02 : 0 1 2 3``, ``comm … rank R nranks N cudaDev D nvmlDev M busId B``,
  ``NCCL_X set by environment to Y``, ``Using network IB``, ``NET/IB : Using [0]mlx5_0:1/IB``,
  ``Connected all rings, use ring PXN 0 GDR 1`` and ``NCCL version 2.16.5+cuda11.8``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field

from labeler.topology import limits
from labeler.topology.errors import NcclLogError

__all__ = [
    "MAX_LINE_CHARS",
    "MAX_LOG_CHARS",
    "CommInit",
    "Hop",
    "Measure",
    "NcclLog",
    "RankLine",
    "Row",
    "Section",
    "Transport",
    "parse",
]

#: the limits live in labeler.topology.limits (docs/reliability.md lists them)
MAX_LOG_CHARS = limits.MAX_NCCL_LOG_CHARS
MAX_LINE_CHARS = limits.MAX_NCCL_LINE_CHARS
MAX_RANKS = limits.MAX_NCCL_RANKS
MAX_ROWS = limits.MAX_NCCL_ROWS
MAX_HOPS = limits.MAX_NCCL_HOPS
MAX_SECTIONS = limits.MAX_NCCL_SECTIONS

_INT = r"\d{1,19}"
_NUM = r"\d{1,15}(?:\.\d{1,9})?"
_WRONG = r"(?:\d{1,19}|N/A|[0-9.]{1,12}e[+-]\d{1,3}|-?nan|-?inf)"
_ROW = re.compile(
    rf"(?<![\w.\-])({_INT})\s+({_INT})\s+([A-Za-z][\w]{{0,31}})\s+(?:([A-Za-z][\w]{{0,31}})\s+)?(?:(-?\d{{1,9}})\s+)?"
    rf"({_NUM})\s+({_NUM})\s+({_NUM})\s+({_WRONG})\s+({_NUM})\s+({_NUM})\s+({_NUM})\s+({_WRONG})\s*$"
)
_RANK = re.compile(
    r"Rank\s+(\d{1,9})\s+(?:Group\s+(\d{1,9})\s+)?Pid\s+(\d{1,12})\s+on\s+(\S{1,255})\s+device\s+(\d{1,6})\s+"
    r"\[([^\]]{0,40})\]\s*(.{0,160}?)\s*$"
)
_HEADER = re.compile(r"nThread\s+(\d{1,9})\s+nGpus\s+(\d{1,9})")
_COLLECTIVE = re.compile(r"Collective test starting:\s*(\w{1,64})")
_PERF = re.compile(r"\b([a-z_]{1,40}_perf)(?:_mpi)?\b")
_AVG = re.compile(r"Avg bus bandwidth\s*:\s*(\d{1,15}(?:\.\d{1,9})?(?:e[+-]?\d{1,3})?)")
_OOB = re.compile(r"Out of bounds values\s*:\s*(\d{1,19})\s+(OK|FAILED)")
_NCCL_MARK = re.compile(r"NCCL (INFO|WARN) ?")
_NCCL_HEAD = re.compile(
    r"([\w.\-]{1,255}):(\d{1,12}):(\d{1,12})\s+\[(\d{1,6})\]\s+(?:[\w./\-]{1,128}:\d{1,6}\s+)?$"
)
_HOP = re.compile(
    r"^(?:Ring|Channel)\s+(\d{1,6})(?:/\d{1,6})?\s*:\s*(\d{1,9})(?:\[([0-9a-fA-F]{1,16})\])?\s*->\s*"
    r"(\d{1,9})(?:\[([0-9a-fA-F]{1,16})\])?\s*(?:\[(send|receive)\]\s*)?via\s+(\S.{0,200}?)\s*$"
)
_RING_ORDER = re.compile(r"^(?:Ring|Channel)\s+(\d{1,6})(?:/\d{1,6})?\s*:\s*([\d\s]{1,16000})$")
_COMM = re.compile(
    r"\brank\s+(\d{1,9})\s+nranks\s+(\d{1,9})\s+cudaDev\s+(\d{1,6})(?:\s+nvmlDev\s+(\d{1,6}))?"
    r"(?:\s+busId\s+([0-9a-fA-F]{1,16}))?",
    re.IGNORECASE,
)
_ENV = re.compile(r"\b(NCCL_[A-Z0-9_]{1,64}) set by environment to (\S{0,128})")
_NETWORK = re.compile(r"Using network (\S{1,64})")
_NET_NICS = re.compile(r"NET/(\w{1,32})\s*:\s*Using\s+(.{1,4000})$")
_NIC_ENTRY = re.compile(r"\[(\d{1,4})\]([\w.\-]{1,64})(?::\d{1,4})?")
_GDR = re.compile(r"use ring PXN (\d) GDR (\d)")
_VERSION = re.compile(r"NCCL version (\d{1,3}\.\d{1,3}\.\d{1,3}\S{0,40})")
_PREFIX_TAG = re.compile(r"^\s*(?:>\s?)*\s*(?:\[\d{1,9}(?:,\d{1,9})*\](?:<std(?:out|err)>)?:?\s?)?")
_RANK_TAG = re.compile(r"\[\d{1,9}\]")
_FRAGMENT = re.compile(r"[0-9.]{1,20}(?:\[\d{1,9}\])?\s+[0-9.]{1,20}")  # a cut or damaged result row


class Transport(enum.StrEnum):
    P2P = "P2P"  # GPU peer-to-peer (NVLink or PCIe): direct pointer, IPC, CUMEM
    SHM = "SHM"  # through host shared memory: no peer-to-peer between these GPUs
    NET = "NET"  # the network (IB, RoCE, sockets, plugins)
    COLLNET = "CollNet"
    NVLS = "NVLS"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Measure:
    time_us: float
    algbw: float
    busbw: float
    wrong: str


@dataclass(frozen=True, slots=True)
class Row:
    size: int
    count: int
    dtype: str
    redop: str | None
    root: int | None
    out_of_place: Measure
    in_place: Measure
    line: int

    @property
    def busbw(self) -> float:
        return max(self.out_of_place.busbw, self.in_place.busbw)


@dataclass(frozen=True, slots=True)
class RankLine:
    rank: int
    group: int | None
    pid: int
    host: str
    device: int
    bus: str | None  # as printed: "0000:b4:00" or "0x16"
    name: str
    line: int


@dataclass(frozen=True, slots=True)
class Hop:
    channel: int
    src: int
    dst: int
    src_bus: str | None
    dst_bus: str | None
    direction: str | None  # "send" / "receive" for network hops
    transport: Transport
    detail: str  # after "via": "P2P/IPC/read", "SHM/direct/direct", "NET/IB/0/GDRDMA"
    host: str
    device: int  # the CUDA device of the logging thread
    line: int

    @property
    def gdr(self) -> bool:
        return "GDRDMA" in self.detail


@dataclass(frozen=True, slots=True)
class CommInit:
    rank: int
    nranks: int
    cuda_dev: int
    nvml_dev: int | None
    bus_id: str | None
    host: str


@dataclass
class Section:
    """One test invocation: from its ``# nThread`` header to the next."""

    test: str | None = None
    n_threads: int | None = None
    n_gpus: int | None = None
    header_line: int | None = None
    ranks: list[RankLine] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    avg_busbw: float | None = None
    out_of_bounds: int | None = None
    validation_ok: bool | None = None

    @property
    def peak(self) -> Row | None:
        return max(self.rows, key=lambda r: r.busbw) if self.rows else None

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(r.host for r in self.ranks))


@dataclass
class NcclLog:
    source: str
    sections: list[Section]
    hops: list[Hop] = field(default_factory=list)
    rings: list[tuple[int, tuple[int, ...]]] = field(default_factory=list)
    comms: list[CommInit] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    networks: list[str] = field(default_factory=list)
    nics: dict[str, dict[int, str]] = field(default_factory=dict)  # NET plugin → index → device
    gdr: bool | None = None
    nccl_version: str | None = None
    warnings: list[str] = field(default_factory=list)  # NCCL WARN messages (first few)
    damaged_rows: int = 0  # lines that started like a result row but did not parse (cut, junk)
    long_lines: int = 0
    notes: list[str] = field(default_factory=list)


def _clean(line: str) -> str:
    """Drop quote markers and an mpirun tag at the start."""
    return _PREFIX_TAG.sub("", line, count=1)


def _transport(via: str) -> Transport:
    head = via.split("/", 1)[0].strip().upper()
    if head == "P2P":
        return Transport.P2P
    if head == "SHM" or via.startswith("direct shared memory"):
        return Transport.SHM
    if head == "NET":
        return Transport.NET
    if head == "COLLNET":
        return Transport.COLLNET
    if head == "NVLS":
        return Transport.NVLS
    return Transport.OTHER


def _measure(t: str, a: str, b: str, w: str) -> Measure:
    return Measure(float(t), float(a), float(b), w)


def parse(text: str, *, source: str = "") -> NcclLog:
    """Read a log. Raises :class:`NcclLogError` when over the limits or when nothing in it is nccl-tests/NCCL."""
    if len(text) > MAX_LOG_CHARS:
        raise NcclLogError(f"{source or 'log'}: {len(text)} characters, more than the {MAX_LOG_CHARS} accepted")
    if "\x00" in text:
        raise NcclLogError(f"{source or 'log'}: binary data (NUL bytes), not a text log")
    log = NcclLog(source, [])
    current: Section | None = None
    pending_test: str | None = None
    n_ranks = n_rows = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if len(raw) > MAX_LINE_CHARS:
            log.long_lines += 1
            continue
        line = _clean(raw)
        if "NCCL" in line:
            mark = _NCCL_MARK.search(line)
            head = _NCCL_HEAD.search(line[max(0, mark.start() - 300) : mark.start()]) if mark else None
            if mark and head:
                _nccl(log, head.group(1), int(head.group(4)), mark.group(1), line[mark.end() :].strip(), lineno)
                continue
            v = _VERSION.search(line)
            if v and log.nccl_version is None:
                log.nccl_version = v.group(1)
                continue
        h = _HEADER.search(line)
        if h:
            if len(log.sections) >= MAX_SECTIONS:
                log.notes.append(f"more than {MAX_SECTIONS} test sections: the rest is ignored")
                break
            current = Section(test=pending_test, n_threads=int(h.group(1)), n_gpus=int(h.group(2)),
                              header_line=lineno)
            pending_test = None
            log.sections.append(current)
            continue
        c = _COLLECTIVE.search(line)
        if c:
            if current is not None and current.rows == [] and current.test is None:
                current.test = c.group(1)
            else:
                pending_test = c.group(1)
            continue
        r = _RANK.search(line)
        if r:
            if current is None:
                current = Section(test=pending_test)
                log.sections.append(current)
            if n_ranks < MAX_RANKS:
                n_ranks += 1
                bus = r.group(6).strip() or None
                current.ranks.append(RankLine(int(r.group(1)), None if r.group(2) is None else int(r.group(2)),
                                              int(r.group(3)), r.group(4), int(r.group(5)), bus, r.group(7), lineno))
            continue
        a = _AVG.search(line)
        if a:
            if current is not None:
                current.avg_busbw = float(a.group(1))
            continue
        o = _OOB.search(line)
        if o:
            if current is not None:
                current.out_of_bounds = int(o.group(1))
                current.validation_ok = o.group(2) == "OK"
            continue
        stripped = line.lstrip()
        if stripped[:1].isdigit():
            row = _ROW.search(_RANK_TAG.sub(" ", line))
            if row is None:
                if _FRAGMENT.match(stripped):
                    log.damaged_rows += 1
                continue
            if current is None:
                current = Section(test=pending_test)
                log.sections.append(current)
            if n_rows >= MAX_ROWS:
                continue
            g = row.groups()
            oop, inp = _measure(g[5], g[6], g[7], g[8]), _measure(g[9], g[10], g[11], g[12])
            n_rows += 1
            current.rows.append(Row(int(g[0]), int(g[1]), g[2], g[3], None if g[4] is None else int(g[4]), oop, inp,
                                    lineno))
            continue
        if stripped.startswith("#"):
            continue
        p = _PERF.search(line)
        if p:
            pending_test = p.group(1)
    if not (log.sections or log.hops or log.rings or log.comms or log.env or log.networks or log.warnings):
        raise NcclLogError(f"{source or 'log'}: no nccl-tests output and no NCCL INFO lines found")
    for s in log.sections:
        if s.test is None and pending_test is not None and len(log.sections) == 1:
            s.test = pending_test  # "# Collective test starting" printed after the table by some versions
    return log


def _nccl(log: NcclLog, host: str, dev: int, level: str, msg: str, lineno: int) -> None:
    if level == "WARN":
        if len(log.warnings) < 20:
            log.warnings.append(msg[:200])
        return
    hop = _HOP.match(msg)
    if hop:
        if len(log.hops) < MAX_HOPS:
            via = hop.group(7)
            log.hops.append(Hop(int(hop.group(1)), int(hop.group(2)), int(hop.group(4)), hop.group(3), hop.group(5),
                                hop.group(6), _transport(via), via, host, dev, lineno))
        return
    order = _RING_ORDER.match(msg)
    if order:
        members = order.group(2).split()
        if len(members) >= 2 and len(log.rings) < MAX_HOPS and all(len(x) <= 9 for x in members):
            log.rings.append((int(order.group(1)), tuple(int(x) for x in members)))
        return
    comm = _COMM.search(msg)
    if comm:
        if len(log.comms) < MAX_RANKS:
            log.comms.append(CommInit(int(comm.group(1)), int(comm.group(2)), int(comm.group(3)),
                                      None if comm.group(4) is None else int(comm.group(4)), comm.group(5), host))
        return
    env = _ENV.search(msg)
    if env:
        if len(log.env) < 256:
            log.env[env.group(1)] = env.group(2)
        return
    net = _NETWORK.search(msg)
    if net:
        if net.group(1) not in log.networks and len(log.networks) < 16:
            log.networks.append(net.group(1))
        return
    nics = _NET_NICS.search(msg)
    if nics:
        table = log.nics.setdefault(nics.group(1), {})
        for e in _NIC_ENTRY.finditer(nics.group(2)):
            if len(table) < 256:
                table[int(e.group(1))] = e.group(2)
        return
    gdr = _GDR.search(msg)
    if gdr:
        log.gdr = gdr.group(2) == "1"
        return
    v = _VERSION.search(msg)
    if v and log.nccl_version is None:
        log.nccl_version = v.group(1)
