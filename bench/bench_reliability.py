"""Reliability figures for docs/reliability.md: hostile bodies, 1,000 concurrent requests, relists, bounds.

Sections (each prints a table; all servers run the production configuration,
``extender.server.uvicorn_config`` + ``extender.app.create_app``, in a forked
process, so the client never shares the server's GIL):

1. **hostile bodies**: random and hostile request bodies (the generator of
   ``tests/extender/test_ext_fuzz.py``, without hypothesis) at ``/filter`` and
   ``/prioritize`` of a stateless and a cached-mode server; answers by status,
   server RSS before/after;
2. **1,000 concurrent**: a cached extender holding 5,000 nodes; 1,000 connections
   each send one request at the same moment, several rounds; answers by status,
   p50/p99/max latency of the 200s, ``/healthz`` latency during the storm and the
   server's RSS after each round, with the default concurrency cap and with a cap
   of 1,024; side by side with a **floor** server that only decodes the same body;
3. **relist**: request latency while the cache relists 5,000 nodes back to back
   (JSON pages decoded, view rebuilt and swapped), against the same requests idle;
4. **bounds**: the 24-GPU NVLink mesh with k = 12, the hardest 16-GPU mesh, and
   decoding one annotation with ``cpu_affinity: "0-1000000"`` (tracemalloc peak).
   ``--before REV`` runs section 4 also against an older commit (``git archive``
   into a temporary directory; the placement search there has no time limit).

Rerun: ``.venv/bin/python bench/bench_reliability.py`` (``--quick``: fewer rounds and bodies).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_bounds import section_bounds
from reliability_concurrent import section_concurrent
from reliability_hostile import section_hostile
from reliability_relist import section_relist
from reliability_server import ROOT


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer bodies and rounds")
    ap.add_argument("--before", help="also run section 4 on this older commit (e.g. 7e72b74)")
    ap.add_argument("--sections", default="1,2,3,4")
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--page-size", type=int, default=500, help="section 3: the reflector's list page size")
    ap.add_argument("--before-sections", default="4",
                    help="with --before: sections to also run on the older commit (section 4 always compares)")
    ap.add_argument("--code", help=argparse.SUPPRESS)  # import extender/labeler from this tree (used by --before)
    args = ap.parse_args(argv)
    if args.code:  # bind the packages to that tree now: helpers imported later put this tree first again
        sys.path.insert(0, args.code)
        import extender
        import labeler

        assert Path(extender.__file__).parent.parent == Path(args.code), extender.__file__
        assert Path(labeler.__file__).parent.parent == Path(args.code), labeler.__file__
    import logging

    logging.disable(logging.WARNING)
    sections = {int(s) for s in args.sections.split(",")}
    print(f"machine: {platform.machine()} | CPUs: {os.cpu_count()} | Python {platform.python_version()} | "
          f"{platform.platform()} | load average {os.getloadavg()[0]:.1f}\n")
    if 1 in sections:
        section_hostile(200 if args.quick else 1000)
    if 2 in sections:
        section_concurrent(args.nodes, args.clients, 2 if args.quick else 4)
    if 3 in sections:
        section_relist(args.nodes, 50 if args.quick else 300, args.page_size)
    if 4 in sections:
        section_bounds(args.before)
    again = sorted({int(x) for x in args.before_sections.split(",")} & sections - {4})
    if args.before and again:
        with tempfile.TemporaryDirectory() as tmp:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], capture_output=True, check=True)
            subprocess.run(["tar", "-x", "-C", tmp], input=archive.stdout, check=True)
            print(f"# The same sections on the code of {args.before} (before)\n", flush=True)
            rest = ["--sections", ",".join(map(str, again)), "--code", tmp, "--nodes", str(args.nodes),
                    "--clients", str(args.clients), "--page-size", str(args.page_size)]
            subprocess.run([sys.executable, __file__, *rest, *(["--quick"] if args.quick else [])], check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
