"""A picture as plain data (rectangles, text, paths, groups) and its SVG form.

Why a scene between the layout and the file: the SVG (written here, no library) and
the PNG (drawn by matplotlib at the I/O edge, :mod:`gputopo.png`) must show the same
thing. The layout is computed once, in pure code, into a :class:`Scene`; each
renderer only translates primitives. Groups carry an ``id``, a ``cls`` and ``data``
attributes so tests (and people with a browser's inspector) can find the GPU, the
switch box or the NVLink edge they are about without looking at pixels.

Coordinates are pixels, y down, text anchored at its baseline (SVG's conventions).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from html import escape

__all__ = ["FONT", "Group", "Item", "Path", "Rect", "Scene", "Text", "text_width", "to_svg"]

#: Bundled with matplotlib, so the PNG and a browser without it differ only in glyph shapes.
FONT = "DejaVu Sans"
_FONT_STACK = "DejaVu Sans, Verdana, Arial, sans-serif"


def text_width(text: str, size: float, *, bold: bool = False) -> float:
    """A conservative width estimate in pixels (DejaVu Sans: digits 0.64 em, bold digits 0.70 em)."""
    return len(text) * size * (0.70 if bold else 0.62)


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str = "none"
    stroke: str | None = None
    stroke_width: float = 1.0
    radius: float = 0.0
    dash: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Text:
    x: float
    y: float
    text: str
    size: float = 11.0
    anchor: str = "start"  # start | middle | end
    bold: bool = False
    colour: str = "#000000"
    halo: bool = False  # a white outline, for labels drawn over lines


@dataclass(frozen=True, slots=True)
class Path:
    """A polyline, or with ``curve`` a chain of cubic Béziers: start, then (c1, c2, end) per segment."""

    points: tuple[tuple[float, float], ...]
    stroke: str = "#000000"
    width: float = 1.0
    curve: bool = False
    dash: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Group:
    items: tuple[Item, ...]
    id: str = ""
    cls: str = ""
    data: tuple[tuple[str, str], ...] = ()
    title: str = ""  # a tooltip in the SVG


Item = Rect | Text | Path | Group


@dataclass(frozen=True, slots=True)
class Scene:
    width: float
    height: float
    root: Group
    title: str = ""
    background: str = "#ffffff"
    meta: dict[str, str] = field(default_factory=dict)  # data attributes of the <svg> element

    def walk(self) -> Iterator[Item]:
        """Every item, groups before their contents."""
        stack: list[Item] = [self.root]
        while stack:
            item = stack.pop()
            yield item
            if isinstance(item, Group):
                stack.extend(reversed(item.items))


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _dash(dash: Sequence[float]) -> str:
    return f' stroke-dasharray="{" ".join(_n(d) for d in dash)}"' if dash else ""


def _svg(item: Item, out: list[str], indent: str) -> None:
    if isinstance(item, Group):
        attrs = ""
        if item.id:
            attrs += f' id="{escape(item.id)}"'
        if item.cls:
            attrs += f' class="{escape(item.cls)}"'
        for k, v in item.data:
            attrs += f' data-{k}="{escape(v)}"'
        out.append(f"{indent}<g{attrs}>")
        if item.title:
            out.append(f"{indent}  <title>{escape(item.title)}</title>")
        for child in item.items:
            _svg(child, out, indent + "  ")
        out.append(f"{indent}</g>")
    elif isinstance(item, Rect):
        stroke = (
            f' stroke="{item.stroke}" stroke-width="{_n(item.stroke_width)}"{_dash(item.dash)}' if item.stroke else ""
        )
        radius = f' rx="{_n(item.radius)}"' if item.radius else ""
        out.append(
            f'{indent}<rect x="{_n(item.x)}" y="{_n(item.y)}" width="{_n(item.w)}" height="{_n(item.h)}"'
            f'{radius} fill="{item.fill}"{stroke}/>'
        )
    elif isinstance(item, Text):
        weight = ' font-weight="bold"' if item.bold else ""
        halo = ' stroke="#ffffff" stroke-width="3" paint-order="stroke"' if item.halo else ""
        out.append(
            f'{indent}<text x="{_n(item.x)}" y="{_n(item.y)}" font-size="{_n(item.size)}" '
            f'text-anchor="{item.anchor}" fill="{item.colour}"{weight}{halo}>{escape(item.text)}</text>'
        )
    else:
        pts = item.points
        d = f"M{_n(pts[0][0])},{_n(pts[0][1])}"
        if item.curve:
            for seg in range(1, len(pts), 3):
                (x1, y1), (x2, y2), (x3, y3) = pts[seg : seg + 3]
                d += f" C{_n(x1)},{_n(y1)} {_n(x2)},{_n(y2)} {_n(x3)},{_n(y3)}"
        else:
            d += "".join(f" L{_n(x)},{_n(y)}" for x, y in pts[1:])
        out.append(
            f'{indent}<path d="{d}" fill="none" stroke="{item.stroke}" stroke-width="{_n(item.width)}"'
            f'{_dash(item.dash)} stroke-linecap="round"/>'
        )


def to_svg(scene: Scene) -> str:
    """The scene as a standalone SVG document (deterministic: equal scenes, equal bytes)."""
    meta = "".join(f' data-{k}="{escape(v)}"' for k, v in scene.meta.items())
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(scene.width)}" height="{_n(scene.height)}" '
        f'viewBox="0 0 {_n(scene.width)} {_n(scene.height)}" font-family="{_FONT_STACK}"{meta}>',
        f"  <title>{escape(scene.title)}</title>",
        f'  <rect width="100%" height="100%" fill="{scene.background}"/>',
    ]
    _svg(scene.root, out, "  ")
    out.append("</svg>")
    return "\n".join(out) + "\n"
