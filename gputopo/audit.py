"""`gputopo audit`: the topology report for one node, for people (tables) or machines (JSON).

The analysis itself is pure (:mod:`labeler.topology.report`); this module only
reads the input, renders, and maps every outcome to a documented exit code
(``EXIT_CODES``, printed by ``--help``).

The input is read by :mod:`gputopo.bounded_input`, the one size-limited reader:
``nvidia-smi topo -m`` of the largest real node in the corpus is 17 KB, so nothing
legitimate comes near ``MAX_INPUT_BYTES`` (1 MiB), while an unbounded read of a 50 MB
line or of ``/dev/zero`` exhausts memory before the parser sees a byte. Whatever goes
wrong beyond that is one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gputopo import guard
from gputopo.bounded_input import SMI_TEXT_BYTES, InputTooLarge, read_text
from gputopo.guard import PipeSafeConsole as _Console
from labeler.topology import labels, picture, report, smi_parser
from labeler.topology.errors import ProbeError, TopologyParseError
from labeler.topology.findings import Finding
from labeler.topology.model import Topology
from labeler.topology.scene import to_svg

__all__ = ["main", "render_text"]

EXIT_OK = guard.EXIT_OK
EXIT_INTERNAL = guard.EXIT_INTERNAL
EXIT_PARSE = 2
EXIT_PROBE = 3
EXIT_INTERRUPTED = guard.EXIT_INTERRUPTED
#: the most input read from FILE or stdin (60x the largest real `nvidia-smi topo -m` in the corpus)
MAX_INPUT_BYTES = SMI_TEXT_BYTES

EXIT_CODES = f"""\
exit status:
  0    report printed (also when the reader of stdout left early, as `| head` does)
  1    internal error: an unexpected failure, reported in one line (please report it with the input)
  2    usage error or unusable input: a bad option or --prefix; FILE missing or unreadable; input larger
       than {MAX_INPUT_BYTES} bytes (a regular file is refused by its size, stdin/FIFOs/devices once they
       pass it); a parse error naming the line; a --picture/--svg path not writable
  3    no FILE and no NVIDIA GPU on this machine (or every probe failed)
  130  interrupted (Ctrl-C)
"""


PICTURE_FORMATS = ("svg", "png")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gputopo audit",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Report GPU islands, NIC locality, best k-GPU placements and the node labels gputopo would "
            "publish. FILE is a saved `nvidia-smi topo -m` output, '-' for stdin (at most "
            f"{MAX_INPUT_BYTES} bytes); without FILE the local machine is probed (NVML, nvidia-smi, sysfs). "
            "See also `gputopo audit pod --help` (inside a container), `gputopo audit nccl --help` and "
            "`gputopo audit cluster --help` (every GPU node of a cluster)."
        ),
    )
    p.add_argument("file", nargs="?", help="saved `nvidia-smi topo -m` text, or '-' for stdin")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--picture", metavar="PATH", action="append", default=[],
                   help="also draw the machine (NUMA groups, PCIe switches, NICs, NVLink) to PATH; repeatable")
    p.add_argument("--format", choices=PICTURE_FORMATS, help="picture format (default: PATH's suffix, else svg)")
    p.add_argument("--svg", metavar="PATH", action="append", default=[], help="same as --picture PATH --format svg")
    p.add_argument("--prefix", default=labels.DEFAULT_PREFIX, help="label prefix (default: %(default)s)")
    return p


def _probe_local() -> tuple[Topology, list[Finding]]:
    from labeler.discovery import local  # I/O edge, imported only when probing

    facts = local.probe_local()
    return facts.topology, local.render_report(facts)


def main(argv: Sequence[str]) -> int:
    """Run the audit; every outcome is an exit code from ``EXIT_CODES`` and at most one line on stderr."""
    return guard.guarded("gputopo audit", lambda: _main(argv))


def _main(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        prefix = labels.validate_prefix(args.prefix)
    except ValueError as err:
        print(f"gputopo audit: {err}", file=sys.stderr)
        return EXIT_PARSE
    extra: list[Finding] = []
    try:
        if args.file is None:
            topo, extra = _probe_local()
        else:
            text = read_text(args.file, MAX_INPUT_BYTES)
            topo = smi_parser.parse(text, source="<stdin>" if args.file == "-" else args.file)
    except InputTooLarge as err:
        print(f"gputopo audit: {args.file}: {err}", file=sys.stderr)
        return EXIT_PARSE
    except OSError as err:
        print(f"gputopo audit: cannot read {args.file}: {err.strerror or err}", file=sys.stderr)
        return EXIT_PARSE
    except TopologyParseError as err:
        print(f"gputopo audit: {args.file}: {' '.join(str(err).split())}", file=sys.stderr)
        return EXIT_PARSE
    except ProbeError as err:
        print(f"gputopo audit: {err}", file=sys.stderr)
        return EXIT_PROBE
    doc = report.build(topo, prefix=prefix, extra=extra)
    pictures = [(path, _picture_format(path, args.format)) for path in args.picture]
    pictures += [(path, "svg") for path in args.svg]
    for path, fmt in pictures:
        try:
            _write_picture(topo, report.all_findings(topo, extra), path, fmt)
        except OSError as err:
            print(f"gputopo audit: cannot write {path}: {err.strerror or err}", file=sys.stderr)
            return EXIT_PARSE
    if args.json:
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        _render(doc, topo, _Console(highlight=False))
        for path, _ in pictures:
            print(f"picture written to {path}")
    sys.stdout.flush()  # a closed pipe surfaces here, inside main(), not at interpreter exit
    return EXIT_OK


def _picture_format(path: str, given: str | None) -> str:
    """``--format`` when given, else the file name's suffix (``.png``), else SVG."""
    if given is not None:
        return given
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in PICTURE_FORMATS else "svg"


def _write_picture(topo: Topology, found: Sequence[Finding], path: str, fmt: str) -> None:
    scene = picture.machine_scene(topo, findings=found)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if fmt == "png":
        from gputopo.png import render_png  # matplotlib: imported only when a PNG is asked for

        Path(path).write_bytes(render_png(scene))
    else:
        Path(path).write_text(to_svg(scene), encoding="utf-8")


def render_text(doc: dict[str, Any], topo: Topology, *, width: int = 110) -> str:
    """The tables exactly as printed, at a fixed width and without colour (for goldens and logs)."""
    console = Console(width=width, color_system=None, highlight=False, record=True, file=io.StringIO())
    _render(doc, topo, console)
    return console.export_text()


def _render(doc: dict[str, Any], topo: Topology, console: Console) -> None:
    """Tables for people: GPUs, islands, best placements, labels, warnings."""
    gpus_n, nics_n = doc["gpu_count"], doc["nic_count"]
    console.print(f"[bold]{escape(doc['source'] or 'topology')}[/bold]: {gpus_n} GPU{'s' * (gpus_n != 1)}, "
                  f"{nics_n} NIC{'s' * (nics_n != 1)}")
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
    numa = doc["numa"]
    groups = numa["groups"]
    isl.add_row(f"NUMA ({numa['basis']})",
                "unknown" if groups is None else "  ".join("{" + ",".join(map(str, g)) + "}" for g in groups))
    console.print(isl)
    best = Table(title="Best placement per GPU count (NCCL ring bottleneck)", title_justify="left")
    for col in ("k", "GPUs", "ring", "bottleneck"):
        best.add_column(col)
    for k, p in doc["best_placement"].items():
        best.add_row(k, ",".join(map(str, p["gpus"])), "→".join(map(str, p["ring"])), p["bottleneck"])
    console.print(best)
    _render_bandwidth(doc["bandwidth"], console)
    lab = Table(title="Labels gputopo would publish", title_justify="left")
    lab.add_column("key")
    lab.add_column("value")
    for key, value in doc["labels"].items():
        lab.add_row(key, value)
    console.print(lab)
    size = sum(len(v) for v in doc["annotations"].values())
    console.print(f"annotations: {', '.join(doc['annotations'])} ({size} bytes of compact JSON)")
    # one line per finding: severity mark (! warning, X error, - info), [code], message
    warn = [f for f in doc["findings"] if f["severity"] != "info"]
    if warn:
        console.print("[bold]Warnings[/bold]")
        for f in warn:  # messages quote input text: never read as rich markup
            console.print(f"  {'X' if f['severity'] == 'error' else '!'} [{f['code']}] {f['message']}", markup=False)
    else:
        console.print("no warnings")
    info = [f for f in doc["findings"] if f["severity"] == "info"]
    if info:
        console.print("[bold]Information[/bold]")
        for f in info:
            console.print(f"  - [{f['code']}] {f['message']}", markup=False)


def _render_bandwidth(section: dict[str, Any], console: Console) -> None:
    """Predicted NCCL bus bandwidth per island and best set (cells quote input: never rich markup)."""
    head, rows, notes = report.bandwidth_table(section)
    if not rows:
        console.print("Predicted NCCL bus bandwidth: no set of two or more GPUs, no ring")
        return
    table = Table(title=f"Predicted NCCL bus bandwidth, {section['unit']} (docs/bandwidth.md)", title_justify="left")
    for col in head:
        table.add_column(col)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    console.print(table)
    for line in notes:
        console.print(f"  - {line}", markup=False)
    for line in section["assumed"]:
        console.print(f"  assumed: {line}", markup=False)
