"""PNG of a :class:`~labeler.topology.scene.Scene`, drawn with matplotlib (the I/O edge of the pictures).

Why matplotlib, and why drawing the scene rather than rasterising the SVG: matplotlib is
a well-kept, pure-wheel dependency (no system cairo or librsvg, which CI and slim images
lack), ships the DejaVu fonts the layout measures text for, and is what the simulator
plots with. Drawing the same primitives the SVG is written from keeps both pictures
one layout; a rasteriser would add a second dependency for the same result.

The Agg canvas is used directly (no pyplot, no global state, no display): safe in a
server and in threads. One scene pixel is one point at 72 dpi; ``scale`` 2 gives a
sharp image on high-density screens. PNG metadata carries no software version or
date, so equal scenes give equal files with the same matplotlib.
"""

from __future__ import annotations

import io

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, PathPatch
from matplotlib.path import Path as MplPath
from matplotlib.patheffects import withStroke

from labeler.topology.scene import FONT, Group, Item, Path, Rect, Scene, Text

__all__ = ["PNG_SIGNATURE", "render_png"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HA = {"start": "left", "middle": "center", "end": "right"}


def _draw(ax: Axes, item: Item) -> None:
    if isinstance(item, Group):
        for child in item.items:
            _draw(ax, child)
    elif isinstance(item, Rect):
        style = f"round,pad=0,rounding_size={item.radius}" if item.radius else "square,pad=0"
        ax.add_patch(FancyBboxPatch(
            (item.x, item.y), item.w, item.h, boxstyle=style,
            facecolor=item.fill if item.fill != "none" else "none",
            edgecolor=item.stroke or "none", linewidth=item.stroke_width if item.stroke else 0,
            linestyle=(0, item.dash) if item.dash else "solid",
        ))
    elif isinstance(item, Text):
        effects = [withStroke(linewidth=3, foreground="#ffffff")] if item.halo else None
        ax.text(item.x, item.y, item.text, fontsize=item.size, ha=_HA[item.anchor], va="baseline",
                color=item.colour, fontweight="bold" if item.bold else "normal", family=FONT,
                path_effects=effects)
    else:
        _draw_path(ax, item)


def _draw_path(ax: Axes, item: Path) -> None:
    if item.curve:
        codes = [MplPath.MOVETO] + [MplPath.CURVE4] * (len(item.points) - 1)
    else:
        codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(item.points) - 1)
    ax.add_patch(PathPatch(
        MplPath(list(item.points), codes), facecolor="none", edgecolor=item.stroke, linewidth=item.width,
        linestyle=(0, item.dash) if item.dash else "solid", capstyle="round",
    ))


def render_png(scene: Scene, *, scale: float = 2.0) -> bytes:
    """The scene as PNG bytes, ``scale`` pixels per scene pixel."""
    fig = Figure(figsize=(scene.width / 72, scene.height / 72), dpi=72, facecolor=scene.background)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, scene.width)
    ax.set_ylim(scene.height, 0)
    ax.set_axis_off()
    _draw(ax, scene.root)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=72 * scale, facecolor=scene.background,
                metadata={"Software": None, "Title": scene.title})
    return buf.getvalue()
