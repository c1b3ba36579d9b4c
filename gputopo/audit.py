"""`gputopo audit`: the topology report for one node, for people (tables) or machines (JSON).

The analysis itself is pure (:mod:`labeler.topology.report`); this module only
reads the input, renders, and maps errors to exit codes:
0 ok, 2 unreadable input (parse error naming the line), 3 no NVIDIA GPU / probe failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from labeler.topology import labels, picture, report, smi_parser
from labeler.topology.errors import ProbeError, TopologyParseError
from labeler.topology.model import Topology

__all__ = ["main"]

EXIT_PARSE = 2
EXIT_PROBE = 3


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gputopo audit",
        description=(
            "Report GPU islands, NIC locality, best k-GPU placements and the node labels gputopo would "
            "publish. FILE is a saved `nvidia-smi topo -m` output, '-' for stdin; without FILE the local "
            "machine is probed (NVML, nvidia-smi, sysfs)."
        ),
    )
    p.add_argument("file", nargs="?", help="saved `nvidia-smi topo -m` text, or '-' for stdin")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--svg", metavar="PATH", help="also write a picture of the link matrix as SVG")
    p.add_argument("--prefix", default=labels.DEFAULT_PREFIX, help="label prefix (default: %(default)s)")
    return p


def _read(file: str) -> tuple[str, str]:
    if file == "-":
        return sys.stdin.read(), "<stdin>"
    return Path(file).read_text(encoding="utf-8", errors="replace"), file


def _probe_local() -> tuple[Topology, list[str]]:
    from labeler.discovery import local  # I/O edge, imported only when probing

    facts = local.probe_local()
    return facts.topology, local.render_report(facts)


def main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        prefix = labels.validate_prefix(args.prefix)
    except ValueError as err:
        print(f"gputopo audit: {err}", file=sys.stderr)
        return EXIT_PARSE
    extra: list[str] = []
    try:
        if args.file is None:
            topo, extra = _probe_local()
        else:
            text, name = _read(args.file)
            topo = smi_parser.parse(text, source=name)
    except OSError as err:
        print(f"gputopo audit: cannot read {args.file}: {err.strerror or err}", file=sys.stderr)
        return EXIT_PARSE
    except TopologyParseError as err:
        print(f"gputopo audit: {args.file}: {err}", file=sys.stderr)
        return EXIT_PARSE
    except ProbeError as err:
        print(f"gputopo audit: {err}", file=sys.stderr)
        return EXIT_PROBE
    doc = report.build(topo, prefix=prefix)
    if extra:
        doc["warnings"] = doc["warnings"] + extra
    if args.svg:
        Path(args.svg).parent.mkdir(parents=True, exist_ok=True)
        Path(args.svg).write_text(picture.render_svg(topo), encoding="utf-8")
    if args.json:
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        _render(doc, topo, Console(highlight=False))
        if args.svg:
            print(f"picture written to {args.svg}")
    return 0


def _render(doc: dict[str, Any], topo: Topology, console: Console) -> None:
    """Tables for people: GPUs, islands, best placements, labels, warnings."""
    console.print(f"[bold]{doc['source'] or 'topology'}[/bold]: {doc['gpu_count']} GPUs, {doc['nic_count']} NICs")
    gpus = Table(title="GPUs", title_justify="left")
    for col in ("GPU", "CPU affinity", "NUMA", "nearest NIC", "level"):
        gpus.add_column(col)
    from labeler.topology.serialize import format_cpulist

    for g in topo.gpus:
        nic = doc["gpu_nic"].get(str(g.index), {})
        gpus.add_row(
            str(g.index),
            format_cpulist(g.cpu_affinity) if g.cpu_affinity is not None else "-",
            format_cpulist(g.numa_affinity) if g.numa_affinity is not None else "-",
            ", ".join(nic.get("nics", [])) or "-",
            nic.get("level") or "-",
        )
    console.print(gpus)
    isl = Table(title="Islands (GPUs connected at this level or better)", title_justify="left")
    isl.add_column("level")
    isl.add_column("islands")
    for level, groups in doc["islands"].items():
        isl.add_row(level, "  ".join("{" + ",".join(map(str, g)) + "}" for g in groups))
    console.print(isl)
    best = Table(title="Best placement per GPU count (NCCL ring bottleneck)", title_justify="left")
    for col in ("k", "GPUs", "ring", "bottleneck"):
        best.add_column(col)
    for k, p in doc["best_placement"].items():
        best.add_row(k, ",".join(map(str, p["gpus"])), "→".join(map(str, p["ring"])), p["bottleneck"])
    console.print(best)
    lab = Table(title="Labels gputopo would publish", title_justify="left")
    lab.add_column("key")
    lab.add_column("value")
    for key, value in doc["labels"].items():
        lab.add_row(key, value)
    console.print(lab)
    size = sum(len(v) for v in doc["annotations"].values())
    console.print(f"annotations: {', '.join(doc['annotations'])} ({size} bytes of compact JSON)")
    if doc["warnings"]:
        console.print("[bold]Warnings[/bold]")
        for w in doc["warnings"]:
            console.print(f"  ! {w}")
    else:
        console.print("no warnings")
