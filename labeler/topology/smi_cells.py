"""Cell-level reading for :mod:`labeler.topology.smi_parser`.

Why a separate module: the structure of `nvidia-smi topo -m` (header, rows,
legend) and the vocabulary of its cells (link tokens, cpulists, header words)
fail in different ways. Keeping the closed vocabularies here, each with one
strict reader, lets the structural reader ask simple questions ("is this a
link cell?", "how does this fused blob split?") and decide *what to do* with
a damaged cell itself.

Everything here is total: a function either returns a value or ``None`` /
raises :class:`ValueError` for text outside its vocabulary. Nothing guesses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from labeler.topology import bounded, limits
from labeler.topology.links import Link, parse_link_token

__all__ = [
    "AFFINITY_KINDS",
    "CANONICAL_AFFINITY",
    "HeaderItem",
    "clean_line",
    "is_affinity_cell",
    "parse_gpu_numa_id",
    "parse_idlist",
    "scan_header",
    "split_link_affinity",
    "split_links",
]

#: Affinity columns in the order every driver prints them. Older drivers print
#: a prefix of this list (``CPU Affinity`` only, then ``+ NUMA Affinity``), never
#: a reordering, which is what makes a header that lacks a column recoverable.
CANONICAL_AFFINITY: tuple[str, ...] = ("cpu", "numa", "gpu_numa")
AFFINITY_KINDS = {"cpu": "CPU Affinity", "numa": "NUMA Affinity", "gpu_numa": "GPU NUMA ID"}

# CSI sequences (colours, cursor moves), OSC strings (titles, hyperlinks) and
# two-character escapes. A bare ESC left over is dropped too.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# What is left of an SGR sequence (bold, underline, colours: ``ESC[4m``) when the ESC byte was
# lost on the way (issue trackers, chat, some terminals' copy), or shown in caret or escape
# notation (``^[[4m`` from `cat -v`, ``\e[0m``). `nvidia-smi topo -m` writes ``ESC[4m … ESC[0m``
# around its header even into a file, and its text never holds a ``[``, so these are safe to drop.
_SGR_REMNANT = re.compile(r"(?:\^\[|\\e|\\033|\\x1b)?\[[0-9;]{0,16}m")
_COMMENT = re.compile(r"^(?:[ \t]*#+)+")

#: Upper bounds for ids. Linux caps CPUs at 8192 (NR_CPUS) and NUMA nodes at
#: 1024; anything larger is damage (e.g. two cells fused into ``64-950``... is
#: still plausible, but ``48-710000`` is not), and refusing huge ranges also keeps
#: a damaged cell from allocating a giant set.
MAX_CPU_ID = limits.MAX_CPU_ID
MAX_NUMA_ID = limits.MAX_NUMA_ID
#: header words read at most (endpoints + affinity columns): more is refused by the reader
MAX_HEADER_ITEMS = limits.MAX_GPUS + limits.MAX_NICS + len(CANONICAL_AFFINITY)

_FIXED = ("X", "PIX", "PXB", "PHB", "NODE", "SYS", "SOC")
_IDLIST = re.compile(r"\d{1,6}(?:-\d{1,6})?(?:,\d{1,6}(?:-\d{1,6})?)*")
_AFF_CHARS = re.compile(r"N/A|[0-9][0-9,\-]*|-[0-9,\-]*[0-9][0-9,\-]*")


_CUT_TAIL = re.compile(r"(?:N|NV\d*|P|PI|PX|PH|S|SY|SO|NO|NOD|N/|[0-9,\-]*\.{0,3})")


def could_be_cut(text: str) -> bool:
    """Is ``text`` what a cut leaves of a cell: whole link tokens, then a prefix of one more?

    Used only at the very end of a text that stops inside the matrix, so that a
    short tail (``PX``, ``NV1``, ``NODEPX``, ``56-111,1...``) reads as truncation
    while a complete foreign word (``BOGUS``) stays an error naming its line.

    >>> [could_be_cut(t) for t in ("PX", "NODEPX", "56-111,1...", "BOGUS", "SYSQ")]
    [True, True, True, False, False]
    """
    rest = text
    while True:
        m = re.match(r"NV\d+|PIX|PXB|PHB|NODE|SYS|SOC|X", rest)
        if not m or m.end() == len(rest):
            break
        rest = rest[m.end():]
    return _CUT_TAIL.fullmatch(rest) is not None or (m is not None and m.end() == len(rest))


def clean_line(line: str) -> str:
    """Remove what copy and paste adds around a line: CR, ANSI escapes, ``#`` prefixes.

    The result keeps every other character (tabs included) so columns can still
    be split on whitespace; line numbers are never changed by cleaning.

    >>> clean_line("#GPU0\\x1b[1m X \\x1b[0m\\r"), clean_line("\\t[4mGPU0\\tCPU Affinity[0m")
    ('GPU0 X ', '\\tGPU0\\tCPU Affinity')
    """
    line = line.rstrip("\r")
    line = _ANSI.sub("", line).replace("\x1b", "")
    line = _SGR_REMNANT.sub("", line)
    return _COMMENT.sub("", line)


@lru_cache(maxsize=4096)
def _splits(blob: str) -> tuple[tuple[str, ...], ...]:
    """All ways (at most two are kept) to write ``blob`` as link tokens."""
    if not blob:
        return ((),)
    found: list[tuple[str, ...]] = []
    heads = [w for w in _FIXED if blob.startswith(w)]
    if blob.startswith("NV"):
        digits = len(blob) - len(blob[2:].lstrip("0123456789")) - 2
        heads.extend(blob[: 2 + k] for k in range(1, min(digits, 3) + 1))
    for head in heads:
        if parse_link_token(head) is None:
            continue
        for rest in _splits(blob[len(head) :]):
            found.append((head, *rest))
            if len(found) > 1:
                return tuple(found)
    return tuple(found)


def split_links(blob: str) -> list[Link] | None:
    """Read a cell that holds one link token or several fused ones.

    Tab expansion glues neighbouring cells (``NODENODE``, ``SYSSYS``,
    ``NODEPIX``). The tokens form a closed set in which no token is a prefix of
    another except through the NVLink digits, so a split is normally unique;
    when it is not, this raises :class:`ValueError` rather than pick one.
    Returns ``None`` when the text is not made of link tokens at all.

    >>> [str(x) for x in split_links("NODEPIX") or []]
    ['NODE', 'PIX']
    >>> [str(x) for x in split_links("NV18NV18") or []]
    ['NV18', 'NV18']
    >>> split_links("PX") is None
    True
    """
    if len(blob) > 256:  # a whole fused row of 40+ cells; longer is not a matrix cell
        return None
    ways = _splits(blob)
    if not ways:
        return None
    if len(ways) > 1:
        raise ValueError(f"fused cell {blob!r} splits more than one way")
    out: list[Link] = []
    for tok in ways[0]:
        link = parse_link_token(tok)
        if link is None:  # pragma: no cover - _splits only yields valid tokens
            return None
        out.append(link)
    return out


def is_affinity_cell(text: str) -> bool:
    """Does this cell belong to the affinity vocabulary (``N/A`` or digits, commas, dashes)?

    Damaged values such as ``-31,64-95`` still count: they are affinity cells
    whose *value* cannot be read, which is a different problem from a foreign
    token in the matrix.
    """
    return _AFF_CHARS.fullmatch(text) is not None


def parse_idlist(text: str, *, limit: int) -> frozenset[int] | None:
    """Read an affinity cell: ``N/A`` is ``None``; a Linux cpulist is a set.

    Accepts ranges, single ids, comma lists and ``n-n`` singletons. Raises
    :class:`ValueError` on anything else (a cut-off ``-31,64-95``, a
    descending range, an id above ``limit``).

    >>> sorted(parse_idlist("1-1,3-3,5", limit=100) or [])
    [1, 3, 5]
    >>> parse_idlist("N/A", limit=100) is None
    True
    """
    if text == "N/A":
        return None
    if _IDLIST.fullmatch(text) is None:
        raise ValueError(f"not an id list: {text!r}")
    return bounded.cpulist(text, max_id=limit)  # the one cpulist reader: ids and expansion bounded


def parse_gpu_numa_id(text: str) -> int | None:
    """Read a ``GPU NUMA ID`` cell: ``N/A`` or one small integer."""
    if text == "N/A":
        return None
    if not re.fullmatch(r"\d{1,4}", text) or int(text) > MAX_NUMA_ID:
        raise ValueError(f"not a GPU NUMA id: {text!r}")
    return int(text)


def split_link_affinity(blob: str) -> tuple[list[Link], str] | None:
    """Split a link cell fused with the first affinity cell (``SYS0-23``).

    Returns the links and the affinity text only when exactly one split makes
    both halves valid (``NV120-47`` could be ``NV12|0-47`` or ``NV1|20-47``, so
    it raises :class:`ValueError`); ``None`` when no split works.
    """
    found: list[tuple[list[Link], str]] = []
    if len(blob) > 256:
        return None
    for cut in range(1, len(blob)):
        head, tail = blob[:cut], blob[cut:]
        if not (tail[0].isdigit() or tail == "N/A"):
            continue
        try:
            links = split_links(head)
            parse_idlist(tail, limit=MAX_CPU_ID)
        except ValueError:
            continue
        if links:
            found.append((links, tail))
    if len(found) > 1:
        raise ValueError(f"fused cell {blob!r} splits more than one way")
    return found[0] if found else None


@dataclass(frozen=True, slots=True)
class HeaderItem:
    """One header cell: an endpoint column (``GPU3``, ``NIC0``, ``mlx5_1``) or an affinity column."""

    kind: str  # "gpu", "nic", "affinity"
    name: str  # column name, or an AFFINITY_KINDS key for affinity columns
    start: int
    end: int


_HEADER_WORD = re.compile(
    r"\s*(?:"  # \s: web copies turn gaps into no-break spaces
    r"(?P<aff>CPU\s*Affinity|NUMA\s*Affinity|GPU\s*NUMA\s*ID)"
    r"|(?P<ep>(?:GPU|NIC)\d{1,5})(?!\d)"
    r"|(?P<dev>[A-Za-z][A-Za-z0-9_]*[0-9])(?=\s|$)"  # device-named NIC columns: mlx5_0, hfi1_0, HFI0
    r")"
)


def scan_header(line: str, start: int = 0) -> tuple[list[HeaderItem], int]:
    """Read header words from ``start`` until something that is not one.

    Fused header cells (``NIC7NIC8``) come apart because endpoint names are
    matched without needing a separator. Scanning also stops at a *repeated*
    endpoint name: in an output collapsed onto one line, the first row label
    (``GPU0`` again) is where the header ends. Returns the items and the offset
    where scanning stopped.
    """
    items: list[HeaderItem] = []
    seen: set[str] = set()
    pos = start
    while pos < len(line) and len(items) <= MAX_HEADER_ITEMS:  # one more than allowed: the reader refuses it
        m = _HEADER_WORD.match(line, pos)
        if m is None or m.end() == pos:
            break
        if m.group("aff"):
            aff = m.group("aff")
            kind = "cpu" if aff.startswith("CPU") else "numa" if aff.startswith("NUMA") else "gpu_numa"
            items.append(HeaderItem("affinity", kind, m.start("aff"), m.end()))
        else:
            name = m.group("ep") or m.group("dev")
            if name in seen:
                break
            seen.add(name)
            kind = "gpu" if name.startswith("GPU") else "nic"
            items.append(HeaderItem(kind, name, m.start("ep") if m.group("ep") else m.start("dev"), m.end()))
        pos = m.end()
    return items, pos
