"""`gputopo audit nccl LOG`: compare an ``all_reduce_perf`` result with what its GPUs should reach.

Reads the log (nccl-tests output, with or without ``NCCL_DEBUG=INFO`` lines) through
:mod:`policy.audit.nccl_log`, the node's topology from ``--topology FILE`` (``nvidia-smi topo
-m`` text or topology JSON), maps the run's ranks to GPUs (their PCI bus ids, NCCL's
``nvmlDev``, or the CUDA device index; ``--gpus`` overrides), and prints the analysis of
:mod:`policy.audit.nccl_audit`.

Exit status (docs/audit.md; 0, 1 and 130 as for ``gputopo audit``, :mod:`gputopo.guard`):
0 analysed; 1 internal error; 2 unusable input (unreadable or not a log, bad ``--topology``,
bad ``--gpus``); 5 a run is far below the model's expectation (measured peak busbw < 0.5 x
expected); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gputopo.guard import PipeSafeConsole, guarded
from labeler.topology import labels, limits
from labeler.topology.errors import TopologyError
from labeler.topology.findings import Finding
from labeler.topology.model import Topology
from policy.audit import nccl_audit, nccl_log

__all__ = ["EXIT_FAR_BELOW", "EXIT_INPUT", "main", "parse_gpu_list"]

EXIT_INPUT = 2
EXIT_FAR_BELOW = 5
MAX_GPU_LIST = limits.MAX_DEVICE_LIST_ENTRIES  # labeler.topology.limits


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gputopo audit nccl",
        description=(
            "Parse an all_reduce_perf (nccl-tests) log and compare its peak bus bandwidth with the model's "
            "expectation for the GPUs it ran on; flag runs far below it with the likely cause (socket crossing, "
            "no P2P / SHM transport, sockets instead of RDMA, NIC not local)."
        ),
        epilog="exit status: 0 analysed; 1 internal error; 2 unusable input; 5 a run is far below the expectation; "
               "130 interrupted",
    )
    p.add_argument("log", metavar="LOG", help="the log file, or '-' for stdin")
    p.add_argument("--topology", metavar="FILE", help="the node's `nvidia-smi topo -m` text or topology JSON")
    p.add_argument("--gpus", metavar="LIST", help="topology GPU indices of one host's ranks, in rank order (0,1,4-5)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--prefix", default=labels.DEFAULT_PREFIX, help="annotation prefix for Node JSON (default: "
                   "%(default)s)")
    return p


def parse_gpu_list(text: str) -> list[int]:
    """``0,1,4-6`` → ``[0, 1, 4, 5, 6]`` (order kept). ``ValueError`` on junk or more than 1024 GPUs.

    >>> parse_gpu_list("3,0-1")
    [3, 0, 1]
    """
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isascii():
            raise ValueError(f"not a GPU index: {part!r}")
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()) or len(lo) > 6 or len(hi) > 6:
            raise ValueError(f"not a GPU index or range: {part!r}")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first or len(out) + last - first + 1 > MAX_GPU_LIST:
            raise ValueError(f"bad range {part!r} (descending, or more than {MAX_GPU_LIST} GPUs)")
        out.extend(range(first, last + 1))
    return out


def main(argv: Sequence[str], *, out: Any = None) -> int:
    return guarded("gputopo audit nccl", lambda: _main(argv, out))


def _main(argv: Sequence[str], out: Any) -> int:
    args = _parser().parse_args(list(argv))
    stdout = out if out is not None else sys.stdout
    from gputopo.bounded_input import InputTooLarge, read_text
    from gputopo.topology_input import read_topology

    try:
        prefix = labels.validate_prefix(args.prefix)
        gpus = parse_gpu_list(args.gpus) if args.gpus else None
    except ValueError as err:
        print(f"gputopo audit nccl: {err}", file=sys.stderr)
        return EXIT_INPUT
    topo: Topology | None = None
    try:
        text = read_text(args.log, nccl_log.MAX_LOG_CHARS)  # UTF-8 never has more characters than bytes
        log = nccl_log.parse(text, source="<stdin>" if args.log == "-" else args.log)
        if args.topology:
            topo = read_topology(args.topology, prefix=prefix)
    except InputTooLarge as err:
        print(f"gputopo audit nccl: {err.path}: {err}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as err:
        print(f"gputopo audit nccl: cannot read: {err.strerror or err} ({getattr(err, 'filename', '')})",
              file=sys.stderr)
        return EXIT_INPUT
    except TopologyError as err:  # includes NcclLogError, parse and codec errors
        print(f"gputopo audit nccl: {err}", file=sys.stderr)
        return EXIT_INPUT
    if gpus is not None and topo is None:
        print("gputopo audit nccl: --gpus needs --topology", file=sys.stderr)
        return EXIT_INPUT
    runs, general = nccl_audit.analyse(log, topo, gpus)
    code = EXIT_FAR_BELOW if any(r.verdict is nccl_audit.Verdict.FAR_BELOW for r in runs) else 0
    if args.json:
        doc = {"log": log.source, "nccl_version": log.nccl_version, "topology": None if topo is None else topo.source,
               **nccl_audit.to_dict(runs, general), "exit_code": code}
        json.dump(doc, stdout, indent=2, ensure_ascii=False)
        stdout.write("\n")
    else:
        _render(log, runs, general, topo, PipeSafeConsole(file=stdout, highlight=False))
    return code


def _gb(x: float | None) -> str:
    return "-" if x is None else f"{x:g} GB/s"


def _render(log: nccl_log.NcclLog, runs: Sequence[nccl_audit.RunAudit], general: Sequence[Finding],
            topo: Topology | None, console: Console) -> None:
    console.print(f"[bold]{escape(log.source or 'log')}[/bold]"
                  + escape((f" (NCCL {log.nccl_version})" if log.nccl_version else "")
                           + (f"; topology: {topo.source or 'given'}" if topo is not None else "; no topology given")))
    if not runs:
        console.print("no all_reduce_perf result in this log")
    for i, r in enumerate(runs, start=1):
        t = Table(title=f"Run {i}: {r.test or 'all-reduce'}", title_justify="left", show_header=False)
        t.add_column("what")
        t.add_column("value")
        hosts = f" on {len(r.hosts)} host(s): {', '.join(r.hosts)}" if r.hosts else " (from busbw/algbw)"
        t.add_row("ranks", "-" if r.ranks is None else escape(f"{r.ranks}{hosts}"))
        if r.gpu_names:
            t.add_row("GPU models", ", ".join(r.gpu_names))
        t.add_row("measured peak busbw", _gb(r.peak_busbw) + (f" at {r.peak_size} B" if r.peak_size else ""))
        t.add_row("reported average busbw", _gb(r.avg_busbw))
        if r.gpus is not None:
            t.add_row(escape(f"GPUs on {r.host}"), ", ".join(f"GPU{g}" for g in r.gpus) + escape(f"  ({r.mapping})"))
        if r.placement is not None:
            t.add_row("ring (model)", "→".join(f"GPU{g}" for g in r.placement.ring)
                      + f", worst hop {r.placement.bottleneck.token}")
        t.add_row("expected busbw", escape(_gb(r.expected) + f"  ({r.expected_note})"))
        verdict = r.verdict.value + (f" ({r.ratio:.0%} of expected)" if r.ratio is not None else "")
        t.add_row("verdict", verdict)
        if r.transports:
            t.add_row("ring connections", ", ".join(f"{k}: {v}" for k, v in r.transports.items()))
        console.print(t)
        for f in r.findings:
            _finding(console, f)
    for f in general:
        _finding(console, f)


def _finding(console: Console, f: Finding) -> None:
    console.print(escape(f"  {'!' if f.severity.value != 'info' else '-'} [{f.code}] {f.message}"))
