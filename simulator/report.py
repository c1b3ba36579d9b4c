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

__all__ = ["COLUMNS", "jsonable", "markdown", "render", "write_chart"]

#: (metric key, column title, higher is better)
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("unallocated_gpu_pct", "unalloc. GPU %", False),
    ("aligned_pct", "aligned %", True),
    ("bw_aligned_pct", "bw-aligned %", True),
    ("cross_socket_pct", "x-socket %", False),
    ("busbw_gbps", "ring GB/s", True),
    ("busbw_per_gpu_gbps", "GB/s per GPU", True),
    ("failed_before_full", "failed ≤100%", False),
    ("failed_pods", "failed", False),
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


def _cell(mean: Any) -> str:
    if mean is None:
        return "–"
    if isinstance(mean, float):
        return f"{mean:.1f}"
    return str(mean)


def _shown_path(path: str) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path


def markdown(result: Mapping[str, Any]) -> str:
    """The headline table as Markdown (means ± sd over seeds), for docs."""
    seeds = len(result["scenario"]["seeds"])
    cols = [*COLUMNS, ("dp_worse_pct", "in-node worse %", False)]
    head = "| policy | " + " | ".join(name for _, name, _ in cols) + " |"
    lines = [head, "|---|" + "---:|" * len(cols)]
    for policy, m in result["policies"].items():
        cells = []
        for key, _, _ in cols:
            v, sd = m.get(key), m.get("std", {}).get(key)
            text = _cell(v) if not isinstance(v, float) else f"{v:.2f}"
            if seeds > 1 and isinstance(v, float) and isinstance(sd, float):
                text += f" ± {sd:.2f}"
            cells.append(text)
        lines.append(f"| {policy} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render(result: Mapping[str, Any], console: Console, *, by_kind: bool = False) -> None:
    sc = result["scenario"]
    seeds = sc["seeds"]
    what = sc.get("pod_list") or sc.get("scenario") or sc.get("workload")
    pods = sorted(set(sc["pods_per_seed"].values()))
    span = f"{seeds[0]}..{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1 else (
        ",".join(str(s) for s in seeds))
    count = f"{pods[0]}–{pods[-1]}" if len(pods) > 1 else str(pods[0])
    title = (f"{what}: {sc['nodes']} nodes, {sc['gpus']} GPUs, {count} pods; "
             f"{'mean of ' + str(len(seeds)) + ' seeds' if len(seeds) > 1 else 'seed'} {span}")
    table = Table(title=title, title_justify="left")
    table.add_column("policy", style="bold")
    for _, name, _ in COLUMNS:
        table.add_column(name, justify="right")
    for policy, m in result["policies"].items():
        table.add_row(policy, *[_cell(m.get(k)) for k, _, _ in COLUMNS])
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
                parts = [_cell(k.get("aligned_pct")), _cell(k.get("busbw_gbps")), _cell(k.get("failed_pods"))]
                row.append(" | ".join(parts))
            kt.add_row(kind, *row)
        console.print(kt)
    console.print(
        f"[dim]gputopo: {_shown_path(sc['scheduler_config'])} ({sc['scheduler_profile']}); "
        f"default: {sc.get('default_scheduler', 'kube-scheduler defaults')}; "
        f"GPUs in the node: {sc['gpu_choice']}; "
        f"{result['run_seconds']:.1f} s; sd per metric in --json[/dim]"
    )


def write_chart(result: Mapping[str, Any], path: str | Path) -> Path:
    """A PNG with one bar panel per headline metric, error bars = sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    policies = list(result["policies"])
    panels = [c for c in COLUMNS if c[0] != "failed_pods"]
    fig, grid = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.4), constrained_layout=True)
    axes = list(grid)
    colors = {"gputopo": "#2a7ab0", "default": "#8c8c8c", "bestfit": "#e0a030", "random": "#c05050"}
    for ax, (key, name, higher) in zip(axes, panels, strict=True):
        vals = [result["policies"][p].get(key) for p in policies]
        errs = [result["policies"][p].get("std", {}).get(key) or 0.0 for p in policies]
        heights = [v if isinstance(v, int | float) else 0.0 for v in vals]
        ax.bar(policies, heights, yerr=errs, capsize=3, color=[colors.get(p, "#555555") for p in policies])
        ax.set_title(f"{name} ({'higher' if higher else 'lower'} is better)", fontsize=9)
        ax.tick_params(axis="x", labelsize=8, rotation=20)
        for i, v in enumerate(vals):
            ax.annotate("n/a" if v is None else f"{v:.1f}", (i, heights[i] + errs[i]), xytext=(0, 2),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7)
        ax.margins(y=0.12)
    sc = result["scenario"]
    what = sc.get("pod_list") or sc.get("scenario") or sc.get("workload")
    n = len(sc["seeds"])
    fig.suptitle(f"gputopo simulate: {what}, {sc['nodes']} nodes / {sc['gpus']} GPUs, "
                 f"{'mean ± sd of ' + str(n) + ' seeds' if n > 1 else '1 seed'}", fontsize=10)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
