"""Showing a simulator result: a table for people, rounded JSON for machines, a PNG chart.

The chart uses matplotlib's Agg backend (no display needed), imported only
when a chart is written so ``--json`` runs stay light.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["COLUMNS", "jsonable", "render", "write_chart"]

#: (metric key, column title, higher is better)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("unallocated_gpu_pct", "unallocated GPU %", False),
    ("aligned_pct", "aligned %", True),
    ("cross_socket_pct", "cross-socket %", False),
    ("busbw_gbps", "ring GB/s", True),
    ("failed_pods", "failed pods", False),
    ("dp_worse_pct", "in-node worse %", False),
)


def jsonable(value: Any, digits: int = 4) -> Any:
    """Round floats (NaN/inf become null) all the way down."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, digits)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, digits) for v in value]
    return value


def _cell(mean: Any, std: Any, seeds: int) -> str:
    if mean is None:
        return "–"
    text = f"{mean:.2f}" if isinstance(mean, float) else str(mean)
    if seeds > 1 and isinstance(std, float):
        text += f" ± {std:.2f}"
    return text


def render(result: Mapping[str, Any], console: Console, *, by_kind: bool = False) -> None:
    sc = result["scenario"]
    seeds = len(sc["seeds"])
    what = sc.get("pod_list") or sc.get("scenario") or sc.get("workload")
    title = (f"{what}: {sc['nodes']} nodes, {sc['gpus']} GPUs, seeds {','.join(str(s) for s in sc['seeds'])}"
             f" (mean ± sd)" if seeds > 1 else f"{what}: {sc['nodes']} nodes, {sc['gpus']} GPUs, seed {sc['seeds'][0]}")
    table = Table(title=title, title_justify="left")
    table.add_column("policy", style="bold")
    for _, name, _ in COLUMNS:
        table.add_column(name, justify="right")
    table.add_column("run s", justify="right")
    for policy, m in result["policies"].items():
        cells = [_cell(m.get(k), m.get("std", {}).get(k), seeds) for k, _, _ in COLUMNS]
        table.add_row(policy, *cells, f"{m['seconds']:.1f}")
    console.print(table)
    if by_kind:
        kinds = sorted({k for m in result["policies"].values() for k in m["by_kind"]})
        kt = Table(title="per pod kind (aligned % | ring GB/s | failed pods)", title_justify="left")
        kt.add_column("kind", style="bold")
        for policy in result["policies"]:
            kt.add_column(policy, justify="right")
        for kind in kinds:
            row = []
            for m in result["policies"].values():
                k = m["by_kind"].get(kind, {})
                parts = [_cell(k.get("aligned_pct"), None, 1), _cell(k.get("busbw_gbps"), None, 1),
                         _cell(k.get("failed_pods"), None, 1)]
                row.append(" | ".join(parts))
            kt.add_row(kind, *row)
        console.print(kt)
    console.print(
        f"[dim]scheduler config: {sc['scheduler_config']} (profile {sc['scheduler_profile']}); "
        f"GPUs inside the node: {sc['gpu_choice']}; total {result['run_seconds']:.1f} s[/dim]"
    )


def write_chart(result: Mapping[str, Any], path: str | Path) -> Path:
    """A PNG with one bar panel per headline metric, error bars = sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    policies = list(result["policies"])
    panels = [c for c in COLUMNS if c[0] != "dp_worse_pct"]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), constrained_layout=True)
    colors = {"gputopo": "#2a7ab0", "default": "#8c8c8c", "bestfit": "#e0a030", "random": "#c05050"}
    for ax, (key, name, higher) in zip(axes, panels, strict=True):
        vals = [result["policies"][p].get(key) for p in policies]
        errs = [result["policies"][p].get("std", {}).get(key) or 0.0 for p in policies]
        heights = [v if isinstance(v, int | float) else 0.0 for v in vals]
        ax.bar(policies, heights, yerr=errs, capsize=3, color=[colors.get(p, "#555555") for p in policies])
        ax.set_title(f"{name} ({'higher' if higher else 'lower'} is better)", fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=20)
        for i, v in enumerate(vals):
            ax.annotate("n/a" if v is None else f"{v:.1f}", (i, heights[i]), ha="center", va="bottom", fontsize=7)
    sc = result["scenario"]
    what = sc.get("pod_list") or sc.get("scenario") or sc.get("workload")
    fig.suptitle(f"gputopo simulate: {what}, {sc['nodes']} nodes / {sc['gpus']} GPUs, seeds {len(sc['seeds'])}",
                 fontsize=10)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
