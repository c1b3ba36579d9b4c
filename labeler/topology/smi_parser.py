"""Reader for `nvidia-smi topo -m` text: a correct :class:`Topology` or an error naming the line.

Why this reader is strict: its output decides where multi-GPU jobs land. A
wrong cell (a PIX read as SYS, an affinity shifted by one column) silently
misplaces work for as long as the node lives, while an error is seen and fixed
the same day. So every rule below either *proves* a value from the text or
leaves it unknown (``None`` plus a warning in ``Topology.warnings``) or raises
:class:`TopologyParseError` with the 1-based line of the original text.

What it accepts, because real pasted outputs look like that (see
``tests/golden/INDEX.md`` for the per-file record):

* noise around the matrix: banners, command lines, ANSI escapes (also what is
  left of them when the ESC byte was lost: ``[4m … [0m``), ``#`` comment
  prefixes, any indentation, tabs or spaces of any width, blank lines;
* NIC columns named by device, in any case (``mlx5_0``, ``hfi1_0``, ``HFI0``);
* cells fused by tab expansion (``NODENODE``, ``NIC8NIC9`` in the header): the
  link tokens are a closed set, so a split is checked to be unique;
* a whole output collapsed onto one line: row labels (``GPU3``, ``NIC0``,
  ``mlx5_1``) never look like cells, so they delimit rows by themselves;
* affinity columns in any driver's subset, and a header that lacks a column its
  rows carry, when the driver's fixed column order makes the mapping unique;
* NIC rows whose NIC columns were cut away: GPU↔NIC links come from the NIC rows
  (the matrix is symmetric), NIC↔NIC links stay unknown;
* a text cut off inside the matrix: what is missing must be provable from the
  other half of the symmetric matrix for every pair that involves a GPU, or the
  reader refuses.

What it refuses: a link cell that is not a link token, a row that is short or
long anywhere but at a cut-off end, two halves of the matrix that disagree, an
``X`` off the diagonal, NVLink to a NIC, rows for GPUs the header does not list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from labeler.topology import limits, smi_cells
from labeler.topology.errors import TopologyParseError
from labeler.topology.links import SELF, Link, LinkLevel
from labeler.topology.model import Gpu, Nic, Topology
from labeler.topology.smi_cells import CANONICAL_AFFINITY, HeaderItem

__all__ = ["parse"]

_TOKEN = re.compile(r"\S+")
_GPU_AT = re.compile(r"(?<!\S)GPU\d")
_LABEL = re.compile(r"(?:GPU|NIC)\d{1,5}")
_DEVICE_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*[0-9]")
_LEGEND_ENTRY = re.compile(r"(?<![\w])(NIC\d{1,5})[ \t]*:[ \t]*(\S+)")
_DEVICE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*[0-9]")
_END_WORDS = frozenset({"Legend:", "Legend"})


@dataclass(slots=True)
class _Cell:
    text: str
    line: int  # 0-based index into the original lines
    sep_after: bool  # a blank follows on the same line: the cell was not cut mid-way


@dataclass(slots=True)
class _Row:
    label: str
    line: int
    cells: list[_Cell] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    affinity: list[_Cell] = field(default_factory=list)
    cut: bool = False  # last row of a text that ends inside the matrix, and short (or its last cell cut)


class _Reader:
    """One parse: the original lines, their cleaned form, and the warnings so far."""

    def __init__(self, text: str, source: str) -> None:
        self.raw = text.split("\n")
        self.lines = [smi_cells.clean_line(line) for line in self.raw]
        self.source = source
        self.warnings: list[str] = []

    # -- helpers ----------------------------------------------------------------------
    def fail(self, message: str, line: int | None) -> TopologyParseError:
        """An error naming the 1-based line and quoting the original text of it."""
        if line is None:
            return TopologyParseError(message)
        return TopologyParseError(message, line=line + 1, text=self.raw[line].rstrip("\r"))

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    # -- header -----------------------------------------------------------------------
    def find_header(self) -> tuple[int, list[HeaderItem], int]:
        """The first line that is a matrix header: endpoint names, then affinity names.

        A header is the *whole* line (so prose that mentions ``GPU0`` is not one),
        unless a repeated endpoint name follows it on the same line: that is an
        output collapsed onto one line, where the rows start right after it.
        """
        for li, line in enumerate(self.lines):
            for m in _GPU_AT.finditer(line):
                items, end = smi_cells.scan_header(line, m.start())
                if not items or items[0].kind != "gpu":
                    continue
                if len(items) > smi_cells.MAX_HEADER_ITEMS:
                    raise self.fail(f"header has more than {smi_cells.MAX_HEADER_ITEMS} columns "
                                    f"(limits: {limits.MAX_GPUS} GPUs, {limits.MAX_NICS} NICs)", li)
                rest = line[end:]
                names = {it.name for it in items}
                nxt = _TOKEN.search(rest)
                collapsed = nxt is not None and _LABEL.fullmatch(nxt.group()) is not None and nxt.group() in names
                if collapsed or (not rest.strip() and not line[: m.start()].strip()):
                    return li, items, end
        raise TopologyParseError("no `nvidia-smi topo -m` header found (a line of columns starting with GPU0)")

    # -- matrix rows --------------------------------------------------------------------
    def read_rows(self, hline: int, hend: int, labels: set[str]) -> tuple[list[_Row], tuple[int, int] | None]:
        """Cut the text after the header into rows; return them and where the matrix stopped.

        Rows start at a row label anywhere on a line (once per line normally,
        many times in a collapsed output). The matrix ends at the first line
        that does not start with a label, or at ``Legend:``; ``None`` means the
        text ended inside the matrix.
        """
        rows: list[_Row] = []
        for li in range(hline, len(self.lines)):
            line = self.lines[li]
            toks = list(_TOKEN.finditer(line, hend if li == hline else 0))
            if not toks:
                continue
            if not self.is_label(toks[0].group(), labels):
                return rows, (li, toks[0].start())
            for k, tok in enumerate(toks):
                word = tok.group()
                if word in _END_WORDS or (word == "NIC" and k + 1 < len(toks) and toks[k + 1].group() in _END_WORDS):
                    return rows, (li, tok.start())
                if self.is_label(word, labels):
                    rows.append(_Row(word, li))
                else:
                    rows[-1].cells.append(_Cell(word, li, tok.end() < len(line)))
        return rows, None

    @staticmethod
    def is_label(word: str, labels: set[str]) -> bool:
        return word in labels or _LABEL.fullmatch(word) is not None

    def check_no_stray_rows(self, stop: tuple[int, int], labels: set[str]) -> None:
        """After the matrix, nothing may look like a matrix row: that would be a row we dropped."""
        first = stop[0] if stop[1] == 0 or not self.lines[stop[0]][: stop[1]].strip() else stop[0] + 1
        for li in range(first, len(self.lines)):
            toks = self.lines[li].split()
            if len(toks) < 2:
                continue
            head = toks[0]
            if not (self.is_label(head, labels) or _DEVICE_WORD.fullmatch(head)):
                continue
            try:
                looks_like_row = smi_cells.split_links(toks[1]) is not None
            except ValueError:
                looks_like_row = True
            if looks_like_row:
                if head in labels or _LABEL.fullmatch(head):
                    raise self.fail(f"matrix row {head} found after the matrix ended at line {stop[0] + 1}", li)
                raise self.fail(f"row {head} is not a column of the header", li)

    def classify(self, row: _Row) -> None:
        """Split a row's cells into link cells (fused ones split) then affinity cells."""
        row.links, row.affinity = [], []
        for cell in row.cells:
            if not row.affinity:
                try:
                    links = smi_cells.split_links(cell.text)
                    fused = None if links is not None else smi_cells.split_link_affinity(cell.text)
                except ValueError as err:
                    raise self.fail(f"row {row.label}: {err}", cell.line) from None
                if links is not None:
                    row.links.extend(links)
                    continue
                if fused is not None:
                    row.links.extend(fused[0])
                    row.affinity.append(_Cell(fused[1], cell.line, cell.sep_after))
                    continue
            if smi_cells.is_affinity_cell(cell.text):
                row.affinity.append(cell)
                continue
            what = "after the affinity cells" if row.affinity else "is not a link token"
            raise self.fail(f"row {row.label}: cell {cell.text!r} {what}", cell.line)

    def drop_cut_token(self, row: _Row, wanted_links: int, wanted_affinity: int) -> None:
        """The text ends inside the matrix: decide whether its last cell was cut mid-way.

        A cell followed by a blank on its line is whole. Otherwise it is dropped
        (``NV1`` may be the start of ``NV18``, ``0-1`` of ``0-19``) when the row
        is short anyway, or when the text stops right after it without a line end.
        A final row that does not read at all (``PX``, an elided ``56-111,1...``)
        loses its last cell in any case: that is what a cut leaves behind.
        """
        last = row.cells[-1] if row.cells else None
        try:
            self.classify(row)
            readable, whole = True, len(row.links) >= wanted_links and len(row.affinity) >= wanted_affinity
        except TopologyParseError:
            readable = whole = False
        row.cut = not whole
        if last is None:
            return
        terminated = last.line < len(self.raw) - 1
        if not readable and not smi_cells.could_be_cut(last.text):
            self.classify(row)  # a whole foreign word is damage, not a cut: raise its error
        if not readable or not (last.sep_after or (whole and terminated)):
            row.cut = True
            row.cells.pop()
            self.warn(f"row {row.label}: text ends inside the matrix; last cell {last.text!r} ignored as cut")

    # -- affinity -----------------------------------------------------------------------
    def read_affinity(
        self, row: _Row, header: Sequence[str], width: int | None
    ) -> tuple[frozenset[int] | None, frozenset[int] | None, int | None]:
        """Map a GPU row's affinity cells to columns, proving the mapping or leaving values unknown.

        ``width`` is how many affinity cells an undamaged row carries (see
        :meth:`affinity_width`); ``None`` when the rows leave that in doubt.
        """
        cells = row.affinity
        if width is None:
            self.warn("GPU rows carry different numbers of affinity cells, some more than the header; affinity unknown")
            return None, None, None
        kinds: Sequence[str] = header if width == len(header) else CANONICAL_AFFINITY[:width]
        exact = len(cells) == width
        if width > len(header):
            missing = ", ".join(smi_cells.AFFINITY_KINDS[k] for k in kinds[len(header) :])
            self.warn(
                f"header lacks {missing}; every GPU row carries it (driver column order makes the mapping unique)"
            )
        if row.cut:
            # What survives a cut is a prefix, but it is the only copy of these values and a
            # second slip (a lost cell) would shift them unnoticed: nothing is taken from it.
            self.warn(f"GPU row {row.label} is cut: its affinity is unknown")
            return None, None, None
        if not exact:
            self.warn(
                f"GPU row {row.label}: {len(cells)} affinity cell(s) for {width} column(s) "
                "(fused or missing cells); affinity unknown"
            )
            return None, None, None
        values: dict[str, object] = {}
        for kind, cell in zip(kinds, cells, strict=False):
            try:
                if kind == "gpu_numa":
                    values[kind] = smi_cells.parse_gpu_numa_id(cell.text)
                else:
                    limit = smi_cells.MAX_CPU_ID if kind == "cpu" else smi_cells.MAX_NUMA_ID
                    values[kind] = smi_cells.parse_idlist(cell.text, limit=limit)
            except ValueError:
                label = smi_cells.AFFINITY_KINDS[kind]
                if width != len(header):  # a recovered mapping is in doubt once a cell does not read
                    self.warn(f"GPU row {row.label}: {label} {cell.text!r} unreadable; affinity unknown")
                    return None, None, None
                self.warn(f"GPU row {row.label}: {label} {cell.text!r} unreadable; left unknown")
        cpu, numa, gnid = values.get("cpu"), values.get("numa"), values.get("gpu_numa")
        return (
            cpu if isinstance(cpu, frozenset) else None,
            numa if isinstance(numa, frozenset) else None,
            gnid if isinstance(gnid, int) else None,
        )

    @staticmethod
    def affinity_width(rows: Sequence[_Row], header: Sequence[str]) -> int | None:
        """How many affinity cells an undamaged GPU row carries; ``None`` when the rows leave it in doubt.

        Normally the header's count; rows with fewer cells are damaged (fused,
        019) and lose their affinity alone. Drivers print affinity columns in one
        fixed order and older ones a prefix of it, so when *every* row carries
        more cells than a prefix header names, the header lacks the next
        column(s) (014: ``CPU Affinity`` over ``0-23  0``). When only some rows
        carry more, a duplicated cell and a missing header column cannot be
        told apart, so no row is trusted; a single GPU row is not evidence enough.
        """
        carried = [len(r.affinity) for r in rows if r.label.startswith("GPU") and not r.cut]
        if not carried or max(carried) <= len(header):
            return len(header)
        (count, *others) = set(carried)
        canonical = tuple(header) == CANONICAL_AFFINITY[: len(header)]
        agreed = not others and len(carried) >= 2  # one row alone could hold a duplicated cell
        return count if agreed and canonical and count <= len(CANONICAL_AFFINITY) else None

    def check_affinity_agreement(self, gpus: list[Gpu]) -> list[Gpu]:
        """GPUs on the same NUMA node(s) share one CPU affinity; if they disagree, none is trusted.

        nvidia-smi derives both columns from the GPU's NUMA node, so two GPUs with
        equal NUMA affinity and different CPU lists mean a damaged column (a
        terminal cut that ate leading digits, ``2-63`` for ``32-63``); which value
        is right cannot be known, so the CPU affinity of that group is dropped.
        """
        groups: dict[frozenset[int], set[frozenset[int]]] = {}
        for g in gpus:
            if g.numa_affinity is not None and g.cpu_affinity is not None:
                groups.setdefault(g.numa_affinity, set()).add(g.cpu_affinity)
        bad = {numa for numa, cpus in groups.items() if len(cpus) > 1}
        if not bad:
            return gpus
        out: list[Gpu] = []
        for g in gpus:
            if g.numa_affinity in bad:
                self.warn(f"GPU{g.index}: CPU affinity disagrees with other GPUs on the same NUMA node; unknown")
                g = Gpu(g.index, cpu_affinity=None, numa_affinity=g.numa_affinity, gpu_numa_id=g.gpu_numa_id)
            out.append(g)
        return out

    # -- NIC legend -----------------------------------------------------------------------
    def read_legend(self, stop: tuple[int, int] | None, nic_names: list[str]) -> dict[str, str]:
        """``NIC0: mlx5_0`` entries after the matrix; damaged or conflicting ones are left out."""
        if stop is None:
            return {}
        found: dict[str, set[str]] = {}
        for li in range(stop[0], len(self.lines)):
            line = self.lines[li]
            for m in _LEGEND_ENTRY.finditer(line, stop[1] if li == stop[0] else 0):
                dev = m.group(2)
                cut = m.end() == len(line) and li == len(self.raw) - 1
                if cut or not _DEVICE_NAME.fullmatch(dev):
                    self.warn(f"NIC legend entry {m.group(1)}: {dev!r} unreadable or cut; ignored")
                    continue
                found.setdefault(m.group(1), set()).add(dev)
        legend: dict[str, str] = {}
        for nic, devs in found.items():
            if len(devs) > 1:
                self.warn(f"NIC legend names {nic} twice ({', '.join(sorted(devs))}); device unknown")
            elif nic not in nic_names:
                self.warn(f"NIC legend entry {nic} has no NIC column or row; ignored")
            else:
                legend[nic] = next(iter(devs))
        by_dev: dict[str, list[str]] = {}
        for nic, dev in legend.items():
            by_dev.setdefault(dev, []).append(nic)
        for dev, nics in by_dev.items():
            if len(nics) > 1:
                self.warn(f"NIC legend gives {dev} to {', '.join(nics)}; device unknown")
                for nic in nics:
                    del legend[nic]
        return legend

    # -- the whole parse ------------------------------------------------------------------
    def run(self) -> Topology:
        hline, items, hend = self.find_header()
        endpoints = [it for it in items if it.kind != "affinity"]
        affinity = [it.name for it in items if it.kind == "affinity"]
        if len(set(affinity)) != len(affinity):
            raise self.fail("header repeats an affinity column", hline)
        kinds = [it.kind for it in items]
        if "affinity" in kinds and any(k != "affinity" for k in kinds[kinds.index("affinity") :]):
            raise self.fail("header has an endpoint column after the affinity columns", hline)
        header_eps = [it.name for it in endpoints]
        labels = set(header_eps)
        rows, stop = self.read_rows(hline, hend, labels)
        if not rows:
            raise self.fail("matrix header has no rows under it", hline)
        if stop is not None:
            self.check_no_stray_rows(stop, labels)

        extra: list[str] = []
        seen: dict[str, _Row] = {}
        for row in rows:
            if row.label in seen:
                raise self.fail(f"second row for {row.label} (first at line {seen[row.label].line + 1})", row.line)
            seen[row.label] = row
            if row.label not in labels:
                if row.label.startswith("GPU"):
                    raise self.fail(f"row {row.label} is not a GPU column of the header", row.line)
                extra.append(row.label)
        columns = header_eps + extra
        gpu_names = [n for n in header_eps if n.startswith("GPU")]
        nic_names = [n for n in columns if not n.startswith("GPU")]
        if len(gpu_names) > limits.MAX_GPUS or len(nic_names) > limits.MAX_NICS:
            raise self.fail(f"{len(gpu_names)} GPUs and {len(nic_names)} NICs: over the limits of "
                            f"{limits.MAX_GPUS} GPUs and {limits.MAX_NICS} NICs per node", hline)
        order = gpu_names + nic_names
        pos = {name: i for i, name in enumerate(order)}
        indices = [int(n[3:]) for n in gpu_names]
        if len(set(indices)) != len(indices):
            raise self.fail("header lists one GPU index twice", hline)
        if extra:
            self.warn(f"NIC rows {', '.join(extra)} have no header column; their links come from their rows")

        if stop is None:
            last = rows[-1]
            wanted_aff = len(affinity) if last.label.startswith("GPU") else 0
            self.drop_cut_token(last, len(header_eps), wanted_aff)

        carried: dict[tuple[int, int], tuple[Link, int]] = {}
        cut_lines: list[int] = []
        affinity_of: dict[str, tuple[frozenset[int] | None, frozenset[int] | None, int | None]] = {}
        for row in rows:
            self.classify(row)
        width = self.affinity_width(rows, affinity)
        for row in rows:
            i = pos[row.label]
            lo, hi = (len(header_eps), len(header_eps)) if row.label in labels else (len(header_eps), len(columns))
            n = len(row.links)
            if n > hi:
                raise self.fail(f"row {row.label} has {n} link cells for {hi} columns", row.line)
            if lo < n < hi and not row.cut:
                # A row without a header column must stop at the header's columns or run through
                # every row (its own X included): anything in between cannot be told from a
                # duplicated or lost cell, and nothing else checks these cells.
                raise self.fail(f"row {row.label} has {n} link cells: neither {lo} (header) nor {hi}", row.line)
            if n < lo:
                if not row.cut:
                    raise self.fail(
                        f"row {row.label} has {n} link cells for {lo} columns (cut or missing cell)", row.line
                    )
                cut_lines.append(row.line)
                self.warn(f"row {row.label} is cut after {n} link cells")
            for j, link in enumerate(row.links):
                col = columns[j]
                q = pos[col]
                if q == i:
                    if link != SELF:
                        raise self.fail(f"row {row.label}: expected X in its own column, found {link}", row.line)
                    continue
                if link.level is LinkLevel.SELF:
                    raise self.fail(f"row {row.label}: X in column {col}, off the diagonal", row.line)
                if link.level is LinkLevel.NVLINK and not (row.label.startswith("GPU") and col.startswith("GPU")):
                    raise self.fail(f"row {row.label}: NVLink {link} to {col} (NVLink joins GPUs only)", row.line)
                carried[(i, q)] = (link, row.line)
            if row.label.startswith("GPU"):
                affinity_of[row.label] = self.read_affinity(row, affinity, width)

        missing_gpu = [n for n in gpu_names if n not in seen]
        present = [k for k, n in enumerate(gpu_names) if n in seen]
        trailing = all(k > max(present, default=-1) for k, n in enumerate(gpu_names) if n not in seen)
        if missing_gpu and (stop is not None or not trailing):
            # Only a text that stops inside the matrix may lack GPU rows, and only its last ones.
            raise self.fail(f"header lists {', '.join(missing_gpu)} but the matrix has no row for it", hline)
        for name in missing_gpu:
            self.warn(f"{name}: row cut off the end of the text; links from the other rows, affinity unknown")

        size = len(order)
        matrix: list[list[Link | None]] = [[None] * size for _ in range(size)]
        unknown_nic_pairs = 0
        for i in range(size):
            matrix[i][i] = SELF
            for j in range(i + 1, size):
                a, b = carried.get((i, j)), carried.get((j, i))
                if a is not None and b is not None and a[0] != b[0]:
                    first, second = sorted((a, b), key=lambda x: x[1])
                    raise self.fail(
                        f"{order[i]}↔{order[j]} is {second[0]} here but {first[0]} at line {first[1] + 1}", second[1]
                    )
                found = a or b
                if found is None:
                    if i < len(gpu_names):
                        where = min(cut_lines) if cut_lines else (rows[-1].line if stop is None else hline)
                        raise self.fail(f"link {order[i]}↔{order[j]} is not in the text (matrix cut off)", where)
                    unknown_nic_pairs += 1
                    continue
                matrix[i][j] = matrix[j][i] = found[0]
        if unknown_nic_pairs:
            self.warn(f"{unknown_nic_pairs} NIC↔NIC link(s) not in the text; left unknown")

        legend = self.read_legend(stop, nic_names)
        gpus = []
        for name in gpu_names:
            cpu, numa, gnid = affinity_of.get(name, (None, None, None))
            gpus.append(Gpu(int(name[3:]), cpu_affinity=cpu, numa_affinity=numa, gpu_numa_id=gnid))
        gpus = self.check_affinity_agreement(gpus)
        nics = [Nic(column=name, device=legend.get(name)) for name in nic_names]
        try:
            return Topology.from_rows(gpus, nics, matrix, source=self.source, warnings=self.warnings)
        except ValueError as err:  # pragma: no cover - every invariant is checked above
            raise self.fail(f"inconsistent matrix: {err}", hline) from err


def parse(text: str, *, source: str = "") -> Topology:
    """Read `nvidia-smi topo -m` output into a :class:`Topology`.

    Raises :class:`TopologyParseError` (with ``.line``, 1-based in ``text``)
    when the text cannot be read without guessing. Values the text does not
    settle are ``None`` and explained in ``Topology.warnings``.

    >>> topo = parse('''
    ...         GPU0    GPU1    NIC0    CPU Affinity    NUMA Affinity   GPU NUMA ID
    ... GPU0     X      NV4     PIX     0-15            0               N/A
    ... GPU1    NV4      X      SYS     16-31           1               N/A
    ... NIC0    PIX     SYS      X
    ...
    ... NIC Legend:
    ...
    ...   NIC0: mlx5_0
    ... ''', source="example")
    >>> str(topo.gpu_link(0, 1)), str(topo.gpu_nic_link(1, 0)), topo.nics[0].device
    ('NV4', 'SYS', 'mlx5_0')
    >>> sorted(topo.gpu(1).cpu_affinity)[:3], topo.gpu(1).numa_node
    ([16, 17, 18], 1)

    Damage that cannot be undone is an error that names the line:

    >>> try:
    ...     parse("        GPU0    GPU1\\nGPU0     X      NV4?\\nGPU1    NV4      X\\n")
    ... except TopologyParseError as err:
    ...     print(err.line, err.reason)
    2 row GPU0: cell 'NV4?' is not a link token
    """
    _check_size(text)
    return _Reader(text, source).run()


def _check_size(text: str) -> None:
    """Refuse text over the size limits before reading any of it (:mod:`labeler.topology.limits`)."""
    if len(text) > limits.MAX_SMI_CHARS:
        raise TopologyParseError(f"text of {len(text)} characters is over the limit of {limits.MAX_SMI_CHARS}")
    lines = text.count("\n") + 1
    if lines > limits.MAX_SMI_LINES:
        raise TopologyParseError(f"text of {lines} lines is over the limit of {limits.MAX_SMI_LINES}")
    start = 0
    for number in range(1, lines + 1):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if end - start > limits.MAX_SMI_LINE_CHARS:
            raise TopologyParseError(f"line of {end - start} characters is over the limit of "
                                     f"{limits.MAX_SMI_LINE_CHARS}", line=number)
        start = end + 1
