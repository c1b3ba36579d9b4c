"""The machine as a person draws it: NUMA groups, PCIe switches, NICs beside their GPUs, NVLink.

Why not the matrix: a coloured copy of `nvidia-smi topo -m` still has to be read cell
by cell. People draw a server as boxes (sockets, then PCIe switches) holding GPUs,
with the NICs under the GPUs they share a switch with and NVLink drawn between GPUs
(or an NVSwitch bar over them). The structure comes from :mod:`labeler.topology.drawing`;
this module only places it (pure arithmetic into a :class:`~labeler.topology.scene.Scene`),
so the SVG (:func:`render_svg`) and the PNG (:mod:`gputopo.png`) are the same picture.

Every box, card and edge is an SVG group with an ``id``, a ``class`` and ``data-*``
attributes (``data-gpus``, ``data-level``, ``data-links``…): the tests read those.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from labeler.topology import labels, numa
from labeler.topology.drawing import Box, Drawing, analyse, pcie_level
from labeler.topology.findings import Finding
from labeler.topology.links import LEVEL_MEANING, LinkLevel
from labeler.topology.model import Gpu, Topology
from labeler.topology.scene import Group, Item, Path, Rect, Scene, Text, text_width, to_svg
from labeler.topology.serialize import format_cpulist

__all__ = ["LEVEL_COLOURS", "machine_scene", "render_svg", "tint"]

#: One colour per level, cool (near) to warm (far). Boxes are filled with a tint of it and
#: labelled with the level's name, so colour is never the only carrier of the meaning.
LEVEL_COLOURS: dict[LinkLevel, str] = {
    LinkLevel.SELF: "#222222",
    LinkLevel.NVLINK: "#6a3d9a",
    LinkLevel.PIX: "#1f5fa8",
    LinkLevel.PXB: "#14857f",
    LinkLevel.PHB: "#4e8f2f",
    LinkLevel.NODE: "#b07f00",
    LinkLevel.SYS: "#c0392b",
}
_GPU_FILL, _GPU_INK = "#263238", "#ffffff"
_NIC_FILL, _NIC_STROKE = "#ffffff", "#455a64"
_BAD = "#d32f2f"
_FAR_FILL, _FAR_STROKE = "#f5f5f5", "#9e9e9e"

MARGIN, GAP, PAD, PAD_T, NIC_GAP, GROUP_GAP = 18.0, 10.0, 10.0, 10.0, 18.0, 52.0
FAR_BELOW_WIDTH = 1000.0  # wider than this with the far NICs beside the groups: they go on a row below
LABEL_SIZE = 10.5


def tint(colour: str, amount: float) -> str:
    """``colour`` mixed with white (``amount`` 1 = white)."""
    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    mix = [round(c + (255 - c) * amount) for c in (r, g, b)]
    return "#" + "".join(f"{c:02x}" for c in mix)


def _short_name(name: str | None) -> str:
    if not name:
        return ""
    text = name.removeprefix("NVIDIA ").strip()
    return text if len(text) <= 20 else text[:19] + "…"


def _pcie_text(g: Gpu) -> tuple[str, bool]:
    """The GPU's PCIe link as a card line, and whether it trained below its maximum width."""
    p = g.pcie
    if p is None:
        return "", False
    gen = f"Gen{p.gen}" if p.gen is not None else (f"Gen{p.max_gen} max" if p.max_gen is not None else "")
    if p.width_downtrained:
        return f"PCIe {gen} x{p.width} of x{p.max_width}".replace("  ", " "), True
    width = p.width if p.width is not None else p.max_width
    return " ".join(s for s in ("PCIe", gen, f"x{width}" if width else "") if s), False


def _rate_text(mbps: int | None) -> str:
    if mbps is None:
        return ""
    return f"{mbps / 1000:g} Gb/s" if mbps >= 1000 else f"{mbps} Mb/s"


@dataclass
class _Cards:
    """Card sizes, uniform over the picture so rows line up."""

    gpu_lines: list[list[tuple[str, bool]]]  # per GPU position: extra lines (text, alarming)
    nic_lines: list[str]  # per NIC position: the rate line ("" none)
    w: float
    gpu_h: float
    nic_h: float


def _cards(topo: Topology) -> _Cards:
    gpu_lines: list[list[tuple[str, bool]]] = []
    for g in topo.gpus:
        lines: list[tuple[str, bool]] = []
        if any(x.name for x in topo.gpus):
            lines.append((_short_name(g.name), False))
        if any(x.pcie is not None for x in topo.gpus):
            lines.append(_pcie_text(g))
        if any(x.gpu_numa_id is not None for x in topo.gpus):
            lines.append((f"memory NUMA {g.gpu_numa_id}" if g.gpu_numa_id is not None else "", False))
        if g.mig:
            lines.append(("MIG enabled", True))
        gpu_lines.append(lines)
    extra = max((len(lines) for lines in gpu_lines), default=0)
    nic_lines = [_rate_text(n.rate_mbps) for n in topo.nics]
    texts = [text_width(f"GPU{g.index}", 13, bold=True) for g in topo.gpus]
    texts += [text_width(t, 10) for lines in gpu_lines for t, _ in lines]
    texts += [text_width(n.name, 11) for n in topo.nics] + [text_width(t, 10) for t in nic_lines]
    w = max(78.0, max(texts, default=0) + 16)
    return _Cards(gpu_lines, nic_lines, w, 28.0 + 13.0 * extra, 24.0 + (13.0 if any(nic_lines) else 0.0))


@dataclass
class _Slot:
    """A box, or loose endpoints drawn together: GPUs in a row with the NICs near them centred below."""

    box: Box | None = None
    gpus: list[int] = field(default_factory=list)  # matrix positions
    nics: list[int] = field(default_factory=list)  # matrix positions
    w: float = 0.0
    x: float = 0.0

    def endpoints(self) -> list[int]:
        return self.box.endpoints() if self.box is not None else [*self.gpus, *self.nics]


@dataclass
class _Placed:
    """Geometry computed for one box (relative to GPU row y = 0)."""

    box: Box
    x: float
    w: float
    top: float
    bottom: float
    slots: list[_Slot]
    children: list[_Placed]
    ident: str


class _Layout:
    def __init__(self, topo: Topology, drawing: Drawing) -> None:
        self.topo, self.drawing = topo, drawing
        self.n_gpu = len(topo.gpus)
        self.cards = _cards(topo)
        self.nic_y = self.cards.gpu_h + NIC_GAP
        self.gpu_x: dict[int, float] = {}  # GPU position -> card left x
        self.nic_x: dict[int, float] = {}
        self.box_of: dict[int, str] = {}  # endpoint -> innermost box id
        self.group_of: dict[int, int] = {}  # endpoint -> top-level box position
        self._ids = 0

    # -- measuring ---------------------------------------------------------------------
    def slots(self, box: Box) -> list[_Slot]:
        loose = [it for it in box.items if isinstance(it, int)]
        gpus = [e for e in loose if e < self.n_gpu]
        nics = [e for e in loose if e >= self.n_gpu]
        if gpus and nics and len(loose) == len(box.items) and all(self._shared(n, gpus) for n in nics):
            slots = [_Slot(gpus=gpus, nics=nics)]  # one switch: its NICs are as near to every GPU in it
        else:
            slots = self._columns(box, loose)
        cw = self.cards.w
        for s in slots:
            if s.box is None:
                s.w = max(cw * n + GAP * (n - 1) for n in (len(s.gpus), len(s.nics), 1))
        return slots

    def _shared(self, nic: int, gpus: list[int]) -> bool:
        """Is ``nic`` at the same level to each of ``gpus``?"""
        return len({self.topo.links[nic][g] for g in gpus}) == 1

    def _columns(self, box: Box, loose: list[int]) -> list[_Slot]:
        """Each loose GPU with the NICs drawn under it; NICs near no loose GPU of the box on their own."""
        loose_gpus = {self.topo.gpus[e].index: e for e in loose if e < self.n_gpu}
        under: dict[int, list[int]] = {}
        attached: set[int] = set()
        for e in loose:
            g = self.drawing.nearest_gpu.get(e - self.n_gpu) if e >= self.n_gpu else None
            if g is not None and g in loose_gpus:
                under.setdefault(loose_gpus[g], []).append(e)
                attached.add(e)
        out: list[_Slot] = []
        for it in box.items:
            if isinstance(it, Box):
                out.append(_Slot(box=it))
            elif it < self.n_gpu:
                out.append(_Slot(gpus=[it], nics=under.get(it, [])))
            elif it not in attached:
                out.append(_Slot(nics=[it]))
        return out

    def label_h(self, box: Box) -> float:
        return 20.0 + (14.0 if box.note else 0.0)

    def place(self, box: Box, x: float, top_level: int) -> _Placed:
        self._ids += 1
        ident = f"box-{self._ids}"
        slots = self.slots(box)
        children: list[_Placed] = []
        # measure sub-boxes first (their widths), at x = 0, then shift
        widths: list[float] = []
        for s in slots:
            if s.box is not None:
                child = self.place(s.box, 0.0, top_level)
                children.append(child)
                s.w = child.w
            widths.append(s.w)
        content = sum(widths) + GAP * max(len(widths) - 1, 0)
        label_w = max(text_width(box.label, LABEL_SIZE), text_width(box.note, 9.5)) + 2 * PAD
        w = max(content + 2 * PAD, label_w)
        cx = x + (w - content) / 2
        tops: list[float] = []
        bottoms: list[float] = []
        it_children = iter(children)
        for s in slots:
            if s.box is not None:
                child = next(it_children)
                self.shift(child, cx - child.x)
                s.x = cx
                tops.append(child.top)
                bottoms.append(child.bottom)
            else:
                s.x = cx
                self._place_column(s, cx, ident, top_level)
                tops.append(0.0 if s.gpus else self.nic_y)
                bottoms.append(self.nic_y + self.cards.nic_h if s.nics else self.cards.gpu_h)
            cx += s.w + GAP
        top = min(tops, default=0.0) - PAD_T
        bottom = max(bottoms, default=self.cards.gpu_h) + self.label_h(box)
        return _Placed(box, x, w, top, bottom, slots, children, ident)

    def _place_column(self, s: _Slot, x: float, ident: str, top_level: int) -> None:
        cw = self.cards.w
        for row, at in ((s.gpus, self.gpu_x), (s.nics, self.nic_x)):
            span = len(row) * cw + max(len(row) - 1, 0) * GAP
            rx = x + (s.w - span) / 2
            for e in row:
                at[e] = rx
                self.box_of[e] = ident
                self.group_of[e] = top_level
                rx += cw + GAP

    def shift(self, p: _Placed, dx: float) -> None:
        p.x += dx
        for sl in p.slots:
            sl.x += dx
        for e in p.box.endpoints():
            if e in self.gpu_x:
                self.gpu_x[e] += dx
            if e in self.nic_x:
                self.nic_x[e] += dx
        stack = list(p.children)
        while stack:
            c = stack.pop()
            c.x += dx
            for sl in c.slots:
                sl.x += dx
            stack.extend(c.children)


def _box_items(lay: _Layout, p: _Placed, top: float, bottom: float, oy: float) -> Group:
    """One box (and everything inside it) as SVG groups, at vertical offset ``oy``."""
    box = p.box
    colour = LEVEL_COLOURS[box.level] if box.level is not None else _FAR_STROKE
    fill = tint(colour, 0.9 if box.kind == "numa" else 0.82) if box.level is not None else _FAR_FILL
    dash = (5.0, 3.0) if box.kind == "far-nics" else ()
    items: list[Item] = [
        Rect(p.x, oy + top, p.w, bottom - top, fill=fill, stroke=colour,
             stroke_width=2.0 if box.kind == "numa" else 1.4, radius=8 if box.kind == "numa" else 5, dash=dash)
    ]
    label_y = oy + bottom - (20.0 if box.note else 7.0)
    items.append(Text(p.x + PAD, label_y, box.label, LABEL_SIZE, bold=box.kind == "numa",
                      colour=tint(colour, 0.0) if box.level is not None else "#616161"))
    if box.note:
        items.append(Text(p.x + PAD, oy + bottom - 7.0, "⚠ " + box.note, 9.5, colour=_BAD))
    topo = lay.topo
    if box.note:  # SYS inside one NUMA node: a dashed line between the parts that are SYS to each other
        for a, b in zip(p.slots, p.slots[1:], strict=False):
            levels = {pcie_level(topo.links[i][j]) for i in a.endpoints() for j in b.endpoints()} - {None}
            if levels and min(lv for lv in levels if lv is not None) is LinkLevel.SYS:
                x = a.x + a.w + GAP / 2
                items.append(Path(((x, oy + top + PAD_T), (x, oy + bottom - lay.label_h(box))),
                                  stroke=LEVEL_COLOURS[LinkLevel.SYS], width=1.5, dash=(4.0, 3.0)))
    it_children = iter(p.children)
    for s in p.slots:
        if s.box is not None:
            child = next(it_children)
            items.append(_box_items(lay, child, child.top, child.bottom, oy))
            continue
        items.extend(_gpu_card(lay, e, oy) for e in s.gpus)
        items.extend(_nic_card(lay, e, oy) for e in s.nics)
    eps = box.endpoints()
    gpus = [topo.gpus[e].index for e in eps if e < lay.n_gpu]
    nics = [topo.nics[e - lay.n_gpu].name for e in eps if e >= lay.n_gpu]
    data = [("kind", box.kind), ("level", box.level.token if box.level is not None else "none"),
            ("gpus", format_cpulist(set(gpus))), ("nics", ",".join(nics))]
    return Group(tuple(items), id=p.ident, cls=f"box {box.kind}", data=tuple(data),
                 title=f"{box.label}: {len(gpus)} GPUs, {len(nics)} NICs")


def _gpu_card(lay: _Layout, e: int, oy: float) -> Group:
    g = lay.topo.gpus[e]
    x, cw = lay.gpu_x[e], lay.cards.w
    lines = lay.cards.gpu_lines[e]
    bad = any(alarm for _, alarm in lines)
    items: list[Item] = [
        Rect(x, oy, cw, lay.cards.gpu_h, fill=_GPU_FILL, stroke=_BAD if bad else None, stroke_width=3.0, radius=4),
        Text(x + cw / 2, oy + 18, f"GPU{g.index}", 13, anchor="middle", bold=True, colour=_GPU_INK),
    ]
    for k, (text, alarm) in enumerate(lines):
        items.append(Text(x + cw / 2, oy + 32 + 13 * k, text, 10, anchor="middle",
                          colour="#ff8a80" if alarm else "#cfd8dc"))
    nics = [lay.topo.nics[n].name for n, gi in lay.drawing.nearest_gpu.items() if gi == g.index]
    data = [("gpu", str(g.index)), ("group", str(lay.group_of.get(e, ""))), ("box", lay.box_of.get(e, "")),
            ("nics", ",".join(nics))]
    tip = " · ".join(s for s in (f"GPU{g.index}", g.name or "", g.bus_id or "") if s)
    return Group(tuple(items), id=f"gpu-{g.index}", cls="gpu", data=tuple(data), title=tip)


def _nic_card(lay: _Layout, e: int, oy: float) -> Group:
    n = e - lay.n_gpu
    nic = lay.topo.nics[n]
    x, cw = lay.nic_x[e], lay.cards.w
    y = oy + lay.nic_y
    items: list[Item] = [
        Rect(x, y, cw, lay.cards.nic_h, fill=_NIC_FILL, stroke=_NIC_STROKE, stroke_width=1.2, radius=3),
        Text(x + cw / 2, y + 16, nic.name, 11, anchor="middle", colour="#263238"),
    ]
    rate = lay.cards.nic_lines[n]
    if rate:
        items.append(Text(x + cw / 2, y + 29, rate, 10, anchor="middle", colour="#546e7a"))
    near = lay.drawing.nearest_gpu.get(n)
    data = [("nic", nic.name), ("box", lay.box_of.get(e, "")), ("near-gpu", "" if near is None else str(near))]
    return Group(tuple(items), id=f"nic-{n}", cls="nic", data=tuple(data), title=f"{nic.name} ({nic.column})")


def _arc_tiers(spans: Sequence[tuple[int, int]]) -> list[int]:
    """A height tier per arc: above every arc nested inside it, apart from every arc it overlaps.

    Arcs are (left, right) GPU ranks in drawing order. Two arcs that share more than an
    end never get the same tier, so no two arcs run along each other.
    """
    norm = [(min(a, b), max(a, b)) for a, b in spans]
    tiers = [0] * len(norm)
    for k in sorted(range(len(norm)), key=lambda i: (norm[i][1] - norm[i][0], norm[i][0])):
        lo, hi = norm[k]
        placed = [j for j in range(len(norm)) if tiers[j]]
        floor = max((tiers[j] for j in placed if lo <= norm[j][0] and norm[j][1] <= hi), default=0)
        taken = {tiers[j] for j in placed if min(hi, norm[j][1]) - max(lo, norm[j][0]) > 0}
        t = floor + 1
        while t in taken:
            t += 1
        tiers[k] = t
    return tiers


def _edge_width(links: int) -> float:
    """Thicker with more links, distinct where it matters (NV1 vs NV2), bounded for NV18."""
    return round(min(1.2 + 2.0 * math.log2(1 + links), 10.0), 1)


def _nvlink_items(lay: _Layout, oy: float, boxes_top: float) -> tuple[list[Item], float]:
    """NVLink arcs and NVSwitch bars; returns them and how far above ``oy`` they reach."""
    topo, w = lay.topo, lay.drawing
    pos = {g.index: p for p, g in enumerate(topo.gpus)}
    cw = lay.cards.w
    order = sorted(lay.gpu_x, key=lambda p: lay.gpu_x[p])
    rank = {p: k for k, p in enumerate(order)}
    ends: dict[int, list[tuple[float, int]]] = {}  # GPU position -> (partner x, edge id) for anchor spreading
    for k, edge in enumerate(w.nvlink):
        a, b = pos[edge.a], pos[edge.b]
        ends.setdefault(a, []).append((lay.gpu_x[b], k))
        ends.setdefault(b, []).append((lay.gpu_x[a], k))
    anchor: dict[tuple[int, int], float] = {}
    for p, lst in ends.items():
        lst.sort()
        for i, (_, k) in enumerate(lst):
            anchor[(p, k)] = lay.gpu_x[p] + cw * (0.18 + 0.64 * (i + 0.5) / len(lst))
    items: list[Item] = []
    reach = 0.0
    labels_at: list[Item] = []
    clear = oy - boxes_top  # how far the box tops rise above the GPU row
    tier = _arc_tiers([(rank[pos[e.a]], rank[pos[e.b]]) for e in w.nvlink])
    for k, edge in enumerate(w.nvlink):
        a, b = pos[edge.a], pos[edge.b]
        xa, xb = anchor[(a, k)], anchor[(b, k)]
        rise = (clear + 16.0) / 0.75 + 21.0 * (tier[k] - 1)  # the apex clears every box top
        y0 = oy
        pts = ((xa, y0), (xa, y0 - rise), (xb, y0 - rise), (xb, y0))
        reach = max(reach, 0.75 * rise + 10)
        colour = LEVEL_COLOURS[LinkLevel.NVLINK]
        tx, ty = (xa + xb) / 2, y0 - 0.75 * rise  # a label on the apex of its own arc: no doubt which it names
        items.append(Group(
            (Path(pts, stroke=colour, width=_edge_width(edge.links), curve=True),),
            id=f"nvlink-{edge.a}-{edge.b}", cls="nvlink",
            data=(("a", str(edge.a)), ("b", str(edge.b)), ("links", str(edge.links))),
            title=f"GPU{edge.a}↔GPU{edge.b}: NV{edge.links}",
        ))
        text = f"NV{edge.links}"
        tw = text_width(text, 9.5, bold=True) - 2
        labels_at.append(Group((
            Rect(tx - tw / 2 - 3, ty - 7, tw + 6, 14, fill="#ffffff", stroke=colour, stroke_width=1.0, radius=7),
            Text(tx, ty + 3.5, text, 9.5, anchor="middle", bold=True, colour=colour),
        ), cls="nvlink-label"))
    for k, sw in enumerate(w.nvswitch):
        xs = [lay.gpu_x[pos[g]] for g in sw.gpus]
        x0, x1 = min(xs), max(xs) + cw
        bar_h = 24.0
        y = boxes_top - 22.0 - bar_h - k * (bar_h + 12)
        reach = max(reach, oy - y + 4)
        colour = LEVEL_COLOURS[LinkLevel.NVLINK]
        parts: list[Item] = [Rect(x0, y, x1 - x0, bar_h, fill=tint(colour, 0.25), stroke=colour, radius=5)]
        parts.append(Text((x0 + x1) / 2, y + 16, f"NVSwitch: every GPU pair at NV{sw.width}", 11.5,
                          anchor="middle", bold=True, colour="#ffffff"))
        for g in sw.gpus:
            gx = lay.gpu_x[pos[g]] + cw / 2
            n = sw.links[g]
            odd = n != sw.width
            drop = Path(((gx, y + bar_h), (gx, oy)), stroke=_BAD if odd else colour, width=_edge_width(n))
            kids: list[Item] = [drop]
            if odd:
                kids.append(Text(gx + 6, (y + bar_h + oy) / 2, f"NV{n}", 10, bold=True, colour=_BAD, halo=True))
            parts.append(Group(tuple(kids), id=f"nvswitch-{k}-gpu-{g}", cls="nvswitch-link",
                               data=(("gpu", str(g)), ("links", str(n))), title=f"GPU{g}: NV{n} to the fabric"))
        items.append(Group(tuple(parts), id=f"nvswitch-{k}", cls="nvswitch",
                           data=(("gpus", format_cpulist(set(sw.gpus))), ("links", str(sw.width)))))
    return items + labels_at, reach


def _wrap(text: str, width: float, size: float) -> list[str]:
    per_line = max(20, int(width / (size * 0.6)))
    words, lines, cur = text.split(), [], ""
    for word in words:
        if cur and len(cur) + 1 + len(word) > per_line:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    if cur:
        lines.append(cur)
    return lines


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _subtitle(topo: Topology) -> str:
    """Counts and the labels that say the node's class and shapes, spelled as the labels are.

    Label names rather than prose: ``shape-pcie-switch=8`` on an NVSwitch board counts
    NVLink hops as inside a switch (docs/labels.md), which a reader should not take for
    the PCIe switches drawn below.
    """
    lab = {k.removeprefix(labels.DEFAULT_PREFIX): v for k, v in labels.encode(topo).items()}
    groups = numa.group(topo)
    numa_text = f"numa-shape={groups.shape} ({groups.basis.value})" if groups.shape else "numa-shape unknown"
    return (f"{_count(len(topo.gpus), 'GPU')}, {_count(len(topo.nics), 'NIC')} · topology-class="
            f"{lab['topology-class']} · shape-nvlink={lab['shape-nvlink']} · shape-pcie-switch="
            f"{lab['shape-pcie-switch']} · {numa_text} · nic-locality={lab['nic-locality']}")


def _legend(x0: float, y0: float, width: float, has_switch: bool) -> tuple[list[Item], float]:
    entries: list[tuple[str, str]] = [("gpu", "GPU"), ("nic", "NIC (RDMA/network device)")]
    # what each level traverses, in nvidia-smi's words (links.LEVEL_MEANING)
    entries += [(level.token, f"{level.token}{'#' if level is LinkLevel.NVLINK else ''}: {LEVEL_MEANING[level]}"
                 + (" (line width grows with #)" if level is LinkLevel.NVLINK else "")) for level in LEVEL_MEANING]
    if has_switch:
        entries.insert(3, ("switch", "NVSwitch (GPUs reach each other through switches)"))
    items: list[Item] = [Text(x0, y0 + 12, "Legend", 11, bold=True)]
    col_w = max(30 + text_width(text, 10) + 18 for _, text in entries)
    cols = max(1, int(width // col_w))
    y = y0 + 22
    for i, (kind, text) in enumerate(entries):
        x, y = x0 + (i % cols) * col_w, y0 + 22 + (i // cols) * 20
        if kind == "gpu":
            items.append(Rect(x, y, 22, 14, fill=_GPU_FILL, radius=3))
        elif kind == "nic":
            items.append(Rect(x, y, 22, 14, fill=_NIC_FILL, stroke=_NIC_STROKE, radius=2))
        elif kind == "NV":
            items.append(Path(((x, y + 7), (x + 22, y + 7)), stroke=LEVEL_COLOURS[LinkLevel.NVLINK], width=4))
        elif kind == "switch":
            items.append(Rect(x, y + 1, 22, 12, fill=tint(LEVEL_COLOURS[LinkLevel.NVLINK], 0.25),
                              stroke=LEVEL_COLOURS[LinkLevel.NVLINK], radius=3))
        elif kind == "SYS":
            items.append(Path(((x, y + 7), (x + 22, y + 7)), stroke=LEVEL_COLOURS[LinkLevel.SYS], width=2.5,
                              dash=(4, 3)))
        else:
            level = LinkLevel[kind]
            items.append(Rect(x, y, 22, 14, fill=tint(LEVEL_COLOURS[level], 0.82), stroke=LEVEL_COLOURS[level],
                              radius=3))
        items.append(Text(x + 28, y + 11, text, 10, colour="#37474f"))
    return items, y + 20 - y0


def machine_scene(topo: Topology, *, title: str = "", findings: Sequence[Finding] = ()) -> Scene:
    """The picture of one node (see the module doc); ``findings`` are listed under it (warnings only)."""
    drawing = analyse(topo)
    lay = _Layout(topo, drawing)
    placed: list[_Placed] = []
    x = MARGIN
    for k, box in enumerate(drawing.groups):
        p = lay.place(box, x, k)
        placed.append(p)
        x += p.w + GROUP_GAP
    # NICs far from every GPU go on a row of their own when beside the groups they would widen the picture much
    far = placed.pop() if placed and placed[-1].box.kind == "far-nics" else None
    below = far is not None and bool(placed) and x - GROUP_GAP > FAR_BELOW_WIDTH
    if far is not None and not below:
        placed.append(far)
    boxes_w = (x - GROUP_GAP if not below else placed[-1].x + placed[-1].w) - MARGIN
    if far is not None and below:
        lay.shift(far, MARGIN - far.x)
        boxes_w = max(boxes_w, far.w)
    top = min((p.top for p in placed), default=0.0)
    bottom = max((p.bottom for p in placed), default=lay.cards.gpu_h)
    head = [title or topo.source or "topology", _subtitle(topo)]
    if title and topo.source:
        head.append(f"source: {topo.source}")
    title_h = 26.0 + 16.0 * (len(head) - 1) + 8
    # vertical: the GPU row sits at y = oy; boxes span oy+top .. oy+bottom
    _, reach = _nvlink_items(lay, 0.0, top)
    oy = MARGIN + title_h + max(reach, -top) + 6
    nv, _ = _nvlink_items(lay, oy, oy + top)
    width = max(boxes_w + 2 * MARGIN, 720.0, text_width(head[1], 11) + 2 * MARGIN,
                text_width(head[0], 15, bold=True) + 2 * MARGIN)
    items: list[Item] = [Text(MARGIN, MARGIN + 15, head[0], 15, bold=True)]
    items += [Text(MARGIN, MARGIN + 15 + 17 * (i + 1), line, 11, colour="#37474f") for i, line in enumerate(head[1:])]
    for k, p in enumerate(placed):
        items.append(_box_items(lay, p, top if p.box.kind == "numa" else p.top, bottom, oy))
        if k + 1 < len(placed) and drawing.groups[k + 1].kind == "numa":
            level = drawing.between.get((k, k + 1))
            if level is not None:
                items.append(_between(p.x + p.w, placed[k + 1].x, oy + (top + bottom) / 2, level, k))
    items.extend(nv)
    y = oy + bottom + 18
    if far is not None and below:
        far_oy = y + 6 - far.top
        items.append(_box_items(lay, far, far.top, far.bottom, far_oy))
        y = far_oy + far.bottom + 18
    legend, lh = _legend(MARGIN, y, width - 2 * MARGIN, bool(drawing.nvswitch))
    items.append(Group(tuple(legend), id="legend", cls="legend"))
    y += lh + 8
    warn = [f for f in findings if f.is_warning]
    if warn:
        lines: list[Item] = [Text(MARGIN, y + 12, "Findings (warnings)", 11, bold=True)]
        y += 28
        shown = 0
        for f in warn:
            wrapped = _wrap(f"! {f.message}", width - 2 * MARGIN, 10)
            if shown + len(wrapped) > 14:
                lines.append(Text(MARGIN, y, f"… and more: run gputopo audit for all {len(warn)}", 10,
                                  colour="#616161"))
                y += 14
                break
            for line in wrapped:
                lines.append(Text(MARGIN, y, line, 10, colour=_BAD if f.severity.value == "error" else "#37474f"))
                y += 14
                shown += 1
        items.append(Group(tuple(lines), id="findings", cls="findings",
                           data=(("count", str(len(warn))),)))
    height = y + MARGIN
    lab = labels.encode(topo)
    meta = {"gpus": str(len(topo.gpus)), "nics": str(len(topo.nics)),
            "class": lab[labels.DEFAULT_PREFIX + "topology-class"]}
    return Scene(math.ceil(width), math.ceil(height), Group(tuple(items), id="machine", cls="machine"),
                 title=head[0], meta=meta)


def _between(x0: float, x1: float, y: float, level: LinkLevel, k: int) -> Group:
    colour = LEVEL_COLOURS[level]
    dash = (5.0, 3.0) if level is LinkLevel.SYS else ()
    return Group(
        (Path(((x0 + 4, y), (x1 - 4, y)), stroke=colour, width=2.5, dash=dash),
         Text((x0 + x1) / 2, y - 7, level.token, 10.5, anchor="middle", bold=True, colour=colour)),
        id=f"between-{k}-{k + 1}", cls="between", data=(("level", level.token), ("a", str(k)), ("b", str(k + 1))),
        title=f"best path between these groups: {level.token}",
    )


def render_svg(topo: Topology, *, title: str = "", findings: Sequence[Finding] = ()) -> str:
    """The machine picture as an SVG document."""
    return to_svg(machine_scene(topo, title=title, findings=findings))
