"""An SVG picture of a topology: the link matrix as a coloured grid, NUMA groups outlined.

Why a picture: a person reads "GPUs 0-3 share a switch, 4-7 sit on the other
socket" from colour blocks faster than from 144 tokens. The SVG is plain text
(no plotting library), deterministic, and opens in any browser.

GPUs are grouped by NUMA node exactly as the ``numa-shape`` label is
(:func:`labeler.topology.numa.group`: from affinity, from link levels only where
affinity is unknown, and the picture says which). Each GPU's row is tagged with
its group; groups whose GPUs are adjacent are also outlined.
"""

from __future__ import annotations

from html import escape

from labeler.topology import numa, serialize
from labeler.topology.links import Link, LinkLevel
from labeler.topology.model import Topology

__all__ = ["LEVEL_COLOURS", "render_svg"]

#: One colour per level, dark (near) to pale (far); colour-blind-safe viridis-like ramp.
LEVEL_COLOURS: dict[LinkLevel, str] = {
    LinkLevel.SELF: "#222222",
    LinkLevel.NVLINK: "#2a0a5e",
    LinkLevel.PIX: "#3b528b",
    LinkLevel.PXB: "#21918c",
    LinkLevel.PHB: "#5ec962",
    LinkLevel.NODE: "#b5de2b",
    LinkLevel.SYS: "#fde725",
}
_UNKNOWN = "#dddddd"
_CELL = 34


def _fill(link: Link | None) -> str:
    return _UNKNOWN if link is None else LEVEL_COLOURS[link.level]


def _ink(link: Link | None) -> str:
    return "#ffffff" if link is not None and link.level <= LinkLevel.PXB else "#000000"


def render_svg(topo: Topology, *, title: str = "") -> str:
    """The matrix as an SVG document (GPUs then NICs), with NUMA-level islands outlined."""
    names = [f"GPU{g.index}" for g in topo.gpus] + [n.name for n in topo.nics]
    n = len(names)
    groups = numa.group(topo)
    basis = {
        numa.Basis.AFFINITY: "GPUs of one NUMA node (from NUMA/CPU affinity)",
        numa.Basis.LINKS: "GPUs of one NUMA node (affinity unknown for some: from PCIe link levels)",
        numa.Basis.UNKNOWN: "none: NUMA placement unknown (no affinity, links do not settle it)",
    }[groups.basis]
    left, top = 130, 100
    width = left + n * _CELL + 190
    height = max(top + n * _CELL + 30, top + 8 * 24 + 30)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(title or topo.source or "topology")}</text>',
        f'<text x="10" y="38">{len(topo.gpus)} GPUs, {len(topo.nics)} NICs; outlines: {escape(basis)}</text>',
    ]
    tags: dict[int, str] = {}
    for k, group in enumerate(groups.groups or ()):
        node = groups.nodes[k]
        tag = f"N{serialize.format_cpulist(node)}" if node is not None else f"G{k}"
        for g in group:
            tags[g] = tag
    for i, name in enumerate(names):
        y = top + i * _CELL + _CELL / 2 + 4
        gtag = tags.get(topo.gpus[i].index) if i < len(topo.gpus) else None
        shown = f"{name} · {gtag}" if gtag else name
        out.append(f'<text x="{left - 6}" y="{y}" text-anchor="end">{escape(shown)}</text>')
        x = left + i * _CELL + _CELL / 2
        out.append(
            f'<text x="{x}" y="{top - 6}" transform="rotate(-45 {x} {top - 6})">{escape(name[:14])}</text>'
        )
    for i in range(n):
        for j in range(n):
            link = topo.links[i][j]
            x, y = left + j * _CELL, top + i * _CELL
            out.append(
                f'<rect x="{x}" y="{y}" width="{_CELL - 1}" height="{_CELL - 1}" fill="{_fill(link)}">'
                f"<title>{escape(names[i])}↔{escape(names[j])}: {'unknown' if link is None else link.token}</title>"
                "</rect>"
            )
            label = "?" if link is None else link.token
            out.append(
                f'<text x="{x + _CELL / 2}" y="{y + _CELL / 2 + 4}" text-anchor="middle" font-size="9" '
                f'fill="{_ink(link)}">{escape(label)}</text>'
            )
    pos = {g.index: p for p, g in enumerate(topo.gpus)}
    for group in groups.groups or ():
        ps = sorted(pos[g] for g in group)
        if ps == list(range(ps[0], ps[-1] + 1)):  # outline contiguous groups only
            x, y = left + ps[0] * _CELL, top + ps[0] * _CELL
            size = len(ps) * _CELL
            out.append(
                f'<rect x="{x - 1}" y="{y - 1}" width="{size}" height="{size}" fill="none" '
                'stroke="#e4572e" stroke-width="3"/>'
            )
    lx = left + n * _CELL + 20
    for k, (level, colour) in enumerate(LEVEL_COLOURS.items()):
        y = top + k * 24
        out.append(f'<rect x="{lx}" y="{y}" width="18" height="18" fill="{colour}"/>')
        label = (
            "X (self)" if level is LinkLevel.SELF else ("NV# (NVLink)" if level is LinkLevel.NVLINK else level.token)
        )
        out.append(f'<text x="{lx + 26}" y="{y + 13}">{escape(label)}</text>')
    out.append(f'<rect x="{lx}" y="{top + 7 * 24}" width="18" height="18" fill="{_UNKNOWN}"/>')
    out.append(f'<text x="{lx + 26}" y="{top + 7 * 24 + 13}">unknown</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
